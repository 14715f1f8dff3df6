//! Where the bytes of stored files live, behind one small trait: on this host's disk (the
//! embedded default) or in MongoDB GridFS (when MONGODB_URI is set, so that executors on
//! any host can stage a user's files and store their outputs).

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};

use super::disk::DiskBlobs;
use super::files::StoreError;
use super::gridfs::GridFsBlobs;
use super::record::FileRecord;

pub trait Blobs: Send + Sync {
    /// Where a new file's bytes are written before `put` (the same filesystem as any local
    /// copy, so taking them is a rename).
    fn incoming_dir(&self, user_id: &str) -> PathBuf;

    /// Takes `incoming` (already hashed and checked) as the bytes of `record`.
    fn put(
        &self,
        record: &FileRecord,
        incoming: &Path,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes the bytes of `record`; bytes already gone are fine.
    fn remove(&self, record: &FileRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A path on this host holding the bytes of `record`, read-only to the sandbox uid (a
    /// verified local copy when the bytes live elsewhere).
    fn local_path(
        &self,
        record: &FileRecord,
    ) -> impl Future<Output = Result<PathBuf, StoreError>> + Send;

    /// Whether the bytes of `record` are stored.
    fn has(&self, record: &FileRecord) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Removes stored bytes that no record in `known` (file ids) names and that are older than
    /// the grace (an add in progress writes its bytes before its record); what was removed.
    fn remove_orphans(
        &self,
        known: &HashSet<String>,
    ) -> impl Future<Output = Result<Vec<PathBuf>, StoreError>> + Send;
}

/// The adapter the settings chose.
pub enum AnyBlobs {
    Disk(DiskBlobs),
    GridFs(GridFsBlobs),
}

impl AnyBlobs {
    pub fn kind(&self) -> &'static str {
        match self {
            AnyBlobs::Disk(_) => "disk",
            AnyBlobs::GridFs(_) => "gridfs",
        }
    }
}

macro_rules! delegate {
    ($self:ident, $b:ident => $call:expr) => {
        match $self {
            AnyBlobs::Disk($b) => $call,
            AnyBlobs::GridFs($b) => $call,
        }
    };
}

impl Blobs for AnyBlobs {
    fn incoming_dir(&self, user_id: &str) -> PathBuf {
        delegate!(self, b => b.incoming_dir(user_id))
    }
    async fn put(&self, record: &FileRecord, incoming: &Path) -> Result<(), StoreError> {
        delegate!(self, b => b.put(record, incoming).await)
    }
    async fn remove(&self, record: &FileRecord) -> Result<(), StoreError> {
        delegate!(self, b => b.remove(record).await)
    }
    async fn local_path(&self, record: &FileRecord) -> Result<PathBuf, StoreError> {
        delegate!(self, b => b.local_path(record).await)
    }
    async fn has(&self, record: &FileRecord) -> Result<bool, StoreError> {
        delegate!(self, b => b.has(record).await)
    }
    async fn remove_orphans(&self, known: &HashSet<String>) -> Result<Vec<PathBuf>, StoreError> {
        delegate!(self, b => b.remove_orphans(known).await)
    }
}
