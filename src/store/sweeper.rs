//! The periodic sweep of expired files (and reconcile of orphans) inside long-running
//! processes. The original bot defined such a task and never started it; this one starts
//! with `spawn` and stops when its handle is dropped.

use std::sync::Arc;
use std::time::Duration;

use super::files::FileStore;
use super::metadata::Metadata;

pub struct SweeperHandle {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SweeperHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sweeps now, then every `interval`.
pub fn spawn<M: Metadata + 'static>(store: Arc<FileStore<M>>, interval: Duration) -> SweeperHandle {
    spawn_with(store, interval, || {})
}

/// Sweeps now, then every `interval`, and after each sweep runs `also` (blocking file work
/// of the process's own, such as removing what dead runs left) off the async threads.
pub fn spawn_with<M: Metadata + 'static>(
    store: Arc<FileStore<M>>,
    interval: Duration,
    also: impl Fn() + Send + Sync + 'static,
) -> SweeperHandle {
    let also = Arc::new(also);
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match store.sweep(store.clock().now()).await {
                Ok(report) => tracing::debug!(removed = report.removed.len(), "sweep done"),
                Err(err) => tracing::warn!(error = %err, "sweep failed"),
            }
            if let Err(err) = store.reconcile().await {
                tracing::warn!(error = %err, "reconcile failed");
            }
            let also = also.clone();
            if let Err(err) = tokio::task::spawn_blocking(move || also()).await {
                tracing::warn!(error = %err, "housekeeping after the sweep failed");
            }
        }
    });
    SweeperHandle { task }
}
