//! The Discord front end (serenity 0.12 with poise for slash commands): messages with
//! attachments and questions become use cases of the application core, shown as they go.
//! This layer keeps only Discord: events, replies, commands, progress.

pub mod admin;
pub mod buttons;
pub mod commands;
pub mod community_commands;
pub mod events;
pub mod interactions;
pub mod model_menu;
pub mod progress;
pub mod rate_limit;
pub mod reply;
pub mod state;
pub mod status;
pub mod streamed;

use std::future::Future;
use std::sync::Arc;

use poise::FrameworkOptions;
use serenity::all::{FullEvent, GatewayIntents, HttpBuilder};
use serenity::client::ClientBuilder;

use crate::app::App;
use crate::config::DiscordSettings;
use state::BotState;

#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error(
        "DISCORD_TOKEN is not set: create a bot in the Discord developer portal and set its token (see README)"
    )]
    MissingToken,
    #[error("OPENAI_API_KEY is not set: the bot needs an OpenAI-compatible API key")]
    MissingApiKey,
    #[error(transparent)]
    App(#[from] crate::app::AppError),
    #[error("Discord client failed: {0}")]
    Discord(#[from] Box<serenity::Error>),
}

type Framework = poise::Framework<Arc<BotState>, commands::CommandError>;

/// The one check of what the bot cannot start without: its Discord token (returned) and a
/// model's API key.
pub fn required_token(
    discord: &DiscordSettings,
    chat: &crate::config::ChatSettings,
) -> Result<crate::config::Secret, BotError> {
    let token = discord
        .discord_token
        .clone()
        .ok_or(BotError::MissingToken)?;
    if chat.openai_api_key.is_none() {
        return Err(BotError::MissingApiKey);
    }
    Ok(token)
}

/// Runs the bot on `app` until `shutdown` completes (SIGTERM or Ctrl-C in `codebox bot`),
/// then stops taking messages, cancels runs (their containers are removed) and returns.
/// `app` must be started; the caller shuts it down.
pub async fn run(
    app: Arc<App>,
    discord: DiscordSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BotError> {
    let token = required_token(&discord, &app.settings().chat)?;
    let mut http = HttpBuilder::new(token.expose());
    if let Some(base) = &discord.discord_api_base {
        // A proxy owns rate limiting; serenity ignores the proxy while its limiter is on.
        http = http
            .proxy(base.trim_end_matches('/'))
            .ratelimiter_disabled(true);
    }
    let state = Arc::new(BotState::new(app, discord));
    let framework = framework(state.clone());
    let intents = GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT
        | GatewayIntents::GUILDS;
    let mut client = ClientBuilder::new_with_http(http.build(), intents)
        .framework(framework)
        .await
        .map_err(Box::new)?;

    let shards = client.shard_manager.clone();
    let shutdown_state = state.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: no new messages, cancelling runs");
        shutdown_state.begin_shutdown();
        shutdown_state.app.cancel_all();
        shards.shutdown_all().await;
    });
    client.start().await.map_err(Box::new)?;
    state.app.cancel_all();
    Ok(())
}

fn framework(state: Arc<BotState>) -> Framework {
    let options = FrameworkOptions {
        commands: commands::all(),
        event_handler: |framework, event| Box::pin(on_event(framework, event)),
        on_error: |error| Box::pin(on_error(error)),
        command_check: Some(|ctx| Box::pin(commands::command_allowed(ctx))),
        // Nothing the bot sends pings anyone: text from code and exceptions is untrusted.
        allowed_mentions: Some(reply::no_mentions()),
        ..Default::default()
    };
    poise::Framework::builder()
        .options(options)
        // Owners are for owner-only commands, which codebox has none of.
        .initialize_owners(false)
        .setup(move |ctx, ready, framework| {
            Box::pin(async move {
                state.set_bot_user(ready.user.id);
                tracing::info!(user = %ready.user.name, "connected to Discord");
                if let Err(err) =
                    poise::builtins::register_globally(ctx, &framework.options().commands).await
                {
                    tracing::warn!(error = %err, "cannot register slash commands");
                }
                Ok(state)
            })
        })
        .build()
}

async fn on_event(
    framework: poise::FrameworkContext<'_, Arc<BotState>, commands::CommandError>,
    event: &FullEvent,
) -> Result<(), commands::CommandError> {
    if let FullEvent::Message { new_message } = event {
        let state = framework.user_data.clone();
        if new_message.author.bot || state.is_shutting_down() || !state.should_answer(new_message) {
            return Ok(());
        }
        let ctx = framework.serenity_context.clone();
        let msg = new_message.clone();
        // Events are dispatched one at a time: a turn runs on its own task.
        tokio::spawn(events::handle_message(state, ctx, msg));
    }
    if let FullEvent::InteractionCreate {
        interaction: serenity::all::Interaction::Component(press),
    } = event
    {
        let state = framework.user_data.clone();
        let http = framework.serenity_context.http.clone();
        tokio::spawn(interactions::handle_press(state, http, press.clone()));
    }
    Ok(())
}

async fn on_error(error: poise::FrameworkError<'_, Arc<BotState>, commands::CommandError>) {
    match error {
        poise::FrameworkError::Command { error, ctx, .. } => {
            tracing::warn!(error = %error, command = %ctx.command().name, "command failed");
            if let commands::CommandError::App(err) = &error {
                let answer = poise::CreateReply::default()
                    .content(reply::failure_text(err))
                    .ephemeral(true);
                if let Err(err) = ctx.send(answer).await {
                    tracing::warn!(error = %err, "cannot report a command error");
                }
            }
        }
        // The check told the member why already.
        poise::FrameworkError::CommandCheckFailed { error: None, .. } => {}
        other => {
            if let Err(err) = poise::builtins::on_error(other).await {
                tracing::warn!(error = %err, "cannot report a command error");
            }
        }
    }
}
