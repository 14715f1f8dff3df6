//! Pure: the operator's decision on which distributions may be installed.

use crate::config::{PackagePolicy, PackageSettings};

use super::names::parse_list;

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    mode: PackagePolicy,
    allow: Vec<String>,
    deny: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Why, in words for the user and the model.
    Refused(String),
}

impl Policy {
    pub fn new(mode: PackagePolicy, allowlist: &str, denylist: &str) -> Policy {
        Policy {
            mode,
            allow: parse_list(allowlist).0,
            deny: parse_list(denylist).0,
        }
    }

    pub fn from_settings(settings: &PackageSettings) -> Policy {
        Policy::new(
            settings.package_policy,
            &settings.package_allowlist,
            &settings.package_denylist,
        )
    }

    pub fn mode(&self) -> PackagePolicy {
        self.mode
    }

    /// `distribution` must already be normalized.
    pub fn decide(&self, distribution: &str) -> Decision {
        let listed = |list: &[String]| list.iter().any(|d| d == distribution);
        match self.mode {
            PackagePolicy::Off => Decision::Refused(format!(
                "package {distribution} is not installed and package installation is turned off"
            )),
            PackagePolicy::Allowlist if !listed(&self.allow) => Decision::Refused(format!(
                "package {distribution} is not allowed (not on this server's allowlist)"
            )),
            PackagePolicy::Denylist if listed(&self.deny) => Decision::Refused(format!(
                "package {distribution} is not allowed (on this server's denylist)"
            )),
            _ => Decision::Allowed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_allows_only_listed_names_in_any_spelling() {
        let policy = Policy::new(PackagePolicy::Allowlist, "Scikit_Learn, tabulate", "");
        assert_eq!(policy.decide("scikit-learn"), Decision::Allowed);
        assert_eq!(policy.decide("tabulate"), Decision::Allowed);
        assert!(
            matches!(policy.decide("torch"), Decision::Refused(m) if m.contains("package torch is not allowed"))
        );
    }

    #[test]
    fn denylist_refuses_only_listed_names() {
        let policy = Policy::new(PackagePolicy::Denylist, "", "torch,evil-pkg");
        assert_eq!(policy.decide("tabulate"), Decision::Allowed);
        assert!(
            matches!(policy.decide("evil-pkg"), Decision::Refused(m) if m.contains("not allowed"))
        );
    }

    #[test]
    fn off_installs_nothing() {
        let policy = Policy::new(PackagePolicy::Off, "tabulate", "");
        assert!(matches!(policy.decide("tabulate"), Decision::Refused(_)));
    }
}
