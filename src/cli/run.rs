//! `codebox run`: one piece of Python in a fresh sandbox, its output live in a terminal.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use codebox::app::{App, CodeRun, Lifetime, Limits, watch};
use codebox::config::{MAX_MEMORY_MB, MAX_TIMEOUT_S, Runtime, Settings};
use codebox::{render, terminal};
use tokio::signal::unix::SignalKind;

/// Events held for a terminal that is behind (it drops them, never slows the run).
const LIVE_BACKLOG: usize = 1024;

#[derive(Args)]
pub struct RunArgs {
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Seconds the code may run (default CODE_EXECUTION_TIMEOUT).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Memory limit in MB (default SANDBOX_MEMORY_MB).
    #[arg(long, value_name = "N")]
    pub memory_mb: Option<u64>,
    /// Container runtime (default SANDBOX_RUNTIME).
    #[arg(long, value_enum)]
    pub runtime: Option<RuntimeArg>,
    /// A file made visible read-only to the code under /mnt/inputs (repeatable). Not with
    /// --user: a user's runs see their stored files (`codebox files upload` stores one).
    #[arg(long = "input", value_name = "PATH", conflicts_with = "user")]
    pub inputs: Vec<PathBuf>,
    /// Where collected output files are saved (default: a fresh dir under DATA_DIR/outputs).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Run for this user: their stored files are loadable with load_file(id), and every
    /// output file is stored for them (listed in `generated_files`).
    #[arg(long)]
    pub user: Option<String>,
    /// With --user: only these stored files (default: all the user's live files).
    #[arg(long = "file", value_name = "ID", requires = "user")]
    pub file_ids: Vec<String>,
    /// With --user: the session whose variables, imports and loaded data persist between
    /// runs (as in the bot, where each channel is one); saved after the run, restored
    /// before the next one with the same NAME, outside the time limit.
    #[arg(long, value_name = "NAME", requires = "user")]
    pub session: Option<String>,
    /// Code to run (it may start with `-`: `-c '-(0.5*x + 1) ** 2'`).
    #[arg(
        short = 'c',
        value_name = "CODE",
        conflicts_with = "script",
        allow_hyphen_values = true
    )]
    pub code: Option<String>,
    /// Script file to run, or - for stdin.
    #[arg(value_name = "SCRIPT")]
    pub script: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum RuntimeArg {
    Runc,
    Runsc,
}

/// Limits of a CLI run: the operator's, changed by the flags, each checked here so a
/// wrong number is a clear error before any container starts.
pub fn cli_limits(args: &RunArgs, settings: &Settings) -> anyhow::Result<Limits> {
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

pub async fn run(args: RunArgs, settings: Settings) -> anyhow::Result<ExitCode> {
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

pub async fn run_with(
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
pub fn interrupted(signal: &str, code: u8) -> ExitCode {
    eprintln!("codebox: {signal}: run cancelled; its container is removed before exit");
    ExitCode::from(code)
}
