//! The commands a community runs the bot with: /model (members choose, admins set the
//! server's default and choices), /settings, /prompt (the server's system prompt) and
//! /access (who may use the bot, who may run code).

use poise::CreateReply;
use serenity::all::{Role, User};

use super::admin::{ADMINS_ONLY, is_admin};
use super::commands::{CommandError, Context, private, user_id};
use super::model_menu;
use crate::app::AppError;
use crate::conversations::guild::MAX_SERVER_PROMPT_CHARS;
use crate::conversations::{AccessRules, GuildSettings};

fn guild_of(ctx: Context<'_>) -> Option<String> {
    ctx.guild_id().map(|g| g.to_string())
}

/// A change of the server's settings by an admin; the sentence that answers it.
async fn change_server(
    ctx: Context<'_>,
    change: impl FnOnce(&mut GuildSettings) -> Result<String, AppError>,
) -> String {
    let Some(guild) = guild_of(ctx) else {
        return "This can only be set inside a server.".into();
    };
    if !is_admin(ctx) {
        return ADMINS_ONLY.into();
    }
    let mut said = String::new();
    let saved = ctx
        .data()
        .app
        .update_guild_settings(&guild, |settings| {
            said = change(settings)?;
            Ok(())
        })
        .await;
    match saved {
        Ok(_) => said,
        Err(AppError::Refused(sentence)) => format!("Not changed: {sentence}"),
        Err(err) => {
            tracing::warn!(error = %err, "cannot save the server's settings");
            format!("Could not save it: {}.", super::reply::failure_reason(&err))
        }
    }
}

/// Choose your model; admins set the server's default and the models members may choose
#[poise::command(slash_command)]
pub async fn model(
    ctx: Context<'_>,
    #[description = "The model to use"] name: Option<String>,
    #[description = "Admins: the model members get until they choose one"] server_default: Option<
        String,
    >,
    #[description = "Admins: comma-separated models members may choose here, or \"all\""]
    allowed: Option<String>,
) -> Result<(), CommandError> {
    let app = ctx.data().app.clone();
    let chat = &app.settings().chat;
    let user = user_id(ctx);
    let guild = guild_of(ctx);
    if server_default.is_some() || allowed.is_some() {
        let operator = chat.chat_model_names();
        let text = change_server(ctx, |settings| {
            let unknown = |m: &str| {
                AppError::Refused(format!(
                    "`{m}` is not one of this bot's models ({}).",
                    operator.join(", ")
                ))
            };
            if let Some(list) = &allowed {
                settings.allowed_models = if list.trim() == "all" {
                    None
                } else {
                    let names: Vec<String> = list
                        .split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .map(str::to_string)
                        .collect();
                    if let Some(bad) = names.iter().find(|m| !operator.contains(m)) {
                        return Err(unknown(bad));
                    }
                    Some(names)
                };
            }
            if let Some(default) = &server_default {
                if !operator.contains(default) {
                    return Err(unknown(default));
                }
                settings.default_model = Some(default.clone());
            }
            let allowed = crate::app::models::allowed_models(chat, Some(settings));
            Ok(format!(
                "Members here may choose: {}. Default: `{}`.",
                allowed.join(", "),
                settings
                    .default_model
                    .clone()
                    .filter(|d| allowed.contains(d))
                    .unwrap_or_else(|| allowed[0].clone())
            ))
        })
        .await;
        ctx.send(private(text)).await?;
        return Ok(());
    }
    if let Some(name) = name {
        let text = match app.choose_model(&user, guild.as_deref(), &name).await {
            Ok(()) => format!(
                "Your model is now `{name}` ({}).",
                model_menu::model_line(chat, &name)
            ),
            Err(AppError::Refused(sentence)) => sentence,
            Err(err) => return Err(err.into()),
        };
        ctx.send(private(text)).await?;
        return Ok(());
    }
    let models = app.allowed_models(guild.as_deref()).await?;
    let current = app.model_for(&user, guild.as_deref()).await?;
    let mut text = format!("Your model: `{current}`. You may choose:\n");
    for m in &models {
        text.push_str(&format!("- `{m}`: {}\n", model_menu::model_line(chat, m)));
    }
    ctx.send(private(text).components(vec![model_menu::menu(
        chat,
        ctx.author().id,
        &models,
        &current,
    )]))
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, poise::ChoiceParameter)]
pub enum ShowCode {
    #[name = "always"]
    Always,
    #[name = "button"]
    Button,
}

