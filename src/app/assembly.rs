//! Puts an executor together with its package source: the one place that knows both, so
//! the sandbox reaches packages only through `sandbox::package_source::PackageSource`.

use std::path::Path;
use std::sync::Arc;

use crate::config::{PackagePolicy, PackageSettings, PoolSettings, SandboxSettings, Settings};
use crate::container::engine::Containers;
use crate::container::reaper;
use crate::container::retirer::Retirer;
use crate::packages::{PackageManager, PackagesError};
use crate::sandbox::package_source::PackageSource;
use crate::sandbox::{Executor, ExecutorError};

#[derive(Debug, thiserror::Error)]
pub enum AssemblyError {
    #[error(transparent)]
    Executor(#[from] ExecutorError),
    #[error(transparent)]
    Packages(#[from] PackagesError),
}

/// An executor and, when installs are on, the package manager it uses.
pub type WithPackages<E> = (Executor<E>, Option<Arc<PackageManager<E>>>);

/// An executor from its settings, with a package manager when the policy is not `off`;
/// the manager is returned too, for callers that look at its cache.
pub fn executor_with_packages<E: Containers + 'static>(
    engine: Arc<E>,
    sandbox: &SandboxSettings,
    pool: &PoolSettings,
    packages: &PackageSettings,
    data_dir: &Path,
) -> Result<WithPackages<E>, AssemblyError> {
    let retirer = Arc::new(Retirer::default());
    let manager = match packages.package_policy {
        PackagePolicy::Off => None,
        _ => Some(Arc::new(
            PackageManager::new(
                engine.clone(),
                packages,
                &sandbox.sandbox_image,
                data_dir,
                reaper::current_owner(),
            )?
            .with_retirer(retirer.clone()),
        )),
    };
    let source = manager
        .clone()
        .map(|manager| manager as Arc<dyn PackageSource>);
    let executor = Executor::new(engine, sandbox, pool, data_dir, source, retirer)?;
    Ok((executor, manager))
}

/// `executor_with_packages` without the manager.
pub fn executor<E: Containers + 'static>(
    engine: Arc<E>,
    sandbox: &SandboxSettings,
    pool: &PoolSettings,
    packages: &PackageSettings,
    data_dir: &Path,
) -> Result<Executor<E>, AssemblyError> {
    executor_with_packages(engine, sandbox, pool, packages, data_dir).map(|(executor, _)| executor)
}

/// `executor` from whole settings, as benchmarks and tests state them.
pub fn from_settings<E: Containers + 'static>(
    engine: Arc<E>,
    settings: &Settings,
) -> Result<Executor<E>, AssemblyError> {
    executor(
        engine,
        &settings.sandbox,
        &settings.pool,
        &settings.packages,
        &settings.data_dir,
    )
}
