//! `codebox packages`: the shared package cache.

use std::process::ExitCode;

use clap::Subcommand;
use codebox::app::{App, Lifetime};
use codebox::config::Settings;

#[derive(Subcommand)]
pub enum PackagesCommand {
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

pub fn packages(command: PackagesCommand, settings: Settings) -> anyhow::Result<ExitCode> {
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
