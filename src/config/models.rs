//! The model table's shape and its defaults, which settings start from: what is known of
//! each model (prices, context, vision, tools, where it is served). The cost of a response
//! is computed in `llm::pricing`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Secret;

/// US dollars per one million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub input: f64,
    pub cached_input: f64,
    pub output: f64,
}

/// One row of the model table (TOML `[models."name"]`); a name matches the longest key it
/// starts with, so `gpt-4o` also prices `gpt-4o-2024-08-06`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelEntry {
    /// Dollars per 1M input tokens; a model without `input` and `output` has no price.
    pub input: Option<f64>,
    /// Dollars per 1M input tokens served from the provider's cache (default: `input`).
    pub cached_input: Option<f64>,
    pub output: Option<f64>,
    /// Tokens the model takes in one request.
    pub context_window: Option<u64>,
    /// Whether the model takes pictures; unset asks the built-in name patterns.
    pub vision: Option<bool>,
    /// Whether the model calls tools (default yes); without, it cannot run code.
    pub tools: Option<bool>,
    /// Whether answers are streamed as they are written (default OPENAI_STREAM).
    pub stream: Option<bool>,
    /// Another OpenAI-compatible server for this model (default OPENAI_BASE_URL).
    pub base_url: Option<String>,
    /// The environment variable holding that server's key (default OPENAI_API_KEY).
    pub api_key_env: Option<String>,
    /// The key `api_key_env` named, read when settings load.
    #[serde(skip)]
    pub api_key: Option<Secret>,
}

impl ModelEntry {
    pub fn price(&self) -> Option<Price> {
        let (input, output) = (self.input?, self.output?);
        Some(Price {
            input,
            cached_input: self.cached_input.unwrap_or(input),
            output,
        })
    }
}

/// The longest key of `table` that `model` is or starts with (`key` or `key-...`), among
/// the rows `wanted` accepts.
pub fn longest_match<'a>(
    table: &'a BTreeMap<String, ModelEntry>,
    model: &str,
    wanted: impl Fn(&ModelEntry) -> bool,
) -> Option<&'a ModelEntry> {
    table
        .iter()
        .filter(|(key, entry)| {
            (model == key.as_str() || model.starts_with(key.as_str())) && wanted(entry)
        })
        .max_by_key(|(key, _)| key.len())
        .map(|(_, entry)| entry)
}

/// The default table: OpenAI's public prices; operators override or extend it with
/// `[models."name"]` in codebox.toml.
pub fn default_models() -> BTreeMap<String, ModelEntry> {
    [
        ("gpt-4o", 2.50, 1.25, 10.00, 128_000),
        ("gpt-4o-mini", 0.15, 0.075, 0.60, 128_000),
        ("gpt-4.1", 2.00, 0.50, 8.00, 1_047_576),
        ("gpt-4.1-mini", 0.40, 0.10, 1.60, 1_047_576),
        ("gpt-4.1-nano", 0.10, 0.025, 0.40, 1_047_576),
        ("o3-mini", 1.10, 0.55, 4.40, 200_000),
    ]
    .into_iter()
    .map(|(model, input, cached_input, output, context)| {
        (
            model.to_string(),
            ModelEntry {
                input: Some(input),
                cached_input: Some(cached_input),
                output: Some(output),
                context_window: Some(context),
                ..ModelEntry::default()
            },
        )
    })
    .collect()
}
