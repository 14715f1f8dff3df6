//! A session's snapshot as it arrives from the runner.

use std::path::PathBuf;

use tokio::io::AsyncWriteExt;

/// Where a session's snapshot is written as it arrives: beside its destination, renamed
/// into place only once it arrived whole, so a broken stream never leaves half a snapshot.
#[derive(Default)]
pub struct SnapshotSpool {
    pub file: Option<tokio::fs::File>,
    partial: Option<PathBuf>,
    pub announced: bool,
    pub arrived: bool,
}

impl SnapshotSpool {
    pub async fn open(&mut self, destination: &std::path::Path) -> std::io::Result<()> {
        self.announced = true;
        let mut partial = destination.as_os_str().to_owned();
        partial.push(".part");
        let partial = PathBuf::from(partial);
        if let Some(parent) = partial.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        // The snapshot holds whatever the code's variables held: codebox's alone.
        self.file = Some(
            tokio::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&partial)
                .await?,
        );
        self.partial = Some(partial);
        Ok(())
    }

    pub async fn finish(&mut self) -> std::io::Result<()> {
        if let Some(mut file) = self.file.take() {
            file.flush().await?;
            file.sync_all().await?;
        }
        self.arrived = true;
        Ok(())
    }

    /// Puts an arrived snapshot in place, or removes what a broken one left.
    pub async fn discard(&mut self, destination: &std::path::Path) {
        self.file = None;
        if let Some(partial) = self.partial.take() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        let _ = tokio::fs::remove_file(destination).await;
    }

    pub async fn place(&mut self, destination: &std::path::Path) -> std::io::Result<()> {
        if let Some(partial) = self.partial.take() {
            tokio::fs::rename(&partial, destination).await?;
        }
        Ok(())
    }
}
