//! How a run's stream ended, named once, and what each ending means for the result. The
//! executor reads the runner's stream into a `Transcript` until one `Ending`; everything
//! the user is told about a run that did not report cleanly is decided here, from those
//! two alone. A cancelled run has no ending: its future is dropped, and the container
//! guard hands the container to the retirer.

use super::limits::Limits;
use super::outcome::Outcome;
use super::package_source::Prepared;
use super::protocol::{ProtocolError, RunnerResult};
use super::result::{Flag, MeasuredPicture, Phases, RunError, Status};
use crate::container::engine::{EngineError, ExitState};

#[derive(Debug)]
pub enum Ending {
    /// The runner reported its result and outputs and said `done`.
    Done,
    /// The code ran past its time limit and the runner did not stop it; the host killed
    /// the container.
    HostTimeout,
    /// The result arrived but the outputs did not in time; the container was killed.
    CollectionTimeout,
    /// The stream closed before `done`: the runner or its container died.
    StreamEnded,
    /// The engine broke the stream off (a daemon restart, a lost connection).
    StreamFailed(EngineError),
    /// The runner sent something unreadable; the container was killed.
    ProtocolError(ProtocolError),
}

/// A package the code asked for as it ran and did not get (refused by the policy, or not
/// installable); the code saw a ModuleNotFoundError saying why.
#[derive(Debug, Clone)]
pub struct PackageRefusal {
    pub module: String,
    /// `refused` or `install_failed`: what the run is called when the code stopped there.
    pub status: Status,
    pub error: RunError,
    pub install_ms: f64,
}

/// Pure: a run that ended on the ModuleNotFoundError of a package the host could not give
/// is reported as that refusal (status and the host's own words), not as a bug in the code.
pub fn package_verdict(runner: &mut RunnerResult, refusals: &[PackageRefusal]) {
    if runner.status != Status::Error {
        return;
    }
    let Some(error) = &runner.error else {
        return;
    };
    if error.kind != "ModuleNotFoundError" {
        return;
    }
    let refusal = refusals.iter().find(|r| {
        error
            .message
            .starts_with(&format!("No module named '{}'", r.module))
    });
    if let Some(refusal) = refusal {
        runner.status = refusal.status;
        runner.error = Some(refusal.error.clone());
    }
}

/// What the runner said before the ending.
#[derive(Debug, Default)]
pub struct Transcript {
    /// The runner said the code started.
    pub started: bool,
    pub phases: Phases,
    /// Packages made available as the code asked for them.
    pub packages: Vec<Prepared>,
    pub refusals: Vec<PackageRefusal>,
    pub result: Option<RunnerResult>,
    /// The output tar, spooled to an unnamed temporary file.
    pub archive: Option<tokio::fs::File>,
    /// The session's new snapshot arrived whole (and matched its digest).
    pub snapshot_arrived: bool,
    pub flags: Vec<Flag>,
    /// The pictures among the outputs, as the sandbox measured them.
    pub pictures: Vec<MeasuredPicture>,
    /// The runner's own stderr (never the user's), bounded.
    pub diagnostics: Vec<u8>,
    /// How long the code ran as seen from the host, for a runner that could not say.
    pub execution_ms: f64,
}

#[derive(Debug)]
pub struct RunRecord {
    pub ending: Ending,
    pub transcript: Transcript,
}

impl RunRecord {
    /// The stream broke before the runner said the code started: nothing of the job ran,
    /// so a warm container's job may run in a fresh one instead.
    pub fn code_never_started(&self) -> bool {
        !self.transcript.started
            && self.transcript.result.is_none()
            && matches!(
                self.ending,
                Ending::StreamEnded | Ending::StreamFailed(_) | Ending::ProtocolError(_)
            )
    }

    /// The runner died without reporting: only the container's exit state (read before
    /// removal) can tell whether the kernel killed the code.
    pub fn needs_exit_state(&self) -> bool {
        self.transcript.result.is_none()
            && matches!(
                self.ending,
                Ending::Done | Ending::StreamEnded | Ending::StreamFailed(_)
            )
    }
}

