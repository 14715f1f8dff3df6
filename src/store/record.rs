//! One stored file's metadata.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Uploaded by the user.
    Uploaded,
    /// Written by the user's code in a run.
    Generated,
    /// A conversation's saved variables (a snapshot only a sandbox of the user ever
    /// reads); hidden from the user's file list, counted against their byte quota.
    State,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Uploaded => "uploaded",
            Origin::Generated => "generated",
            Origin::State => "state",
        }
    }

    pub fn parse(text: &str) -> Option<Origin> {
        match text {
            "uploaded" => Some(Origin::Uploaded),
            "generated" => Some(Origin::Generated),
            "state" => Some(Origin::State),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub file_id: String,
    pub user_id: String,
    /// Sanitized original name, for display only; never used as a path.
    pub filename: String,
    /// Key of the file-type table (`csv`, `png`, `tar.gz`, ...); also the disk extension.
    pub file_type: String,
    pub file_size: u64,
    pub sha256: String,
    pub origin: Origin,
    pub created_at: DateTime<Utc>,
    /// None: kept until deleted or evicted.
    pub expires_at: Option<DateTime<Utc>>,
    /// A short description for the model, computed inside the sandbox.
    #[serde(default)]
    pub summary: Option<String>,
}

impl FileRecord {
    /// The file's name on disk: the id and the detected type, nothing from the user.
    pub fn disk_name(&self) -> String {
        format!("{}.{}", self.file_id, self.file_type)
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}
