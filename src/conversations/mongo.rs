//! MongoDB adapter for conversations (`conversations`) and usage (`usage`, updated with
//! `$inc` so concurrent requests add up).

use std::collections::BTreeMap;

use mongodb::Collection;
use mongodb::bson::{self, Document, doc};
use mongodb::options::UpdateOptions;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ConversationStore, GuildSettings, TurnCode, UsageTotals, UserSettings};
use crate::llm::history::ChatMessage;
use crate::store::MetadataError;

#[derive(Clone)]
pub struct MongoConversations {
    conversations: Collection<Document>,
    usage: Collection<Document>,
    guild_limits: Collection<Document>,
    user_settings: Collection<Document>,
    model_usage: Collection<Document>,
    turn_code: Collection<Document>,
}

use crate::store::db::{backend_error as backend, connect_mongo};

impl MongoConversations {
    pub async fn connect(uri: &str, database: &str) -> Result<MongoConversations, MetadataError> {
        let db = connect_mongo(uri, database).await?;
        Ok(MongoConversations {
            conversations: db.collection("conversations"),
            usage: db.collection("usage"),
            guild_limits: db.collection("guild_limits"),
            user_settings: db.collection("user_settings"),
            model_usage: db.collection("model_usage"),
            turn_code: db.collection("turn_code"),
        })
    }
}

fn key(a: &str, b: &str) -> String {
    format!("{a}:{b}")
}

fn upsert() -> UpdateOptions {
    UpdateOptions::builder().upsert(true).build()
}

/// A JSON value kept as one string field of the document `_id`: opaque to the database.
async fn read_json<T: DeserializeOwned>(
    collection: &Collection<Document>,
    operation: &'static str,
    id: &str,
    field: &str,
) -> Result<Option<T>, MetadataError> {
    let found = collection
        .find_one(doc! {"_id": id})
        .await
        .map_err(backend(operation))?;
    found
        .and_then(|d| d.get_str(field).ok().map(str::to_string))
        .map(|t| serde_json::from_str(&t).map_err(backend(operation)))
        .transpose()
}

async fn write_json(
    collection: &Collection<Document>,
    operation: &'static str,
    id: &str,
    mut fields: Document,
    field: &str,
    value: &impl Serialize,
) -> Result<(), MetadataError> {
    let text = serde_json::to_string(value).map_err(backend(operation))?;
    fields.insert(field, text);
    collection
        .update_one(doc! {"_id": id}, doc! {"$set": fields})
        .with_options(upsert())
        .await
        .map(|_| ())
        .map_err(backend(operation))
}

/// A totals document as `UsageTotals` (its key fields dropped).
fn totals_of(mut document: Document) -> Result<UsageTotals, MetadataError> {
    for field in ["_id", "user_id", "scope", "month", "model"] {
        document.remove(field);
    }
    bson::from_document(document).map_err(backend("usage"))
}

impl ConversationStore for MongoConversations {
    async fn guild_settings(&self, guild_id: &str) -> Result<Option<GuildSettings>, MetadataError> {
        read_json(&self.guild_limits, "guild settings", guild_id, "limits").await
    }

    async fn set_guild_settings(
        &self,
        guild_id: &str,
        settings: &GuildSettings,
    ) -> Result<(), MetadataError> {
        write_json(
            &self.guild_limits,
            "set guild settings",
            guild_id,
            doc! {},
            "limits",
            settings,
        )
        .await
    }

    async fn user_settings(&self, user_id: &str) -> Result<UserSettings, MetadataError> {
        Ok(
            read_json(&self.user_settings, "user settings", user_id, "settings")
                .await?
                .unwrap_or_default(),
        )
    }

    async fn set_user_settings(
        &self,
        user_id: &str,
        settings: &UserSettings,
    ) -> Result<(), MetadataError> {
        write_json(
            &self.user_settings,
            "set user settings",
            user_id,
            doc! {},
            "settings",
            settings,
        )
        .await
    }

    async fn save_turn_code(&self, turn_id: &str, code: &TurnCode) -> Result<(), MetadataError> {
        write_json(
            &self.turn_code,
            "save turn code",
            turn_id,
            doc! {"user_id": &code.user_id},
            "runs",
            &code.runs,
        )
        .await
    }

