//! Settings of missing-package installs: the policy, the installer container, the cache.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::lists::{parse_list, parse_upstreams};
use super::{ConfigError, invalid, is_positive};

/// Which missing packages may be installed before a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackagePolicy {
    /// Only the curated list shipped with codebox (`src/packages/allowlist.txt`) plus
    /// PACKAGE_ALLOWLIST, minus PACKAGE_DENYLIST.
    Allowlist,
    /// Every distribution except those in PACKAGE_DENYLIST.
    Denylist,
    /// Nothing is installed; imports are not scanned and the code runs as written.
    Off,
}

impl PackagePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PackagePolicy::Allowlist => "allowlist",
            PackagePolicy::Denylist => "denylist",
            PackagePolicy::Off => "off",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PackageSettings {
    pub package_policy: PackagePolicy,
    /// Comma-separated distribution names (PEP 503 spelling is not required).
    pub package_allowlist: String,
    pub package_denylist: String,
    /// Seconds one installer container may take, outside the code's own timeout.
    pub package_install_timeout: f64,
    pub package_install_memory_mb: u64,
    /// The most disk one installer container may fill (downloads and unpacked files, in a
    /// tmpfs of this size) and then copy to the host.
    pub package_install_max_mb: u64,
    /// The shared package cache is trimmed, least recently used first, above this size.
    pub package_cache_max_mb: u64,
    /// Index the installer uses instead of PyPI (a mirror, a proxy, a local test index).
    pub pip_index_url: Option<String>,
    /// Comma-separated `host[:port]` (443 when left out) the installer may reach besides the
    /// index's own host: where an index links its files, if elsewhere.
    pub package_download_hosts: String,
    /// CA bundle given to the installer (a TLS-intercepting proxy's root, for instance).
    pub sandbox_extra_ca_file: Option<PathBuf>,
}

impl Default for PackageSettings {
    fn default() -> Self {
        PackageSettings {
            // Safe by default: an unlisted name (a typo, a squatted name) is never fetched.
            package_policy: PackagePolicy::Allowlist,
            package_allowlist: String::new(),
            package_denylist: String::new(),
            package_install_timeout: 120.0,
            package_install_memory_mb: 1024,
            package_install_max_mb: 512,
            package_cache_max_mb: 2048,
            pip_index_url: None,
            package_download_hosts: String::new(),
            sandbox_extra_ca_file: None,
        }
    }
}

impl PackageSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_positive(self.package_install_timeout) || self.package_install_timeout > 86400.0 {
            return invalid(
                "PACKAGE_INSTALL_TIMEOUT",
                "must be a positive number of seconds, at most 86400",
            );
        }
        if !(64..=super::sandbox::MAX_MEMORY_MB).contains(&self.package_install_memory_mb) {
            return invalid(
                "PACKAGE_INSTALL_MEMORY_MB",
                "must be between 64 and 1048576",
            );
        }
        // The staging tmpfs is memory: bounded like any other memory setting.
        if !(1..=super::sandbox::MAX_MEMORY_MB).contains(&self.package_install_max_mb) {
            return invalid("PACKAGE_INSTALL_MAX_MB", "must be between 1 and 1048576");
        }
        if self.package_cache_max_mb > super::sandbox::MAX_MEMORY_MB * 1024 {
            return invalid("PACKAGE_CACHE_MAX_MB", "is too large");
        }
        for (setting, list) in [
            ("PACKAGE_ALLOWLIST", &self.package_allowlist),
            ("PACKAGE_DENYLIST", &self.package_denylist),
        ] {
            let (_, bad) = parse_list(list);
            if !bad.is_empty() {
                return invalid(
                    setting,
                    &format!("not distribution names: {}", bad.join(", ")),
                );
            }
        }
        if let Some(url) = &self.pip_index_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return invalid("PIP_INDEX_URL", "must be an http:// or https:// URL");
        }
        if let Err(reason) = parse_upstreams(&self.package_download_hosts) {
            return invalid("PACKAGE_DOWNLOAD_HOSTS", &reason);
        }
        if let Some(path) = &self.sandbox_extra_ca_file
            && !path.is_file()
        {
            return invalid("SANDBOX_EXTRA_CA_FILE", "must name a readable file");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(settings: PackageSettings) -> String {
        match settings.validate() {
            Err(ConfigError::Invalid { setting, .. }) => setting,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_default_policy_is_the_curated_allowlist() {
        let settings = PackageSettings::default();
        assert_eq!(settings.package_policy, PackagePolicy::Allowlist);
        assert!(settings.package_install_max_mb > 0);
        settings.validate().unwrap();
    }

    #[test]
    fn the_install_size_limit_is_bounded() {
        for bad in [0, super::super::sandbox::MAX_MEMORY_MB + 1] {
            let settings = PackageSettings {
                package_install_max_mb: bad,
                ..PackageSettings::default()
            };
            assert_eq!(rejected(settings), "PACKAGE_INSTALL_MAX_MB");
        }
    }

    #[test]
    fn lists_with_entries_that_are_not_names_are_refused() {
        let settings = PackageSettings {
            package_allowlist: "tabulate, ../etc".to_string(),
            ..PackageSettings::default()
        };
        assert_eq!(rejected(settings), "PACKAGE_ALLOWLIST");
        let settings = PackageSettings {
            package_denylist: "torch;rm".to_string(),
            ..PackageSettings::default()
        };
        assert_eq!(rejected(settings), "PACKAGE_DENYLIST");
    }
}
