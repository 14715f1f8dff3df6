//! What the Discord layer shares between events and commands: the application core, and
//! Discord's own bookkeeping (the bot's user id, each user's status message).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serenity::all::{GuildId, Message, UserId};

use super::status::StatusMessage;
use crate::app::App;
use crate::config::DiscordSettings;

type Tracked = (Option<GuildId>, Arc<StatusMessage>);

pub struct BotState {
    pub app: Arc<App>,
    pub discord: DiscordSettings,
    bot_user: OnceLock<UserId>,
    shutting_down: AtomicBool,
    /// The status message of each user's running work, and the server it runs for, so
    /// /stop and its Stop button can say "cancelled" (and an admin stops only their own
    /// server's runs).
    statuses: Mutex<HashMap<String, Tracked>>,
}

impl BotState {
    pub fn new(app: Arc<App>, discord: DiscordSettings) -> BotState {
        BotState {
            app,
            discord,
            bot_user: OnceLock::new(),
            shutting_down: AtomicBool::new(false),
            statuses: Mutex::new(HashMap::new()),
        }
    }

    pub fn set_bot_user(&self, id: UserId) {
        let _ = self.bot_user.set(id);
    }

    pub fn bot_user(&self) -> Option<UserId> {
        self.bot_user.get().copied()
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// DMs (when ALLOW_DMS) and mentions always; other messages only in BOT_CHANNELS (all
    /// when empty). A DM while DMs are off is answered with that sentence (`dms_off`).
    pub fn should_answer(&self, msg: &Message) -> bool {
        if msg.guild_id.is_none() {
            return true;
        }
        if let Some(me) = self.bot_user()
            && msg.mentions.iter().any(|u| u.id == me)
        {
            return true;
        }
        let channels = self.discord.bot_channel_ids();
        channels.is_empty() || channels.contains(&msg.channel_id.get())
    }

    pub fn upload_limit_bytes(&self) -> u64 {
        self.discord.discord_upload_limit_mb * 1024 * 1024
    }

    pub fn track_status(&self, user_id: &str, guild: Option<GuildId>, slot: Arc<StatusMessage>) {
        self.lock_statuses()
            .insert(user_id.to_string(), (guild, slot));
    }

    /// The status message of the user's running work, if any.
    pub fn status_of(&self, user_id: &str) -> Option<Arc<StatusMessage>> {
        self.lock_statuses().get(user_id).map(|(_, s)| s.clone())
    }

    /// The server the user's running work is for (None in DMs); None when nothing runs.
    pub fn run_guild(&self, user_id: &str) -> Option<Option<GuildId>> {
        self.lock_statuses().get(user_id).map(|(g, _)| *g)
    }

    pub fn forget_status(&self, user_id: &str, slot: &Arc<StatusMessage>) {
        let mut statuses = self.lock_statuses();
        if statuses
            .get(user_id)
            .is_some_and(|(_, current)| Arc::ptr_eq(current, slot))
        {
            statuses.remove(user_id);
        }
    }

    /// Cancels the user's running work at once; its status message says so shortly after
    /// (an edit may have to wait its turn), so a button press is answered in time.
    pub fn cancel_user(&self, user_id: &str) -> bool {
        let cancelled = self.app.cancel(user_id);
        let slot = self.lock_statuses().remove(user_id);
        if cancelled && let Some((_, slot)) = slot {
            slot.close("🛑 cancelled".to_string());
        }
        cancelled
    }

    fn lock_statuses(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracked>> {
        self.statuses.lock().unwrap_or_else(|p| p.into_inner())
    }
}
