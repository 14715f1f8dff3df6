//! Pure: the order the runner's events must come in. The stream is authenticated, yet an
//! event out of its place (a second `started`, a result before the code started) is still
//! refused as a protocol error: no message can restart a phase or re-arm a deadline.

use super::deadlines::Phase;
use super::protocol::{Item, ProtocolError, RunnerEvent};

/// Where the exchange is, as far as order goes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub job_handed: bool,
    /// Package requests answered so far in this run.
    pub installs_requested: u32,
    pub outputs_announced: bool,
    /// A session snapshot was announced (at most one, after the outputs).
    pub state_announced: bool,
    /// The job asked for the session's state to be saved.
    pub session: bool,
    /// The job asked for output while the code runs.
    pub live: bool,
}

/// The runner relays at most this many package requests per run (as many as its own cap).
pub const MAX_INSTALL_REQUESTS: u32 = 10;

pub fn check(item: &Item, phase: Phase, progress: Progress) -> Result<(), ProtocolError> {
    let (event, allowed) = match item {
        Item::Event(RunnerEvent::Ready { .. }) => {
            ("ready", phase == Phase::Starting && !progress.job_handed)
        }
        Item::Event(RunnerEvent::Missing { .. }) => (
            "missing",
            phase == Phase::Running && progress.installs_requested < MAX_INSTALL_REQUESTS,
        ),
        Item::Event(RunnerEvent::Started) => {
            ("started", phase == Phase::Starting && progress.job_handed)
        }
        Item::Event(RunnerEvent::Output { .. }) => {
            ("output", phase == Phase::Running && progress.live)
        }
        Item::Event(RunnerEvent::Result(_)) => ("result", phase == Phase::Running),
        Item::Event(RunnerEvent::Outputs { .. }) => (
            "outputs",
            phase == Phase::Collecting && !progress.outputs_announced,
        ),
        Item::Event(RunnerEvent::State { .. }) => (
            "state",
            phase == Phase::Collecting
                && progress.session
                && progress.outputs_announced
                && !progress.state_announced,
        ),
        Item::Event(RunnerEvent::Done) => (
            "done",
            phase == Phase::Collecting && progress.outputs_announced,
        ),
        // The decoder yields blob pieces only after an `outputs` it accepted.
        Item::BlobChunk(_) | Item::BlobEnd => return Ok(()),
    };
    if allowed {
        Ok(())
    } else {
        Err(ProtocolError::OutOfOrder {
            event,
            reason: format!("phase {phase:?}, {progress:?}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_started_or_an_early_result_is_refused() {
        let handed = Progress {
            job_handed: true,
            ..Progress::default()
        };
        let started = Item::Event(RunnerEvent::Started);
        assert!(check(&started, Phase::Starting, handed).is_ok());
        assert!(check(&started, Phase::Running, handed).is_err());
        assert!(check(&started, Phase::Starting, Progress::default()).is_err());
        let done = Item::Event(RunnerEvent::Done);
        assert!(check(&done, Phase::Running, handed).is_err());
        assert!(
            check(&done, Phase::Collecting, handed).is_err(),
            "no outputs yet"
        );
        let ready = Item::Event(RunnerEvent::Ready { protocol: Some(3) });
        assert!(check(&ready, Phase::Starting, Progress::default()).is_ok());
        assert!(
            check(&ready, Phase::Starting, handed).is_err(),
            "ready twice"
        );
    }

    #[test]
    fn a_snapshot_comes_once_after_the_outputs_and_only_when_asked_for() {
        let state = Item::Event(RunnerEvent::State {
            bytes: 1,
            sha256: String::new(),
        });
        let after_outputs = Progress {
            job_handed: true,
            outputs_announced: true,
            session: true,
            ..Progress::default()
        };
        assert!(check(&state, Phase::Collecting, after_outputs).is_ok());
        let before_outputs = Progress {
            outputs_announced: false,
            ..after_outputs
        };
        assert!(check(&state, Phase::Collecting, before_outputs).is_err());
        let twice = Progress {
            state_announced: true,
            ..after_outputs
        };
        assert!(check(&state, Phase::Collecting, twice).is_err());
        let unasked = Progress {
            session: false,
            ..after_outputs
        };
        assert!(check(&state, Phase::Collecting, unasked).is_err());
    }

    #[test]
    fn live_output_comes_only_while_the_code_runs_and_only_when_asked_for() {
        let output = Item::Event(RunnerEvent::Output {
            stream: crate::sandbox::protocol::OutputStream::Stdout,
            text: "x".into(),
            skipped: 0,
        });
        let live = Progress {
            job_handed: true,
            live: true,
            ..Progress::default()
        };
        assert!(check(&output, Phase::Running, live).is_ok());
        assert!(check(&output, Phase::Starting, live).is_err());
        assert!(check(&output, Phase::Collecting, live).is_err());
        let unasked = Progress {
            live: false,
            ..live
        };
        assert!(check(&output, Phase::Running, unasked).is_err());
    }

    #[test]
    fn package_requests_come_while_the_code_runs_and_are_bounded() {
        let missing = Item::Event(RunnerEvent::Missing {
            modules: vec!["x".into()],
        });
        let mut progress = Progress {
            job_handed: true,
            ..Progress::default()
        };
        assert!(check(&missing, Phase::Starting, progress).is_err());
        assert!(check(&missing, Phase::Running, progress).is_ok());
        assert!(check(&missing, Phase::Collecting, progress).is_err());
        progress.installs_requested = MAX_INSTALL_REQUESTS;
        assert!(check(&missing, Phase::Running, progress).is_err());
    }
}
