//! Pure: import names -> PyPI distribution names, from the data table beside this file.
//!
//! Everything here comes from user code (through the runner's scan), so names are checked
//! against strict patterns before anything uses them in a path or a pip command line.

use std::collections::HashMap;
use std::sync::OnceLock;

pub use crate::config::lists::{MAX_NAME_LEN, normalize_distribution, parse_list};

const TABLE: &str = include_str!("distributions.json");

fn table() -> &'static HashMap<String, String> {
    static TABLE_MAP: OnceLock<HashMap<String, String>> = OnceLock::new();
    TABLE_MAP.get_or_init(|| {
        // The table is compiled in and covered by a unit test; an unreadable one is a
        // build defect, and an empty map only means "look up modules under their own name".
        let raw: HashMap<String, String> = serde_json::from_str(TABLE).unwrap_or_default();
        raw.into_iter()
            .filter(|(k, _)| !k.starts_with('_'))
            .collect()
    })
}

/// A top-level module name as Python allows it (ASCII subset; the scan only reports those).
pub fn is_module_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= MAX_NAME_LEN
}

/// The distribution that provides a top-level module, normalized; None for a name that is
/// not a valid module name.
pub fn distribution_for(module: &str) -> Option<String> {
    if !is_module_name(module) {
        return None;
    }
    let mapped = table().get(module).map(String::as_str).unwrap_or(module);
    normalize_distribution(mapped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_readable_and_large_enough() {
        let raw: HashMap<String, String> = serde_json::from_str(TABLE).unwrap();
        assert!(raw.len() > 60, "{} entries", raw.len());
        for (module, dist) in table() {
            assert!(is_module_name(module), "bad module {module}");
            assert!(normalize_distribution(dist).is_some(), "bad dist {dist}");
        }
    }

    #[test]
    fn known_modules_map_to_their_distributions() {
        assert_eq!(distribution_for("sklearn").unwrap(), "scikit-learn");
        assert_eq!(distribution_for("cv2").unwrap(), "opencv-python-headless");
        assert_eq!(distribution_for("PIL").unwrap(), "pillow");
        assert_eq!(distribution_for("yaml").unwrap(), "pyyaml");
        assert_eq!(distribution_for("bs4").unwrap(), "beautifulsoup4");
        assert_eq!(distribution_for("docx").unwrap(), "python-docx");
        assert_eq!(distribution_for("pdfminer").unwrap(), "pdfminer-six");
    }

    #[test]
    fn unknown_modules_are_looked_up_under_their_own_name() {
        assert_eq!(distribution_for("Tabulate_X").unwrap(), "tabulate-x");
    }

    #[test]
    fn hostile_names_are_refused() {
        for bad in [
            "",
            "../etc",
            "a b",
            "-rf",
            "x;rm",
            "a/b",
            "é",
            "--index-url",
        ] {
            assert_eq!(normalize_distribution(bad), None, "{bad:?}");
            assert_eq!(distribution_for(bad), None, "{bad:?}");
        }
        assert_eq!(distribution_for(&"a".repeat(101)), None);
        assert!(!is_module_name("1abc"));
    }

    #[test]
    fn normalization_follows_pep_503() {
        assert_eq!(
            normalize_distribution("Foo__Bar.baz").unwrap(),
            "foo-bar-baz"
        );
        assert_eq!(normalize_distribution("discord.py").unwrap(), "discord-py");
    }

    #[test]
    fn lists_split_normalize_and_report_bad_entries() {
        let (valid, invalid) = parse_list(" Requests, torch ,, bad name,torch");
        assert_eq!(valid, vec!["requests", "torch"]);
        assert_eq!(invalid, vec!["bad name"]);
    }
}
