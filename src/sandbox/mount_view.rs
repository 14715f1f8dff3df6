//! Pure: what a run under runc learns of the host's DATA_DIR from `/proc/self/mountinfo`.
//!
//! A bind mount is listed with its source's path within the source's file system (the
//! "root" field), whatever the path inside the container. The staging directories, warm
//! pool directories and the package cache are all under DATA_DIR (staging hard-links the
//! store's files, so it must share their file system), so a run sees DATA_DIR's path
//! within its file system: the whole host path when DATA_DIR lies on the root file
//! system, nothing of it when DATA_DIR is the root of a file system of its own. gVisor's
//! mountinfo lists its own gofer mounts and shows no host path at all.

use std::path::{Path, PathBuf};

/// One mount of a mountinfo table: where it is mounted and which directory of its file
/// system it shows there.
struct Mount {
    root: PathBuf,
    mount_point: PathBuf,
}

/// The path of `dir` that a bind mount of it shows as its root in a runc container's
/// mountinfo, from the mountinfo of the mount namespace the Docker daemon resolves paths
/// in; None when no mount covers `dir` (an unreadable table). `dir` must be canonical.
pub fn path_seen_by_runc(dir: &Path, host_mountinfo: &str) -> Option<PathBuf> {
    // In table order, a mount hides every earlier one at or below its mount point.
    let mut visible: Vec<Mount> = Vec::new();
    for mount in host_mountinfo.lines().filter_map(parse_line) {
        visible.retain(|earlier| !earlier.mount_point.starts_with(&mount.mount_point));
        visible.push(mount);
    }
    let covering = visible
        .into_iter()
        .filter(|mount| dir.starts_with(&mount.mount_point))
        .max_by_key(|mount| mount.mount_point.components().count())?;
    let inside = dir.strip_prefix(&covering.mount_point).ok()?;
    Some(covering.root.join(inside))
}

/// Whether a run sees nothing of the path: DATA_DIR is its file system's root.
pub fn reveals_nothing(seen: &Path) -> bool {
    seen == Path::new("/")
}

/// `/` or `/<name>`: a path within a file system of its own, which tells nothing of the
/// host (`/staging`, where `/var/lib/codebox/staging` would).
pub fn shows_only_its_name(seen: &Path) -> bool {
    seen.parent().is_none_or(reveals_nothing)
}

fn parse_line(line: &str) -> Option<Mount> {
    let mut fields = line.split(' ');
    let root = fields.nth(3)?;
    let mount_point = fields.next()?;
    Some(Mount {
        root: PathBuf::from(unescape(root)),
        mount_point: PathBuf::from(unescape(mount_point)),
    })
}

/// mountinfo writes space, tab, newline and backslash as three octal digits (`\040`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)))
            .map(|d| (d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:26 / /tmp rw shared:5 - tmpfs tmpfs rw
41 22 254:16 / /srv/codebox rw shared:9 - ext4 /dev/vdb rw
42 41 0:40 / /srv/codebox/cache rw shared:10 - tmpfs tmpfs rw
55 22 254:0 /var/lib/real\\040data /mnt/bound rw shared:1 - ext4 /dev/vda rw
";

    #[test]
    fn a_directory_on_the_root_file_system_is_seen_whole() {
        assert_eq!(
            path_seen_by_runc(Path::new("/var/lib/codebox"), HOST),
            Some(PathBuf::from("/var/lib/codebox"))
        );
    }

    #[test]
    fn a_file_system_of_its_own_shows_only_paths_within_it() {
        let seen = path_seen_by_runc(Path::new("/srv/codebox"), HOST).unwrap();
        assert!(reveals_nothing(&seen), "{seen:?}");
        assert_eq!(
            path_seen_by_runc(Path::new("/tmp/x/data"), HOST),
            Some(PathBuf::from("/x/data"))
        );
        assert_eq!(
            path_seen_by_runc(Path::new("/srv/codebox/cache/a"), HOST),
            Some(PathBuf::from("/a"))
        );
    }

    #[test]
    fn a_later_mount_hides_what_it_is_mounted_over() {
        let table = format!("{HOST}60 22 0:50 / /srv rw - tmpfs tmpfs rw\n");
        assert_eq!(
            path_seen_by_runc(Path::new("/srv/codebox/x"), &table),
            Some(PathBuf::from("/codebox/x"))
        );
    }

    #[test]
    fn a_bind_mounted_directory_shows_its_source_with_escapes_undone() {
        assert_eq!(
            path_seen_by_runc(Path::new("/mnt/bound/codebox"), HOST),
            Some(PathBuf::from("/var/lib/real data/codebox"))
        );
        assert!(!reveals_nothing(Path::new("/mnt")));
        assert!(shows_only_its_name(Path::new("/staging")));
        assert!(shows_only_its_name(Path::new("/")));
        assert!(!shows_only_its_name(Path::new("/var/lib/codebox/staging")));
        assert_eq!(path_seen_by_runc(Path::new("/x"), ""), None);
    }
}
