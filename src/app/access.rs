//! Pure: who may use the bot and who may run code, by the operator's lists and the server's
//! rules. A refused member is always told why, in one sentence.

use crate::config::{DiscordSettings, id_list};
use crate::conversations::{AccessRules, GuildSettings};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Chat and code.
    Full,
    /// Chat, but runs are refused with this sentence.
    NoCode(String),
    /// Nothing: this sentence, privately.
    Blocked(String),
}

fn list(ids: &str) -> Vec<String> {
    id_list(ids).iter().map(u64::to_string).collect()
}

/// Pure: the operator's lists as rules for the bot and for running code.
pub fn operator_rules(operator: &DiscordSettings) -> (AccessRules, AccessRules) {
    (
        AccessRules {
            blocked_users: list(&operator.blocked_user_ids),
            blocked_roles: list(&operator.blocked_role_ids),
            allowed_users: list(&operator.allowed_user_ids),
            allowed_roles: list(&operator.allowed_role_ids),
        },
        AccessRules {
            blocked_users: list(&operator.code_blocked_user_ids),
            blocked_roles: list(&operator.code_blocked_role_ids),
            allowed_users: list(&operator.code_allowed_user_ids),
            allowed_roles: list(&operator.code_allowed_role_ids),
        },
    )
}

pub fn access(
    operator: &DiscordSettings,
    guild: Option<&GuildSettings>,
    user_id: &str,
    roles: &[String],
) -> Access {
    let (bot, code) = operator_rules(operator);
    if !bot.permits(user_id, roles) {
        return Access::Blocked(
            "🚫 You are not allowed to use this bot; its operator has not given your account access.".into(),
        );
    }
    if let Some(guild) = guild
        && !guild.bot_access.permits(user_id, roles)
    {
        return Access::Blocked(
            "🚫 This server's admins have not allowed you to use this bot here.".into(),
        );
    }
    if !code.permits(user_id, roles) {
        return Access::NoCode(
            "running code is not allowed for this account by the bot's operator".into(),
        );
    }
    if let Some(guild) = guild
        && !guild.code_access.permits(user_id, roles)
    {
        return Access::NoCode(
            "running code is not allowed for this member by this server's admins".into(),
        );
    }
    Access::Full
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_lists_then_server_rules_decide() {
        let mut operator = DiscordSettings {
            blocked_user_ids: "11".into(),
            code_blocked_user_ids: "12".into(),
            ..DiscordSettings::default()
        };
        assert!(matches!(
            access(&operator, None, "11", &[]),
            Access::Blocked(_)
        ));
        assert!(matches!(
            access(&operator, None, "12", &[]),
            Access::NoCode(_)
        ));
        assert_eq!(access(&operator, None, "13", &[]), Access::Full);
        let guild = GuildSettings {
            bot_access: AccessRules {
                blocked_roles: vec!["99".into()],
                ..AccessRules::default()
            },
            code_access: AccessRules {
                allowed_roles: vec!["77".into()],
                ..AccessRules::default()
            },
            ..GuildSettings::default()
        };
        assert!(matches!(
            access(&operator, Some(&guild), "13", &["99".into()]),
            Access::Blocked(s) if s.contains("server's admins")
        ));
        assert!(matches!(
            access(&operator, Some(&guild), "13", &[]),
            Access::NoCode(_)
        ));
        assert_eq!(
            access(&operator, Some(&guild), "13", &["77".into()]),
            Access::Full
        );
        operator.allowed_user_ids = "14".into();
        assert!(matches!(
            access(&operator, None, "13", &[]),
            Access::Blocked(_)
        ));
        assert_eq!(access(&operator, None, "14", &[]), Access::Full);
    }
}
