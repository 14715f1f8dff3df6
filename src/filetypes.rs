//! File-type detection from the shared table `images/sandbox/filetypes.json`, the same table
//! the in-sandbox `load_file` reads for its loaders.
//!
//! Pure: a name and the first bytes of a file in, a type out. The extension is believed when
//! the content agrees with it; when a known signature says otherwise (a PNG named `.csv`),
//! or the extension is missing, the signature wins; text without an extension is `txt`.
//! Only a few leading bytes are compared with constants: nothing is parsed here.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

pub const TABLE_JSON: &str = include_str!("../images/sandbox/filetypes.json");

/// Bytes of a file's head that detection looks at.
pub const SNIFF_BYTES: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileType {
    /// The table key, e.g. `csv`, `tar.gz`, `png`.
    pub ext: String,
    pub category: String,
    pub mime: String,
    /// The name of the Python loader `load_file` uses.
    pub loader: String,
    /// Signature family a genuine file of this type starts with ("" for none).
    pub family: String,
}

#[derive(Deserialize)]
struct RawTable {
    types: Vec<(String, String, String, String, String)>,
    magic: Vec<(usize, String, String)>,
}

struct Signature {
    offset: usize,
    /// None is a wildcard byte.
    pattern: Vec<Option<u8>>,
    ext: String,
}

pub struct Table {
    by_ext: HashMap<String, FileType>,
    signatures: Vec<Signature>,
    /// Longest extension, in dot-separated parts (for `tar.gz`).
    max_parts: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("file-type table is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("file-type table signature {ext}: bad hex {hex}")]
    Hex { ext: String, hex: String },
    #[error("file-type table signature {ext} names no type")]
    UnknownExt { ext: String },
}

impl Table {
    pub fn parse(json: &str) -> Result<Table, TableError> {
        let raw: RawTable = serde_json::from_str(json)?;
        let mut by_ext = HashMap::new();
        let mut max_parts = 1;
        for (ext, category, mime, loader, family) in raw.types {
            max_parts = max_parts.max(ext.split('.').count());
            by_ext.insert(
                ext.clone(),
                FileType {
                    ext,
                    category,
                    mime,
                    loader,
                    family,
                },
            );
        }
        let mut signatures = Vec::new();
        for (offset, hex, ext) in raw.magic {
            if !by_ext.contains_key(&ext) {
                return Err(TableError::UnknownExt { ext });
            }
            let pattern = parse_pattern(&hex).ok_or_else(|| TableError::Hex {
                ext: ext.clone(),
                hex: hex.clone(),
            })?;
            signatures.push(Signature {
                offset,
                pattern,
                ext,
            });
        }
        Ok(Table {
            by_ext,
            signatures,
            max_parts,
        })
    }

    pub fn len(&self) -> usize {
        self.by_ext.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ext.is_empty()
    }

    pub fn get(&self, ext: &str) -> Option<&FileType> {
        self.by_ext.get(ext)
    }

    /// The table entry for a file name's extension (longest match: `a.tar.gz` is `tar.gz`).
    pub fn by_name(&self, filename: &str) -> Option<&FileType> {
        let lower = filename.to_lowercase();
        let parts: Vec<&str> = lower.split('.').collect();
        if parts.len() < 2 {
            return None;
        }
        let longest = self.max_parts.min(parts.len() - 1);
        (1..=longest).rev().find_map(|n| {
            let ext = parts[parts.len() - n..].join(".");
            self.by_ext.get(&ext)
        })
    }

    /// The type a file's leading bytes prove, if any signature matches.
    pub fn by_magic(&self, head: &[u8]) -> Option<&FileType> {
        self.signatures
            .iter()
            .find(|sig| matches_at(head, sig.offset, &sig.pattern))
            .and_then(|sig| self.by_ext.get(&sig.ext))
    }

    pub fn detect(&self, filename: &str, head: &[u8]) -> FileType {
        let named = self.by_name(filename);
        let sniffed = self.by_magic(head);
        match (named, sniffed) {
            (Some(named), Some(sniffed)) if named.family == sniffed.family => named.clone(),
            (_, Some(sniffed)) => sniffed.clone(),
            // A type with a signature whose content lacks it is not that type.
            (Some(named), None) if named.family.is_empty() => named.clone(),
            _ => self.fallback(head),
        }
    }

    fn fallback(&self, head: &[u8]) -> FileType {
        let key = if looks_like_text(head) { "txt" } else { "bin" };
        self.by_ext.get(key).cloned().unwrap_or_else(|| FileType {
            ext: key.to_string(),
            category: "binary".to_string(),
            mime: "application/octet-stream".to_string(),
            loader: "bytes".to_string(),
            family: String::new(),
        })
    }
}

fn parse_pattern(hex: &str) -> Option<Vec<Option<u8>>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| match &hex[i..i + 2] {
            "??" => Some(None),
            pair => u8::from_str_radix(pair, 16).ok().map(Some),
        })
        .collect()
}

