//! Pure: the curated allowlist shipped with codebox (`allowlist.txt` beside this file), the
//! default policy's answer to "may this be installed?" before any operator setting.

use std::sync::OnceLock;

use super::names::normalize_distribution;

const LIST: &str = include_str!("allowlist.txt");

/// The curated distributions, normalized, sorted and unique.
pub fn curated() -> &'static [String] {
    static CURATED: OnceLock<Vec<String>> = OnceLock::new();
    CURATED.get_or_init(|| {
        // The list is compiled in and every line is checked by a unit test; a line that is
        // not a name could only be a build defect, and dropping it refuses that one name.
        let mut names: Vec<String> = entries(LIST).filter_map(normalize_distribution).collect();
        names.sort();
        names.dedup();
        names
    })
}

fn entries(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn every_line_is_a_distinct_valid_name() {
        let raw: Vec<&str> = entries(LIST).collect();
        for name in &raw {
            assert!(normalize_distribution(name).is_some(), "bad entry {name:?}");
        }
        assert_eq!(curated().len(), raw.len(), "duplicate entries");
        assert!(
            (150..=400).contains(&curated().len()),
            "a few hundred widely used names, not {}",
            curated().len()
        );
    }

    #[test]
    fn every_mapped_distribution_is_curated() {
        let table: HashMap<String, String> =
            serde_json::from_str(include_str!("distributions.json")).unwrap();
        for (module, dist) in table.iter().filter(|(k, _)| !k.starts_with('_')) {
            let dist = normalize_distribution(dist).unwrap();
            assert!(
                curated().binary_search(&dist).is_ok(),
                "{module} maps to {dist}, which is not curated"
            );
        }
    }

    #[test]
    fn common_data_science_names_are_curated_in_normal_form() {
        for name in [
            "numpy",
            "pandas",
            "scikit-learn",
            "pdfminer-six",
            "ruamel-yaml",
        ] {
            assert!(curated().binary_search(&name.to_string()).is_ok(), "{name}");
        }
        assert!(curated().binary_search(&"cbx-alpha".to_string()).is_err());
    }
}
