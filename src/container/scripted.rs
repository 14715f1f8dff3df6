//! A container engine for unit tests: each container's attach stream plays a script
//! (stdout and stderr chunks, pauses, an error, an end or no end at all) and every call is
//! recorded, so the executor's endings and the guard's removals are tested without Docker.
//! Pauses follow tokio's clock, so tests with paused time run them instantly.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bollard::models::ContainerCreateBody;
use bytes::Bytes;
use tokio::io::AsyncWrite;
use tokio::sync::watch;

use crate::container::engine::{
    Attached, Chunk, Containers, EngineError, ExitState, ManagedContainer, OutputStream,
};

#[derive(Debug, Clone)]
pub enum Step {
    Stdout(Bytes),
    Stderr(Bytes),
    /// Nothing arrives for this long (a kill still ends the stream at once).
    Delay(Duration),
    /// The stream yields this error and ends.
    Fail(String),
    /// The daemon goes away: the stream yields `Unavailable` and ends, and every later
    /// call on the engine fails with `Unavailable`.
    DaemonDies,
}

/// What one container's attach stream says. The default script ends at once (a container
/// that died on start).
#[derive(Debug, Clone, Default)]
pub struct Script {
    steps: Vec<Step>,
    /// After the last step the stream stays open and silent until the container is killed
    /// or removed, like a runner stuck in the user's code.
    hangs: bool,
}

impl Script {
    pub fn new() -> Script {
        Script::default()
    }

    /// One protocol line on stdout; the newline is added.
    pub fn line(self, json: &str) -> Script {
        let mut line = json.as_bytes().to_vec();
        line.push(b'\n');
        self.stdout(line)
    }

    pub fn stdout(mut self, data: impl Into<Vec<u8>>) -> Script {
        self.steps.push(Step::Stdout(Bytes::from(data.into())));
        self
    }

    pub fn stderr(mut self, data: impl Into<Vec<u8>>) -> Script {
        self.steps.push(Step::Stderr(Bytes::from(data.into())));
        self
    }

    pub fn delay(mut self, pause: Duration) -> Script {
        self.steps.push(Step::Delay(pause));
        self
    }

    pub fn fail(mut self, reason: &str) -> Script {
        self.steps.push(Step::Fail(reason.to_string()));
        self
    }

    pub fn daemon_dies(mut self) -> Script {
        self.steps.push(Step::DaemonDies);
        self
    }

