//! A container that is removed on every path: the guard owns it from the creation request
//! on, so an error, a panic or a dropped request cannot leave it behind.

use std::sync::Arc;

use bollard::models::ContainerCreateBody;

use super::engine::{Containers, EngineError};

/// Removes the container when dropped without `remove` (an early return, an error, a
/// cancelled request or a panic), so no path leaves a container behind, including a drop
/// while the daemon is still creating it.
pub struct ContainerGuard<E: Containers + 'static> {
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
    pub fn create(engine: &Arc<E>, name: String, body: ContainerCreateBody) -> ContainerGuard<E> {
        let creation = {
            let engine = engine.clone();
            tokio::spawn(async move { engine.create(&name, body).await })
        };
        ContainerGuard {
            engine: engine.clone(),
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
    /// to `patience`; the last error when it never succeeded.
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
                Err(err) if tokio::time::Instant::now() + pause > deadline => return Err(err),
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
        let engine = self.engine.clone();
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no runtime to remove a sandbox container; the next start reaps it");
            return;
        };
        handle.spawn(async move {
            let id = match state {
                GuardState::Created(id) => id,
                GuardState::Creating(task) => match task.await {
                    Ok(Ok(id)) => id,
                    _ => return,
                },
                GuardState::Done => return,
            };
            if let Err(err) = engine.remove(&id).await {
                tracing::warn!(container = %id, error = %err, "cannot remove sandbox container");
            }
        });
    }
}
