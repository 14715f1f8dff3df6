//! Host directories a run leaves only when its process dies mid-run (SIGKILL, a crash):
//! staged inputs (hard links that keep a deleted file's bytes alive) and output
//! directories (outside every quota). Each name carries its owner's pid and start time;
//! a directory whose owner is gone is removed, as is any of ours older than a run can last.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::container::reaper::tag_owner_alive;

/// Prefixes of the directories runs create, each followed by the owner tag.
const PREFIXES: [&str; 4] = ["run-", "inputs-", "user-run-", "state-"];

/// Pure: whether a leftover directory may go. `owner_alive` is None for names without an
/// owner tag (made by older versions).
pub fn is_leftover(
    name: &str,
    owner_alive: Option<bool>,
    age: Duration,
    max_age: Duration,
) -> bool {
    if !PREFIXES.iter().any(|p| name.starts_with(p)) {
        return false;
    }
    match owner_alive {
        Some(false) => true,
        Some(true) | None => age > max_age,
    }
}

/// Removes leftovers under `roots`; the removed paths.
pub fn clean(roots: &[PathBuf], max_age: Duration) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for root in roots {
        let Ok(entries) = fs::read_dir(root) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(tagged) = PREFIXES.iter().rev().find_map(|p| name.strip_prefix(p)) else {
                continue;
            };
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            if is_leftover(&name, tag_owner_alive(tagged), age, max_age) {
                let path = entry.path();
                if remove(&path).is_ok() {
                    tracing::info!(path = %path.display(), "removed a dead run's directory");
                    removed.push(path);
                }
            }
        }
    }
    removed
}

fn remove(path: &Path) -> std::io::Result<()> {
    // Staged inputs are made read-only for the sandbox; the owner may still remove them.
    fs::remove_dir_all(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_owners_go_live_ones_stay_until_too_old() {
        let hour = Duration::from_secs(3600);
        let minute = Duration::from_secs(60);
        assert!(is_leftover("run-1-2-abc", Some(false), minute, hour));
        assert!(!is_leftover("run-1-2-abc", Some(true), minute, hour));
        assert!(is_leftover("user-run-1-2-x", Some(true), 2 * hour, hour));
        assert!(
            is_leftover("inputs-abc", None, 2 * hour, hour),
            "untagged and old"
        );
        assert!(!is_leftover("inputs-abc", None, minute, hour));
        assert!(
            !is_leftover("user_files", Some(false), 2 * hour, hour),
            "not a run's"
        );
    }

    #[test]
    fn a_dead_processs_directories_are_removed_and_a_live_ones_kept() {
        let root = tempfile::tempdir().unwrap();
        // pid 1's start ticks are not 999999999: that owner is gone.
        let dead = root.path().join("run-1-999999999-abc");
        let live = root
            .path()
            .join(format!("run-{}-abc", crate::container::reaper::owner_tag()));
        for dir in [&dead, &live] {
            fs::create_dir(dir).unwrap();
            fs::write(dir.join("f.csv"), "x").unwrap();
        }
        let removed = clean(&[root.path().to_path_buf()], Duration::from_secs(3600));
        assert_eq!(removed, std::slice::from_ref(&dead));
        assert!(!dead.exists() && live.exists());
    }
}
