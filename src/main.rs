//! `codebox`: the command line (src/cli/), the Discord bot and the executor service.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use codebox::config::{LogFormat, Settings, Sources};

mod cli;

use cli::{Cli, Command, dispatch};

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
    init_logging(
        settings.rust_log.as_deref().unwrap_or(default_filter),
        settings.log_format,
    );
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

fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs
            .json()
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .init(),
    }
}
