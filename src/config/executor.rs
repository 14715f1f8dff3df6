//! Settings of the executor service (`codebox executor`) and of its clients (the bot and
//! the CLI with `EXECUTOR_URLS`).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret, invalid};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecutorSettings {
    /// Executors that run code for this process, comma-separated (`http://host:8090`), or one
    /// DNS name that resolves to several addresses (Swarm's `http://tasks.executor:8090`).
    /// Empty: code runs in this process's own executor (the single-host default).
    pub executor_urls: String,
    /// Bearer token between executors and their clients (secret). An executor refuses to
    /// listen on a non-loopback address without one.
    pub executor_token: Option<Secret>,
    /// Address `codebox executor` listens on.
    pub executor_listen: String,
    /// Seconds a client has to send a whole request head, and that a kept-alive connection
    /// may wait for its next one, before the executor closes it.
    pub executor_header_timeout_s: f64,
    /// Connections the executor holds at once, from everyone (lowered to what the file
    /// limit allows); past it a connection gets 503.
    pub executor_max_connections: usize,
    /// Connections one client address may hold at once; past it, 503 for that address
    /// only, so one flooding address cannot shut the others out.
    pub executor_max_connections_per_peer: usize,
    /// Seconds runs in flight get to finish after SIGTERM before they are cancelled; keep
    /// it below the orchestrator's stop grace period.
    pub executor_shutdown_grace_s: f64,
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        ExecutorSettings {
            executor_urls: String::new(),
            executor_token: None,
            executor_listen: "127.0.0.1:8090".to_string(),
            executor_header_timeout_s: 10.0,
            executor_max_connections: 1024,
            executor_max_connections_per_peer: 256,
            executor_shutdown_grace_s: 45.0,
        }
    }
}

impl ExecutorSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.executor_listen.parse::<SocketAddr>().is_err() {
            return invalid(
                "EXECUTOR_LISTEN",
                "must be an address and port, such as 127.0.0.1:8090 or 0.0.0.0:8090",
            );
        }
        for (name, value) in [
            ("EXECUTOR_HEADER_TIMEOUT_S", self.executor_header_timeout_s),
            ("EXECUTOR_SHUTDOWN_GRACE_S", self.executor_shutdown_grace_s),
        ] {
            if !(value.is_finite() && value > 0.0 && value <= 3600.0) {
                return invalid(name, "must be a number of seconds above 0 and at most 3600");
            }
        }
        if self.executor_max_connections == 0 || self.executor_max_connections_per_peer == 0 {
            return invalid(
                "EXECUTOR_MAX_CONNECTIONS",
                "EXECUTOR_MAX_CONNECTIONS and EXECUTOR_MAX_CONNECTIONS_PER_PEER must be at least 1",
            );
        }
        for url in self.urls() {
            let parsed = reqwest::Url::parse(url);
            let fine = parsed
                .as_ref()
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !fine {
                return invalid(
                    "EXECUTOR_URLS",
                    "must be comma-separated http:// or https:// URLs of executors",
                );
            }
        }
        if self
            .executor_token
            .as_ref()
            .is_some_and(|t| t.expose().trim().is_empty())
        {
            return invalid("EXECUTOR_TOKEN", "must not be empty when set");
        }
        Ok(())
    }

    /// The executor URLs, in the order given.
    pub fn urls(&self) -> Vec<&str> {
        self.executor_urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect()
    }

    /// Where `codebox executor` listens (validated at load).
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.executor_listen
            .parse()
            .map_err(|_| ConfigError::Invalid {
                setting: "EXECUTOR_LISTEN".to_string(),
                reason: "must be an address and port".to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_listen_address_are_checked() {
        let mut settings = ExecutorSettings::default();
        assert!(settings.validate().is_ok());
        assert!(settings.urls().is_empty());
        settings.executor_urls = " http://a:8090, http://tasks.executor:8090 ".into();
        assert!(settings.validate().is_ok());
        assert_eq!(
            settings.urls(),
            ["http://a:8090", "http://tasks.executor:8090"]
        );
        settings.executor_urls = "a:8090".into();
        assert!(settings.validate().is_err());
        settings.executor_urls = String::new();
        settings.executor_listen = "localhost".into();
        assert!(settings.validate().is_err());
        settings.executor_listen = "0.0.0.0:9000".into();
        settings.executor_token = Some(Secret::new(" "));
        assert!(settings.validate().is_err());
    }

    #[test]
    fn connection_limits_are_checked() {
        let fine = ExecutorSettings::default();
        assert!(fine.validate().is_ok());
        for broken in [
            ExecutorSettings {
                executor_header_timeout_s: 0.0,
                ..fine.clone()
            },
            ExecutorSettings {
                executor_shutdown_grace_s: f64::NAN,
                ..fine.clone()
            },
            ExecutorSettings {
                executor_max_connections: 0,
                ..fine.clone()
            },
            ExecutorSettings {
                executor_max_connections_per_peer: 0,
                ..fine.clone()
            },
        ] {
            assert!(broken.validate().is_err(), "{broken:?}");
        }
    }
}
