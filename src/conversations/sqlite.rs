//! Embedded adapter for conversations and usage (the same SQLite file as the file store).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::{ConversationStore, GuildLimits, UsageTotals};
use crate::llm::history::ChatMessage;
use crate::store::MetadataError;

#[derive(Clone)]
pub struct SqliteConversations {
    db: SharedSqlite,
}

use crate::store::db::{SharedSqlite, backend_error as backend};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS conversations (
        user_id TEXT NOT NULL, channel_id TEXT NOT NULL, messages TEXT NOT NULL,
        PRIMARY KEY (user_id, channel_id));
    CREATE TABLE IF NOT EXISTS usage (
        user_id TEXT NOT NULL, month TEXT NOT NULL, totals TEXT NOT NULL,
        PRIMARY KEY (user_id, month));
    CREATE TABLE IF NOT EXISTS guild_limits (
        guild_id TEXT PRIMARY KEY, limits TEXT NOT NULL);
";

impl SqliteConversations {
    pub fn open(path: &Path) -> Result<SqliteConversations, MetadataError> {
        Ok(SqliteConversations {
            db: SharedSqlite::open(path, SCHEMA)?,
        })
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&mut Connection) -> Result<T, MetadataError> + Send + 'static,
    ) -> Result<T, MetadataError> {
        self.db.run(operation, work).await
    }
}

impl ConversationStore for SqliteConversations {
    async fn guild_limits(&self, guild_id: &str) -> Result<Option<GuildLimits>, MetadataError> {
        let guild = guild_id.to_string();
        self.with_conn("guild limits", move |conn| {
            let text: Option<String> = conn
                .query_row(
                    "SELECT limits FROM guild_limits WHERE guild_id = ?1",
                    params![guild],
                    |row| row.get(0),
                )
                .optional()
                .map_err(backend("guild limits"))?;
            text.map(|t| serde_json::from_str(&t).map_err(backend("guild limits")))
                .transpose()
        })
        .await
    }

    async fn set_guild_limits(
        &self,
        guild_id: &str,
        limits: &GuildLimits,
    ) -> Result<(), MetadataError> {
        let guild = guild_id.to_string();
        let text = serde_json::to_string(limits).map_err(backend("set guild limits"))?;
        self.with_conn("set guild limits", move |conn| {
            conn.execute(
                "INSERT INTO guild_limits (guild_id, limits) VALUES (?1, ?2)
                 ON CONFLICT (guild_id) DO UPDATE SET limits = excluded.limits",
                params![guild, text],
            )
            .map(|_| ())
            .map_err(backend("set guild limits"))
        })
        .await
    }

    async fn history(
        &self,
        user_id: &str,
        channel_id: &str,
    ) -> Result<Vec<ChatMessage>, MetadataError> {
        let (user, channel) = (user_id.to_string(), channel_id.to_string());
        self.with_conn("load history", move |conn| {
            let text: Option<String> = conn
                .query_row(
                    "SELECT messages FROM conversations WHERE user_id = ?1 AND channel_id = ?2",
                    params![user, channel],
                    |row| row.get(0),
                )
                .optional()
                .map_err(backend("load history"))?;
            match text {
                Some(text) => serde_json::from_str(&text).map_err(backend("load history")),
                None => Ok(Vec::new()),
            }
        })
        .await
    }

    async fn save_history(
        &self,
        user_id: &str,
        channel_id: &str,
        messages: &[ChatMessage],
    ) -> Result<(), MetadataError> {
        let (user, channel) = (user_id.to_string(), channel_id.to_string());
        let text = serde_json::to_string(messages).map_err(backend("save history"))?;
        self.with_conn("save history", move |conn| {
            conn.execute(
                "INSERT INTO conversations (user_id, channel_id, messages) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id, channel_id) DO UPDATE SET messages = excluded.messages",
                params![user, channel, text],
            )
            .map(|_| ())
            .map_err(backend("save history"))
        })
        .await
    }

    async fn clear_history(
        &self,
        user_id: &str,
        channel_id: Option<&str>,
    ) -> Result<(), MetadataError> {
        let user = user_id.to_string();
        let channel = channel_id.map(str::to_string);
        self.with_conn("clear history", move |conn| {
            match channel {
                Some(channel) => conn.execute(
                    "DELETE FROM conversations WHERE user_id = ?1 AND channel_id = ?2",
                    params![user, channel],
                ),
                None => conn.execute(
                    "DELETE FROM conversations WHERE user_id = ?1",
                    params![user],
                ),
            }
            .map(|_| ())
            .map_err(backend("clear history"))
        })
        .await
    }

    async fn add_usage(
        &self,
        user_id: &str,
        month: &str,
        delta: &UsageTotals,
    ) -> Result<(), MetadataError> {
        let (user, month, delta) = (user_id.to_string(), month.to_string(), delta.clone());
        self.with_conn("add usage", move |conn| {
            let tx = conn.transaction().map_err(backend("add usage"))?;
            let current: Option<String> = tx
                .query_row(
                    "SELECT totals FROM usage WHERE user_id = ?1 AND month = ?2",
                    params![user, month],
                    |row| row.get(0),
                )
                .optional()
                .map_err(backend("add usage"))?;
            let mut totals: UsageTotals = match current {
                Some(text) => serde_json::from_str(&text).map_err(backend("add usage"))?,
                None => UsageTotals::default(),
            };
            totals.add(&delta);
            let text = serde_json::to_string(&totals).map_err(backend("add usage"))?;
            tx.execute(
                "INSERT INTO usage (user_id, month, totals) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id, month) DO UPDATE SET totals = excluded.totals",
                params![user, month, text],
            )
            .map_err(backend("add usage"))?;
            tx.commit().map_err(backend("add usage"))
        })
        .await
    }

    async fn usage(&self, user_id: &str, month: &str) -> Result<UsageTotals, MetadataError> {
        let (user, month) = (user_id.to_string(), month.to_string());
        self.with_conn("usage", move |conn| {
            let text: Option<String> = conn
                .query_row(
                    "SELECT totals FROM usage WHERE user_id = ?1 AND month = ?2",
                    params![user, month],
                    |row| row.get(0),
                )
                .optional()
                .map_err(backend("usage"))?;
            match text {
                Some(text) => serde_json::from_str(&text).map_err(backend("usage")),
                None => Ok(UsageTotals::default()),
            }
        })
        .await
    }
}
