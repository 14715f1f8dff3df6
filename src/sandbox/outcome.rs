//! What the code's run came to: the part of a result the runner reports and the host
//! passes on unchanged, shared by the runner's result line (`protocol::RunnerResult`) and
//! the execution result (`result::ExecutionResult`), which both flatten it.

use serde::{Deserialize, Serialize};

use super::result::{RunError, Status};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: Status,
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// Wall time the user's code ran, by the runner's own clock from the hand-over to the
    /// code's exit (for a session, restoring and saving its variables included), package
    /// installs excluded.
    pub execution_ms: f64,
    /// CPU time the run used, as the kernel counted it (the container's cgroup, or under
    /// gVisor the reaped processes' usage); None when the runtime showed no figure. What
    /// `/usage` charges (wall time when None).
    #[serde(default, deserialize_with = "cpu_time")]
    pub cpu_ms: Option<f64>,
    #[serde(default, deserialize_with = "bounded_error")]
    pub error: Option<RunError>,
}

#[cfg(test)]
impl Outcome {
    /// A run whose code raised `ValueError: bad` after printing `stdout`, for unit tests.
    pub(crate) fn value_error(stdout: &str, execution_ms: f64) -> Outcome {
        Outcome {
            status: Status::Error,
            exit_code: Some(1),
            stdout: stdout.to_string(),
            stderr: "Traceback ...\nValueError: bad\n".into(),
            stdout_truncated: false,
            stderr_truncated: false,
            execution_ms,
            cpu_ms: None,
            error: Some(RunError {
                kind: "ValueError".into(),
                message: "bad".into(),
            }),
        }
    }
}

/// Pure: whether a reported exception type looks like one (`ValueError`,
/// `pandas.errors.ParserError`): the runner bounds it, and the host checks again, since the
/// name comes from the code and is shown in Discord.
pub fn is_exception_name(name: &str) -> bool {
    name.len() <= 200
        && !name.is_empty()
        && name.split('.').all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// A CPU time is a finite, non-negative number of milliseconds below a year; anything else
/// is no figure at all.
fn cpu_time<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    let ms = Option::<f64>::deserialize(deserializer)?;
    Ok(ms.filter(|ms| ms.is_finite() && (0.0..3.2e10).contains(ms)))
}

fn bounded_error<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<RunError>, D::Error> {
    let error = Option::<RunError>::deserialize(deserializer)?;
    Ok(error.map(|mut error| {
        if !is_exception_name(&error.kind) {
            error.kind = "Exception".to_string();
        }
        error
    }))
}
