//! A started sandbox container with its one attach stream: what a fresh run creates just in
//! time and what the warm pool creates ahead of time. The guard inside removes it on every
//! path.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};

use super::protocol::{Decoder, Item, OutdatedImage, RunnerEvent, check_ready};
use super::spec::{ContainerSpec, container_config, container_name};
use crate::container::attach::start_attached;
use crate::container::engine::{Attached, Chunk, Containers, EngineError};
use crate::container::guard::ContainerGuard;
use crate::container::retirer::Retirer;

/// The runner's own stderr (its crash messages, never the user's) is kept up to this size.
pub const RUNNER_DIAGNOSTICS_BYTES: usize = 16 * 1024;

pub struct LiveContainer<E: Containers + 'static> {
    pub guard: ContainerGuard<E>,
    pub id: String,
    pub run_id: String,
    /// The image it runs, named when its runner turns out to be out of date.
    pub image: String,
    /// Its runner said `ready` in this codebox's protocol version (`wait_ready`); a job
    /// is written only to a ready runner.
    pub ready: bool,
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
    #[error(transparent)]
    Outdated(#[from] OutdatedImage),
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
        image: spec.image.clone(),
        ready: false,
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

    /// Reads the stream up to the runner's `ready` (it has imported what it preloads) and
    /// checks that it speaks this codebox's protocol version.
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
                            Some(Item::Event(RunnerEvent::Ready { protocol }))
                                if items.len() == 1 =>
                            {
                                check_ready(&self.image, *protocol)?;
                                self.ready = true;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::container::scripted::{Script, ScriptedEngine};
    use crate::sandbox::limits::Limits;
    use crate::sandbox::protocol::PROTOCOL_VERSION;

    async fn warm_up(ready: &str) -> (Result<(), LiveError>, bool) {
        let engine = Arc::new(ScriptedEngine::new().script(Script::new().line(ready).hang()));
        let retirer = Arc::new(Retirer::default());
        let settings = crate::config::SandboxSettings::default();
        let spec = ContainerSpec {
            image: "codebox-sandbox:test".to_string(),
            limits: Limits::from_settings(&settings),
            input_dir: None,
            run_id: "warm".to_string(),
            owner: "test".to_string(),
            preload: true,
            pool_id: None,
            packages_dir: None,
            state_mb: None,
            code_uid: 10001,
        };
        let mut live = launch(&engine, &retirer, &spec).await.unwrap();
        let ready = live.wait_ready(Duration::from_secs(5)).await;
        (ready, live.ready)
    }

    #[tokio::test]
    async fn a_warm_runner_of_this_protocol_version_is_ready() {
        let line = format!(r#"{{"event":"ready","protocol":{PROTOCOL_VERSION}}}"#);
        let (ready, flag) = warm_up(&line).await;
        assert!(ready.is_ok(), "{ready:?}");
        assert!(flag);
    }

    #[tokio::test]
    async fn a_warm_runner_of_another_protocol_version_is_out_of_date() {
        for line in [r#"{"event":"ready"}"#, r#"{"event":"ready","protocol":99}"#] {
            let (ready, flag) = warm_up(line).await;
            let err = ready.unwrap_err();
            assert!(matches!(err, LiveError::Outdated(_)), "{err:?}");
            assert!(
                err.to_string()
                    .contains("codebox-sandbox:test is out of date")
            );
            assert!(!flag);
        }
    }
}
