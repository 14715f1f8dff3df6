//! The application core: one place that owns the executor, the file store, conversations,
//! the package cache and the staging root, and offers the use cases every front end calls
//! (CLI, Discord, later HTTP): run code for a user, store uploads, answer a chat turn,
//! reset, usage, limits, cancel. Front ends keep only their own protocol.

pub mod access;
pub mod admission;
pub mod assembly;
pub mod budget;
mod chat;
mod community;
pub mod leftovers;
mod metered;
pub mod models;
mod picture_cache;
pub mod pictures;
pub mod remote;
mod running;
pub mod runs;
mod uploads;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use tracing::Instrument;

use crate::config::{Settings, absolute};
use crate::container::docker::DockerEngine;
use crate::container::engine::EngineError;
use crate::conversations::{AnyConversations, ConversationStore};
use crate::packages::{PackageCache, PackagesError};
use crate::sandbox::limits::LimitError;
use crate::sandbox::{ExecutionRequest, ExecutionResult, Executor, ExecutorError};
use crate::staging::{self, StagingError};
use crate::store::blobs::AnyBlobs;
use crate::store::gridfs::GridFsBlobs;
use crate::store::sweeper::{self, SweeperHandle};
use crate::store::{
    AnyMetadata, FileStore, MetadataError, Origin, ReconcileReport, StoreError, StoreLimits,
    SweepReport,
};

