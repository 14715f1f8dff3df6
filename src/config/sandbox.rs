//! Settings of the sandbox: limits of one run, the image, the runtime, the warm pool.

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid, is_positive};

/// Container runtime used for user code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// Docker's default OCI runtime.
    Runc,
    /// gVisor: a user-space kernel between the code and the host, for hardened deployments.
    Runsc,
}

/// Whether variables persist between the runs of one conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    On,
    Off,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Runc => "runc",
            Runtime::Runsc => "runsc",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SandboxSettings {
    /// Seconds the user's code may run (container start and collection excluded).
    pub code_execution_timeout: f64,
    pub sandbox_image: String,
    pub sandbox_memory_mb: u64,
    pub sandbox_cpus: f64,
    /// The CPUs sandbox containers may use, as Docker's cpuset (`0`, `0-3`, `0,2`): keeps
    /// them off the cores of other services. Empty: any CPU.
    pub sandbox_cpuset: String,
    pub sandbox_pids: i64,
    /// Size of each of the two tmpfs mounts (/tmp and the output directory).
    pub sandbox_disk_mb: u64,
    pub sandbox_runtime: Runtime,
    /// Seconds allowed for a container to start and accept its job.
    pub sandbox_startup_timeout: f64,
    pub max_output_chars: usize,
    pub max_output_files: usize,
    pub max_output_file_mb: u64,
    pub max_output_total_mb: u64,
    pub max_concurrent_executions: usize,
    /// Keep each conversation's top-level variables between runs (a snapshot per user and
    /// conversation, restored and saved inside the sandbox, outside the time limit).
    pub session_state: SessionState,
    /// Largest snapshot kept; variables beyond it are listed as not kept.
    pub session_state_max_mb: u64,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            code_execution_timeout: 300.0,
            sandbox_image: "codebox-sandbox:latest".to_string(),
            sandbox_memory_mb: 1024,
            sandbox_cpus: 1.0,
            sandbox_cpuset: String::new(),
            sandbox_pids: 128,
            sandbox_disk_mb: 512,
            sandbox_runtime: Runtime::Runc,
            sandbox_startup_timeout: 60.0,
            max_output_chars: 100_000,
            max_output_files: 100,
            max_output_file_mb: 50,
            max_output_total_mb: 200,
            max_concurrent_executions: 4,
            session_state: SessionState::On,
            session_state_max_mb: 256,
        }
    }
}

/// Largest values accepted for limits: beyond them a number is a mistake (or an attack on
/// the arithmetic), never a wish.
pub const MAX_TIMEOUT_S: f64 = 24.0 * 3600.0;
pub const MAX_MEMORY_MB: u64 = 1024 * 1024;

impl SandboxSettings {
    /// SANDBOX_CPUSET as Docker takes it; None when unset.
    pub fn cpuset(&self) -> Option<String> {
        let cpuset = self.sandbox_cpuset.trim();
        (!cpuset.is_empty()).then(|| cpuset.to_string())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_positive(self.code_execution_timeout) || self.code_execution_timeout > MAX_TIMEOUT_S
        {
            return invalid(
                "CODE_EXECUTION_TIMEOUT",
                "must be a positive number of seconds, at most 86400",
            );
        }
        if !is_positive(self.sandbox_startup_timeout)
            || self.sandbox_startup_timeout > MAX_TIMEOUT_S
        {
            return invalid(
                "SANDBOX_STARTUP_TIMEOUT",
                "must be a positive number of seconds, at most 86400",
            );
        }
        if self.sandbox_image.trim().is_empty() {
            return invalid("SANDBOX_IMAGE", "must name an image");
        }
        if !(16..=MAX_MEMORY_MB).contains(&self.sandbox_memory_mb) {
            return invalid("SANDBOX_MEMORY_MB", "must be between 16 and 1048576");
        }
        if !is_positive(self.sandbox_cpus) || self.sandbox_cpus > 1024.0 {
            return invalid("SANDBOX_CPUS", "must be a positive number, at most 1024");
        }
        if !is_cpuset(self.sandbox_cpuset.trim()) {
            return invalid(
                "SANDBOX_CPUSET",
                "must be CPU numbers and ranges separated by commas (0, 0-3, 0,2), or empty",
            );
        }
        if self.sandbox_pids < 8 {
            return invalid("SANDBOX_PIDS", "must be at least 8");
        }
        if self.sandbox_disk_mb == 0 || self.sandbox_disk_mb > MAX_MEMORY_MB {
            return invalid("SANDBOX_DISK_MB", "must be between 1 and 1048576");
        }
        if self.max_output_chars < 100 {
            return invalid("MAX_OUTPUT_CHARS", "must be at least 100");
        }
        if self.max_output_file_mb == 0 || self.max_output_file_mb > MAX_MEMORY_MB {
            return invalid("MAX_OUTPUT_FILE_MB", "must be between 1 and 1048576");
        }
        if self.max_output_total_mb < self.max_output_file_mb
            || self.max_output_total_mb > MAX_MEMORY_MB
        {
            return invalid(
                "MAX_OUTPUT_TOTAL_MB",
                "must be at least MAX_OUTPUT_FILE_MB and at most 1048576",
            );
        }
        if self.max_concurrent_executions == 0 {
            return invalid("MAX_CONCURRENT_EXECUTIONS", "must be at least 1");
        }
        if self.session_state_max_mb == 0 || self.session_state_max_mb > MAX_MEMORY_MB {
            return invalid("SESSION_STATE_MAX_MB", "must be between 1 and 1048576");
        }
        Ok(())
    }

