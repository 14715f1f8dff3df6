//! Resolves the modules a run is missing into cached distributions: policy first, then the
//! cache, then one installer container for whatever is still missing. Concurrent runs that
//! miss the same distribution wait for one installation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::PackagesError;
use super::cache::PackageCache;
use super::failure::install_failure;
use super::installer::run_installer;
use super::installer_spec::InstallerSpec;
use super::names::distribution_for;
use super::policy::{Decision, Policy};
use crate::config::PackageSettings;
use crate::sandbox::engine::Containers;
use crate::sandbox::retirer::Retirer;

pub struct PackageManager<E: Containers + 'static> {
    engine: Arc<E>,
    policy: Policy,
    cache: PackageCache,
    image: String,
    owner: String,
    install_timeout: Duration,
    install_memory_mb: u64,
    index_url: Option<String>,
    extra_ca_file: Option<std::path::PathBuf>,
    max_cache_bytes: u64,
    install_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    in_use: Arc<Mutex<HashMap<String, usize>>>,
    /// Removes an installer container whose run was cancelled.
    retirer: Arc<Retirer>,
}

/// What a run needs before its code starts.
#[derive(Debug)]
pub enum Resolution {
    Ready(Prepared),
    /// Not run: the policy refused a distribution. The message names it.
    Refused(String),
}

#[derive(Debug)]
pub struct Prepared {
    /// Directories inside the sandbox to add to the code's path.
    pub site_dirs: Vec<String>,
    pub install_ms: f64,
    pub installed: Vec<String>,
    pub cached: Vec<String>,
    /// Keeps these distributions from eviction while the run lasts.
    pub lease: Lease,
}

#[derive(Debug)]
pub struct Lease {
    distributions: Vec<String>,
    in_use: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Ok(mut in_use) = self.in_use.lock() else {
            return;
        };
        for dist in &self.distributions {
            if let Some(count) = in_use.get_mut(dist) {
                *count -= 1;
                if *count == 0 {
                    in_use.remove(dist);
                }
            }
        }
    }
}

