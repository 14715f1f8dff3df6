//! A member's model requests, metered: each one is checked against the monthly caps before
//! it is sent (nothing is sent at a cap), and what it billed is recorded as soon as it is
//! answered, for the member and their server, in all and per model.

use std::sync::Arc;
use tracing::Instrument;

use super::App;
use super::budget::{Amount, Caps, ESTIMATED_OUTPUT_TOKENS, Estimate, Reservation, Spent};
use crate::conversations::{AnyConversations, ConversationStore, UsageTotals, guild_scope};
use crate::llm::client::{ChatModel, ModelError, ModelReply, OpenAiChat, TextSink};
use crate::llm::history::{ChatMessage, count_messages};
use crate::llm::pictures::{Pictures, tokens_of};
use crate::llm::pricing::{self, Price, Usage};
use crate::llm::tokens::{Encoding, count_text};

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

/// What a request that was not answered is billed when the provider may still have billed
/// it (cut short by /stop, timed out): its estimate.
fn estimated_bill(estimate: &Estimate) -> UsageTotals {
    UsageTotals {
        requests: 1,
        cost_usd: estimate.amount.usd,
        unpriced_requests: u64::from(!estimate.priced),
        unpriced_tokens: if estimate.priced {
            0
        } else {
            estimate.amount.tokens
        },
        ..UsageTotals::default()
    }
}

/// Where one request's usage goes: the member and their server, this month, this model.
#[derive(Clone)]
struct Ledger {
    conversations: AnyConversations,
    scopes: Vec<String>,
    month: String,
    model: String,
}

impl Ledger {
    async fn record(&self, delta: &UsageTotals) {
        for scope in &self.scopes {
            if let Err(err) = self
                .conversations
                .add_usage(scope, &self.month, &self.model, delta)
                .await
            {
                tracing::warn!(error = %err, "cannot record usage");
            }
        }
    }
}

/// A sent request's bill until it is recorded: dropped unrecorded (the turn was cut
/// short), it records the estimate, so a request stopped before its usage arrived is not
/// free.
struct PendingBill {
    ledger: Ledger,
    estimate: Option<UsageTotals>,
}

impl PendingBill {
    fn settled(&mut self) {
        self.estimate = None;
    }
}

impl Drop for PendingBill {
    fn drop(&mut self) {
        let Some(delta) = self.estimate.take() else {
            return;
        };
        let ledger = self.ledger.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { ledger.record(&delta).await });
        }
    }
}

fn not_checkable(err: impl std::fmt::Display) -> ModelError {
    tracing::warn!(error = %err, "cannot read this month's usage; the request is not sent");
    ModelError::NotSent {
        sentence: "⚠️ Your monthly budget cannot be checked right now (the bot's storage is not answering), so nothing was sent to the model. Please try again shortly.".into(),
    }
}

impl MeteredModel<'_> {
    fn ledger(&self, conversations: &AnyConversations, month: &str) -> Ledger {
        Ledger {
            conversations: conversations.clone(),
            scopes: std::iter::once(self.user_id.to_string())
                .chain(self.guild_id.map(guild_scope))
                .collect(),
            month: month.to_string(),
            model: self.model.clone(),
        }
    }

    fn prompt_tokens(&self, messages: &[ChatMessage], pictures: &Pictures) -> u64 {
        count_messages(self.encoding, messages) as u64 + tokens_of(pictures).values().sum::<u64>()
    }

    /// A reservation and the estimate when a cap is in force and the request fits;
    /// `NotSent` when it does not, or when what was spent cannot be read (a cap is never
    /// skipped).
    async fn admit(
        &self,
        conversations: &AnyConversations,
        month: &str,
        messages: &[ChatMessage],
        pictures: &Pictures,
    ) -> Result<Option<(Reservation, Estimate)>, ModelError> {
        if !self.caps.any() {
            return Ok(None);
        }
        let estimate = estimate(self.prompt_tokens(messages, pictures), self.price);
        let before = self.app.reservations.snapshot();
        let user = conversations
            .usage(self.user_id, month)
            .await
            .map_err(not_checkable)?;
        let server_scope = self.guild_id.map(guild_scope);
        let server = match &server_scope {
            Some(scope) if self.caps.server_usd.is_some() => conversations
                .usage(scope, month)
                .await
                .map_err(not_checkable)?,
            _ => UsageTotals::default(),
        };
        let billed = Spent {
            user: spent_of(&user),
            server: spent_of(&server),
        };
        self.app
            .reservations
            .admit(
                before,
                &self.caps,
                self.user_id,
                server_scope.as_deref(),
                billed,
                estimate,
                chrono::Utc::now().date_naive(),
            )
            .map(|reservation| Some((reservation, estimate)))
            .map_err(|over| {
                tracing::info!(cap = ?over.cap, "a request was refused at a monthly cap");
                ModelError::NotSent {
                    sentence: over.sentence(),
                }
            })
    }

    /// What an answered request bills: its reported usage, or, from a server that reported
    /// none (a stream without its usage chunk), the tokens counted here.
    fn bill_of(
        &self,
        reply: &ModelReply,
        messages: &[ChatMessage],
        pictures: &Pictures,
    ) -> UsageTotals {
        let mut usage = reply.usage;
        if usage == Usage::default() {
            let written: String = reply
                .content
                .iter()
                .cloned()
                .chain(reply.tool_calls.iter().map(|c| c.arguments.clone()))
                .collect();
            usage.prompt_tokens = self.prompt_tokens(messages, pictures);
            usage.completion_tokens = count_text(self.encoding, &written) as u64;
            tracing::warn!(model = %self.model, "the model server reported no usage; counted here");
        }
        billed(usage, self.price)
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
        // One month for the check and the record, even across midnight of the 31st.
        let month = month_of(chrono::Utc::now());
        let conversations = self.app.conversations().await.map_err(not_checkable)?;
        let admitted = self
            .admit(conversations, &month, messages, pictures)
            .instrument(tracing::info_span!("model.admit"))
            .await?;
        let ledger = self.ledger(conversations, &month);
        let mut pending = admitted.as_ref().map(|(_, estimate)| PendingBill {
            ledger: ledger.clone(),
            estimate: Some(estimated_bill(estimate)),
        });
        let reply = request
            .instrument(tracing::info_span!("model.request"))
            .await;
        match &reply {
            Ok(reply) => {
                ledger
                    .record(&self.bill_of(reply, messages, pictures))
                    .instrument(tracing::info_span!("model.record"))
                    .await
            }
            // The server may have done the work it did not deliver.
            Err(ModelError::Timeout { .. }) => {
                if let Some(delta) = pending.as_mut().and_then(|p| p.estimate.take()) {
                    ledger.record(&delta).await;
                }
            }
            Err(_) => {}
        }
        if let Some(pending) = pending.as_mut() {
            pending.settled();
        }
        // Released only once the usage is recorded: the next reading sees one or the other.
        drop(admitted);
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
