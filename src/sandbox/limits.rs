//! The hard limits of one execution, derived from settings and per-run overrides.

use std::time::Duration;

use crate::config::{Runtime, SandboxSettings};

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub timeout: Duration,
    pub memory_mb: u64,
    pub cpus: f64,
    /// The CPUs every container may use (`0`, `0-3`, `0,2`): SANDBOX_CPUSET; None: any.
    pub cpuset: Option<String>,
    pub pids: i64,
    pub disk_mb: u64,
    pub runtime: Runtime,
    pub max_output_chars: usize,
    pub max_output_files: usize,
    pub max_output_file_bytes: u64,
    pub max_output_total_bytes: u64,
}

const MIB: u64 = 1024 * 1024;

/// Why a guild admin's requested limit was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitError {
    #[error("timeout must be between 1 and {max} seconds (the operator's maximum)")]
    Timeout { max: f64 },
    #[error("memory must be between 64 and {max} MB (the operator's maximum)")]
    Memory { max: u64 },
}

impl Limits {
    /// The operator's limits lowered by a guild's own choice; never raised.
    pub fn narrowed(&self, timeout_s: Option<f64>, memory_mb: Option<u64>) -> Limits {
        let mut limits = self.clone();
        if let Some(t) = timeout_s.filter(|t| t.is_finite() && *t > 0.0) {
            // Compared in seconds first: a huge number would overflow a Duration.
            if t < limits.timeout.as_secs_f64() {
                limits.timeout = Duration::from_secs_f64(t);
            }
        }
        if let Some(m) = memory_mb {
            limits.memory_mb = limits.memory_mb.min(m.max(16));
        }
        limits
    }

    /// Checks values a guild admin asks for against these (the operator's) maxima.
    pub fn check_request(
        &self,
        timeout_s: Option<f64>,
        memory_mb: Option<u64>,
    ) -> Result<(), LimitError> {
        let max_timeout = self.timeout.as_secs_f64();
        if let Some(t) = timeout_s
            && !(t.is_finite() && (1.0..=max_timeout).contains(&t))
        {
            return Err(LimitError::Timeout { max: max_timeout });
        }
        if let Some(m) = memory_mb
            && !(64..=self.memory_mb).contains(&m)
        {
            return Err(LimitError::Memory {
                max: self.memory_mb,
            });
        }
        Ok(())
    }

    pub fn from_settings(settings: &SandboxSettings) -> Limits {
        Limits {
            timeout: Duration::from_secs_f64(settings.code_execution_timeout),
            memory_mb: settings.sandbox_memory_mb,
            cpus: settings.sandbox_cpus,
            cpuset: settings.cpuset(),
            pids: settings.sandbox_pids,
            disk_mb: settings.sandbox_disk_mb,
            runtime: settings.sandbox_runtime,
            max_output_chars: settings.max_output_chars,
            max_output_files: settings.max_output_files,
            max_output_file_bytes: settings.max_output_file_mb * MIB,
            max_output_total_bytes: settings.max_output_total_mb * MIB,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guilds_can_only_lower_limits() {
        let operator = Limits::from_settings(&SandboxSettings::default());
        let narrowed = operator.narrowed(Some(30.0), Some(256));
        assert_eq!(narrowed.timeout, Duration::from_secs(30));
        assert_eq!(narrowed.memory_mb, 256);
        let huge = operator.narrowed(Some(1e30), Some(u64::MAX));
        assert_eq!(huge.timeout, operator.timeout);
        assert_eq!(huge.memory_mb, operator.memory_mb);
        let not_raised = operator.narrowed(Some(10_000.0), Some(1 << 20));
        assert_eq!(not_raised.timeout, operator.timeout);
        assert_eq!(not_raised.memory_mb, operator.memory_mb);
        assert!(operator.check_request(Some(30.0), Some(256)).is_ok());
        assert_eq!(
            operator.check_request(Some(301.0), None),
            Err(LimitError::Timeout { max: 300.0 })
        );
        assert_eq!(
            operator.check_request(None, Some(4096)),
            Err(LimitError::Memory { max: 1024 })
        );
    }
}
