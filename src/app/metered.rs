//! A member's model requests, metered: each one is checked against the monthly caps before
//! it is sent (nothing is sent at a cap), and what it billed is recorded as soon as it is
//! answered, for the member and their server, in all and per model.

use std::sync::Arc;

use super::App;
use super::budget::{Amount, Caps, ESTIMATED_OUTPUT_TOKENS, Estimate, Reservation, Spent};
use crate::conversations::{ConversationStore, UsageTotals, guild_scope};
use crate::llm::client::{ChatModel, ModelError, ModelReply, OpenAiChat, TextSink};
use crate::llm::history::{ChatMessage, count_messages};
use crate::llm::pictures::{Pictures, tokens_of};
use crate::llm::pricing::{self, Price, Usage};
use crate::llm::tokens::Encoding;

pub struct MeteredModel<'a> {
    pub app: &'a App,
    pub client: Arc<OpenAiChat>,
    /// The model asked for: what its usage is recorded and priced under.
    pub model: String,
    pub user_id: &'a str,
    pub guild_id: Option<&'a str>,
    pub caps: Caps,
    pub price: Option<Price>,
    pub encoding: Encoding,
}

pub fn month_of(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%Y-%m").to_string()
}

/// Pure: what a request of `prompt_tokens` may bill at `price`.
pub fn estimate(prompt_tokens: u64, price: Option<Price>) -> Estimate {
    let usage = Usage {
        prompt_tokens,
        cached_tokens: 0,
        completion_tokens: ESTIMATED_OUTPUT_TOKENS,
    };
    Estimate {
        amount: Amount {
            usd: pricing::cost(price, usage).unwrap_or(0.0),
            tokens: usage.total(),
        },
        priced: price.is_some(),
    }
}

/// Pure: what one answered request adds to the month.
pub fn billed(usage: Usage, price: Option<Price>) -> UsageTotals {
    let cost = pricing::cost(price, usage);
    UsageTotals {
        requests: 1,
        prompt_tokens: usage.prompt_tokens,
        cached_tokens: usage.cached_tokens,
        completion_tokens: usage.completion_tokens,
        cost_usd: cost.unwrap_or(0.0),
        unpriced_requests: u64::from(cost.is_none()),
        unpriced_tokens: if cost.is_none() { usage.total() } else { 0 },
        ..UsageTotals::default()
    }
}

fn spent_of(totals: &UsageTotals) -> Amount {
    Amount {
        usd: totals.cost_usd,
        tokens: totals.unpriced_tokens,
    }
}

impl MeteredModel<'_> {
    fn server_scope(&self) -> Option<String> {
        self.guild_id.map(guild_scope)
    }

    /// A reservation when a cap is in force and the request fits; `NotSent` when it does
    /// not, or when what was spent cannot be read (a cap is never skipped).
    async fn admit(
        &self,
        messages: &[ChatMessage],
        pictures: &Pictures,
    ) -> Result<Option<Reservation>, ModelError> {
        if !self.caps.any() {
            return Ok(None);
        }
        let prompt = count_messages(self.encoding, messages) as u64
            + tokens_of(pictures).values().sum::<u64>();
        let estimate = estimate(prompt, self.price);
        let now = chrono::Utc::now();
        let month = month_of(now);
        let unreadable = |err: crate::store::MetadataError| {
            tracing::warn!(error = %err, "cannot read this month's usage; the request is not sent");
            ModelError::NotSent {
                sentence: "⚠️ Your monthly budget cannot be checked right now (the bot's storage is not answering), so nothing was sent to the model. Please try again shortly.".into(),
            }
        };
        let conversations = self.app.conversations().await.map_err(|err| {
            tracing::warn!(error = %err, "cannot open conversations");
            ModelError::NotSent {
                sentence: "⚠️ Your monthly budget cannot be checked right now, so nothing was sent to the model.".into(),
            }
        })?;
        let user = conversations
            .usage(self.user_id, &month)
            .await
            .map_err(unreadable)?;
        let server_scope = self.server_scope();
        let server = match &server_scope {
            Some(scope) if self.caps.server_usd.is_some() => conversations
                .usage(scope, &month)
                .await
                .map_err(unreadable)?,
            _ => UsageTotals::default(),
        };
        let billed = Spent {
            user: spent_of(&user),
            server: spent_of(&server),
        };
        self.app
            .reservations
            .admit(
                &self.caps,
                self.user_id,
                server_scope.as_deref(),
                billed,
                estimate,
                now.date_naive(),
            )
            .map(Some)
            .map_err(|over| {
                tracing::info!(cap = ?over.cap, "a request was refused at a monthly cap");
                ModelError::NotSent {
                    sentence: over.sentence(),
                }
            })
    }

    async fn record(&self, reply: &ModelReply) {
        let delta = billed(reply.usage, self.price);
        let month = month_of(chrono::Utc::now());
        let Ok(conversations) = self.app.conversations().await else {
            return;
        };
        let scopes = std::iter::once(self.user_id.to_string()).chain(self.server_scope());
        for scope in scopes {
            if let Err(err) = conversations
                .add_usage(&scope, &month, &self.model, &delta)
                .await
            {
                tracing::warn!(error = %err, "cannot record usage");
            }
        }
    }

    async fn metered<F>(
        &self,
        messages: &[ChatMessage],
        pictures: &Pictures,
        request: F,
    ) -> Result<ModelReply, ModelError>
    where
        F: std::future::Future<Output = Result<ModelReply, ModelError>>,
    {
        let reservation = self.admit(messages, pictures).await?;
        let reply = request.await;
        if let Ok(reply) = &reply {
            self.record(reply).await;
        }
        // Released only once the usage is recorded: the next reading sees one or the other.
        drop(reservation);
        reply
    }
}

impl ChatModel for MeteredModel<'_> {
    async fn complete(
        &self,
        messages: &[ChatMessage],
        pictures: &Pictures,
    ) -> Result<ModelReply, ModelError> {
        self.metered(messages, pictures, self.client.complete(messages, pictures))
            .await
    }

    async fn complete_streaming(
        &self,
        messages: &[ChatMessage],
        pictures: &Pictures,
        on_text: TextSink<'_>,
    ) -> Result<ModelReply, ModelError> {
        self.metered(
            messages,
            pictures,
            self.client.complete_streaming(messages, pictures, on_text),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_estimate_prices_the_prompt_and_a_full_answer() {
        let price = Some(Price {
            input: 1.0,
            cached_input: 0.5,
            output: 2.0,
        });
        let e = estimate(1_000, price);
        assert!(e.priced);
        assert!((e.amount.usd - (1_000.0 * 1.0 + 1_000.0 * 2.0) / 1e6).abs() < 1e-12);
        let unpriced = estimate(1_000, None);
        assert!(!unpriced.priced && unpriced.amount.tokens == 2_000);
        let usage = Usage {
            prompt_tokens: 10,
            cached_tokens: 0,
            completion_tokens: 5,
        };
        assert_eq!(billed(usage, None).unpriced_tokens, 15);
        assert_eq!(billed(usage, price).unpriced_tokens, 0);
    }
}
