//! The command line: one file per subcommand, each calling the application core.

pub mod bot;
pub mod doctor;
pub mod emit;
pub mod executor;
pub mod files;
pub mod image;
pub mod packages;
pub mod run;
pub mod signals;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use codebox::config::Settings;

use files::FilesCommand;
use image::ImageCommand;
use packages::PackagesCommand;
use run::RunArgs;

#[derive(Parser)]
#[command(
    name = "codebox",
    version,
    about = "A code interpreter that runs Python in locked-down, single-use containers"
)]
pub struct Cli {
    /// TOML settings file (default: ./codebox.toml when present, or $CODEBOX_CONFIG).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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

pub async fn dispatch(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run::run(args, settings).await,
        Command::Image {
            command:
                ImageCommand::Build {
                    base,
                    tag,
                    if_changed,
                },
        } => {
            image::build_image(
                &base,
                tag.as_deref().unwrap_or(&settings.sandbox.sandbox_image),
                if_changed,
            )
            .await
        }
        Command::Doctor => doctor::run_doctor(settings).await,
        Command::Bot => bot::bot(settings).await,
        Command::Executor { listen } => executor::executor(settings, listen).await,
        Command::Files { command } => files::files(command, settings).await,
        Command::Packages { command } => packages::packages(command, settings),
    }
}
