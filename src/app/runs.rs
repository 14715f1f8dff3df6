//! Runs on behalf of a user: only that user's live files are made visible (read-only, by
//! id), every output becomes a stored file, and upload summaries are computed inside the
//! sandbox (untrusted files are never parsed in this process).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::Instrument;

use crate::config::absolute;
use crate::container::engine::Containers;
use crate::llm::tokens::{Encoding, head_within};
pub use crate::run_result::{GeneratedFile, UserRunResult};
use crate::sandbox::session::{STATE_RESTORE_NAME, SessionIo};
use crate::sandbox::watch::RunWatch;
use crate::sandbox::{
    ExecutionRequest, ExecutionResult, Executor, ExecutorError, Flag, INPUT_DIR, JobFile, Limits,
    Status,
};
use crate::store::{FileRecord, FileStore, Metadata, Origin, StorageTrouble, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum UserRunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Executor(#[from] ExecutorError),
    #[error("cannot stage files for the run in {path}: {source}")]
    Staging { path: PathBuf, source: io::Error },
    #[error("the summary run failed: {reason}")]
    Summary { reason: String },
}

/// A per-run directory of hard links to the user's files, deleted when dropped.
pub struct StagedFiles {
    dir: tempfile::TempDir,
    pub files: Vec<JobFile>,
}

impl StagedFiles {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Links `records` into a fresh directory under `staging_root`, named by id: the mount then
/// shows exactly these files, and a file evicted or deleted meanwhile stays readable to
/// the run that already started.
pub async fn stage_records<M: Metadata>(
    store: &FileStore<M>,
    staging_root: &Path,
    records: &[FileRecord],
) -> Result<StagedFiles, UserRunError> {
    let staging = |path: &Path| {
        let path = path.to_path_buf();
        move |source| UserRunError::Staging {
            path: path.clone(),
            source,
        }
    };
    let dir = crate::staging::run_directory(staging_root, "run")
        .map_err(|(path, source)| UserRunError::Staging { path, source })?;
    let mut files = Vec::with_capacity(records.len());
    let ids_and_names: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r.file_id.as_str(), r.filename.as_str()))
        .collect();
    let data_names = crate::store::names::data_names(&ids_and_names);
    for (record, data_name) in records.iter().zip(data_names) {
        let name = record.disk_name();
        let target = dir.path().join(&name);
        let source = store.local_path(record).await?;
        link_or_copy(&source, &target).map_err(staging(&source))?;
        files.push(JobFile {
            file_id: record.file_id.clone(),
            filename: record.filename.clone(),
            file_type: record.file_type.clone(),
            path: format!("{INPUT_DIR}/{name}"),
            data_name,
        });
    }
    Ok(StagedFiles { dir, files })
}

/// A hard link to a stored file, so the run keeps its bytes even if it is deleted meanwhile;
/// a copy when the store is on another filesystem (as good, only slower).
fn link_or_copy(source: &Path, target: &Path) -> io::Result<()> {
    if fs::hard_link(source, target).is_err() {
        fs::copy(source, target)?;
    }
    Ok(())
}

pub struct UserRun<'a> {
    pub user_id: &'a str,
    pub code: String,
    pub limits: Limits,
    /// Only these files (each must be the user's); all the user's live files when None.
    pub file_ids: Option<Vec<String>>,
    pub output_dir: Option<PathBuf>,
    /// The conversation whose variables the run restores and keeps; None keeps nothing.
    pub session: Option<SessionKey<'a>>,
    /// Who watches the run as it happens.
    pub watch: Option<RunWatch>,
}

/// One conversation's state: its key (a channel, a CLI session name) and the cap of its
/// snapshot.
#[derive(Debug, Clone, Copy)]
pub struct SessionKey<'a> {
    pub name: &'a str,
    pub max_bytes: u64,
}

