//! Orchestrates one execution: a fresh container, the job handed to its runner, the result
//! and the outputs read back under bounds, and the container removed on every path.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::OUTPUT_DIR;
use super::engine::{Chunk, Containers, EngineError};
use super::limits::Limits;
use super::link::link_tree;
use super::live::RUNNER_DIAGNOSTICS_BYTES;
use super::live::{LiveContainer, launch};
use super::outputs::{self, OutputCaps, OutputError};
use super::pool::{PoolError, PoolStatus};
use super::pool::{WarmContainer, WarmPool};
use super::protocol::{Item, Job, JobFile, ProtocolError, RunnerEvent, RunnerResult, SiteDirs};
use super::reaper;
use super::result::{ExecutionResult, Flag, Phases, RunError, Status};
use super::retirer::Retirer;
use super::spec::ContainerSpec;
use crate::config::{PackagePolicy, Settings};
use crate::packages::{PackageManager, PackagesError, Prepared, Resolution};

/// The runner enforces the time limit itself; the host kills the container this much later
/// if the runner failed to (a starved or killed runner must not hang a request).
const HOST_DEADLINE_GRACE: Duration = Duration::from_secs(3);
/// Time allowed, after the code ended, to tar and stream the outputs back.
const COLLECTION_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `shutdown` waits for removals in flight.
const SHUTDOWN_PATIENCE: Duration = Duration::from_secs(15);
/// Larger code is refused before any container starts.
pub const MAX_CODE_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("code is {size} bytes, more than the {limit} allowed")]
    CodeTooLarge { size: usize, limit: usize },
    #[error("the sandbox did not start the code within {seconds} s (image {image})")]
    StartupTimeout { seconds: f64, image: String },
    #[error("cannot hand the job to the sandbox: {0}")]
    Handoff(std::io::Error),
    #[error("cannot spool the outputs of run {run_id}: {source}")]
    Spool {
        run_id: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Outputs(#[from] OutputError),
    #[error("cannot serialize the job: {0}")]
    Job(#[from] serde_json::Error),
    #[error(transparent)]
    Packages(#[from] PackagesError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("cannot make the input files visible to the sandbox: {0}")]
    Stage(std::io::Error),
}

/// One piece of code to run.
#[derive(Debug, Clone)]
pub struct ExecutionRequest {
    pub code: String,
    pub limits: Limits,
    /// Host directory shown read-only to the code at `/mnt/inputs`.
    pub input_dir: Option<PathBuf>,
    /// Where collected outputs are saved; a fresh directory under the data dir when None.
    pub output_dir: Option<PathBuf>,
    /// Files inside `input_dir` that `load_file` knows by id.
    pub files: Vec<JobFile>,
}

pub struct Executor<E: Containers + 'static> {
    engine: Arc<E>,
    image: String,
    owner: String,
    startup_timeout: Duration,
    outputs_root: PathBuf,
    permits: Arc<Semaphore>,
    packages: Option<Arc<PackageManager<E>>>,
    pool: Option<WarmPool<E>>,
    /// Used containers are removed here, after their result is returned.
    retirer: Arc<Retirer>,
    /// Fresh containers too are removed after the result is returned (long-lived processes
    /// that call `shutdown`); otherwise before `execute` returns.
    remove_in_background: bool,
}

impl<E: Containers + 'static> Executor<E> {
    pub fn new(engine: Arc<E>, settings: &Settings) -> Result<Executor<E>, ExecutorError> {
        let owner = reaper::current_owner();
        let retirer = Arc::new(Retirer::default());
        let packages = match settings.package_policy {
            PackagePolicy::Off => None,
            _ => Some(Arc::new(
                PackageManager::new(engine.clone(), settings, owner.clone())?
                    .with_retirer(retirer.clone()),
            )),
        };
        let mut executor = Executor {
            engine,
            image: settings.sandbox_image.clone(),
            owner,
            startup_timeout: Duration::from_secs_f64(settings.sandbox_startup_timeout),
            outputs_root: std::path::absolute(settings.data_dir.join("outputs"))
                .unwrap_or_else(|_| settings.data_dir.join("outputs")),
            permits: Arc::new(Semaphore::new(settings.max_concurrent_executions)),
            packages,
            pool: None,
            retirer,
            remove_in_background: false,
        };
        if settings.warm_pool_size > 0 {
            let template = executor.spec("warm-template", &Limits::from_settings(settings), None);
            executor.pool = Some(WarmPool::start(
                executor.engine.clone(),
                executor.retirer.clone(),
                template,
                &settings.data_dir.join("pool"),
                settings.warm_pool_size,
                Duration::from_secs_f64(settings.warm_pool_max_age_s),
                executor.startup_timeout,
            )?);
        }
        Ok(executor)
    }

    /// For long-lived processes (the bot): every used container is removed after its result
    /// is returned, off the request's path. The caller must `shutdown` before exiting.
    pub fn removing_in_background(mut self) -> Executor<E> {
        self.remove_in_background = true;
        self
    }

    /// The warm pool's state, when there is one.
    pub fn pool_status(&self) -> Option<PoolStatus> {
        self.pool.as_ref().map(|pool| pool.status())
    }

    /// Waits until the warm pool is full (benchmarks measure the warm path with it).
    pub async fn wait_for_warm_pool(&self, timeout: Duration) -> bool {
        match &self.pool {
            Some(pool) => pool.wait_full(timeout).await,
            None => true,
        }
    }

    /// Removes the warm pool's containers and waits (bounded) for every used container's
    /// removal; call before the process exits.
    pub async fn shutdown(&self) {
        if let Some(pool) = &self.pool {
            pool.shutdown().await;
        }
        if !self.retirer.drain(SHUTDOWN_PATIENCE).await {
            tracing::warn!(
                "some used containers were not removed before shutdown; the next start reaps them"
            );
        }
    }

    /// The package manager, when package installation is on.
    pub fn packages(&self) -> Option<&Arc<PackageManager<E>>> {
        self.packages.as_ref()
    }

    /// Removes containers left by codebox processes that died; call once at start-up.
    pub async fn reap_orphans(&self) -> Result<usize, ExecutorError> {
        Ok(reaper::reap_orphans(self.engine.as_ref()).await?)
    }

    pub async fn execute(
        &self,
        request: ExecutionRequest,
    ) -> Result<ExecutionResult, ExecutorError> {
        if request.code.len() > MAX_CODE_BYTES {
            return Err(ExecutorError::CodeTooLarge {
                size: request.code.len(),
                limit: MAX_CODE_BYTES,
            });
        }
        let started = Instant::now();
        let span = tracing::info_span!("execution");
        async move {
            // A closed semaphore is impossible here (never closed); treat it as no limit.
            let _permit = self.permits.acquire().await.ok();
            let queued_ms = started.elapsed().as_secs_f64() * 1000.0;
            let warm = self
                .pool
                .as_ref()
                .and_then(|pool| pool.take(&request.limits));
            let result = match warm {
                Some(warm) => match self.run_in_warm_container(warm, &request, started).await {
                    // The warm container died before the code started: nothing ran, so
                    // a fresh container runs it instead.
                    Ok(None) => self.run_cold(request, started).await,
                    Ok(Some(result)) => Ok(result),
                    Err(err) => Err(err),
                },
                None => self.run_cold(request, started).await,
            };
            match &result {
                Ok(r) => tracing::info!(
                    run_id = %r.run_id,
                    warm = r.phases.warm,
                    acquire_ms = r.phases.acquire_ms,
                    status = r.status.as_str(),
                    exit_code = ?r.exit_code,
                    execution_ms = r.execution_ms,
                    install_ms = r.install_ms,
                    total_ms = r.total_ms,
                    queued_ms,
                    output_files = r.output_files.len(),
                    flags = r.flags.len(),
                    "execution finished"
                ),
                Err(err) => tracing::warn!(error = %err, "execution failed"),
            }
            result
        }
        .instrument(span)
        .await
    }

    fn spec(&self, run_id: &str, limits: &Limits, input_dir: Option<PathBuf>) -> ContainerSpec {
        ContainerSpec {
            image: self.image.clone(),
            limits: limits.clone(),
            input_dir,
            run_id: run_id.to_string(),
            owner: self.owner.clone(),
            preload: false,
            pool_id: None,
            packages_dir: self
                .packages
                .as_ref()
                .map(|p| p.cache().root().to_path_buf()),
        }
    }

    /// A fresh container, with the pool (if any) told to hold its refill meanwhile.
    async fn run_cold(
        &self,
        request: ExecutionRequest,
        started: Instant,
    ) -> Result<ExecutionResult, ExecutorError> {
        let _cold = self.pool.as_ref().map(|pool| pool.cold_run());
        self.run_in_fresh_container(request, started).await
    }

    async fn run_in_fresh_container(
        &self,
        request: ExecutionRequest,
        started: Instant,
    ) -> Result<ExecutionResult, ExecutorError> {
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let limits = request.limits.clone();
        let spec = self.spec(&run_id, &limits, request.input_dir.clone());
        // Creation runs in its own task and the guard holds it from the start: a request
        // dropped while the daemon is still creating (a /stop, a closed connection) cannot
        // leave the container behind, because the guard removes it once creation settles.
        let mut live = launch(&self.engine, &self.retirer, &spec).await?;
        let acquire_ms = elapsed_ms(started);
        let outcome = self.drive(&mut live, &request, &limits).await;
        let exit = self.exit_if_unreported(&outcome, &live.id).await;
        if self.remove_in_background {
            // Removed after the result is returned; `shutdown` waits for it.
            self.retirer.retire(live.guard, None);
        } else {
            live.guard.remove().await?;
        }
        let mut session = outcome?;
        session.phases.acquire_ms = acquire_ms;
        self.finish(&run_id, request, &limits, session, exit, started)
            .await
    }

    /// The job in a container the pool started earlier. None when that container turned
    /// out dead before the code started (the caller runs it fresh).
    async fn run_in_warm_container(
        &self,
        warm: WarmContainer<E>,
        request: &ExecutionRequest,
        started: Instant,
    ) -> Result<Option<ExecutionResult>, ExecutorError> {
        let Some(pool) = &self.pool else {
            return Ok(None);
        };
        let WarmContainer {
            mut live,
            inputs_dir,
            ..
        } = warm;
        let acquire_ms = elapsed_ms(started);
        let stage_started = Instant::now();
        if let Some(source) = &request.input_dir {
            let (source, target) = (source.clone(), inputs_dir.clone());
            let linked = tokio::task::spawn_blocking(move || link_tree(&source, &target)).await;
            if let Err(err) = linked
                .map_err(|join| std::io::Error::other(join.to_string()))
                .and_then(|r| r)
            {
                pool.retire(live.guard, inputs_dir);
                return Err(ExecutorError::Stage(err));
            }
        }
        let stage_ms = elapsed_ms(stage_started);
        let limits = request.limits.clone();
        let outcome = self.drive(&mut live, request, &limits).await;
        if let Ok(session) = &outcome
            && session.code_never_started()
        {
            tracing::warn!(run_id = %live.run_id, "warm container ended before its job; running fresh");
            pool.retire_dead(live.guard, inputs_dir);
            return Ok(None);
        }
        let exit = self.exit_if_unreported(&outcome, &live.id).await;
        let run_id = live.run_id.clone();
        // Removal happens after the result is returned; the pool tracks it to the end.
        pool.retire(live.guard, inputs_dir);
        let mut session = outcome?;
        session.phases.warm = true;
        session.phases.acquire_ms = acquire_ms;
        session.phases.stage_ms = stage_ms;
        self.finish(&run_id, request.clone(), &limits, session, exit, started)
            .await
            .map(Some)
    }

    /// Attach, start, hand over the job, and read the runner's stream under deadlines.
    async fn drive(
        &self,
        live: &mut LiveContainer<E>,
        request: &ExecutionRequest,
        limits: &Limits,
    ) -> Result<Session, ExecutorError> {
        let handoff_started = Instant::now();
        let run_id = live.run_id.clone();
        let id = live.id.clone();
        let job = Job {
            code: request.code.clone(),
            timeout_s: limits.timeout.as_secs_f64(),
            memory_mb: limits.memory_mb,
            workdir: OUTPUT_DIR.to_string(),
            output_dir: OUTPUT_DIR.to_string(),
            max_output_chars: limits.max_output_chars,
            max_output_files: limits.max_output_files,
            max_output_file_bytes: limits.max_output_file_bytes,
            max_output_total_bytes: limits.max_output_total_bytes,
            files: request.files.clone(),
            scan_imports: self.packages.is_some(),
        };
        let attached = &mut live.attached;
        // The runner reads the job line, and one more (the package directories) only when
        // it reports missing imports; stdin is closed once the code has started.
        let line = job.to_line()?;
        let handoff = async {
            attached.input.write_all(&line).await?;
            attached.input.flush().await
        };
        if let Err(err) = handoff.await {
            // A runner that died at start closes stdin; the stream below tells why.
            tracing::debug!(error = %err, "job hand-off interrupted");
        }

        let mut session = Session {
            diagnostics: std::mem::take(&mut live.diagnostics),
            ..Session::default()
        };
        let decoder = &mut live.decoder;
        let mut spool: Option<tokio::fs::File> = None;
        let mut deadline = tokio::time::Instant::now() + self.startup_timeout;
        let mut phase = Phase::Starting;
        let mut code_started: Option<Instant> = None;
        let mut collect_started: Option<Instant> = None;
        'stream: loop {
            let next = match tokio::time::timeout_at(deadline, attached.output.next()).await {
                Ok(next) => next,
                Err(_) => {
                    match phase {
                        Phase::Starting => session.startup_timed_out = true,
                        Phase::Running => {
                            session.host_timeout = true;
                            session.execution_ms = code_started
                                .map(|t| t.elapsed().as_secs_f64() * 1000.0)
                                .unwrap_or(0.0);
                        }
                        Phase::Collecting => {
                            session.flags.push(Flag::new("output_collection_timeout"))
                        }
                    }
                    self.engine.kill(&id).await?;
                    break;
                }
            };
            let chunk = match next {
                None => break,
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "sandbox stream ended with an error");
                    break;
                }
                Some(Ok(chunk)) => chunk,
            };
            let data = match chunk {
                Chunk::Stderr(data) => {
                    let room = RUNNER_DIAGNOSTICS_BYTES.saturating_sub(session.diagnostics.len());
                    session
                        .diagnostics
                        .extend_from_slice(&data[..data.len().min(room)]);
                    continue;
                }
                Chunk::Stdout(data) => data,
            };
            let items = match decoder.push(&data) {
                Ok(items) => items,
                Err(err) => {
                    session.protocol_error = Some(err);
                    self.engine.kill(&id).await?;
                    break;
                }
            };
            for item in items {
                match item {
                    Item::Event(RunnerEvent::Ready) => {}
                    Item::Event(RunnerEvent::Missing { modules }) => {
                        match self.resolve_packages(&modules).await {
                            Ok(prepared) => {
                                let reply = SiteDirs {
                                    site_dirs: prepared.site_dirs.clone(),
                                }
                                .to_line()?;
                                session.packages = Some(prepared);
                                if let Err(err) = attached.input.write_all(&reply).await {
                                    tracing::debug!(error = %err, "package hand-off interrupted");
                                }
                                let _ = attached.input.flush().await;
                                deadline = tokio::time::Instant::now() + self.startup_timeout;
                            }
                            Err(not_run) => {
                                session.not_run = Some(not_run);
                                break 'stream;
                            }
                        }
                    }
                    Item::Event(RunnerEvent::Started) => {
                        session.started = true;
                        session.phases.handoff_ms = elapsed_ms(handoff_started);
                        let _ = attached.input.shutdown().await;
                        phase = Phase::Running;
                        code_started = Some(Instant::now());
                        deadline =
                            tokio::time::Instant::now() + limits.timeout + HOST_DEADLINE_GRACE;
                    }
                    Item::Event(RunnerEvent::Result(result)) => {
                        phase = Phase::Collecting;
                        collect_started = Some(Instant::now());
                        deadline = tokio::time::Instant::now() + COLLECTION_TIMEOUT;
                        session.result = Some(result);
                    }
                    Item::Event(RunnerEvent::Outputs { flags, .. }) => {
                        session.flags.extend(flags);
                        let file = tempfile::tempfile().map_err(|source| ExecutorError::Spool {
                            run_id: run_id.to_string(),
                            source,
                        })?;
                        spool = Some(tokio::fs::File::from_std(file));
                    }
                    Item::BlobChunk(bytes) => {
                        if let Some(file) = spool.as_mut() {
                            file.write_all(&bytes).await.map_err(|source| {
                                ExecutorError::Spool {
                                    run_id: run_id.to_string(),
                                    source,
                                }
                            })?;
                        }
                    }
                    Item::BlobEnd => session.archive = spool.take(),
                    Item::Event(RunnerEvent::Done) => {
                        session.done = true;
                        session.phases.collect_ms = collect_started.map_or(0.0, elapsed_ms);
                    }
                }
            }
            if session.done {
                break;
            }
        }
        if session.result.is_none() && !session.host_timeout {
            // The sandbox died under the code: it ran until the stream ended.
            session.execution_ms = code_started
                .map(|t| t.elapsed().as_secs_f64() * 1000.0)
                .unwrap_or(0.0);
        }
        Ok(session)
    }

    /// The container's exit state, needed only when the runner could not report (it says
    /// whether the kernel killed the code); read before the container is removed.
    async fn exit_if_unreported(
        &self,
        outcome: &Result<Session, ExecutorError>,
        id: &str,
    ) -> Option<super::engine::ExitState> {
        match outcome {
            Ok(session) if session.result.is_none() && session.not_run.is_none() => {
                self.engine.exit_state(id).await.ok()
            }
            _ => None,
        }
    }

    /// Makes the missing modules available, or says why the code must not run.
    async fn resolve_packages(&self, modules: &[String]) -> Result<Prepared, NotRun> {
        let Some(packages) = &self.packages else {
            return Err(NotRun {
                status: Status::InstallFailed,
                error: RunError {
                    kind: "PackageInstallError".into(),
                    message: "package installation is turned off".into(),
                },
                install_ms: 0.0,
            });
        };
        let started = Instant::now();
        let elapsed = || started.elapsed().as_secs_f64() * 1000.0;
        match packages.resolve(modules).await {
            Ok(Resolution::Ready(prepared)) => Ok(prepared),
            Ok(Resolution::Refused(reason)) => Err(NotRun {
                status: Status::Refused,
                error: RunError {
                    kind: "PackageNotAllowed".into(),
                    message: format!("{reason}; the code was not run"),
                },
                install_ms: elapsed(),
            }),
            Err(err) => Err(NotRun {
                status: Status::InstallFailed,
                error: RunError {
                    kind: "PackageInstallError".into(),
                    message: format!("{err}\nThe code was not run."),
                },
                install_ms: elapsed(),
            }),
        }
    }

    async fn finish(
        &self,
        run_id: &str,
        request: ExecutionRequest,
        limits: &Limits,
        mut session: Session,
        exit: Option<super::engine::ExitState>,
        started: Instant,
    ) -> Result<ExecutionResult, ExecutorError> {
        if session.startup_timed_out && session.result.is_none() {
            return Err(ExecutorError::StartupTimeout {
                seconds: self.startup_timeout.as_secs_f64(),
                image: self.image.clone(),
            });
        }
        let mut phases = std::mem::take(&mut session.phases);
        let packages = session.packages.take();
        let (install_ms, packages_installed, packages_cached) = match &packages {
            Some(p) => (p.install_ms, p.installed.clone(), p.cached.clone()),
            None => (0.0, Vec::new(), Vec::new()),
        };
        if let Some(not_run) = session.not_run.take() {
            return Ok(ExecutionResult {
                status: not_run.status,
                exit_code: None,
                stdout: String::new(),
                stderr: String::new(),
                stdout_truncated: false,
                stderr_truncated: false,
                execution_ms: 0.0,
                total_ms: started.elapsed().as_secs_f64() * 1000.0,
                install_ms: not_run.install_ms,
                packages_installed,
                packages_cached,
                error: Some(not_run.error),
                output_files: Vec::new(),
                flags: Vec::new(),
                run_id: run_id.to_string(),
                phases,
            });
        }
        let runner = match session.result.take() {
            Some(result) => result,
            None => self.unreported_result(&session, exit, limits),
        };
        let mut flags = Vec::new();
        if runner.stdout_truncated {
            flags.push(Flag::new("stdout_truncated"));
        }
        if runner.stderr_truncated {
            flags.push(Flag::new("stderr_truncated"));
        }
        if let Some(err) = &session.protocol_error {
            flags.push(Flag::named("protocol_error", &err.to_string()));
        }
        flags.append(&mut session.flags);

        let mut output_files = Vec::new();
        let extract_started = Instant::now();
        if let Some(mut archive) = session.archive.take() {
            let dest = request
                .output_dir
                .clone()
                .unwrap_or_else(|| self.outputs_root.join(run_id));
            archive
                .seek(std::io::SeekFrom::Start(0))
                .await
                .map_err(|source| ExecutorError::Spool {
                    run_id: run_id.to_string(),
                    source,
                })?;
            let archive = archive.into_std().await;
            let caps = OutputCaps {
                max_files: limits.max_output_files,
                max_file_bytes: limits.max_output_file_bytes,
                max_total_bytes: limits.max_output_total_bytes,
            };
            let (files, host_flags) = tokio::task::spawn_blocking(move || {
                outputs::extract(std::io::BufReader::new(archive), &dest, caps)
            })
            .await
            .map_err(|join| ExecutorError::Spool {
                run_id: run_id.to_string(),
                source: std::io::Error::other(join.to_string()),
            })??;
            output_files = files;
            flags.extend(host_flags);
        }
        phases.collect_ms += elapsed_ms(extract_started);

        Ok(ExecutionResult {
            status: runner.status,
            exit_code: runner.exit_code,
            stdout: runner.stdout,
            stderr: runner.stderr,
            stdout_truncated: runner.stdout_truncated,
            stderr_truncated: runner.stderr_truncated,
            execution_ms: runner.execution_ms,
            total_ms: started.elapsed().as_secs_f64() * 1000.0,
            install_ms,
            packages_installed,
            packages_cached,
            error: runner.error,
            output_files,
            flags,
            run_id: run_id.to_string(),
            phases,
        })
    }

    /// The runner did not report: the host's deadline fired, the kernel killed it, or it
    /// crashed. Say which, honestly.
    fn unreported_result(
        &self,
        session: &Session,
        exit: Option<super::engine::ExitState>,
        limits: &Limits,
    ) -> RunnerResult {
        let exit_code = exit.as_ref().and_then(|e| e.exit_code);
        let (status, error) = if session.host_timeout {
            (
                Status::Timeout,
                RunError {
                    kind: "TimeoutError".into(),
                    message: format!(
                        "execution exceeded the time limit of {} s and was stopped",
                        limits.timeout.as_secs_f64()
                    ),
                },
            )
        } else if exit.as_ref().is_some_and(|e| e.oom_killed) {
            (
                Status::Oom,
                RunError {
                    kind: "MemoryError".into(),
                    message: format!(
                        "the code ran out of memory (limit {} MB) and was killed",
                        limits.memory_mb
                    ),
                },
            )
        } else {
            let detail = String::from_utf8_lossy(&session.diagnostics);
            let detail = detail.trim();
            let reason = match &session.protocol_error {
                Some(err) => err.to_string(),
                None => format!(
                    "the sandbox stopped before reporting (exit code {})",
                    exit_code.map_or("unknown".to_string(), |c| c.to_string())
                ),
            };
            (
                Status::Killed,
                RunError {
                    kind: "SandboxError".into(),
                    message: if detail.is_empty() {
                        reason
                    } else {
                        format!("{reason}: {}", tail_chars(detail, 2000))
                    },
                },
            )
        };
        RunnerResult {
            status,
            exit_code: if session.host_timeout {
                None
            } else {
                exit_code
            },
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            execution_ms: session.execution_ms,
            error: Some(error),
        }
    }
}

