//! Settings of a chat turn: the OpenAI-compatible model, the tool loop, history, admission.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::pricing::{Price, default_prices};
use super::{ConfigError, Secret, invalid, is_positive};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatSettings {
    /// OpenAI-compatible API key (secret).
    pub openai_api_key: Option<Secret>,
    pub openai_base_url: String,
    pub openai_model: String,
    /// Seconds one model request may take; each retry gets its own.
    pub openai_timeout: f64,
    /// Extra attempts after a 429, a 5xx, a timeout or a connection error.
    pub openai_retries: u32,
    /// Milliseconds before the first retry (doubled each time).
    pub openai_retry_delay_ms: u64,
    /// Code runs the model may make for one message.
    pub max_tool_rounds: usize,
    /// Tokens of history sent to the model (older whole turns are dropped).
    pub history_token_budget: usize,
    /// Messages a user may send per minute.
    pub rate_limit_per_minute: u32,
    /// Messages waiting for a free slot across all users; more get a "busy" reply.
    pub max_queued_messages: usize,
    /// Prices per model in dollars per 1M tokens (TOML `[pricing."model"]` tables).
    pub pricing: BTreeMap<String, Price>,
    /// Whether the model gets pictures: `auto` asks the model table, `on`/`off` decide.
    pub model_vision: VisionMode,
    /// Attached pictures larger than this (or over 2048 px a side) are downscaled first.
    pub vision_max_image_mb: f64,
    /// Pictures in one model request, newest first; older ones are named in text.
    pub vision_max_images: usize,
    /// Pictures a run drew that the model sees after it, per round.
    pub vision_max_figures: usize,
    /// Tokens of a document's text the model gets with the file's summary.
    pub document_context_tokens: usize,
    /// What is known of each model (TOML `[models."name"]` tables, longest prefix wins).
    pub models: BTreeMap<String, ModelEntry>,
}

/// `MODEL_VISION`: `auto` (the model table), or always `on` / `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VisionMode {
    Auto,
    On,
    Off,
}

/// One row of the model table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelEntry {
    /// Whether the model takes pictures; unset asks the built-in name patterns.
    pub vision: Option<bool>,
}

impl Default for ChatSettings {
    fn default() -> Self {
        ChatSettings {
            openai_api_key: None,
            openai_base_url: "https://api.openai.com/v1".to_string(),
            openai_model: "gpt-4o-mini".to_string(),
            openai_timeout: 120.0,
            openai_retries: 2,
            openai_retry_delay_ms: 1000,
            max_tool_rounds: 5,
            history_token_budget: 12_000,
            rate_limit_per_minute: 10,
            max_queued_messages: 20,
            pricing: default_prices(),
            model_vision: VisionMode::Auto,
            vision_max_image_mb: 5.0,
            vision_max_images: 8,
            vision_max_figures: 4,
            document_context_tokens: 4000,
            models: BTreeMap::new(),
        }
    }
}

impl ChatSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_positive(self.openai_timeout) || self.openai_timeout > 86400.0 {
            return invalid(
                "OPENAI_TIMEOUT",
                "must be a positive number of seconds, at most 86400",
            );
        }
        if self.openai_retries > 20 {
            return invalid("OPENAI_RETRIES", "must be at most 20");
        }
        if self.openai_retry_delay_ms > 600_000 {
            return invalid("OPENAI_RETRY_DELAY_MS", "must be at most 600000");
        }
        if self.max_tool_rounds == 0 || self.max_tool_rounds > 100 {
            return invalid("MAX_TOOL_ROUNDS", "must be between 1 and 100");
        }
        if self.rate_limit_per_minute == 0 {
            return invalid("RATE_LIMIT_PER_MINUTE", "must be at least 1");
        }
        if !is_positive(self.vision_max_image_mb) || self.vision_max_image_mb > 50.0 {
            return invalid(
                "VISION_MAX_IMAGE_MB",
                "must be a positive number of megabytes, at most 50",
            );
        }
        if self.vision_max_images > 100 {
            return invalid("VISION_MAX_IMAGES", "must be at most 100");
        }
        if self.vision_max_figures > 20 {
            return invalid("VISION_MAX_FIGURES", "must be at most 20");
        }
        if self.document_context_tokens > 100_000 {
            return invalid("DOCUMENT_CONTEXT_TOKENS", "must be at most 100000");
        }
        if self.history_token_budget < 500 {
            return invalid("HISTORY_TOKEN_BUDGET", "must be at least 500");
        }
        Ok(())
    }
}
