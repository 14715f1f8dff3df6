//! Orchestrates one execution: a fresh container, the job handed to its runner, the result
//! and the outputs read back under bounds, and the container removed on every path.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncSeekExt;
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::ending::{self, PackageRefusal, RunRecord};
use super::limits::Limits;
use super::link::link_tree_but;
use super::live::{LiveContainer, launch};
use super::outputs::{self, OutputCaps, OutputError};
use super::package_source::{PackageSource, Prepared, Resolution};
use super::pool::{PoolError, PoolStatus};
use super::pool::{PoolSizes, WarmContainer, WarmPool};
use super::protocol::{JobFile, OutdatedImage};
use super::result::{ExecutionResult, RunError, Status};
use super::session::{STATE_RESTORE_NAME, SessionIo};
use super::spec::ContainerSpec;
use super::watch::RunWatch;
use crate::config::{PoolSettings, SandboxSettings};
use crate::container::engine::{Containers, EngineError, ExitState};
use crate::container::reaper;
use crate::container::retirer::Retirer;
use stream::RunStream;

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
    #[error(transparent)]
    OutdatedImage(#[from] OutdatedImage),
    #[error("the Docker daemon went away during run {run_id}, so its outcome is unknown: {source}")]
    DaemonGone { run_id: String, source: EngineError },
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
    /// Restore a session's state before the code and save it after (ignored when the
    /// executor has session state turned off).
    pub session: Option<SessionIo>,
    /// Who watches the run as it happens (the code's output while it runs); None relays
    /// nothing before the result.
    pub watch: Option<RunWatch>,
}

pub struct Executor<E: Containers + 'static> {
    engine: Arc<E>,
    image: String,
    owner: String,
    startup_timeout: Duration,
    outputs_root: PathBuf,
    permits: Arc<Semaphore>,
    packages: Option<Arc<dyn PackageSource>>,
    pool: Option<WarmPool<E>>,
    /// Used containers are removed here, after their result is returned.
    retirer: Arc<Retirer>,
    /// Fresh containers too are removed after the result is returned (long-lived processes
    /// that call `shutdown`); otherwise before `execute` returns.
    remove_in_background: bool,
    /// Where each job's one-time key comes from (fixed in unit tests, random otherwise).
    job_keys: fn() -> String,
    /// Size of the tmpfs a session's snapshot is written to; None: sessions are off.
    state_mb: Option<u64>,
}

