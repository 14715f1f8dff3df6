//! Turns the output tar that came out of a sandbox into files on the host, trusting nothing.
//!
//! Only regular files are written; names must be relative, made of plain components, free
//! of control characters; each file is created new (never through an existing path); caps
//! on count, size and total bytes apply again here whatever the runner claimed. Every
//! refusal becomes a flag.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use super::result::{Flag, MeasuredPicture, OutputFile, PictureSize};
use crate::filetypes::PICTURE_MIME_TYPES;
use crate::no_room::is_no_room;

#[derive(Debug, Clone, Copy)]
pub struct OutputCaps {
    pub max_files: usize,
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot create output directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot write output file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read the output archive: {0}")]
    Archive(io::Error),
}

const MAX_NAME_BYTES: usize = 255;
const MAX_DEPTH: usize = 16;

/// Checks a name from inside the sandbox; returns the relative path to use, or why not.
pub fn safe_relative_path(name: &str) -> Result<PathBuf, &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name.len() > 1024 {
        return Err("name too long");
    }
    if name.chars().any(|c| c.is_control() || c == '\\') {
        return Err("control character or backslash in name");
    }
    let path = Path::new(name);
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => {
                if part.len() > MAX_NAME_BYTES {
                    return Err("path component too long");
                }
                clean.push(part);
            }
            Component::CurDir => {}
            Component::ParentDir => return Err("parent directory component"),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path"),
        }
    }
    if clean.as_os_str().is_empty() {
        return Err("empty name");
    }
    if clean.components().count() > MAX_DEPTH {
        return Err("path too deep");
    }
    Ok(clean)
}

/// Extracts `archive` (a tar stream) under `dest`, which must be a directory codebox owns.
pub fn extract<R: Read>(
    archive: R,
    dest: &Path,
    caps: OutputCaps,
) -> Result<(Vec<OutputFile>, Vec<Flag>), OutputError> {
    fs::create_dir_all(dest).map_err(|source| OutputError::CreateDir {
        path: dest.to_path_buf(),
        source,
    })?;
    let mut files = Vec::new();
    let mut flags = Vec::new();
    let mut total: u64 = 0;
    let mut tar = tar::Archive::new(archive);
    let entries = tar.entries().map_err(OutputError::Archive)?;
    for entry in entries {
        let mut entry = entry.map_err(OutputError::Archive)?;
        let name_bytes = entry.path_bytes().into_owned();
        let raw_name = String::from_utf8_lossy(&name_bytes).into_owned();
        if !entry.header().entry_type().is_file() {
            let kind = if entry.header().entry_type().is_symlink()
                || entry.header().entry_type().is_hard_link()
            {
                "skipped_symlink"
            } else {
                "skipped_special_file"
            };
            if !entry.header().entry_type().is_dir() {
                flags.push(Flag::named(kind, &raw_name));
            }
            continue;
        }
        // A name that is not UTF-8 is refused, never decoded lossily: two different names
        // must not become one.
        let rel = match std::str::from_utf8(&name_bytes).map(safe_relative_path) {
            Ok(Ok(rel)) => rel,
            _ => {
                flags.push(Flag::named("unsafe_name", &raw_name));
                continue;
            }
        };
        let size = entry.size();
        if files.len() >= caps.max_files {
            flags.push(Flag::named("too_many_files", &raw_name));
            continue;
        }
        if size > caps.max_file_bytes {
            flags.push(Flag {
                size: Some(size),
                ..Flag::named("file_too_large", &raw_name)
            });
            continue;
        }
        if total + size > caps.max_total_bytes {
            flags.push(Flag {
                size: Some(size),
                ..Flag::named("total_bytes_exceeded", &raw_name)
            });
            continue;
        }
        let target = dest.join(&rel);
        if let Some(parent) = target.parent() {
            // Nothing about a name fails the run: a directory that cannot be made (a file
            // of that name came first) costs this file only.
            match create_dirs_within(dest, parent) {
                Ok(()) => {}
                Err(OutputError::CreateDir { source, .. }) if is_no_room(&source) => {
                    flags.push(Flag::named("not_kept_storage_full", &raw_name));
                    continue;
                }
                Err(_) => {
                    flags.push(Flag::named("duplicate_name", &raw_name));
                    continue;
                }
            }
        }
        let mut out = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
        {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                flags.push(Flag::named("duplicate_name", &raw_name));
                continue;
            }
            Err(err) if is_no_room(&err) => {
                flags.push(Flag::named("not_kept_storage_full", &raw_name));
                continue;
            }
            Err(source) => {
                return Err(OutputError::Write {
                    path: target,
                    source,
                });
            }
        };
        // Never trust the header's size for the copy either.
        let written = match io::copy(&mut (&mut entry).take(caps.max_file_bytes), &mut out)
            .and_then(|n| out.flush().map(|_| n))
        {
            Ok(written) => written,
            // The host's disk is full: this file is left out (not half-kept), the run's
            // other results still count.
            Err(err) if is_no_room(&err) => {
                drop(out);
                let _ = fs::remove_file(&target);
                flags.push(Flag::named("not_kept_storage_full", &raw_name));
                continue;
            }
            Err(source) => {
                return Err(OutputError::Write {
                    path: target.clone(),
                    source,
                });
            }
        };
        total += written;
        files.push(OutputFile {
            name: rel.to_string_lossy().into_owned(),
            size: written,
            path: target,
            picture: None,
        });
    }
    Ok((files, flags))
}

