//! Conversation history per user and channel, and monthly usage per user, behind one small
//! trait with the same two adapters as the file store: MongoDB, or embedded SQLite.

pub mod guild;
pub mod mongo;
pub mod sqlite;

use std::collections::BTreeMap;
use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::config::StoreSettings;
use crate::llm::history::ChatMessage;
use crate::store::MetadataError;

pub use crate::llm::conversation::RanCode;
pub use guild::{AccessRules, GuildSettings, TurnCode, UserSettings};

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
    /// Tokens of requests to models without a price (they count against the token cap).
    #[serde(default)]
    pub unpriced_tokens: u64,
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
        self.unpriced_tokens += other.unpriced_tokens;
    }
}

/// The usage scope of a server's members together (user ids are numbers: no clash).
pub fn guild_scope(guild_id: &str) -> String {
    format!("guild:{guild_id}")
}

pub trait ConversationStore: Send + Sync {
    fn guild_settings(
        &self,
        guild_id: &str,
    ) -> impl Future<Output = Result<Option<GuildSettings>, MetadataError>> + Send;
    fn set_guild_settings(
        &self,
        guild_id: &str,
        settings: &GuildSettings,
    ) -> impl Future<Output = Result<(), MetadataError>> + Send;
    fn user_settings(
        &self,
        user_id: &str,
    ) -> impl Future<Output = Result<UserSettings, MetadataError>> + Send;
    fn set_user_settings(
        &self,
        user_id: &str,
        settings: &UserSettings,
    ) -> impl Future<Output = Result<(), MetadataError>> + Send;
    /// Keeps the code of a turn's runs for its Code button.
    fn save_turn_code(
        &self,
        turn_id: &str,
        code: &TurnCode,
    ) -> impl Future<Output = Result<(), MetadataError>> + Send;
    fn turn_code(
        &self,
        turn_id: &str,
    ) -> impl Future<Output = Result<Option<TurnCode>, MetadataError>> + Send;
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
    /// Clears one channel's history, or all of the user's (and the code of their turns)
    /// when `channel_id` is None.
    fn clear_history(
        &self,
        user_id: &str,
        channel_id: Option<&str>,
    ) -> impl Future<Output = Result<(), MetadataError>> + Send;
    /// Adds to a scope's (a user id, or `guild_scope`) month, in all and for `model`.
    fn add_usage(
        &self,
        scope: &str,
        month: &str,
        model: &str,
        delta: &UsageTotals,
    ) -> impl Future<Output = Result<(), MetadataError>> + Send;
    fn usage(
        &self,
        scope: &str,
        month: &str,
    ) -> impl Future<Output = Result<UsageTotals, MetadataError>> + Send;
    fn usage_by_model(
        &self,
        scope: &str,
        month: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, UsageTotals>, MetadataError>> + Send;
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
    async fn guild_settings(&self, guild_id: &str) -> Result<Option<GuildSettings>, MetadataError> {
        delegate!(self, c => c.guild_settings(guild_id))
    }
    async fn set_guild_settings(
        &self,
        guild_id: &str,
        settings: &GuildSettings,
    ) -> Result<(), MetadataError> {
        delegate!(self, c => c.set_guild_settings(guild_id, settings))
    }
    async fn user_settings(&self, user_id: &str) -> Result<UserSettings, MetadataError> {
        delegate!(self, c => c.user_settings(user_id))
    }
    async fn set_user_settings(
        &self,
        user_id: &str,
        settings: &UserSettings,
    ) -> Result<(), MetadataError> {
        delegate!(self, c => c.set_user_settings(user_id, settings))
    }
    async fn save_turn_code(&self, turn_id: &str, code: &TurnCode) -> Result<(), MetadataError> {
        delegate!(self, c => c.save_turn_code(turn_id, code))
    }
    async fn turn_code(&self, turn_id: &str) -> Result<Option<TurnCode>, MetadataError> {
        delegate!(self, c => c.turn_code(turn_id))
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
        scope: &str,
        month: &str,
        model: &str,
        delta: &UsageTotals,
    ) -> Result<(), MetadataError> {
        delegate!(self, c => c.add_usage(scope, month, model, delta))
    }
    async fn usage(&self, scope: &str, month: &str) -> Result<UsageTotals, MetadataError> {
        delegate!(self, c => c.usage(scope, month))
    }
    async fn usage_by_model(
        &self,
        scope: &str,
        month: &str,
    ) -> Result<BTreeMap<String, UsageTotals>, MetadataError> {
        delegate!(self, c => c.usage_by_model(scope, month))
    }
}
