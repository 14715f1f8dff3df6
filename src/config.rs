//! One typed `Settings`, layered: defaults < optional `codebox.toml` < `.env` < environment.
//!
//! This is the only module that reads the process environment. Keys keep the original
//! bot's names (`CODE_EXECUTION_TIMEOUT`, ...); in TOML they are the same names in lower case.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::Value;
use serde::{Deserialize, Serialize};

/// Container runtime used for user code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// Docker's default OCI runtime.
    Runc,
    /// gVisor: a user-space kernel between the code and the host, for hardened deployments.
    Runsc,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Runc => "runc",
            Runtime::Runsc => "runsc",
        }
    }
}

/// Which missing packages may be installed before a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackagePolicy {
    /// Only the distributions in PACKAGE_ALLOWLIST.
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Seconds the user's code may run (container start and collection excluded).
    pub code_execution_timeout: f64,
    pub sandbox_image: String,
    pub sandbox_memory_mb: u64,
    pub sandbox_cpus: f64,
    pub sandbox_pids: i64,
    /// Size of each of the two tmpfs mounts (/tmp and the output directory).
    pub sandbox_disk_mb: u64,
    pub sandbox_runtime: Runtime,
    /// Seconds allowed for a container to start and accept its job.
    pub sandbox_startup_timeout: f64,
    pub max_output_chars: usize,
    pub max_output_files: usize,
    pub max_output_file_mb: u64,
    pub max_output_total_mb: u64,
    pub max_concurrent_executions: usize,
    pub data_dir: PathBuf,
    /// MongoDB for file metadata; unset means the embedded database under DATA_DIR.
    pub mongodb_uri: Option<Secret>,
    pub mongodb_database: String,
    /// Files kept per user; adding one more evicts the oldest.
    pub max_files_per_user: usize,
    /// Largest single file accepted, in MB.
    pub max_file_size_mb: u64,
    /// Bytes kept per user; adding beyond it evicts the oldest files.
    pub max_bytes_per_user: u64,
    /// Hours a stored file lives; -1 keeps files forever; fractions allowed.
    pub file_expiration_hours: f64,
    /// Minutes between two sweeps of expired files in long-running processes.
    pub cleanup_interval_minutes: f64,
    /// Discord bot token (secret). `codebox bot` refuses to start without it.
    pub discord_token: Option<Secret>,
    /// REST base for Discord (a proxy, or a local fake in tests); the gateway URL is then
    /// asked from it and the client-side rate limiter is off (the proxy owns rate limits).
    pub discord_api_base: Option<String>,
    /// Comma-separated channel ids where the bot answers every message; empty: all channels.
    /// DMs and mentions are always answered.
    pub bot_channels: String,
    /// OpenAI-compatible API key (secret).
    pub openai_api_key: Option<Secret>,
    pub openai_base_url: String,
    pub openai_model: String,
    /// Seconds one model request may take.
    pub openai_timeout: f64,
    /// Extra attempts after a 429, a 5xx or a timeout.
    pub openai_retries: u32,
    /// Milliseconds before the first retry (doubled each time).
    pub openai_retry_delay_ms: u64,
    /// Code runs the model may make for one message.
    pub max_tool_rounds: usize,
    /// Messages a user may send per minute.
    pub rate_limit_per_minute: u32,
    /// Messages waiting for a free slot across all users; more get a "busy" reply.
    pub max_queued_messages: usize,
    /// Tokens of history sent to the model (older whole turns are dropped).
    pub history_token_budget: usize,
    /// Largest attachment the bot uploads to Discord, in MB (bigger files are named by id).
    pub discord_upload_limit_mb: u64,
    /// Prices per model in dollars per 1M tokens (TOML `[pricing."model"]` tables).
    pub pricing: std::collections::BTreeMap<String, crate::llm::pricing::Price>,
    /// tracing filter for logs on stderr (e.g. `info`, `codebox=debug`); each command has
    /// its own default when unset.
    pub rust_log: Option<String>,
    pub package_policy: PackagePolicy,
    /// Comma-separated distribution names (PEP 503 spelling is not required).
    pub package_allowlist: String,
    pub package_denylist: String,
    /// Seconds one installer container may take, outside the code's own timeout.
    pub package_install_timeout: f64,
    pub package_install_memory_mb: u64,
    /// The shared package cache is trimmed, least recently used first, above this size.
    pub package_cache_max_mb: u64,
    /// Index the installer uses instead of PyPI (a mirror, a proxy, a local test index).
    pub pip_index_url: Option<String>,
    /// CA bundle given to the installer (a TLS-intercepting proxy's root, for instance).
    pub sandbox_extra_ca_file: Option<PathBuf>,
    /// Started containers kept waiting, stack imported, for their one job; 0 disables.
    pub warm_pool_size: usize,
    /// A waiting container older than this is replaced by a fresh one.
    pub warm_pool_max_age_s: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            code_execution_timeout: 300.0,
            sandbox_image: "codebox-sandbox:latest".to_string(),
            sandbox_memory_mb: 1024,
            sandbox_cpus: 1.0,
            sandbox_pids: 128,
            sandbox_disk_mb: 512,
            sandbox_runtime: Runtime::Runc,
            sandbox_startup_timeout: 60.0,
            max_output_chars: 100_000,
            max_output_files: 100,
            max_output_file_mb: 50,
            max_output_total_mb: 200,
            max_concurrent_executions: 4,
            data_dir: PathBuf::from("data"),
            rust_log: None,
            package_policy: PackagePolicy::Denylist,
            package_allowlist: String::new(),
            package_denylist: String::new(),
            package_install_timeout: 120.0,
            package_install_memory_mb: 1024,
            package_cache_max_mb: 2048,
            pip_index_url: None,
            sandbox_extra_ca_file: None,
            warm_pool_size: 2,
            warm_pool_max_age_s: 600.0,
            discord_token: None,
            discord_api_base: None,
            bot_channels: String::new(),
            openai_api_key: None,
            openai_base_url: "https://api.openai.com/v1".to_string(),
            openai_model: "gpt-4o-mini".to_string(),
            openai_timeout: 120.0,
            openai_retries: 2,
            openai_retry_delay_ms: 1000,
            max_tool_rounds: 5,
            rate_limit_per_minute: 10,
            max_queued_messages: 20,
            history_token_budget: 12_000,
            discord_upload_limit_mb: 8,
            pricing: crate::llm::pricing::default_prices(),
            mongodb_uri: None,
            mongodb_database: "codebox".to_string(),
            max_files_per_user: 20,
            max_file_size_mb: 50,
            max_bytes_per_user: 500 * 1024 * 1024,
            file_expiration_hours: 48.0,
            cleanup_interval_minutes: 60.0,
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

