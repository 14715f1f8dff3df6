//! The status message of a user's work: posted when the first run starts, edited while code
//! runs (elapsed time, last lines of output) and once more to say how it ended. Every edit
//! of one message is at least EDIT_SPACING after the last (Discord allows 5 edits per 5 s
//! per channel), and a 429 is waited out, never a failure.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serenity::all::{
    ButtonStyle, ChannelId, CreateActionRow, CreateButton, CreateMessage, EditMessage, Http,
    MessageId, UserId,
};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::buttons::Button;
use super::reply::no_mentions;

/// The least time between two edits of one status message.
pub const EDIT_SPACING: Duration = Duration::from_millis(1500);
/// How long a 429 is waited out when Discord does not say (serenity with its own rate
/// limiter off, as against a proxy, does not pass `retry_after` on).
const RATE_LIMITED_WAIT: Duration = Duration::from_secs(2);
/// Attempts of one edit that keeps being rate limited.
const ATTEMPTS: usize = 4;

pub struct StatusMessage {
    http: Arc<Http>,
    channel: ChannelId,
    /// Who started the work: the only one its Stop button answers.
    owner: UserId,
    /// Set once posted; read without waiting for an edit in progress (a Stop press).
    posted: OnceLock<MessageId>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    message: Option<MessageId>,
    last_edit: Option<Instant>,
    /// The run whose live output may still be shown; None after its end was shown.
    live_run: Option<u64>,
    runs: u64,
    /// The work ended (finished or cancelled): nothing may change the message any more.
    closed: bool,
}

impl StatusMessage {
    pub fn new(http: Arc<Http>, channel: ChannelId, owner: UserId) -> StatusMessage {
        StatusMessage {
            http,
            channel,
            owner,
            posted: OnceLock::new(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The posted message, once there is one (a Stop press names it).
    pub fn message_id(&self) -> Option<MessageId> {
        self.posted.get().copied()
    }

    /// A new run starts: its text is shown with a Stop button; returns the run's number for
    /// `show_live`.
    pub async fn run_started(&self, text: String) -> u64 {
        let mut inner = self.inner.lock().await;
        inner.runs += 1;
        let run = inner.runs;
        inner.live_run = Some(run);
        self.show(&mut inner, text, true).await;
        run
    }

    /// Live text of run `run`: shown only while that run is still the live one.
    pub async fn show_live(&self, run: u64, text: String) {
        let mut inner = self.inner.lock().await;
        if inner.live_run == Some(run) && !inner.closed {
            self.show(&mut inner, text, true).await;
        }
    }

    /// How a run ended; later live text of it is not shown, and the Stop button goes.
    pub async fn run_ended(&self, text: String) {
        let mut inner = self.inner.lock().await;
        inner.live_run = None;
        if !inner.closed {
            self.show(&mut inner, text, false).await;
        }
    }

    /// The last word: nothing changes the message afterwards (a cancelled turn).
    pub async fn close(&self, text: String) {
        let mut inner = self.inner.lock().await;
        inner.live_run = None;
        if inner.closed || inner.message.is_none() {
            inner.closed = true;
            return;
        }
        self.show(&mut inner, text, false).await;
        inner.closed = true;
    }

    fn components(&self, with_stop: bool) -> Vec<CreateActionRow> {
        if !with_stop {
            return Vec::new();
        }
        let stop = Button::Stop { owner: self.owner };
        vec![CreateActionRow::Buttons(vec![
            CreateButton::new(stop.custom_id())
                .style(ButtonStyle::Danger)
                .label("Stop"),
        ])]
    }

    async fn show(&self, inner: &mut Inner, text: String, with_stop: bool) {
        for _ in 0..ATTEMPTS {
            let sent = match inner.message {
                Some(message) => {
                    if let Some(last) = inner.last_edit {
                        tokio::time::sleep_until(last + EDIT_SPACING).await;
                    }
                    self.channel
                        .edit_message(
                            &self.http,
                            message,
                            EditMessage::new()
                                .content(text.clone())
                                .components(self.components(with_stop))
                                .allowed_mentions(no_mentions()),
                        )
                        .await
                        .map(|_| ())
                }
                None => self
                    .channel
                    .send_message(
                        &self.http,
                        CreateMessage::new()
                            .content(text.clone())
                            .components(self.components(with_stop))
                            .allowed_mentions(no_mentions()),
                    )
                    .await
                    .map(|message| {
                        inner.message = Some(message.id);
                        let _ = self.posted.set(message.id);
                    }),
            };
            inner.last_edit = Some(Instant::now());
            match sent {
                Ok(()) => return,
                Err(err) if is_rate_limited(&err) => {
                    tracing::debug!("status message rate limited; waiting");
                    tokio::time::sleep(RATE_LIMITED_WAIT).await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot show the status message");
                    if inner.message.is_none() {
                        // Not allowed to post here (a 403): every later try would fail
                        // the same way and count against Discord's invalid-request limit.
                        inner.closed = true;
                    }
                    return;
                }
            }
        }
        tracing::warn!("status message still rate limited; this update is skipped");
    }
}

fn is_rate_limited(err: &serenity::Error) -> bool {
    matches!(
        err,
        serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(response))
            if response.status_code.as_u16() == 429
    )
}
