//! The status message a user sees while code runs: posted when the first run starts,
//! edited as runs finish ("done in 1.2 s", "timed out", "failed").

use std::sync::Arc;

use serenity::all::{ChannelId, CreateMessage, EditMessage, Http, MessageId};
use tokio::sync::Mutex;

use super::reply::no_mentions;
use crate::app::{Progress, UserRunResult};
use crate::render::status_line;

/// Where the status message is, shared with /stop so it can say "cancelled".
pub type StatusSlot = Arc<Mutex<Option<(ChannelId, MessageId)>>>;

pub struct DiscordProgress {
    pub http: Arc<Http>,
    pub channel: ChannelId,
    pub slot: StatusSlot,
}

impl DiscordProgress {
    async fn show(&self, text: String) {
        let mut slot = self.slot.lock().await;
        match *slot {
            Some((channel, message)) => {
                if let Err(err) = channel
                    .edit_message(
                        &self.http,
                        message,
                        EditMessage::new()
                            .content(text)
                            .allowed_mentions(no_mentions()),
                    )
                    .await
                {
                    tracing::warn!(error = %err, "cannot edit the status message");
                }
            }
            None => match self
                .channel
                .send_message(
                    &self.http,
                    CreateMessage::new()
                        .content(text)
                        .allowed_mentions(no_mentions()),
                )
                .await
            {
                Ok(message) => *slot = Some((self.channel, message.id)),
                Err(err) => tracing::warn!(error = %err, "cannot post the status message"),
            },
        }
    }
}

/// Edits a status message to say the run was cancelled.
pub async fn show_cancelled(http: &Http, slot: &StatusSlot) {
    if let Some((channel, message)) = *slot.lock().await {
        let _ = channel
            .edit_message(
                http,
                message,
                EditMessage::new()
                    .content("🛑 cancelled")
                    .allowed_mentions(no_mentions()),
            )
            .await;
    }
}

impl Progress for DiscordProgress {
    async fn run_started(&self, round: usize) {
        let text = if round <= 1 {
            "⏳ running code…".to_string()
        } else {
            format!("⏳ running code (step {round})…")
        };
        self.show(text).await;
    }

    async fn run_finished(&self, result: Result<&UserRunResult, &str>) {
        self.show(status_line(result)).await;
    }
}
