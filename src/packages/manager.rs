//! Resolves the modules a run is missing into cached distributions: policy first, then the
//! cache, then one installer container for whatever is still missing. Concurrent runs that
//! miss the same distribution wait for one installation; a name the index lacked minutes
//! ago fails at once.
//!
//! Host disk is bounded at every step: the installer copies out at most
//! `min(PACKAGE_INSTALL_MAX_MB, room left in the cache beside what runs are using)`, and an
//! installation joins the cache only when, after evicting what no run uses, the cache stays
//! within PACKAGE_CACHE_MAX_MB. Installers of different distributions may run side by side,
//! so before admission the staging area can briefly hold one budget per running installer;
//! never more.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::PackagesError;
use super::cache::{PackageCache, Staging};
use super::egress_rules::Upstreams;
use super::eviction::{admission, pinned_bytes};
use super::failure::{InstallLimits, installer_failure};
use super::installer::{InstallOutcome, run_installer};
use super::installer_spec::InstallerSpec;
use super::names::distribution_for;
use super::not_found::{NotOnIndex, REMEMBER_FOR};
use super::policy::{Decision, Policy};
use crate::config::PackageSettings;
use crate::container::engine::Containers;
use crate::container::retirer::Retirer;
use crate::sandbox::package_source::{PackageSource, Prepared, Resolution, ResolveError};

const MIB: u64 = 1024 * 1024;

pub struct PackageManager<E: Containers + 'static> {
    engine: Arc<E>,
    policy: Policy,
    cache: PackageCache,
    image: String,
    owner: String,
    install_timeout: Duration,
    install_memory_mb: u64,
    index_url: Option<String>,
    /// Where the installer's traffic may go.
    upstreams: Upstreams,
    extra_ca_file: Option<std::path::PathBuf>,
    install_max_mb: u64,
    cache_max_mb: u64,
    max_cache_bytes: u64,
    /// One admission into the cache at a time: each measures, evicts and adopts as a whole.
    admission: Mutex<()>,
    /// Names the index lacked lately: runs that import them fail at once, with the same
    /// words, and start no installer.
    not_on_index: Mutex<NotOnIndex>,
    install_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    in_use: Arc<Mutex<HashMap<String, usize>>>,
    /// Removes an installer container whose run was cancelled.
    retirer: Arc<Retirer>,
}