pub use crate::conversations::UsageTotals;
pub use crate::llm::conversation::Progress;
pub use crate::run_result::{GeneratedFile, UserRunResult};
pub use crate::sandbox::watch::{RunEvent, RunWatch, Subscription, Watched, watch};
pub use crate::sandbox::{Limits, Status};
pub use crate::store::FileRecord;
pub use admission::{Admission, Refusal, Ticket};
pub use chat::{ChatReply, ChatTurn, attached_pictures};
pub use uploads::{Upload, UploadReport, UploadSource};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Executor(#[from] ExecutorError),
    #[error(transparent)]
    Run(#[from] runs::UserRunError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Staging(#[from] StagingError),
    #[error(transparent)]
    Packages(#[from] PackagesError),
    #[error(transparent)]
    Assembly(#[from] assembly::AssemblyError),
    #[error(transparent)]
    Limits(#[from] LimitError),
    #[error(transparent)]
    Remote(#[from] remote::RemoteError),
    #[error("OPENAI_API_KEY is not set: chat needs an OpenAI-compatible API key")]
    NoModel,
    /// A request the member can fix; the sentence says how.
    #[error("{0}")]
    Refused(String),
    #[error("file bytes move into GridFS only when MONGODB_URI is set")]
    NoGridFs,
    #[error("cannot create {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl AppError {
    /// A failure of the storage (database down, disk full) rather than of the request.
    pub fn storage_trouble(&self) -> Option<crate::store::StorageTrouble> {
        match self {
            AppError::Store(err) | AppError::Run(runs::UserRunError::Store(err)) => err.trouble(),
            AppError::Metadata(err) => err.trouble(),
            AppError::DataDir { source, .. } => crate::store::StorageTrouble::of_io(source),
            _ => None,
        }
    }

    /// Why, as a clause a member may read: storage trouble in its own words, anything else
    /// without the internals (those go to the log).
    pub fn reason(&self) -> String {
        match self.storage_trouble() {
            Some(trouble) => trouble.sentence().to_string(),
            None => "an error on the bot's side".to_string(),
        }
    }

    /// The file asked for does not exist (for this user): an answer, not a failure.
    pub fn is_not_found(&self) -> bool {
        matches!(self, AppError::Store(StoreError::NotFound { .. }))
    }

    /// A failure of this host's engine or sandbox rather than of the request: on another
    /// host the same run may succeed.
    pub fn is_host_failure(&self) -> bool {
        matches!(
            self,
            AppError::Engine(_)
                | AppError::Executor(_)
                | AppError::Run(runs::UserRunError::Executor(_))
                | AppError::Run(runs::UserRunError::Staging { .. })
        )
    }
}

/// How long the process lives decides what is worth starting ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// One command, then exit: no warm pool (it would start containers only to remove
    /// them), and used containers are removed before `shutdown` returns.
    OneShot,
    /// A long-lived service (the bot): the warm pool per settings, removals in the
    /// background, the store's sweeper running.
    Service,
}

pub struct App {
    settings: Settings,
    lifetime: Lifetime,
    engine: OnceCell<Arc<DockerEngine>>,
    executor: OnceCell<Arc<Executor<DockerEngine>>>,
    store: OnceCell<Arc<FileStore<AnyMetadata>>>,
    conversations: OnceCell<AnyConversations>,
    /// One client per model asked for (each may be on its own server).
    models: models::ModelClients,
    /// What model requests in flight may still bill, against the monthly caps.
    reservations: budget::Reservations,
    /// Changes of a server's settings, one at a time.
    guild_updates: tokio::sync::Mutex<()>,
    limiter: admission::Limiter,
    running: running::Running,
    sweeper: std::sync::Mutex<Option<SweeperHandle>>,
    secrets: Vec<String>,
    /// Executors elsewhere that run the code (EXECUTOR_URLS); None runs it here.
    remote: Option<remote::RemoteExecutors>,
    /// Pictures made ready for the model (measured, downscaled in a sandbox).
    pictures: picture_cache::PictureCache,
    /// Models whose server refused image parts: they get text only from then on.
    blind_models: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Downscaled copies of pictures kept in memory for the next requests.
const PICTURE_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// A piece of code to run for a user, with their stored files.
#[derive(Debug, Clone)]
pub struct CodeRun {
    pub user_id: String,
    pub code: String,
    pub limits: Limits,
    /// Only these stored files (each must be the user's); all their live files when None.
    pub file_ids: Option<Vec<String>>,
    /// Keep the output files here too (the CLI's --out); the store keeps its copies anyway.
    pub output_dir: Option<PathBuf>,
    /// The conversation (a channel, a CLI session name) whose variables persist between
    /// runs; None, or SESSION_STATE=off, runs the code with a fresh namespace.
    pub session: Option<String>,
    /// Who watches the run as it happens (live output); None relays nothing.
    pub watch: Option<RunWatch>,
}

/// What `reset` did.
#[derive(Debug, Default)]
pub struct ResetReport {
    pub history_error: Option<AppError>,
    pub files_deleted: Option<usize>,
    /// Asked to delete the files, the list of them could not be read.
    pub files_error: Option<AppError>,
    /// The variables of the user's conversations could not be forgotten.
    pub state_error: Option<AppError>,
}

impl App {
    /// Nothing is connected yet: each part opens on first use, so `codebox files list`
    /// needs no Docker daemon and `codebox run -c` no database.
    pub fn new(settings: Settings, lifetime: Lifetime) -> App {
        let limiter = admission::Limiter::new(
            settings.chat.rate_limit_per_minute,
            settings.sandbox.max_concurrent_executions,
            settings.chat.max_queued_messages,
        );
        let secrets = settings.secrets();
        let remote = remote::RemoteExecutors::from_settings(&settings.executor);
        App {
            settings,
            lifetime,
            engine: OnceCell::new(),
            executor: OnceCell::new(),
            store: OnceCell::new(),
            conversations: OnceCell::new(),
            models: models::ModelClients::default(),
            reservations: budget::Reservations::default(),
            guild_updates: tokio::sync::Mutex::new(()),
            limiter,
            running: running::Running::default(),
            sweeper: std::sync::Mutex::new(None),
            secrets,
            remote,
            pictures: picture_cache::PictureCache::new(PICTURE_CACHE_BYTES),
            blind_models: std::sync::Mutex::new(std::collections::HashSet::new()),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Values that must never appear in anything sent to a user.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// `text` with every secret value replaced.
    pub fn redact(&self, text: &str) -> String {
        crate::llm::tool_result::redact(text, &self.secrets)
    }

    /// Opens everything a long-lived process needs before it takes requests: the data
    /// directory, the engine (containers left by dead processes are removed), the warm
    /// pool, the store with its sweeper, and conversations.
    pub async fn start(&self) -> Result<(), AppError> {
        let modes = crate::data_dir::ensure(&self.settings.data_dir).map_err(|source| {
            AppError::DataDir {
                path: self.settings.data_dir.clone(),
                source,
            }
        })?;
        if let crate::data_dir::DataDirModes::Tightened { was } = modes {
            tracing::warn!(
                data_dir = %self.settings.data_dir.display(),
                was = format!("{was:o}"),
                "DATA_DIR was readable by other local accounts; tightened to 0700"
            );
        }
        // With executors elsewhere this host needs no Docker engine at all.
        if self.remote.is_none() {
            let executor = self.executor().await?;
            let reaped = executor.reap_orphans().await?;
            if reaped > 0 {
                tracing::info!(reaped, "removed sandbox containers left by a previous run");
            }
        }
        let store = self.store().await?;
        tracing::info!(backend = store.metadata().kind(), "file store ready");
        if self.lifetime == Lifetime::Service {
            // Its first round runs now: expired files, orphans, and what dead runs left.
            let (roots, max_age) = (self.leftover_roots(), self.longest_run());
            let handle = sweeper::spawn_with(
                store.clone(),
                Duration::from_secs_f64(self.settings.store.cleanup_interval_minutes * 60.0),
                move || {
                    leftovers::clean(&roots, max_age);
                },
            );
            if let Ok(mut slot) = self.sweeper.lock() {
                *slot = Some(handle);
            }
        } else {
            self.remove_leftovers();
        }
        self.conversations().await?;
        Ok(())
    }

    /// Cancels running work (containers are removed by their guards), stops the sweeper,
    /// removes the warm pool and waits (bounded) for every removal.
    pub async fn shutdown(&self) {
        self.running.cancel_all();
        // Cancelled work drops its containers' guards when its task is dropped; wait for
        // that, so the executor's drain below sees every removal.
        if !self.running.settle(Duration::from_secs(10)).await {
            tracing::warn!("some cancelled work did not stop in time");
        }
        if let Ok(mut slot) = self.sweeper.lock() {
            slot.take();
        }
        if let Some(executor) = self.executor.get() {
            executor.shutdown().await;
        }
    }

    async fn engine(&self) -> Result<Arc<DockerEngine>, AppError> {
        let engine = self
            .engine
            .get_or_try_init(|| async { DockerEngine::connect().await.map(Arc::new) })
            .await?;
        Ok(engine.clone())
    }

    async fn executor(&self) -> Result<Arc<Executor<DockerEngine>>, AppError> {
        let executor = self
            .executor
            .get_or_try_init(|| async {
                let engine = self.engine().await?;
                let pool = match self.lifetime {
                    Lifetime::OneShot => crate::config::PoolSettings {
                        warm_pool_size: 0,
                        ..self.settings.pool.clone()
                    },
                    Lifetime::Service => self.settings.pool.clone(),
                };
                let executor = assembly::executor(
                    engine,
                    &self.settings.sandbox,
                    &pool,
                    &self.settings.packages,
                    &self.settings.data_dir,
                )?;
                let executor = match self.lifetime {
                    Lifetime::OneShot => executor,
                    Lifetime::Service => executor.removing_in_background(),
                };
                Ok::<_, AppError>(Arc::new(executor))
            })
            .await?;
        Ok(executor.clone())
    }

    async fn store(&self) -> Result<Arc<FileStore<AnyMetadata>>, AppError> {
        let store = self
            .store
            .get_or_try_init(|| async {
                let settings = &self.settings.store;
                let meta = AnyMetadata::from_settings(settings, &self.settings.data_dir).await?;
                let mut store = FileStore::new(
                    meta,
                    &self.settings.data_dir,
                    StoreLimits::from_settings(settings),
                );
                // With MongoDB the bytes live there too: any executor can stage them.
                if let Some(uri) = &settings.mongodb_uri {
                    let database =
                        crate::store::db::connect_mongo(uri.expose(), &settings.mongodb_database)
                            .await?;
                    store = store.with_blobs(AnyBlobs::GridFs(GridFsBlobs::new(
                        &database,
                        &self.settings.data_dir,
                        settings.file_cache_max_mb * 1024 * 1024,
                    )));
                }
                Ok::<_, AppError>(Arc::new(store))
            })
            .await?;
        Ok(store.clone())
    }

    async fn conversations(&self) -> Result<&AnyConversations, AppError> {
        Ok(self
            .conversations
            .get_or_try_init(|| {
                AnyConversations::from_settings(&self.settings.store, &self.settings.data_dir)
            })
            .await?)
    }

    /// The session key of a run, when sessions are on.
    fn session_key<'a>(&self, session: Option<&'a str>) -> Option<runs::SessionKey<'a>> {
        let mb = self.settings.sandbox.session_state_mb()?;
        Some(runs::SessionKey {
            name: session?,
            max_bytes: mb * 1024 * 1024,
        })
    }

    fn staging_root(&self) -> PathBuf {
        self.settings.data_dir.join("staging")
    }

    fn outputs_root(&self) -> PathBuf {
        self.settings.data_dir.join("outputs")
    }

    /// Where runs of this process leave directories. None when runs happen on executors:
    /// staging and outputs then belong to them, and a client sharing DATA_DIR with one
    /// (another PID namespace, where its owner looks dead) must never remove them.
    fn leftover_roots(&self) -> Vec<PathBuf> {
        if self.remote.is_some() {
            return Vec::new();
        }
        vec![self.staging_root(), self.outputs_root()]
    }

    /// Longer than any run can last: start-up, an install, the code, output collection.
    fn longest_run(&self) -> Duration {
        let s = &self.settings;
        Duration::from_secs_f64(
            s.sandbox.sandbox_startup_timeout
                + s.packages.package_install_timeout
                + s.sandbox.code_execution_timeout
                + 120.0
                + 300.0,
        )
    }

    /// Removes what runs of dead processes left under staging/ and outputs/ (hard links to
    /// deleted files included); the removed paths.
    pub fn remove_leftovers(&self) -> Vec<PathBuf> {
        leftovers::clean(&self.leftover_roots(), self.longest_run())
    }

    /// The operator's limits for one run.
    pub fn operator_limits(&self) -> Limits {
        Limits::from_settings(&self.settings.sandbox)
    }

    /// Removes containers left by codebox processes that died (one-shot commands call it
    /// before their run).
    pub async fn reap_orphans(&self) -> Result<usize, AppError> {
        // Containers belong to the executors when runs happen there.
        if self.remote.is_some() {
            return Ok(0);
        }
        Ok(self.executor().await?.reap_orphans().await?)
    }

    /// Runs code for a user: their files staged read-only, every output stored for them
    /// (paired by record), the run's own output directory removed.
    pub async fn run_code(&self, run: CodeRun) -> Result<UserRunResult, AppError> {
        if let Some(remote) = &self.remote {
            return self.run_remotely(remote, run).await;
        }
        let executor = self.executor().await?;
        let store = self.store().await?;
        let ran = runs::run_for_user(
            &executor,
            &store,
            &self.staging_root(),
            &self.outputs_root(),
            runs::UserRun {
                user_id: &run.user_id,
                code: run.code,
                limits: run.limits,
                file_ids: run.file_ids,
                output_dir: run.output_dir.as_deref().map(absolute),
                session: self.session_key(run.session.as_deref()),
                watch: run.watch,
            },
        )
        .await?;
        self.keep_measured_figures(&ran.generated_files);
        Ok(ran)
    }

    /// Unless a container is held for the conversation already, has one restore its
    /// state for its next run. Not called by the front ends yet: every conversation that
    /// ends unused leaves a container warmed for nothing, on nodes whose CPU is the runs'.
    pub fn prepare_turn(&self, user_id: &str, session: &str, limits: Limits) {
        let held = self
            .executor
            .get()
            .is_some_and(|executor| executor.holds_for(&runs::conversation_of(user_id, session)));
        if !held {
            self.prepare_conversation(user_id, session, limits);
        }
    }

    /// In the background, has a warm container restore the conversation's state for its
    /// next run (nothing before this process ran anything, nor with runs elsewhere).
    fn prepare_conversation(&self, user_id: &str, session: &str, limits: Limits) {
        let (Some(executor), Some(store)) = (self.executor.get(), self.store.get()) else {
            return;
        };
        if self.remote.is_some() || self.session_key(Some(session)).is_none() {
            return;
        }
        let (executor, store) = (executor.clone(), store.clone());
        let (user_id, session) = (user_id.to_string(), session.to_string());
        tokio::spawn(
            async move {
                let prepared =
                    runs::prepare_conversation(&executor, &store, &user_id, &session, &limits);
                if let Err(err) = prepared.await {
                    tracing::debug!(error = %err, "cannot restore a conversation's state ahead");
                }
            }
            .instrument(tracing::debug_span!("run.prepare")),
        );
    }

    /// A run on an executor elsewhere; its files are found again in this process's view of
    /// the same store (the stored copies' paths are the executor's).
    async fn run_remotely(
        &self,
        remote: &remote::RemoteExecutors,
        run: CodeRun,
    ) -> Result<UserRunResult, AppError> {
        let operator = self.operator_limits();
        let narrowed =
            run.limits.timeout < operator.timeout || run.limits.memory_mb < operator.memory_mb;
        let request = crate::executor_api::RunRequest {
            user_id: run.user_id.clone(),
            code: run.code,
            conversation: run.session,
            timeout_s: narrowed.then_some(run.limits.timeout.as_secs_f64()),
            memory_mb: narrowed.then_some(run.limits.memory_mb),
            file_ids: run.file_ids,
            events: true,
            output_chars: None,
        };
        let mut result = remote.run(request, run.watch.as_ref()).await?;
        let store = self.store().await?;
        // The executor's word on a file is only its id: name, size and the bytes sent on come
        // from this user's own record, and an id that is not one is dropped (a forged path
        // would otherwise be read and attached, secrets and all).
        let mut generated = Vec::with_capacity(result.generated_files.len());
        for file in std::mem::take(&mut result.generated_files) {
            match store.get(&run.user_id, &file.file_id).await {
                Ok(record) => generated.push(runs::GeneratedFile {
                    path: store.local_path(&record).await?,
                    file_id: record.file_id,
                    filename: record.filename,
                    size: record.file_size,
                    // A measure counts only for what that run wrote, never for an upload.
                    picture: file.picture.filter(|_| record.origin == Origin::Generated),
                    file_type: record.file_type,
                }),
                Err(err) => {
                    tracing::warn!(file_id = %file.file_id, error = %err, "an executor named a file this user does not have; dropped");
                }
            }
        }
        result.generated_files = generated;
        self.keep_measured_figures(&result.generated_files);
        Ok(result)
    }

    /// Runs code with no user: host files copied read-only to /mnt/inputs, outputs kept in
    /// `output_dir` (default DATA_DIR/outputs/<run_id>): what `codebox run` without --user is.
    pub async fn run_anonymous(
        &self,
        code: String,
        limits: Limits,
        inputs: &[PathBuf],
        output_dir: Option<PathBuf>,
        watch: Option<RunWatch>,
    ) -> Result<ExecutionResult, AppError> {
        let staged = if inputs.is_empty() {
            None
        } else {
            Some(staging::stage_inputs(&self.staging_root(), inputs)?)
        };
        let executor = self.executor().await?;
        let result = executor
            .execute(ExecutionRequest {
                code,
                limits,
                input_dir: staged.as_ref().map(|s| absolute(s.path())),
                output_dir: output_dir.as_deref().map(absolute),
                files: Vec::new(),
                session: None,
                watch,
            })
            .await?;
        drop(staged);
        Ok(result)
    }

    pub async fn list_files(&self, user_id: &str) -> Result<Vec<FileRecord>, AppError> {
        Ok(self.store().await?.list(user_id).await?)
    }

    /// One of the user's files with the path of its bytes.
    pub async fn get_file(
        &self,
        user_id: &str,
        file_id: &str,
    ) -> Result<(FileRecord, PathBuf), AppError> {
        let store = self.store().await?;
        let record = store.get(user_id, file_id).await?;
        let path = store.local_path(&record).await?;
        Ok((record, path))
    }

    /// Any user's file by id (operators' `codebox files show`).
    pub async fn show_file(
        &self,
        file_id: &str,
    ) -> Result<Option<(FileRecord, PathBuf)>, AppError> {
        let store = self.store().await?;
        match store.show(file_id).await? {
            Some(record) => {
                let path = store.local_path(&record).await?;
                Ok(Some((record, path)))
            }
            None => Ok(None),
        }
    }

    pub async fn delete_file(&self, user_id: &str, file_id: &str) -> Result<FileRecord, AppError> {
        Ok(self.store().await?.delete(user_id, file_id).await?)
    }

    /// Deletes expired files, reconciles disk with metadata, and removes what runs of dead
    /// processes left behind.
    pub async fn sweep(&self) -> Result<(SweepReport, ReconcileReport, Vec<PathBuf>), AppError> {
        let store = self.store().await?;
        let swept = store.sweep(store.clock().now()).await?;
        let reconciled = store.reconcile().await?;
        Ok((swept, reconciled, self.remove_leftovers()))
    }

    /// Moves the bytes of a disk store into GridFS (MONGODB_URI must be set).
    pub async fn migrate_files(&self) -> Result<crate::store::migrate::MigrateReport, AppError> {
        let store = self.store().await?;
        let AnyBlobs::GridFs(gridfs) = store.blobs() else {
            return Err(AppError::NoGridFs);
        };
        let disk = crate::store::disk::DiskBlobs::new(&self.settings.data_dir);
        Ok(crate::store::migrate::disk_to_gridfs(&store, &disk, gridfs).await?)
    }

    pub fn max_files_per_user(&self) -> usize {
        self.settings.store.max_files_per_user
    }

    /// The warm pool's state, once the executor is open and has a pool.
    pub fn pool_status(&self) -> Option<crate::sandbox::pool::PoolStatus> {
        self.executor
            .get()
            .and_then(|executor| executor.pool_status())
    }

    /// Waits until this process's warm pool is full (benchmarks measure the warm path).
    pub async fn wait_for_warm_pool(&self, timeout: Duration) -> Result<bool, AppError> {
        Ok(self.executor().await?.wait_for_warm_pool(timeout).await)
    }

    /// The shared package cache (listing and pruning).
    pub fn package_cache(&self) -> Result<PackageCache, AppError> {
        Ok(PackageCache::open(&self.settings.data_dir)?)
    }

    /// The limits in a guild: the operator's, lowered by the guild's admins if they chose.
    pub async fn limits_for(&self, guild_id: Option<&str>) -> Result<Limits, AppError> {
        let guild = self.guild_settings(guild_id).await?;
        Ok(self.limits_in(guild.as_ref()))
    }

    /// Lowers a guild's limits within the operator's maxima; the caller checked that the
    /// member may. Returns the guild's effective limits.
    pub async fn set_guild_limits(
        &self,
        guild_id: &str,
        timeout_s: Option<f64>,
        memory_mb: Option<u64>,
    ) -> Result<Limits, AppError> {
        self.operator_limits().check_request(timeout_s, memory_mb)?;
        let saved = self
            .update_guild_settings(guild_id, |current| {
                if timeout_s.is_some() {
                    current.timeout_s = timeout_s;
                }
                if memory_mb.is_some() {
                    current.memory_mb = memory_mb;
                }
                Ok(())
            })
            .await?;
        Ok(self.limits_in(Some(&saved)))
    }

    /// This month's usage of a user: (month, totals).
    pub async fn usage(&self, user_id: &str) -> Result<(String, UsageTotals), AppError> {
        let month = metered::month_of(chrono::Utc::now());
        let totals = self.conversations().await?.usage(user_id, &month).await?;
        Ok((month, totals))
    }

    /// Clears the user's history (every channel); with `files`, deletes their files too.
    pub async fn reset(&self, user_id: &str, files: bool) -> ResetReport {
        let mut report = ResetReport::default();
        let cleared = match self.conversations().await {
            Ok(conversations) => conversations
                .clear_history(user_id, None)
                .await
                .map_err(AppError::from),
            Err(err) => Err(err),
        };
        if let Err(err) = cleared {
            report.history_error = Some(err);
        }
        let forgotten = match self.store().await {
            Ok(store) => store
                .forget_all_session_states(user_id)
                .await
                .map_err(AppError::from),
            Err(err) => Err(err),
        };
        if let Err(err) = forgotten {
            report.state_error = Some(err);
        }
        if files {
            let mut deleted = 0;
            match self.list_files(user_id).await {
                Ok(records) => {
                    for record in records {
                        if self.delete_file(user_id, &record.file_id).await.is_ok() {
                            deleted += 1;
                        }
                    }
                }
                Err(err) => report.files_error = Some(err),
            }
            report.files_deleted = Some(deleted);
        }
        report
    }

    /// Admission of one unit of a user's work (a chat turn, a direct run): rate limit, one
    /// at a time per user, a bounded queue.
    pub fn admit(&self, user_id: &str) -> Result<Admission, Refusal> {
        self.limiter.admit(user_id, Instant::now())
    }

    /// Waits for a queued ticket's turn.
    pub async fn wait_turn(&self, ticket: Ticket) -> Ticket {
        self.limiter.wait_turn(ticket).await
    }

    /// Runs a user's work so that `cancel` can stop it (its containers are removed by
    /// their guards); None when it was cancelled.
    pub async fn run_cancellable<T: Send + 'static>(
        &self,
        user_id: &str,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        self.running.run(user_id, work).await
    }

    /// Cancels the user's running work; true when there was some.
    pub fn cancel(&self, user_id: &str) -> bool {
        self.running.cancel(user_id)
    }

    /// Cancels everyone's running work (shutdown).
    pub fn cancel_all(&self) {
        self.running.cancel_all();
    }

    /// Whether the user's work was cancelled within `within` and nothing new started since.
    pub fn cancelled_within(&self, user_id: &str, within: std::time::Duration) -> bool {
        self.running.cancelled_within(user_id, within)
    }

    /// Whether the user has work running.
    pub fn is_running(&self, user_id: &str) -> bool {
        self.running.is_running(user_id)
    }
}
