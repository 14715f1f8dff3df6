//! Removal of used containers off the request's path: the result goes back to the caller
//! while the daemon removes the container. Every removal is tracked, retried through a
//! daemon restart, and awaited (bounded) by `drain` at shutdown.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::engine::Containers;
use super::guard::{ContainerGuard, Removal};

/// How long a removal is retried while the daemon does not answer.
const REMOVAL_PATIENCE: Duration = Duration::from_secs(300);

#[derive(Default)]
pub struct Retirer {
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Retirer {
    /// Removes the container (and a host directory that belonged to it) in the background.
    pub fn retire<E: Containers + 'static>(
        &self,
        guard: ContainerGuard<E>,
        directory: Option<PathBuf>,
    ) {
        self.take_over(guard.disarm(), directory);
    }

    /// Like `retire`, for a removal already out of its guard (a dropped guard's).
    pub fn take_over<E: Containers + 'static>(
        &self,
        removal: Removal<E>,
        directory: Option<PathBuf>,
    ) {
        let task = tokio::spawn(async move {
            // A container found dead may be dead because the daemon is restarting.
            if let Err(err) = removal.remove_patiently(REMOVAL_PATIENCE).await {
                tracing::warn!(error = %err, "cannot remove a used sandbox container");
            }
            if let Some(directory) = directory {
                let _ = tokio::fs::remove_dir_all(&directory).await;
            }
        });
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.retain(|t| !t.is_finished());
            tasks.push(task);
        }
    }

    /// Waits up to `patience` for every removal in flight, including those handed over
    /// while it waits (a guard dropped by a cancelled run); false when some did not finish
    /// (the next start's reaper removes those).
    pub async fn drain(&self, patience: Duration) -> bool {
        let all = async {
            loop {
                let pending: Vec<JoinHandle<()>> = self
                    .tasks
                    .lock()
                    .map(|mut tasks| tasks.drain(..).collect())
                    .unwrap_or_default();
                if pending.is_empty() {
                    return;
                }
                futures_util::future::join_all(pending).await;
            }
        };
        tokio::time::timeout(patience, all).await.is_ok()
    }
}