pub async fn run_for_user<E: Containers + 'static, M: Metadata>(
    executor: &Executor<E>,
    store: &FileStore<M>,
    staging_root: &Path,
    outputs_root: &Path,
    run: UserRun<'_>,
) -> Result<UserRunResult, UserRunError> {
    let (staged, session) = stage_run(store, staging_root, &run)
        .instrument(tracing::info_span!("run.stage"))
        .await?;
    // Outputs land in a directory of the run's own unless the caller asked to keep them;
    // the store keeps copies, so that directory is removed on every path below.
    let keep_outputs = run.output_dir.is_some();
    let run_dir = RunDirectory::new(outputs_root, run.output_dir.is_none());
    let executed = executor
        .execute(ExecutionRequest {
            code: run.code,
            limits: run.limits,
            input_dir: Some(absolute(staged.path())),
            output_dir: Some(
                run.output_dir
                    .unwrap_or_else(|| run_dir.path().to_path_buf()),
            ),
            files: staged.files.clone(),
            session: session.as_ref().map(|s| s.io.clone()),
            watch: run.watch,
        })
        .instrument(tracing::info_span!("run.execute"))
        .await;
    drop(staged);
    let mut result = executed?;
    let generated_files = keep_outputs_of(
        store,
        run.user_id,
        session.as_ref().zip(run.session),
        keep_outputs,
        &mut result,
    )
    .instrument(tracing::info_span!("run.store_outputs"))
    .await?;
    Ok(UserRunResult {
        result,
        generated_files,
    })
}

/// The user's files (all, or the run's own) and the session's snapshot, staged for the run.
async fn stage_run<M: Metadata>(
    store: &FileStore<M>,
    staging_root: &Path,
    run: &UserRun<'_>,
) -> Result<(StagedFiles, Option<StagedSession>), UserRunError> {
    let records = match &run.file_ids {
        Some(ids) => {
            let mut records = Vec::with_capacity(ids.len());
            for id in ids {
                records.push(store.get(run.user_id, id).await?);
            }
            records
        }
        None => store.list(run.user_id).await?,
    };
    let staged = stage_records(store, staging_root, &records).await?;
    let session = match run.session {
        Some(key) => Some(stage_session(store, staging_root, run.user_id, key, &staged).await?),
        None => None,
    };
    Ok((staged, session))
}

/// What a finished run leaves: its snapshot kept for the session, and each output stored
/// for the user (the outputs that were not stay in `result` with a flag saying why).
async fn keep_outputs_of<M: Metadata>(
    store: &FileStore<M>,
    user_id: &str,
    session: Option<(&StagedSession, SessionKey<'_>)>,
    keep_outputs: bool,
    result: &mut ExecutionResult,
) -> Result<Vec<GeneratedFile>, UserRunError> {
    if let Some((staged_session, key)) = session {
        keep_session(store, user_id, key, staged_session, result).await?;
    }

    let mut generated_files = Vec::new();
    let mut kept_outputs = Vec::new();
    // Once the database is found unavailable the other files are not tried: each try
    // would wait for the database as long again.
    let mut unavailable = false;
    for mut output in std::mem::take(&mut result.output_files) {
        let display_name = output.name.replace('/', "_");
        if unavailable {
            result
                .flags
                .push(Flag::named("not_stored_storage_unavailable", &output.name));
            if keep_outputs {
                kept_outputs.push(output);
            }
            continue;
        }
        match store
            .add(user_id, &display_name, &output.path, Origin::Generated)
            .await
        {
            Ok(added) => {
                let stored = match store.local_path(&added.record).await {
                    Ok(stored) => stored,
                    Err(err) => {
                        tracing::warn!(error = %err, "a stored output has no local copy");
                        output.path.clone()
                    }
                };
                if !keep_outputs {
                    output.path = stored.clone();
                }
                let picture = output.picture.clone();
                kept_outputs.push(output);
                generated_files.push(GeneratedFile {
                    file_id: added.record.file_id,
                    filename: added.record.filename,
                    size: added.record.file_size,
                    file_type: added.record.file_type,
                    path: stored,
                    picture,
                });
            }
            Err(StoreError::FileTooLarge { .. }) => {
                result
                    .flags
                    .push(Flag::named("not_stored_too_large", &output.name));
                if keep_outputs {
                    kept_outputs.push(output);
                }
            }
            Err(StoreError::UploadsFull { .. }) => {
                result
                    .flags
                    .push(Flag::named("not_stored_uploads_full", &output.name));
                if keep_outputs {
                    kept_outputs.push(output);
                }
            }
            // The run happened: a store that is full or down costs its files, not its
            // result.
            Err(err) if err.trouble().is_some() => {
                let flag = match err.trouble() {
                    Some(StorageTrouble::Full) => "not_stored_storage_full",
                    _ => {
                        unavailable = true;
                        "not_stored_storage_unavailable"
                    }
                };
                tracing::warn!(error = %err, "an output file was not stored");
                result.flags.push(Flag::named(flag, &output.name));
                if keep_outputs {
                    kept_outputs.push(output);
                }
            }
            Err(err) => return Err(err.into()),
        }
    }
    result.output_files = kept_outputs;
    Ok(generated_files)
}

/// How long a state restored ahead waits for the pool to have a container to spare: about
/// a model's time to its next tool call, or a member's to their next message.
const PREPARE_PATIENCE: Duration = Duration::from_secs(15);

/// The executor's name for one user's conversation: a container held for it is held
/// under this name.
pub fn conversation_of(user_id: &str, session: &str) -> String {
    format!("{user_id}/{session}")
}

/// Has a warm container restore the conversation's current state ahead of its next run
/// (`Executor::prepare`). False when there is no state, or no container to hold.
pub async fn prepare_conversation<E: Containers + 'static, M: Metadata>(
    executor: &Executor<E>,
    store: &FileStore<M>,
    user_id: &str,
    session: &str,
    limits: &Limits,
) -> Result<bool, UserRunError> {
    let Some(record) = store.session_state(user_id, session).await? else {
        return Ok(false);
    };
    let path = store.local_path(&record).await?;
    Ok(executor
        .prepare(
            &conversation_of(user_id, session),
            &path,
            limits,
            PREPARE_PATIENCE,
        )
        .await?)
}

