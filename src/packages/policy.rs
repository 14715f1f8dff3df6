//! Pure: the operator's decision on which distributions may be installed.

use crate::config::{PackagePolicy, PackageSettings};

use super::allowlist::curated;
use super::names::parse_list;

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    mode: PackagePolicy,
    /// The operator's additions to the curated list.
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
        let name = distribution.to_string();
        let denied = self.deny.binary_search(&name).is_ok();
        let allowed =
            self.allow.binary_search(&name).is_ok() || curated().binary_search(&name).is_ok();
        match self.mode {
            PackagePolicy::Off => Decision::Refused(format!(
                "package {distribution} is not installed and package installation is turned off"
            )),
            // The denylist also applies here: it is how an operator takes a curated name out.
            PackagePolicy::Allowlist | PackagePolicy::Denylist if denied => Decision::Refused(
                format!("package {distribution} is not allowed (on this server's denylist)"),
            ),
            PackagePolicy::Allowlist if !allowed => Decision::Refused(format!(
                "package {distribution} is not allowed (not on this server's allowlist: the \
                 curated list of common packages plus PACKAGE_ALLOWLIST)"
            )),
            _ => Decision::Allowed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_because(decision: Decision) -> String {
        match decision {
            Decision::Refused(reason) => reason,
            Decision::Allowed => panic!("allowed"),
        }
    }

    #[test]
    fn the_default_settings_allow_curated_names_and_refuse_the_rest() {
        let policy = Policy::from_settings(&PackageSettings::default());
        assert_eq!(policy.mode(), PackagePolicy::Allowlist);
        for curated in ["scikit-learn", "tabulate", "python-docx", "polars"] {
            assert_eq!(policy.decide(curated), Decision::Allowed, "{curated}");
        }
        let reason = refused_because(policy.decide("reqeusts"));
        assert!(
            reason.contains("package reqeusts is not allowed (not on this server's allowlist"),
            "{reason}"
        );
        assert!(
            reason.contains("PACKAGE_ALLOWLIST"),
            "names the setting: {reason}"
        );
    }

    #[test]
    fn the_operators_allowlist_extends_the_curated_one_in_any_spelling() {
        let policy = Policy::new(PackagePolicy::Allowlist, "Cbx_Alpha, in-house.tools", "");
        assert_eq!(policy.decide("cbx-alpha"), Decision::Allowed);
        assert_eq!(policy.decide("in-house-tools"), Decision::Allowed);
        assert_eq!(policy.decide("numpy"), Decision::Allowed, "still curated");
        assert!(matches!(policy.decide("torch-extra"), Decision::Refused(_)));
    }

    #[test]
    fn the_denylist_takes_curated_names_out_of_the_allowlist() {
        let policy = Policy::new(PackagePolicy::Allowlist, "torch", "Torch, tensorflow_cpu");
        assert!(refused_because(policy.decide("torch")).contains("denylist"));
        assert!(refused_because(policy.decide("tensorflow-cpu")).contains("denylist"));
        assert_eq!(policy.decide("scipy"), Decision::Allowed);
    }

    #[test]
    fn denylist_refuses_only_listed_names() {
        let policy = Policy::new(PackagePolicy::Denylist, "", "torch,evil-pkg");
        assert_eq!(policy.decide("tabulate"), Decision::Allowed);
        assert_eq!(
            policy.decide("cbx-anything"),
            Decision::Allowed,
            "uncurated"
        );
        assert!(refused_because(policy.decide("evil-pkg")).contains("not allowed"));
    }

    #[test]
    fn off_installs_nothing() {
        let policy = Policy::new(PackagePolicy::Off, "tabulate", "");
        assert!(matches!(policy.decide("tabulate"), Decision::Refused(_)));
    }
}