impl<E: Containers + 'static> Executor<E> {
    /// `retirer` removes used containers; a package source that starts containers of its
    /// own should share it, so that `shutdown` waits for those too.
    pub fn new(
        engine: Arc<E>,
        sandbox: &SandboxSettings,
        pool: &PoolSettings,
        data_dir: &std::path::Path,
        packages: Option<Arc<dyn PackageSource>>,
        retirer: Arc<Retirer>,
    ) -> Result<Executor<E>, ExecutorError> {
        let owner = reaper::current_owner();
        let mut executor = Executor {
            engine,
            image: sandbox.sandbox_image.clone(),
            owner,
            startup_timeout: Duration::from_secs_f64(sandbox.sandbox_startup_timeout),
            outputs_root: data_dir.join("outputs"),
            permits: Arc::new(Semaphore::new(sandbox.max_concurrent_executions)),
            packages,
            pool: None,
            retirer,
            remove_in_background: false,
            job_keys: super::protocol::new_job_key,
            state_mb: sandbox.session_state_mb(),
        };
        if pool.warm_pool_size > 0 {
            let template = executor.spec("warm-template", &Limits::from_settings(sandbox), None);
            executor.pool = Some(WarmPool::start(
                executor.engine.clone(),
                executor.retirer.clone(),
                template,
                &data_dir.join("pool"),
                PoolSizes {
                    size: pool.warm_pool_size,
                    max: pool.most_waiting(),
                },
                Duration::from_secs_f64(pool.warm_pool_max_age_s),
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
            // A container held for the conversation has its state restored already.
            let warm = self
                .held_for(&request)
                .map(|warm| (warm, true))
                .or_else(|| {
                    self.pool
                        .as_ref()
                        .and_then(|pool| pool.take(&request.limits))
                        .map(|warm| (warm, false))
                });
            let result = match warm {
                Some((warm, held)) => match self
                    .run_in_warm_container(warm, &request, started, held)
                    .await
                {
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
                    prepared = r.phases.prepared,
                    acquire_ms = r.phases.acquire_ms,
                    stage_ms = r.phases.stage_ms,
                    handoff_ms = r.phases.handoff_ms,
                    collect_ms = r.phases.collect_ms,
                    measure_ms = r.phases.measure_ms,
                    restore_ms = r.phases.restore_ms,
                    save_ms = r.phases.save_ms,
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
            packages_dir: self.packages.as_ref().map(|p| p.host_dir()),
            state_mb: self.state_mb,
            code_uid: super::run_uids::next_run_uid(),
        }
    }

    /// The request's session, when this executor keeps sessions.
    fn session_of<'r>(&self, request: &'r ExecutionRequest) -> Option<&'r SessionIo> {
        self.state_mb.and(request.session.as_ref())
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
        let exit = self.exit_if_unreported(&outcome, &run_id, &live.id).await;
        let removal = if self.remove_in_background {
            // Removed after the result is returned; `shutdown` waits for it.
            self.retirer.retire(live.guard, None);
            Ok(())
        } else {
            // A failed removal leaves the guard armed: the retirer retries it.
            live.guard.remove().await
        };
        // The run's own failure says more than a removal that failed after it.
        let mut session = outcome?;
        let exit = exit?;
        removal?;
        session.transcript.phases.acquire_ms = acquire_ms;
        self.finish(&run_id, request, &limits, session, exit, started)
            .await
    }

    /// The job in a container the pool started earlier (`held`: held for the request's
    /// conversation, its snapshot in place and restored). None when that container turned
    /// out dead before the code started (the caller runs it fresh).
    async fn run_in_warm_container(
        &self,
        warm: WarmContainer<E>,
        request: &ExecutionRequest,
        started: Instant,
        held: bool,
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
            let left_out = held.then_some(STATE_RESTORE_NAME);
            let linked =
                tokio::task::spawn_blocking(move || link_tree_but(&source, &target, left_out))
                    .await;
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
        let run_id = live.run_id.clone();
        let exit = self.exit_if_unreported(&outcome, &run_id, &live.id).await;
        // Removal happens after the result is returned; the pool tracks it to the end.
        pool.retire(live.guard, inputs_dir);
        let mut session = outcome?;
        let exit = exit?;
        let phases = &mut session.transcript.phases;
        phases.warm = true;
        phases.prepared = held;
        phases.acquire_ms = acquire_ms;
        phases.stage_ms = stage_ms;
        self.finish(&run_id, request.clone(), &limits, session, exit, started)
            .await
            .map(Some)
    }

    /// Hands the job to the runner and reads its stream under deadlines to the ending.
    async fn drive(
        &self,
        live: &mut LiveContainer<E>,
        request: &ExecutionRequest,
        limits: &Limits,
    ) -> Result<RunRecord, ExecutorError> {
        RunStream::new(self, live, request, limits)?.read().await
    }

    /// The container's exit state, needed only when the runner could not report (it says
    /// whether the kernel killed the code); read before the container is removed. A daemon
    /// that stopped answering leaves the run's outcome unknown: that is the error.
    async fn exit_if_unreported(
        &self,
        outcome: &Result<RunRecord, ExecutorError>,
        run_id: &str,
        id: &str,
    ) -> Result<Option<ExitState>, ExecutorError> {
        match outcome {
            Ok(session) if session.needs_exit_state() => match self.engine.exit_state(id).await {
                Ok(exit) => Ok(Some(exit)),
                Err(source @ EngineError::Unavailable { .. }) => Err(ExecutorError::DaemonGone {
                    run_id: run_id.to_string(),
                    source,
                }),
                Err(err) => {
                    tracing::warn!(run_id = %run_id, error = %err, "cannot read the sandbox's exit state");
                    Ok(None)
                }
            },
            _ => Ok(None),
        }
    }

    /// Makes the missing modules available, or says why they cannot be.
    async fn resolve_packages(&self, modules: &[String]) -> Result<Prepared, PackageRefusal> {
        let module = modules.join(",");
        let Some(packages) = &self.packages else {
            return Err(PackageRefusal {
                module,
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
            Ok(Resolution::Refused(reason)) => Err(PackageRefusal {
                module,
                status: Status::Refused,
                error: RunError {
                    kind: "PackageNotAllowed".into(),
                    message: format!("{reason}; the code stopped at this import"),
                },
                install_ms: elapsed(),
            }),
            Err(err) => Err(PackageRefusal {
                module,
                status: Status::InstallFailed,
                error: RunError {
                    kind: "PackageInstallError".into(),
                    message: format!("{err}\nThe code stopped at this import."),
                },
                install_ms: elapsed(),
            }),
        }
    }

    /// Spooling the run's outputs or snapshot failed on this host.
    fn spool_error(&self, run_id: &str) -> impl Fn(std::io::Error) -> ExecutorError + use<E> {
        let run_id = run_id.to_string();
        move |source| ExecutorError::Spool {
            run_id: run_id.clone(),
            source,
        }
    }

    async fn finish(
        &self,
        run_id: &str,
        request: ExecutionRequest,
        limits: &Limits,
        record: RunRecord,
        exit: Option<ExitState>,
        started: Instant,
    ) -> Result<ExecutionResult, ExecutorError> {
        let RunRecord {
            ending,
            mut transcript,
        } = record;
        let mut phases = std::mem::take(&mut transcript.phases);
        // Kept until the run is reported: their leases spare the packages from eviction.
        let packages = std::mem::take(&mut transcript.packages);
        // Folded from +0.0: an empty f64 sum is -0.0, which prints as "-0 ms".
        let install_ms = packages
            .iter()
            .map(|p| p.install_ms)
            .chain(transcript.refusals.iter().map(|r| r.install_ms))
            .fold(0.0, |total, ms| total + ms);
        let packages_installed: Vec<String> =
            packages.iter().flat_map(|p| p.installed.clone()).collect();
        let packages_cached: Vec<String> = packages.iter().flat_map(|p| p.cached.clone()).collect();
        let (mut runner, mut flags) =
            ending::report(&ending, &mut transcript, exit.as_ref(), limits);
        let session_report = runner
            .session
            .take()
            .filter(|_| self.session_of(&request).is_some())
            .map(|report| (*report).bounded().settle(transcript.snapshot_arrived));
        if let Some(report) = &session_report {
            phases.restore_ms = report.restore_ms;
            phases.save_ms = report.save_ms;
            phases.restore_imported = report.restore_imported.clone();
        }
        ending::package_verdict(&mut runner, &transcript.refusals);

        let mut output_files = Vec::new();
        let extract_started = Instant::now();
        if let Some(mut archive) = transcript.archive.take() {
            let dest = request
                .output_dir
                .clone()
                .unwrap_or_else(|| self.outputs_root.join(run_id));
            archive
                .seek(std::io::SeekFrom::Start(0))
                .await
                .map_err(self.spool_error(run_id))?;
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
            .map_err(|join| self.spool_error(run_id)(std::io::Error::other(join.to_string())))??;
            output_files = outputs::attach_pictures(files, &transcript.pictures);
            flags.extend(host_flags);
        }
        phases.collect_ms += elapsed_ms(extract_started);

        Ok(ExecutionResult {
            outcome: runner.outcome,
            total_ms: elapsed_ms(started),
            install_ms,
            packages_installed,
            packages_cached,
            output_files,
            flags,
            run_id: run_id.to_string(),
            phases,
            session: session_report,
        })
    }
}

fn elapsed_ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

mod held;
mod stream;
#[cfg(test)]
mod tests;
