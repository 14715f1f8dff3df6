//! What one execution produced, in the shape `codebox run --json` prints.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::outcome::Outcome;
use super::session::SessionReport;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The code ran and exited 0.
    Ok,
    /// The code raised or exited non-zero.
    Error,
    /// The code ran past its time limit and was killed.
    Timeout,
    /// The code ran out of memory and was killed by the kernel.
    Oom,
    /// The code was killed by a signal, or the sandbox died under it.
    Killed,
    /// Not run: it imports a package the operator's policy does not allow.
    Refused,
    /// Not run: a package it needs could not be installed.
    #[serde(rename = "install_failed")]
    InstallFailed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Timeout => "timeout",
            Status::Oom => "oom",
            Status::Killed => "killed",
            Status::Refused => "refused",
            Status::InstallFailed => "install_failed",
        }
    }
}

/// The exception (or the reason) that ended the code, when it did not exit cleanly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

/// A collected output file, saved on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Relative name inside the output directory, validated (no `..`, not absolute).
    pub name: String,
    pub size: u64,
    /// Where it was saved on the host.
    pub path: PathBuf,
    /// Its size and type as a picture, measured inside the sandbox (every pixel decoded);
    /// None for a file that is no picture, or one the sandbox did not measure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<PictureSize>,
}

/// A picture's size and type, as the sandbox measured it: believed within bounds only
/// (`outputs::attach_pictures`), as everything from inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PictureSize {
    pub width: u32,
    pub height: u32,
    pub mime: String,
}

/// One measured picture of the `outputs` event, named by its path in the output directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasuredPicture {
    pub name: String,
    #[serde(flatten)]
    pub size: PictureSize,
}

/// Something that was capped, skipped or refused. Never a crash: always reported here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    pub flag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// How many more of the same kind were left out of this list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more: Option<u64>,
}

impl Flag {
    pub fn new(flag: &str) -> Flag {
        Flag {
            flag: flag.to_string(),
            name: None,
            size: None,
            more: None,
        }
    }

    pub fn named(flag: &str, name: &str) -> Flag {
        Flag {
            name: Some(name.to_string()),
            ..Flag::new(flag)
        }
    }
}

/// Where the wall time of a request went, for logs and the benchmark.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Phases {
    /// The run used a container the warm pool had started earlier.
    pub warm: bool,
    /// From the request to a started container (queueing included).
    pub acquire_ms: f64,
    /// Making the user's files visible in a warm container.
    pub stage_ms: f64,
    /// From writing the job to the code starting (runner start-up on a fresh container,
    /// the import scan, package resolution).
    pub handoff_ms: f64,
    /// From the code's end to the outputs saved on the host.
    pub collect_ms: f64,
    /// The runner measuring the pictures among the outputs (its share of `collect_ms`).
    #[serde(default)]
    pub measure_ms: f64,
    /// Restoring the session's state before the code (never the code's time).
    #[serde(default)]
    pub restore_ms: f64,
    /// Saving the session's state after the code (never the code's time).
    #[serde(default)]
    pub save_ms: f64,
    /// Modules the session's restore imported for its values (its share of `restore_ms`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restore_imported: Vec<String>,
    /// The run took a container held for its conversation, whose state was restored
    /// before the code was known (`restore_ms` is then what was left of it).
    #[serde(default)]
    pub prepared: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionResult {
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Wall time of the whole request: queueing, container start, run, collection, removal.
    pub total_ms: f64,
    /// Time spent making missing packages available (never part of the time limit).
    #[serde(default)]
    pub install_ms: f64,
    /// Distributions installed for this run.
    #[serde(default)]
    pub packages_installed: Vec<String>,
    /// Distributions this run took from the package cache.
    #[serde(default)]
    pub packages_cached: Vec<String>,
    pub output_files: Vec<OutputFile>,
    pub flags: Vec<Flag>,
    pub run_id: String,
    #[serde(default)]
    pub phases: Phases,
    /// What became of the session's state, for a run that has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionReport>,
}

#[cfg(test)]
impl ExecutionResult {
    /// A result of `outcome` with nothing else (no files, flags or phases), for unit tests.
    pub(crate) fn of(outcome: Outcome, total_ms: f64) -> ExecutionResult {
        ExecutionResult {
            outcome,
            total_ms,
            install_ms: 0.0,
            packages_installed: Vec::new(),
            packages_cached: Vec::new(),
            phases: Phases::default(),
            session: None,
            output_files: vec![],
            flags: vec![],
            run_id: "r".into(),
        }
    }
}

impl std::ops::Deref for ExecutionResult {
    type Target = Outcome;
    fn deref(&self) -> &Outcome {
        &self.outcome
    }
}

impl std::ops::DerefMut for ExecutionResult {
    fn deref_mut(&mut self) -> &mut Outcome {
        &mut self.outcome
    }
}
