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
