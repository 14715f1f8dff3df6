//! Slash commands: /files, /delete, /run, /reset, /usage, /limits, /stop.

use std::sync::Arc;

use serenity::all::{
    Command, CommandDataOptionValue, CommandInteraction, CommandOptionType, Context,
    CreateAttachment, CreateCommand, CreateCommandOption, CreateInteractionResponse,
    CreateInteractionResponseFollowup, CreateInteractionResponseMessage, EditInteractionResponse,
    Http,
};

use super::bot::BotState;
use crate::conversations::ConversationStore;
use crate::llm::tool_result::redact;
use crate::render;

pub async fn register(http: &Http) -> Result<Vec<Command>, serenity::Error> {
    let id = |required: bool| {
        CreateCommandOption::new(CommandOptionType::String, "id", "File id").required(required)
    };
    let commands = vec![
        CreateCommand::new("files")
            .description("List your files, or download one by id")
            .add_option(id(false)),
        CreateCommand::new("delete")
            .description("Delete one of your files")
            .add_option(id(true))
            .add_option(CreateCommandOption::new(
                CommandOptionType::Boolean,
                "confirm",
                "Set to True to really delete",
            )),
        CreateCommand::new("run")
            .description("Run Python code directly (no model)")
            .add_option(
                CreateCommandOption::new(CommandOptionType::String, "code", "Python code")
                    .required(true),
            ),
        CreateCommand::new("reset")
            .description("Clear your conversation history")
            .add_option(CreateCommandOption::new(
                CommandOptionType::Boolean,
                "files",
                "Also delete all your files",
            )),
        CreateCommand::new("usage").description("Your tokens, cost, runs and CPU time this month"),
        CreateCommand::new("limits")
            .description("Show the limits code runs under; server admins can lower them")
            .add_option(CreateCommandOption::new(
                CommandOptionType::Number,
                "timeout",
                "Seconds per run in this server (Manage Server only)",
            ))
            .add_option(CreateCommandOption::new(
                CommandOptionType::Integer,
                "memory_mb",
                "Memory per run in MB in this server (Manage Server only)",
            )),
        CreateCommand::new("stop").description("Cancel your running code"),
    ];
    Command::set_global_commands(http, commands).await
}

fn option<'a>(command: &'a CommandInteraction, name: &str) -> Option<&'a CommandDataOptionValue> {
    command
        .data
        .options
        .iter()
        .find(|o| o.name == name)
        .map(|o| &o.value)
}

