//! Pure: who may use the bot and who may run code, by the operator's lists and the server's
//! rules. A refused member is always told why, in one sentence.

use crate::config::{DiscordSettings, id_list};
use crate::conversations::GuildSettings;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Chat and code.
    Full,
    /// Chat, but runs are refused with this sentence.
    NoCode(String),
    /// Nothing: this sentence, privately.
    Blocked(String),
}

fn listed(list: &str, user_id: &str) -> bool {
    user_id
        .parse::<u64>()
        .is_ok_and(|id| id_list(list).contains(&id))
}

pub fn access(
    operator: &DiscordSettings,
    guild: Option<&GuildSettings>,
    user_id: &str,
    roles: &[String],
) -> Access {
    let operator_allows = !listed(&operator.blocked_user_ids, user_id)
        && (operator.allowed_user_ids.trim().is_empty()
            || listed(&operator.allowed_user_ids, user_id));
    if !operator_allows {
        return Access::Blocked(
            "🚫 You are not allowed to use this bot; its operator has blocked your account.".into(),
        );
    }
    if let Some(guild) = guild
        && !guild.bot_access.permits(user_id, roles)
    {
        return Access::Blocked(
            "🚫 This server's admins have not allowed you to use this bot here.".into(),
        );
    }
    if listed(&operator.code_blocked_user_ids, user_id) {
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
    use crate::conversations::AccessRules;

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
