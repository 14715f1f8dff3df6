//! Picks the metadata adapter from the settings: MongoDB when MONGODB_URI is set, the
//! embedded SQLite database under DATA_DIR otherwise.

use chrono::{DateTime, Utc};

use super::metadata::{Metadata, MetadataError};
use super::mongo::MongoMetadata;
use super::record::FileRecord;
use super::sqlite::SqliteMetadata;
use crate::config::StoreSettings;

#[derive(Clone)]
pub enum AnyMetadata {
    Mongo(MongoMetadata),
    Sqlite(SqliteMetadata),
}

impl AnyMetadata {
    pub async fn from_settings(
        settings: &StoreSettings,
        data_dir: &std::path::Path,
    ) -> Result<AnyMetadata, MetadataError> {
        match &settings.mongodb_uri {
            Some(uri) => Ok(AnyMetadata::Mongo(
                MongoMetadata::connect(uri.expose(), &settings.mongodb_database).await?,
            )),
            None => Ok(AnyMetadata::Sqlite(SqliteMetadata::open(
                &data_dir.join("codebox.sqlite3"),
            )?)),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            AnyMetadata::Mongo(_) => "mongodb",
            AnyMetadata::Sqlite(_) => "embedded",
        }
    }
}

macro_rules! delegate {
    ($self:ident, $m:ident => $call:expr) => {
        match $self {
            AnyMetadata::Mongo($m) => $call.await,
            AnyMetadata::Sqlite($m) => $call.await,
        }
    };
}

impl Metadata for AnyMetadata {
    async fn insert(&self, record: &FileRecord) -> Result<(), MetadataError> {
        delegate!(self, m => m.insert(record))
    }
    async fn get(&self, file_id: &str) -> Result<Option<FileRecord>, MetadataError> {
        delegate!(self, m => m.get(file_id))
    }
    async fn list_user(&self, user_id: &str) -> Result<Vec<FileRecord>, MetadataError> {
        delegate!(self, m => m.list_user(user_id))
    }
    async fn delete(&self, file_id: &str) -> Result<bool, MetadataError> {
        delegate!(self, m => m.delete(file_id))
    }
    async fn set_summary(&self, file_id: &str, summary: &str) -> Result<bool, MetadataError> {
        delegate!(self, m => m.set_summary(file_id, summary))
    }
    async fn expired(&self, now: DateTime<Utc>) -> Result<Vec<FileRecord>, MetadataError> {
        delegate!(self, m => m.expired(now))
    }
    async fn all(&self) -> Result<Vec<FileRecord>, MetadataError> {
        delegate!(self, m => m.all())
    }
}
