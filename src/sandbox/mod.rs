//! Runs one piece of Python in its own locked-down, single-use container, on the container
//! layer (`crate::container`).
//!
//! `spec`, `protocol`, `ending` and `outputs` are pure (unit-tested without Docker);
//! `executor` orchestrates one run and reaches packages only through its own
//! `package_source::PackageSource`; `pool` keeps warm containers (`held`: those held for
//! a conversation, its state restored ahead); `image` builds the
//! sandbox image.

pub mod deadlines;
mod ending;
pub mod executor;
pub mod held;
pub mod image;
pub mod limits;
pub mod link;
pub mod live;
pub mod mount_view;
pub mod order;
pub mod outcome;
pub mod outputs;
pub mod package_source;
pub mod pool;
mod pool_demand;
pub mod protocol;
pub mod result;
pub mod run_uids;
pub mod session;
pub mod snapshot_spool;
pub mod spec;
pub mod watch;

pub use executor::{ExecutionRequest, Executor, ExecutorError};
pub use limits::Limits;
pub use outcome::Outcome;
pub use protocol::JobFile;
pub use result::{ExecutionResult, Flag, OutputFile, PictureSize, RunError, Status};

/// Where the user's input files are visible (read-only) inside the container.
pub const INPUT_DIR: &str = "/mnt/inputs";
/// The code's working directory; every regular file left here is collected.
pub const OUTPUT_DIR: &str = "/mnt/outputs";
