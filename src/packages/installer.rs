//! Runs one installer container to completion and reads its per-distribution report.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::PackagesError;
use super::egress::EgressProxy;
use super::installer_spec::{InstallerSpec, installer_config};
use crate::container::attach::start_attached;
use crate::container::engine::{Chunk, Containers};
use crate::container::retirer::Retirer;

/// The report is a few short JSON lines; anything beyond this is not an honest installer.
const MAX_REPORT_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InstallOutcome {
    pub distribution: String,
    pub ok: bool,
    /// pip's last lines.
    pub log: String,
    /// The script worked within the limits it was given; an older one, which knows none,
    /// never says so.
    #[serde(default)]
    pub bounded: bool,
    /// What the installation takes, as the script measured it before copying it out.
    #[serde(default)]
    pub bytes: Option<u64>,
    /// pip ran out of room in the staging tmpfs: the installation exceeds its limit.
    #[serde(default)]
    pub disk_full: bool,
    /// Installed, but larger than the copy budget, so not copied out.
    #[serde(default)]
    pub too_large: bool,
}

pub async fn run_installer<E: Containers + 'static>(
    engine: &Arc<E>,
    retirer: &Arc<Retirer>,
    spec: &InstallerSpec,
    timeout: Duration,
) -> Result<Vec<InstallOutcome>, PackagesError> {
    let name = format!("codebox-install-{}", spec.run_id);
    // Serves the installer's connections for as long as this installation lasts.
    let _egress = EgressProxy::start(&spec.egress_socket(), spec.upstreams.clone())?;
    let (guard, _id, mut attached) =
        start_attached(engine, retirer, name, installer_config(spec)).await?;
    let _ = attached.input.shutdown().await;

    let mut report = Vec::new();
    let mut diagnostics = Vec::new();
    let read = async {
        while let Some(chunk) = attached.output.next().await {
            let (sink, data) = match chunk {
                Ok(Chunk::Stdout(data)) => (&mut report, data),
                Ok(Chunk::Stderr(data)) => (&mut diagnostics, data),
                Err(_) => break,
            };
            let room = MAX_REPORT_BYTES.saturating_sub(sink.len());
            sink.extend_from_slice(&data[..data.len().min(room)]);
        }
    };
    let timed_out = tokio::time::timeout(timeout, read).await.is_err();
    guard.remove().await?;
    if timed_out {
        return Err(PackagesError::InstallTimeout {
            distributions: spec.distributions.join(", "),
            seconds: timeout.as_secs_f64(),
        });
    }
    let outcomes: Vec<InstallOutcome> = String::from_utf8_lossy(&report)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|o: &InstallOutcome| spec.distributions.contains(&o.distribution))
        .collect();
    if outcomes.is_empty() {
        let detail = String::from_utf8_lossy(&diagnostics);
        return Err(PackagesError::Install {
            distribution: spec.distributions.join(", "),
            modules: Vec::new(),
            log: format!(
                "the installer reported nothing{}",
                last_lines(detail.trim(), 10)
                    .map(|l| format!(": {l}"))
                    .unwrap_or_default()
            ),
        });
    }
    Ok(outcomes)
}

fn last_lines(text: &str, count: usize) -> Option<String> {
    if text.is_empty() {
        return None;
    }
    let lines: Vec<&str> = text.lines().collect();
    Some(lines[lines.len().saturating_sub(count)..].join("\n"))
}
