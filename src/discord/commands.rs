//! Slash commands (poise): /files, /delete, /run, /reset, /usage, /limits, /stop (and, in
//! `community_commands`, /model, /settings, /prompt, /access). Each one is a use case of
//! the application core; this file keeps only Discord: options, replies, permissions.

use std::sync::Arc;

use poise::CreateReply;
use serenity::all::{ButtonStyle, CreateActionRow, CreateAttachment, CreateButton};

use super::buttons::Button;
use super::events::{self, outgoing, refusal_text};
use super::progress::follow_run;
use super::reply;
use super::state::BotState;
use super::status::StatusMessage;
use crate::app::{AppError, CodeRun};
use crate::render;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("Discord request failed: {0}")]
    Discord(#[from] serenity::Error),
    /// Reported to the member by `on_error` (storage trouble in its own words).
    #[error(transparent)]
    App(#[from] AppError),
}

/// Discord drops an interaction not answered within 3 s; storage that is slow to answer
/// (a database failing over) gets the answer deferred before then.
const REPLY_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

/// `work`'s value, deferring the (private) answer when it takes longer than `REPLY_WINDOW`.
async fn within_reply_window<T>(
    ctx: Context<'_>,
    work: impl std::future::Future<Output = T>,
) -> Result<T, CommandError> {
    tokio::pin!(work);
    match tokio::time::timeout(REPLY_WINDOW, &mut work).await {
        Ok(value) => Ok(value),
        Err(_) => {
            ctx.defer_ephemeral().await?;
            Ok(work.await)
        }
    }
}

/// A file the member does not have is an answer; any other failure (storage down) is the
/// command's error, never "you have no file".
async fn own_file(
    ctx: Context<'_>,
    id: &str,
) -> Result<Option<(crate::store::FileRecord, std::path::PathBuf)>, CommandError> {
    let user = user_id(ctx);
    match within_reply_window(ctx, ctx.data().app.get_file(&user, id)).await? {
        Ok(found) => Ok(Some(found)),
        Err(err) if err.is_not_found() => Ok(None),
        Err(err) => Err(err.into()),
    }
}

pub type Context<'a> = poise::Context<'a, Arc<BotState>, CommandError>;

/// Every command, for the framework and for registration.
pub fn all() -> Vec<poise::Command<Arc<BotState>, CommandError>> {
    use super::community_commands as community;
    vec![
        files(),
        delete(),
        run(),
        reset(),
        usage(),
        limits(),
        stop(),
        community::model(),
        community::settings(),
        community::prompt(),
        community::access(),
    ]
}

/// Every command's first check: DMs off, or a member the bot does not serve here, get
/// their sentence privately and nothing else.
pub async fn command_allowed(ctx: Context<'_>) -> Result<bool, CommandError> {
    let state = ctx.data();
    if ctx.guild_id().is_none() && !state.discord.allow_dms {
        ctx.send(private(events::DMS_OFF)).await?;
        return Ok(false);
    }
    let guild = ctx.guild_id().map(|g| g.to_string());
    if let crate::app::access::Access::Blocked(sentence) = state
        .app
        .access_for(&user_id(ctx), &super::admin::roles(ctx), guild.as_deref())
        .await
    {
        ctx.send(private(sentence)).await?;
        return Ok(false);
    }
    Ok(true)
}

pub(crate) fn private(text: impl Into<String>) -> CreateReply {
    CreateReply::default().content(text).ephemeral(true)
}

pub(crate) fn user_id(ctx: Context<'_>) -> String {
    ctx.author().id.to_string()
}

/// List your files, or download one by id
#[poise::command(slash_command)]
async fn files(
    ctx: Context<'_>,
    #[description = "File id"] id: Option<String>,
) -> Result<(), CommandError> {
    let app = &ctx.data().app;
    let user = user_id(ctx);
    let Some(id) = id else {
        let files = within_reply_window(ctx, app.list_files(&user)).await??;
        let text = if files.is_empty() {
            "You have no files. Attach one to a message to store it.".to_string()
        } else {
            format!(
                "Your files ({}/{}):\n```\n{}```",
                files.len(),
                app.max_files_per_user(),
                render::file_table(&files)
            )
        };
        ctx.send(private(text)).await?;
        return Ok(());
    };
    let Some((record, path)) = own_file(ctx, &id).await? else {
        ctx.send(private(format!("You have no file `{id}`.")))
            .await?;
        return Ok(());
    };
    let mut message = private(format!(
        "`{}` ({}, {})",
        record.filename,
        record.file_type,
        render::human_size(record.file_size)
    ));
    if record.file_size <= ctx.data().upload_limit_bytes() {
        match tokio::fs::read(&path).await {
            Ok(bytes) => {
                message =
                    message.attachment(CreateAttachment::bytes(bytes, record.filename.clone()))
            }
            Err(err) => tracing::warn!(error = %err, "cannot read a stored file"),
        }
    }
    ctx.send(message).await?;
    Ok(())
}

/// Delete one of your files (asks to confirm)
#[poise::command(slash_command)]
async fn delete(
    ctx: Context<'_>,
    #[description = "File id"] id: String,
) -> Result<(), CommandError> {
    let owner = ctx.author().id;
    let Some((record, _)) = own_file(ctx, &id).await? else {
        ctx.send(private(format!("You have no file `{id}`.")))
            .await?;
        return Ok(());
    };
    let confirm = Button::ConfirmDelete {
        owner,
        file_id: record.file_id.clone(),
    };
    let cancel = Button::CancelDelete {
        owner,
        file_id: record.file_id.clone(),
    };
    let buttons = CreateActionRow::Buttons(vec![
        CreateButton::new(confirm.custom_id())
            .style(ButtonStyle::Danger)
            .label("Confirm"),
        CreateButton::new(cancel.custom_id())
            .style(ButtonStyle::Secondary)
            .label("Cancel"),
    ]);
    ctx.send(
        private(format!(
            "Delete `{}` (`{}`) for good?",
            record.filename, record.file_id
        ))
        .components(vec![buttons]),
    )
    .await?;
    Ok(())
}

/// What /stop and the Stop button say: either may end a model request or a run.
pub const CANCELLED: &str = "🛑 Cancelled your request: the model's answer or the code that was running (its sandbox removed).";

/// Cancel your running code; admins can stop a member's
#[poise::command(slash_command)]
async fn stop(
    ctx: Context<'_>,
    #[description = "Admins: the member whose run to stop"] user: Option<serenity::all::User>,
) -> Result<(), CommandError> {
    let state = ctx.data();
    let text = match user.filter(|u| u.id != ctx.author().id) {
        None if state.cancel_user(&user_id(ctx)) => CANCELLED.to_string(),
        None => "Nothing of yours is running.".to_string(),
        Some(_) if !super::admin::is_admin(ctx) => super::admin::ADMINS_ONLY.to_string(),
        Some(member) => {
            // Only runs started in this server: an admin here is no admin elsewhere.
            let here = ctx.guild_id();
            let target = member.id.to_string();
            if here.is_some()
                && state.run_guild(&target) == Some(here)
                && state.cancel_user(&target)
            {
                tracing::info!(admin = %ctx.author().id, member = %target, "an admin stopped a member's run");
                format!("🛑 Stopped <@{target}>'s request (its sandbox removed).")
            } else {
                format!("<@{target}> has nothing running in this server.")
            }
        }
    };
    ctx.send(private(text)).await?;
    Ok(())
}

/// Clear your conversation history and variables
#[poise::command(slash_command)]
async fn reset(
    ctx: Context<'_>,
    #[description = "Also delete all your files"] files: Option<bool>,
) -> Result<(), CommandError> {
    // A turn still under way would write back the history and variables it started with.
    let stopped = ctx.data().cancel_user(&user_id(ctx));
    let report = ctx
        .data()
        .app
        .reset(&user_id(ctx), files == Some(true))
        .await;
    let mut text = match &report.history_error {
        None => "🧹 Conversation history cleared.".to_string(),
        Some(err) => format!(
            "Could not clear the history: {}.",
            reply::failure_reason(err)
        ),
    };
    if stopped {
        text.push_str(" Your running code was stopped.");
    }
    match &report.state_error {
        None => text.push_str(" Variables forgotten."),
        Some(err) => text.push_str(&format!(
            " Could not forget your variables: {}.",
            reply::failure_reason(err)
        )),
    }
    match (&report.files_error, report.files_deleted) {
        (Some(err), _) => text.push_str(&format!(
            " Could not delete your files: {}.",
            reply::failure_reason(err)
        )),
        (None, Some(deleted)) => text.push_str(&format!(" Deleted {deleted} files.")),
        (None, None) => text.push_str(" Your files are kept."),
    }
    ctx.send(private(text)).await?;
    Ok(())
}

/// Your tokens, cost, runs and CPU time this month
#[poise::command(slash_command)]
async fn usage(ctx: Context<'_>) -> Result<(), CommandError> {
    let user = user_id(ctx);
    let app = &ctx.data().app;
    let read = within_reply_window(ctx, async {
        Ok::<_, AppError>((app.usage(&user).await?, app.usage_by_model(&user).await?.1))
    })
    .await?;
    let text = match read {
        Ok(((month, totals), by_model)) => {
            let mut text = render::usage_report(&month, &totals);
            if !by_model.is_empty() {
                text.push_str("\nBy model:\n");
                text.push_str(&render::usage_by_model(&by_model));
            }
            text
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot read usage");
            format!("Could not read usage: {}.", reply::failure_reason(&err))
        }
    };
    ctx.send(private(text)).await?;
    Ok(())
}

/// Show the limits code runs under and the monthly budgets; server admins can lower them
#[poise::command(slash_command)]
async fn limits(
    ctx: Context<'_>,
    #[description = "Seconds per run in this server (admins only)"] timeout: Option<f64>,
    #[description = "Memory per run in MB in this server (admins only)"] memory_mb: Option<u64>,
    #[description = "Monthly dollars per member in this server (admins only)"]
    user_budget_usd: Option<f64>,
    #[description = "Monthly dollars for this whole server (admins only)"]
    server_budget_usd: Option<f64>,
) -> Result<(), CommandError> {
    let app = &ctx.data().app;
    let guild = ctx.guild_id().map(|g| g.to_string());
    let budgets_asked = user_budget_usd.is_some() || server_budget_usd.is_some();
    if timeout.is_none() && memory_mb.is_none() && !budgets_asked {
        let settings = app.guild_settings(guild.as_deref()).await?;
        let l = app.limits_in(settings.as_ref());
        let caps = crate::app::budget::Caps::in_force(&app.settings().chat, settings.as_ref());
        let mut text = render::limits_report(&l, app.settings());
        text.push('\n');
        text.push_str(&render::budget_report(&caps));
        ctx.send(private(text)).await?;
        return Ok(());
    }
    let Some(guild) = guild else {
        ctx.send(private("Limits can only be set inside a server."))
            .await?;
        return Ok(());
    };
    let text = if !super::admin::is_admin(ctx) {
        super::admin::ADMINS_ONLY.to_string()
    } else if budgets_asked && (timeout.is_some() || memory_mb.is_some()) {
        "Set run limits and budgets in two commands: nothing was changed.".to_string()
    } else if budgets_asked {
        let chat = &app.settings().chat;
        let saved = app
            .update_guild_settings(&guild, |settings| {
                for (asked, operator, slot, name) in [
                    (
                        user_budget_usd,
                        chat.user_monthly_budget_usd,
                        &mut settings.user_budget_usd,
                        "per member",
                    ),
                    (
                        server_budget_usd,
                        chat.server_monthly_budget_usd,
                        &mut settings.server_budget_usd,
                        "for the server",
                    ),
                ] {
                    let Some(asked) = asked else { continue };
                    if !(asked.is_finite() && asked >= 0.0) {
                        return Err(AppError::Refused(
                            "a budget is a number of dollars, 0 or more.".into(),
                        ));
                    }
                    if let Some(cap) = operator.filter(|cap| asked > *cap) {
                        return Err(AppError::Refused(format!(
                            "the operator's cap {name} is {}; admins may only lower it.",
                            crate::app::budget::dollars(cap)
                        )));
                    }
                    *slot = Some(asked);
                }
                Ok(())
            })
            .await;
        match saved {
            Ok(settings) => {
                render::budget_report(&crate::app::budget::Caps::in_force(chat, Some(&settings)))
            }
            Err(AppError::Refused(sentence)) => format!("Not changed: {sentence}"),
            Err(err) => {
                tracing::warn!(error = %err, "cannot save budgets");
                format!(
                    "Could not save the budgets: {}.",
                    reply::failure_reason(&err)
                )
            }
        }
    } else {
        match app.set_guild_limits(&guild, timeout, memory_mb).await {
            Ok(l) => format!(
                "Limits for this server: {} s and {} MB per run.",
                l.timeout.as_secs_f64(),
                l.memory_mb
            ),
            Err(crate::app::AppError::Limits(err)) => format!("Not changed: {err}."),
            Err(err) => {
                tracing::warn!(error = %err, "cannot save limits");
                format!(
                    "Could not save the limits: {}.",
                    reply::failure_reason(&err)
                )
            }
        }
    };
    ctx.send(private(text)).await?;
    Ok(())
}

/// Run Python code directly (no model)
#[poise::command(slash_command)]
async fn run(
    ctx: Context<'_>,
    #[description = "Python code"] code: String,
) -> Result<(), CommandError> {
    let state = ctx.data().clone();
    let user = user_id(ctx);
    let guild = ctx.guild_id().map(|g| g.to_string());
    // Who may not run code through the model may not run it directly either.
    match state
        .app
        .access_for(&user, &super::admin::roles(ctx), guild.as_deref())
        .await
    {
        crate::app::access::Access::Full => {}
        crate::app::access::Access::NoCode(reason) => {
            ctx.send(private(format!("🚫 Not run: {reason}."))).await?;
            return Ok(());
        }
        crate::app::access::Access::Blocked(sentence) => {
            ctx.send(private(sentence)).await?;
            return Ok(());
        }
    }
    ctx.defer().await?;
    // The same path as a message: admission, cancellable by /stop, outputs stored.
    let ticket = match events::admit(&state, ctx.http(), ctx.channel_id(), &user).await {
        Ok(ticket) => ticket,
        Err(refusal) => {
            ctx.send(CreateReply::default().content(refusal_text(&state.app, &refusal)))
                .await?;
            return Ok(());
        }
    };
    let limits = state.app.limits_for(guild.as_deref()).await?;
    // The run shows itself as it goes, with a Stop button, like a message's runs.
    let status = Arc::new(StatusMessage::new(
        ctx.serenity_context().http.clone(),
        ctx.channel_id(),
        ctx.author().id,
        state.discord.status_after(),
    ));
    state.track_status(&user, ctx.guild_id(), status.clone());
    let work = {
        let app = state.app.clone();
        let user = user.clone();
        // /run shares the channel's variables with the model's runs there.
        let channel = ctx.channel_id().to_string();
        let status = status.clone();
        async move {
            let watch = follow_run(&status, 1, app.clone());
            let outcome = app
                .run_code(CodeRun {
                    user_id: user,
                    code,
                    limits,
                    file_ids: None,
                    output_dir: None,
                    session: Some(channel),
                    watch: Some(watch),
                })
                .await;
            drop(ticket);
            let ended = match &outcome {
                Ok(run) => render::status_line(Ok(run)),
                Err(err) => render::status_line(Err(&app.redact(&err.to_string()))),
            };
            status.run_ended(ended);
            outcome
        }
    };
    let outcome = state.app.run_cancellable(&user, work).await;
    state.forget_status(&user, &status);
    let (text, files) = match outcome {
        None => ("🛑 cancelled".to_string(), Vec::new()),
        Some(Ok(run)) => (
            render::run_for_discord(&run),
            outgoing(&run.generated_files),
        ),
        Some(Err(err)) => (
            format!(
                "❌ could not run the code: {}",
                state.app.redact(&err.to_string())
            ),
            Vec::new(),
        ),
    };
    let text = state.app.redact(&text);
    for message in reply::plan(&text, &files, state.upload_limit_bytes()) {
        let mut builder = CreateReply::default().content(message.content);
        for attachment in message.attachments {
            if let Some(file) = events::discord_attachment(attachment).await {
                builder = builder.attachment(file);
            }
        }
        ctx.send(builder).await?;
    }
    Ok(())
}
