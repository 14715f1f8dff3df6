//! An answer shown as the model writes it: the first message is posted with the first
//! text, then edited as more comes (each edit at least EDIT_SPACING after the last edit);
//! past 2000 characters the next part goes in a new message. The final answer then
//! replaces what was streamed, message for message (`deliver`).

use std::sync::Arc;

use serenity::all::{ChannelId, CreateMessage, EditMessage, Http, MessageId};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::rate_limit;
use super::reply::{MAX_MESSAGE_CHARS, MAX_TEXT_MESSAGES, no_mentions, split_keeping_fences};
use super::status::EDIT_SPACING;

pub struct StreamedReply {
    text: watch::Sender<String>,
    worker: std::sync::Mutex<Option<JoinHandle<Streamed>>>,
}

/// What the stream left in the channel: its messages, and when it last edited one.
#[derive(Debug, Default)]
pub struct Streamed {
    pub messages: Vec<MessageId>,
    pub last_edit: Option<Instant>,
}

impl StreamedReply {
    /// Must be called within the bot's runtime (it starts the task that shows the text).
    pub fn new(http: Arc<Http>, channel: ChannelId) -> StreamedReply {
        let (text, seen) = watch::channel(String::new());
        let worker = tokio::spawn(keep_shown(http, channel, seen));
        StreamedReply {
            text,
            worker: std::sync::Mutex::new(Some(worker)),
        }
    }

    /// The answer so far (already redacted); only the latest is shown.
    pub fn show(&self, text: String) {
        self.text.send_replace(text);
    }

    /// Stops streaming once what is being sent is sent; the messages it left.
    pub async fn finish(&self) -> Streamed {
        let worker = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(worker) = worker else {
            return Streamed::default();
        };
        // The worker ends after its current request, on this mark.
        self.text.send_replace(FINISHED_MARK.to_string());
        worker.await.unwrap_or_default()
    }
}

/// The worker ends when it sees this text (an answer is never exactly it).
const FINISHED_MARK: &str = "\u{0}codebox-stream-finished\u{0}";

async fn keep_shown(
    http: Arc<Http>,
    channel: ChannelId,
    mut seen: watch::Receiver<String>,
) -> Streamed {
    let mut streamed = Streamed::default();
    // What each posted message shows now.
    let mut shown: Vec<String> = Vec::new();
    while seen.changed().await.is_ok() {
        if let (Some(last), false) = (streamed.last_edit, streamed.messages.is_empty()) {
            // Text arriving meanwhile is folded into the next edit.
            tokio::time::sleep_until(last + EDIT_SPACING).await;
        }
        let text = seen.borrow_and_update().clone();
        if text == FINISHED_MARK {
            break;
        }
        let parts = split_keeping_fences(&text, MAX_MESSAGE_CHARS);
        // No more messages than an answer may take; the rest waits for the final answer.
        for (i, part) in parts.iter().enumerate().take(MAX_TEXT_MESSAGES) {
            if shown.get(i) == Some(part) {
                continue;
            }
            let sent = match streamed.messages.get(i) {
                Some(id) => {
                    if let Some(last) = streamed.last_edit {
                        tokio::time::sleep_until(last + EDIT_SPACING).await;
                    }
                    streamed.last_edit = Some(Instant::now());
                    channel
                        .edit_message(
                            &http,
                            *id,
                            EditMessage::new()
                                .content(part.clone())
                                .allowed_mentions(no_mentions()),
                        )
                        .await
                        .map(|_| None)
                }
                None => rate_limit::send_message(
                    &http,
                    channel,
                    CreateMessage::new()
                        .content(part.clone())
                        .allowed_mentions(no_mentions()),
                )
                .await
                .map(|m| Some(m.id)),
            };
            match sent {
                Ok(posted) => {
                    if let Some(id) = posted {
                        streamed.messages.push(id);
                        shown.push(part.clone());
                    } else {
                        shown[i] = part.clone();
                    }
                }
                // The final answer is delivered anyway; a part that failed only waits.
                Err(err) => {
                    tracing::debug!(error = %err, "cannot show the answer so far");
                    break;
                }
            }
        }
    }
    streamed
}
