//! The status message a user sees while code runs: posted when the first run starts,
//! edited as runs finish ("done in 1.2 s", "timed out", "failed").

use std::sync::Arc;

use serenity::all::{ChannelId, CreateMessage, EditMessage, Http, MessageId};
use tokio::sync::Mutex;

use crate::llm::conversation::Progress;
use crate::sandbox::Status;
use crate::user_runs::UserRunResult;

/// Where the status message is, shared with /stop so it can say "cancelled".
pub type StatusSlot = Arc<Mutex<Option<(ChannelId, MessageId)>>>;

pub struct DiscordProgress {
    pub http: Arc<Http>,
    pub channel: ChannelId,
    pub slot: StatusSlot,
}

/// Pure: the status line for a finished run.
pub fn status_line(result: Result<&UserRunResult, &str>) -> String {
    match result {
        Err(reason) => format!("❌ could not run the code: {reason}"),
        Ok(run) => {
            let r = &run.result;
            let secs = r.execution_ms / 1000.0;
            match r.status {
                Status::Ok => format!("✅ done in {secs:.1} s"),
                Status::Error => format!(
                    "⚠️ failed after {secs:.1} s: {}",
                    r.error.as_ref().map(|e| e.kind.as_str()).unwrap_or("error")
                ),
                Status::Timeout => format!("⏱️ timed out after {secs:.0} s"),
                Status::Oom => "💥 ran out of memory".to_string(),
                Status::Killed => "🛑 killed".to_string(),
                Status::Refused => format!(
                    "🚫 not run: {}",
                    r.error
                        .as_ref()
                        .map(|e| e.message.as_str())
                        .unwrap_or("refused")
                ),
                Status::InstallFailed => "📦 not run: a package could not be installed".to_string(),
            }
        }
    }
}

impl DiscordProgress {
    async fn show(&self, text: String) {
        let mut slot = self.slot.lock().await;
        match *slot {
            Some((channel, message)) => {
                if let Err(err) = channel
                    .edit_message(&self.http, message, EditMessage::new().content(text))
                    .await
                {
                    tracing::warn!(error = %err, "cannot edit the status message");
                }
            }
            None => match self
                .channel
                .send_message(&self.http, CreateMessage::new().content(text))
                .await
            {
                Ok(message) => *slot = Some((self.channel, message.id)),
                Err(err) => tracing::warn!(error = %err, "cannot post the status message"),
            },
        }
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
