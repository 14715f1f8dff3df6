//! File bytes on this host's disk: `<root>/<user_id>/<file_id>.<file_type>`; nothing of the
//! user's file name reaches a path.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::blobs::Blobs;
use super::files::{RECONCILE_GRACE, StoreError};
use super::record::FileRecord;

pub struct DiskBlobs {
    root: PathBuf,
}

impl DiskBlobs {
    pub fn new(data_dir: &Path) -> DiskBlobs {
        DiskBlobs {
            root: data_dir.join("user_files"),
        }
    }

    /// Where a record's bytes are (or would be) on disk.
    pub fn path_of(&self, record: &FileRecord) -> PathBuf {
        self.root.join(&record.user_id).join(record.disk_name())
    }
}

impl Blobs for DiskBlobs {
    fn incoming_dir(&self, user_id: &str) -> PathBuf {
        self.root.join(user_id)
    }

    async fn put(&self, record: &FileRecord, incoming: &Path) -> Result<(), StoreError> {
        let path = self.path_of(record);
        fs::rename(incoming, &path).map_err(|source| StoreError::Io { path, source })
    }

    async fn remove(&self, record: &FileRecord) -> Result<(), StoreError> {
        let path = self.path_of(record);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    async fn local_path(&self, record: &FileRecord) -> Result<PathBuf, StoreError> {
        Ok(self.path_of(record))
    }

    async fn has(&self, record: &FileRecord) -> Result<bool, StoreError> {
        Ok(self.path_of(record).is_file())
    }

    async fn remove_orphans(&self, known: &HashSet<String>) -> Result<Vec<PathBuf>, StoreError> {
        let mut removed = Vec::new();
        let users = match fs::read_dir(&self.root) {
            Ok(users) => users,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(removed),
            Err(source) => {
                return Err(StoreError::Io {
                    path: self.root.clone(),
                    source,
                });
            }
        };
        // The wall clock: the grace is measured against times the filesystem stamped.
        let now = SystemTime::now();
        for user in users.flatten() {
            let Ok(entries) = fs::read_dir(user.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let named = path
                    .file_stem()
                    .and_then(|stem| stem.to_str())
                    .is_some_and(|stem| known.contains(stem));
                if named {
                    continue;
                }
                let young = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|modified| now.duration_since(modified).ok())
                    .is_none_or(|age| age < RECONCILE_GRACE);
                if young {
                    continue;
                }
                if fs::remove_file(&path).is_ok() {
                    removed.push(path);
                }
            }
        }
        Ok(removed)
    }
}
