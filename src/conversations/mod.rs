//! Conversation history per user and channel, and monthly usage per user, behind one small
//! trait with the same two adapters as the file store: MongoDB, or embedded SQLite.

pub mod mongo;
pub mod sqlite;

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::config::StoreSettings;
use crate::llm::history::ChatMessage;
use crate::store::MetadataError;

/// One user's usage over a month.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageTotals {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub completion_tokens: u64,
    /// Part of `prompt_tokens` that pictures took, as counted before sending.
    #[serde(default)]
    pub image_tokens: u64,
    /// Dollars for the requests whose model has a price.
    pub cost_usd: f64,
    /// Requests to models without a price: their cost is unknown, not zero.
    pub unpriced_requests: u64,
    pub runs: u64,
    pub cpu_seconds: f64,
}

impl UsageTotals {
    pub fn add(&mut self, other: &UsageTotals) {
        self.requests += other.requests;
        self.prompt_tokens += other.prompt_tokens;
        self.cached_tokens += other.cached_tokens;
        self.completion_tokens += other.completion_tokens;
        self.image_tokens += other.image_tokens;
        self.cost_usd += other.cost_usd;
        self.unpriced_requests += other.unpriced_requests;
        self.runs += other.runs;
        self.cpu_seconds += other.cpu_seconds;
    }
}

/// Per-guild limits set by the guild's admins, always within the operator's maxima.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuildLimits {
    pub timeout_s: Option<f64>,
    pub memory_mb: Option<u64>,
}

pub trait ConversationStore: Send + Sync {
    fn guild_limits(
        &self,
        guild_id: &str,
    ) -> impl Future<Output = Result<Option<GuildLimits>, MetadataError>> + Send;
    fn set_guild_limits(
        &self,
        guild_id: &str,
        limits: &GuildLimits,
    ) -> impl Future<Output = Result<(), MetadataError>> + Send;
    fn history(
        &self,
        user_id: &str,
        channel_id: &str,
    ) -> impl Future<Output = Result<Vec<ChatMessage>, MetadataError>> + Send;
    fn save_history(
        &self,
        user_id: &str,
        channel_id: &str,
        messages: &[ChatMessage],
    ) -> impl Future<Output = Result<(), MetadataError>> + Send;
    /// Clears one channel's history, or all of the user's when `channel_id` is None.
    fn clear_history(
        &self,
        user_id: &str,
        channel_id: Option<&str>,
    ) -> impl Future<Output = Result<(), MetadataError>> + Send;
    fn add_usage(
        &self,
        user_id: &str,
        month: &str,
        delta: &UsageTotals,
    ) -> impl Future<Output = Result<(), MetadataError>> + Send;
    fn usage(
        &self,
        user_id: &str,
        month: &str,
    ) -> impl Future<Output = Result<UsageTotals, MetadataError>> + Send;
}

#[derive(Clone)]
pub enum AnyConversations {
    Mongo(mongo::MongoConversations),
    Sqlite(sqlite::SqliteConversations),
}

impl AnyConversations {
    pub async fn from_settings(
        settings: &StoreSettings,
        data_dir: &std::path::Path,
    ) -> Result<AnyConversations, MetadataError> {
        match &settings.mongodb_uri {
            Some(uri) => Ok(AnyConversations::Mongo(
                mongo::MongoConversations::connect(uri.expose(), &settings.mongodb_database)
                    .await?,
            )),
            None => Ok(AnyConversations::Sqlite(sqlite::SqliteConversations::open(
                &data_dir.join("codebox.sqlite3"),
            )?)),
        }
    }
}

macro_rules! delegate {
    ($self:ident, $c:ident => $call:expr) => {
        match $self {
            AnyConversations::Mongo($c) => $call.await,
            AnyConversations::Sqlite($c) => $call.await,
        }
    };
}

impl ConversationStore for AnyConversations {
    async fn guild_limits(&self, guild_id: &str) -> Result<Option<GuildLimits>, MetadataError> {
        delegate!(self, c => c.guild_limits(guild_id))
    }
    async fn set_guild_limits(
        &self,
        guild_id: &str,
        limits: &GuildLimits,
    ) -> Result<(), MetadataError> {
        delegate!(self, c => c.set_guild_limits(guild_id, limits))
    }
    async fn history(
        &self,
        user_id: &str,
        channel_id: &str,
    ) -> Result<Vec<ChatMessage>, MetadataError> {
        delegate!(self, c => c.history(user_id, channel_id))
    }
    async fn save_history(
        &self,
        user_id: &str,
        channel_id: &str,
        messages: &[ChatMessage],
    ) -> Result<(), MetadataError> {
        delegate!(self, c => c.save_history(user_id, channel_id, messages))
    }
    async fn clear_history(
        &self,
        user_id: &str,
        channel_id: Option<&str>,
    ) -> Result<(), MetadataError> {
        delegate!(self, c => c.clear_history(user_id, channel_id))
    }
    async fn add_usage(
        &self,
        user_id: &str,
        month: &str,
        delta: &UsageTotals,
    ) -> Result<(), MetadataError> {
        delegate!(self, c => c.add_usage(user_id, month, delta))
    }
    async fn usage(&self, user_id: &str, month: &str) -> Result<UsageTotals, MetadataError> {
        delegate!(self, c => c.usage(user_id, month))
    }
}
