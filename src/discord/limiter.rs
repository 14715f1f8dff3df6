//! Admission of a user's message: a per-user rate limit (sliding minute), one turn at a
//! time per user, and a bounded global queue whose position is told to the user.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Limiter {
    per_minute: usize,
    windows: Mutex<HashMap<String, VecDeque<Instant>>>,
    busy: Arc<Mutex<HashSet<String>>>,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
}

#[derive(Debug, PartialEq)]
pub enum Refusal {
    RateLimited { retry_after: Duration },
    AlreadyRunning,
    QueueFull,
}

/// Held while the user's turn runs: releases the user and the slot when dropped.
pub struct Ticket {
    user: String,
    busy: Arc<Mutex<HashSet<String>>>,
    _slot: Option<OwnedSemaphorePermit>,
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
    /// Wait for a slot; `position` is the place in the queue (1 = next).
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
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    pub fn admit(&self, user: &str, now: Instant) -> Result<Admission, Refusal> {
        {
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
            window.push_back(now);
        }
        {
            let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
            if !busy.insert(user.to_string()) {
                return Err(Refusal::AlreadyRunning);
            }
        }
        let mut ticket = Ticket {
            user: user.to_string(),
            busy: self.busy.clone(),
            _slot: None,
        };
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => {
                ticket._slot = Some(slot);
                Ok(Admission::Now(ticket))
            }
            Err(_) => {
                let position = self.waiting.load(Ordering::SeqCst) + 1;
                if position > self.max_waiting {
                    return Err(Refusal::QueueFull);
                }
                Ok(Admission::Queued { position, ticket })
            }
        }
    }

    /// Waits for a slot for a queued ticket.
    pub async fn wait_turn(&self, mut ticket: Ticket) -> Ticket {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let slot = self.slots.clone().acquire_owned().await.ok();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        ticket._slot = slot;
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
        assert!(ticket._slot.is_some());
    }
}
