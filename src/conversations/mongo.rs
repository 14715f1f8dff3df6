//! MongoDB adapter for conversations (`conversations`) and usage (`usage`, updated with
//! `$inc` so concurrent requests add up).

use mongodb::Collection;
use mongodb::bson::{self, Document, doc};
use mongodb::options::UpdateOptions;

use super::{ConversationStore, GuildLimits, UsageTotals};
use crate::llm::history::ChatMessage;
use crate::store::MetadataError;

#[derive(Clone)]
pub struct MongoConversations {
    conversations: Collection<Document>,
    usage: Collection<Document>,
    guild_limits: Collection<Document>,
}

use crate::store::db::{backend_error as backend, connect_mongo};

impl MongoConversations {
    pub async fn connect(uri: &str, database: &str) -> Result<MongoConversations, MetadataError> {
        let db = connect_mongo(uri, database).await?;
        Ok(MongoConversations {
            conversations: db.collection("conversations"),
            usage: db.collection("usage"),
            guild_limits: db.collection("guild_limits"),
        })
    }
}

fn key(a: &str, b: &str) -> String {
    format!("{a}:{b}")
}

impl ConversationStore for MongoConversations {
    async fn guild_limits(&self, guild_id: &str) -> Result<Option<GuildLimits>, MetadataError> {
        let found = self
            .guild_limits
            .find_one(doc! {"_id": guild_id})
            .await
            .map_err(backend("guild limits"))?;
        found
            .and_then(|d| d.get_str("limits").ok().map(str::to_string))
            .map(|t| serde_json::from_str(&t).map_err(backend("guild limits")))
            .transpose()
    }

    async fn set_guild_limits(
        &self,
        guild_id: &str,
        limits: &GuildLimits,
    ) -> Result<(), MetadataError> {
        let text = serde_json::to_string(limits).map_err(backend("set guild limits"))?;
        self.guild_limits
            .update_one(doc! {"_id": guild_id}, doc! {"$set": {"limits": text}})
            .with_options(UpdateOptions::builder().upsert(true).build())
            .await
            .map(|_| ())
            .map_err(backend("set guild limits"))
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
            None => doc! {"user_id": user_id},
        };
        self.conversations
            .delete_many(filter)
            .await
            .map(|_| ())
            .map_err(backend("clear history"))
    }

    async fn add_usage(
        &self,
        user_id: &str,
        month: &str,
        delta: &UsageTotals,
    ) -> Result<(), MetadataError> {
        let inc = bson::to_document(delta).map_err(backend("add usage"))?;
        self.usage
            .update_one(
                doc! {"_id": key(user_id, month)},
                doc! {"$inc": inc, "$set": {"user_id": user_id, "month": month}},
            )
            .with_options(UpdateOptions::builder().upsert(true).build())
            .await
            .map(|_| ())
            .map_err(backend("add usage"))
    }

    async fn usage(&self, user_id: &str, month: &str) -> Result<UsageTotals, MetadataError> {
        let found = self
            .usage
            .find_one(doc! {"_id": key(user_id, month)})
            .await
            .map_err(backend("usage"))?;
        let Some(mut document) = found else {
            return Ok(UsageTotals::default());
        };
        for field in ["_id", "user_id", "month"] {
            document.remove(field);
        }
        bson::from_document(document).map_err(backend("usage"))
    }
}
