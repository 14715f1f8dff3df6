#![forbid(unsafe_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use codebox::app::{App, CodeRun, Lifetime, Limits, Upload, UploadSource, watch};
use codebox::config::{MAX_MEMORY_MB, MAX_TIMEOUT_S, Runtime, Settings, Sources};
use codebox::container::docker::DockerEngine;
use codebox::sandbox::image::{self, BuildOutcome, BuildRequest};
use codebox::{doctor, render, terminal};
use tokio::signal::unix::SignalKind;

/// Events held for a terminal that is behind (it drops them, never slows the run).
const LIVE_BACKLOG: usize = 1024;

#[derive(Parser)]
#[command(
    name = "codebox",
    version,
    about = "A code interpreter that runs Python in locked-down, single-use containers"
)]
struct Cli {
    /// TOML settings file (default: ./codebox.toml when present, or $CODEBOX_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Python code in a fresh sandbox and print what it produced.
    Run(RunArgs),
    /// Manage the sandbox image.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Run the Discord bot (needs DISCORD_TOKEN and OPENAI_API_KEY).
    Bot,
    /// Serve this host's sandboxes over HTTP to bots and CLIs elsewhere (EXECUTOR_URLS).
    Executor {
        /// Address to listen on (default EXECUTOR_LISTEN, 127.0.0.1:8090).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Check the Docker daemon, runtimes, image and data directory.
    Doctor,
    /// Manage users' stored files.
    Files {
        #[command(subcommand)]
        command: FilesCommand,
    },
    /// Inspect or trim the shared package cache.
    Packages {
        #[command(subcommand)]
        command: PackagesCommand,
    },
}

#[derive(Subcommand)]
enum PackagesCommand {
    /// Every cached distribution, its size and last use.
    List,
    /// Remove least recently used distributions until the cache fits PACKAGE_CACHE_MAX_MB.
    Prune {
        /// Remove every cached distribution.
        #[arg(long)]
        all: bool,
        /// Trim to this many MB instead of PACKAGE_CACHE_MAX_MB.
        #[arg(long, conflicts_with = "all")]
        max_mb: Option<u64>,
    },
}

#[derive(Subcommand)]
enum FilesCommand {
    /// Store files for a user (summaries are computed inside a sandbox).
    Upload {
        #[arg(long)]
        user: String,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Skip the in-sandbox summary.
        #[arg(long)]
        no_summary: bool,
        #[arg(long)]
        json: bool,
    },
    /// List a user's live files, oldest first.
    List {
        #[arg(long)]
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Show one file's metadata (with --user, only if it is that user's).
    Show {
        id: String,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete one of a user's files (disk and metadata).
    Delete {
        #[arg(long)]
        user: String,
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete expired files now and reconcile disk with metadata.
    Sweep {
        #[arg(long)]
        json: bool,
    },
    /// Move file bytes from DATA_DIR into MongoDB GridFS (with MONGODB_URI set).
    Migrate {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Seconds the code may run (default CODE_EXECUTION_TIMEOUT).
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Memory limit in MB (default SANDBOX_MEMORY_MB).
    #[arg(long, value_name = "N")]
    memory_mb: Option<u64>,
    /// Container runtime (default SANDBOX_RUNTIME).
    #[arg(long, value_enum)]
    runtime: Option<RuntimeArg>,
    /// A file made visible read-only to the code under /mnt/inputs (repeatable).
    #[arg(long = "input", value_name = "PATH")]
    inputs: Vec<PathBuf>,
    /// Where collected output files are saved (default: a fresh dir under DATA_DIR/outputs).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Run for this user: their stored files are loadable with load_file(id), and every
    /// output file is stored for them (listed in `generated_files`).
    #[arg(long)]
    user: Option<String>,
    /// With --user: only these stored files (default: all the user's live files).
    #[arg(long = "file", value_name = "ID", requires = "user")]
    file_ids: Vec<String>,
    /// With --user: the session whose variables, imports and loaded data persist between
    /// runs (as in the bot, where each channel is one); saved after the run, restored
    /// before the next one with the same NAME, outside the time limit.
    #[arg(long, value_name = "NAME", requires = "user")]
    session: Option<String>,
    /// Code to run.
    #[arg(short = 'c', value_name = "CODE", conflicts_with = "script")]
    code: Option<String>,
    /// Script file to run, or - for stdin.
    #[arg(value_name = "SCRIPT")]
    script: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RuntimeArg {
    Runc,
    Runsc,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Build the sandbox image through the Docker API.
    Build {
        /// Base image (a Python with pip, or the local Debian base).
        #[arg(long, default_value = "python:3.12-slim")]
        base: String,
        /// Tag of the sandbox image (default SANDBOX_IMAGE).
        #[arg(long)]
        tag: Option<String>,
        /// Do nothing when the tagged image was built from the same context and base.
        #[arg(long)]
        if_changed: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(&Sources::from_process(cli.config.as_deref())) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("codebox: {err}");
            return ExitCode::from(2);
        }
    };
    // CLI commands print their own results and one-line errors; logs there would be noise.
    let default_filter = match cli.command {
        Command::Run(_) => "error",
        Command::Bot | Command::Executor { .. } => "info,serenity=warn",
        _ => "warn",
    };
    init_logging(settings.rust_log.as_deref().unwrap_or(default_filter));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("codebox: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(dispatch(cli.command, settings)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("codebox: {err:#}");
            ExitCode::FAILURE
        }
    };
    // A thread still writing to a terminal nobody reads must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(2));
    code
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn dispatch(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run(args, settings).await,
        Command::Image {
            command:
                ImageCommand::Build {
                    base,
                    tag,
                    if_changed,
                },
        } => {
            build_image(
                &base,
                tag.as_deref().unwrap_or(&settings.sandbox.sandbox_image),
                if_changed,
            )
            .await
        }
        Command::Doctor => run_doctor(settings).await,
        Command::Bot => bot(settings).await,
        Command::Executor { listen } => executor(settings, listen).await,
        Command::Files { command } => files(command, settings).await,
        Command::Packages { command } => packages(command, settings),
    }
}

async fn bot(settings: Settings) -> anyhow::Result<ExitCode> {
    // Refuse before anything starts (no pool warmed for nothing).
    codebox::discord::required_token(&settings.discord, &settings.chat)?;
    let discord = settings.discord.clone();
    let app = Arc::new(App::new(settings, Lifetime::Service));
    app.start().await?;
    let outcome = codebox::discord::run(app.clone(), discord, wait_for_shutdown_signal()).await;
    app.shutdown().await;
    outcome?;
    Ok(ExitCode::SUCCESS)
}

async fn executor(
    settings: Settings,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let addr = match listen {
        Some(addr) => addr,
        None => settings.executor.listen_addr()?,
    };
    let token = settings.executor.executor_token.clone();
    let limits = codebox::service::connections::ConnectionLimits::from_settings(&settings.executor);
    codebox::service::check_listen(addr, token.as_ref())?;
    let app = Arc::new(App::new(settings, Lifetime::Service));
    app.start().await?;
    let outcome =
        codebox::service::serve(app.clone(), addr, token, limits, wait_for_shutdown_signal()).await;
    app.shutdown().await;
    outcome?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

fn packages(command: PackagesCommand, settings: Settings) -> anyhow::Result<ExitCode> {
    let max_mb = settings.packages.package_cache_max_mb;
    let app = App::new(settings, Lifetime::OneShot);
    let cache = app.package_cache()?;
    match command {
        PackagesCommand::List => {
            let entries = cache.entries()?;
            if entries.is_empty() {
                println!("the package cache at {} is empty", cache.root().display());
            }
            let mut total = 0;
            for entry in &entries {
                total += entry.bytes;
                let last_used: chrono::DateTime<chrono::Utc> = entry.last_used.into();
                println!(
                    "{:<40} {:>10.1} MB  last used {}",
                    entry.distribution,
                    entry.bytes as f64 / 1e6,
                    last_used.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
            }
            if !entries.is_empty() {
                println!(
                    "{} distributions, {:.1} MB (limit {max_mb} MB)",
                    entries.len(),
                    total as f64 / 1e6,
                );
            }
        }
        PackagesCommand::Prune { all, max_mb: cap } => {
            let max_bytes = if all {
                0
            } else {
                cap.unwrap_or(max_mb).saturating_mul(1024 * 1024)
            };
            // A running bot's leases live in its own process; prune is an operator's
            // decision and does not see them.
            let removed = cache.prune(max_bytes, &std::collections::HashSet::new())?;
            for dist in &removed {
                println!("removed {dist}");
            }
            println!("{} distributions removed", removed.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

async fn files(command: FilesCommand, settings: Settings) -> anyhow::Result<ExitCode> {
    let app = App::new(settings, Lifetime::OneShot);
    let outcome = files_with(&app, command).await;
    // Summary runs remove their containers before the process exits.
    app.shutdown().await;
    outcome
}

async fn files_with(app: &App, command: FilesCommand) -> anyhow::Result<ExitCode> {
    match command {
        FilesCommand::Upload {
            user,
            paths,
            no_summary,
            json,
        } => {
            let uploads = paths
                .iter()
                .map(|path| Upload {
                    filename: path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    source: UploadSource::Path(path.clone()),
                })
                .collect();
            let report = app.store_uploads(&user, uploads, !no_summary).await?;
            for old in &report.evicted {
                eprintln!(
                    "codebox: evicted {} ({}) to stay within the limits",
                    old.file_id, old.filename
                );
            }
            if let Some((filename, why)) = report.refused.first() {
                bail!("cannot store {filename}: {why}");
            }
            if json {
                print_json(&report.stored)?;
            } else {
                print!("{}", render::file_table(&report.stored));
            }
        }
        FilesCommand::List { user, json } => {
            let records = app.list_files(&user).await?;
            if json {
                print_json(&records)?;
            } else {
                print!("{}", render::file_table(&records));
            }
        }
        FilesCommand::Show { id, user, json } => {
            let (record, path) = match &user {
                Some(user) => app.get_file(user, &id).await?,
                None => app
                    .show_file(&id)
                    .await?
                    .with_context(|| format!("no file {id}"))?,
            };
            if json {
                print_json(&record)?;
            } else {
                print!("{}", render::file_details(&record, &path));
            }
        }
        FilesCommand::Delete { user, id, json } => {
            let record = app.delete_file(&user, &id).await?;
            if json {
                print_json(&record)?;
            } else {
                println!("deleted {} ({})", record.file_id, record.filename);
            }
        }
        FilesCommand::Migrate { json } => {
            let report = app.migrate_files().await?;
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "moved {} files into GridFS; {} were there already; {} had no bytes anywhere",
                    report.moved.len(),
                    report.already.len(),
                    report.missing.len()
                );
            }
        }
        FilesCommand::Sweep { json } => {
            let (swept, reconciled, leftovers) = app.sweep().await?;
            if json {
                print_json(&serde_json::json!({
                    "expired_removed": swept.removed,
                    "orphan_files_removed": reconciled.orphan_files,
                    "orphan_records_removed": reconciled.orphan_records,
                    "dead_run_dirs_removed": leftovers,
                }))?;
            } else {
                println!(
                    "removed {} expired files, {} orphan files, {} orphan records, {} directories of dead runs",
                    swept.removed.len(),
                    reconciled.orphan_files.len(),
                    reconciled.orphan_records.len(),
                    leftovers.len()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Limits of a CLI run: the operator's, changed by the flags, each checked here so a
/// wrong number is a clear error before any container starts.
fn cli_limits(args: &RunArgs, settings: &Settings) -> anyhow::Result<Limits> {
    let mut limits = Limits::from_settings(&settings.sandbox);
    if let Some(timeout) = args.timeout {
        if !(timeout.is_finite() && timeout > 0.0 && timeout <= MAX_TIMEOUT_S) {
            bail!("--timeout must be a positive number of seconds, at most {MAX_TIMEOUT_S}");
        }
        limits.timeout = Duration::from_secs_f64(timeout);
    }
    if let Some(memory_mb) = args.memory_mb {
        if !(16..=MAX_MEMORY_MB).contains(&memory_mb) {
            bail!("--memory-mb must be between 16 and {MAX_MEMORY_MB}");
        }
        limits.memory_mb = memory_mb;
    }
    if let Some(runtime) = args.runtime {
        limits.runtime = match runtime {
            RuntimeArg::Runc => Runtime::Runc,
            RuntimeArg::Runsc => Runtime::Runsc,
        };
    }
    Ok(limits)
}

async fn run(args: RunArgs, settings: Settings) -> anyhow::Result<ExitCode> {
    let code = match (&args.code, &args.script) {
        (Some(code), _) => code.clone(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut code = String::new();
            std::io::stdin()
                .read_to_string(&mut code)
                .context("cannot read code from stdin")?;
            code
        }
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read script {}", path.display()))?,
        (None, None) => bail!("give code with -c CODE, a SCRIPT path, or - for stdin"),
    };
    let limits = cli_limits(&args, &settings)?;
    let app = App::new(settings, Lifetime::OneShot);
    let outcome = run_with(&app, args, code, limits).await;
    // Used containers are removed in the background; wait for that before exiting.
    app.shutdown().await;
    outcome
}

async fn run_with(
    app: &App,
    args: RunArgs,
    code: String,
    limits: Limits,
) -> anyhow::Result<ExitCode> {
    // Installed before the run starts, so an early Ctrl-C cancels instead of killing us.
    let mut interrupt = tokio::signal::unix::signal(SignalKind::interrupt())?;
    let mut terminate = tokio::signal::unix::signal(SignalKind::terminate())?;
    app.reap_orphans().await?;
    app.remove_leftovers();
    // In a terminal the code's output shows as it comes; --json prints one object at the end.
    let (watch, printer) = if args.json {
        (None, None)
    } else {
        let (watch, subscription) = watch(LIVE_BACKLOG);
        (
            Some(watch),
            Some(tokio::task::spawn_blocking(move || {
                terminal::print_live(subscription)
            })),
        )
    };
    let json = args.json;
    let for_user = args.user.is_some();
    let work = async {
        match args.user {
            Some(user) => app
                .run_code(CodeRun {
                    user_id: user,
                    code,
                    limits,
                    file_ids: (!args.file_ids.is_empty()).then_some(args.file_ids),
                    output_dir: args.out,
                    session: args.session,
                    watch,
                })
                .await
                .map(|run| (run.result, run.generated_files)),
            None => app
                .run_anonymous(code, limits, &args.inputs, args.out, watch)
                .await
                .map(|result| (result, Vec::new())),
        }
    };
    // Dropping the run cancels it: its container goes to the retirer, which the caller's
    // shutdown waits for, so nothing is left behind.
    let (result, generated) = tokio::select! {
        outcome = work => outcome?,
        _ = interrupt.recv() => return Ok(interrupted("SIGINT", 130)),
        _ = terminate.recv() => return Ok(interrupted("SIGTERM", 143)),
    };
    let streamed = match printer {
        Some(printer) => Some(printer.await?),
        None => None,
    };
    if json {
        let mut value = serde_json::to_value(&result)?;
        if let (Some(object), true) = (value.as_object_mut(), for_user) {
            object.insert("generated_files".into(), serde_json::to_value(&generated)?);
        }
        println!("{}", serde_json::to_string(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    // Output already shown whole is not repeated; otherwise the capped copy follows.
    let shown_whole = streamed.is_some_and(|s| !s.incomplete)
        && !result.stdout_truncated
        && !result.stderr_truncated;
    if shown_whole {
        print!("{}", render::run_summary_after_streaming(&result));
    } else {
        print!("{}", render::run_summary(&result));
    }
    for file in &generated {
        println!(
            "stored {} as {} ({}, {} bytes)",
            file.filename, file.file_id, file.file_type, file.size
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What an interrupted run says before it exits with the shell's code for the signal.
fn interrupted(signal: &str, code: u8) -> ExitCode {
    eprintln!("codebox: {signal}: run cancelled; its container is removed before exit");
    ExitCode::from(code)
}

async fn build_image(base: &str, tag: &str, if_changed: bool) -> anyhow::Result<ExitCode> {
    let engine = DockerEngine::connect().await?;
    let outcome = image::build(
        &engine,
        BuildRequest {
            base,
            tag,
            if_changed,
        },
        |line| eprint!("{line}"),
    )
    .await?;
    match outcome {
        BuildOutcome::Built => println!("built {tag} from {base}"),
        BuildOutcome::UpToDate => println!("{tag} is up to date (base {base})"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_doctor(settings: Settings) -> anyhow::Result<ExitCode> {
    let engine = DockerEngine::connect().await;
    let checks = doctor::run_checks(&settings, engine.as_ref()).await;
    print!("{}", doctor::render(&checks));
    Ok(if checks.iter().all(|c| c.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
