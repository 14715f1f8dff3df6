//! Who is a server's admin for the bot: a member with Manage Server, or with a role named
//! in ADMIN_ROLE_IDS. Only slash commands carry a member's permissions.

use serenity::all::Member;

use super::commands::Context;
use crate::config::DiscordSettings;

/// Pure: whether `member` administers the bot in its server.
pub fn member_is_admin(member: &Member, settings: &DiscordSettings) -> bool {
    let manages = member.permissions.is_some_and(|p| p.manage_guild());
    let admin_roles = settings.admin_role_ids();
    manages || member.roles.iter().any(|r| admin_roles.contains(&r.get()))
}

/// The member of a slash command, in a server.
pub fn member<'a>(ctx: Context<'a>) -> Option<&'a Member> {
    match ctx {
        poise::Context::Application(a) => a.interaction.member.as_deref(),
        poise::Context::Prefix(_) => None,
    }
}

pub fn is_admin(ctx: Context<'_>) -> bool {
    member(ctx).is_some_and(|m| member_is_admin(m, &ctx.data().discord))
}

/// The member's role ids (access rules may name them); none outside a server.
pub fn roles(ctx: Context<'_>) -> Vec<String> {
    member(ctx)
        .map(|m| m.roles.iter().map(|r| r.to_string()).collect())
        .unwrap_or_default()
}

/// What a non-admin is told.
pub const ADMINS_ONLY: &str =
    "Only this server's admins (Manage Server, or a role in ADMIN_ROLE_IDS) can do that.";