/// Pure: the runner's report, or the host's honest account of why there is none, with the
/// flags the ending adds.
pub fn report(
    ending: &Ending,
    transcript: &mut Transcript,
    exit: Option<&ExitState>,
    limits: &Limits,
) -> (RunnerResult, Vec<Flag>) {
    let mut ending_flags = Vec::new();
    let runner = match ending {
        Ending::HostTimeout => timed_out(limits, transcript.execution_ms),
        Ending::ProtocolError(err) => {
            ending_flags.push(Flag::named("protocol_error", &err.to_string()));
            // A stream that broke the protocol is trusted for nothing more than the text
            // it already reported.
            transcript.archive = None;
            broken_protocol(err, transcript)
        }
        Ending::CollectionTimeout => {
            ending_flags.push(Flag::new("output_collection_timeout"));
            reported_or_died(transcript, exit, limits, None)
        }
        Ending::StreamFailed(err) => reported_or_died(transcript, exit, limits, Some(err)),
        Ending::Done | Ending::StreamEnded => reported_or_died(transcript, exit, limits, None),
    };
    let mut flags = Vec::new();
    if runner.stdout_truncated {
        flags.push(Flag::new("stdout_truncated"));
    }
    if runner.stderr_truncated {
        flags.push(Flag::new("stderr_truncated"));
    }
    flags.append(&mut ending_flags);
    flags.append(&mut transcript.flags);
    (runner, flags)
}

fn reported_or_died(
    transcript: &mut Transcript,
    exit: Option<&ExitState>,
    limits: &Limits,
    stream_error: Option<&EngineError>,
) -> RunnerResult {
    match transcript.result.take() {
        Some(result) => result,
        None => died(transcript, exit, limits, stream_error),
    }
}

fn timed_out(limits: &Limits, execution_ms: f64) -> RunnerResult {
    unreported(
        Status::Timeout,
        None,
        execution_ms,
        RunError {
            kind: "TimeoutError".into(),
            message: format!(
                "execution exceeded the time limit of {} s and was stopped",
                limits.timeout.as_secs_f64()
            ),
        },
    )
}

/// Never `ok`: whatever the runner reported before, the run ended in a broken stream.
fn broken_protocol(err: &ProtocolError, transcript: &mut Transcript) -> RunnerResult {
    let error = RunError {
        kind: "ProtocolError".into(),
        message: with_diagnostics(
            format!("{err}; the sandbox was stopped"),
            &transcript.diagnostics,
        ),
    };
    match transcript.result.take() {
        Some(mut reported) => {
            reported.status = Status::Killed;
            reported.exit_code = None;
            reported.error = Some(error);
            reported
        }
        None => unreported(Status::Killed, None, transcript.execution_ms, error),
    }
}

/// The kernel killed the code (out of memory), or the sandbox died under it.
fn died(
    transcript: &Transcript,
    exit: Option<&ExitState>,
    limits: &Limits,
    stream_error: Option<&EngineError>,
) -> RunnerResult {
    let exit_code = exit.and_then(|e| e.exit_code);
    if exit.is_some_and(|e| e.oom_killed) {
        return unreported(
            Status::Oom,
            exit_code,
            transcript.execution_ms,
            RunError {
                kind: "MemoryError".into(),
                message: format!(
                    "the code ran out of memory (limit {} MB) and was killed",
                    limits.memory_mb
                ),
            },
        );
    }
    let exit_code_text = exit_code.map_or("unknown".to_string(), |c| c.to_string());
    let reason = match stream_error {
        Some(err) => format!(
            "the sandbox's output stream failed before it reported ({err}; exit code {exit_code_text})"
        ),
        None => format!("the sandbox stopped before reporting (exit code {exit_code_text})"),
    };
    unreported(
        Status::Killed,
        exit_code,
        transcript.execution_ms,
        RunError {
            kind: "SandboxError".into(),
            message: with_diagnostics(reason, &transcript.diagnostics),
        },
    )
}

