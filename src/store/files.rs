//! The file store: limits, expiry, sweep and reconcile over a `Metadata` (the records) and
//! `Blobs` (the bytes: this host's disk, or GridFS).
//!
//! A user only ever sees their own files: lookups by id check the owner and answer
//! "not found" for anyone else's, so ids of other users cannot even be confirmed.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, DurationRound, Utc};
use sha2::{Digest, Sha256};

use super::blobs::{AnyBlobs, Blobs};
use super::clock::Clock;
use super::disk::DiskBlobs;
use super::ids::{is_valid_file_id, is_valid_user_id, new_file_id};
use super::metadata::{Metadata, MetadataError};
use super::names::sanitize_filename;
use super::record::{FileRecord, Origin};
use crate::config::StoreSettings;
use crate::filetypes;

#[derive(Debug, Clone, PartialEq)]
pub struct StoreLimits {
    pub max_files_per_user: usize,
    pub max_file_bytes: u64,
    pub max_bytes_per_user: u64,
    /// None: files never expire.
    pub expiration: Option<Duration>,
}

impl StoreLimits {
    pub fn from_settings(settings: &StoreSettings) -> StoreLimits {
        let hours = settings.file_expiration_hours;
        StoreLimits {
            max_files_per_user: settings.max_files_per_user,
            max_file_bytes: settings.max_file_size_mb * 1024 * 1024,
            max_bytes_per_user: settings.max_bytes_per_user,
            expiration: (hours > 0.0)
                .then(|| Duration::milliseconds((hours * 3_600_000.0).round() as i64)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid user id {user_id:?}: use letters, digits, _ or -, at most 64")]
    InvalidUser { user_id: String },
    #[error("no file {file_id} for this user")]
    NotFound { file_id: String },
    #[error("{filename} is {size} bytes, larger than the {limit} bytes allowed per file")]
    FileTooLarge {
        filename: String,
        size: u64,
        limit: u64,
    },
    /// A file a run wrote would need one of the user's uploads to go: uploads stay.
    #[error("{filename} was not stored: the user's uploads fill their {limit}")]
    UploadsFull { filename: String, limit: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

impl StoreError {
    /// A failure of the storage itself (rather than of the request), as a user hears it.
    pub fn trouble(&self) -> Option<super::StorageTrouble> {
        match self {
            StoreError::Metadata(err) => err.trouble(),
            StoreError::Io { source, .. } => super::StorageTrouble::of_io(source),
            _ => None,
        }
    }

    /// What a user is told when their file is not stored.
    pub fn user_reason(&self) -> String {
        match self.trouble() {
            Some(trouble) => trouble.sentence().to_string(),
            None => self.to_string(),
        }
    }
}

/// The stored name of a session's snapshot: a digest of the session's key, so any key
/// (a channel id, a CLI session name) maps to one safe, fixed-length name.
pub fn session_state_name(session: &str) -> String {
    let digest = Sha256::digest(session.as_bytes());
    format!("session-{}.state", &hex::encode(digest)[..24])
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The stored file and the files evicted to make room for it.
#[derive(Debug, Clone)]
pub struct AddOutcome {
    pub record: FileRecord,
    pub evicted: Vec<FileRecord>,
}

#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct SweepReport {
    pub removed: Vec<String>,
}

#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct ReconcileReport {
    /// Files on disk without metadata, removed.
    pub orphan_files: Vec<PathBuf>,
    /// Metadata without a file on disk, removed.
    pub orphan_records: Vec<String>,
}

/// Files younger than this are never treated as orphans: an add in progress writes the
/// file before its metadata.
pub const RECONCILE_GRACE: StdDuration = StdDuration::from_secs(300);

pub struct FileStore<M: Metadata> {
    meta: M,
    blobs: AnyBlobs,
    limits: StoreLimits,
    clock: Clock,
    /// One writer per user at a time, so limits hold under concurrent adds.
    user_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl<M: Metadata> FileStore<M> {
    pub fn new(meta: M, data_dir: &Path, limits: StoreLimits) -> FileStore<M> {
        FileStore::with_clock(meta, data_dir, limits, Clock::system())
    }

    /// A store that reads the time from `clock` wherever expiry is decided.
    pub fn with_clock(meta: M, data_dir: &Path, limits: StoreLimits, clock: Clock) -> FileStore<M> {
        FileStore {
            meta,
            blobs: AnyBlobs::Disk(DiskBlobs::new(data_dir)),
            limits,
            clock,
            user_locks: Mutex::new(HashMap::new()),
        }
    }

    /// The same store with its bytes in `blobs` (GridFS when MongoDB is configured).
    pub fn with_blobs(mut self, blobs: AnyBlobs) -> FileStore<M> {
        self.blobs = blobs;
        self
    }

    pub fn blobs(&self) -> &AnyBlobs {
        &self.blobs
    }

    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    pub fn metadata(&self) -> &M {
        &self.meta
    }

    /// The time expiry is judged against; the sweeper asks it too.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// A path on this host with the record's bytes (fetched first when they live in GridFS).
    pub async fn local_path(&self, record: &FileRecord) -> Result<PathBuf, StoreError> {
        self.blobs.local_path(record).await
    }

    fn user_lock(&self, user_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .user_locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        locks.entry(user_id.to_string()).or_default().clone()
    }

    fn check_user(user_id: &str) -> Result<(), StoreError> {
        if is_valid_user_id(user_id) {
            Ok(())
        } else {
            Err(StoreError::InvalidUser {
                user_id: user_id.to_string(),
            })
        }
    }

    /// Stores a copy of `source` for `user_id`, evicting the user's oldest files when the
    /// count or byte quota would be exceeded.
    pub async fn add(
        &self,
        user_id: &str,
        original_name: &str,
        source: &Path,
        origin: Origin,
    ) -> Result<AddOutcome, StoreError> {
        self.add_replacing(user_id, original_name, source, origin, &[])
            .await
    }

    /// `add`, where the records in `replaces` leave once the new one is in (they do not
    /// count against the quotas meanwhile, and nothing is lost if the add fails).
    async fn add_replacing(
        &self,
        user_id: &str,
        original_name: &str,
        source: &Path,
        origin: Origin,
        replaces: &[FileRecord],
    ) -> Result<AddOutcome, StoreError> {
        Self::check_user(user_id)?;
        let filename = sanitize_filename(original_name);
        let size = fs::metadata(source).map_err(io_at(source))?.len();
        // A file larger than the whole quota could never fit, whatever is evicted. A
        // session's snapshot has its own cap (SESSION_STATE_MAX_MB, enforced in the
        // sandbox), not the per-file one.
        let limit = match origin {
            Origin::State => self.limits.max_bytes_per_user,
            _ => self
                .limits
                .max_file_bytes
                .min(self.limits.max_bytes_per_user),
        };
        if size > limit {
            return Err(StoreError::FileTooLarge {
                filename,
                size,
                limit,
            });
        }
        let user_dir = self.blobs.incoming_dir(user_id);
        let (file_type, sha256, size, temp) = {
            let source = source.to_path_buf();
            let dir = user_dir.clone();
            let name = filename.clone();
            tokio::task::spawn_blocking(move || copy_in(&source, &dir, &name, limit))
                .await
                .map_err(|err| StoreError::Io {
                    path: user_dir.clone(),
                    source: io::Error::other(err.to_string()),
                })??
        };
        // Removed on every way out (a database that fails mid-add included) unless the
        // blob store has moved it into place.
        let temp = tempfile::TempPath::try_from_path(&temp).map_err(|source| {
            let _ = fs::remove_file(&temp);
            StoreError::Io {
                path: temp.clone(),
                source,
            }
        })?;

        let lock = self.user_lock(user_id);
        let _guard = lock.lock().await;
        // Both backends keep milliseconds; the record returned must equal the one stored.
        let now = self.clock.now();
        let now = now.duration_trunc(Duration::milliseconds(1)).unwrap_or(now);
        let all = self.meta.list_user(user_id).await?;
        // Created times strictly increase per user, so "oldest" is always well defined.
        let created_at = all
            .iter()
            .map(|r| r.created_at + Duration::milliseconds(1))
            .max()
            .map_or(now, |next| next.max(now));
        let mut existing: Vec<FileRecord> = all
            .into_iter()
            .filter(|r| !replaces.iter().any(|old| old.file_id == r.file_id))
            .collect();
        let record = FileRecord {
            file_id: new_file_id(),
            user_id: user_id.to_string(),
            filename,
            file_type,
            file_size: size,
            sha256,
            origin,
            created_at,
            expires_at: self.limits.expiration.map(|d| created_at + d),
            summary: None,
        };

        let mut evicted = Vec::new();
        // Expired files go first, then what runs wrote (oldest first), then the oldest
        // uploads, until the new file fits both quotas.
        existing.sort_by_key(|r| {
            (
                !r.is_expired(now),
                r.origin == Origin::Uploaded,
                r.created_at,
            )
        });
        // What a run wrote never pushes out an upload: refused before anything goes.
        if origin == Origin::Generated {
            let uploads = existing
                .iter()
                .filter(|r| !r.is_expired(now) && r.origin == Origin::Uploaded);
            let (count, bytes) = uploads.fold((0usize, 0u64), |(c, b), r| (c + 1, b + r.file_size));
            let limit = if count + 1 > self.limits.max_files_per_user {
                Some(format!("{} files", self.limits.max_files_per_user))
            } else if bytes + size > self.limits.max_bytes_per_user {
                Some(format!("{} bytes", self.limits.max_bytes_per_user))
            } else {
                None
            };
            if let Some(limit) = limit {
                return Err(StoreError::UploadsFull {
                    filename: record.filename,
                    limit,
                });
            }
        }
        // A snapshot never pushes out the user's files: only expired records and older
        // snapshots make room for one, and one that still does not fit is refused.
        if origin == Origin::State {
            let keeps: u64 = existing
                .iter()
                .filter(|r| !r.is_expired(now) && r.origin != Origin::State)
                .map(|r| r.file_size)
                .sum();
            if keeps + size > self.limits.max_bytes_per_user {
                return Err(StoreError::FileTooLarge {
                    filename: record.filename,
                    size,
                    limit: self.limits.max_bytes_per_user.saturating_sub(keeps),
                });
            }
        }
        // Snapshots count against the byte quota only, never the number of files.
        let counted = |r: &FileRecord| r.origin != Origin::State;
        let mut count = existing.iter().filter(|r| counted(r)).count();
        let adds = usize::from(origin != Origin::State);
        let mut bytes: u64 = existing.iter().map(|r| r.file_size).sum();
        for old in existing {
            let evictable = match origin {
                Origin::State => old.origin == Origin::State,
                Origin::Generated => old.origin != Origin::Uploaded,
                Origin::Uploaded => true,
            };
            let must_go = old.is_expired(now)
                || (evictable
                    && counted(&old)
                    && adds == 1
                    && count + 1 > self.limits.max_files_per_user)
                || (evictable && bytes + size > self.limits.max_bytes_per_user);
            if !must_go {
                continue;
            }
            self.remove_record_and_file(&old).await?;
            if counted(&old) {
                count -= 1;
            }
            bytes = bytes.saturating_sub(old.file_size);
            if !old.is_expired(now) {
                evicted.push(old);
            }
        }

        self.blobs.put(&record, &temp).await?;
        if let Err(err) = self.meta.insert(&record).await {
            let _ = self.blobs.remove(&record).await;
            return Err(err.into());
        }
        for old in replaces {
            self.remove_record_and_file(old).await?;
        }
        tracing::info!(
            user_id,
            file_id = %record.file_id,
            file_type = %record.file_type,
            size = record.file_size,
            origin = origin.as_str(),
            evicted = evicted.len(),
            "file stored"
        );
        Ok(AddOutcome { record, evicted })
    }

    async fn remove_record_and_file(&self, record: &FileRecord) -> Result<(), StoreError> {
        // Metadata first: the file is invisible at once; bytes left behind by a failure are
        // an orphan that the reconcile pass removes.
        self.meta.delete(&record.file_id).await?;
        self.blobs.remove(record).await
    }

    /// The user's live files, oldest first (session snapshots are not files to them).
    pub async fn list(&self, user_id: &str) -> Result<Vec<FileRecord>, StoreError> {
        self.unexpired(user_id, |r| r.origin != Origin::State).await
    }

    /// The user's unexpired records that `keep` wants, oldest first.
    async fn unexpired(
        &self,
        user_id: &str,
        keep: impl Fn(&FileRecord) -> bool,
    ) -> Result<Vec<FileRecord>, StoreError> {
        Self::check_user(user_id)?;
        let now = self.clock.now();
        Ok(self
            .meta
            .list_user(user_id)
            .await?
            .into_iter()
            .filter(|r| !r.is_expired(now) && keep(r))
            .collect())
    }

    /// One of the user's live files; anyone else's, expired, unknown or a session snapshot
    /// is "not found".
    pub async fn get(&self, user_id: &str, file_id: &str) -> Result<FileRecord, StoreError> {
        Self::check_user(user_id)?;
        match self.show(file_id).await? {
            Some(record) if record.user_id == user_id && record.origin != Origin::State => {
                Ok(record)
            }
            _ => Err(StoreError::NotFound {
                file_id: file_id.to_string(),
            }),
        }
    }

    /// Any user's live file by id (operator view).
    pub async fn show(&self, file_id: &str) -> Result<Option<FileRecord>, StoreError> {
        if !is_valid_file_id(file_id) {
            return Ok(None);
        }
        let now = self.clock.now();
        Ok(self.meta.get(file_id).await?.filter(|r| !r.is_expired(now)))
    }

    /// The saved state of one of the user's conversations, if any.
    pub async fn session_state(
        &self,
        user_id: &str,
        session: &str,
    ) -> Result<Option<FileRecord>, StoreError> {
        Ok(self.session_states(user_id, session).await?.pop())
    }

    /// Every snapshot of the session, oldest first (one, but for a crash mid-replacement).
    async fn session_states(
        &self,
        user_id: &str,
        session: &str,
    ) -> Result<Vec<FileRecord>, StoreError> {
        let name = session_state_name(session);
        self.unexpired(user_id, |r| r.origin == Origin::State && r.filename == name)
            .await
    }

    /// Keeps `source` as the session's state, replacing the one before.
    pub async fn put_session_state(
        &self,
        user_id: &str,
        session: &str,
        source: &Path,
    ) -> Result<FileRecord, StoreError> {
        let previous = self.session_states(user_id, session).await?;
        let name = session_state_name(session);
        let added = self
            .add_replacing(user_id, &name, source, Origin::State, &previous)
            .await?;
        Ok(added.record)
    }

    /// Forgets the session's state; true when there was one.
    pub async fn forget_session_state(
        &self,
        user_id: &str,
        session: &str,
    ) -> Result<bool, StoreError> {
        let states = self.session_states(user_id, session).await?;
        self.remove_all(user_id, &states).await?;
        Ok(!states.is_empty())
    }

    /// Removes `records` of one user, holding that user's lock like every other writer.
    async fn remove_all(&self, user_id: &str, records: &[FileRecord]) -> Result<(), StoreError> {
        let lock = self.user_lock(user_id);
        let _guard = lock.lock().await;
        for record in records {
            self.remove_record_and_file(record).await?;
        }
        Ok(())
    }

    /// Forgets the state of every conversation of the user; how many there were.
    pub async fn forget_all_session_states(&self, user_id: &str) -> Result<usize, StoreError> {
        Self::check_user(user_id)?;
        let states: Vec<FileRecord> = self
            .meta
            .list_user(user_id)
            .await?
            .into_iter()
            .filter(|r| r.origin == Origin::State)
            .collect();
        self.remove_all(user_id, &states).await?;
        Ok(states.len())
    }

    pub async fn delete(&self, user_id: &str, file_id: &str) -> Result<FileRecord, StoreError> {
        let record = self.get(user_id, file_id).await?;
        let lock = self.user_lock(user_id);
        let _guard = lock.lock().await;
        self.remove_record_and_file(&record).await?;
        tracing::info!(user_id, file_id, "file deleted");
        Ok(record)
    }

    pub async fn set_summary(&self, file_id: &str, summary: &str) -> Result<bool, StoreError> {
        Ok(self.meta.set_summary(file_id, summary).await?)
    }

    /// Deletes every file expired at `now`, metadata and disk together.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<SweepReport, StoreError> {
        let mut report = SweepReport::default();
        for record in self.meta.expired(now).await? {
            self.remove_record_and_file(&record).await?;
            report.removed.push(record.file_id);
        }
        if !report.removed.is_empty() {
            tracing::info!(removed = report.removed.len(), "expired files swept");
        }
        Ok(report)
    }

    /// Removes stored bytes that no record names, and records whose bytes are gone.
    pub async fn reconcile(&self) -> Result<ReconcileReport, StoreError> {
        let mut report = ReconcileReport::default();
        let records = self.meta.all().await?;
        let mut known: HashSet<String> = HashSet::new();
        for record in &records {
            if self.blobs.has(record).await? {
                known.insert(record.file_id.clone());
            } else if self.meta.delete(&record.file_id).await? {
                report.orphan_records.push(record.file_id.clone());
            }
        }
        report.orphan_files = self.blobs.remove_orphans(&known).await?;
        if !report.orphan_files.is_empty() || !report.orphan_records.is_empty() {
            tracing::info!(
                orphan_files = report.orphan_files.len(),
                orphan_records = report.orphan_records.len(),
                "store reconciled"
            );
        }
        Ok(report)
    }
}

/// Copies `source` into a temporary file in `user_dir`, hashing it and sniffing its type on
/// the way; at most `limit` bytes (a file that grew since it was measured is refused).
fn copy_in(
    source: &Path,
    user_dir: &Path,
    filename: &str,
    limit: u64,
) -> Result<(String, String, u64, PathBuf), StoreError> {
    fs::create_dir_all(user_dir).map_err(io_at(user_dir))?;
    let mut input = fs::File::open(source).map_err(io_at(source))?;
    let temp = user_dir.join(format!(".incoming-{}", new_file_id()));
    let mut output = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(io_at(&temp))?;
    let result = (|| {
        let mut hasher = Sha256::new();
        let mut head = Vec::with_capacity(filetypes::SNIFF_BYTES);
        let mut buf = vec![0u8; 64 * 1024];
        let mut total: u64 = 0;
        loop {
            let n = input.read(&mut buf).map_err(io_at(source))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > limit {
                return Err(StoreError::FileTooLarge {
                    filename: filename.to_string(),
                    size: total,
                    limit,
                });
            }
            if head.len() < filetypes::SNIFF_BYTES {
                let take = (filetypes::SNIFF_BYTES - head.len()).min(n);
                head.extend_from_slice(&buf[..take]);
            }
            hasher.update(&buf[..n]);
            output.write_all(&buf[..n]).map_err(io_at(&temp))?;
        }
        output.sync_all().map_err(io_at(&temp))?;
        // Readable by the sandbox group through the read-only mount; never writable by it.
        crate::data_dir::share_with_sandbox(&temp).map_err(io_at(&temp))?;
        let file_type = filetypes::detect(filename, &head).ext;
        Ok((file_type, hex::encode(hasher.finalize()), total))
    })();
    match result {
        Ok((file_type, sha, total)) => Ok((file_type, sha, total, temp)),
        Err(err) => {
            let _ = fs::remove_file(&temp);
            Err(err)
        }
    }
}
