//! One typed `Settings`, layered: defaults < optional `codebox.toml` < `.env` < environment.
//!
//! This is the only module that reads the process environment. Keys keep the original
//! bot's names (`CODE_EXECUTION_TIMEOUT`, ...); in TOML they are the same names in lower case.
//! Settings are grouped by the component that uses them (one struct per area, each
//! validated by itself); every area is extracted from the same layers, so an error still
//! names the setting.

mod chat;
mod discord;
mod executor;
pub mod lists;
pub mod models;
mod packages;
mod sandbox;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::Value;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use chat::{ChatSettings, VisionMode};
pub use discord::{DiscordSettings, ids as id_list};
pub use executor::ExecutorSettings;
pub use models::ModelEntry;
pub use packages::{PackagePolicy, PackageSettings};
pub use sandbox::{
    MAX_MEMORY_MB, MAX_TIMEOUT_S, PoolSettings, Runtime, SandboxSettings, SessionState,
};
pub use store::StoreSettings;

/// A secret setting: usable, but never printed by `{:?}` (settings may end up in a panic
/// message or a log line).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Settings every part of the process shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct General {
    data_dir: PathBuf,
    rust_log: Option<String>,
    log_format: LogFormat,
}

/// How logs on stderr are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object a line, with an event for each span that closes and its time
    /// (what `bench/bot-latency.sh` reads).
    Json,
}

impl Default for General {
    fn default() -> Self {
        General {
            data_dir: PathBuf::from("data"),
            rust_log: None,
            log_format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Where stored files, outputs, staged inputs, the package cache and the embedded
    /// database live; absolute (made so once, at load: Docker resolves bind mounts on the
    /// daemon's side).
    pub data_dir: PathBuf,
    /// tracing filter for logs on stderr (e.g. `info`, `codebox=debug`); each command has
    /// its own default when unset.
    pub rust_log: Option<String>,
    /// LOG_FORMAT: `text` (default) or `json`.
    pub log_format: LogFormat,
    pub sandbox: SandboxSettings,
    pub pool: PoolSettings,
    pub packages: PackageSettings,
    pub store: StoreSettings,
    pub chat: ChatSettings,
    pub discord: DiscordSettings,
    pub executor: ExecutorSettings,
}

impl Default for Settings {
    fn default() -> Self {
        let general = General::default();
        Settings {
            data_dir: absolute(&general.data_dir),
            rust_log: general.rust_log,
            log_format: general.log_format,
            sandbox: SandboxSettings::default(),
            pool: PoolSettings::default(),
            packages: PackageSettings::default(),
            store: StoreSettings::default(),
            chat: ChatSettings::default(),
            discord: DiscordSettings::default(),
            executor: ExecutorSettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid setting {setting}: {reason}")]
    Invalid { setting: String, reason: String },
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
}

pub(crate) fn invalid(setting: &str, reason: &str) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        setting: setting.to_string(),
        reason: reason.to_string(),
    })
}

pub(crate) fn is_positive(value: f64) -> bool {
    value.is_finite() && value > 0.0
}

/// Docker resolves bind-mount sources on the daemon side: host paths must be absolute.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Where the layers come from; `from_process` fills it from the real process.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub toml_file: Option<PathBuf>,
    pub dotenv_file: Option<PathBuf>,
    pub environment: Vec<(String, String)>,
}

impl Sources {
    /// `codebox.toml` and `.env` in the working directory (when present) and the real
    /// environment. `CODEBOX_CONFIG` or `config_file` names another TOML file.
    pub fn from_process(config_file: Option<&Path>) -> Sources {
        let environment: Vec<(String, String)> = std::env::vars().collect();
        let named = config_file.map(Path::to_path_buf).or_else(|| {
            environment
                .iter()
                .find(|(k, _)| k == "CODEBOX_CONFIG")
                .map(|(_, v)| PathBuf::from(v))
        });
        let toml_file = named.or_else(|| Some(PathBuf::from("codebox.toml")));
        Sources {
            toml_file,
            dotenv_file: Some(PathBuf::from(".env")),
            environment,
        }
    }
}

fn extract<T: DeserializeOwned>(figment: &Figment) -> Result<T, ConfigError> {
    figment.extract().map_err(|err| {
        let setting = err
            .path
            .last()
            .map(|k| k.to_uppercase())
            .unwrap_or_else(|| "configuration".to_string());
        ConfigError::Invalid {
            setting,
            reason: err.kind.to_string(),
        }
    })
}

