//! Names of the package cache's directories: a keyed digest of the distribution, not the
//! distribution itself.
//!
//! Every run sees the cache read-only. Without read permission on its root a run cannot
//! list it, but with plain names it could still probe `/opt/codebox-packages/<name>` for
//! each of the allowlist's distributions and learn what other users installed. The key
//! stays on the host (`DATA_DIR/packages.key`, mode 0600, never mounted), so a run learns
//! only the directories the host hands it for its own imports.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Hex digits of a directory name: 128 bits, no collision between distributions.
const NAME_LEN: usize = 32;
const KEY_FILE: &str = "packages.key";

#[derive(Clone)]
pub struct EntryNames {
    key: [u8; 32],
}

impl std::fmt::Debug for EntryNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EntryNames { key: <hidden> }")
    }
}

impl EntryNames {
    /// The key of `data_dir`, made on first use. Processes sharing the directory race to
    /// create it: the key is written under a temporary name and hard-linked into place,
    /// which fails if another won, so every process reads one complete key.
    pub fn open(data_dir: &Path) -> std::io::Result<EntryNames> {
        let path = data_dir.join(KEY_FILE);
        if let Some(names) = Self::read(&path)? {
            return Ok(names);
        }
        let key: [u8; 32] = rand::random();
        let temp = tempfile::Builder::new()
            .prefix(".packages.key-")
            .tempfile_in(data_dir)?;
        std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o600))?;
        temp.as_file().write_all(hex::encode(key).as_bytes())?;
        temp.as_file().sync_all()?;
        match std::fs::hard_link(temp.path(), &path) {
            Ok(()) => Ok(EntryNames { key }),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Self::read(&path)?
                .ok_or_else(|| std::io::Error::other("the package cache key vanished")),
            Err(err) => Err(err),
        }
    }

    fn read(path: &Path) -> std::io::Result<Option<EntryNames>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        let bytes = hex::decode(text.trim()).map_err(|_| invalid_key(path))?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| invalid_key(path))?;
        Ok(Some(EntryNames { key }))
    }

    /// The directory name of one distribution.
    pub fn name_of(&self, distribution: &str) -> String {
        // HMAC accepts keys of any length: the error cannot happen.
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key) else {
            return distribution.to_string();
        };
        mac.update(distribution.as_bytes());
        let mut name = hex::encode(mac.finalize().into_bytes());
        name.truncate(NAME_LEN);
        name
    }

    /// Whether a directory in the cache has a keyed name (anything else is from a codebox
    /// that named directories after their distribution).
    pub fn is_entry_name(name: &str) -> bool {
        name.len() == NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

fn invalid_key(path: &Path) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "{} is not a package cache key (64 hex digits); delete it and the package cache to start afresh",
            path.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_keyed_stable_and_look_like_names() {
        let dir = tempfile::tempdir().unwrap();
        let first = EntryNames::open(dir.path()).unwrap();
        let again = EntryNames::open(dir.path()).unwrap();
        assert_eq!(first.name_of("pandas"), again.name_of("pandas"));
        assert_ne!(first.name_of("pandas"), first.name_of("numpy"));
        assert!(EntryNames::is_entry_name(&first.name_of("pandas")));
        assert!(!EntryNames::is_entry_name("pandas"));
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let other = tempfile::tempdir().unwrap();
        let elsewhere = EntryNames::open(other.path()).unwrap();
        assert_ne!(first.name_of("pandas"), elsewhere.name_of("pandas"));
    }

    #[test]
    fn a_damaged_key_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "not hex").unwrap();
        let err = EntryNames::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a package cache key"), "{err}");
    }
}
