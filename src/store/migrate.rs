//! `codebox files migrate`: a store whose bytes are on this host's disk moves them into
//! GridFS, file by file, each one checked before its disk copy goes. Safe to run again: a
//! file already in GridFS is only tidied up on disk.

use std::path::PathBuf;

use super::disk::DiskBlobs;
use super::files::{FileStore, StoreError};
use super::gridfs::GridFsBlobs;
use super::metadata::Metadata;

#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct MigrateReport {
    /// Files whose bytes were copied into GridFS.
    pub moved: Vec<String>,
    /// Files already in GridFS (their disk copy, if any, removed).
    pub already: Vec<String>,
    /// Records with bytes in neither place (the reconcile pass drops them).
    pub missing: Vec<String>,
}

pub async fn disk_to_gridfs<M: Metadata>(
    store: &FileStore<M>,
    disk: &DiskBlobs,
    gridfs: &GridFsBlobs,
) -> Result<MigrateReport, StoreError> {
    let mut report = MigrateReport::default();
    for record in store.metadata().all().await? {
        let path: PathBuf = disk.path_of(&record);
        let on_disk = path.is_file();
        if gridfs.contains(&record.file_id).await? {
            report.already.push(record.file_id.clone());
        } else if on_disk {
            gridfs.upload(&record.file_id, &path).await?;
            if !gridfs.contains(&record.file_id).await? {
                return Err(StoreError::Io {
                    path,
                    source: std::io::Error::other("GridFS did not keep the uploaded file"),
                });
            }
            report.moved.push(record.file_id.clone());
        } else {
            report.missing.push(record.file_id.clone());
            continue;
        }
        if on_disk {
            std::fs::remove_file(&path).map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        }
    }
    Ok(report)
}
