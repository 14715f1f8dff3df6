//! The executor service's wire format, shared by the server and its clients: a run request,
//! and the lines of its answer (NDJSON when events are asked for). See deploy/openapi.yaml.

use serde::{Deserialize, Serialize};

use crate::run_result::UserRunResult;
use crate::sandbox::watch::{OutputStream, RunEvent, Watched};

pub const RUNS_PATH: &str = "/v1/runs";
pub const HEALTH_PATH: &str = "/healthz";
pub const METRICS_PATH: &str = "/metrics";
/// A line (whitespace in plain JSON answers) at least this often, so that a client that
/// went away is noticed and its run cancelled within about this long.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// One run for one user: their stored files by id, the conversation whose variables persist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRequest {
    pub user_id: String,
    pub code: String,
    /// Keeps variables between runs of the same user and conversation.
    #[serde(default)]
    pub conversation: Option<String>,
    /// Lower than the executor's limit, never higher.
    #[serde(default)]
    pub timeout_s: Option<f64>,
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Only these stored files; all the user's live files when absent.
    #[serde(default)]
    pub file_ids: Option<Vec<String>>,
    /// Answer as NDJSON lines with live events; otherwise one JSON object at the end.
    #[serde(default)]
    pub events: bool,
    /// Room for more captured output than the executor's own cap (the bot's summaries and
    /// pictures made ready for the model), up to `OUTPUT_CHARS_CEILING`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_chars: Option<usize>,
}

/// The most captured output a request may ask for: a few downscaled pictures in base64.
pub const OUTPUT_CHARS_CEILING: usize = 64 * 1024 * 1024;

/// One line of an NDJSON answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunLine {
    /// Nothing new; the run goes on.
    Alive,
    /// The user's code started: from here on the run is never retried elsewhere.
    Started,
    Installing {
        modules: Vec<String>,
    },
    Output {
        stream: OutputStream,
        text: String,
        skipped_chars: u64,
        missed_before: u64,
    },
    /// The end: the run's result.
    Result {
        result: Box<UserRunResult>,
    },
    /// The end: no result. `code_started` says whether the code may have run; `retry`
    /// that this executor failed on its own side (its Docker engine, its sandbox) before
    /// the code started, so another executor may take the run.
    Error {
        message: String,
        code_started: bool,
        #[serde(default)]
        retry: bool,
    },
}

impl RunLine {
    pub fn from_watched(watched: Watched) -> RunLine {
        match watched.event {
            RunEvent::Started => RunLine::Started,
            RunEvent::Installing { modules } => RunLine::Installing { modules },
            RunEvent::Output {
                stream,
                text,
                skipped_chars,
            } => RunLine::Output {
                stream,
                text,
                skipped_chars,
                missed_before: watched.missed_before,
            },
        }
    }

    /// The event a client's own watch gets for this line, if it is one.
    pub fn to_event(&self) -> Option<RunEvent> {
        match self {
            RunLine::Started => Some(RunEvent::Started),
            RunLine::Installing { modules } => Some(RunEvent::Installing {
                modules: modules.clone(),
            }),
            RunLine::Output {
                stream,
                text,
                skipped_chars,
                ..
            } => Some(RunEvent::Output {
                stream: *stream,
                text: text.clone(),
                skipped_chars: *skipped_chars,
            }),
            _ => None,
        }
    }
}

/// GET /healthz.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub ready: bool,
    /// Runs may fail for a reason outside this executor (its store does not answer);
    /// `storage` says what is wrong.
    #[serde(default)]
    pub degraded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    pub pool_idle: usize,
    pub pool_target: usize,
    pub in_flight: u64,
}

impl Health {
    /// Lower is a better place for the next run: idle warm containers first, then the
    /// fewest runs in flight.
    pub fn load(&self) -> i64 {
        self.in_flight as i64 - self.pool_idle as i64
    }
}