fn tail_chars(text: &str, max: usize) -> &str {
    let count = text.chars().count();
    if count <= max {
        return text;
    }
    let skip = text
        .char_indices()
        .nth(count - max)
        .map_or(0, |(index, _)| index);
    &text[skip..]
}

impl Session {
    /// The stream ended before the runner said the code started: nothing of the job ran.
    fn code_never_started(&self) -> bool {
        !self.started && self.result.is_none() && self.not_run.is_none() && !self.startup_timed_out
    }
}

fn elapsed_ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

enum Phase {
    Starting,
    Running,
    Collecting,
}

/// Why the code was not run at all (a package refused or not installable).
struct NotRun {
    status: Status,
    error: RunError,
    install_ms: f64,
}

#[derive(Default)]
struct Session {
    started: bool,
    phases: Phases,
    packages: Option<Prepared>,
    not_run: Option<NotRun>,
    result: Option<RunnerResult>,
    archive: Option<tokio::fs::File>,
    flags: Vec<Flag>,
    diagnostics: Vec<u8>,
    protocol_error: Option<ProtocolError>,
    startup_timed_out: bool,
    host_timeout: bool,
    execution_ms: f64,
    done: bool,
}

#[cfg(test)]
mod tests {
    use super::tail_chars;

    #[test]
    fn tail_keeps_the_last_characters() {
        assert_eq!(tail_chars("héllo", 3), "llo");
        assert_eq!(tail_chars("hé", 5), "hé");
    }
}
