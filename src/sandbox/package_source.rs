//! What a run needs from package installation, owned by the sandbox so that it does not
//! depend on how packages are installed: `crate::packages::PackageManager` implements it,
//! and the application hands one to the executor.

use std::any::Any;
use std::path::PathBuf;

use futures_util::future::BoxFuture;

/// Packages made ready for one run.
#[derive(Debug)]
pub struct Prepared {
    /// Directories inside the sandbox to add to the code's path.
    pub site_dirs: Vec<String>,
    pub install_ms: f64,
    pub installed: Vec<String>,
    pub cached: Vec<String>,
    /// Held until the run is reported: the source keeps what it leased from eviction.
    pub lease: Box<dyn Any + Send + Sync>,
}

/// What a run needs before its code starts.
#[derive(Debug)]
pub enum Resolution {
    Ready(Prepared),
    /// Not run: the policy refused a distribution. The message names it.
    Refused(String),
}

/// Why the packages could not be made ready; its text is shown to the user.
pub type ResolveError = Box<dyn std::error::Error + Send + Sync>;

pub trait PackageSource: Send + Sync {
    /// The host directory shown read-only at `container::PACKAGES_MOUNT` in every run.
    fn host_dir(&self) -> PathBuf;
    /// Makes the top-level modules the runner could not import available, or says why not.
    fn resolve<'a>(
        &'a self,
        modules: &'a [String],
    ) -> BoxFuture<'a, Result<Resolution, ResolveError>>;
}
