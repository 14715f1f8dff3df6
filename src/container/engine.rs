//! The small traits codebox needs from a container engine, for runs and installs alike.
//! `docker::DockerEngine` is the real adapter; keeping bollard behind these keeps the
//! executor readable and its error handling in one place.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use bollard::models::ContainerCreateBody;
use bytes::Bytes;
use futures_util::Stream;
use tokio::io::AsyncWrite;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "cannot reach the Docker daemon ({reason}); start it with `bash scripts/setup.sh` or `dockerd`"
    )]
    Unavailable { reason: String },
    #[error("image {image} is not present; build it with `codebox image build`")]
    ImageMissing { image: String },
    #[error(
        "runtime {runtime} is not registered with the Docker daemon; run `bash scripts/setup.sh` (it registers runsc)"
    )]
    RuntimeMissing { runtime: String },
    #[error("Docker {operation} failed: {reason}")]
    Api {
        operation: &'static str,
        reason: String,
    },
}

/// A piece of the container's output stream.
#[derive(Debug, Clone)]
pub enum Chunk {
    Stdout(Bytes),
    Stderr(Bytes),
}

pub type OutputStream = Pin<Box<dyn Stream<Item = Result<Chunk, EngineError>> + Send>>;
pub type InputSink = Pin<Box<dyn AsyncWrite + Send>>;

pub struct Attached {
    pub output: OutputStream,
    pub input: InputSink,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExitState {
    pub running: bool,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
}

#[derive(Debug, Clone)]
pub struct ManagedContainer {
    pub id: String,
    pub labels: HashMap<String, String>,
}

/// The container lifecycle of one sandbox run.
pub trait Containers: Send + Sync {
    fn create(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;
    /// Attaches stdin/stdout/stderr; call before `start` so no output is missed.
    fn attach(&self, id: &str) -> impl Future<Output = Result<Attached, EngineError>> + Send;
    fn start(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn kill(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn exit_state(&self, id: &str) -> impl Future<Output = Result<ExitState, EngineError>> + Send;
    /// Force-removes; a container that is already gone is not an error.
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Every container carrying the codebox label, running or not.
    fn list_managed(
        &self,
    ) -> impl Future<Output = Result<Vec<ManagedContainer>, EngineError>> + Send;
}

/// One line of image build progress.
#[derive(Debug, Clone)]
pub enum BuildProgress {
    Log(String),
    Error(String),
}

pub type BuildStream<'a> =
    Pin<Box<dyn Stream<Item = Result<BuildProgress, EngineError>> + Send + 'a>>;

pub trait Images: Send + Sync {
    /// The labels of a local image, or None when it is absent.
    fn image_labels(
        &self,
        image: &str,
    ) -> impl Future<Output = Result<Option<HashMap<String, String>>, EngineError>> + Send;
    /// The id of a local image, or None when it is absent.
    fn image_id(
        &self,
        image: &str,
    ) -> impl Future<Output = Result<Option<String>, EngineError>> + Send;
    fn build(
        &self,
        context_tar: Vec<u8>,
        tag: &str,
        build_args: HashMap<String, String>,
        labels: HashMap<String, String>,
    ) -> BuildStream<'_>;
}

/// Facts about the daemon, for `codebox doctor`.
#[derive(Debug, Clone)]
pub struct DaemonInfo {
    pub server_version: String,
    pub api_version: String,
    pub runtimes: Vec<String>,
    pub cgroup_version: String,
}

pub trait System: Send + Sync {
    fn daemon_info(&self) -> impl Future<Output = Result<DaemonInfo, EngineError>> + Send;
}
