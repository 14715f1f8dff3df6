//! The status message of a user's work: posted once a run has lasted STATUS_AFTER_MS (a
//! quick answer is one message, not two) or the model has been thinking a while, edited
//! while code runs (elapsed time, last lines of output) and once more to say how it ended.
//! Posting it never delays the run or the answer: a task of its own does it. Every edit
//! of one message is at least EDIT_SPACING after the last (Discord allows 5 edits per 5 s
//! per channel), and a 429 is waited out, never a failure.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serenity::all::{
    ButtonStyle, ChannelId, CreateActionRow, CreateButton, CreateMessage, EditMessage, Http,
    MessageId, UserId,
};
use tokio::sync::watch;
use tokio::time::Instant;

use super::buttons::Button;
use super::rate_limit::{ATTEMPTS, RATE_LIMITED_WAIT, is_rate_limited};
use super::reply::no_mentions;

/// The least time between two edits of one status message.
pub const EDIT_SPACING: Duration = Duration::from_millis(1500);

/// The status message of one piece of work. Updates only say what should be shown; a
/// task of its own shows the latest of them, so neither the code nor the answer ever
/// waits for an edit's turn, and texts overtaken while waiting are never sent.
pub struct StatusMessage {
    /// Set once posted; read without waiting for an edit in progress (a Stop press).
    posted: Arc<OnceLock<MessageId>>,
    wanted: watch::Sender<Wanted>,
}

#[derive(Debug, Clone, Default)]
struct Wanted {
    /// None until the first run starts: nothing to show.
    text: Option<String>,
    with_stop: bool,
    /// The run whose live output may still be shown; None after its end was shown.
    live_run: Option<u64>,
    /// When the live run started: it is worth a message once it has lasted `post_after`.
    live_since: Option<Instant>,
    runs: u64,
    /// What is shown is the model thinking (`waiting`), which `waited` may replace.
    waiting: bool,
    /// The work ended (finished or cancelled): nothing may change the message any more.
    closed: bool,
}

/// Where the worker shows the status, and whose Stop button it carries.
struct Target {
    http: Arc<Http>,
    channel: ChannelId,
    /// Who started the work: the only one its Stop button answers.
    owner: UserId,
    posted: Arc<OnceLock<MessageId>>,
}

impl StatusMessage {
    /// Must be called within the bot's runtime: it starts the task that shows the status,
    /// which ends once the work closed or this value is dropped and the last text shown.
    pub fn new(
        http: Arc<Http>,
        channel: ChannelId,
        owner: UserId,
        post_after: Duration,
    ) -> StatusMessage {
        let posted = Arc::new(OnceLock::new());
        let (wanted, seen) = watch::channel(Wanted::default());
        let target = Target {
            http,
            channel,
            owner,
            posted: posted.clone(),
        };
        tokio::spawn(keep_shown(target, seen, post_after));
        StatusMessage { posted, wanted }
    }

    /// The posted message, once there is one (a Stop press names it).
    pub fn message_id(&self) -> Option<MessageId> {
        self.posted.get().copied()
    }

    /// A new run starts: its text is shown with a Stop button; returns the run's number for
    /// `show_live`.
    pub fn run_started(&self, text: String) -> u64 {
        let mut run = 0;
        self.wanted.send_modify(|w| {
            w.runs += 1;
            run = w.runs;
            w.live_run = Some(run);
            w.live_since = Some(Instant::now());
            w.waiting = false;
            if !w.closed {
                w.text = Some(text);
                w.with_stop = true;
            }
        });
        run
    }

    /// The model is working and no run is: `text` says so, with a Stop button.
    pub fn waiting(&self, text: String) {
        self.wanted.send_if_modified(|w| {
            let shown = w.live_run.is_none() && !w.closed;
            if shown {
                w.text = Some(text);
                w.with_stop = true;
                w.waiting = true;
            }
            shown
        });
    }

    /// The model answered: replaces the `waiting` text, and nothing else.
    pub fn waited(&self, text: String) {
        self.wanted.send_if_modified(|w| {
            let shown = w.waiting && w.live_run.is_none() && !w.closed;
            if shown {
                w.text = Some(text);
                w.with_stop = false;
                w.waiting = false;
            }
            shown
        });
    }

    /// Live text of run `run`: shown only while that run is still the live one.
    pub fn show_live(&self, run: u64, text: String) {
        self.wanted.send_if_modified(|w| {
            let live = w.live_run == Some(run) && !w.closed;
            if live {
                w.text = Some(text);
                w.with_stop = true;
            }
            live
        });
    }

    /// How a run ended; later live text of it is not shown, and the Stop button goes.
    pub fn run_ended(&self, text: String) {
        self.wanted.send_modify(|w| {
            w.live_run = None;
            if !w.closed {
                w.text = Some(text);
                w.with_stop = false;
            }
        });
    }

    /// The last word: nothing changes the message afterwards (a cancelled turn). Nothing
    /// is posted for work that had shown nothing yet.
    pub fn close(&self, text: String) {
        self.wanted.send_modify(|w| {
            w.live_run = None;
            if !w.closed && w.text.is_some() {
                w.text = Some(text);
                w.with_stop = false;
            }
            w.closed = true;
        });
    }
}

