//! Admission of a user's message: a per-user rate limit (sliding minute), one turn at a
//! time per user, and a bounded global queue whose position is told to the user.
//!
//! The queue place is taken inside `admit`, under the same lock that reads the count, so
//! a burst of messages gets positions 1, 2, 3... and the bound holds, whatever the caller
//! awaits between `admit` and `wait_turn`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Limiter {
    per_minute: usize,
    windows: Mutex<HashMap<String, VecDeque<Instant>>>,
    busy: Arc<Mutex<HashSet<String>>>,
    slots: Arc<Semaphore>,
    waiting: Arc<Mutex<usize>>,
    max_waiting: usize,
}

#[derive(Debug, PartialEq)]
pub enum Refusal {
    RateLimited { retry_after: Duration },
    AlreadyRunning,
    QueueFull,
}

/// A place in the queue: counted from `admit` until the slot is granted or the ticket is
/// dropped.
struct QueuePlace {
    waiting: Arc<Mutex<usize>>,
}

impl Drop for QueuePlace {
    fn drop(&mut self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        *waiting = waiting.saturating_sub(1);
    }
}

/// Held while the user's turn runs: releases the user and the slot when dropped.
pub struct Ticket {
    user: String,
    busy: Arc<Mutex<HashSet<String>>>,
    slot: Option<OwnedSemaphorePermit>,
    place: Option<QueuePlace>,
}

impl Ticket {
    /// Whether the ticket holds an execution slot (false while queued).
    pub fn has_slot(&self) -> bool {
        self.slot.is_some()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut busy) = self.busy.lock() {
            busy.remove(&self.user);
        }
    }
}

pub enum Admission {
    Now(Ticket),
    /// Wait for a slot with `Limiter::wait_turn`; `position` is the place in the queue
    /// (1 = next).
    Queued {
        position: usize,
        ticket: Ticket,
    },
}

impl Limiter {
    pub fn new(per_minute: u32, slots: usize, max_waiting: usize) -> Limiter {
        Limiter {
            per_minute: per_minute as usize,
            windows: Mutex::new(HashMap::new()),
            busy: Arc::new(Mutex::new(HashSet::new())),
            slots: Arc::new(Semaphore::new(slots.max(1))),
            waiting: Arc::new(Mutex::new(0)),
            max_waiting,
        }
    }

    pub fn admit(&self, user: &str, now: Instant) -> Result<Admission, Refusal> {
        {
            // A message refused (already running, queue full) does not count against the
            // rate: the user's next one after the turn ends is not "too fast" for it.
            let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
            let window = windows.entry(user.to_string()).or_default();
            while window
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
            {
                window.pop_front();
            }
            if window.len() >= self.per_minute {
                let oldest = window.front().copied().unwrap_or(now);
                return Err(Refusal::RateLimited {
                    retry_after: Duration::from_secs(60).saturating_sub(now.duration_since(oldest)),
                });
            }
            let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
            if !busy.insert(user.to_string()) {
                return Err(Refusal::AlreadyRunning);
            }
        }
        let mut ticket = Ticket {
            user: user.to_string(),
            busy: self.busy.clone(),
            slot: None,
            place: None,
        };
        // The count is held across the slot check: a slot released meanwhile is either seen
        // here or taken by a waiter already counted.
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if *waiting == 0
            && let Ok(slot) = self.slots.clone().try_acquire_owned()
        {
            ticket.slot = Some(slot);
            self.count_against_rate(user, now);
            return Ok(Admission::Now(ticket));
        }
        if *waiting >= self.max_waiting {
            // Dropping the ticket releases the user.
            return Err(Refusal::QueueFull);
        }
        self.count_against_rate(user, now);
        *waiting += 1;
        let position = *waiting;
        ticket.place = Some(QueuePlace {
            waiting: self.waiting.clone(),
        });
        Ok(Admission::Queued { position, ticket })
    }

