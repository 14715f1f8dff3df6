//! Watching a run while it happens: the executor publishes what the code writes (and when
//! it starts, and which packages it waits for) to one subscriber over a bounded channel.
//! Publishing never waits: a subscriber that falls behind loses intermediate events, and
//! each event it does get says how many it missed just before it, so a slow consumer
//! (Discord's rate limits, a stalled terminal) can never slow the code down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

pub use super::protocol::OutputStream;

/// Something that happened in a run, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEvent {
    /// The code started (after the container started and its files were staged).
    Started,
    /// The code is stopped while these modules' packages are installed (outside its time).
    Installing { modules: Vec<String> },
    /// Text the code wrote.
    Output {
        stream: OutputStream,
        text: String,
        /// Characters written before `text` that the sandbox did not relay (a flood).
        skipped_chars: u64,
    },
}

/// One event as the subscriber receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub event: RunEvent,
    /// Events dropped just before this one because the subscriber was behind.
    pub missed_before: u64,
}

/// The executor's end: cheap to clone, never blocks.
#[derive(Clone)]
pub struct RunWatch {
    sender: mpsc::Sender<Watched>,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    /// Dropped since the last delivered event.
    unreported: AtomicU64,
    /// Dropped in all.
    missed: AtomicU64,
}

impl std::fmt::Debug for RunWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunWatch")
            .field("capacity", &self.sender.max_capacity())
            .field("missed", &self.counts.missed.load(Ordering::Relaxed))
            .finish()
    }
}

/// The subscriber's end.
pub struct Subscription {
    receiver: mpsc::Receiver<Watched>,
    counts: Arc<Counts>,
}

/// A watch for one run and its subscription; `capacity` events are held for a subscriber
/// that is behind (at least one).
pub fn watch(capacity: usize) -> (RunWatch, Subscription) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let counts = Arc::new(Counts::default());
    (
        RunWatch {
            sender,
            counts: counts.clone(),
        },
        Subscription { receiver, counts },
    )
}

impl RunWatch {
    /// Hands `event` to the subscriber if there is room, else counts it as missed.
    pub fn publish(&self, event: RunEvent) {
        let missed_before = self.counts.unreported.swap(0, Ordering::AcqRel);
        match self.sender.try_send(Watched {
            event,
            missed_before,
        }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counts
                    .unreported
                    .fetch_add(missed_before + 1, Ordering::AcqRel);
                self.counts.missed.fetch_add(1, Ordering::AcqRel);
            }
            // Nobody watches any more: nothing to count.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Whether the subscriber is gone (the run need not relay anything more).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

impl Subscription {
    /// The next event; None once the run has ended (every `RunWatch` is dropped).
    pub async fn recv(&mut self) -> Option<Watched> {
        self.receiver.recv().await
    }

    /// The next event, waiting on this thread (never call it on an async worker).
    pub fn blocking_recv(&mut self) -> Option<Watched> {
        self.receiver.blocking_recv()
    }

    /// Events this subscriber did not get because it was behind, in all so far.
    pub fn missed(&self) -> u64 {
        self.counts.missed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize) -> RunEvent {
        RunEvent::Output {
            stream: OutputStream::Stdout,
            text: format!("{n}\n"),
            skipped_chars: 0,
        }
    }

    #[tokio::test]
    async fn a_subscriber_that_keeps_up_gets_everything_in_order() {
        let (watch, mut subscription) = watch(4);
        for n in 0..3 {
            watch.publish(line(n));
        }
        drop(watch);
        let mut got = Vec::new();
        while let Some(watched) = subscription.recv().await {
            assert_eq!(watched.missed_before, 0);
            got.push(watched.event);
        }
        assert_eq!(got, (0..3).map(line).collect::<Vec<_>>());
        assert_eq!(subscription.missed(), 0);
    }

    #[tokio::test]
    async fn a_subscriber_behind_is_told_what_it_missed_and_never_blocks_the_publisher() {
        let (watch, mut subscription) = watch(2);
        for n in 0..10 {
            watch.publish(line(n));
        }
        assert_eq!(subscription.missed(), 8);
        assert_eq!(subscription.recv().await.map(|w| w.event), Some(line(0)));
        assert_eq!(subscription.recv().await.map(|w| w.event), Some(line(1)));
        watch.publish(line(10));
        let next = subscription.recv().await.unwrap();
        assert_eq!(next.event, line(10));
        assert_eq!(next.missed_before, 8, "events 2..=9 were dropped");
        watch.publish(line(11));
        assert_eq!(subscription.recv().await.unwrap().missed_before, 0);
    }

    #[test]
    fn publishing_to_a_gone_subscriber_is_harmless() {
        let (watch, subscription) = watch(1);
        drop(subscription);
        assert!(watch.is_closed());
        watch.publish(line(0));
    }
}