impl Settings {
    pub fn load(sources: &Sources) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = sources.toml_file.as_ref().filter(|p| p.exists()) {
            figment = figment.merge(Toml::file_exact(path));
        }
        if let Some(path) = sources.dotenv_file.as_ref().filter(|p| p.exists()) {
            let pairs = read_dotenv(path)?;
            figment = figment.merge(Serialized::defaults(as_setting_values(pairs)));
        }
        figment = figment.merge(Serialized::defaults(as_setting_values(
            sources.environment.iter().cloned(),
        )));
        let settings: Settings = figment.extract().map_err(|err| {
            let setting = err
                .path
                .last()
                .map(|k| k.to_uppercase())
                .unwrap_or_else(|| "configuration".to_string());
            ConfigError::Invalid {
                setting,
                reason: err.kind.to_string(),
            }
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks ranges serde cannot express; each error names the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(setting: &str, reason: &str) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                setting: setting.to_string(),
                reason: reason.to_string(),
            })
        }
        if !is_positive(self.code_execution_timeout) {
            return invalid(
                "CODE_EXECUTION_TIMEOUT",
                "must be a positive number of seconds",
            );
        }
        if !is_positive(self.sandbox_startup_timeout) {
            return invalid(
                "SANDBOX_STARTUP_TIMEOUT",
                "must be a positive number of seconds",
            );
        }
        if self.sandbox_image.trim().is_empty() {
            return invalid("SANDBOX_IMAGE", "must name an image");
        }
        if self.sandbox_memory_mb < 16 {
            return invalid("SANDBOX_MEMORY_MB", "must be at least 16");
        }
        if !is_positive(self.sandbox_cpus) {
            return invalid("SANDBOX_CPUS", "must be a positive number");
        }
        if self.sandbox_pids < 8 {
            return invalid("SANDBOX_PIDS", "must be at least 8");
        }
        if self.sandbox_disk_mb == 0 {
            return invalid("SANDBOX_DISK_MB", "must be positive");
        }
        if self.max_output_chars < 100 {
            return invalid("MAX_OUTPUT_CHARS", "must be at least 100");
        }
        if self.max_output_file_mb == 0 {
            return invalid("MAX_OUTPUT_FILE_MB", "must be positive");
        }
        if self.max_output_total_mb < self.max_output_file_mb {
            return invalid("MAX_OUTPUT_TOTAL_MB", "must be at least MAX_OUTPUT_FILE_MB");
        }
        if self.max_concurrent_executions == 0 {
            return invalid("MAX_CONCURRENT_EXECUTIONS", "must be at least 1");
        }
        if self.max_files_per_user == 0 {
            return invalid("MAX_FILES_PER_USER", "must be at least 1");
        }
        if self.max_file_size_mb == 0 {
            return invalid("MAX_FILE_SIZE_MB", "must be positive");
        }
        if self.max_bytes_per_user < self.max_file_size_mb * 1024 * 1024 {
            return invalid(
                "MAX_BYTES_PER_USER",
                "must be at least MAX_FILE_SIZE_MB (in bytes)",
            );
        }
        let hours = self.file_expiration_hours;
        if !(hours.is_finite() && (hours > 0.0 || hours == -1.0)) {
            return invalid(
                "FILE_EXPIRATION_HOURS",
                "must be a positive number of hours, or -1 for never",
            );
        }
        if !is_positive(self.cleanup_interval_minutes) {
            return invalid(
                "CLEANUP_INTERVAL_MINUTES",
                "must be a positive number of minutes",
            );
        }
        if !is_positive(self.openai_timeout) {
            return invalid("OPENAI_TIMEOUT", "must be a positive number of seconds");
        }
        if self.max_tool_rounds == 0 {
            return invalid("MAX_TOOL_ROUNDS", "must be at least 1");
        }
        if self.rate_limit_per_minute == 0 {
            return invalid("RATE_LIMIT_PER_MINUTE", "must be at least 1");
        }
        if self.history_token_budget < 500 {
            return invalid("HISTORY_TOKEN_BUDGET", "must be at least 500");
        }
        if self
            .bot_channels
            .split(',')
            .map(str::trim)
            .any(|c| !c.is_empty() && c.parse::<u64>().is_err())
        {
            return invalid(
                "BOT_CHANNELS",
                "must be comma-separated numeric channel ids",
            );
        }
        if self.mongodb_database.is_empty() {
            return invalid("MONGODB_DATABASE", "must name a database");
        }
        if let Some(uri) = &self.mongodb_uri
            && !(uri.expose().starts_with("mongodb://")
                || uri.expose().starts_with("mongodb+srv://"))
        {
            // Never echo the URI: it usually carries a password.
            return invalid(
                "MONGODB_URI",
                "must start with mongodb:// or mongodb+srv://",
            );
        }
        if self.data_dir.as_os_str().is_empty() {
            return invalid("DATA_DIR", "must be a path");
        }
        if !is_positive(self.package_install_timeout) {
            return invalid(
                "PACKAGE_INSTALL_TIMEOUT",
                "must be a positive number of seconds",
            );
        }
        if self.package_install_memory_mb < 64 {
            return invalid("PACKAGE_INSTALL_MEMORY_MB", "must be at least 64");
        }
        if let Some(url) = &self.pip_index_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return invalid("PIP_INDEX_URL", "must be an http:// or https:// URL");
        }
        if let Some(path) = &self.sandbox_extra_ca_file
            && !path.is_file()
        {
            return invalid("SANDBOX_EXTRA_CA_FILE", "must name a readable file");
        }
        if !is_positive(self.warm_pool_max_age_s) {
            return invalid(
                "WARM_POOL_MAX_AGE_S",
                "must be a positive number of seconds",
            );
        }
        Ok(())
    }
}

