//! Stages host files into a per-run directory that is mounted read-only into the sandbox.
//! Copies (not links) so the sandbox never sees the original inode or its neighbours.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error("input {path} is not a readable regular file")]
    NotAFile { path: PathBuf },
    #[error("two inputs are named {name}; rename one")]
    DuplicateName { name: String },
    #[error("cannot stage {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// A staging directory that is deleted when dropped.
pub struct StagedInputs {
    dir: tempfile::TempDir,
}

impl StagedInputs {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A fresh directory under `root` for one run, named `<kind>-<owner tag>-<random>` (so a
/// sweep can tell a dead process's leftovers) and readable by the sandbox uid; deleted when
/// dropped. The error names the path that failed.
pub fn run_directory(root: &Path, kind: &str) -> Result<tempfile::TempDir, (PathBuf, io::Error)> {
    fs::create_dir_all(root).map_err(|e| (root.to_path_buf(), e))?;
    let dir = tempfile::Builder::new()
        .prefix(&format!(
            "{kind}-{}-",
            crate::container::reaper::owner_tag()
        ))
        .tempdir_in(root)
        .map_err(|e| (root.to_path_buf(), e))?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
        .map_err(|e| (dir.path().to_path_buf(), e))?;
    Ok(dir)
}

/// Copies `inputs` (regular files, symlinks resolved on the host side by the operator's
/// own choice of path) into a fresh directory under `root`, readable by the sandbox uid.
pub fn stage_inputs(root: &Path, inputs: &[PathBuf]) -> Result<StagedInputs, StagingError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StagingError::Io {
            path: path.clone(),
            source,
        }
    };
    let dir = run_directory(root, "inputs")
        .map_err(|(path, source)| StagingError::Io { path, source })?;
    for input in inputs {
        let meta = fs::metadata(input).map_err(|_| StagingError::NotAFile {
            path: input.clone(),
        })?;
        if !meta.is_file() {
            return Err(StagingError::NotAFile {
                path: input.clone(),
            });
        }
        let name = input
            .file_name()
            .ok_or_else(|| StagingError::NotAFile {
                path: input.clone(),
            })?
            .to_owned();
        let target = dir.path().join(&name);
        if target.exists() {
            return Err(StagingError::DuplicateName {
                name: name.to_string_lossy().into_owned(),
            });
        }
        fs::copy(input, &target).map_err(io_err(input))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o444)).map_err(io_err(&target))?;
    }
    Ok(StagedInputs { dir })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_copies_readable_by_others_and_cleans_up() {
        let root = tempfile::tempdir().unwrap();
        let src = root.path().join("data.csv");
        fs::write(&src, "a,b\n1,2\n").unwrap();
        let staged = stage_inputs(&root.path().join("runs"), std::slice::from_ref(&src)).unwrap();
        let copy = staged.path().join("data.csv");
        assert_eq!(fs::read(&copy).unwrap(), b"a,b\n1,2\n");
        assert_eq!(
            fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
            0o444
        );
        let dir = staged.path().to_path_buf();
        drop(staged);
        assert!(!dir.exists());
    }

    #[test]
    fn refuses_directories_and_duplicates() {
        let root = tempfile::tempdir().unwrap();
        assert!(matches!(
            stage_inputs(root.path(), &[root.path().to_path_buf()]),
            Err(StagingError::NotAFile { .. })
        ));
        let a = root.path().join("a");
        fs::create_dir(&a).unwrap();
        fs::write(a.join("x.txt"), "1").unwrap();
        fs::write(root.path().join("x.txt"), "2").unwrap();
        assert!(matches!(
            stage_inputs(root.path(), &[a.join("x.txt"), root.path().join("x.txt")]),
            Err(StagingError::DuplicateName { .. })
        ));
    }
}
