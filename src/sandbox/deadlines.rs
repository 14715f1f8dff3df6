//! Pure: the host's deadlines for one run, fixed when the job is handed over and never moved
//! by anything the container sends. Only the host's own package install (which it measures
//! itself) lengthens them, because install time is never the code's.

use std::time::Duration;

use tokio::time::Instant;

/// The runner enforces the time limit itself; the host kills the container this much later
/// if the runner failed to (a starved, stopped or killed runner must not hang a request).
pub const HOST_DEADLINE_GRACE: Duration = Duration::from_secs(3);
/// Time allowed, after the code's time is up, to tar and stream the outputs back.
pub const COLLECTION_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the run is; each step has its own deadline, all derived from the hand-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for `ready` (a fresh container), then for `started`.
    Starting,
    Running,
    Collecting,
}

#[derive(Debug, Clone)]
pub struct Deadlines {
    created: Instant,
    handed_at: Option<Instant>,
    startup: Duration,
    timeout: Duration,
    install: Duration,
    /// Restoring and saving a session's state (each with the runner's own budget).
    session: Duration,
}

impl Deadlines {
    pub fn new(created: Instant, startup: Duration, timeout: Duration) -> Deadlines {
        Deadlines {
            created,
            handed_at: None,
            startup,
            timeout,
            install: Duration::ZERO,
            session: Duration::ZERO,
        }
    }

    /// The run restores and saves a session's state: the runner's budgets for both.
    pub fn with_session(mut self, budget: Duration) -> Deadlines {
        self.session = budget * 2;
        self
    }

    /// The job went to the runner now: every later deadline counts from here.
    pub fn handed_over(&mut self, at: Instant) {
        self.handed_at.get_or_insert(at);
    }

    /// Time the host itself spent installing packages for the run.
    pub fn add_install(&mut self, spent: Duration) {
        self.install += spent;
    }

    pub fn for_phase(&self, phase: Phase) -> Instant {
        let Some(handed) = self.handed_at else {
            return self.created + self.startup;
        };
        let started_by = handed + self.startup + self.install;
        match phase {
            Phase::Starting => started_by,
            Phase::Running => started_by + self.timeout + self.session + HOST_DEADLINE_GRACE,
            Phase::Collecting => {
                started_by + self.timeout + self.session + HOST_DEADLINE_GRACE + COLLECTION_TIMEOUT
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_count_from_the_hand_off_and_only_installs_move_them() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(t0, Duration::from_secs(60), Duration::from_secs(3));
        assert_eq!(d.for_phase(Phase::Starting), t0 + Duration::from_secs(60));
        let handed = t0 + Duration::from_secs(1);
        d.handed_over(handed);
        // A second hand-off (a replayed `ready`) does not move anything.
        d.handed_over(handed + Duration::from_secs(30));
        assert_eq!(
            d.for_phase(Phase::Starting),
            handed + Duration::from_secs(60)
        );
        let running = d.for_phase(Phase::Running);
        assert_eq!(running, handed + Duration::from_secs(66));
        assert_eq!(d.for_phase(Phase::Collecting), running + COLLECTION_TIMEOUT);
        d.add_install(Duration::from_secs(10));
        assert_eq!(
            d.for_phase(Phase::Running),
            running + Duration::from_secs(10)
        );
        let with_state = Deadlines::new(t0, Duration::from_secs(60), Duration::from_secs(3))
            .with_session(Duration::from_secs(60));
        let mut with_state = with_state;
        with_state.handed_over(handed);
        assert_eq!(
            with_state.for_phase(Phase::Running),
            handed + Duration::from_secs(66 + 120)
        );
    }
}
