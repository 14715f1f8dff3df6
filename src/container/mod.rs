//! The container layer: the engine port (`engine`) and its Docker adapter (`docker`), the
//! hardened configuration every container starts from (`hardening`), the guard that removes
//! a container on every path (`guard`, `retirer`), starting one with its attach stream
//! (`attach`), and the reaper of containers a dead process left. The sandbox's runs and the
//! package installer both stand on it; it knows neither.

pub mod attach;
pub mod docker;
pub mod engine;
pub mod guard;
pub mod hardening;
pub mod reaper;
pub mod retirer;
#[cfg(test)]
pub(crate) mod scripted;

/// The unprivileged uid:gid the code runs as.
pub const SANDBOX_USER: &str = "10001:10001";
/// The code's gid in every run (the image's `sandbox` group); files the code must read
/// are shared with it.
pub const SANDBOX_GID: u32 = 10001;
/// Label carried by every container codebox creates; the reaper and the tests look for it.
pub const MANAGED_LABEL: &str = "codebox.managed";
pub const RUN_ID_LABEL: &str = "codebox.run_id";
pub const OWNER_LABEL: &str = "codebox.owner";
/// Carried by containers the warm pool started ahead of their job.
pub const POOL_LABEL: &str = "codebox.pool";
/// Where the host's package cache is shown inside a container: read-only in a run,
/// written by the installer.
pub const PACKAGES_MOUNT: &str = "/opt/codebox-packages";

/// Pure: how an operator rebuilds `image` (the base it was built from is not known here).
pub fn rebuild_command(image: &str) -> String {
    format!(
        "codebox image build --tag {image} (add --base codebox-base:bookworm on machines without a registry), or bash scripts/setup.sh"
    )
}
