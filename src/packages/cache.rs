//! The shared package cache on the host: one directory per distribution,
//! `<root>/<distribution>/site`, mounted read-only into every run container.
//!
//! The installer copies finished installations into a fresh staging directory of its own
//! (within its size budget); each is moved into the cache with one rename, so a run never
//! sees half of one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::PackagesError;
use super::eviction::CacheEntry;

/// Where the cache is visible inside run containers.
pub const PACKAGES_MOUNT: &str = "/opt/codebox-packages";
const LAST_USED: &str = ".last_used";

#[derive(Debug, Clone)]
pub struct PackageCache {
    root: PathBuf,
    staging_root: PathBuf,
}

/// A directory the installer may write into; removed when dropped.
#[derive(Debug)]
pub struct Staging {
    path: PathBuf,
}

impl Staging {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What one staged distribution will take in the cache, counted as `entries` counts.
    pub fn bytes_of(&self, distribution: &str) -> u64 {
        tree_size(&self.path.join(distribution))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn io_error(path: &Path, source: std::io::Error) -> PackagesError {
    PackagesError::Cache {
        path: path.to_path_buf(),
        source,
    }
}

impl PackageCache {
    /// `data_dir/packages` (the cache) and `data_dir/packages-staging`: the same file system,
    /// so adopting an installation is a rename.
    pub fn open(data_dir: &Path) -> Result<PackageCache, PackagesError> {
        let data_dir = std::path::absolute(data_dir).map_err(|e| io_error(data_dir, e))?;
        let cache = PackageCache {
            root: data_dir.join("packages"),
            staging_root: data_dir.join("packages-staging"),
        };
        for dir in [&cache.root, &cache.staging_root] {
            std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        }
        // Runs see the cache read-only and reach their packages by exact path; without read
        // permission they cannot list it, so one user's run does not learn which packages
        // others installed, or when they last used them.
        std::fs::set_permissions(&cache.root, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| io_error(&cache.root, e))?;
        Ok(cache)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory the runner adds to `sys.path` for one distribution.
    pub fn site_in_sandbox(distribution: &str) -> String {
        format!("{PACKAGES_MOUNT}/{distribution}/site")
    }

    pub fn contains(&self, distribution: &str) -> bool {
        self.root.join(distribution).join("site").is_dir()
    }

    /// Records a use, for least-recently-used eviction.
    pub fn touch(&self, distribution: &str) -> Result<(), PackagesError> {
        let marker = self.root.join(distribution).join(LAST_USED);
        std::fs::File::create(&marker)
            .and_then(|file| file.set_modified(SystemTime::now()))
            .map_err(|e| io_error(&marker, e))
    }

    /// A fresh staging directory, writable by the sandbox uid (the installer runs as it).
    pub fn staging(&self) -> Result<Staging, PackagesError> {
        let path = self
            .staging_root
            .join(uuid::Uuid::new_v4().simple().to_string());
        std::fs::create_dir(&path).map_err(|e| io_error(&path, e))?;
        let staging = Staging { path };
        set_world_writable(staging.path()).map_err(|e| io_error(staging.path(), e))?;
        Ok(staging)
    }

    /// Moves a finished installation from staging into the cache. False when another
    /// process installed it meanwhile (its copy is kept).
    pub fn adopt(&self, staging: &Staging, distribution: &str) -> Result<bool, PackagesError> {
        let source = staging.path().join(distribution);
        if !source.join("site").is_dir() {
            return Err(PackagesError::Install {
                distribution: distribution.to_string(),
                modules: Vec::new(),
                log: "the installer reported success but left no site directory".to_string(),
            });
        }
        let target = self.root.join(distribution);
        match std::fs::rename(&source, &target) {
            Ok(()) => Ok(true),
            Err(_) if self.contains(distribution) => Ok(false),
            Err(err) => Err(io_error(&target, err)),
        }
    }

    /// Every cached distribution with its size and last use.
    pub fn entries(&self) -> Result<Vec<CacheEntry>, PackagesError> {
        let mut entries = Vec::new();
        let dir = std::fs::read_dir(&self.root).map_err(|e| io_error(&self.root, e))?;
        for item in dir {
            let item = item.map_err(|e| io_error(&self.root, e))?;
            let path = item.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.is_dir() {
                continue;
            }
            let last_used = std::fs::metadata(path.join(LAST_USED))
                .and_then(|m| m.modified())
                .or_else(|_| meta.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            entries.push(CacheEntry {
                distribution: item.file_name().to_string_lossy().into_owned(),
                bytes: tree_size(&path),
                last_used,
            });
        }
        entries.sort_by(|a, b| a.distribution.cmp(&b.distribution));
        Ok(entries)
    }

    /// Trims the cache to `max_bytes`, least recently used first, sparing `in_use`; the
    /// distributions removed.
    pub fn prune(
        &self,
        max_bytes: u64,
        in_use: &std::collections::HashSet<String>,
    ) -> Result<Vec<String>, PackagesError> {
        let evicted = super::eviction::evictions(&self.entries()?, max_bytes, in_use);
        for dist in &evicted {
            self.remove(dist)?;
        }
        Ok(evicted)
    }

    /// Removes one distribution: renamed out of the cache first, so a run never finds half
    /// of it, then deleted.
    pub fn remove(&self, distribution: &str) -> Result<(), PackagesError> {
        let source = self.root.join(distribution);
        let trash = self
            .staging_root
            .join(format!("trash-{}", uuid::Uuid::new_v4().simple()));
        std::fs::rename(&source, &trash).map_err(|e| io_error(&source, e))?;
        std::fs::remove_dir_all(&trash).map_err(|e| io_error(&trash, e))
    }
}

/// Bytes under a directory; symlinks are counted as links, never followed.
fn tree_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(items) = std::fs::read_dir(&dir) else {
            continue;
        };
        for item in items.flatten() {
            let Ok(meta) = std::fs::symlink_metadata(item.path()) else {
                continue;
            };
            if meta.is_dir() {
                pending.push(item.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

#[cfg(unix)]
fn set_world_writable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))
}

#[cfg(not(unix))]
fn set_world_writable(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_install(cache: &PackageCache, staging: &Staging, dist: &str, bytes: usize) {
        let site = staging.path().join(dist).join("site");
        std::fs::create_dir_all(&site).unwrap();
        std::fs::write(site.join("mod.py"), vec![b'x'; bytes]).unwrap();
        assert!(cache.adopt(staging, dist).unwrap());
    }

    #[test]
    fn adopted_installations_are_listed_sized_and_removable() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PackageCache::open(dir.path()).unwrap();
        let staging = cache.staging().unwrap();
        fake_install(&cache, &staging, "alpha", 1000);
        fake_install(&cache, &staging, "beta", 10);
        cache.touch("alpha").unwrap();
        assert!(cache.contains("alpha"));
        let entries = cache.entries().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].distribution, "alpha");
        assert_eq!(entries[0].bytes, 1000);
        cache.remove("alpha").unwrap();
        assert!(!cache.contains("alpha"));
        let staging_path = staging.path().to_path_buf();
        drop(staging);
        assert!(!staging_path.exists());
    }

    #[test]
    fn a_second_adoption_keeps_the_first_copy() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PackageCache::open(dir.path()).unwrap();
        let first = cache.staging().unwrap();
        fake_install(&cache, &first, "alpha", 5);
        let second = cache.staging().unwrap();
        let site = second.path().join("alpha").join("site");
        std::fs::create_dir_all(&site).unwrap();
        assert!(!cache.adopt(&second, "alpha").unwrap());
        assert_eq!(cache.entries().unwrap()[0].bytes, 5);
    }

    #[test]
    fn success_without_a_site_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PackageCache::open(dir.path()).unwrap();
        let staging = cache.staging().unwrap();
        assert!(cache.adopt(&staging, "ghost").is_err());
    }
}
