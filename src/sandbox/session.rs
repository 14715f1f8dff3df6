//! Pure: a run's notebook session as the host sees it. The job tells the runner where the
//! previous snapshot is shown and where to write the next; the runner's report on what was
//! restored and kept is untrusted and bounded again here. The snapshot itself is opaque
//! bytes to the host: only the sandbox of the user it belongs to ever unpickles it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the previous snapshot is shown to the runner: inside the staged inputs, which
/// hold only the run's own user's files.
pub const STATE_RESTORE_NAME: &str = ".codebox-state";
/// The tmpfs the code's process writes the next snapshot into, sized to the cap.
pub const STATE_DIR: &str = "/mnt/state";
pub const STATE_SAVE_PATH: &str = "/mnt/state/snapshot";
/// The host's allowance, on top of the run's limit, for moving a snapshot in and out (the
/// runner's own limit covers restoring and saving, so this bounds only the transfer).
pub const STATE_BUDGET: Duration = Duration::from_secs(60);
/// Pure: the budget of each of restore and save for a run with this time limit (the
/// runner's rule): never more than `STATE_BUDGET`, nor than the limit itself (5 s at least),
/// so a session run lasts at most about three times its limit.
pub fn state_budget(timeout: Duration) -> Duration {
    timeout.max(Duration::from_secs(5)).min(STATE_BUDGET)
}

/// Names listed per report; the runner caps them too.
const MAX_LISTED: usize = 200;
const MAX_NAME_CHARS: usize = 100;
const MAX_REASON_CHARS: usize = 200;
/// A restore ahead reported as longer than this (an hour) is no real one.
const MAX_AHEAD_MS: f64 = 3_600_000.0;

/// What a caller asks of the executor for one run's session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionIo {
    /// The previous snapshot is in the request's input directory as `STATE_RESTORE_NAME`.
    pub restore: bool,
    /// Where the host writes the new snapshot when the runner sends one.
    pub save_to: PathBuf,
    pub max_bytes: u64,
    /// The conversation the state belongs to: a container the executor holds for it,
    /// with this very snapshot restored ahead (`Executor::prepare`), runs the job.
    pub conversation: Option<String>,
}

/// The job's `session` line part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionJob {
    pub restore: Option<String>,
    pub save_to: String,
    pub max_bytes: u64,
}

impl SessionJob {
    pub fn for_io(io: &SessionIo, input_dir: &str) -> SessionJob {
        SessionJob {
            restore: io
                .restore
                .then(|| format!("{input_dir}/{STATE_RESTORE_NAME}")),
            save_to: STATE_SAVE_PATH.to_string(),
            max_bytes: io.max_bytes,
        }
    }
}

/// A name that did not survive, and why (for the model: "f (file)").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    pub name: String,
    #[serde(default)]
    pub reason: String,
}

/// What became of the session's state in one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionReport {
    pub restore_ms: f64,
    pub restored: Vec<String>,
    pub not_restored: Vec<Dropped>,
    /// Top-level modules the restore imported for the values (a fresh container pays
    /// for pandas here; a warm one has it already).
    pub restore_imported: Vec<String>,
    /// The previous snapshot could not be read at all; the host drops it.
    pub restore_error: Option<String>,
    /// The restore happened before the job, in a container held for the conversation:
    /// how long it took there, off the run's path (`restore_ms` is then only the wait for
    /// its report). The code's process's own account, bounded.
    pub restore_ahead_ms: Option<f64>,
    pub save_ms: f64,
    /// A new snapshot arrived whole (set by the host, not by the runner's word).
    pub saved: bool,
    pub kept: Vec<String>,
    pub kept_count: u64,
    pub not_kept: Vec<Dropped>,
    pub not_kept_count: u64,
    pub save_error: Option<String>,
}

