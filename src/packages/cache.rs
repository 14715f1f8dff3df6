//! The shared package cache on the host: one directory per distribution,
//! `<root>/<keyed name>/site` (see `entry_names`), mounted read-only into every run
//! container. Each directory also holds `.distribution` (its name, for listing and
//! eviction) and `.last_used`.
//!
//! The installer copies finished installations into a fresh staging directory of its own
//! (within its size budget); each is moved into the cache with one rename, so a run never
//! sees half of one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::PackagesError;
use super::entry_names::EntryNames;
use super::eviction::CacheEntry;

/// Where the cache is visible inside run containers.
pub const PACKAGES_MOUNT: &str = "/opt/codebox-packages";
const LAST_USED: &str = ".last_used";
const DISTRIBUTION: &str = ".distribution";

#[derive(Debug, Clone)]
pub struct PackageCache {
    root: PathBuf,
    staging_root: PathBuf,
    names: EntryNames,
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

    /// What one staged distribution will take in the cache (its `site`), counted as `entries` counts.
    pub fn bytes_of(&self, distribution: &str) -> u64 {
        tree_size(&self.path.join(distribution).join("site"))
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
        let root = data_dir.join("packages");
        let staging_root = data_dir.join("packages-staging");
        for dir in [&root, &staging_root] {
            std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        }
        let names = EntryNames::open(&data_dir).map_err(|e| io_error(&data_dir, e))?;
        let cache = PackageCache {
            root,
            staging_root,
            names,
        };
        cache.rename_legacy_entries()?;
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
    pub fn site_in_sandbox(&self, distribution: &str) -> String {
        format!("{PACKAGES_MOUNT}/{}/site", self.names.name_of(distribution))
    }

    /// Where one distribution is, or would be, on the host.
    pub fn entry_path(&self, distribution: &str) -> PathBuf {
        self.root.join(self.names.name_of(distribution))
    }

    pub fn contains(&self, distribution: &str) -> bool {
        self.entry_path(distribution).join("site").is_dir()
    }

    /// Records a use, for least-recently-used eviction.
    pub fn touch(&self, distribution: &str) -> Result<(), PackagesError> {
        let marker = self.entry_path(distribution).join(LAST_USED);
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
        // Written by the host after the installer finished: whatever the installer left
        // under that name (a link, say) is removed, never written through.
        write_new(&source.join(DISTRIBUTION), distribution)?;
        let target = self.entry_path(distribution);
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
            let Ok(distribution) = std::fs::read_to_string(path.join(DISTRIBUTION)) else {
                // Unnamed, it could never be found or evicted: a leftover, removed.
                self.discard(&path)?;
                continue;
            };
            let last_used = std::fs::metadata(path.join(LAST_USED))
                .and_then(|m| m.modified())
                .or_else(|_| meta.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            entries.push(CacheEntry {
                distribution,
                bytes: tree_size(&path.join("site")),
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
        self.discard(&self.entry_path(distribution))
    }

    fn discard(&self, source: &Path) -> Result<(), PackagesError> {
        let trash = self
            .staging_root
            .join(format!("trash-{}", uuid::Uuid::new_v4().simple()));
        std::fs::rename(source, &trash).map_err(|e| io_error(source, e))?;
        std::fs::remove_dir_all(&trash).map_err(|e| io_error(&trash, e))
    }

    /// Directories of a codebox that named them after their distribution get keyed names
    /// (or go, if the keyed one exists), so none stays where a run could guess it.
    fn rename_legacy_entries(&self) -> Result<(), PackagesError> {
        let dir = std::fs::read_dir(&self.root).map_err(|e| io_error(&self.root, e))?;
        for item in dir.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            let path = item.path();
            let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            if !is_dir || EntryNames::is_entry_name(&name) {
                continue;
            }
            if self.contains(&name) || !path.join("site").is_dir() {
                self.discard(&path)?;
                continue;
            }
            write_new(&path.join(DISTRIBUTION), &name)?;
            let target = self.entry_path(&name);
            std::fs::rename(&path, &target).map_err(|e| io_error(&target, e))?;
        }
        Ok(())
    }
}

/// Creates `path` afresh with `text`, after removing whatever was there (never following it).
fn write_new(path: &Path, text: &str) -> Result<(), PackagesError> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(io_error(path, err)),
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, text.as_bytes()))
        .map_err(|e| io_error(path, e))
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
    fn entries_have_keyed_names_and_are_listed_by_distribution() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PackageCache::open(dir.path()).unwrap();
        let staging = cache.staging().unwrap();
        fake_install(&cache, &staging, "pandas", 10);
        assert!(
            !dir.path().join("packages/pandas").exists(),
            "no guessable name"
        );
        let entry = cache.entry_path("pandas");
        assert!(entry.join("site/mod.py").is_file());
        let name = entry.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(
            cache.site_in_sandbox("pandas"),
            format!("{PACKAGES_MOUNT}/{name}/site")
        );
        assert_eq!(cache.entries().unwrap()[0].distribution, "pandas");
    }

    #[test]
    fn directories_named_after_their_distribution_are_renamed_and_leftovers_go() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = dir.path().join("packages/requests/site");
        std::fs::create_dir_all(&legacy).unwrap();
        std::fs::write(legacy.join("requests.py"), "x").unwrap();
        std::fs::create_dir_all(dir.path().join("packages/half-done")).unwrap();
        let cache = PackageCache::open(dir.path()).unwrap();
        assert!(cache.contains("requests"));
        assert!(!dir.path().join("packages/requests").exists());
        assert!(!dir.path().join("packages/half-done").exists());
        std::fs::create_dir_all(dir.path().join("packages/0123456789abcdef0123456789abcdef"))
            .unwrap();
        let entries = cache.entries().unwrap();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].distribution, "requests");
        assert!(
            !dir.path()
                .join("packages/0123456789abcdef0123456789abcdef")
                .exists(),
            "an unnamed directory is a leftover"
        );
    }

    #[test]
    fn success_without_a_site_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PackageCache::open(dir.path()).unwrap();
        let staging = cache.staging().unwrap();
        assert!(cache.adopt(&staging, "ghost").is_err());
    }
}