/// Whether the work has become worth a message of its own.
enum Worth {
    Posting,
    /// Nothing to post now (the run ended before it was worth one): wait for more work.
    NotYet,
    /// The work is over (closed, or its status dropped) before anything was posted.
    Never,
}

/// Waits until what is wanted is a run that has lasted `post_after` (or the model thinking,
/// which waits on its own), following every change meanwhile.
async fn worth_posting(seen: &mut watch::Receiver<Wanted>, post_after: Duration) -> Worth {
    loop {
        let wanted = seen.borrow().clone();
        if wanted.closed {
            return Worth::Never;
        }
        if wanted.text.is_none() {
            return Worth::NotYet;
        }
        if post_after.is_zero() || wanted.waiting {
            return Worth::Posting;
        }
        let Some(since) = wanted.live_since.filter(|_| wanted.live_run.is_some()) else {
            return Worth::NotYet;
        };
        let deadline = since + post_after;
        if Instant::now() >= deadline {
            return Worth::Posting;
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {}
            changed = seen.changed() => {
                if changed.is_err() {
                    return Worth::Never;
                }
            }
        }
    }
}

/// Shows the latest wanted text, each edit at least EDIT_SPACING after the one before.
async fn keep_shown(target: Target, mut seen: watch::Receiver<Wanted>, post_after: Duration) {
    let mut message: Option<MessageId> = None;
    let mut last_sent: Option<Instant> = None;
    let mut skipped_in_a_row = 0;
    while seen.changed().await.is_ok() {
        if message.is_none() {
            match worth_posting(&mut seen, post_after).await {
                Worth::Posting => {}
                Worth::NotYet => continue,
                Worth::Never => return,
            }
        } else if let Some(last) = last_sent {
            // Updates arriving meanwhile are folded into the one shown next.
            tokio::time::sleep_until(last + EDIT_SPACING).await;
        }
        let wanted = seen.borrow_and_update().clone();
        let Some(text) = wanted.text else {
            if wanted.closed {
                return;
            }
            continue;
        };
        let shown = show(&target, &mut message, text, wanted.with_stop).await;
        last_sent = Some(Instant::now());
        match shown {
            Shown::Sent if wanted.closed => return,
            Shown::Sent => skipped_in_a_row = 0,
            Shown::Refused => return,
            // Shown again (the latest text by then), so that the work's last word is not
            // lost to a 429 and a status never stays "running" with a Stop button.
            Shown::Skipped => {
                skipped_in_a_row += 1;
                if skipped_in_a_row >= SKIPS_BEFORE_GIVING_UP {
                    tracing::warn!("the status message keeps failing; given up");
                    return;
                }
                seen.mark_changed();
            }
        }
    }
}

enum Shown {
    Sent,
    /// Still rate limited after every attempt, or a passing failure: the next try may
    /// fare better.
    Skipped,
    /// Not allowed to post here (403), or the message is gone (404): every later try would
    /// fail the same way and count against Discord's invalid-request limit.
    Refused,
}

fn is_refused(err: &serenity::Error) -> bool {
    matches!(
        err,
        serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(response))
            if matches!(response.status_code.as_u16(), 403 | 404)
    )
}

/// Failed showings in a row (each after ATTEMPTS tries) before the status is given up.
const SKIPS_BEFORE_GIVING_UP: usize = 5;

fn components(owner: UserId, with_stop: bool) -> Vec<CreateActionRow> {
    if !with_stop {
        return Vec::new();
    }
    let stop = Button::Stop { owner };
    vec![CreateActionRow::Buttons(vec![
        CreateButton::new(stop.custom_id())
            .style(ButtonStyle::Danger)
            .label("Stop"),
    ])]
}

async fn show(
    target: &Target,
    message: &mut Option<MessageId>,
    text: String,
    with_stop: bool,
) -> Shown {
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(RATE_LIMITED_WAIT).await;
        }
        let sent = match *message {
            Some(id) => target
                .channel
                .edit_message(
                    &target.http,
                    id,
                    EditMessage::new()
                        .content(text.clone())
                        .components(components(target.owner, with_stop))
                        .allowed_mentions(no_mentions()),
                )
                .await
                .map(|_| ()),
            None => target
                .channel
                .send_message(
                    &target.http,
                    CreateMessage::new()
                        .content(text.clone())
                        .components(components(target.owner, with_stop))
                        .allowed_mentions(no_mentions()),
                )
                .await
                .map(|posted| {
                    *message = Some(posted.id);
                    let _ = target.posted.set(posted.id);
                }),
        };
        match sent {
            Ok(()) => return Shown::Sent,
            Err(err) if is_rate_limited(&err) => {
                tracing::debug!("status message rate limited; waiting");
            }
            Err(err) if is_refused(&err) => {
                tracing::warn!(error = %err, "the status message may not be shown here");
                return Shown::Refused;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot show the status message");
                return Shown::Skipped;
            }
        }
    }
    tracing::warn!("status message still rate limited; this update is skipped");
    Shown::Skipped
}