/// Your settings: show_code always puts the code that ran into your answers
#[poise::command(slash_command)]
pub async fn settings(
    ctx: Context<'_>,
    #[description = "The code of each run in the answer itself, or behind its Code button"]
    show_code: Option<ShowCode>,
) -> Result<(), CommandError> {
    let app = &ctx.data().app;
    let user = user_id(ctx);
    let mut settings = app.user_settings(&user).await?;
    if let Some(choice) = show_code {
        settings.show_code = matches!(choice, ShowCode::Always);
        app.set_user_settings(&user, &settings).await?;
    }
    let model = app.model_for(&user, guild_of(ctx).as_deref()).await?;
    let shown = if settings.show_code {
        "in every answer"
    } else {
        "behind each answer's Code button"
    };
    ctx.send(private(format!(
        "Model: `{model}` (/model to change). Code that ran: {shown}."
    )))
    .await?;
    Ok(())
}

/// The server's system prompt: instructions the model gets in this server
#[poise::command(
    slash_command,
    subcommands("prompt_set", "prompt_show", "prompt_clear"),
    subcommand_required
)]
pub async fn prompt(_ctx: Context<'_>) -> Result<(), CommandError> {
    Ok(())
}

/// Admins: set the instructions the model gets in this server
#[poise::command(slash_command, rename = "set")]
pub async fn prompt_set(
    ctx: Context<'_>,
    #[description = "Instructions for the model (at most 1500 characters)"] text: String,
) -> Result<(), CommandError> {
    let said = change_server(ctx, |settings| {
        let count = text.chars().count();
        if count > MAX_SERVER_PROMPT_CHARS {
            return Err(AppError::Refused(format!(
                "the prompt is {count} characters; at most {MAX_SERVER_PROMPT_CHARS}."
            )));
        }
        settings.system_prompt = Some(text.trim().to_string());
        Ok(format!("The model's instructions in this server are set ({count} characters); /prompt show shows them."))
    })
    .await;
    ctx.send(private(said)).await?;
    Ok(())
}

/// Show the instructions the model gets in this server
#[poise::command(slash_command, rename = "show")]
pub async fn prompt_show(ctx: Context<'_>) -> Result<(), CommandError> {
    let settings = ctx
        .data()
        .app
        .guild_settings(guild_of(ctx).as_deref())
        .await?;
    let text = match settings.and_then(|s| s.system_prompt) {
        Some(prompt) => format!(
            "This server's instructions for the model:\n```\n{}\n```",
            crate::render::defuse_fences(&prompt)
        ),
        None => "This server has no instructions of its own for the model.".into(),
    };
    ctx.send(private(text)).await?;
    Ok(())
}

/// Admins: remove this server's instructions for the model
#[poise::command(slash_command, rename = "clear")]
pub async fn prompt_clear(ctx: Context<'_>) -> Result<(), CommandError> {
    let said = change_server(ctx, |settings| {
        settings.system_prompt = None;
        Ok("This server's instructions for the model are removed.".into())
    })
    .await;
    ctx.send(private(said)).await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, poise::ChoiceParameter)]
pub enum AccessAction {
    #[name = "block"]
    Block,
    #[name = "unblock"]
    Unblock,
    #[name = "allow"]
    Allow,
    #[name = "unallow"]
    Unallow,
    #[name = "show"]
    Show,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, poise::ChoiceParameter)]
pub enum AccessScope {
    #[name = "bot"]
    Bot,
    #[name = "code"]
    Code,
}

