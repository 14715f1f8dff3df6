//! Connections shared by every adapter that persists something: one SQLite opener and
//! blocking-work runner, one MongoDB connector. Errors become `MetadataError`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use super::metadata::MetadataError;

pub fn backend_error<E: std::fmt::Display>(operation: &'static str) -> impl Fn(E) -> MetadataError {
    move |err| MetadataError::Backend {
        operation,
        reason: err.to_string(),
    }
}

/// A SQLite connection shared by async code; WAL and a busy timeout let several processes
/// (a bot, CLI commands) use one database file.
#[derive(Clone)]
pub struct SharedSqlite {
    conn: Arc<Mutex<Connection>>,
}

impl SharedSqlite {
    pub fn open(path: &Path, schema: &str) -> Result<SharedSqlite, MetadataError> {
        if let Some(parent) = path.parent() {
            // The database's directory is DATA_DIR.
            crate::data_dir::ensure(parent).map_err(|err| MetadataError::Backend {
                operation: "open",
                reason: format!("{}: {err}", parent.display()),
            })?;
        }
        // Users' names, conversations and file names: codebox's alone, WAL included.
        crate::data_dir::private_file(path)
            .and_then(|()| crate::data_dir::private_companions(path))
            .map_err(|err| MetadataError::Backend {
                operation: "open",
                reason: format!("{}: {err}", path.display()),
            })?;
        let conn = Connection::open(path).map_err(backend_error("open"))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(backend_error("open"))?;
        // WAL with synchronous=NORMAL: a commit is not fsynced on its own (the WAL is at
        // checkpoints), so a chat turn's writes cost no disk flush each; the database cannot
        // be corrupted by a crash, and only a power loss can take back the last commits (a
        // turn's history or usage), which the sweeper's reconciliation tolerates.
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL;\nPRAGMA synchronous = NORMAL;\n{schema}"
        ))
        .map_err(backend_error("create schema"))?;
        Ok(SharedSqlite {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs blocking SQLite work off the async threads.
    pub async fn run<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&mut Connection) -> Result<T, MetadataError> + Send + 'static,
    ) -> Result<T, MetadataError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| MetadataError::Backend {
                operation,
                reason: "connection lock poisoned".to_string(),
            })?;
            work(&mut guard)
        })
        .await
        .map_err(backend_error(operation))?
    }
}

/// Connects to MongoDB, failing within seconds when no server answers.
pub async fn connect_mongo(uri: &str, database: &str) -> Result<mongodb::Database, MetadataError> {
    let mut options = mongodb::options::ClientOptions::parse(uri)
        .await
        .map_err(|_| MetadataError::Backend {
            operation: "parse MONGODB_URI",
            // The URI usually holds a password: never echo it or the parser's view of it.
            reason: "invalid MongoDB connection string".to_string(),
        })?;
    options.server_selection_timeout = Some(Duration::from_secs(5));
    options.connect_timeout = Some(Duration::from_secs(5));
    options.app_name = Some("codebox".to_string());
    let client = mongodb::Client::with_options(options).map_err(backend_error("connect"))?;
    Ok(client.database(database))
}
