//! `codebox files`: users' stored files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use codebox::app::{App, Lifetime, Upload, UploadSource};
use codebox::config::Settings;
use codebox::render;

use super::emit::emit;

#[derive(Subcommand)]
pub enum FilesCommand {
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

pub async fn files(command: FilesCommand, settings: Settings) -> anyhow::Result<ExitCode> {
    let app = App::new(settings, Lifetime::OneShot);
    let outcome = files_with(&app, command).await;
    // Summary runs remove their containers before the process exits.
    app.shutdown().await;
    outcome
}

pub async fn files_with(app: &App, command: FilesCommand) -> anyhow::Result<ExitCode> {
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
            emit(json, &report.stored, || render::file_table(&report.stored))?;
        }
        FilesCommand::List { user, json } => {
            let records = app.list_files(&user).await?;
            emit(json, &records, || render::file_table(&records))?;
        }
        FilesCommand::Show { id, user, json } => {
            let (record, path) = match &user {
                Some(user) => app.get_file(user, &id).await?,
                None => app
                    .show_file(&id)
                    .await?
                    .with_context(|| format!("no file {id}"))?,
            };
            emit(json, &record, || render::file_details(&record, &path))?;
        }
        FilesCommand::Delete { user, id, json } => {
            let record = app.delete_file(&user, &id).await?;
            emit(json, &record, || {
                format!("deleted {} ({})\n", record.file_id, record.filename)
            })?;
        }
        FilesCommand::Migrate { json } => {
            let report = app.migrate_files().await?;
            emit(json, &report, || {
                format!(
                    "moved {} files into GridFS; {} were there already; {} had no bytes anywhere\n",
                    report.moved.len(),
                    report.already.len(),
                    report.missing.len()
                )
            })?;
        }
        FilesCommand::Sweep { json } => {
            let (swept, reconciled, leftovers) = app.sweep().await?;
            let value = serde_json::json!({
                "expired_removed": swept.removed,
                "orphan_files_removed": reconciled.orphan_files,
                "orphan_records_removed": reconciled.orphan_records,
                "dead_run_dirs_removed": leftovers,
            });
            emit(json, &value, || {
                format!(
                    "removed {} expired files, {} orphan files, {} orphan records, {} directories of dead runs\n",
                    swept.removed.len(),
                    reconciled.orphan_files.len(),
                    reconciled.orphan_records.len(),
                    leftovers.len()
                )
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