fn is_positive(value: f64) -> bool {
    value.is_finite() && value > 0.0
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
fn as_setting_values(pairs: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, Value> {
    pairs
        .into_iter()
        .filter(|(key, _)| SETTING_NAMES.contains(&key.as_str()))
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
    "BOT_CHANNELS",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_MODEL",
    "PACKAGE_ALLOWLIST",
    "PACKAGE_DENYLIST",
    "PIP_INDEX_URL",
    "SANDBOX_EXTRA_CA_FILE",
];

/// Every environment name a setting answers to.
pub const SETTING_NAMES: &[&str] = &[
    "CODE_EXECUTION_TIMEOUT",
    "SANDBOX_IMAGE",
    "SANDBOX_MEMORY_MB",
    "SANDBOX_CPUS",
    "SANDBOX_PIDS",
    "SANDBOX_DISK_MB",
    "SANDBOX_RUNTIME",
    "SANDBOX_STARTUP_TIMEOUT",
    "MAX_OUTPUT_CHARS",
    "MAX_OUTPUT_FILES",
    "MAX_OUTPUT_FILE_MB",
    "MAX_OUTPUT_TOTAL_MB",
    "MAX_CONCURRENT_EXECUTIONS",
    "DATA_DIR",
    "RUST_LOG",
    "MONGODB_URI",
    "MONGODB_DATABASE",
    "MAX_FILES_PER_USER",
    "MAX_FILE_SIZE_MB",
    "MAX_BYTES_PER_USER",
    "FILE_EXPIRATION_HOURS",
    "CLEANUP_INTERVAL_MINUTES",
    "DISCORD_TOKEN",
    "DISCORD_API_BASE",
    "BOT_CHANNELS",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_MODEL",
    "OPENAI_TIMEOUT",
    "OPENAI_RETRIES",
    "OPENAI_RETRY_DELAY_MS",
    "MAX_TOOL_ROUNDS",
    "RATE_LIMIT_PER_MINUTE",
    "MAX_QUEUED_MESSAGES",
    "HISTORY_TOKEN_BUDGET",
    "DISCORD_UPLOAD_LIMIT_MB",
    "PACKAGE_POLICY",
    "PACKAGE_ALLOWLIST",
    "PACKAGE_DENYLIST",
    "PACKAGE_INSTALL_TIMEOUT",
    "PACKAGE_INSTALL_MEMORY_MB",
    "PACKAGE_CACHE_MAX_MB",
    "PIP_INDEX_URL",
    "SANDBOX_EXTRA_CA_FILE",
    "WARM_POOL_SIZE",
    "WARM_POOL_MAX_AGE_S",
];

impl Settings {
    /// Channel ids of BOT_CHANNELS (validated at load).
    pub fn bot_channel_ids(&self) -> Vec<u64> {
        self.bot_channels
            .split(',')
            .filter_map(|c| c.trim().parse().ok())
            .collect()
    }

    /// Values that must never appear in anything the bot sends or logs.
    pub fn secrets(&self) -> Vec<String> {
        [&self.discord_token, &self.openai_api_key, &self.mongodb_uri]
            .into_iter()
            .flatten()
            .map(|s| s.expose().to_string())
            .collect()
    }
}

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
        assert_eq!(s.code_execution_timeout, 300.0);
        assert_eq!(s.sandbox_memory_mb, 1024);
        assert_eq!(s.sandbox_pids, 128);
        assert_eq!(s.sandbox_disk_mb, 512);
        assert_eq!(s.max_output_chars, 100_000);
        assert_eq!(s.max_output_file_mb, 50);
        assert_eq!(s.sandbox_runtime, Runtime::Runc);
        assert_eq!(s.sandbox_image, "codebox-sandbox:latest");
        assert_eq!(s.max_files_per_user, 20);
        assert_eq!(s.file_expiration_hours, 48.0);
        assert_eq!(s.cleanup_interval_minutes, 60.0);
        assert_eq!(s.mongodb_uri, None);
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
        assert_eq!(s.sandbox_memory_mb, 2048, "from toml");
        assert_eq!(s.sandbox_pids, 32, ".env beats toml");
        assert_eq!(s.sandbox_cpus, 2.0, "environment beats .env");
        assert_eq!(s.sandbox_runtime, Runtime::Runsc);
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
        assert_eq!(s.bot_channel_ids(), vec![123]);
        assert_eq!(s.discord_token.as_ref().map(Secret::expose), Some("42"));
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
}
