//! A run shown as it happens: each run gets a watch whose events (the code's output, a
//! package install) keep the status message current, within its edit spacing.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::status::{EDIT_SPACING, StatusMessage};
use tokio_util::sync::CancellationToken;

use crate::app::{App, Progress, RunWatch, Subscription, UserRunResult, watch};
use crate::llm::conversation::ModelWait;
use crate::render::live::{OutputTail, running_status, thinking_status, thought_status};
use crate::render::status_line;

/// Events held for a status that is behind (it drops, never slows the run, when full).
const WATCH_CAPACITY: usize = 64;
/// Without new output, the elapsed time is refreshed this often.
const ELAPSED_REFRESH: Duration = Duration::from_secs(5);

pub struct DiscordProgress {
    pub status: Arc<StatusMessage>,
    /// Redacts what the code printed before it is shown.
    pub app: Arc<App>,
    /// Where a streamed answer is shown as it is written.
    pub answer: Arc<super::streamed::StreamedReply>,
    /// The "thinking" display of the request in flight: an answer being written ends it.
    pub thinking: std::sync::Mutex<Option<CancellationToken>>,
}

impl DiscordProgress {
    pub fn new(
        status: Arc<StatusMessage>,
        app: Arc<App>,
        answer: Arc<super::streamed::StreamedReply>,
    ) -> DiscordProgress {
        DiscordProgress {
            status,
            app,
            answer,
            thinking: std::sync::Mutex::new(None),
        }
    }
}

/// Shows that run `round` starts and follows it; the returned watch is the run's.
pub fn follow_run(status: &Arc<StatusMessage>, round: usize, app: Arc<App>) -> RunWatch {
    let started = Instant::now();
    let run = status.run_started(running_status(
        round,
        Duration::ZERO,
        &OutputTail::default(),
    ));
    let (watch, subscription) = watch(WATCH_CAPACITY);
    tokio::spawn(show_live(
        status.clone(),
        run,
        round,
        started,
        subscription,
        app,
    ));
    watch
}

/// Keeps the status current until the run's watch is dropped (the run ended).
async fn show_live(
    status: Arc<StatusMessage>,
    run: u64,
    round: usize,
    started: Instant,
    mut subscription: Subscription,
    app: Arc<App>,
) {
    let mut tail = OutputTail::default();
    let mut next_show = Instant::now() + EDIT_SPACING;
    let mut last_shown = Instant::now();
    loop {
        tokio::select! {
            watched = subscription.recv() => match watched {
                Some(watched) => tail.apply(&watched),
                None => return,
            },
            _ = tokio::time::sleep_until(next_show) => {
                if tail.take_changed() || last_shown.elapsed() >= ELAPSED_REFRESH {
                    // Redacted whole, so a secret split across two events is still caught.
                    let text = app.redact(&running_status(round, started.elapsed(), &tail));
                    status.show_live(run, text);
                    last_shown = Instant::now();
                }
                next_show = Instant::now() + EDIT_SPACING;
            }
        }
    }
}

/// A model that answers within this long is never shown thinking (no message for it).
const THINKING_SHOWN_AFTER: Duration = Duration::from_secs(3);

/// Shows the model thinking, with the elapsed time, until `done` is cancelled.
async fn show_thinking(status: Arc<StatusMessage>, round: usize, done: CancellationToken) {
    let started = Instant::now();
    tokio::select! {
        () = done.cancelled() => return,
        () = tokio::time::sleep(THINKING_SHOWN_AFTER) => {}
    }
    loop {
        status.waiting(thinking_status(round, started.elapsed()));
        tokio::select! {
            () = done.cancelled() => break,
            () = tokio::time::sleep(ELAPSED_REFRESH) => {}
        }
    }
    status.waited(thought_status(started.elapsed()));
}

impl Progress for DiscordProgress {
    async fn run_started(&self, round: usize) -> Option<RunWatch> {
        Some(follow_run(&self.status, round, self.app.clone()))
    }

    fn model_waiting(&self, round: usize) -> Option<ModelWait> {
        let done = CancellationToken::new();
        tokio::spawn(show_thinking(self.status.clone(), round, done.clone()));
        if let Ok(mut thinking) = self.thinking.lock() {
            *thinking = Some(done.clone());
        }
        Some(done.drop_guard())
    }

    async fn run_finished(&self, result: Result<&UserRunResult, &str>) {
        self.status.run_ended(status_line(result));
    }

    fn answer_text(&self, text: &str) {
        let shown = crate::llm::tool_result::redact_growing(text, self.app.secrets());
        if !shown.trim().is_empty() {
            // The answer shows the model at work: no "thinking" message beside it.
            if let Some(thinking) = self.thinking.lock().ok().and_then(|mut t| t.take()) {
                thinking.cancel();
            }
            self.answer.show(shown);
        }
    }
}
