//! The hard limits of one execution, derived from settings and per-run overrides.

use std::time::Duration;

use crate::config::{Runtime, Settings};

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub timeout: Duration,
    pub memory_mb: u64,
    pub cpus: f64,
    pub pids: i64,
    pub disk_mb: u64,
    pub runtime: Runtime,
    pub max_output_chars: usize,
    pub max_output_files: usize,
    pub max_output_file_bytes: u64,
    pub max_output_total_bytes: u64,
}

const MIB: u64 = 1024 * 1024;

impl Limits {
    pub fn from_settings(settings: &Settings) -> Limits {
        Limits {
            timeout: Duration::from_secs_f64(settings.code_execution_timeout),
            memory_mb: settings.sandbox_memory_mb,
            cpus: settings.sandbox_cpus,
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
