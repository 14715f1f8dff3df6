//! Settings of the file store: where metadata lives, per-user limits, expiry.

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret, invalid, is_positive};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreSettings {
    /// MongoDB for metadata and history; unset means the embedded database under DATA_DIR.
    pub mongodb_uri: Option<Secret>,
    pub mongodb_database: String,
    /// Files kept per user; adding one more evicts the oldest.
    pub max_files_per_user: usize,
    /// Largest single file accepted, in MB.
    pub max_file_size_mb: u64,
    /// Bytes kept per user; adding beyond it evicts the oldest files.
    pub max_bytes_per_user: u64,
    /// Hours a stored file lives; -1 keeps files forever; fractions allowed.
    pub file_expiration_hours: f64,
    /// Minutes between two sweeps of expired files in long-running processes.
    pub cleanup_interval_minutes: f64,
    /// With MONGODB_URI, file bytes live in GridFS and runs use local copies: this bounds
    /// those copies on each host, in MB (least recently used go first).
    pub file_cache_max_mb: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            mongodb_uri: None,
            mongodb_database: "codebox".to_string(),
            max_files_per_user: 20,
            max_file_size_mb: 50,
            max_bytes_per_user: 500 * 1024 * 1024,
            file_expiration_hours: 48.0,
            cleanup_interval_minutes: 60.0,
            file_cache_max_mb: 2048,
        }
    }
}

impl StoreSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_files_per_user == 0 {
            return invalid("MAX_FILES_PER_USER", "must be at least 1");
        }
        if self.max_file_size_mb == 0 || self.max_file_size_mb > 1024 * 1024 {
            return invalid("MAX_FILE_SIZE_MB", "must be between 1 and 1048576");
        }
        if self.max_bytes_per_user < self.max_file_size_mb * 1024 * 1024 {
            return invalid(
                "MAX_BYTES_PER_USER",
                "must be at least MAX_FILE_SIZE_MB (in bytes)",
            );
        }
        let hours = self.file_expiration_hours;
        if !(hours.is_finite() && (hours > 0.0 || hours == -1.0) && hours < 1e6) {
            return invalid(
                "FILE_EXPIRATION_HOURS",
                "must be a positive number of hours (below 1000000), or -1 for never",
            );
        }
        if !is_positive(self.cleanup_interval_minutes) || self.cleanup_interval_minutes > 1e6 {
            return invalid(
                "CLEANUP_INTERVAL_MINUTES",
                "must be a positive number of minutes",
            );
        }
        if self.mongodb_database.is_empty() {
            return invalid("MONGODB_DATABASE", "must name a database");
        }
        if let Some(uri) = &self.mongodb_uri
            && !(uri.expose().starts_with("mongodb://")
                || uri.expose().starts_with("mongodb+srv://"))
        {
            // Never echo the URI: it usually carries a password.
            return invalid(
                "MONGODB_URI",
                "must start with mongodb:// or mongodb+srv://",
            );
        }
        Ok(())
    }
}
