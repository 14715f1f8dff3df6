//! The embedded metadata adapter: SQLite in DATA_DIR, so a new user needs no server.

use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::db::{SharedSqlite, backend_error};
use super::metadata::{Metadata, MetadataError};
use super::record::{FileRecord, Origin};

#[derive(Clone)]
pub struct SqliteMetadata {
    db: SharedSqlite,
}

fn backend(operation: &'static str) -> impl Fn(rusqlite::Error) -> MetadataError {
    backend_error(operation)
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS user_files (
        file_id     TEXT PRIMARY KEY,
        user_id     TEXT NOT NULL,
        filename    TEXT NOT NULL,
        file_type   TEXT NOT NULL,
        file_size   INTEGER NOT NULL,
        sha256      TEXT NOT NULL,
        origin      TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER,
        summary     TEXT
    );
    CREATE INDEX IF NOT EXISTS user_files_by_user ON user_files (user_id, created_at);
    CREATE INDEX IF NOT EXISTS user_files_by_expiry ON user_files (expires_at);
";

const COLUMNS: &str = "file_id, user_id, filename, file_type, file_size, sha256, origin, created_at, expires_at, summary";

impl SqliteMetadata {
    pub fn open(path: &Path) -> Result<SqliteMetadata, MetadataError> {
        Ok(SqliteMetadata {
            db: SharedSqlite::open(path, SCHEMA)?,
        })
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&Connection) -> Result<T, MetadataError> + Send + 'static,
    ) -> Result<T, MetadataError> {
        self.db.run(operation, move |conn| work(conn)).await
    }
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn from_millis(file_id: &str, ms: i64) -> Result<DateTime<Utc>, MetadataError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| MetadataError::Corrupt {
            file_id: file_id.to_string(),
            reason: format!("timestamp {ms} out of range"),
        })
}

struct RawRow {
    file_id: String,
    user_id: String,
    filename: String,
    file_type: String,
    file_size: i64,
    sha256: String,
    origin: String,
    created_at: i64,
    expires_at: Option<i64>,
    summary: Option<String>,
}

fn raw_row(row: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        file_id: row.get(0)?,
        user_id: row.get(1)?,
        filename: row.get(2)?,
        file_type: row.get(3)?,
        file_size: row.get(4)?,
        sha256: row.get(5)?,
        origin: row.get(6)?,
        created_at: row.get(7)?,
        expires_at: row.get(8)?,
        summary: row.get(9)?,
    })
}

fn record(raw: RawRow) -> Result<FileRecord, MetadataError> {
    let origin = Origin::parse(&raw.origin).ok_or_else(|| MetadataError::Corrupt {
        file_id: raw.file_id.clone(),
        reason: format!("origin {}", raw.origin),
    })?;
    Ok(FileRecord {
        created_at: from_millis(&raw.file_id, raw.created_at)?,
        expires_at: raw
            .expires_at
            .map(|ms| from_millis(&raw.file_id, ms))
            .transpose()?,
        file_size: raw.file_size.max(0) as u64,
        origin,
        file_id: raw.file_id,
        user_id: raw.user_id,
        filename: raw.filename,
        file_type: raw.file_type,
        sha256: raw.sha256,
        summary: raw.summary,
    })
}

fn query(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<FileRecord>, MetadataError> {
    let mut stmt = conn.prepare(sql).map_err(backend("query"))?;
    let rows = stmt
        .query_map(params, raw_row)
        .map_err(backend("query"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend("query"))?;
    rows.into_iter().map(record).collect()
}

impl Metadata for SqliteMetadata {
    async fn insert(&self, record: &FileRecord) -> Result<(), MetadataError> {
        let r = record.clone();
        self.with_conn("insert", move |conn| {
            let result = conn.execute(
                &format!("INSERT INTO user_files ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                params![
                    r.file_id,
                    r.user_id,
                    r.filename,
                    r.file_type,
                    r.file_size as i64,
                    r.sha256,
                    r.origin.as_str(),
                    millis(r.created_at),
                    r.expires_at.map(millis),
                    r.summary,
                ],
            );
            match result {
                Ok(_) => Ok(()),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Err(MetadataError::Duplicate { file_id: r.file_id })
                }
                Err(err) => Err(backend("insert")(err)),
            }
        })
        .await
    }

    async fn get(&self, file_id: &str) -> Result<Option<FileRecord>, MetadataError> {
        let id = file_id.to_string();
        self.with_conn("get", move |conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM user_files WHERE file_id = ?1"),
                params![id],
                raw_row,
            )
            .optional()
            .map_err(backend("get"))?
            .map(record)
            .transpose()
        })
        .await
    }

    async fn list_user(&self, user_id: &str) -> Result<Vec<FileRecord>, MetadataError> {
        let user = user_id.to_string();
        self.with_conn("list", move |conn| {
            query(
                conn,
                &format!("SELECT {COLUMNS} FROM user_files WHERE user_id = ?1 ORDER BY created_at, file_id"),
                params![user],
            )
        })
        .await
    }

    async fn delete(&self, file_id: &str) -> Result<bool, MetadataError> {
        let id = file_id.to_string();
        self.with_conn("delete", move |conn| {
            conn.execute("DELETE FROM user_files WHERE file_id = ?1", params![id])
                .map(|n| n > 0)
                .map_err(backend("delete"))
        })
        .await
    }

    async fn set_summary(&self, file_id: &str, summary: &str) -> Result<bool, MetadataError> {
        let (id, summary) = (file_id.to_string(), summary.to_string());
        self.with_conn("set summary", move |conn| {
            conn.execute(
                "UPDATE user_files SET summary = ?2 WHERE file_id = ?1",
                params![id, summary],
            )
            .map(|n| n > 0)
            .map_err(backend("set summary"))
        })
        .await
    }

    async fn expired(&self, now: DateTime<Utc>) -> Result<Vec<FileRecord>, MetadataError> {
        self.with_conn("expired", move |conn| {
            query(
                conn,
                &format!("SELECT {COLUMNS} FROM user_files WHERE expires_at IS NOT NULL AND expires_at <= ?1"),
                params![millis(now)],
            )
        })
        .await
    }

    async fn all(&self) -> Result<Vec<FileRecord>, MetadataError> {
        self.with_conn("all", move |conn| {
            query(
                conn,
                &format!("SELECT {COLUMNS} FROM user_files"),
                params![],
            )
        })
        .await
    }
}