/// A session's side of one run: the previous snapshot linked into the staged inputs (only
/// this user's run ever sees it) and a directory of the run's own for the next one.
pub struct StagedSession {
    io: SessionIo,
    _dir: tempfile::TempDir,
}

async fn stage_session<M: Metadata>(
    store: &FileStore<M>,
    staging_root: &Path,
    user_id: &str,
    key: SessionKey<'_>,
    staged: &StagedFiles,
) -> Result<StagedSession, UserRunError> {
    let previous = store.session_state(user_id, key.name).await?;
    if let Some(record) = &previous {
        let source = store.local_path(record).await?;
        let target = staged.path().join(STATE_RESTORE_NAME);
        link_or_copy(&source, &target).map_err(|source| UserRunError::Staging {
            path: target.clone(),
            source,
        })?;
    }
    let dir = crate::staging::run_directory(staging_root, "state")
        .map_err(|(path, source)| UserRunError::Staging { path, source })?;
    Ok(StagedSession {
        io: SessionIo {
            restore: previous.is_some(),
            save_to: absolute(&dir.path().join("snapshot")),
            max_bytes: key.max_bytes,
            conversation: Some(conversation_of(user_id, key.name)),
        },
        _dir: dir,
    })
}

/// Stores the run's new snapshot in place of the previous one; a previous one that could
/// not be read is dropped even when no new one came. A snapshot the store refuses (the
/// user's quota) is reported in the run's session, never a failed run.
async fn keep_session<M: Metadata>(
    store: &FileStore<M>,
    user_id: &str,
    key: SessionKey<'_>,
    staged: &StagedSession,
    result: &mut ExecutionResult,
) -> Result<(), UserRunError> {
    let Some(report) = result.session.as_mut() else {
        return Ok(());
    };
    if report.saved {
        match store
            .put_session_state(user_id, key.name, &staged.io.save_to)
            .await
        {
            Ok(_) => return Ok(()),
            Err(StoreError::FileTooLarge { size, limit, .. }) => {
                report.saved = false;
                report.save_error = Some(format!(
                    "the variables take {size} bytes, more than the {limit} bytes of storage this user has left"
                ));
            }
            // The run's outputs matter more than its variables: a store that failed here
            // is a note, never a lost run.
            Err(err) => {
                tracing::warn!(user_id, error = %err, "cannot keep a session's snapshot");
                report.saved = false;
                report.save_error = Some(format!("the store failed: {err}"));
            }
        }
    }
    if report.restore_error.is_some()
        && let Err(err) = store.forget_session_state(user_id, key.name).await
    {
        tracing::warn!(user_id, error = %err, "cannot drop an unreadable snapshot");
    }
    Ok(())
}

