//! Pure: one distribution's failed installation -> the error the user and the model read.
//!
//! The model only ever wrote an import; a distribution name it never typed does not tell it
//! what to change. So every failure names the modules that led to the distribution, and the
//! commonest one, a name the index does not have, says so in a line of its own before pip's
//! log.

use super::PackagesError;
use super::installer::InstallOutcome;
use crate::container::rebuild_command;

const MIB: u64 = 1024 * 1024;

/// What an installer container was allowed to leave on the host, for the words of a size
/// refusal.
#[derive(Debug, Clone, PartialEq)]
pub struct InstallLimits {
    pub install_max_mb: u64,
    pub cache_max_mb: u64,
    /// The cache's room beside what runs use, smaller than the install limit, set the copy
    /// budget.
    pub limited_by_cache: bool,
    pub in_use_bytes: u64,
}

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

/// Why the installer's result for `distribution` cannot be used, or None when the cache may
/// take it. `image` is the installer's, named when it is too old to keep to any limit.
pub fn installer_failure(
    distribution: &str,
    modules: &[String],
    outcome: &InstallOutcome,
    limits: &InstallLimits,
    image: &str,
) -> Option<PackagesError> {
    if !outcome.bounded {
        return Some(PackagesError::OutdatedInstaller {
            image: image.to_string(),
            rebuild: rebuild_command(image),
        });
    }
    if outcome.ok {
        return None;
    }
    let bytes = outcome.bytes.unwrap_or(u64::MAX);
    let over_install_limit = bytes > limits.install_max_mb.saturating_mul(MIB);
    if outcome.disk_full || (outcome.too_large && (over_install_limit || !limits.limited_by_cache))
    {
        return Some(PackagesError::InstallTooLarge {
            distribution: distribution.to_string(),
            modules: modules.to_vec(),
            limit_mb: limits.install_max_mb,
        });
    }
    if outcome.too_large {
        return Some(PackagesError::CacheFull {
            distribution: distribution.to_string(),
            modules: modules.to_vec(),
            bytes,
            in_use_bytes: limits.in_use_bytes,
            limit_mb: limits.cache_max_mb,
        });
    }
    Some(install_failure(distribution, modules, &outcome.log))
}

/// " (imported as `a`, `b`)", or nothing when no import is known.
pub fn imported_as(modules: &[String]) -> String {
    if modules.is_empty() {
        return String::new();
    }
    let names: Vec<String> = modules.iter().map(|m| format!("`{m}`")).collect();
    format!(" (imported as {})", names.join(", "))
}

/// Bytes as megabytes (MiB) with one decimal, as the size limits are set.
pub fn megabytes(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
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

    #[test]
    fn size_refusals_name_the_limit_and_the_setting() {
        let too_large = PackagesError::InstallTooLarge {
            distribution: "cbx-huge".into(),
            modules: vec!["cbx_huge".into()],
            limit_mb: 20,
        }
        .to_string();
        assert!(
            too_large.starts_with(
                "installing `cbx-huge` (imported as `cbx_huge`) needs more than 20 MB"
            ),
            "{too_large}"
        );
        assert!(
            too_large.contains("PACKAGE_INSTALL_MAX_MB=20"),
            "{too_large}"
        );
        let cache_full = PackagesError::CacheFull {
            distribution: "cbx-big".into(),
            modules: vec!["cbx_big".into()],
            bytes: 10 * 1024 * 1024 + 1024 * 1024 / 2,
            in_use_bytes: 0,
            limit_mb: 5,
        }
        .to_string();
        assert!(cache_full.contains("takes 10.5 MB"), "{cache_full}");
        assert!(
            cache_full.contains("PACKAGE_CACHE_MAX_MB=5"),
            "{cache_full}"
        );
        assert!(
            cache_full.contains("in use by running code take 0.0 MB"),
            "{cache_full}"
        );
    }

    fn outcome(ok: bool) -> InstallOutcome {
        InstallOutcome {
            distribution: "cbx-x".into(),
            ok,
            log: "ERROR: [Errno 28] No space left on device".into(),
            bounded: true,
            bytes: None,
            disk_full: false,
            too_large: false,
        }
    }

    fn limits(limited_by_cache: bool) -> InstallLimits {
        InstallLimits {
            install_max_mb: 20,
            cache_max_mb: 100,
            limited_by_cache,
            in_use_bytes: 3 * MIB,
        }
    }

    fn failure(outcome: &InstallOutcome, limits: &InstallLimits) -> Option<PackagesError> {
        installer_failure("cbx-x", &["cbx_x".into()], outcome, limits, "img:1")
    }

    #[test]
    fn a_bounded_success_goes_to_the_cache() {
        let done = InstallOutcome {
            bytes: Some(MIB),
            ..outcome(true)
        };
        assert!(failure(&done, &limits(false)).is_none());
    }

    #[test]
    fn an_installer_that_keeps_to_no_limit_is_refused_even_when_it_succeeded() {
        let old = InstallOutcome {
            bounded: false,
            ..outcome(true)
        };
        let err = failure(&old, &limits(false)).unwrap();
        assert!(
            matches!(err, PackagesError::OutdatedInstaller { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("codebox image build"), "{err}");
    }

    #[test]
    fn a_full_work_area_is_the_install_limit() {
        let full = InstallOutcome {
            disk_full: true,
            ..outcome(false)
        };
        for cache_bound in [false, true] {
            let err = failure(&full, &limits(cache_bound)).unwrap();
            assert!(
                matches!(err, PackagesError::InstallTooLarge { limit_mb: 20, .. }),
                "{err:?}"
            );
        }
    }

    #[test]
    fn too_large_to_copy_names_whichever_limit_set_the_budget() {
        let large = |mb: u64| InstallOutcome {
            too_large: true,
            bytes: Some(mb * MIB),
            ..outcome(false)
        };
        assert!(matches!(
            failure(&large(15), &limits(false)),
            Some(PackagesError::InstallTooLarge { .. })
        ));
        assert!(matches!(
            failure(&large(15), &limits(true)),
            Some(PackagesError::CacheFull { bytes, in_use_bytes, limit_mb: 100, .. })
                if bytes == 15 * MIB && in_use_bytes == 3 * MIB
        ));
        assert!(matches!(
            failure(&large(25), &limits(true)),
            Some(PackagesError::InstallTooLarge { .. })
        ));
    }

    #[test]
    fn other_failures_keep_pips_words() {
        let err = failure(&outcome(false), &limits(false)).unwrap();
        assert!(matches!(err, PackagesError::Install { .. }), "{err:?}");
    }
}
