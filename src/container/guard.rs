//! A container that is removed on every path: the guard owns it from the creation request
//! on, so an error, a panic or a dropped request cannot leave it behind.

use std::sync::Arc;
use std::time::Duration;

use bollard::models::ContainerCreateBody;

use super::engine::{Containers, EngineError};
use super::retirer::Retirer;

/// Removes the container when dropped without `remove` (an early return, an error, a
/// cancelled request or a panic), so no path leaves a container behind, including a drop
/// while the daemon is still creating it. A dropped guard hands its container to the
/// retirer, so the removal is tracked and `Retirer::drain` waits for it at shutdown.
pub struct ContainerGuard<E: Containers + 'static> {
    retirer: Arc<Retirer>,
    removal: Removal<E>,
}

/// A container whose only future is its removal, as the retirer holds it. It has no
/// `Drop`: a retirer's task dropped unrun (the runtime shutting down) leaves the container
/// to the next start's reaper instead of handing it over again and again.
pub struct Removal<E: Containers + 'static> {
    engine: Arc<E>,
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
            retirer: retirer.clone(),
            removal: Removal {
                engine: engine.clone(),
                state: GuardState::Creating(creation),
            },
        }
    }

    /// Waits for the creation to finish; the id of the new container.
    pub async fn created(&mut self) -> Result<String, EngineError> {
        self.removal.created().await
    }

    /// Removes the container. The guard stays armed until the daemon confirmed, so a drop
    /// in the middle (a cancelled request) or a failed removal still hands it to the
    /// retirer.
    pub async fn remove(mut self) -> Result<(), EngineError> {
        let id = match self.removal.created().await {
            Ok(id) => id,
            Err(_) => return Ok(()),
        };
        self.removal.engine.remove(&id).await?;
        self.removal.state = GuardState::Done;
        Ok(())
    }

    /// The removal, taken out of the guard: from here its owner (the retirer) removes it.
    pub fn disarm(mut self) -> Removal<E> {
        self.removal.take()
    }
}

impl<E: Containers + 'static> Removal<E> {
    fn take(&mut self) -> Removal<E> {
        Removal {
            engine: self.engine.clone(),
            state: std::mem::replace(&mut self.state, GuardState::Done),
        }
    }

    async fn created(&mut self) -> Result<String, EngineError> {
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

    /// Removes the container, retrying while the daemon is unreachable (a restart), for up
    /// to `patience`; the last error when it never succeeded (the next start's reaper
    /// removes it then).
    pub async fn remove_patiently(mut self, patience: Duration) -> Result<(), EngineError> {
        let id = match self.created().await {
            Ok(id) => id,
            Err(_) => return Ok(()),
        };
        let deadline = tokio::time::Instant::now() + patience;
        let mut pause = Duration::from_millis(250);
        loop {
            match self.engine.remove(&id).await {
                Ok(()) => return Ok(()),
                Err(err) if tokio::time::Instant::now() + pause > deadline => return Err(err),
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

impl<E: Containers + 'static> Drop for ContainerGuard<E> {
    fn drop(&mut self) {
        if matches!(self.removal.state, GuardState::Done) {
            return;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::warn!("no runtime to remove a sandbox container; the next start reaps it");
            return;
        }
        self.retirer.take_over(self.removal.take(), None);
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;
    use crate::container::attach::start_attached;
    use crate::container::engine::Attached;
    use crate::container::scripted::{Script, ScriptedEngine};

    async fn started(
        engine: &Arc<ScriptedEngine>,
        retirer: &Arc<Retirer>,
    ) -> (ContainerGuard<ScriptedEngine>, String, Attached) {
        start_attached(
            engine,
            retirer,
            "run".to_string(),
            ContainerCreateBody::default(),
        )
        .await
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_guard_dropped_mid_run_is_removed_before_drain_returns() {
        let engine = Arc::new(
            ScriptedEngine::new()
                .script(Script::new().line(r#"{"event":"ready"}"#).hang())
                .remove_delay(Duration::from_secs(2)),
        );
        let retirer = Arc::new(Retirer::default());
        let (guard, id, mut attached) = started(&engine, &retirer).await;
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
        let (guard, _, mut attached) = started(&engine, &retirer).await;
        assert!(attached.output.next().await.is_some_and(|r| r.is_err()));
        retirer.retire(guard, None);
        assert!(retirer.drain(Duration::from_secs(600)).await);
        // Nothing was handed back to the retirer to retry all over again.
        assert!(retirer.drain(Duration::from_millis(1)).await);
        assert!(engine.removed().is_empty());
    }
}
