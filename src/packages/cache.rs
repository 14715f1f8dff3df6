//! The shared package cache on the host: one directory per distribution,
//! `<root>/<keyed name>/site` (see `entry_names`) and nothing else, mounted read-only into
//! every run container; what the host knows of each (its name, its last use) is kept where
//! runs cannot see it.
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
pub use crate::container::PACKAGES_MOUNT;
/// Longer than any installation may take (PACKAGE_INSTALL_TIMEOUT is at most a day).
const STALE_STAGING: std::time::Duration = std::time::Duration::from_secs(25 * 3600);

#[derive(Debug, Clone)]
pub struct PackageCache {
    root: PathBuf,
    staging_root: PathBuf,
    /// Host-only bookkeeping, never mounted: `<meta_root>/<entry name>` holds the
    /// distribution's name, and its modification time is the entry's last use.
    meta_root: PathBuf,
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
        let source = self.path.join(distribution);
        if !is_real_dir(&source) {
            return 0;
        }
        tree_size(&source.join("site"))
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
    /// `data_dir/packages` (the cache), `data_dir/packages-staging` (the same file system, so
    /// adopting an installation is a rename) and `data_dir/packages-meta` (never mounted).
    pub fn open(data_dir: &Path) -> Result<PackageCache, PackagesError> {
        let data_dir = std::path::absolute(data_dir).map_err(|e| io_error(data_dir, e))?;
        let root = data_dir.join("packages");
        let staging_root = data_dir.join("packages-staging");
        let meta_root = data_dir.join("packages-meta");
        for dir in [&root, &staging_root, &meta_root] {
            std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        }
        // Only codebox (and dockerd, as root, for the installer's bind mount) goes in here:
        // local users must not reach the installers' world-writable directories and sockets.
        std::fs::set_permissions(&staging_root, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io_error(&staging_root, e))?;
        let names = EntryNames::open(&data_dir).map_err(|e| io_error(&data_dir, e))?;
        let cache = PackageCache {
            root,
            staging_root,
            meta_root,
            names,
        };
        cache.tidy()?;
        cache.tidy_staging();
        // Runs see the cache read-only and reach their packages by exact path; without read
        // permission they cannot list it, and the keyed names cannot be guessed.
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

    fn meta_path(&self, entry_name: &str) -> PathBuf {
        self.meta_root.join(entry_name)
    }

    pub fn contains(&self, distribution: &str) -> bool {
        let entry = self.entry_path(distribution);
        is_real_dir(&entry) && is_real_dir(&entry.join("site"))
    }

    /// Records a use, for least-recently-used eviction, where runs cannot see it.
    pub fn touch(&self, distribution: &str) -> Result<(), PackagesError> {
        let meta = self.meta_path(&self.names.name_of(distribution));
        match std::fs::OpenOptions::new().write(true).open(&meta) {
            Ok(file) => file
                .set_modified(SystemTime::now())
                .map_err(|e| io_error(&meta, e)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => self.write_meta(distribution),
            Err(err) => Err(io_error(&meta, err)),
        }
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
        // Real directories only: a link the installer left must never carry the host's
        // walks and renames elsewhere.
        if !is_real_dir(&source) || !is_real_dir(&source.join("site")) {
            return Err(PackagesError::Install {
                distribution: distribution.to_string(),
                modules: Vec::new(),
                log: "the installer reported success but left no site directory".to_string(),
            });
        }
        // Only `site` enters the cache, inside a directory the host makes: nothing else the
        // installer left beside it comes along.
        let entry = staging
            .path()
            .join(format!(".entry-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&entry).map_err(|e| io_error(&entry, e))?;
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io_error(&entry, e))?;
        std::fs::rename(source.join("site"), entry.join("site"))
            .map_err(|e| io_error(&entry, e))?;
        // Named before it is visible, so no listing ever finds it unnamed; an entry already
        // there (another process's) keeps the name it has.
        if self.contains(distribution) {
            return Ok(false);
        }
        self.write_meta(distribution)?;
        let target = self.entry_path(distribution);
        match std::fs::rename(&entry, &target) {
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
            if !is_real_dir(&path) {
                continue;
            }
            let meta = self.meta_path(&item.file_name().to_string_lossy());
            // One without its name is being removed, or is a leftover `tidy` removes.
            let Ok(distribution) = std::fs::read_to_string(&meta) else {
                continue;
            };
            let last_used = std::fs::metadata(&meta)
                .and_then(|m| m.modified())
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
    /// of it, then deleted, then its name.
    pub fn remove(&self, distribution: &str) -> Result<(), PackagesError> {
        self.remove_entry(&self.names.name_of(distribution))
    }

    /// One entry by its directory name, then its name file.
    fn remove_entry(&self, entry_name: &str) -> Result<(), PackagesError> {
        self.discard(&self.root.join(entry_name))?;
        remove_if_present(&self.meta_path(entry_name))
    }

    /// Another process may have removed it first: gone is gone.
    fn discard(&self, source: &Path) -> Result<(), PackagesError> {
        let trash = self
            .staging_root
            .join(format!("trash-{}", uuid::Uuid::new_v4().simple()));
        match std::fs::rename(source, &trash) {
            Ok(()) => std::fs::remove_dir_all(&trash).map_err(|e| io_error(&trash, e)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io_error(source, err)),
        }
    }

    /// At open: directories of a codebox that named them after their distribution get keyed
    /// names (or go, if the keyed one exists), so none stays where a run could guess it;
    /// directories no name of this key leads to (a replaced key, a crash) go.
    fn tidy(&self) -> Result<(), PackagesError> {
        let dir = std::fs::read_dir(&self.root).map_err(|e| io_error(&self.root, e))?;
        for item in dir.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            let path = item.path();
            if !is_real_dir(&path) {
                remove_if_present(&path)?;
                continue;
            }
            if EntryNames::is_entry_name(&name) {
                let named = std::fs::read_to_string(self.meta_path(&name));
                if !named.is_ok_and(|dist| self.names.name_of(&dist) == name) {
                    self.remove_entry(&name)?;
                }
                continue;
            }
            if self.contains(&name) || !is_real_dir(&path.join("site")) {
                self.discard(&path)?;
                continue;
            }
            self.write_meta(&name)?;
            let target = self.entry_path(&name);
            match std::fs::rename(&path, &target) {
                Ok(()) => {}
                // Another process renamed it first.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) if self.contains(&name) => self.discard(&path)?,
                Err(err) => return Err(io_error(&target, err)),
            }
        }
        Ok(())
    }

    /// Writes a distribution's name file whole or not at all (a temporary file renamed over
    /// it), so another process never reads a half-written or missing one.
    fn write_meta(&self, distribution: &str) -> Result<(), PackagesError> {
        let meta = self.meta_path(&self.names.name_of(distribution));
        let temp = tempfile::NamedTempFile::new_in(&self.meta_root)
            .map_err(|e| io_error(&self.meta_root, e))?;
        std::io::Write::write_all(&mut temp.as_file(), distribution.as_bytes())
            .map_err(|e| io_error(temp.path(), e))?;
        temp.persist(&meta).map_err(|e| io_error(&meta, e.error))?;
        Ok(())
    }

    /// At open: what crashed installers and evictions left in the staging area. Anything
    /// older than an installation can last; a live one's directory is younger.
    fn tidy_staging(&self) {
        let Ok(dir) = std::fs::read_dir(&self.staging_root) else {
            return;
        };
        let now = SystemTime::now();
        for item in dir.flatten() {
            let old = item
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| {
                    now.duration_since(modified)
                        .is_ok_and(|age| age > STALE_STAGING)
                });
            if old {
                let _ = std::fs::remove_dir_all(item.path());
            }
        }
    }
}

fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

fn remove_if_present(path: &Path) -> Result<(), PackagesError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(io_error(path, err)),
    }
}

/// Bytes under a directory; symlinks are counted as links, never followed.
fn tree_size(path: &Path) -> u64 {
    if !is_real_dir(path) {
        return 0;
    }
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
        let packages = dir.path().join("packages");
        let legacy = packages.join("requests/site");
        std::fs::create_dir_all(&legacy).unwrap();
        std::fs::write(legacy.join("requests.py"), "x").unwrap();
        std::fs::write(packages.join("requests/.last_used"), "").unwrap();
        std::fs::create_dir_all(packages.join("half-done")).unwrap();
        let cache = PackageCache::open(dir.path()).unwrap();
        assert!(cache.contains("requests"));
        assert!(!packages.join("requests").exists());
        assert!(!packages.join("half-done").exists());
        let entries = cache.entries().unwrap();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].distribution, "requests");

        let unnamed = packages.join("0123456789abcdef0123456789abcdef");
        std::fs::create_dir_all(unnamed.join("site")).unwrap();
        assert_eq!(cache.entries().unwrap().len(), 1, "listed only when named");
        PackageCache::open(dir.path()).unwrap();
        assert!(
            !unnamed.exists(),
            "a directory no name leads to is a leftover"
        );
        assert!(cache.contains("requests"));
    }

    #[test]
    fn only_site_enters_the_cache_and_links_the_installer_left_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PackageCache::open(dir.path()).unwrap();
        let precious = dir.path().join("precious");
        std::fs::write(&precious, "keep me").unwrap();
        let staging = cache.staging().unwrap();
        let site = staging.path().join("alpha/site");
        std::fs::create_dir_all(&site).unwrap();
        std::fs::write(site.join("alpha.py"), "x").unwrap();
        std::os::unix::fs::symlink(&precious, staging.path().join("alpha/.last_used")).unwrap();
        std::os::unix::fs::symlink(&precious, staging.path().join("alpha/.distribution")).unwrap();
        assert!(cache.adopt(&staging, "alpha").unwrap());
        cache.touch("alpha").unwrap();
        let entry: Vec<_> = std::fs::read_dir(cache.entry_path("alpha"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entry, ["site"], "no bookkeeping where runs can see it");
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");

        // A linked site or a linked distribution directory is refused, never walked.
        let linked = cache.staging().unwrap();
        std::fs::create_dir_all(linked.path().join("beta")).unwrap();
        std::os::unix::fs::symlink(dir.path(), linked.path().join("beta/site")).unwrap();
        std::os::unix::fs::symlink(dir.path(), linked.path().join("gamma")).unwrap();
        assert_eq!(linked.bytes_of("beta"), 0);
        assert_eq!(linked.bytes_of("gamma"), 0);
        assert!(cache.adopt(&linked, "beta").is_err());
        assert!(cache.adopt(&linked, "gamma").is_err());
        assert!(!cache.contains("beta") && !cache.contains("gamma"));
    }

    #[test]
    fn success_without_a_site_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PackageCache::open(dir.path()).unwrap();
        let staging = cache.staging().unwrap();
        assert!(cache.adopt(&staging, "ghost").is_err());
    }
}