fn matches_at(head: &[u8], offset: usize, pattern: &[Option<u8>]) -> bool {
    head.len() >= offset + pattern.len()
        && pattern
            .iter()
            .zip(&head[offset..])
            .all(|(want, got)| want.is_none_or(|w| w == *got))
}

/// UTF-8 (allowing a cut final character) without NUL bytes.
fn looks_like_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(err) => err.error_len().is_none() && head.len() - err.valid_up_to() < 4,
    }
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    // The table is compiled in and checked by a unit test; it cannot fail at run time.
    Table::parse(TABLE_JSON).unwrap_or_else(|err| panic!("embedded file-type table: {err}"))
});

pub fn table() -> &'static Table {
    &TABLE
}

/// Detects a file's type from its name and leading bytes.
pub fn detect(filename: &str, head: &[u8]) -> FileType {
    TABLE.detect(filename, head)
}

/// A stored type that the model can be shown: PNG, JPEG, GIF or WebP, by a signature the
/// content carried (detection believes a name only when the bytes agree).
pub fn is_picture(file_type: &str) -> bool {
    picture_mime(file_type).is_some()
}

/// The MIME types of the four picture types a model is shown; each is `image/` and the
/// family of its stored types.
pub const PICTURE_MIME_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// The MIME type of a stored picture type (`is_picture`), None for any other type.
pub fn picture_mime(file_type: &str) -> Option<&'static str> {
    let family = TABLE.get(file_type)?.family.as_str();
    PICTURE_MIME_TYPES
        .into_iter()
        .find(|mime| mime.strip_prefix("image/") == Some(family))
}

/// A stored type whose summary carries its text (documents, plain text and code): the
/// same rule the sandbox's summary follows (codebox_documents.is_document).
pub fn carries_text(file_type: &str) -> bool {
    const DOCUMENTS: [&str; 10] = [
        "pdf", "docx", "pptx", "odt", "odp", "rtf", "epub", "html", "htm", "xhtml",
    ];
    DOCUMENTS.contains(&file_type) || TABLE.get(file_type).is_some_and(|t| t.loader == "text")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_are_told_by_their_bytes() {
        let png = detect("photo.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
        assert!(is_picture(&png.ext));
        let fake = detect("photo.png", b"this is text, not a picture\n");
        assert_eq!(fake.ext, "txt");
        assert!(!is_picture(&fake.ext));
        assert!(is_picture("webp") && is_picture("jpg") && is_picture("gif"));
        assert!(!is_picture("bmp") && !is_picture("pdf") && !is_picture("nonsense"));
    }

    #[test]
    fn the_table_parses_and_is_large() {
        let table = Table::parse(TABLE_JSON).unwrap();
        assert!(table.len() >= 200, "only {} extensions", table.len());
        for ext in [
            "csv", "xlsx", "parquet", "png", "tar.gz", "h5", "sqlite", "py", "pdf",
        ] {
            assert!(table.get(ext).is_some(), "{ext}");
        }
    }

    #[test]
    fn extension_is_believed_when_content_agrees() {
        assert_eq!(detect("data.csv", b"a,b\n1,2\n").ext, "csv");
        assert_eq!(detect("Report.XLSX", b"PK\x03\x04rest").ext, "xlsx");
        assert_eq!(detect("arrays.npz", b"PK\x03\x04rest").ext, "npz");
        assert_eq!(detect("logs.tar.gz", b"\x1f\x8b\x08\x00").ext, "tar.gz");
        assert_eq!(detect("x.csv.gz", b"\x1f\x8b\x08\x00").ext, "csv.gz");
        assert_eq!(detect("pic.jpeg", b"\xff\xd8\xff\xe0").ext, "jpeg");
        assert_eq!(detect("m.pkl", b"\x80\x04\x95").ext, "pkl");
    }

    #[test]
    fn signature_wins_over_a_lying_extension() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(detect("table.csv", png).ext, "png");
        assert_eq!(detect("noext", png).ext, "png");
        assert_eq!(detect("db.txt", b"SQLite format 3\0....").ext, "sqlite");
        let mut wav = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        wav.extend_from_slice(&[0; 8]);
        assert_eq!(detect("sound", &wav).ext, "wav");
    }

    #[test]
    fn a_binary_type_without_its_signature_is_not_that_type() {
        assert_eq!(detect("fake.png", b"just some text").ext, "txt");
        assert_eq!(detect("fake.parquet", b"\x00\x01\x02").ext, "bin");
    }

    #[test]
    fn unknown_names_fall_back_on_content() {
        assert_eq!(detect("README", b"hello\nworld\n").ext, "txt");
        assert_eq!(detect("blob", b"\x00\x9f\x92\x96").ext, "bin");
        assert_eq!(
            detect("utf8-cut", "héllo".as_bytes()[..2].as_ref()).ext,
            "txt"
        );
    }

    #[test]
    fn tar_is_found_at_its_offset() {
        let mut head = vec![0u8; 512];
        head[..5].copy_from_slice(b"a.txt");
        head[257..262].copy_from_slice(b"ustar");
        assert_eq!(detect("bundle", &head).ext, "tar");
    }
}
