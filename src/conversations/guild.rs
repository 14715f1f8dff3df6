//! Pure: what a server's admins set for their server (limits, budgets, models, the server's
//! prompt, who may use the bot and who may run code), and what a member sets for themself.

use serde::{Deserialize, Serialize};

use crate::llm::conversation::RanCode;

/// A server's settings, always within the operator's: admins may only lower limits and
/// caps, and choose among the operator's models.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GuildSettings {
    pub timeout_s: Option<f64>,
    pub memory_mb: Option<u64>,
    /// Monthly dollars per member in this server, under USER_MONTHLY_BUDGET_USD.
    pub user_budget_usd: Option<f64>,
    /// Monthly dollars for the whole server, under SERVER_MONTHLY_BUDGET_USD.
    pub server_budget_usd: Option<f64>,
    /// The model members get until they choose one.
    pub default_model: Option<String>,
    /// The models members may choose here; None: all the operator's.
    pub allowed_models: Option<Vec<String>>,
    /// Added to the system prompt in this server (bounded by `MAX_SERVER_PROMPT_CHARS`).
    pub system_prompt: Option<String>,
    /// Who may use the bot here.
    pub bot_access: AccessRules,
    /// Who may run code here (chat stays open to them).
    pub code_access: AccessRules,
}

/// The longest server prompt admins may set.
pub const MAX_SERVER_PROMPT_CHARS: usize = 1500;

/// Blocks win over allows; a non-empty allow list admits only those on it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccessRules {
    pub blocked_users: Vec<String>,
    pub blocked_roles: Vec<String>,
    pub allowed_users: Vec<String>,
    pub allowed_roles: Vec<String>,
}

impl AccessRules {
    pub fn permits(&self, user_id: &str, roles: &[String]) -> bool {
        let has_role = |list: &[String]| roles.iter().any(|r| list.contains(r));
        if self.blocked_users.iter().any(|u| u == user_id) || has_role(&self.blocked_roles) {
            return false;
        }
        let open = self.allowed_users.is_empty() && self.allowed_roles.is_empty();
        open || self.allowed_users.iter().any(|u| u == user_id) || has_role(&self.allowed_roles)
    }

    pub fn is_empty(&self) -> bool {
        *self == AccessRules::default()
    }
}

/// What a member chose for themself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserSettings {
    /// The model they chose with /model; None: the server's default.
    pub model: Option<String>,
    /// Their replies carry the code that ran, not only a Code button.
    pub show_code: bool,
}

/// The runs of one turn, kept for its Code button.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnCode {
    pub user_id: String,
    pub runs: Vec<RanCode>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn blocks_win_and_allow_lists_close_the_door_to_others() {
        let open = AccessRules::default();
        assert!(open.permits("1", &[]));
        let rules = AccessRules {
            blocked_users: ids(&["2"]),
            blocked_roles: ids(&["66"]),
            ..AccessRules::default()
        };
        assert!(rules.permits("1", &ids(&["5"])));
        assert!(!rules.permits("2", &[]));
        assert!(!rules.permits("1", &ids(&["5", "66"])));
        let members_only = AccessRules {
            allowed_roles: ids(&["77"]),
            blocked_users: ids(&["3"]),
            ..AccessRules::default()
        };
        assert!(!members_only.permits("1", &[]));
        assert!(members_only.permits("1", &ids(&["77"])));
        assert!(!members_only.permits("3", &ids(&["77"])), "a block wins");
    }

    #[test]
    fn settings_stored_before_these_fields_existed_still_load() {
        let old: GuildSettings = serde_json::from_str(r#"{"timeout_s":5.0,"memory_mb":null}"#)
            .expect("old guild limits load");
        assert_eq!(old.timeout_s, Some(5.0));
        assert!(old.bot_access.is_empty() && old.allowed_models.is_none());
    }
}
