//! Makes a directory's files appear in another directory without copying their bytes:
//! hard links where the file system allows, copies where it does not. Symlinks are never
//! followed, so a link planted in the source cannot pull a host file into the sandbox.

use std::path::Path;

pub fn link_tree(source: &Path, target: &Path) -> std::io::Result<()> {
    link_tree_but(source, target, None)
}

/// The same, leaving out the top-level entry `left_out` (one already in place).
pub fn link_tree_but(source: &Path, target: &Path, left_out: Option<&str>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(source)? {
        let entry = entry?;
        if left_out.is_some_and(|name| entry.file_name() == name) {
            continue;
        }
        let kind = entry.file_type()?;
        let to = target.join(entry.file_name());
        if kind.is_dir() {
            std::fs::create_dir(&to)?;
            link_tree(&entry.path(), &to)?;
        } else if kind.is_file() && std::fs::hard_link(entry.path(), &to).is_err() {
            std::fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_folders_appear_and_symlinks_do_not() {
        let source = tempfile::tempdir().unwrap();
        let target = tempfile::tempdir().unwrap();
        std::fs::write(source.path().join("a.csv"), "1,2").unwrap();
        std::fs::create_dir(source.path().join("sub")).unwrap();
        std::fs::write(source.path().join("sub").join("b.txt"), "b").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", source.path().join("evil")).unwrap();
        link_tree(source.path(), target.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(target.path().join("a.csv")).unwrap(),
            "1,2"
        );
        assert_eq!(
            std::fs::read_to_string(target.path().join("sub").join("b.txt")).unwrap(),
            "b"
        );
        assert!(std::fs::symlink_metadata(target.path().join("evil")).is_err());
        let again = tempfile::tempdir().unwrap();
        link_tree_but(source.path(), again.path(), Some("a.csv")).unwrap();
        assert!(!again.path().join("a.csv").exists());
        assert!(again.path().join("sub").join("b.txt").exists());
    }
}
