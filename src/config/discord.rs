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
}

impl Default for DiscordSettings {
    fn default() -> Self {
        DiscordSettings {
            discord_token: None,
            discord_api_base: None,
            bot_channels: String::new(),
            discord_upload_limit_mb: 8,
        }
    }
}

impl DiscordSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
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
        if self.discord_upload_limit_mb > 1024 {
            return invalid("DISCORD_UPLOAD_LIMIT_MB", "must be at most 1024");
        }
        Ok(())
    }

    /// Channel ids of BOT_CHANNELS (validated at load).
    pub fn bot_channel_ids(&self) -> Vec<u64> {
        self.bot_channels
            .split(',')
            .filter_map(|c| c.trim().parse().ok())
            .collect()
    }
}
