//! Work running for users, each cancellable by its user (/stop) or all at once (shutdown).
//! Cancelling aborts the task: the executor's guards then remove its containers.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::task::AbortHandle;

#[derive(Default)]
pub struct Running {
    tasks: Mutex<HashMap<String, (u64, AbortHandle)>>,
    next_id: AtomicU64,
    /// Tasks not yet finished (a cancelled one counts until its future is dropped, which is
    /// when its containers are handed to the retirer).
    live: AtomicU64,
    settled: tokio::sync::Notify,
    /// When each user's work was last cancelled, until they start new work: their next
    /// message may arrive while the cancelled task is still being torn down.
    cancelled_at: Mutex<HashMap<String, std::time::Instant>>,
}

impl Running {
    /// Runs `work` as its own task registered under `user_id`; None when it was cancelled
    /// (or panicked: the panic is logged, never propagated into the front end).
    pub async fn run<T: Send + 'static>(
        &self,
        user_id: &str,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.live.fetch_add(1, Ordering::SeqCst);
        let task = tokio::spawn(work);
        self.lock()
            .insert(user_id.to_string(), (id, task.abort_handle()));
        self.cancellations().remove(user_id);
        let outcome = task.await;
        if self.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.settled.notify_waiters();
        }
        {
            let mut tasks = self.lock();
            if tasks
                .get(user_id)
                .is_some_and(|(task_id, _)| *task_id == id)
            {
                tasks.remove(user_id);
            }
        }
        match outcome {
            Ok(value) => Some(value),
            Err(err) if err.is_cancelled() => None,
            Err(err) => {
                tracing::error!(error = %err, "a user's work panicked");
                None
            }
        }
    }

    /// Cancels the user's work; false when there is none or it has just finished (its
    /// result stands: a late Stop must not relabel a finished run).
    pub fn cancel(&self, user_id: &str) -> bool {
        match self.lock().remove(user_id) {
            Some((_, handle)) if !handle.is_finished() => {
                handle.abort();
                self.cancellations()
                    .insert(user_id.to_string(), std::time::Instant::now());
                true
            }
            _ => false,
        }
    }

    /// Whether the user's work was cancelled within `within` and nothing new started since.
    pub fn cancelled_within(&self, user_id: &str, within: std::time::Duration) -> bool {
        self.cancellations()
            .get(user_id)
            .is_some_and(|at| at.elapsed() < within)
    }

    fn cancellations(&self) -> std::sync::MutexGuard<'_, HashMap<String, std::time::Instant>> {
        self.cancelled_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_running(&self, user_id: &str) -> bool {
        self.lock().contains_key(user_id)
    }

    pub fn cancel_all(&self) {
        for (_, (_, handle)) in self.lock().drain() {
            handle.abort();
        }
    }

    /// Waits (bounded) until every task has finished or, cancelled, has been dropped.
    pub async fn settle(&self, patience: std::time::Duration) -> bool {
        let wait = async {
            loop {
                let settled = self.settled.notified();
                if self.live.load(Ordering::SeqCst) == 0 {
                    return;
                }
                settled.await;
            }
        };
        tokio::time::timeout(patience, wait).await.is_ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, AbortHandle)>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn cancel_stops_the_users_work_and_only_theirs() {
        let running = Arc::new(Running::default());
        let long = {
            let running = running.clone();
            tokio::spawn(async move {
                running
                    .run("a", async {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        1
                    })
                    .await
            })
        };
        let other = {
            let running = running.clone();
            tokio::spawn(async move { running.run("b", async { 2 }).await })
        };
        while !running.is_running("a") {
            tokio::task::yield_now().await;
        }
        assert!(running.cancel("a"));
        assert_eq!(long.await.unwrap(), None);
        assert_eq!(other.await.unwrap(), Some(2));
        assert!(!running.cancel("a"), "nothing left to cancel");
        assert!(running.settle(Duration::from_secs(1)).await);
        assert!(running.cancelled_within("a", Duration::from_secs(10)));
        assert!(!running.cancelled_within("b", Duration::from_secs(10)));
        assert_eq!(running.run("a", async { 3 }).await, Some(3));
        assert!(
            !running.cancelled_within("a", Duration::from_secs(10)),
            "new work clears the cancellation"
        );
    }
}
