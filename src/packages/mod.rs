//! Missing imports, resolved before the run: the runner scans the code inside the sandbox
//! and names the top-level modules it cannot find; `names` maps them to distributions,
//! `policy` decides (its default the curated `allowlist`), `manager` serves them from the shared `cache` or runs one installer
//! container (`installer_spec`, `installer`), without a network but for the index through
//! codebox's `egress` proxy (`egress_rules` decides where it may go), bounded in
//! the disk it may fill; names the index lacked are remembered a while (`not_found`);
//! `failure` words what went wrong in terms of the code's own imports. The run container then gets
//! the cache read-only, and the code runs once.

pub mod allowlist;
pub mod cache;
pub mod egress;
pub mod egress_rules;
pub mod entry_names;
pub mod eviction;
pub mod failure;
pub mod installer;
pub mod installer_spec;
pub mod manager;
pub mod names;
pub mod not_found;
pub mod policy;

pub use cache::{PACKAGES_MOUNT, PackageCache};
pub use manager::PackageManager;

use std::path::PathBuf;

use crate::container::engine::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum PackagesError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("package cache at {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("installing `{distribution}`{} failed:\n{log}", failure::imported_as(.modules))]
    Install {
        distribution: String,
        /// The imports that led to it; empty when the failure is not one distribution's.
        modules: Vec<String>,
        log: String,
    },
    #[error(
        "No matching distribution for `{distribution}`{} on the package index (or no wheel \
         of it for this Python); if the import name is wrong, fix the import:\n{log}",
        failure::imported_as(.modules)
    )]
    NotOnIndex {
        distribution: String,
        modules: Vec<String>,
        log: String,
    },
    #[error(
        "installing `{distribution}`{} needs more than {limit_mb} MB of disk, the most one \
         installation may take (PACKAGE_INSTALL_MAX_MB={limit_mb}); nothing was installed",
        failure::imported_as(.modules)
    )]
    InstallTooLarge {
        distribution: String,
        modules: Vec<String>,
        limit_mb: u64,
    },
    #[error(
        "installing `{distribution}`{} takes {} MB, more than the package cache has room for: \
         its limit is {limit_mb} MB (PACKAGE_CACHE_MAX_MB={limit_mb}) and packages in use by \
         running code take {} MB; nothing was installed",
        failure::imported_as(.modules),
        failure::megabytes(*.bytes),
        failure::megabytes(*.in_use_bytes)
    )]
    CacheFull {
        distribution: String,
        modules: Vec<String>,
        bytes: u64,
        in_use_bytes: u64,
        limit_mb: u64,
    },
    #[error(
        "the package installer in image {image} is older than this codebox and does not \
         bound its installations; rebuild the image: {rebuild}"
    )]
    OutdatedInstaller { image: String, rebuild: String },
    #[error("installing {distributions} took longer than {seconds} s and was stopped")]
    InstallTimeout { distributions: String, seconds: f64 },
    #[error("the package installer's state was poisoned by a panic")]
    Poisoned,
}