fn clip(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

impl SessionReport {
    /// The runner's report cut to bounds the host controls (it came from the sandbox).
    pub fn bounded(mut self) -> SessionReport {
        let names = |list: &mut Vec<String>| {
            list.truncate(MAX_LISTED);
            for name in list.iter_mut() {
                *name = clip(name, MAX_NAME_CHARS);
            }
        };
        let dropped = |list: &mut Vec<Dropped>| {
            list.truncate(MAX_LISTED);
            for d in list.iter_mut() {
                d.name = clip(&d.name, MAX_NAME_CHARS);
                d.reason = clip(&d.reason, MAX_REASON_CHARS);
            }
        };
        names(&mut self.restored);
        names(&mut self.restore_imported);
        names(&mut self.kept);
        dropped(&mut self.not_restored);
        dropped(&mut self.not_kept);
        self.restore_error = self.restore_error.map(|e| clip(&e, 500));
        self.save_error = self.save_error.map(|e| clip(&e, 500));
        self.kept_count = self.kept_count.max(self.kept.len() as u64);
        self.not_kept_count = self.not_kept_count.max(self.not_kept.len() as u64);
        if !self.restore_ms.is_finite() || self.restore_ms < 0.0 {
            self.restore_ms = 0.0;
        }
        if !self.save_ms.is_finite() || self.save_ms < 0.0 {
            self.save_ms = 0.0;
        }
        self.restore_ahead_ms = self
            .restore_ahead_ms
            .filter(|ms| ms.is_finite() && (0.0..=MAX_AHEAD_MS).contains(ms));
        self
    }

    /// The host's verdict: saved only when the snapshot's bytes arrived and matched.
    pub fn settle(mut self, snapshot_arrived: bool) -> SessionReport {
        if self.saved && !snapshot_arrived {
            self.save_error = Some("the snapshot did not arrive".to_string());
        }
        self.saved = snapshot_arrived;
        self
    }
}

/// "f (file), g (generator)" and how many more were left out of the list.
fn listed(dropped: &[Dropped], total: u64) -> String {
    let mut text = dropped
        .iter()
        .map(|d| format!("{} ({})", d.name, d.reason))
        .collect::<Vec<_>>()
        .join(", ");
    let more = total.saturating_sub(dropped.len() as u64);
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

impl SessionReport {
    /// Pure: what the user and the model are told about the session after a run; nothing
    /// when everything was restored and kept.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(error) = &self.restore_error {
            notes.push(format!(
                "the variables of earlier runs could not be restored ({error}); they were dropped and the code ran without them"
            ));
        }
        if !self.not_restored.is_empty() {
            notes.push(format!(
                "not restored from earlier runs: {}",
                listed(&self.not_restored, self.not_restored.len() as u64)
            ));
        }
        if !self.not_kept.is_empty() {
            notes.push(format!(
                "not kept between runs: {}",
                listed(&self.not_kept, self.not_kept_count)
            ));
        }
        if !self.saved {
            let why = self.save_error.as_deref().unwrap_or("unknown reason");
            let next = if self.restore_error.is_some() {
                "the next run starts with no variables"
            } else {
                "the next run starts from the variables as they were before this run"
            };
            notes.push(format!(
                "the variables of this run were not saved ({why}); {next}"
            ));
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_from_the_sandbox_is_bounded_and_saved_only_when_bytes_arrived() {
        let report = SessionReport {
            kept: vec!["x".repeat(5000); 1000],
            not_kept: vec![
                Dropped {
                    name: "f".into(),
                    reason: "r".repeat(5000),
                };
                3
            ],
            restore_ms: f64::NAN,
            saved: true,
            ..SessionReport::default()
        }
        .bounded();
        assert_eq!(report.kept.len(), MAX_LISTED);
        assert_eq!(report.kept[0].chars().count(), MAX_NAME_CHARS);
        assert_eq!(report.kept_count, MAX_LISTED as u64);
        assert_eq!(report.not_kept[0].reason.len(), MAX_REASON_CHARS);
        assert_eq!(report.restore_ms, 0.0);
        let settled = report.clone().settle(false);
        assert!(!settled.saved);
        assert_eq!(
            settled.save_error.as_deref(),
            Some("the snapshot did not arrive")
        );
        assert!(report.settle(true).saved);
    }

    #[test]
    fn a_reported_ahead_time_is_kept_only_when_plausible() {
        let ahead = |ms: Option<f64>| {
            SessionReport {
                restore_ahead_ms: ms,
                ..SessionReport::default()
            }
            .bounded()
            .restore_ahead_ms
        };
        assert_eq!(ahead(Some(12.5)), Some(12.5));
        assert_eq!(ahead(None), None);
        for forged in [f64::NAN, f64::INFINITY, -1.0, 1e12] {
            assert_eq!(ahead(Some(forged)), None, "{forged}");
        }
    }

    #[test]
    fn notes_name_what_was_not_kept_and_say_what_the_next_run_sees() {
        let clean = SessionReport {
            saved: true,
            kept: vec!["x".into()],
            ..SessionReport::default()
        };
        assert!(clean.notes().is_empty());
        let lossy = SessionReport {
            saved: true,
            not_kept: vec![Dropped {
                name: "f".into(),
                reason: "file".into(),
            }],
            not_kept_count: 3,
            ..SessionReport::default()
        };
        assert_eq!(
            lossy.notes(),
            vec!["not kept between runs: f (file) and 2 more".to_string()]
        );
        let corrupt = SessionReport {
            restore_error: Some("not a codebox snapshot".into()),
            save_error: Some("the code was stopped at its time limit".into()),
            ..SessionReport::default()
        };
        let notes = corrupt.notes();
        assert!(notes[0].contains("could not be restored (not a codebox snapshot)"));
        assert!(notes[1].contains("starts with no variables"), "{notes:?}");
    }

    #[test]
    fn the_job_names_the_staged_snapshot_only_when_there_is_one() {
        let io = SessionIo {
            restore: true,
            save_to: PathBuf::from("/host/x"),
            max_bytes: 5,
            conversation: None,
        };
        let job = SessionJob::for_io(&io, "/mnt/inputs");
        assert_eq!(job.restore.as_deref(), Some("/mnt/inputs/.codebox-state"));
        assert_eq!(job.save_to, STATE_SAVE_PATH);
        let fresh = SessionJob::for_io(
            &SessionIo {
                restore: false,
                ..io
            },
            "/mnt/inputs",
        );
        assert_eq!(fresh.restore, None);
    }
}