/// Pure: `files` with the sandbox's measure of each picture among them. A measure comes from
/// inside the sandbox: it counts only for a file collected under that very name, once, of a
/// picture type, with sides a picture can have.
pub fn attach_pictures(
    mut files: Vec<OutputFile>,
    measured: &[MeasuredPicture],
) -> Vec<OutputFile> {
    for measure in measured {
        let PictureSize {
            width,
            height,
            mime,
        } = &measure.size;
        let plausible = PICTURE_MIME_TYPES.contains(&mime.as_str())
            && (1..=65_535).contains(width)
            && (1..=65_535).contains(height);
        if !plausible {
            continue;
        }
        if let Some(file) = files
            .iter_mut()
            .find(|f| f.name == measure.name && f.picture.is_none())
        {
            file.picture = Some(measure.size.clone());
        }
    }
    files
}

/// Creates `dir` (inside `root`) refusing to pass through anything that is not a plain
/// directory created here: a symlink planted among the outputs cannot redirect writes.
fn create_dirs_within(root: &Path, dir: &Path) -> Result<(), OutputError> {
    let rel = dir.strip_prefix(root).unwrap_or(Path::new(""));
    let mut current = root.to_path_buf();
    for part in rel.components() {
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(OutputError::CreateDir {
                    path: current,
                    source: io::Error::new(io::ErrorKind::AlreadyExists, "not a directory"),
                });
            }
            Err(_) => fs::create_dir(&current).map_err(|source| OutputError::CreateDir {
                path: current.clone(),
                source,
            })?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: OutputCaps = OutputCaps {
        max_files: 3,
        max_file_bytes: 10,
        max_total_bytes: 15,
    };

    fn header(name: &[u8], kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        // set_path refuses `..`, which is exactly what a hostile archive would carry.
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name);
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h
    }

    fn archive(entries: &[(&[u8], tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = header(name, *kind, data.len() as u64);
            if *kind == tar::EntryType::Symlink {
                h.set_size(0);
                h.set_link_name("/etc/passwd").unwrap();
                h.set_cksum();
                builder.append(&h, &[][..]).unwrap();
            } else {
                builder.append(&h, *data).unwrap();
            }
        }
        builder.into_inner().unwrap()
    }

    fn output(name: &str) -> OutputFile {
        OutputFile {
            name: name.into(),
            size: 10,
            path: PathBuf::from("/out").join(name),
            picture: None,
        }
    }

    fn measure(name: &str, width: u32, height: u32, mime: &str) -> MeasuredPicture {
        MeasuredPicture {
            name: name.into(),
            size: PictureSize {
                width,
                height,
                mime: mime.into(),
            },
        }
    }

    #[test]
    fn a_measure_counts_only_for_a_collected_picture_within_bounds() {
        let files = vec![
            output("chart.png"),
            output("photo.jpg"),
            output("table.csv"),
        ];
        let measured = [
            measure("chart.png", 640, 480, "image/png"),
            // A second measure of the same file does not replace the first.
            measure("chart.png", 1, 1, "image/png"),
            measure("photo.jpg", 0, 480, "image/jpeg"),
            measure("table.csv", 10, 10, "text/html"),
            measure("not-collected.png", 10, 10, "image/png"),
            measure("../table.csv", 10, 10, "image/png"),
        ];
        let files = attach_pictures(files, &measured);
        assert_eq!(
            files[0].picture,
            Some(PictureSize {
                width: 640,
                height: 480,
                mime: "image/png".into()
            })
        );
        assert_eq!(files[1].picture, None, "a side of 0 is no picture");
        assert_eq!(files[2].picture, None, "only the four picture types");
        assert_eq!(files.len(), 3);
        let wide = attach_pictures(
            vec![output("w.gif")],
            &[measure("w.gif", 65_536, 1, "image/gif")],
        );
        assert_eq!(wide[0].picture, None);
    }

    #[test]
    fn names_that_are_not_utf8_or_collide_cost_only_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let caps = OutputCaps {
            max_files: 10,
            max_file_bytes: 10,
            max_total_bytes: 100,
        };
        let tar = archive(&[
            (b"d\xff/x", tar::EntryType::Regular, b"1"),
            (b"d\xfe", tar::EntryType::Regular, b"2"),
            (b"a", tar::EntryType::Regular, b"3"),
            (b"a/b", tar::EntryType::Regular, b"4"),
            (b"keep.txt", tar::EntryType::Regular, b"kept"),
        ]);
        let (files, flags) = extract(&tar[..], &dest, caps).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "keep.txt"]);
        let kinds: Vec<&str> = flags.iter().map(|f| f.flag.as_str()).collect();
        assert_eq!(kinds, ["unsafe_name", "unsafe_name", "duplicate_name"]);
        assert_eq!(fs::read(dest.join("keep.txt")).unwrap(), b"kept");
    }

    #[test]
    fn names_are_checked() {
        assert!(safe_relative_path("a.png").is_ok());
        assert_eq!(
            safe_relative_path("plots/./a.png").unwrap(),
            PathBuf::from("plots/a.png")
        );
        for bad in ["../x", "a/../../x", "/etc/passwd", "", ".", "a\nb", "a\\b"] {
            assert!(safe_relative_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_safe_regular_files_within_caps_are_written() {
        use tar::EntryType::{Block, Regular, Symlink};
        let tar = archive(&[
            (b"ok.txt", Regular, b"hello"),
            (b"../escape.txt", Regular, b"x"),
            (b"/abs.txt", Regular, b"x"),
            (b"link", Symlink, b""),
            (b"dev", Block, b""),
            (b"big.bin", Regular, b"01234567890"),
            (b"sub/two.txt", Regular, b"0123456789"),
            (b"three.txt", Regular, b"x"),
            (b"four.txt", Regular, b"y"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let (files, flags) = extract(&tar[..], &dest, CAPS).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["ok.txt", "sub/two.txt"]);
        assert_eq!(fs::read(dest.join("ok.txt")).unwrap(), b"hello");
        let kinds: Vec<(&str, &str)> = flags
            .iter()
            .map(|f| (f.flag.as_str(), f.name.as_deref().unwrap()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("unsafe_name", "../escape.txt"),
                ("unsafe_name", "/abs.txt"),
                ("skipped_symlink", "link"),
                ("skipped_special_file", "dev"),
                ("file_too_large", "big.bin"),
                ("total_bytes_exceeded", "three.txt"),
                ("total_bytes_exceeded", "four.txt"),
            ]
        );
        assert!(!dir.path().join("escape.txt").exists());
    }

    #[test]
    fn count_cap_applies() {
        use tar::EntryType::Regular;
        let tar = archive(&[
            (b"1", Regular, b"a"),
            (b"2", Regular, b"b"),
            (b"3", Regular, b"c"),
            (b"4", Regular, b"d"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let (files, flags) = extract(&tar[..], dir.path(), CAPS).unwrap();
        assert_eq!(files.len(), 3);
        assert_eq!(flags, vec![Flag::named("too_many_files", "4")]);
    }

    #[test]
    fn a_planted_symlink_directory_is_not_followed() {
        use tar::EntryType::Regular;
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let outside = dir.path().join("outside");
        fs::create_dir_all(&dest).unwrap();
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, dest.join("sub")).unwrap();
        let tar = archive(&[(b"sub/x.txt", Regular, b"x"), (b"y.txt", Regular, b"y")]);
        let (files, flags) = extract(&tar[..], &dest, CAPS).unwrap();
        assert!(!outside.join("x.txt").exists());
        assert_eq!(flags, vec![Flag::named("duplicate_name", "sub/x.txt")]);
        assert_eq!(files.len(), 1, "the other file is kept");
    }
}
