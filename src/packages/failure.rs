//! Pure: one distribution's failed installation -> the error the user and the model read.
//!
//! The model only ever wrote an import; a distribution name it never typed does not tell it
//! what to change. So every failure names the modules that led to the distribution, and the
//! commonest one, a name the index does not have, says so in a line of its own before pip's
//! log.

use super::PackagesError;

/// pip's words when the index has no installable file for a name (`--only-binary` makes a
/// project with no suitable wheel look the same).
const NOT_ON_INDEX_MARKERS: [&str; 2] = [
    "No matching distribution found",
    "Could not find a version that satisfies",
];

/// The error for `distribution`, which the code imported as `modules`, given pip's log.
pub fn install_failure(distribution: &str, modules: &[String], log: &str) -> PackagesError {
    let distribution = distribution.to_string();
    let modules = modules.to_vec();
    let log = log.to_string();
    if NOT_ON_INDEX_MARKERS
        .iter()
        .any(|marker| log.contains(marker))
    {
        PackagesError::NotOnIndex {
            distribution,
            modules,
            log,
        }
    } else {
        PackagesError::Install {
            distribution,
            modules,
            log,
        }
    }
}

/// " (imported as `a`, `b`)", or nothing when no import is known.
pub fn imported_as(modules: &[String]) -> String {
    if modules.is_empty() {
        return String::new();
    }
    let names: Vec<String> = modules.iter().map(|m| format!("`{m}`")).collect();
    format!(" (imported as {})", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIP_NOT_FOUND: &str = "ERROR: Could not find a version that satisfies the requirement foo-bar (from versions: none)\nERROR: No matching distribution found for foo-bar";

    #[test]
    fn a_name_the_index_lacks_is_reported_with_the_import_that_led_to_it() {
        let err = install_failure("foo-bar", &["foo_bar".to_string()], PIP_NOT_FOUND);
        assert!(matches!(err, PackagesError::NotOnIndex { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.starts_with("No matching distribution for `foo-bar` (imported as `foo_bar`)"),
            "{message}"
        );
        assert!(
            message.ends_with(PIP_NOT_FOUND),
            "pip's own words follow: {message}"
        );
    }

    #[test]
    fn other_failures_name_the_import_too() {
        let err = install_failure(
            "scikit-learn",
            &["sklearn".to_string()],
            "ERROR: HTTP error 503",
        );
        assert!(matches!(err, PackagesError::Install { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.starts_with("installing `scikit-learn` (imported as `sklearn`) failed"),
            "{message}"
        );
        assert!(message.contains("HTTP error 503"), "{message}");
    }

    #[test]
    fn several_imports_of_one_distribution_are_all_named() {
        assert_eq!(
            imported_as(&["a".to_string(), "b".to_string()]),
            " (imported as `a`, `b`)"
        );
        assert_eq!(imported_as(&[]), "");
    }
}