/// What one installer container may copy to the host.
#[derive(Debug)]
struct CopyBudget {
    bytes: u64,
    limits: InstallLimits,
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
            upstreams: Upstreams::from_settings(settings),
            extra_ca_file: settings
                .sandbox_extra_ca_file
                .as_ref()
                .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())),
            install_max_mb: settings.package_install_max_mb,
            cache_max_mb: settings.package_cache_max_mb,
            max_cache_bytes: settings.package_cache_max_mb.saturating_mul(MIB),
            admission: Mutex::new(()),
            not_on_index: Mutex::new(NotOnIndex::new(REMEMBER_FOR)),
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
                .map(|d| self.cache.site_in_sandbox(d))
                .collect(),
            install_ms,
            cached: distributions
                .iter()
                .filter(|d| !installed.contains(d))
                .cloned()
                .collect(),
            installed,
            lease: Box::new(lease),
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
        let modules_of = |dist: &str| imports.get(dist).cloned().unwrap_or_default();
        for dist in &missing {
            if let Some(err) = self.recall_not_on_index(dist, modules_of(dist))? {
                tracing::info!(distribution = %dist, "not on the index a moment ago");
                return Err(err);
            }
        }
        let staging = self.cache.staging()?;
        let budget = self.copy_budget()?;
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let spec = InstallerSpec {
            image: self.image.clone(),
            distributions: missing.clone(),
            staging_dir: staging.path().to_path_buf(),
            memory_mb: self.install_memory_mb,
            staging_mb: self.install_max_mb,
            copy_budget_bytes: budget.bytes,
            index_url: self.index_url.clone(),
            upstreams: self.upstreams.clone(),
            extra_ca_file: self.extra_ca_file.clone(),
            run_id: run_id.clone(),
            owner: self.owner.clone(),
        };
        let started = Instant::now();
        tracing::info!(run_id = %run_id, distributions = ?missing, "installing packages");
        let outcomes =
            run_installer(&self.engine, &self.retirer, &spec, self.install_timeout).await?;
        // Every distribution that did install is kept, even when another one failed: the
        // next run that needs it is spared the download.
        let mut installed = Vec::new();
        let mut first_error = None;
        for dist in &missing {
            let modules = modules_of(dist);
            let concluded = match outcomes.iter().find(|o| &o.distribution == dist) {
                Some(outcome) => self.conclude(&staging, dist, modules, outcome, &budget),
                None => Err(PackagesError::Install {
                    distribution: dist.clone(),
                    modules,
                    log: "the installer stopped before reaching it".to_string(),
                }),
            };
            match concluded {
                Ok(()) => installed.push(dist.clone()),
                Err(err) => {
                    tracing::warn!(distribution = %dist, error = %err, "package install failed");
                    first_error.get_or_insert(err);
                }
            }
        }
        if let Some(err) = first_error {
            return Err(err);
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

    /// What became of one distribution in the installer, as an error the user can act on.
    fn conclude(
        &self,
        staging: &Staging,
        dist: &str,
        modules: Vec<String>,
        outcome: &InstallOutcome,
        budget: &CopyBudget,
    ) -> Result<(), PackagesError> {
        let Some(err) = installer_failure(dist, &modules, outcome, &budget.limits, &self.image)
        else {
            return self.admit(staging, dist, modules);
        };
        if matches!(err, PackagesError::NotOnIndex { .. }) {
            self.not_on_index
                .lock()
                .map_err(|_| PackagesError::Poisoned)?
                .remember(dist, &outcome.log, Instant::now());
        }
        Err(err)
    }

    /// The error a recent "not on the index" for `dist` would give again, if there was one.
    fn recall_not_on_index(
        &self,
        dist: &str,
        modules: Vec<String>,
    ) -> Result<Option<PackagesError>, PackagesError> {
        let memory = self
            .not_on_index
            .lock()
            .map_err(|_| PackagesError::Poisoned)?;
        Ok(memory
            .recall(dist, Instant::now())
            .map(|log| PackagesError::NotOnIndex {
                distribution: dist.to_string(),
                modules,
                log: log.to_string(),
            }))
    }

    /// How much the installer may copy out: the install limit, or less when the cache
    /// cannot hold that much beside what running code is using.
    fn copy_budget(&self) -> Result<CopyBudget, PackagesError> {
        let in_use_bytes = pinned_bytes(&self.cache.entries()?, &self.in_use_set()?);
        let room = self.max_cache_bytes.saturating_sub(in_use_bytes);
        let install_max = self.install_max_mb.saturating_mul(MIB);
        Ok(CopyBudget {
            bytes: room.min(install_max),
            limits: InstallLimits {
                install_max_mb: self.install_max_mb,
                cache_max_mb: self.cache_max_mb,
                limited_by_cache: room < install_max,
                in_use_bytes,
            },
        })
    }

    /// Moves a staged installation into the cache once the cache, after evicting what no
    /// run is using, has room for it; otherwise it is refused and its staging deleted.
    fn admit(
        &self,
        staging: &Staging,
        dist: &str,
        modules: Vec<String>,
    ) -> Result<(), PackagesError> {
        let _admitting = self.admission.lock().map_err(|_| PackagesError::Poisoned)?;
        let bytes = staging.bytes_of(dist);
        let entries = self.cache.entries()?;
        let in_use = self.in_use_set()?;
        let Some(evicted) = admission(&entries, bytes, self.max_cache_bytes, &in_use) else {
            return Err(PackagesError::CacheFull {
                distribution: dist.to_string(),
                modules,
                bytes,
                in_use_bytes: pinned_bytes(&entries, &in_use),
                limit_mb: self.cache_max_mb,
            });
        };
        for old in &evicted {
            self.cache.remove(old)?;
            tracing::info!(distribution = %old, "package evicted from the cache");
        }
        self.cache.adopt(staging, dist)?;
        Ok(())
    }

    fn in_use_set(&self) -> Result<HashSet<String>, PackagesError> {
        Ok(self
            .in_use
            .lock()
            .map_err(|_| PackagesError::Poisoned)?
            .keys()
            .cloned()
            .collect())
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
        let in_use = self.in_use_set()?;
        let evicted = self.cache.prune(self.max_cache_bytes, &in_use)?;
        for dist in &evicted {
            tracing::info!(distribution = %dist, "package evicted from the cache");
        }
        Ok(evicted)
    }
}

impl<E: Containers + 'static> PackageSource for PackageManager<E> {
    fn host_dir(&self) -> std::path::PathBuf {
        self.cache.root().to_path_buf()
    }

    fn resolve<'a>(
        &'a self,
        modules: &'a [String],
    ) -> futures_util::future::BoxFuture<'a, Result<Resolution, ResolveError>> {
        Box::pin(async move {
            PackageManager::resolve(self, modules)
                .await
                .map_err(ResolveError::from)
        })
    }
}
