//! Settings of a chat turn: the OpenAI-compatible model, the tool loop, history, admission.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::models::{ModelEntry, default_models, longest_match};
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
    /// Models members may choose with /model, comma-separated (OPENAI_MODEL always is one).
    pub chat_models: String,
    /// Answers are streamed into the reply as they are written (per model: `stream`).
    pub openai_stream: bool,
    /// Monthly cap in dollars per user; unset: none.
    pub user_monthly_budget_usd: Option<f64>,
    /// Monthly cap in dollars per server (all its members); unset: none.
    pub server_monthly_budget_usd: Option<f64>,
    /// Monthly cap in tokens per user, for models without a price; unset: none.
    pub user_monthly_token_budget: Option<u64>,
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
    /// What is known of each model (TOML `[models."name"]` tables, longest prefix wins):
    /// prices, context window, vision, tools, its server.
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
            chat_models: String::new(),
            openai_stream: true,
            user_monthly_budget_usd: None,
            server_monthly_budget_usd: None,
            user_monthly_token_budget: None,
            model_vision: VisionMode::Auto,
            vision_max_image_mb: 5.0,
            vision_max_images: 8,
            vision_max_figures: 4,
            document_context_tokens: 4000,
            models: default_models(),
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
        for (setting, cap) in [
            ("USER_MONTHLY_BUDGET_USD", self.user_monthly_budget_usd),
            ("SERVER_MONTHLY_BUDGET_USD", self.server_monthly_budget_usd),
        ] {
            if cap.is_some_and(|c| !(c.is_finite() && c >= 0.0)) {
                return invalid(setting, "must be a number of dollars, 0 or more");
            }
        }
        for name in self.chat_model_names() {
            if name.len() > 100 || name.chars().any(|c| c.is_whitespace() || c == ':') {
                return invalid("CHAT_MODELS", "must be comma-separated model names");
            }
        }
        for (name, entry) in &self.models {
            let prices = [entry.input, entry.cached_input, entry.output];
            if prices
                .iter()
                .flatten()
                .any(|p| !(p.is_finite() && *p >= 0.0))
            {
                return invalid(
                    &format!("models.{name}"),
                    "prices must be dollars per 1M tokens, 0 or more",
                );
            }
            if entry.api_key_env.is_some() && entry.api_key.is_none() {
                return invalid(
                    &format!("models.{name}.api_key_env"),
                    "names an environment variable that is not set",
                );
            }
        }
        if self.history_token_budget < 500 {
            return invalid("HISTORY_TOKEN_BUDGET", "must be at least 500");
        }
        Ok(())
    }
}

impl ChatSettings {
    /// The models members may choose, OPENAI_MODEL first.
    pub fn chat_model_names(&self) -> Vec<String> {
        let mut names = vec![self.openai_model.clone()];
        for name in self.chat_models.split(',').map(str::trim) {
            if !name.is_empty() && !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
        names
    }

    /// The table's row for `model` (longest key it starts with), if any.
    pub fn model_entry(&self, model: &str) -> Option<&ModelEntry> {
        longest_match(&self.models, model, |_| true)
    }

    /// The price of `model`: the longest matching row that has one.
    pub fn price_of(&self, model: &str) -> Option<super::models::Price> {
        longest_match(&self.models, model, |e| e.price().is_some()).and_then(ModelEntry::price)
    }

    /// Whether `model` calls tools (the table's word; yes when it says nothing).
    pub fn model_has_tools(&self, model: &str) -> bool {
        longest_match(&self.models, model, |e| e.tools.is_some())
            .and_then(|e| e.tools)
            .unwrap_or(true)
    }

    /// Whether `model`'s answers are streamed.
    pub fn model_streams(&self, model: &str) -> bool {
        longest_match(&self.models, model, |e| e.stream.is_some())
            .and_then(|e| e.stream)
            .unwrap_or(self.openai_stream)
    }

    /// Where `model` is served and with which key, both from one row: the longest row
    /// with a `base_url` gives that server and its own key (`api_key_env`, or none: a
    /// server elsewhere never gets OPENAI_API_KEY); without one, OPENAI_BASE_URL and
    /// OPENAI_API_KEY. None when the default server has no key.
    pub fn model_server(&self, model: &str) -> Option<(String, Secret)> {
        match longest_match(&self.models, model, |e| e.base_url.is_some()) {
            Some(row) => Some((
                row.base_url.clone().unwrap_or_default(),
                row.api_key.clone().unwrap_or_else(|| Secret::new("")),
            )),
            None => Some((self.openai_base_url.clone(), self.openai_api_key.clone()?)),
        }
    }
}
