//! Cost of a response from its billed usage and the model's price in the model table.
//! An unknown model has an unknown cost: never reported as zero.

use serde::{Deserialize, Serialize};

pub use crate::config::models::Price;

/// Billed usage as the API reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    /// Part of `prompt_tokens` served from the provider's cache.
    pub cached_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    pub fn add(&mut self, other: Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.cached_tokens += other.cached_tokens;
        self.completion_tokens += other.completion_tokens;
    }
}

/// Dollars, or None when the model is not priced.
pub fn cost(price: Option<Price>, usage: Usage) -> Option<f64> {
    let price = price?;
    let cached = usage.cached_tokens.min(usage.prompt_tokens);
    let fresh = usage.prompt_tokens - cached;
    Some(
        (fresh as f64 * price.input
            + cached as f64 * price.cached_input
            + usage.completion_tokens as f64 * price.output)
            / 1_000_000.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ChatSettings;

    #[test]
    fn cost_arithmetic() {
        let chat = ChatSettings::default();
        let usage = Usage {
            prompt_tokens: 1_000_000,
            cached_tokens: 200_000,
            completion_tokens: 500_000,
        };
        // 800k * 2.50 + 200k * 1.25 + 500k * 10.00, per million.
        let dollars = cost(chat.price_of("gpt-4o"), usage).unwrap();
        assert!((dollars - (2.0 + 0.25 + 5.0)).abs() < 1e-9, "{dollars}");
        let small = cost(
            chat.price_of("gpt-4o-mini"),
            Usage {
                prompt_tokens: 1000,
                cached_tokens: 0,
                completion_tokens: 100,
            },
        )
        .unwrap();
        assert!((small - (0.00015 + 0.00006)).abs() < 1e-12, "{small}");
    }

    #[test]
    fn dated_model_names_find_their_family_and_unknown_is_none() {
        let mut chat = ChatSettings::default();
        assert_eq!(chat.price_of("gpt-4o-2024-08-06").unwrap().input, 2.50);
        assert_eq!(chat.price_of("gpt-4o-mini-2024-07-18").unwrap().input, 0.15);
        assert_eq!(
            cost(chat.price_of("my-local-llama"), Usage::default()),
            None
        );
        // A row that only says the model sees does not hide its family's price.
        chat.models.insert(
            "gpt-4o-mini-vision-test".into(),
            crate::config::ModelEntry {
                vision: Some(true),
                ..Default::default()
            },
        );
        assert_eq!(
            chat.price_of("gpt-4o-mini-vision-test").unwrap().input,
            0.15
        );
    }
}
