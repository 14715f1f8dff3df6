//! The real engine adapter: the only module that talks to Docker (through bollard).

use std::collections::HashMap;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, BuildImageOptionsBuilder, CreateContainerOptionsBuilder,
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::{StreamExt, TryStreamExt};

use super::MANAGED_LABEL;
use super::engine::{
    Attached, BuildProgress, BuildStream, Chunk, Containers, DaemonInfo, EngineError, ExitState,
    Images, ManagedContainer, System,
};

#[derive(Clone)]
pub struct DockerEngine {
    docker: Docker,
}

impl DockerEngine {
    /// Connects through DOCKER_HOST or the local socket and negotiates the API version, so an
    /// older daemon (Debian's 20.10 speaks 1.41) is talked to in its own version.
    pub async fn connect() -> Result<DockerEngine, EngineError> {
        let docker = Docker::connect_with_local_defaults().map_err(unavailable)?;
        let docker = docker.negotiate_version().await.map_err(unavailable)?;
        Ok(DockerEngine { docker })
    }
}

fn unavailable(err: BollardError) -> EngineError {
    EngineError::Unavailable {
        reason: err.to_string(),
    }
}

fn status_of(err: &BollardError) -> Option<u16> {
    match err {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Maps a bollard error: transport failures mean the daemon is unreachable.
fn api_error(operation: &'static str) -> impl Fn(BollardError) -> EngineError {
    move |err| match err {
        BollardError::DockerResponseServerError { .. }
        | BollardError::JsonDataError { .. }
        | BollardError::JsonSerdeError { .. } => EngineError::Api {
            operation,
            reason: err.to_string(),
        },
        BollardError::IOError { .. }
        | BollardError::HyperResponseError { .. }
        | BollardError::HyperLegacyError { .. }
        | BollardError::RequestTimeoutError
        | BollardError::SocketNotFoundError(_) => unavailable(err),
        other => EngineError::Api {
            operation,
            reason: other.to_string(),
        },
    }
}

impl Containers for DockerEngine {
    async fn create(&self, name: &str, body: ContainerCreateBody) -> Result<String, EngineError> {
        let image = body.image.clone().unwrap_or_default();
        let runtime = body
            .host_config
            .as_ref()
            .and_then(|h| h.runtime.clone())
            .unwrap_or_default();
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        match self.docker.create_container(Some(options), body).await {
            Ok(created) => Ok(created.id),
            Err(err) if status_of(&err) == Some(404) => Err(EngineError::ImageMissing { image }),
            Err(err)
                if status_of(&err) == Some(400)
                    && err.to_string().contains("unknown or invalid runtime") =>
            {
                Err(EngineError::RuntimeMissing { runtime })
            }
            Err(err) => Err(api_error("create")(err)),
        }
    }

    async fn attach(&self, id: &str) -> Result<Attached, EngineError> {
        let options = AttachContainerOptionsBuilder::default()
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .build();
        let attached = self
            .docker
            .attach_container(id, Some(options))
            .await
            .map_err(api_error("attach"))?;
        let output = attached
            .output
            .map_err(api_error("attach stream"))
            .filter_map(|item| async move {
                match item {
                    Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                        Some(Ok(Chunk::Stdout(message)))
                    }
                    Ok(LogOutput::StdErr { message }) => Some(Ok(Chunk::Stderr(message))),
                    Ok(LogOutput::StdIn { .. }) => None,
                    Err(err) => Some(Err(err)),
                }
            });
        Ok(Attached {
            output: Box::pin(output),
            input: attached.input,
        })
    }

    async fn start(&self, id: &str) -> Result<(), EngineError> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(|err| match err {
                e if e.to_string().contains("unknown or invalid runtime") => {
                    EngineError::RuntimeMissing {
                        runtime: "runsc".to_string(),
                    }
                }
                e => api_error("start")(e),
            })
    }

    async fn kill(&self, id: &str) -> Result<(), EngineError> {
        let options = KillContainerOptionsBuilder::default()
            .signal("SIGKILL")
            .build();
        match self.docker.kill_container(id, Some(options)).await {
            // 404: gone; 409: not running. Either way nothing is left to kill.
            Err(err) if matches!(status_of(&err), Some(404 | 409)) => Ok(()),
            other => other.map_err(api_error("kill")),
        }
    }

    async fn exit_state(&self, id: &str) -> Result<ExitState, EngineError> {
        let inspect = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(api_error("inspect"))?;
        let state = inspect.state.unwrap_or_default();
        Ok(ExitState {
            running: state.running.unwrap_or(false),
            exit_code: state.exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
        })
    }

    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(options)).await {
            // 404: already gone; 409: removal already in progress.
            Err(err) if matches!(status_of(&err), Some(404 | 409)) => Ok(()),
            other => other.map_err(api_error("remove")),
        }
    }

    async fn list_managed(&self) -> Result<Vec<ManagedContainer>, EngineError> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{MANAGED_LABEL}=true")])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(api_error("list"))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                Some(ManagedContainer {
                    id: c.id?,
                    labels: c.labels.unwrap_or_default(),
                })
            })
            .collect())
    }
}

impl Images for DockerEngine {
    async fn image_labels(
        &self,
        image: &str,
    ) -> Result<Option<HashMap<String, String>>, EngineError> {
        match self.docker.inspect_image(image).await {
            Ok(inspect) => Ok(Some(
                inspect.config.and_then(|c| c.labels).unwrap_or_default(),
            )),
            Err(err) if status_of(&err) == Some(404) => Ok(None),
            Err(err) => Err(api_error("inspect image")(err)),
        }
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>, EngineError> {
        match self.docker.inspect_image(image).await {
            Ok(inspect) => Ok(inspect.id),
            Err(err) if status_of(&err) == Some(404) => Ok(None),
            Err(err) => Err(api_error("inspect image")(err)),
        }
    }

    fn build(
        &self,
        context_tar: Vec<u8>,
        tag: &str,
        build_args: HashMap<String, String>,
        labels: HashMap<String, String>,
    ) -> BuildStream<'_> {
        let options = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(tag)
            .rm(true)
            .forcerm(true)
            .buildargs(&build_args)
            .labels(&labels)
            .build();
        let stream = self
            .docker
            .build_image(options, None, Some(bollard::body_full(context_tar.into())))
            .map(|item| match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail {
                        Ok(BuildProgress::Error(detail.message.unwrap_or_default()))
                    } else if let Some(line) = info.stream {
                        Ok(BuildProgress::Log(line))
                    } else {
                        Ok(BuildProgress::Log(info.status.unwrap_or_default()))
                    }
                }
                Err(err) => Err(api_error("build")(err)),
            });
        Box::pin(stream)
    }
}

impl System for DockerEngine {
    async fn daemon_info(&self) -> Result<DaemonInfo, EngineError> {
        let version = self.docker.version().await.map_err(api_error("version"))?;
        let info = self.docker.info().await.map_err(api_error("info"))?;
        let mut runtimes: Vec<String> = info.runtimes.unwrap_or_default().into_keys().collect();
        runtimes.sort();
        Ok(DaemonInfo {
            server_version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
            runtimes,
            cgroup_version: info
                .cgroup_version
                .map(|v| v.to_string())
                .unwrap_or_default(),
        })
    }
}