    /// The snapshot tmpfs size when sessions are on.
    pub fn session_state_mb(&self) -> Option<u64> {
        (self.session_state == SessionState::On).then_some(self.session_state_max_mb)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolSettings {
    /// Started containers kept waiting, stack imported, for their one job; 0 disables.
    pub warm_pool_size: usize,
    /// The most containers the pool keeps waiting after a burst of calls (a model's tool
    /// calls come back to back); never below `warm_pool_size`, and 0 (the default) means
    /// the pool stays at `warm_pool_size`.
    pub warm_pool_max: usize,
    /// A waiting container older than this is replaced by a fresh one.
    pub warm_pool_max_age_s: f64,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            warm_pool_size: 2,
            warm_pool_max: 0,
            warm_pool_max_age_s: 600.0,
        }
    }
}

impl PoolSettings {
    /// The most containers the pool may keep waiting: `warm_pool_max`, never below the size.
    pub fn most_waiting(&self) -> usize {
        self.warm_pool_max.max(self.warm_pool_size)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_positive(self.warm_pool_max_age_s) || self.warm_pool_max_age_s > MAX_TIMEOUT_S {
            return invalid(
                "WARM_POOL_MAX_AGE_S",
                "must be a positive number of seconds, at most 86400",
            );
        }
        if self.warm_pool_size > 256 {
            return invalid("WARM_POOL_SIZE", "must be at most 256");
        }
        if self.warm_pool_max > 256 {
            return invalid("WARM_POOL_MAX", "must be at most 256");
        }
        Ok(())
    }
}

/// Docker's cpuset syntax: comma-separated CPU numbers or `low-high` ranges; empty is none.
fn is_cpuset(text: &str) -> bool {
    let number = |n: &str| !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit());
    text.is_empty()
        || text.split(',').all(|part| match part.split_once('-') {
            Some((low, high)) => {
                number(low) && number(high) && low.parse::<u32>().ok() <= high.parse::<u32>().ok()
            }
            None => number(part),
        })
}

#[cfg(test)]
mod cpuset_tests {
    use super::*;

    #[test]
    fn cpusets_are_numbers_and_ranges() {
        for good in ["", "0", "1", "0-3", "0,2", "0-1,4-7"] {
            assert!(is_cpuset(good), "{good}");
        }
        for bad in ["a", "0-", "-1", "3-1", "0,,1", "0;1", " 0", "99999"] {
            assert!(!is_cpuset(bad), "{bad}");
        }
        let settings = SandboxSettings {
            sandbox_cpuset: " 1 ".to_string(),
            ..SandboxSettings::default()
        };
        assert_eq!(settings.cpuset().as_deref(), Some("1"));
        assert_eq!(SandboxSettings::default().cpuset(), None);
    }
}