fn toggle(list: &mut Vec<String>, id: String, present: bool) {
    list.retain(|x| *x != id);
    if present {
        list.push(id);
    }
}

/// Pure: a rule change on `rules`.
fn apply(
    rules: &mut AccessRules,
    action: AccessAction,
    user: Option<String>,
    role: Option<String>,
) {
    let (on, users, roles) = match action {
        AccessAction::Block => (true, &mut rules.blocked_users, &mut rules.blocked_roles),
        AccessAction::Unblock => (false, &mut rules.blocked_users, &mut rules.blocked_roles),
        AccessAction::Allow => (true, &mut rules.allowed_users, &mut rules.allowed_roles),
        AccessAction::Unallow => (false, &mut rules.allowed_users, &mut rules.allowed_roles),
        AccessAction::Show => return,
    };
    if let Some(user) = user {
        toggle(users, user, on);
    }
    if let Some(role) = role {
        toggle(roles, role, on);
    }
}

fn describe(name: &str, rules: &AccessRules) -> String {
    let mention = |prefix: &str, ids: &[String]| {
        if ids.is_empty() {
            "none".to_string()
        } else {
            ids.iter()
                .map(|id| format!("<{prefix}{id}>"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    let allowed = if rules.allowed_users.is_empty() && rules.allowed_roles.is_empty() {
        "everyone not blocked".to_string()
    } else {
        format!(
            "only users {} and roles {}",
            mention("@", &rules.allowed_users),
            mention("@&", &rules.allowed_roles)
        )
    };
    format!(
        "**{name}**: blocked users {}, blocked roles {}; allowed: {allowed}.",
        mention("@", &rules.blocked_users),
        mention("@&", &rules.blocked_roles)
    )
}

/// Admins: who may use the bot here, and who may run code
#[poise::command(slash_command)]
pub async fn access(
    ctx: Context<'_>,
    #[description = "block, unblock, allow (only those allowed may), unallow, or show"]
    action: AccessAction,
    #[description = "The bot itself, or running code"] scope: Option<AccessScope>,
    #[description = "A member"] user: Option<User>,
    #[description = "A role"] role: Option<Role>,
) -> Result<(), CommandError> {
    let scope = scope.unwrap_or(AccessScope::Bot);
    let (user, role) = (
        user.map(|u| u.id.to_string()),
        role.map(|r| r.id.to_string()),
    );
    if action != AccessAction::Show && user.is_none() && role.is_none() {
        ctx.send(private("Name a user or a role to change."))
            .await?;
        return Ok(());
    }
    let said = change_server(ctx, |settings| {
        let rules = match scope {
            AccessScope::Bot => &mut settings.bot_access,
            AccessScope::Code => &mut settings.code_access,
        };
        apply(rules, action, user, role);
        Ok(format!(
            "{}\n{}",
            describe("Using the bot", &settings.bot_access),
            describe("Running code", &settings.code_access)
        ))
    })
    .await;
    // Mentions in a private answer ping no one (no_mentions is the framework's default).
    ctx.send(CreateReply::default().content(said).ephemeral(true))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_changes_add_once_and_remove() {
        let mut rules = AccessRules::default();
        apply(
            &mut rules,
            AccessAction::Block,
            Some("1".into()),
            Some("9".into()),
        );
        apply(&mut rules, AccessAction::Block, Some("1".into()), None);
        assert_eq!(rules.blocked_users, vec!["1"]);
        assert_eq!(rules.blocked_roles, vec!["9"]);
        apply(&mut rules, AccessAction::Unblock, Some("1".into()), None);
        assert!(rules.blocked_users.is_empty());
        apply(&mut rules, AccessAction::Allow, None, Some("7".into()));
        assert_eq!(rules.allowed_roles, vec!["7"]);
        apply(&mut rules, AccessAction::Show, Some("2".into()), None);
        assert!(!rules.blocked_users.contains(&"2".to_string()));
    }
}
