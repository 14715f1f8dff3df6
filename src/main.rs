#![forbid(unsafe_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use codebox::config::{Runtime, Settings, Sources};
use codebox::sandbox::docker::DockerEngine;
use codebox::sandbox::image::{self, BuildOutcome, BuildRequest};
use codebox::sandbox::{ExecutionRequest, Executor, Limits};
use codebox::{doctor, render, staging};

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
    /// Check the Docker daemon, runtimes, image and data directory.
    Doctor,
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
    // `run` prints its own one-line errors and JSON; logs there would be noise.
    let default_filter = match cli.command {
        Command::Run(_) => "error",
        _ => "info",
    };
    init_logging(settings.rust_log.as_deref().unwrap_or(default_filter));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("codebox: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command, settings)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("codebox: {err:#}");
            ExitCode::FAILURE
        }
    }
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
                tag.as_deref().unwrap_or(&settings.sandbox_image),
                if_changed,
            )
            .await
        }
        Command::Doctor => run_doctor(settings).await,
    }
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
    let mut limits = Limits::from_settings(&settings);
    if let Some(timeout) = args.timeout {
        if !(timeout.is_finite() && timeout > 0.0) {
            bail!("--timeout must be a positive number of seconds");
        }
        limits.timeout = Duration::from_secs_f64(timeout);
    }
    if let Some(memory_mb) = args.memory_mb {
        if memory_mb < 16 {
            bail!("--memory-mb must be at least 16");
        }
        limits.memory_mb = memory_mb;
    }
    if let Some(runtime) = args.runtime {
        limits.runtime = match runtime {
            RuntimeArg::Runc => Runtime::Runc,
            RuntimeArg::Runsc => Runtime::Runsc,
        };
    }
    let staged = if args.inputs.is_empty() {
        None
    } else {
        Some(staging::stage_inputs(
            &settings.data_dir.join("staging"),
            &args.inputs,
        )?)
    };

    let engine = Arc::new(DockerEngine::connect().await?);
    let executor = Executor::new(engine, &settings);
    executor.reap_orphans().await?;
    let result = executor
        .execute(ExecutionRequest {
            code,
            limits,
            input_dir: staged.as_ref().map(|s| absolute(s.path())),
            output_dir: args.out.map(|d| absolute(&d)),
        })
        .await?;
    drop(staged);

    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        print!("{}", render::run_summary(&result));
    }
    Ok(ExitCode::SUCCESS)
}

/// Docker resolves bind-mount sources on the daemon side: they must be absolute.
fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
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
