//! What one run on behalf of a user produced: the executor's result and the files it
//! wrote, now in the store. Below the application, so the model loop, the renderers and the
//! executor API's wire format can all name it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::sandbox::{ExecutionResult, PictureSize};

/// A file the run wrote, now in the store: paired with its output by the store's record,
/// never by name (the store cleans names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratedFile {
    pub file_id: String,
    pub filename: String,
    pub size: u64,
    pub file_type: String,
    /// The stored copy on the host.
    pub path: PathBuf,
    /// Its size and type as a picture, as the run's sandbox measured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picture: Option<PictureSize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRunResult {
    #[serde(flatten)]
    pub result: ExecutionResult,
    pub generated_files: Vec<GeneratedFile>,
}
