//! `codebox doctor`: what this host can and cannot do, checked.

use std::process::ExitCode;

use codebox::config::Settings;
use codebox::container::docker::DockerEngine;
use codebox::doctor;

pub async fn run_doctor(settings: Settings) -> anyhow::Result<ExitCode> {
    let engine = DockerEngine::connect().await;
    let checks = doctor::run_checks(&settings, engine.as_ref()).await;
    print!("{}", doctor::render(&checks));
    Ok(if checks.iter().all(|c| c.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
