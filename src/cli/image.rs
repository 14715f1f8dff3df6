//! `codebox image`: the sandbox image.

use std::process::ExitCode;

use clap::Subcommand;
use codebox::container::docker::DockerEngine;
use codebox::sandbox::image::{self, BuildOutcome, BuildRequest};

#[derive(Subcommand)]
pub enum ImageCommand {
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

pub async fn build_image(base: &str, tag: &str, if_changed: bool) -> anyhow::Result<ExitCode> {
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
