//! Who may read what codebox keeps under DATA_DIR: users' files, session snapshots (which
//! hold whatever the code's variables held), the database. Only codebox's own account:
//! DATA_DIR is 0700 (created so, and tightened at every start), so no other local account
//! reaches anything below it whatever the modes there. Files a sandbox reads through its
//! own read-only mount (stored files, their cached copies) are 0640 and of the sandbox
//! group: dockerd does the bind mounts as root, and inside the container the code's uid
//! reads them as a member of that group. Everything else is 0600.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::container::SANDBOX_GID;

/// DATA_DIR's own mode.
pub const DATA_DIR_MODE: u32 = 0o700;
/// A file only codebox reads (the database, keys).
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// A file the code of its own user's runs reads, through the sandbox group.
pub const SANDBOX_READABLE_MODE: u32 = 0o640;
/// The same when codebox cannot give the file to the sandbox group (it does not run as
/// root): readable by the code's uid only through "other", which DATA_DIR's 0700 still
/// keeps from every other local account.
pub const SANDBOX_READABLE_FALLBACK_MODE: u32 = 0o644;

/// What `ensure` found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirModes {
    /// Already 0700 (or created so).
    Private,
    /// Was wider (the mode given) and is 0700 now.
    Tightened { was: u32 },
}

/// Creates DATA_DIR 0700, or tightens an existing one to 0700.
pub fn ensure(dir: &Path) -> io::Result<DataDirModes> {
    if !dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        if let Some(parent) = dir.parent() {
            fs::create_dir_all(parent)?;
        }
        match fs::DirBuilder::new().mode(DATA_DIR_MODE).create(dir) {
            Ok(()) => {}
            // Another process created it meanwhile: checked like any existing one.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err),
        }
    }
    let mode = fs::metadata(dir)?.permissions().mode() & 0o7777;
    if mode == DATA_DIR_MODE {
        return Ok(DataDirModes::Private);
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(DATA_DIR_MODE))?;
    Ok(DataDirModes::Tightened { was: mode })
}

/// Pure: whether a mode lets any account but the owner into DATA_DIR.
pub fn is_private(mode: u32) -> bool {
    mode & 0o077 == 0
}

/// `path` readable by the sandbox group and codebox alone; never writable by either but
/// codebox.
pub fn share_with_sandbox(path: &Path) -> io::Result<()> {
    let grouped = std::os::unix::fs::chown(path, None, Some(SANDBOX_GID)).is_ok();
    let mode = if grouped {
        SANDBOX_READABLE_MODE
    } else {
        SANDBOX_READABLE_FALLBACK_MODE
    };
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// `path` codebox's alone: created 0600 when missing (so what SQLite derives from it, its
/// WAL and shared-memory files, is 0600 too), tightened when wider. An existing file is
/// never opened here, only chmod-ed by path: closing any descriptor of a SQLite database
/// drops every POSIX lock the process holds on it, which another connection of this
/// process may rely on.
pub fn private_file(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
    {
        Ok(_) => return Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err),
    }
    let mode = fs::metadata(path)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(PRIVATE_FILE_MODE))?;
    }
    Ok(())
}

/// The same for SQLite's companions of `database` that already exist (an older install's
/// WAL and shared-memory files keep the mode they were created with).
pub fn private_companions(database: &Path) -> io::Result<()> {
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        let companion = Path::new(&name);
        match fs::metadata(companion) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                fs::set_permissions(companion, fs::Permissions::from_mode(PRIVATE_FILE_MODE))?;
            }
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_owner_modes_are_private() {
        assert!(is_private(0o700));
        assert!(is_private(0o600));
        assert!(!is_private(0o755));
        assert!(!is_private(0o710));
        assert!(!is_private(0o701));
    }

    #[test]
    fn a_wide_data_dir_is_tightened_and_a_new_one_created_private() {
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("a/b");
        assert_eq!(ensure(&fresh).unwrap(), DataDirModes::Private);
        let mode = fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::set_permissions(&fresh, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            ensure(&fresh).unwrap(),
            DataDirModes::Tightened { was: 0o755 }
        );
        assert_eq!(ensure(&fresh).unwrap(), DataDirModes::Private);
    }

    #[test]
    fn a_private_file_is_created_and_kept_owner_only() {
        let root = tempfile::tempdir().unwrap();
        let db = root.path().join("db");
        private_file(&db).unwrap();
        assert_eq!(
            fs::metadata(&db).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).unwrap();
        private_file(&db).unwrap();
        assert_eq!(
            fs::metadata(&db).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
