//! Runs one piece of Python in its own locked-down, single-use container.
//!
//! Layering: `spec`, `protocol` and `outputs` are pure (unit-tested without Docker);
//! `engine` is the small trait over the container engine and `docker` its only real adapter
//! (the only bollard user); `executor` orchestrates one run; `reaper` removes containers
//! left behind by a dead process; `image` builds the sandbox image.

pub mod deadlines;
pub mod docker;
mod ending;
pub mod engine;
pub mod executor;
pub mod guard;
pub mod image;
pub mod limits;
pub mod link;
pub mod live;
pub mod mount_view;
pub mod order;
pub mod outputs;
pub mod pool;
pub mod protocol;
pub mod reaper;
pub mod result;
pub mod retirer;
pub mod run_uids;
#[cfg(test)]
pub(crate) mod scripted;
pub mod session;
pub mod spec;
pub mod watch;

pub use executor::{ExecutionRequest, Executor, ExecutorError};
pub use limits::Limits;
pub use protocol::JobFile;
pub use result::{ExecutionResult, Flag, OutputFile, RunError, Status};

/// Where the user's input files are visible (read-only) inside the container.
pub const INPUT_DIR: &str = "/mnt/inputs";
/// The code's working directory; every regular file left here is collected.
pub const OUTPUT_DIR: &str = "/mnt/outputs";
/// The unprivileged uid:gid the code runs as.
pub const SANDBOX_USER: &str = "10001:10001";
/// Label carried by every container codebox creates; the reaper and the tests look for it.
pub const MANAGED_LABEL: &str = "codebox.managed";
pub const RUN_ID_LABEL: &str = "codebox.run_id";
pub const OWNER_LABEL: &str = "codebox.owner";
/// Carried by containers the warm pool started ahead of their job.
pub const POOL_LABEL: &str = "codebox.pool";
