//! A container that is removed on every path: the guard owns it from the creation request
//! on, so an error, a panic or a dropped request cannot leave it behind.

use std::sync::Arc;

use bollard::models::ContainerCreateBody;

use super::engine::{Containers, EngineError};
use super::retirer::Retirer;

/// Removes the container when dropped without `remove` (an early return, an error, a
/// cancelled request or a panic), so no path leaves a container behind, including a drop
/// while the daemon is still creating it. A dropped guard hands its container to the
/// retirer, so the removal is tracked and `Retirer::drain` waits for it at shutdown.
pub struct ContainerGuard<E: Containers + 'static> {
    engine: Arc<E>,
    retirer: Arc<Retirer>,
    state: GuardState,
}

enum GuardState {
    Creating(tokio::task::JoinHandle<Result<String, EngineError>>),
    Created(String),
    Done,
}

impl<E: Containers + 'static> ContainerGuard<E> {
    /// Starts creating the container in its own task; the guard holds it from this moment.
    /// `retirer` removes it if the guard is dropped before `remove`.
    pub fn create(
        engine: &Arc<E>,
        retirer: &Arc<Retirer>,
        name: String,
        body: ContainerCreateBody,
    ) -> ContainerGuard<E> {
        let creation = {
            let engine = engine.clone();
            tokio::spawn(async move { engine.create(&name, body).await })
        };
        ContainerGuard {
            engine: engine.clone(),
            retirer: retirer.clone(),
            state: GuardState::Creating(creation),
        }
    }

    /// Waits for the creation to finish; the id of the new container.
    pub async fn created(&mut self) -> Result<String, EngineError> {
        if let GuardState::Creating(task) = &mut self.state {
            let result = task.await.unwrap_or_else(|join| {
                Err(EngineError::Api {
                    operation: "create",
                    reason: join.to_string(),
                })
            });
            self.state = match &result {
                Ok(id) => GuardState::Created(id.clone()),
                Err(_) => GuardState::Done,
            };
            return result;
        }
        match &self.state {
            GuardState::Created(id) => Ok(id.clone()),
            _ => Err(EngineError::Api {
                operation: "create",
                reason: "the container was already removed".to_string(),
            }),
        }
    }

    /// Removes the container. The guard stays armed until the daemon confirmed, so a drop
    /// in the middle (a cancelled request) still removes it.
    pub async fn remove(mut self) -> Result<(), EngineError> {
        let id = match self.created().await {
            Ok(id) => id,
            Err(_) => return Ok(()),
        };
        self.engine.remove(&id).await?;
        self.state = GuardState::Done;
        Ok(())
    }

    /// Removes the container, retrying while the daemon is unreachable (a restart), for up
    /// to `patience`; the last error when it never succeeded. Either way the guard is
    /// disarmed: after this much patience the next start's reaper removes the container.
    pub async fn remove_patiently(
        mut self,
        patience: std::time::Duration,
    ) -> Result<(), EngineError> {
        let id = match self.created().await {
            Ok(id) => id,
            Err(_) => return Ok(()),
        };
        let deadline = tokio::time::Instant::now() + patience;
        let mut pause = std::time::Duration::from_millis(250);
        loop {
            match self.engine.remove(&id).await {
                Ok(()) => {
                    self.state = GuardState::Done;
                    return Ok(());
                }
                Err(err) if tokio::time::Instant::now() + pause > deadline => {
                    self.state = GuardState::Done;
                    return Err(err);
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(5));
                }
            }
        }
    }
}

impl<E: Containers + 'static> Drop for ContainerGuard<E> {
    fn drop(&mut self) {
        let state = std::mem::replace(&mut self.state, GuardState::Done);
        if matches!(state, GuardState::Done) {
            return;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::warn!("no runtime to remove a sandbox container; the next start reaps it");
            return;
        }
        // A new guard for the same container: the retirer's task owns it from here, and
        // `drain` waits for it like for any other used container.
        let armed = ContainerGuard {
            engine: self.engine.clone(),
            retirer: self.retirer.clone(),
            state,
        };
        self.retirer.retire(armed, None);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt;

    use super::*;
    use crate::sandbox::live::start_attached;
    use crate::sandbox::scripted::{Script, ScriptedEngine};

    #[tokio::test(start_paused = true)]
    async fn a_guard_dropped_mid_run_is_removed_before_drain_returns() {
        let engine = Arc::new(
            ScriptedEngine::new()
                .script(Script::new().line(r#"{"event":"ready"}"#).hang())
                .remove_delay(Duration::from_secs(2)),
        );
        let retirer = Arc::new(Retirer::default());
        let (guard, id, mut attached) = start_attached(
            &engine,
            &retirer,
            "run".to_string(),
            ContainerCreateBody::default(),
        )
        .await
        .unwrap();
        assert!(attached.output.next().await.is_some());
        drop(guard);
        assert!(engine.removed().is_empty());
        assert!(retirer.drain(Duration::from_secs(60)).await);
        assert_eq!(engine.removed(), [id]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_guard_dropped_while_creating_is_removed_once_created() {
        let engine = Arc::new(ScriptedEngine::new().remove_delay(Duration::from_secs(2)));
        let retirer = Arc::new(Retirer::default());
        let guard = ContainerGuard::create(
            &engine,
            &retirer,
            "run".to_string(),
            ContainerCreateBody::default(),
        );
        drop(guard);
        assert!(retirer.drain(Duration::from_secs(60)).await);
        assert_eq!(engine.created(), 1);
        assert_eq!(engine.removed().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_removal_that_never_succeeds_gives_up_and_disarms() {
        let engine = Arc::new(ScriptedEngine::new().script(Script::new().daemon_dies()));
        let retirer = Arc::new(Retirer::default());
        let (guard, _, mut attached) = start_attached(
            &engine,
            &retirer,
            "run".to_string(),
            ContainerCreateBody::default(),
        )
        .await
        .unwrap();
        assert!(attached.output.next().await.is_some_and(|r| r.is_err()));
        let removal = guard.remove_patiently(Duration::from_secs(10)).await;
        assert!(matches!(removal, Err(EngineError::Unavailable { .. })));
        // Disarmed: nothing was handed to the retirer to retry all over again.
        assert!(retirer.drain(Duration::from_millis(1)).await);
        assert!(engine.removed().is_empty());
    }
}
