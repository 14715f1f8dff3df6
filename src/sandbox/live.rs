//! A started sandbox container with its one attach stream: what a fresh run creates just in
//! time and what the warm pool creates ahead of time. The guard inside removes it on every
//! path.

use std::sync::Arc;
use std::time::Duration;

use bollard::models::ContainerCreateBody;
use futures_util::{FutureExt, StreamExt};

use super::engine::{Attached, Chunk, Containers, EngineError};
use super::guard::ContainerGuard;
use super::protocol::{Decoder, Item, RunnerEvent};
use super::retirer::Retirer;
use super::spec::{ContainerSpec, container_config, container_name};

/// The runner's own stderr (its crash messages, never the user's) is kept up to this size.
pub const RUNNER_DIAGNOSTICS_BYTES: usize = 16 * 1024;

pub struct LiveContainer<E: Containers + 'static> {
    pub guard: ContainerGuard<E>,
    pub id: String,
    pub run_id: String,
    pub attached: Attached,
    pub decoder: Decoder,
    /// Runner stderr seen so far.
    pub diagnostics: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the sandbox runner did not become ready within {seconds} s")]
    NotReady { seconds: f64 },
    #[error("the sandbox runner ended before it was ready: {detail}")]
    Ended { detail: String },
}

/// Creates, attaches (before start, so no output is missed) and starts a container from
/// any body; the guard holds it from the creation request on, and hands it to `retirer`
/// when dropped.
pub async fn start_attached<E: Containers + 'static>(
    engine: &Arc<E>,
    retirer: &Arc<Retirer>,
    name: String,
    body: ContainerCreateBody,
) -> Result<(ContainerGuard<E>, String, Attached), EngineError> {
    let mut guard = ContainerGuard::create(engine, retirer, name, body);
    let id = guard.created().await?;
    let attached = engine.attach(&id).await?;
    engine.start(&id).await?;
    Ok((guard, id, attached))
}

/// Starts one sandbox container for `spec`.
pub async fn launch<E: Containers + 'static>(
    engine: &Arc<E>,
    retirer: &Arc<Retirer>,
    spec: &ContainerSpec,
) -> Result<LiveContainer<E>, EngineError> {
    let (guard, id, attached) = start_attached(
        engine,
        retirer,
        container_name(&spec.run_id),
        container_config(spec),
    )
    .await?;
    Ok(LiveContainer {
        guard,
        id,
        run_id: spec.run_id.clone(),
        attached,
        decoder: Decoder::for_limits(&spec.limits),
        diagnostics: Vec::new(),
    })
}

impl<E: Containers + 'static> LiveContainer<E> {
    pub fn keep_diagnostics(&mut self, data: &[u8]) {
        let room = RUNNER_DIAGNOSTICS_BYTES.saturating_sub(self.diagnostics.len());
        self.diagnostics
            .extend_from_slice(&data[..data.len().min(room)]);
    }

    /// Reads the stream up to the runner's `ready` (it has imported what it preloads).
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), LiveError> {
        let read = async {
            while let Some(chunk) = self.attached.output.next().await {
                match chunk? {
                    Chunk::Stderr(data) => self.keep_diagnostics(&data),
                    Chunk::Stdout(data) => {
                        let items = self.decoder.push(&data).map_err(|e| LiveError::Ended {
                            detail: e.to_string(),
                        })?;
                        match items.first() {
                            Some(Item::Event(RunnerEvent::Ready)) if items.len() == 1 => {
                                return Ok(());
                            }
                            None => {}
                            Some(other) => {
                                return Err(LiveError::Ended {
                                    detail: format!("unexpected {other:?} before the job"),
                                });
                            }
                        }
                    }
                }
            }
            Err(LiveError::Ended {
                detail: String::from_utf8_lossy(&self.diagnostics)
                    .trim()
                    .to_string(),
            })
        };
        tokio::time::timeout(timeout, read)
            .await
            .unwrap_or(Err(LiveError::NotReady {
                seconds: timeout.as_secs_f64(),
            }))
    }

    /// Whether a waiting container is still there, from its stream alone (no API call): a
    /// container that died or whose daemon restarted has a closed stream.
    pub fn is_alive(&mut self) -> bool {
        loop {
            match self.attached.output.next().now_or_never() {
                None => return true,
                Some(Some(Ok(Chunk::Stderr(data)))) => self.keep_diagnostics(&data),
                // Nothing may arrive on stdout before the job; and an ended stream is a dead
                // container.
                Some(Some(Ok(Chunk::Stdout(_)))) | Some(Some(Err(_))) | Some(None) => {
                    return false;
                }
            }
        }
    }
}