impl Settings {
    pub fn load(sources: &Sources) -> Result<Settings, ConfigError> {
        let names = setting_names();
        let mut figment = Figment::new();
        if let Some(path) = sources.toml_file.as_ref().filter(|p| p.exists()) {
            figment = figment.merge(Toml::file_exact(path));
        }
        let mut dotenv = Vec::new();
        if let Some(path) = sources.dotenv_file.as_ref().filter(|p| p.exists()) {
            dotenv = read_dotenv(path)?;
            figment = figment.merge(Serialized::defaults(as_setting_values(
                dotenv.clone(),
                &names,
            )));
        }
        let environment = with_file_values(&sources.environment, &names)?;
        figment = figment.merge(Serialized::defaults(as_setting_values(environment, &names)));
        let general: General = extract(&figment)?;
        if general.data_dir.as_os_str().is_empty() {
            invalid("DATA_DIR", "must be a path")?;
        }
        let settings = Settings {
            data_dir: absolute(&general.data_dir),
            rust_log: general.rust_log,
            log_format: general.log_format,
            sandbox: extract(&figment)?,
            pool: extract(&figment)?,
            packages: extract(&figment)?,
            store: extract(&figment)?,
            chat: with_model_keys(extract(&figment)?, &dotenv, &sources.environment),
            discord: extract(&figment)?,
            executor: extract(&figment)?,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Every area checks its own ranges (serde cannot express them); errors name the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.sandbox.validate()?;
        self.pool.validate()?;
        self.packages.validate()?;
        self.store.validate()?;
        self.chat.validate()?;
        self.discord.validate()?;
        self.executor.validate()
    }

    /// Values that must never appear in anything the bot sends or logs.
    pub fn secrets(&self) -> Vec<String> {
        [
            &self.discord.discord_token,
            &self.chat.openai_api_key,
            &self.store.mongodb_uri,
            &self.executor.executor_token,
        ]
        .into_iter()
        .flatten()
        .chain(self.chat.models.values().filter_map(|m| m.api_key.as_ref()))
        .map(|s| s.expose().to_string())
        .collect()
    }
}

/// Each model row's `api_key_env` read from the environment (or `.env`): the one place a
/// variable named by the operator, not by codebox, is read.
fn with_model_keys(
    mut chat: ChatSettings,
    dotenv: &[(String, String)],
    environment: &[(String, String)],
) -> ChatSettings {
    for entry in chat.models.values_mut() {
        if let Some(name) = &entry.api_key_env {
            entry.api_key = environment
                .iter()
                .chain(dotenv)
                .find(|(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| Secret::new(v.clone()));
        }
    }
    chat
}

/// Keys of an area's settings, from its own serialization: the structs are the only list.
fn keys_of<T: Serialize + Default>() -> Vec<String> {
    match serde_json::to_value(T::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Settings that exist only as TOML tables, never as one environment value.
const TOML_ONLY: &[&str] = &["models"];

/// Every environment name a setting answers to, derived from the settings structs.
pub fn setting_names() -> BTreeSet<String> {
    [
        keys_of::<General>(),
        keys_of::<SandboxSettings>(),
        keys_of::<PoolSettings>(),
        keys_of::<PackageSettings>(),
        keys_of::<StoreSettings>(),
        keys_of::<ChatSettings>(),
        keys_of::<DiscordSettings>(),
        keys_of::<ExecutorSettings>(),
    ]
    .into_iter()
    .flatten()
    .filter(|key| !TOML_ONLY.contains(&key.as_str()))
    .map(|key| key.to_uppercase())
    .collect()
}

/// `NAME_FILE=/path` sets NAME to the file's content (trailing newline dropped): how Docker
/// and Swarm secrets (`/run/secrets/...`) reach settings without the value in the
/// environment. A value given directly wins.
fn with_file_values(
    environment: &[(String, String)],
    names: &BTreeSet<String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut pairs = environment.to_vec();
    for (key, path) in environment {
        let Some(name) = key.strip_suffix("_FILE") else {
            continue;
        };
        // An empty path means unset.
        if path.is_empty() || !names.contains(name) || environment.iter().any(|(k, _)| k == name) {
            continue;
        }
        let value = std::fs::read_to_string(path).map_err(|err| ConfigError::Unreadable {
            path: PathBuf::from(path),
            reason: format!("{key}: {err}"),
        })?;
        let value = value.trim_end_matches(['\r', '\n']);
        // An empty file too means unset (`/dev/null` clears a base file's secret).
        if !value.is_empty() {
            pairs.push((name.to_string(), value.to_string()));
        }
    }
    Ok(pairs)
}

fn read_dotenv(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let unreadable = |reason: String| ConfigError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    let iter = dotenvy::from_path_iter(path).map_err(|e| unreadable(e.to_string()))?;
    iter.map(|item| item.map_err(|e| unreadable(e.to_string())))
        .collect()
}

/// Environment-style pairs as figment values: keys in lower case (the TOML spelling), values
/// parsed the way figment parses environment variables ("300" is a number, "runc" a string).
fn as_setting_values(
    pairs: impl IntoIterator<Item = (String, String)>,
    names: &BTreeSet<String>,
) -> BTreeMap<String, Value> {
    pairs
        .into_iter()
        .filter(|(key, _)| names.contains(key))
        .map(|(key, value)| {
            // Text settings stay text even when they look like numbers (BOT_CHANNELS=123).
            let parsed = if TEXT_SETTINGS.contains(&key.as_str()) {
                Value::from(value)
            } else {
                Value::from_str(&value).unwrap_or_else(|_| Value::from(value.clone()))
            };
            (key.to_lowercase(), parsed)
        })
        .collect()
}

const TEXT_SETTINGS: &[&str] = &[
    "SANDBOX_IMAGE",
    "DATA_DIR",
    "RUST_LOG",
    "MONGODB_URI",
    "MONGODB_DATABASE",
    "DISCORD_TOKEN",
    "DISCORD_API_BASE",
    "EXECUTOR_URLS",
    "EXECUTOR_TOKEN",
    "EXECUTOR_LISTEN",
    "BOT_CHANNELS",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_MODEL",
    "MODEL_VISION",
    "CHAT_MODELS",
    "ADMIN_ROLE_IDS",
    "BLOCKED_USER_IDS",
    "ALLOWED_USER_IDS",
    "BLOCKED_ROLE_IDS",
    "ALLOWED_ROLE_IDS",
    "CODE_BLOCKED_USER_IDS",
    "CODE_ALLOWED_USER_IDS",
    "CODE_BLOCKED_ROLE_IDS",
    "CODE_ALLOWED_ROLE_IDS",
    "PACKAGE_ALLOWLIST",
    "PACKAGE_DENYLIST",
    "PIP_INDEX_URL",
    "SANDBOX_EXTRA_CA_FILE",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_original_bot() {
        let s = Settings::load(&Sources::default()).unwrap();
        assert_eq!(s.sandbox.code_execution_timeout, 300.0);
        assert_eq!(s.sandbox.sandbox_memory_mb, 1024);
        assert_eq!(s.sandbox.sandbox_pids, 128);
        assert_eq!(s.sandbox.sandbox_disk_mb, 512);
        assert_eq!(s.sandbox.max_output_chars, 100_000);
        assert_eq!(s.sandbox.max_output_file_mb, 50);
        assert_eq!(s.sandbox.sandbox_runtime, Runtime::Runc);
        assert_eq!(s.sandbox.sandbox_image, "codebox-sandbox:latest");
        assert_eq!(s.store.max_files_per_user, 20);
        assert_eq!(s.store.file_expiration_hours, 48.0);
        assert_eq!(s.store.cleanup_interval_minutes, 60.0);
        assert_eq!(s.store.mongodb_uri, None);
    }

    #[test]
    fn fractional_and_never_expiry_are_accepted() {
        for value in ["0.001", "-1"] {
            let sources = Sources {
                environment: env(&[("FILE_EXPIRATION_HOURS", value)]),
                ..Sources::default()
            };
            assert!(Settings::load(&sources).is_ok(), "{value}");
        }
    }

    #[test]
    fn layers_apply_in_order_toml_dotenv_environment() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("codebox.toml");
        std::fs::write(
            &toml,
            "sandbox_memory_mb = 2048\nsandbox_pids = 64\nsandbox_cpus = 0.5\n",
        )
        .unwrap();
        let dotenv = dir.path().join(".env");
        std::fs::write(&dotenv, "SANDBOX_PIDS=32\nSANDBOX_CPUS=1.5\n").unwrap();
        let sources = Sources {
            toml_file: Some(toml),
            dotenv_file: Some(dotenv),
            environment: env(&[("SANDBOX_CPUS", "2"), ("SANDBOX_RUNTIME", "runsc")]),
        };
        let s = Settings::load(&sources).unwrap();
        assert_eq!(s.sandbox.sandbox_memory_mb, 2048, "from toml");
        assert_eq!(s.sandbox.sandbox_pids, 32, ".env beats toml");
        assert_eq!(s.sandbox.sandbox_cpus, 2.0, "environment beats .env");
        assert_eq!(s.sandbox.sandbox_runtime, Runtime::Runsc);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let cases = [
            ("SANDBOX_MEMORY_MB", "lots"),
            ("SANDBOX_RUNTIME", "kata"),
            ("SANDBOX_CPUS", "0"),
            ("CODE_EXECUTION_TIMEOUT", "-1"),
            ("MAX_CONCURRENT_EXECUTIONS", "0"),
            ("FILE_EXPIRATION_HOURS", "0"),
            ("MAX_FILES_PER_USER", "0"),
            ("MONGODB_URI", "postgres://x"),
            // Huge numbers are refused at the boundary, before any arithmetic on them.
            ("CODE_EXECUTION_TIMEOUT", "1e30"),
            ("SANDBOX_MEMORY_MB", "17592186044416"),
            ("OPENAI_TIMEOUT", "1e19"),
        ];
        for (key, value) in cases {
            let sources = Sources {
                environment: env(&[(key, value)]),
                ..Sources::default()
            };
            let err = Settings::load(&sources).unwrap_err().to_string();
            assert!(err.contains(key), "{key}={value} gave: {err}");
        }
    }

    #[test]
    fn text_settings_stay_text() {
        let sources = Sources {
            environment: env(&[("BOT_CHANNELS", "123"), ("DISCORD_TOKEN", "42")]),
            ..Sources::default()
        };
        let s = Settings::load(&sources).unwrap();
        assert_eq!(s.discord.bot_channel_ids(), vec![123]);
        assert_eq!(
            s.discord.discord_token.as_ref().map(Secret::expose),
            Some("42")
        );
        assert!(!format!("{s:?}").contains("42\""), "secrets never print");
    }

    #[test]
    fn unrelated_environment_is_ignored() {
        let sources = Sources {
            environment: env(&[("PATH", "/bin"), ("HOSTNAME", "x"), ("HOME", "/root")]),
            ..Sources::default()
        };
        assert_eq!(Settings::load(&sources).unwrap(), Settings::default());
    }

    #[test]
    fn data_dir_is_made_absolute_once() {
        let sources = Sources {
            environment: env(&[("DATA_DIR", "relative/data")]),
            ..Sources::default()
        };
        let s = Settings::load(&sources).unwrap();
        assert!(s.data_dir.is_absolute(), "{}", s.data_dir.display());
        assert!(s.data_dir.ends_with("relative/data"));
    }

    #[test]
    fn every_area_reads_its_own_names() {
        let names = setting_names();
        assert!(names.contains("CODE_EXECUTION_TIMEOUT"));
        assert!(names.contains("WARM_POOL_SIZE"));
        assert!(names.contains("OPENAI_RETRY_DELAY_MS"));
        assert!(names.contains("DATA_DIR"));
        assert!(!names.contains("MODELS"), "the model table is TOML-only");
        for text in TEXT_SETTINGS {
            assert!(names.contains(*text), "{text} is not a setting");
        }
    }

    /// The README's settings table and the settings structs cannot drift apart.
    #[test]
    fn readme_table_lists_exactly_the_settings() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("## Settings")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("README has a Settings section");
        let mut documented = BTreeSet::new();
        for line in section.lines().filter(|l| l.starts_with("| `")) {
            let first_cell = line.split('|').nth(1).unwrap_or_default();
            for name in first_cell.split('`').skip(1).step_by(2) {
                documented.insert(name.to_string());
            }
        }
        let mut expected = setting_names();
        expected.insert("models".to_string());
        // Read by the Docker client library, not by codebox's settings.
        documented.remove("DOCKER_HOST");
        assert_eq!(
            documented, expected,
            "README settings table (left) vs settings structs (right)"
        );
    }

    #[test]
    fn a_setting_can_come_from_a_file_like_a_swarm_secret() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("executor_token");
        std::fs::write(&secret, "from-a-file\n").unwrap();
        let sources = Sources {
            environment: env(&[("EXECUTOR_TOKEN_FILE", secret.to_str().unwrap())]),
            ..Sources::default()
        };
        let settings = Settings::load(&sources).unwrap();
        assert_eq!(
            settings.executor.executor_token.unwrap().expose(),
            "from-a-file"
        );
        let direct = Sources {
            environment: env(&[
                ("EXECUTOR_TOKEN", "direct"),
                ("EXECUTOR_TOKEN_FILE", secret.to_str().unwrap()),
            ]),
            ..Sources::default()
        };
        let settings = Settings::load(&direct).unwrap();
        assert_eq!(settings.executor.executor_token.unwrap().expose(), "direct");
        let missing = Sources {
            environment: env(&[("DISCORD_TOKEN_FILE", "/nonexistent/secret")]),
            ..Sources::default()
        };
        let err = Settings::load(&missing).unwrap_err().to_string();
        assert!(err.contains("DISCORD_TOKEN_FILE"), "{err}");
    }
}
