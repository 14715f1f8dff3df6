//! Embedded adapter for conversations and usage (the same SQLite file as the file store).

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ConversationStore, GuildSettings, TurnCode, UsageTotals, UserSettings};
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
    CREATE TABLE IF NOT EXISTS user_settings (
        user_id TEXT PRIMARY KEY, settings TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS model_usage (
        scope TEXT NOT NULL, month TEXT NOT NULL, model TEXT NOT NULL, totals TEXT NOT NULL,
        PRIMARY KEY (scope, month, model));
    CREATE TABLE IF NOT EXISTS turn_code (
        turn_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, runs TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS turn_code_user ON turn_code (user_id);
";

/// One JSON value stored under a key (`sql` selects it by ?1).
fn read_json<T: DeserializeOwned>(
    conn: &Connection,
    operation: &'static str,
    sql: &str,
    key: impl rusqlite::Params,
) -> Result<Option<T>, MetadataError> {
    let text: Option<String> = conn
        .query_row(sql, key, |row| row.get(0))
        .optional()
        .map_err(backend(operation))?;
    text.map(|t| serde_json::from_str(&t).map_err(backend(operation)))
        .transpose()
}

fn to_json(operation: &'static str, value: &impl Serialize) -> Result<String, MetadataError> {
    serde_json::to_string(value).map_err(backend(operation))
}

/// Adds `delta` to the totals row `select` finds (by the same params `upsert` takes first).
fn add_totals(
    tx: &rusqlite::Transaction<'_>,
    select: &str,
    upsert: &str,
    key: &[&str],
    delta: &UsageTotals,
) -> Result<(), MetadataError> {
    let mut totals: UsageTotals =
        read_json(tx, "add usage", select, rusqlite::params_from_iter(key))?.unwrap_or_default();
    totals.add(delta);
    let text = to_json("add usage", &totals)?;
    let mut values: Vec<&str> = key.to_vec();
    values.push(&text);
    tx.execute(upsert, rusqlite::params_from_iter(values))
        .map(|_| ())
        .map_err(backend("add usage"))
}

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
    async fn guild_settings(&self, guild_id: &str) -> Result<Option<GuildSettings>, MetadataError> {
        let guild = guild_id.to_string();
        self.with_conn("guild settings", move |conn| {
            read_json(
                conn,
                "guild settings",
                "SELECT limits FROM guild_limits WHERE guild_id = ?1",
                params![guild],
            )
        })
        .await
    }

    async fn set_guild_settings(
        &self,
        guild_id: &str,
        settings: &GuildSettings,
    ) -> Result<(), MetadataError> {
        let guild = guild_id.to_string();
        let text = to_json("set guild settings", settings)?;
        self.with_conn("set guild settings", move |conn| {
            conn.execute(
                "INSERT INTO guild_limits (guild_id, limits) VALUES (?1, ?2)
                 ON CONFLICT (guild_id) DO UPDATE SET limits = excluded.limits",
                params![guild, text],
            )
            .map(|_| ())
            .map_err(backend("set guild settings"))
        })
        .await
    }

    async fn user_settings(&self, user_id: &str) -> Result<UserSettings, MetadataError> {
        let user = user_id.to_string();
        self.with_conn("user settings", move |conn| {
            read_json(
                conn,
                "user settings",
                "SELECT settings FROM user_settings WHERE user_id = ?1",
                params![user],
            )
            .map(Option::unwrap_or_default)
        })
        .await
    }

    async fn set_user_settings(
        &self,
        user_id: &str,
        settings: &UserSettings,
    ) -> Result<(), MetadataError> {
        let user = user_id.to_string();
        let text = to_json("set user settings", settings)?;
        self.with_conn("set user settings", move |conn| {
            conn.execute(
                "INSERT INTO user_settings (user_id, settings) VALUES (?1, ?2)
                 ON CONFLICT (user_id) DO UPDATE SET settings = excluded.settings",
                params![user, text],
            )
            .map(|_| ())
            .map_err(backend("set user settings"))
        })
        .await
    }

    async fn save_turn_code(&self, turn_id: &str, code: &TurnCode) -> Result<(), MetadataError> {
        let (turn, user) = (turn_id.to_string(), code.user_id.clone());
        let text = to_json("save turn code", &code.runs)?;
        self.with_conn("save turn code", move |conn| {
            conn.execute(
                "INSERT INTO turn_code (turn_id, user_id, runs) VALUES (?1, ?2, ?3)
                 ON CONFLICT (turn_id) DO UPDATE SET runs = excluded.runs",
                params![turn, user, text],
            )
            .map(|_| ())
            .map_err(backend("save turn code"))
        })
        .await
    }

    async fn turn_code(&self, turn_id: &str) -> Result<Option<TurnCode>, MetadataError> {
        let turn = turn_id.to_string();
        self.with_conn("turn code", move |conn| {
            let row: Option<(String, String)> = conn
                .query_row(
                    "SELECT user_id, runs FROM turn_code WHERE turn_id = ?1",
                    params![turn],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(backend("turn code"))?;
            row.map(|(user_id, runs)| {
                Ok(TurnCode {
                    user_id,
                    runs: serde_json::from_str(&runs).map_err(backend("turn code"))?,
                })
            })
            .transpose()
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
                None => conn
                    .execute("DELETE FROM turn_code WHERE user_id = ?1", params![user])
                    .and_then(|_| {
                        conn.execute(
                            "DELETE FROM conversations WHERE user_id = ?1",
                            params![user],
                        )
                    }),
            }
            .map(|_| ())
            .map_err(backend("clear history"))
        })
        .await
    }

    async fn add_usage(
        &self,
        scope: &str,
        month: &str,
        model: &str,
        delta: &UsageTotals,
    ) -> Result<(), MetadataError> {
        let (scope, month, model, delta) = (
            scope.to_string(),
            month.to_string(),
            model.to_string(),
            delta.clone(),
        );
        self.with_conn("add usage", move |conn| {
            let tx = conn.transaction().map_err(backend("add usage"))?;
            add_totals(
                &tx,
                "SELECT totals FROM usage WHERE user_id = ?1 AND month = ?2",
                "INSERT INTO usage (user_id, month, totals) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id, month) DO UPDATE SET totals = excluded.totals",
                &[&scope, &month],
                &delta,
            )?;
            add_totals(
                &tx,
                "SELECT totals FROM model_usage WHERE scope = ?1 AND month = ?2 AND model = ?3",
                "INSERT INTO model_usage (scope, month, model, totals) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (scope, month, model) DO UPDATE SET totals = excluded.totals",
                &[&scope, &month, &model],
                &delta,
            )?;
            tx.commit().map_err(backend("add usage"))
        })
        .await
    }

    async fn usage(&self, scope: &str, month: &str) -> Result<UsageTotals, MetadataError> {
        let (scope, month) = (scope.to_string(), month.to_string());
        self.with_conn("usage", move |conn| {
            read_json(
                conn,
                "usage",
                "SELECT totals FROM usage WHERE user_id = ?1 AND month = ?2",
                params![scope, month],
            )
            .map(Option::unwrap_or_default)
        })
        .await
    }

    async fn usage_by_model(
        &self,
        scope: &str,
        month: &str,
    ) -> Result<BTreeMap<String, UsageTotals>, MetadataError> {
        let (scope, month) = (scope.to_string(), month.to_string());
        self.with_conn("usage by model", move |conn| {
            let mut statement = conn
                .prepare("SELECT model, totals FROM model_usage WHERE scope = ?1 AND month = ?2")
                .map_err(backend("usage by model"))?;
            let rows = statement
                .query_map(params![scope, month], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })
                .map_err(backend("usage by model"))?;
            let mut by_model = BTreeMap::new();
            for row in rows {
                let (model, totals) = row.map_err(backend("usage by model"))?;
                by_model.insert(
                    model,
                    serde_json::from_str(&totals).map_err(backend("usage by model"))?,
                );
            }
            Ok(by_model)
        })
        .await
    }
}
