//! The pricing table's shape and its defaults, which settings start from; the cost of a
//! response is computed in `llm::pricing`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// US dollars per one million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub input: f64,
    pub cached_input: f64,
    pub output: f64,
}

/// The default table; operators override or extend it with `[pricing]` in codebox.toml.
pub fn default_prices() -> BTreeMap<String, Price> {
    [
        ("gpt-4o", 2.50, 1.25, 10.00),
        ("gpt-4o-mini", 0.15, 0.075, 0.60),
        ("gpt-4.1", 2.00, 0.50, 8.00),
        ("gpt-4.1-mini", 0.40, 0.10, 1.60),
        ("gpt-4.1-nano", 0.10, 0.025, 0.40),
        ("o3-mini", 1.10, 0.55, 4.40),
    ]
    .into_iter()
    .map(|(model, input, cached_input, output)| {
        (
            model.to_string(),
            Price {
                input,
                cached_input,
                output,
            },
        )
    })
    .collect()
}
