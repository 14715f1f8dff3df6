//! Storing a user's uploads: copies in the store (oldest files evicted to stay within the
//! limits), then summaries for the model computed inside a sandbox.

use std::path::PathBuf;

use super::{App, AppError, runs};
use crate::store::{FileRecord, Origin, StoreError};

/// Where an upload's bytes are.
#[derive(Debug, Clone)]
pub enum UploadSource {
    /// A file on the host (the CLI).
    Path(PathBuf),
    /// Bytes already downloaded (a Discord attachment).
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct Upload {
    /// The name the user gave; the store cleans it and keeps it for display only.
    pub filename: String,
    pub source: UploadSource,
}

/// What happened to a batch of uploads; one refusal never fails the others.
#[derive(Debug, Clone, Default)]
pub struct UploadReport {
    pub stored: Vec<FileRecord>,
    /// Older files removed to make room.
    pub evicted: Vec<FileRecord>,
    /// (filename, why it was not stored: the store's own words).
    pub refused: Vec<(String, String)>,
    /// The user's live files after the batch.
    pub file_count: usize,
}

impl App {
    /// Stores each upload for the user and, when `summarize`, computes the summaries the
    /// model sees (in a sandbox: untrusted files are never parsed in this process).
    pub async fn store_uploads(
        &self,
        user_id: &str,
        uploads: Vec<Upload>,
        summarize: bool,
    ) -> Result<UploadReport, AppError> {
        let store = self.store().await?;
        let mut report = UploadReport::default();
        for upload in uploads {
            // Bytes are spooled next to the store, so the copy into it stays on one disk.
            let spooled;
            let path = match &upload.source {
                UploadSource::Path(path) => path.clone(),
                UploadSource::Bytes(bytes) => {
                    spooled = match self.spool(bytes) {
                        Ok(file) => file,
                        Err(err) => {
                            report.refused.push((
                                upload.filename,
                                match crate::store::StorageTrouble::of_io(&err) {
                                    Some(trouble) => trouble.sentence().to_string(),
                                    None => format!("cannot be saved: {err}"),
                                },
                            ));
                            continue;
                        }
                    };
                    spooled.path().to_path_buf()
                }
            };
            match store
                .add(user_id, &upload.filename, &path, Origin::Uploaded)
                .await
            {
                Ok(added) => {
                    report.evicted.extend(added.evicted);
                    report.stored.push(added.record);
                }
                Err(StoreError::InvalidUser { user_id }) => {
                    return Err(StoreError::InvalidUser { user_id }.into());
                }
                Err(err) => report.refused.push((upload.filename, err.user_reason())),
            }
        }
        if summarize && !report.stored.is_empty() {
            let chat = &self.settings.chat;
            let plan = runs::SummaryPlan {
                document_tokens: chat.document_context_tokens,
                encoding: crate::llm::tokens::encoding_for(&chat.openai_model),
            };
            let summaries = match self
                .run_over_files(user_id, &report.stored, plan.own_code(report.stored.len()))
                .await
            {
                Ok(result) => runs::keep_summaries(&store, &report.stored, &result, plan)
                    .await
                    .map_err(AppError::from),
                Err(err) => Err(err),
            };
            match summaries {
                Ok(summaries) => {
                    for record in &mut report.stored {
                        record.summary = summaries.get(&record.file_id).cloned();
                    }
                }
                Err(err) => tracing::warn!(error = %err, "summaries failed"),
            }
        }
        report.file_count = store.list(user_id).await.map(|l| l.len()).unwrap_or(0);
        Ok(report)
    }

    /// The bot's own code over some of the user's files, in a sandbox here or on an
    /// executor elsewhere (as one of the user's runs of these files); its printed answer.
    pub(crate) async fn run_over_files(
        &self,
        user_id: &str,
        records: &[FileRecord],
        code: runs::OwnCode,
    ) -> Result<crate::sandbox::ExecutionResult, AppError> {
        match &self.remote {
            Some(remote) => {
                let request = crate::executor_api::RunRequest {
                    user_id: user_id.to_string(),
                    code: code.code,
                    conversation: None,
                    timeout_s: None,
                    memory_mb: None,
                    file_ids: Some(records.iter().map(|r| r.file_id.clone()).collect()),
                    events: true,
                    output_chars: Some(code.output_chars),
                };
                Ok(remote.run(request, None).await?.result)
            }
            None => {
                let executor = self.executor().await?;
                let store = self.store().await?;
                Ok(runs::run_over_records(
                    &executor,
                    &store,
                    &self.staging_root(),
                    &self.outputs_root(),
                    records,
                    code,
                    self.operator_limits(),
                )
                .await?)
            }
        }
    }

    fn spool(&self, bytes: &[u8]) -> std::io::Result<tempfile::NamedTempFile> {
        crate::data_dir::ensure(&self.settings.data_dir)?;
        let mut file = tempfile::NamedTempFile::new_in(&self.settings.data_dir)?;
        std::io::Write::write_all(&mut file, bytes)?;
        Ok(file)
    }
}
