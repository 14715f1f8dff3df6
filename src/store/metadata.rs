//! The metadata of stored files, behind one small trait with two adapters: `mongo` (when
//! MONGODB_URI is set) and `sqlite` (the embedded default). One test suite runs on both.

use std::future::Future;

use chrono::{DateTime, Utc};

use super::record::FileRecord;

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata database {operation} failed: {reason}")]
    Backend {
        operation: &'static str,
        reason: String,
    },
    #[error("file id {file_id} already exists")]
    Duplicate { file_id: String },
    #[error("stored metadata for {file_id} is unreadable: {reason}")]
    Corrupt { file_id: String, reason: String },
}

pub trait Metadata: Send + Sync {
    fn insert(&self, record: &FileRecord)
    -> impl Future<Output = Result<(), MetadataError>> + Send;
    fn get(
        &self,
        file_id: &str,
    ) -> impl Future<Output = Result<Option<FileRecord>, MetadataError>> + Send;
    /// All of a user's records, expired ones included, oldest first.
    fn list_user(
        &self,
        user_id: &str,
    ) -> impl Future<Output = Result<Vec<FileRecord>, MetadataError>> + Send;
    /// True when a record was deleted.
    fn delete(&self, file_id: &str) -> impl Future<Output = Result<bool, MetadataError>> + Send;
    fn set_summary(
        &self,
        file_id: &str,
        summary: &str,
    ) -> impl Future<Output = Result<bool, MetadataError>> + Send;
    /// Records whose expiry is at or before `now`.
    fn expired(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<FileRecord>, MetadataError>> + Send;
    /// Every record (for the reconcile pass).
    fn all(&self) -> impl Future<Output = Result<Vec<FileRecord>, MetadataError>> + Send;
}

/// What a user can be told about a storage failure, in one sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageTrouble {
    /// The database (records, history, GridFS bytes) does not answer.
    Unavailable,
    /// The disk (or the database's) has no room left.
    Full,
}

impl StorageTrouble {
    pub fn sentence(self) -> &'static str {
        match self {
            StorageTrouble::Unavailable => {
                "storage is unavailable right now; please try again shortly"
            }
            StorageTrouble::Full => {
                "the bot's storage is full; please try again later (deleting files you no longer need helps)"
            }
        }
    }

    /// Pure: a database's own words for "no room" (SQLite's SQLITE_FULL, MongoDB's).
    pub fn from_reason(reason: &str) -> StorageTrouble {
        let reason = reason.to_ascii_lowercase();
        if reason.contains("disk is full")
            || reason.contains("no space left")
            || reason.contains("out of disk space")
        {
            StorageTrouble::Full
        } else {
            StorageTrouble::Unavailable
        }
    }

    pub fn of_io(err: &std::io::Error) -> Option<StorageTrouble> {
        crate::no_room::is_no_room(err).then_some(StorageTrouble::Full)
    }
}

impl MetadataError {
    pub fn trouble(&self) -> Option<StorageTrouble> {
        match self {
            MetadataError::Backend { reason, .. } => Some(StorageTrouble::from_reason(reason)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod trouble_tests {
    use super::*;

    #[test]
    fn a_full_disk_is_told_apart_from_an_absent_database() {
        assert_eq!(
            StorageTrouble::from_reason("database or disk is full"),
            StorageTrouble::Full
        );
        assert_eq!(
            StorageTrouble::from_reason("Server selection timeout: No available servers"),
            StorageTrouble::Unavailable
        );
        let enospc = std::io::Error::from_raw_os_error(28);
        assert_eq!(StorageTrouble::of_io(&enospc), Some(StorageTrouble::Full));
        let enoent = std::io::Error::from_raw_os_error(2);
        assert_eq!(StorageTrouble::of_io(&enoent), None);
    }
}