    async fn turn_code(&self, turn_id: &str) -> Result<Option<TurnCode>, MetadataError> {
        let found = self
            .turn_code
            .find_one(doc! {"_id": turn_id})
            .await
            .map_err(backend("turn code"))?;
        let Some(document) = found else {
            return Ok(None);
        };
        let user_id = document.get_str("user_id").unwrap_or_default().to_string();
        let runs = document.get_str("runs").unwrap_or("[]");
        Ok(Some(TurnCode {
            user_id,
            runs: serde_json::from_str(runs).map_err(backend("turn code"))?,
        }))
    }

    async fn history(
        &self,
        user_id: &str,
        channel_id: &str,
    ) -> Result<Vec<ChatMessage>, MetadataError> {
        let found = self
            .conversations
            .find_one(doc! {"_id": key(user_id, channel_id)})
            .await
            .map_err(backend("load history"))?;
        match found.and_then(|d| d.get_str("messages").ok().map(str::to_string)) {
            Some(text) => serde_json::from_str(&text).map_err(backend("load history")),
            None => Ok(Vec::new()),
        }
    }

    async fn save_history(
        &self,
        user_id: &str,
        channel_id: &str,
        messages: &[ChatMessage],
    ) -> Result<(), MetadataError> {
        // Stored as one JSON string: messages are an opaque, ordered blob to the database.
        let text = serde_json::to_string(messages).map_err(backend("save history"))?;
        self.conversations
            .update_one(
                doc! {"_id": key(user_id, channel_id)},
                doc! {"$set": {"user_id": user_id, "channel_id": channel_id, "messages": text}},
            )
            .with_options(UpdateOptions::builder().upsert(true).build())
            .await
            .map(|_| ())
            .map_err(backend("save history"))
    }

    async fn clear_history(
        &self,
        user_id: &str,
        channel_id: Option<&str>,
    ) -> Result<(), MetadataError> {
        let filter = match channel_id {
            Some(channel) => doc! {"_id": key(user_id, channel)},
            None => {
                self.turn_code
                    .delete_many(doc! {"user_id": user_id})
                    .await
                    .map_err(backend("clear history"))?;
                doc! {"user_id": user_id}
            }
        };
        self.conversations
            .delete_many(filter)
            .await
            .map(|_| ())
            .map_err(backend("clear history"))
    }

    async fn add_usage(
        &self,
        scope: &str,
        month: &str,
        model: &str,
        delta: &UsageTotals,
    ) -> Result<(), MetadataError> {
        let inc = bson::to_document(delta).map_err(backend("add usage"))?;
        self.usage
            .update_one(
                doc! {"_id": key(scope, month)},
                doc! {"$inc": inc.clone(), "$set": {"user_id": scope, "month": month}},
            )
            .with_options(upsert())
            .await
            .map_err(backend("add usage"))?;
        // Model names hold dots (gpt-4.1): a document per model, not a field.
        self.model_usage
            .update_one(
                doc! {"_id": format!("{scope}:{month}:{model}")},
                doc! {"$inc": inc, "$set": {"scope": scope, "month": month, "model": model}},
            )
            .with_options(upsert())
            .await
            .map(|_| ())
            .map_err(backend("add usage"))
    }

    async fn usage(&self, scope: &str, month: &str) -> Result<UsageTotals, MetadataError> {
        let found = self
            .usage
            .find_one(doc! {"_id": key(scope, month)})
            .await
            .map_err(backend("usage"))?;
        match found {
            Some(document) => totals_of(document),
            None => Ok(UsageTotals::default()),
        }
    }

    async fn usage_by_model(
        &self,
        scope: &str,
        month: &str,
    ) -> Result<BTreeMap<String, UsageTotals>, MetadataError> {
        use futures_util::TryStreamExt;
        let documents: Vec<Document> = self
            .model_usage
            .find(doc! {"scope": scope, "month": month})
            .await
            .map_err(backend("usage by model"))?
            .try_collect()
            .await
            .map_err(backend("usage by model"))?;
        let mut by_model = BTreeMap::new();
        for document in documents {
            let model = document.get_str("model").unwrap_or_default().to_string();
            by_model.insert(model, totals_of(document)?);
        }
        Ok(by_model)
    }
}
