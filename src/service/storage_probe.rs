//! Whether the store answers, probed in the background so that `/healthz` (asked before
//! every run by every client) never waits on a database that is down.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::app::App;
use crate::store::StorageTrouble;

/// How often the store is asked.
const EVERY: Duration = Duration::from_secs(2);
/// A probe taking longer than this counts as the store being unavailable.
const PATIENCE: Duration = Duration::from_secs(3);
/// A user id that never has files: listing it is one cheap round trip on either backend.
const PROBE_USER: &str = "codebox-health-probe";

/// Stops probing when dropped (with the service).
pub struct StorageProbe {
    last: Arc<Mutex<Option<StorageTrouble>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StorageProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StorageProbe {
    /// Starts probing `app`'s store until dropped.
    pub fn start(app: Arc<App>) -> StorageProbe {
        let last = Arc::new(Mutex::new(None));
        let seen = last.clone();
        let task = tokio::spawn(async move {
            loop {
                let trouble = match tokio::time::timeout(PATIENCE, app.list_files(PROBE_USER)).await
                {
                    Ok(Ok(_)) => None,
                    Ok(Err(err)) => {
                        Some(err.storage_trouble().unwrap_or(StorageTrouble::Unavailable))
                    }
                    Err(_) => Some(StorageTrouble::Unavailable),
                };
                let changed = {
                    let mut last = seen.lock().unwrap_or_else(|p| p.into_inner());
                    std::mem::replace(&mut *last, trouble) != trouble
                };
                if changed {
                    match trouble {
                        Some(trouble) => tracing::warn!(?trouble, "storage degraded"),
                        None => tracing::info!("storage answers again"),
                    }
                }
                tokio::time::sleep(EVERY).await;
            }
        });
        StorageProbe { last, task }
    }

    /// The trouble seen by the last probe, if any.
    pub fn trouble(&self) -> Option<StorageTrouble> {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}