fn unreported(
    status: Status,
    exit_code: Option<i64>,
    execution_ms: f64,
    error: RunError,
) -> RunnerResult {
    RunnerResult {
        outcome: Outcome {
            status,
            exit_code,
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            execution_ms,
            cpu_ms: None,
            error: Some(error),
        },
        session: None,
    }
}

/// The runner's last words, when it left any: they say why it died.
fn with_diagnostics(reason: String, diagnostics: &[u8]) -> String {
    let detail = String::from_utf8_lossy(diagnostics);
    let detail = detail.trim();
    if detail.is_empty() {
        reason
    } else {
        format!("{reason}: {}", tail_chars(detail, 2000))
    }
}

fn tail_chars(text: &str, max: usize) -> &str {
    let count = text.chars().count();
    if count <= max {
        return text;
    }
    let skip = text
        .char_indices()
        .nth(count - max)
        .map_or(0, |(index, _)| index);
    &text[skip..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_characters() {
        assert_eq!(tail_chars("héllo", 3), "llo");
        assert_eq!(tail_chars("hé", 5), "hé");
    }

    #[test]
    fn a_protocol_error_after_an_ok_result_is_never_ok() {
        let mut transcript = Transcript {
            result: Some(RunnerResult {
                outcome: Outcome {
                    status: Status::Ok,
                    exit_code: Some(0),
                    stdout: "1\n".into(),
                    stderr: String::new(),
                    stdout_truncated: false,
                    stderr_truncated: false,
                    execution_ms: 2.0,
                    cpu_ms: None,
                    error: None,
                },
                session: None,
            }),
            ..Transcript::default()
        };
        let ending = Ending::ProtocolError(ProtocolError::BadMessage {
            reason: "garbage".into(),
        });
        let limits = Limits::from_settings(&crate::config::SandboxSettings::default());
        let (runner, flags) = report(&ending, &mut transcript, None, &limits);
        assert_eq!(runner.status, Status::Killed);
        assert_eq!(runner.stdout, "1\n");
        assert_eq!(
            runner.outcome.error.map(|e| e.kind).as_deref(),
            Some("ProtocolError")
        );
        assert_eq!(flags[0].flag, "protocol_error");
    }
}

#[cfg(test)]
mod verdict_tests {
    use super::*;

    fn refused(module: &str) -> PackageRefusal {
        PackageRefusal {
            module: module.into(),
            status: Status::Refused,
            error: RunError {
                kind: "PackageNotAllowed".into(),
                message: format!("package {module} is not allowed"),
            },
            install_ms: 1.0,
        }
    }

    fn ended_with(kind: &str, message: &str) -> RunnerResult {
        RunnerResult {
            outcome: Outcome {
                status: Status::Error,
                exit_code: Some(1),
                stdout: String::new(),
                stderr: String::new(),
                stdout_truncated: false,
                stderr_truncated: false,
                execution_ms: 1.0,
                cpu_ms: None,
                error: Some(RunError {
                    kind: kind.into(),
                    message: message.into(),
                }),
            },
            session: None,
        }
    }

    #[test]
    fn a_run_that_stopped_at_a_refused_import_is_called_refused() {
        let refusals = [refused("cbx_denied")];
        let mut stopped = ended_with("ModuleNotFoundError", "No module named 'cbx_denied' (…)");
        package_verdict(&mut stopped, &refusals);
        assert_eq!(stopped.status, Status::Refused);
        assert_eq!(stopped.outcome.error.unwrap().kind, "PackageNotAllowed");

        // Another module, or another error: the code's own failure stays its own.
        for (kind, message) in [
            ("ModuleNotFoundError", "No module named 'other'"),
            ("ValueError", "No module named 'cbx_denied'"),
        ] {
            let mut own = ended_with(kind, message);
            package_verdict(&mut own, &refusals);
            assert_eq!(own.status, Status::Error, "{kind}: {message}");
        }
    }
}