impl<E: Containers + 'static> PackageManager<E> {
    pub fn new(
        engine: Arc<E>,
        settings: &PackageSettings,
        image: &str,
        data_dir: &std::path::Path,
        owner: String,
    ) -> Result<PackageManager<E>, PackagesError> {
        Ok(PackageManager {
            engine,
            policy: Policy::from_settings(settings),
            cache: PackageCache::open(data_dir)?,
            image: image.to_string(),
            owner,
            install_timeout: Duration::from_secs_f64(settings.package_install_timeout),
            install_memory_mb: settings.package_install_memory_mb,
            index_url: settings.pip_index_url.clone(),
            extra_ca_file: settings
                .sandbox_extra_ca_file
                .as_ref()
                .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())),
            max_cache_bytes: settings.package_cache_max_mb.saturating_mul(1024 * 1024),
            install_locks: Mutex::new(HashMap::new()),
            in_use: Arc::new(Mutex::new(HashMap::new())),
            retirer: Arc::new(Retirer::default()),
        })
    }

    /// Shares the executor's retirer, so its shutdown also waits for the removal of
    /// installer containers whose run was cancelled.
    pub fn with_retirer(mut self, retirer: Arc<Retirer>) -> PackageManager<E> {
        self.retirer = retirer;
        self
    }

    pub fn cache(&self) -> &PackageCache {
        &self.cache
    }

    /// `modules` are top-level import names the runner could not find.
    pub async fn resolve(&self, modules: &[String]) -> Result<Resolution, PackagesError> {
        let started = Instant::now();
        // Each distribution with the imports that need it: errors name what the code wrote.
        let mut imports: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for module in modules {
            if let Some(dist) = distribution_for(module) {
                let names = imports.entry(dist).or_default();
                if !names.contains(module) {
                    names.push(module.clone());
                }
            }
        }
        let distributions: Vec<String> = imports.keys().cloned().collect();
        for dist in &distributions {
            if let Decision::Refused(reason) = self.policy.decide(dist) {
                tracing::info!(distribution = %dist, "package refused by policy");
                return Ok(Resolution::Refused(reason));
            }
        }
        let lease = self.lease(&distributions);
        let cached: Vec<String> = distributions
            .iter()
            .filter(|d| self.cache.contains(d))
            .cloned()
            .collect();
        let mut installed = Vec::new();
        if cached.len() < distributions.len() {
            installed = self.install_missing(&imports).await?;
        }
        for dist in &distributions {
            self.cache.touch(dist)?;
        }
        if !installed.is_empty() {
            self.evict()?;
        }
        let install_ms = if installed.is_empty() && cached.len() == distributions.len() {
            0.0
        } else {
            started.elapsed().as_secs_f64() * 1000.0
        };
        Ok(Resolution::Ready(Prepared {
            site_dirs: distributions
                .iter()
                .map(|d| PackageCache::site_in_sandbox(d))
                .collect(),
            install_ms,
            cached: distributions
                .iter()
                .filter(|d| !installed.contains(d))
                .cloned()
                .collect(),
            installed,
            lease,
        }))
    }

    /// Installs what is still missing once this process holds every distribution's lock
    /// (taken in sorted order, so two runs never wait on each other crosswise).
    async fn install_missing(
        &self,
        imports: &BTreeMap<String, Vec<String>>,
    ) -> Result<Vec<String>, PackagesError> {
        let mut held = Vec::new();
        for dist in imports.keys() {
            let lock = {
                let mut locks = self
                    .install_locks
                    .lock()
                    .map_err(|_| PackagesError::Poisoned)?;
                locks.entry(dist.clone()).or_default().clone()
            };
            held.push(lock.lock_owned().await);
        }
        let missing: Vec<String> = imports
            .keys()
            .filter(|d| !self.cache.contains(d))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(missing);
        }
        let staging = self.cache.staging()?;
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let spec = InstallerSpec {
            image: self.image.clone(),
            distributions: missing.clone(),
            staging_dir: staging.path().to_path_buf(),
            memory_mb: self.install_memory_mb,
            index_url: self.index_url.clone(),
            extra_ca_file: self.extra_ca_file.clone(),
            run_id: run_id.clone(),
            owner: self.owner.clone(),
        };
        let started = Instant::now();
        tracing::info!(run_id = %run_id, distributions = ?missing, "installing packages");
        let outcomes =
            run_installer(&self.engine, &self.retirer, &spec, self.install_timeout).await?;
        let mut installed = Vec::new();
        for dist in &missing {
            let modules = imports.get(dist).map(Vec::as_slice).unwrap_or_default();
            match outcomes.iter().find(|o| &o.distribution == dist) {
                Some(outcome) if outcome.ok => {
                    self.cache.adopt(&staging, dist)?;
                    installed.push(dist.clone());
                }
                Some(outcome) => {
                    tracing::warn!(distribution = %dist, "package install failed");
                    return Err(install_failure(dist, modules, &outcome.log));
                }
                None => {
                    return Err(PackagesError::Install {
                        distribution: dist.clone(),
                        modules: modules.to_vec(),
                        log: "the installer stopped before reaching it".to_string(),
                    });
                }
            }
        }
        tracing::info!(
            run_id = %run_id,
            distributions = ?installed,
            install_ms = started.elapsed().as_secs_f64() * 1000.0,
            "packages installed"
        );
        drop(held);
        Ok(installed)
    }

    fn lease(&self, distributions: &[String]) -> Lease {
        if let Ok(mut in_use) = self.in_use.lock() {
            for dist in distributions {
                *in_use.entry(dist.clone()).or_default() += 1;
            }
        }
        Lease {
            distributions: distributions.to_vec(),
            in_use: self.in_use.clone(),
        }
    }

    /// Trims the cache to its size limit, least recently used first, sparing leased entries.
    pub fn evict(&self) -> Result<Vec<String>, PackagesError> {
        let in_use: HashSet<String> = self
            .in_use
            .lock()
            .map_err(|_| PackagesError::Poisoned)?
            .keys()
            .cloned()
            .collect();
        let evicted = self.cache.prune(self.max_cache_bytes, &in_use)?;
        for dist in &evicted {
            tracing::info!(distribution = %dist, "package evicted from the cache");
        }
        Ok(evicted)
    }
}