    pub fn hang(mut self) -> Script {
        self.hangs = true;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// The container's name.
    Create(String),
    Attach(String),
    Start(String),
    Kill(String),
    ExitState(String),
    /// Recorded when the removal completed (after the scripted removal delay).
    Remove(String),
    ListManaged,
}

struct Container {
    labels: HashMap<String, String>,
    stdin: Arc<Mutex<Vec<u8>>>,
    /// Set on kill and removal: the stream ends, as a real attach stream does.
    stopped: watch::Sender<bool>,
    removed: bool,
}

struct State {
    scripts: VecDeque<Script>,
    calls: Vec<Call>,
    exit: ExitState,
    remove_delay: Duration,
    containers: HashMap<String, Container>,
    created: u64,
}

pub struct ScriptedEngine {
    state: Mutex<State>,
    unavailable: Arc<AtomicBool>,
}

impl Default for ScriptedEngine {
    fn default() -> Self {
        ScriptedEngine {
            state: Mutex::new(State {
                scripts: VecDeque::new(),
                calls: Vec::new(),
                exit: ExitState {
                    running: false,
                    exit_code: Some(0),
                    oom_killed: false,
                },
                remove_delay: Duration::ZERO,
                containers: HashMap::new(),
                created: 0,
            }),
            unavailable: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl ScriptedEngine {
    pub fn new() -> ScriptedEngine {
        ScriptedEngine::default()
    }

    /// The next attached container plays this script (scripts are used in order).
    pub fn script(self, script: Script) -> ScriptedEngine {
        self.state().scripts.push_back(script);
        self
    }

    /// What `exit_state` reports for every container.
    pub fn exit_code(self, code: i64) -> ScriptedEngine {
        self.state().exit.exit_code = Some(code);
        self
    }

    pub fn oom_killed(self) -> ScriptedEngine {
        {
            let mut state = self.state();
            state.exit.oom_killed = true;
            state.exit.exit_code = Some(137);
        }
        self
    }

    /// Each removal takes this long before it is recorded.
    pub fn remove_delay(self, pause: Duration) -> ScriptedEngine {
        self.state().remove_delay = pause;
        self
    }

    /// The daemon is gone: every call fails with `Unavailable`.
    pub fn unavailable(self) -> ScriptedEngine {
        self.unavailable.store(true, Ordering::SeqCst);
        self
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    pub fn removed(&self) -> Vec<String> {
        self.ids_of(|call| match call {
            Call::Remove(id) => Some(id),
            _ => None,
        })
    }

    pub fn killed(&self) -> Vec<String> {
        self.ids_of(|call| match call {
            Call::Kill(id) => Some(id),
            _ => None,
        })
    }

    pub fn created(&self) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|call| matches!(call, Call::Create(_)))
            .count()
    }

    /// Everything the host wrote to this container's stdin.
    pub fn stdin(&self, id: &str) -> Vec<u8> {
        self.state()
            .containers
            .get(id)
            .map(|c| c.stdin.lock().unwrap().clone())
            .unwrap_or_default()
    }

    fn ids_of(&self, pick: impl Fn(&Call) -> Option<&String>) -> Vec<String> {
        self.state()
            .calls
            .iter()
            .filter_map(|call| pick(call).cloned())
            .collect()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn check(&self) -> Result<(), EngineError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(gone());
        }
        Ok(())
    }

    fn record(&self, call: Call) {
        self.state().calls.push(call);
    }
}

fn gone() -> EngineError {
    EngineError::Unavailable {
        reason: "the scripted daemon is gone".to_string(),
    }
}

impl Containers for ScriptedEngine {
    async fn create(&self, name: &str, body: ContainerCreateBody) -> Result<String, EngineError> {
        self.check()?;
        let mut state = self.state();
        state.calls.push(Call::Create(name.to_string()));
        state.created += 1;
        let id = format!("scripted-{}", state.created);
        state.containers.insert(
            id.clone(),
            Container {
                labels: body.labels.unwrap_or_default(),
                stdin: Arc::new(Mutex::new(Vec::new())),
                stopped: watch::channel(false).0,
                removed: false,
            },
        );
        Ok(id)
    }

    async fn attach(&self, id: &str) -> Result<Attached, EngineError> {
        self.check()?;
        let mut state = self.state();
        state.calls.push(Call::Attach(id.to_string()));
        let script = state.scripts.pop_front().unwrap_or_default();
        let container = state.containers.get(id).ok_or_else(|| EngineError::Api {
            operation: "attach",
            reason: format!("no such container {id}"),
        })?;
        Ok(Attached {
            output: play(
                script,
                container.stopped.subscribe(),
                self.unavailable.clone(),
            ),
            input: Box::pin(Recorder(container.stdin.clone())),
        })
    }

    async fn start(&self, id: &str) -> Result<(), EngineError> {
        self.check()?;
        self.record(Call::Start(id.to_string()));
        Ok(())
    }

    async fn kill(&self, id: &str) -> Result<(), EngineError> {
        self.check()?;
        let mut state = self.state();
        state.calls.push(Call::Kill(id.to_string()));
        if let Some(container) = state.containers.get(id) {
            container.stopped.send_replace(true);
        }
        Ok(())
    }

    async fn exit_state(&self, id: &str) -> Result<ExitState, EngineError> {
        self.check()?;
        let mut state = self.state();
        state.calls.push(Call::ExitState(id.to_string()));
        Ok(state.exit.clone())
    }

    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        self.check()?;
        let pause = self.state().remove_delay;
        tokio::time::sleep(pause).await;
        self.check()?;
        let mut state = self.state();
        state.calls.push(Call::Remove(id.to_string()));
        if let Some(container) = state.containers.get_mut(id) {
            container.removed = true;
            container.stopped.send_replace(true);
        }
        Ok(())
    }

