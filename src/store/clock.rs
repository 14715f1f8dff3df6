//! The store's idea of "now". Expiry is decided in several places (adding, listing, getting,
//! sweeping); they must all agree on the time, and tests must be able to move it instead of
//! sleeping until a file expires.

use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

/// A source of the current time, cheap to clone and shared by everything that asks it.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The wall clock: what production uses.
    pub fn system() -> Clock {
        Clock(Arc::new(Utc::now))
    }

    pub fn from_fn(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Clock").field(&self.now()).finish()
    }
}

/// A clock that moves only when told to, so a test decides the instant a file expires.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: Arc::new(Mutex::new(start)),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.lock();
        *now += by;
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.lock() = at;
    }

    /// A `Clock` reading this manual time; every clone follows later moves.
    pub fn clock(&self) -> Clock {
        let manual = self.clone();
        Clock::from_fn(move || manual.now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DateTime<Utc>> {
        // A plain timestamp cannot be left half-written, so a panic elsewhere is no reason
        // to stop telling the time.
        self.now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let manual = ManualClock::new(start);
        let clock = manual.clock();
        assert_eq!(clock.now(), start);
        assert_eq!(clock.now(), start, "no time passes by itself");
        manual.advance(Duration::hours(49));
        assert_eq!(clock.now(), start + Duration::hours(49));
        assert_eq!(
            clock.clone().now(),
            clock.now(),
            "clones share the same time"
        );
        manual.set(start);
        assert_eq!(clock.now(), start);
    }

    #[test]
    fn the_system_clock_follows_the_wall_clock() {
        let before = Utc::now();
        let read = Clock::system().now();
        assert!(before <= read && read <= Utc::now());
    }
}