/// A run's own output directory under DATA_DIR/outputs, removed when dropped (the store
/// holds copies of what was worth keeping), so no path leaves it behind.
pub struct RunDirectory {
    path: PathBuf,
    owned: bool,
}

impl RunDirectory {
    pub fn new(outputs_root: &Path, owned: bool) -> RunDirectory {
        RunDirectory {
            path: outputs_root.join(format!(
                "user-run-{}-{}",
                crate::container::reaper::owner_tag(),
                uuid::Uuid::new_v4().simple()
            )),
            owned,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunDirectory {
    fn drop(&mut self) {
        if self.owned {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Characters of a summary that is not a document's text.
const SUMMARY_CHARS: usize = 1500;

/// How the summaries of a batch are computed: documents carry their text, up to
/// `document_tokens` tokens of `encoding` (0: none).
#[derive(Debug, Clone, Copy)]
pub struct SummaryPlan {
    pub document_tokens: usize,
    pub encoding: Encoding,
}

impl SummaryPlan {
    /// Characters of text the sandbox extracts: a token is rarely more than 5 characters,
    /// and the host trims to the exact count afterwards.
    fn document_chars(&self) -> usize {
        self.document_tokens.saturating_mul(5)
    }

    /// Room in the run's captured output for `files` summaries.
    fn output_chars(&self, files: usize) -> usize {
        files * (SUMMARY_CHARS.max(self.document_chars()) + 2500) + 1000
    }

    /// One JSON line per file, each bounded (escaping included) so that one file's summary
    /// can never push another's out of the output cap, and non-ASCII text is not inflated
    /// by escapes.
    fn code(&self) -> String {
        SUMMARY_CODE
            .replace("DOCUMENT_CHARS_VALUE", &self.document_chars().to_string())
            .replace("SUMMARY_CHARS_VALUE", &SUMMARY_CHARS.to_string())
    }

    pub fn own_code(&self, files: usize) -> OwnCode {
        OwnCode {
            code: self.code(),
            output_chars: self.output_chars(files),
        }
    }
}

const SUMMARY_CODE: &str = r#"import json, codebox_files, codebox_documents
DOCUMENT_CHARS = DOCUMENT_CHARS_VALUE
loaders = codebox_files._loaders_by_type()
for f in codebox_files.list_files():
    try:
        s = codebox_files.summarize(f["file_id"], document_chars=DOCUMENT_CHARS)
    except Exception as e:
        s = "no summary (%s)" % type(e).__name__
    document = DOCUMENT_CHARS and codebox_documents.is_document(f["file_type"], loaders.get(f["file_type"], "bytes"))
    cap = DOCUMENT_CHARS + 400 if document else SUMMARY_CHARS_VALUE
    s = str(s)[:cap]
    line = json.dumps({"file_id": f["file_id"], "summary": s}, ensure_ascii=False)
    while len(line) > cap + 400:
        s = s[: len(s) * 3 // 4]
        line = json.dumps({"file_id": f["file_id"], "summary": s}, ensure_ascii=False)
    print(line, flush=True)
"#;

#[derive(serde::Deserialize)]
struct SummaryLine {
    file_id: String,
    summary: String,
}

/// Pure: the summaries in the sandbox's output, one per line. A line that does not parse is
/// skipped (the others stand), and only the records asked about can be set: the output comes
/// from a sandbox that parsed untrusted files.
pub fn parse_summaries(stdout: &str, records: &[FileRecord]) -> HashMap<String, String> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<SummaryLine>(line).ok())
        .filter(|line| records.iter().any(|r| r.file_id == line.file_id))
        .map(|line| (line.file_id, line.summary))
        .collect()
}

/// The bot's own code, and the room its printed answer needs.
#[derive(Debug, Clone)]
pub struct OwnCode {
    pub code: String,
    pub output_chars: usize,
}

/// A run of the bot's own code over `records` (summaries, pictures made ready for the
/// model), inside a sandbox: untrusted files are only ever parsed there. Nothing it writes
/// is kept; what it prints is the answer.
pub async fn run_over_records<E: Containers + 'static, M: Metadata>(
    executor: &Executor<E>,
    store: &FileStore<M>,
    staging_root: &Path,
    outputs_root: &Path,
    records: &[FileRecord],
    code: OwnCode,
    mut limits: Limits,
) -> Result<ExecutionResult, UserRunError> {
    let OwnCode { code, output_chars } = code;
    let staged = stage_records(store, staging_root, records).await?;
    let run_dir = RunDirectory::new(outputs_root, true);
    limits.timeout = limits.timeout.min(Duration::from_secs(60));
    limits.max_output_chars = limits.max_output_chars.max(output_chars);
    let result = executor
        .execute(ExecutionRequest {
            code,
            limits,
            input_dir: Some(absolute(staged.path())),
            output_dir: Some(run_dir.path().to_path_buf()),
            files: staged.files.clone(),
            session: None,
            watch: None,
        })
        .await?;
    drop(run_dir);
    Ok(result)
}

/// Summaries of `records` for the model, computed by the runner inside a sandbox, and
/// stored with the records.
pub async fn summarize<E: Containers + 'static, M: Metadata>(
    executor: &Executor<E>,
    store: &FileStore<M>,
    staging_root: &Path,
    outputs_root: &Path,
    records: &[FileRecord],
    limits: Limits,
    plan: SummaryPlan,
) -> Result<HashMap<String, String>, UserRunError> {
    if records.is_empty() {
        return Ok(HashMap::new());
    }
    let result = run_over_records(
        executor,
        store,
        staging_root,
        outputs_root,
        records,
        plan.own_code(records.len()),
        limits,
    )
    .await?;
    keep_summaries(store, records, &result, plan).await
}

/// Pure: a document's text within `tokens` (the sandbox cut by characters; this is the
/// exact count), saying where it stops.
pub fn within_tokens(summary: String, file_id: &str, encoding: Encoding, tokens: usize) -> String {
    let (head, cut) = head_within(encoding, &summary, tokens);
    if !cut {
        return summary;
    }
    format!(
        "{head}\n[text continues beyond {tokens} tokens: read the rest with code, load_file('{file_id}')]"
    )
}

/// Stores the summaries a summary run printed for `records`, documents' text cut to
/// `document_tokens` tokens.
pub(crate) async fn keep_summaries<M: Metadata>(
    store: &FileStore<M>,
    records: &[FileRecord],
    result: &ExecutionResult,
    plan: SummaryPlan,
) -> Result<HashMap<String, String>, UserRunError> {
    let summaries: HashMap<String, String> = parse_summaries(&result.stdout, records)
        .into_iter()
        .map(|(id, summary)| {
            // Other summaries are at most SUMMARY_CHARS characters: never more tokens.
            let limit = plan.document_tokens.max(SUMMARY_CHARS);
            let summary = within_tokens(summary, &id, plan.encoding, limit);
            (id, summary)
        })
        .collect();
    if summaries.is_empty() && result.status != Status::Ok {
        return Err(UserRunError::Summary {
            reason: result
                .error
                .as_ref()
                .map(|e| format!("{}: {}", e.kind, e.message))
                .unwrap_or_else(|| result.status.as_str().to_string()),
        });
    }
    for (file_id, summary) in &summaries {
        store.set_summary(file_id, summary).await?;
    }
    Ok(summaries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Origin;

    fn record(id: &str) -> FileRecord {
        FileRecord {
            file_id: id.into(),
            user_id: "u".into(),
            filename: "f.txt".into(),
            file_type: "txt".into(),
            file_size: 1,
            sha256: String::new(),
            origin: Origin::Uploaded,
            created_at: chrono::Utc::now(),
            expires_at: None,
            summary: None,
        }
    }

    #[test]
    fn each_summary_stands_alone_and_sets_only_its_own_record() {
        let records = [record("AAAAAAAAAAAAAAAA"), record("BBBBBBBBBBBBBBBB")];
        let stdout = concat!(
            "{\"file_id\": \"AAAAAAAAAAAAAAAA\", \"summary\": \"😀😀 text\"}\n",
            "{\"file_id\": \"BBBBBBBBBBBBBBBB\", \"summary\": \"cut in the mid\n",
            "{\"file_id\": \"ZZZZZZZZZZZZZZZZ\", \"summary\": \"someone else's\"}\n",
        );
        let summaries = parse_summaries(stdout, &records);
        assert_eq!(summaries.len(), 1, "{summaries:?}");
        assert_eq!(summaries["AAAAAAAAAAAAAAAA"], "😀😀 text");
    }
}