    async fn list_managed(&self) -> Result<Vec<ManagedContainer>, EngineError> {
        self.check()?;
        let mut state = self.state();
        state.calls.push(Call::ListManaged);
        Ok(state
            .containers
            .iter()
            .filter(|(_, c)| !c.removed)
            .map(|(id, c)| ManagedContainer {
                id: id.clone(),
                labels: c.labels.clone(),
            })
            .collect())
    }
}

struct Playing {
    steps: std::vec::IntoIter<Step>,
    hangs: bool,
    stopped: watch::Receiver<bool>,
    unavailable: Arc<AtomicBool>,
}

fn play(
    script: Script,
    stopped: watch::Receiver<bool>,
    unavailable: Arc<AtomicBool>,
) -> OutputStream {
    let playing = Playing {
        steps: script.steps.into_iter(),
        hangs: script.hangs,
        stopped,
        unavailable,
    };
    Box::pin(futures_util::stream::unfold(
        Some(playing),
        |playing| async move {
            let mut playing = playing?;
            loop {
                if *playing.stopped.borrow() {
                    return None;
                }
                match playing.steps.next() {
                    Some(Step::Stdout(data)) => {
                        return Some((Ok(Chunk::Stdout(data)), Some(playing)));
                    }
                    Some(Step::Stderr(data)) => {
                        return Some((Ok(Chunk::Stderr(data)), Some(playing)));
                    }
                    Some(Step::Delay(pause)) => {
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = playing.stopped.wait_for(|stopped| *stopped) => return None,
                        }
                    }
                    Some(Step::Fail(reason)) => {
                        let err = EngineError::Api {
                            operation: "attach stream",
                            reason,
                        };
                        return Some((Err(err), None));
                    }
                    Some(Step::DaemonDies) => {
                        playing.unavailable.store(true, Ordering::SeqCst);
                        return Some((Err(gone()), None));
                    }
                    None if playing.hangs => {
                        let _ = playing.stopped.wait_for(|stopped| *stopped).await;
                        return None;
                    }
                    None => return None,
                }
            }
        },
    ))
}

/// The container's stdin: keeps every byte the host writes.
struct Recorder(Arc<Mutex<Vec<u8>>>);

impl AsyncWrite for Recorder {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    async fn attached(engine: &ScriptedEngine) -> (String, Attached) {
        let id = engine
            .create("c", ContainerCreateBody::default())
            .await
            .unwrap();
        let attached = engine.attach(&id).await.unwrap();
        (id, attached)
    }

    #[tokio::test(start_paused = true)]
    async fn plays_its_script_in_order_then_ends() {
        let engine = ScriptedEngine::new().script(
            Script::new()
                .line("{}")
                .delay(Duration::from_secs(60))
                .stderr("oops"),
        );
        let (_, mut attached) = attached(&engine).await;
        assert!(
            matches!(attached.output.next().await, Some(Ok(Chunk::Stdout(d))) if &d[..] == b"{}\n")
        );
        assert!(
            matches!(attached.output.next().await, Some(Ok(Chunk::Stderr(d))) if &d[..] == b"oops")
        );
        assert!(attached.output.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_stream_ends_when_killed() {
        let engine = ScriptedEngine::new().script(Script::new().hang());
        let (id, mut attached) = attached(&engine).await;
        let silent = tokio::time::timeout(Duration::from_secs(3600), attached.output.next()).await;
        assert!(silent.is_err(), "nothing arrives and the stream stays open");
        engine.kill(&id).await.unwrap();
        assert!(attached.output.next().await.is_none());
        assert_eq!(engine.killed(), [id]);
    }

    #[tokio::test]
    async fn a_dying_daemon_fails_every_later_call() {
        let engine = ScriptedEngine::new().script(Script::new().daemon_dies());
        let (id, mut attached) = attached(&engine).await;
        assert!(matches!(
            attached.output.next().await,
            Some(Err(EngineError::Unavailable { .. }))
        ));
        assert!(attached.output.next().await.is_none());
        assert!(matches!(
            engine.remove(&id).await,
            Err(EngineError::Unavailable { .. })
        ));
        assert!(engine.removed().is_empty());
    }
}
