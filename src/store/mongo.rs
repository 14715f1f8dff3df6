//! The MongoDB metadata adapter: collection `user_files` with a unique index on file_id
//! and indexes on user_id and expires_at.

use chrono::{DateTime, TimeZone, Utc};
use futures_util::TryStreamExt;
use mongodb::bson::{DateTime as BsonDateTime, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};
use serde::{Deserialize, Serialize};

use super::db::connect_mongo;
use super::metadata::{Metadata, MetadataError};
use super::record::{FileRecord, Origin};

pub const COLLECTION: &str = "user_files";

#[derive(Clone)]
pub struct MongoMetadata {
    collection: Collection<FileDoc>,
}

/// The stored shape: dates as BSON dates so the expiry index and queries work natively.
#[derive(Debug, Serialize, Deserialize)]
struct FileDoc {
    file_id: String,
    user_id: String,
    filename: String,
    file_type: String,
    file_size: i64,
    sha256: String,
    origin: Origin,
    created_at: BsonDateTime,
    expires_at: Option<BsonDateTime>,
    #[serde(default)]
    summary: Option<String>,
}

fn backend(operation: &'static str) -> impl Fn(mongodb::error::Error) -> MetadataError {
    move |err| MetadataError::Backend {
        operation,
        reason: err.to_string(),
    }
}

fn to_bson(at: DateTime<Utc>) -> BsonDateTime {
    BsonDateTime::from_millis(at.timestamp_millis())
}

fn from_bson(file_id: &str, at: BsonDateTime) -> Result<DateTime<Utc>, MetadataError> {
    Utc.timestamp_millis_opt(at.timestamp_millis())
        .single()
        .ok_or_else(|| MetadataError::Corrupt {
            file_id: file_id.to_string(),
            reason: "date out of range".to_string(),
        })
}

impl FileDoc {
    fn from_record(r: &FileRecord) -> FileDoc {
        FileDoc {
            file_id: r.file_id.clone(),
            user_id: r.user_id.clone(),
            filename: r.filename.clone(),
            file_type: r.file_type.clone(),
            file_size: r.file_size as i64,
            sha256: r.sha256.clone(),
            origin: r.origin,
            created_at: to_bson(r.created_at),
            expires_at: r.expires_at.map(to_bson),
            summary: r.summary.clone(),
        }
    }

    fn into_record(self) -> Result<FileRecord, MetadataError> {
        Ok(FileRecord {
            created_at: from_bson(&self.file_id, self.created_at)?,
            expires_at: self
                .expires_at
                .map(|at| from_bson(&self.file_id, at))
                .transpose()?,
            file_size: self.file_size.max(0) as u64,
            file_id: self.file_id,
            user_id: self.user_id,
            filename: self.filename,
            file_type: self.file_type,
            sha256: self.sha256,
            origin: self.origin,
            summary: self.summary,
        })
    }
}

impl MongoMetadata {
    /// Connects (failing within seconds when no server answers) and ensures the indexes.
    pub async fn connect(uri: &str, database: &str) -> Result<MongoMetadata, MetadataError> {
        let collection = connect_mongo(uri, database)
            .await?
            .collection::<FileDoc>(COLLECTION);
        let indexes = vec![
            IndexModel::builder()
                .keys(doc! {"file_id": 1})
                .options(IndexOptions::builder().unique(true).build())
                .build(),
            IndexModel::builder()
                .keys(doc! {"user_id": 1, "created_at": 1})
                .build(),
            IndexModel::builder().keys(doc! {"expires_at": 1}).build(),
        ];
        collection
            .create_indexes(indexes)
            .await
            .map_err(backend("create indexes"))?;
        Ok(MongoMetadata { collection })
    }

    async fn find(
        &self,
        filter: mongodb::bson::Document,
        sort: Option<mongodb::bson::Document>,
    ) -> Result<Vec<FileRecord>, MetadataError> {
        let mut find = self.collection.find(filter);
        if let Some(sort) = sort {
            find = find.sort(sort);
        }
        let docs: Vec<FileDoc> = find
            .await
            .map_err(backend("find"))?
            .try_collect()
            .await
            .map_err(backend("find"))?;
        docs.into_iter().map(FileDoc::into_record).collect()
    }
}

impl Metadata for MongoMetadata {
    async fn insert(&self, record: &FileRecord) -> Result<(), MetadataError> {
        match self
            .collection
            .insert_one(FileDoc::from_record(record))
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if is_duplicate_key(&err) => Err(MetadataError::Duplicate {
                file_id: record.file_id.clone(),
            }),
            Err(err) => Err(backend("insert")(err)),
        }
    }

    async fn get(&self, file_id: &str) -> Result<Option<FileRecord>, MetadataError> {
        self.collection
            .find_one(doc! {"file_id": file_id})
            .await
            .map_err(backend("get"))?
            .map(FileDoc::into_record)
            .transpose()
    }

    async fn list_user(&self, user_id: &str) -> Result<Vec<FileRecord>, MetadataError> {
        self.find(
            doc! {"user_id": user_id},
            Some(doc! {"created_at": 1, "file_id": 1}),
        )
        .await
    }

    async fn delete(&self, file_id: &str) -> Result<bool, MetadataError> {
        let result = self
            .collection
            .delete_one(doc! {"file_id": file_id})
            .await
            .map_err(backend("delete"))?;
        Ok(result.deleted_count > 0)
    }

    async fn set_summary(&self, file_id: &str, summary: &str) -> Result<bool, MetadataError> {
        let result = self
            .collection
            .update_one(
                doc! {"file_id": file_id},
                doc! {"$set": {"summary": summary}},
            )
            .await
            .map_err(backend("set summary"))?;
        Ok(result.matched_count > 0)
    }

    async fn expired(&self, now: DateTime<Utc>) -> Result<Vec<FileRecord>, MetadataError> {
        self.find(
            doc! {"expires_at": {"$ne": null, "$lte": to_bson(now)}},
            None,
        )
        .await
    }

    async fn all(&self) -> Result<Vec<FileRecord>, MetadataError> {
        self.find(doc! {}, None).await
    }
}

fn is_duplicate_key(err: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == 11000,
        _ => err.to_string().contains("E11000"),
    }
}