    /// Only messages that are answered (now or in turn) count against the user's rate.
    fn count_against_rate(&self, user: &str, now: Instant) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows.entry(user.to_string()).or_default().push_back(now);
    }

    /// Waits for a slot for a queued ticket (tokio's semaphore is fair: first come, first
    /// served).
    pub async fn wait_turn(&self, mut ticket: Ticket) -> Ticket {
        if ticket.slot.is_none() {
            ticket.slot = self.slots.clone().acquire_owned().await.ok();
        }
        ticket.place = None;
        ticket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_per_user_per_minute() {
        let limiter = Limiter::new(2, 10, 10);
        let t0 = Instant::now();
        drop(limiter.admit("a", t0).ok().unwrap());
        drop(limiter.admit("a", t0).ok().unwrap());
        let refused = limiter.admit("a", t0 + Duration::from_secs(10));
        assert!(
            matches!(refused, Err(Refusal::RateLimited { retry_after }) if retry_after == Duration::from_secs(50))
        );
        assert!(
            limiter.admit("b", t0).is_ok(),
            "other users are not affected"
        );
        assert!(limiter.admit("a", t0 + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn one_turn_at_a_time_per_user() {
        let limiter = Limiter::new(10, 10, 10);
        let now = Instant::now();
        let first = limiter.admit("a", now).ok().unwrap();
        assert!(matches!(
            limiter.admit("a", now),
            Err(Refusal::AlreadyRunning)
        ));
        drop(first);
        assert!(limiter.admit("a", now).is_ok());
    }

    #[test]
    fn a_message_refused_as_already_running_does_not_count_against_the_rate() {
        let limiter = Limiter::new(2, 10, 10);
        let now = Instant::now();
        let first = limiter.admit("a", now).ok().unwrap();
        for _ in 0..5 {
            assert!(matches!(
                limiter.admit("a", now),
                Err(Refusal::AlreadyRunning)
            ));
        }
        drop(first);
        assert!(
            limiter.admit("a", now).is_ok(),
            "the second message of the minute is within the rate of 2"
        );
    }

    #[tokio::test]
    async fn queue_positions_and_bound() {
        let limiter = Arc::new(Limiter::new(10, 1, 1));
        let now = Instant::now();
        let running = limiter.admit("a", now).ok().unwrap();
        let Ok(Admission::Queued { position, ticket }) = limiter.admit("b", now) else {
            panic!("b should queue");
        };
        assert_eq!(position, 1);
        let waiter = {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.wait_turn(ticket).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(matches!(limiter.admit("c", now), Err(Refusal::QueueFull)));
        drop(running);
        let ticket = waiter.await.unwrap();
        assert!(ticket.has_slot());
    }

    /// A real burst from many threads at once: positions are distinct and the bound holds.
    #[test]
    fn a_burst_gets_distinct_positions_and_the_bound_holds() {
        let limiter = Arc::new(Limiter::new(100, 1, 5));
        let now = Instant::now();
        let running = limiter.admit("holder", now).ok().unwrap();
        let barrier = Arc::new(std::sync::Barrier::new(20));
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let limiter = limiter.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    match limiter.admit(&format!("user{i}"), now) {
                        Ok(Admission::Queued { position, ticket }) => {
                            (Some(position), Some(ticket))
                        }
                        Ok(Admission::Now(_)) => panic!("the only slot is taken"),
                        Err(Refusal::QueueFull) => (None, None),
                        Err(other) => panic!("unexpected {other:?}"),
                    }
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let mut positions: Vec<usize> = results.iter().filter_map(|(p, _)| *p).collect();
        positions.sort();
        assert_eq!(
            positions,
            vec![1, 2, 3, 4, 5],
            "five queued, in distinct places"
        );
        let refused = results.iter().filter(|(p, _)| p.is_none()).count();
        assert_eq!(refused, 15, "MAX_QUEUED_MESSAGES is enforced under a burst");
        drop(results);
        drop(running);
        // Every place was given back: a new message is admitted at once.
        assert!(matches!(limiter.admit("late", now), Ok(Admission::Now(_))));
    }
}