fn string_option(command: &CommandInteraction, name: &str) -> Option<String> {
    match option(command, name)? {
        CommandDataOptionValue::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn number_option(command: &CommandInteraction, name: &str) -> Option<f64> {
    match option(command, name)? {
        CommandDataOptionValue::Number(n) => Some(*n),
        CommandDataOptionValue::Integer(n) => Some(*n as f64),
        _ => None,
    }
}

fn integer_option(command: &CommandInteraction, name: &str) -> Option<u64> {
    match option(command, name)? {
        CommandDataOptionValue::Integer(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// Admins with Manage Server lower this server's limits, within the operator's maxima.
async fn set_guild_limits(
    state: &BotState,
    command: &CommandInteraction,
    timeout: Option<f64>,
    memory: Option<u64>,
) -> String {
    let Some(guild) = command.guild_id else {
        return "Limits can only be set inside a server.".to_string();
    };
    let allowed = command
        .member
        .as_ref()
        .and_then(|m| m.permissions)
        .is_some_and(|p| p.manage_guild());
    if !allowed {
        return "Only members with the Manage Server permission can change limits.".to_string();
    }
    if let Err(err) = state.limits().check_request(timeout, memory) {
        return format!("Not changed: {err}.");
    }
    let key = guild.to_string();
    let mut current = state
        .conversations
        .guild_limits(&key)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    if timeout.is_some() {
        current.timeout_s = timeout;
    }
    if memory.is_some() {
        current.memory_mb = memory;
    }
    match state.conversations.set_guild_limits(&key, &current).await {
        Ok(()) => {
            let l = state.limits_for(Some(guild)).await;
            format!(
                "Limits for this server: {} s and {} MB per run.",
                l.timeout.as_secs_f64(),
                l.memory_mb
            )
        }
        Err(err) => format!("Could not save the limits: {err}"),
    }
}

fn bool_option(command: &CommandInteraction, name: &str) -> bool {
    matches!(
        option(command, name),
        Some(CommandDataOptionValue::Boolean(true))
    )
}

async fn respond(
    ctx: &Context,
    command: &CommandInteraction,
    message: CreateInteractionResponseMessage,
) {
    if let Err(err) = command
        .create_response(&ctx.http, CreateInteractionResponse::Message(message))
        .await
    {
        tracing::warn!(error = %err, command = %command.data.name, "cannot answer a command");
    }
}

fn private(text: impl Into<String>) -> CreateInteractionResponseMessage {
    CreateInteractionResponseMessage::new()
        .content(text)
        .ephemeral(true)
}

pub async fn handle(state: Arc<BotState>, ctx: Context, command: CommandInteraction) {
    let user_id = command.user.id.to_string();
    let secrets = state.secrets().to_vec();
    match command.data.name.as_str() {
        "files" => match string_option(&command, "id") {
            None => {
                let files = state.store.list(&user_id).await.unwrap_or_default();
                let text = if files.is_empty() {
                    "You have no files. Attach one to a message to store it.".to_string()
                } else {
                    let mut text = format!(
                        "Your files ({}/{}):\n",
                        files.len(),
                        state.settings.max_files_per_user
                    );
                    text.push_str(&format!("```\n{}```", render::file_table(&files)));
                    text
                };
                respond(&ctx, &command, private(text)).await;
            }
            Some(id) => match state.store.get(&user_id, &id).await {
                Ok(record) => {
                    let path = state.store.path_of(&record);
                    let limit = state.settings.discord_upload_limit_mb * 1024 * 1024;
                    let mut message = private(format!(
                        "`{}` ({}, {})",
                        record.filename,
                        record.file_type,
                        render::human_size(record.file_size)
                    ));
                    if record.file_size <= limit {
                        match tokio::fs::read(&path).await {
                            Ok(bytes) => {
                                message = message.add_file(CreateAttachment::bytes(
                                    bytes,
                                    record.filename.clone(),
                                ))
                            }
                            Err(err) => tracing::warn!(error = %err, "cannot read a stored file"),
                        }
                    }
                    respond(&ctx, &command, message).await;
                }
                Err(_) => {
                    respond(&ctx, &command, private(format!("You have no file `{id}`."))).await
                }
            },
        },
        "delete" => {
            let id = string_option(&command, "id").unwrap_or_default();
            let text = match state.store.get(&user_id, &id).await {
                Err(_) => format!("You have no file `{id}`."),
                Ok(record) if !bool_option(&command, "confirm") => format!(
                    "This deletes `{}` (`{}`) for good. Run `/delete id:{} confirm:True` to confirm.",
                    record.filename, record.file_id, record.file_id
                ),
                Ok(record) => match state.store.delete(&user_id, &record.file_id).await {
                    Ok(_) => format!("🗑️ Deleted `{}` (`{}`).", record.filename, record.file_id),
                    Err(err) => format!("Could not delete `{id}`: {err}"),
                },
            };
            respond(&ctx, &command, private(text)).await;
        }
        "stop" => {
            let text = if state.cancel_user(&ctx.http, &user_id).await {
                "🛑 Cancelled your running code; its sandbox was removed."
            } else {
                "Nothing of yours is running."
            };
            respond(&ctx, &command, private(text)).await;
        }
        "reset" => {
            let mut text = match state.conversations.clear_history(&user_id, None).await {
                Ok(()) => "🧹 Conversation history cleared.".to_string(),
                Err(err) => format!("Could not clear the history: {err}"),
            };
            if bool_option(&command, "files") {
                let files = state.store.list(&user_id).await.unwrap_or_default();
                let mut deleted = 0;
                for file in files {
                    if state.store.delete(&user_id, &file.file_id).await.is_ok() {
                        deleted += 1;
                    }
                }
                text.push_str(&format!(" Deleted {deleted} files."));
            } else {
                text.push_str(" Your files are kept.");
            }
            respond(&ctx, &command, private(text)).await;
        }
        "usage" => {
            let month = chrono::Utc::now().format("%Y-%m").to_string();
            let text = match state.conversations.usage(&user_id, &month).await {
                Ok(u) => render::usage_report(&month, &u),
                Err(err) => format!("Could not read usage: {err}"),
            };
            respond(&ctx, &command, private(text)).await;
        }
        "limits" => {
            let timeout = number_option(&command, "timeout");
            let memory = integer_option(&command, "memory_mb");
            if timeout.is_some() || memory.is_some() {
                let text = set_guild_limits(&state, &command, timeout, memory).await;
                respond(&ctx, &command, private(text)).await;
                return;
            }
            let l = state.limits_for(command.guild_id).await;
            let text = format!(
                "Each run: {} s, {} MB memory, {} CPU, {} processes, {} MB scratch, no network, runtime {}.\nFiles: {} per user, {} MB each, expire after {} h.\nMessages: {} per minute; up to {} code runs per message.",
                l.timeout.as_secs_f64(),
                l.memory_mb,
                l.cpus,
                l.pids,
                l.disk_mb,
                l.runtime.as_str(),
                state.settings.max_files_per_user,
                state.settings.max_file_size_mb,
                state.settings.file_expiration_hours,
                state.settings.rate_limit_per_minute,
                state.settings.max_tool_rounds,
            );
            respond(&ctx, &command, private(text)).await;
        }
        "run" => {
            let code = string_option(&command, "code").unwrap_or_default();
            let deferred = command
                .create_response(
                    &ctx.http,
                    CreateInteractionResponse::Defer(CreateInteractionResponseMessage::new()),
                )
                .await;
            if let Err(err) = deferred {
                tracing::warn!(error = %err, "cannot defer /run");
                return;
            }
            let limits = state.limits_for(command.guild_id).await;
            let timeout = limits.timeout;
            let text = match state.run_code(&user_id, code, timeout, limits).await {
                Ok(run) => render::run_for_discord(&run),
                Err(reason) => format!("❌ could not run the code: {reason}"),
            };
            let text = redact(&text, &secrets);
            let mut chunks =
                super::reply::split_text(&text, super::reply::MAX_MESSAGE_CHARS).into_iter();
            let first = chunks.next().unwrap_or_else(|| "(no output)".into());
            if let Err(err) = command
                .edit_response(&ctx.http, EditInteractionResponse::new().content(first))
                .await
            {
                tracing::warn!(error = %err, "cannot answer /run");
            }
            for chunk in chunks {
                let _ = command
                    .create_followup(
                        &ctx.http,
                        CreateInteractionResponseFollowup::new().content(chunk),
                    )
                    .await;
            }
        }
        other => respond(&ctx, &command, private(format!("Unknown command {other}."))).await,
    }
}
