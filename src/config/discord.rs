//! Settings of the Discord front end.

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret, invalid};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiscordSettings {
    /// Discord bot token (secret). `codebox bot` refuses to start without it.
    pub discord_token: Option<Secret>,
    /// REST base for Discord (a proxy, or a local fake in tests); the gateway URL is then
    /// asked from it and the client-side rate limiter is off (the proxy owns rate limits).
    pub discord_api_base: Option<String>,
    /// Comma-separated channel ids where the bot answers every message; empty: all channels.
    /// DMs and mentions are always answered.
    pub bot_channels: String,
    /// Largest attachment the bot uploads to Discord, in MB (bigger files are named by id).
    pub discord_upload_limit_mb: u64,
    /// Comma-separated role ids whose members are the bot's admins in their server, besides
    /// members with Manage Server.
    pub admin_role_ids: String,
    /// Whether the bot answers direct messages.
    pub allow_dms: bool,
    /// A run's status message (elapsed time, live output, Stop) is posted only once the run
    /// has taken this long, in ms: a quick answer is one message. 0: at once.
    pub status_after_ms: u64,
    /// Comma-separated user ids the bot does not serve anywhere.
    pub blocked_user_ids: String,
    /// Comma-separated user ids the bot serves; with ALLOWED_ROLE_IDS empty too: everyone
    /// not blocked.
    pub allowed_user_ids: String,
    /// Comma-separated role ids whose members the bot does not serve.
    pub blocked_role_ids: String,
    /// Comma-separated role ids whose members the bot serves (see ALLOWED_USER_IDS).
    pub allowed_role_ids: String,
    /// The same four lists for running code (members kept out of it may still chat).
    pub code_blocked_user_ids: String,
    pub code_allowed_user_ids: String,
    pub code_blocked_role_ids: String,
    pub code_allowed_role_ids: String,
}

impl Default for DiscordSettings {
    fn default() -> Self {
        DiscordSettings {
            discord_token: None,
            discord_api_base: None,
            bot_channels: String::new(),
            discord_upload_limit_mb: 8,
            admin_role_ids: String::new(),
            allow_dms: true,
            status_after_ms: 1000,
            blocked_user_ids: String::new(),
            allowed_user_ids: String::new(),
            blocked_role_ids: String::new(),
            allowed_role_ids: String::new(),
            code_blocked_user_ids: String::new(),
            code_allowed_user_ids: String::new(),
            code_blocked_role_ids: String::new(),
            code_allowed_role_ids: String::new(),
        }
    }
}

impl DiscordSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (setting, list) in [
            ("BOT_CHANNELS", &self.bot_channels),
            ("ADMIN_ROLE_IDS", &self.admin_role_ids),
            ("BLOCKED_USER_IDS", &self.blocked_user_ids),
            ("ALLOWED_USER_IDS", &self.allowed_user_ids),
            ("BLOCKED_ROLE_IDS", &self.blocked_role_ids),
            ("ALLOWED_ROLE_IDS", &self.allowed_role_ids),
            ("CODE_BLOCKED_USER_IDS", &self.code_blocked_user_ids),
            ("CODE_ALLOWED_USER_IDS", &self.code_allowed_user_ids),
            ("CODE_BLOCKED_ROLE_IDS", &self.code_blocked_role_ids),
            ("CODE_ALLOWED_ROLE_IDS", &self.code_allowed_role_ids),
        ] {
            if list
                .split(',')
                .map(str::trim)
                .any(|c| !c.is_empty() && c.parse::<u64>().is_err())
            {
                return invalid(setting, "must be comma-separated numeric Discord ids");
            }
        }
        if self.status_after_ms > 600_000 {
            return invalid("STATUS_AFTER_MS", "must be at most 600000 (ten minutes)");
        }
        if self.discord_upload_limit_mb > 1024 {
            return invalid("DISCORD_UPLOAD_LIMIT_MB", "must be at most 1024");
        }
        Ok(())
    }

    /// Channel ids of BOT_CHANNELS (validated at load).
    pub fn bot_channel_ids(&self) -> Vec<u64> {
        ids(&self.bot_channels)
    }

    pub fn status_after(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.status_after_ms)
    }

    pub fn admin_role_ids(&self) -> Vec<u64> {
        ids(&self.admin_role_ids)
    }
}

/// The ids of a comma-separated list setting (validated at load).
pub fn ids(list: &str) -> Vec<u64> {
    list.split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect()
}
