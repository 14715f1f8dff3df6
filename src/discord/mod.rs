//! The Discord front end (serenity 0.12): messages with attachments and questions, the
//! model loop with code runs shown as they go, and the slash commands.

pub mod bot;
pub mod commands;
pub mod limiter;
pub mod progress;
pub mod reply;

use std::sync::Arc;
use std::time::Duration;

use serenity::all::{GatewayIntents, HttpBuilder};
use serenity::client::ClientBuilder;

use crate::config::Settings;
use crate::conversations::AnyConversations;
use crate::llm::client::OpenAiChat;
use crate::sandbox::Executor;
use crate::sandbox::docker::DockerEngine;
use crate::store::{AnyMetadata, FileStore, StoreLimits, sweeper};

#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error(
        "DISCORD_TOKEN is not set: create a bot in the Discord developer portal and set its token (see README)"
    )]
    MissingToken,
    #[error("OPENAI_API_KEY is not set: the bot needs an OpenAI-compatible API key")]
    MissingApiKey,
    #[error(transparent)]
    Engine(#[from] crate::sandbox::engine::EngineError),
    #[error(transparent)]
    Executor(#[from] crate::sandbox::ExecutorError),
    #[error(transparent)]
    Metadata(#[from] crate::store::MetadataError),
    #[error("Discord client failed: {0}")]
    Discord(String),
    #[error("cannot create DATA_DIR {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Runs the bot until SIGTERM or Ctrl-C, then stops taking messages, cancels runs (their
/// containers are removed) and returns.
pub async fn run(settings: Settings) -> Result<(), BotError> {
    let token = settings
        .discord_token
        .clone()
        .ok_or(BotError::MissingToken)?;
    let api_key = settings
        .openai_api_key
        .clone()
        .ok_or(BotError::MissingApiKey)?;
    // Attachments are spooled here before they are stored, whatever the metadata backend.
    std::fs::create_dir_all(&settings.data_dir).map_err(|source| BotError::DataDir {
        path: settings.data_dir.clone(),
        source,
    })?;
    let engine = Arc::new(DockerEngine::connect().await?);
    let executor = Arc::new(Executor::new(engine, &settings)?.removing_in_background());
    let reaped = executor.reap_orphans().await?;
    if reaped > 0 {
        tracing::info!(reaped, "removed sandbox containers left by a previous run");
    }
    let meta = AnyMetadata::from_settings(&settings).await?;
    tracing::info!(backend = meta.kind(), "file store ready");
    let store = Arc::new(FileStore::new(
        meta,
        &settings.data_dir,
        StoreLimits::from_settings(&settings),
    ));
    let _sweeper = sweeper::spawn(
        store.clone(),
        Duration::from_secs_f64(settings.cleanup_interval_minutes * 60.0),
    );
    let conversations = AnyConversations::from_settings(&settings).await?;
    let model = OpenAiChat::new(
        &settings.openai_base_url,
        api_key.expose(),
        &settings.openai_model,
        Duration::from_secs_f64(settings.openai_timeout),
        settings.openai_retries,
    );
    let state = Arc::new(bot::BotState::new(
        settings.clone(),
        executor,
        store,
        conversations,
        model,
    ));

    let mut http = HttpBuilder::new(token.expose());
    if let Some(base) = &settings.discord_api_base {
        // A proxy owns rate limiting; serenity ignores the proxy while its limiter is on.
        http = http
            .proxy(base.trim_end_matches('/'))
            .ratelimiter_disabled(true);
    }
    let intents = GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT
        | GatewayIntents::GUILDS;
    let mut client = ClientBuilder::new_with_http(http.build(), intents)
        .event_handler(bot::Handler(state.clone()))
        .await
        .map_err(|e| BotError::Discord(e.to_string()))?;

    let shards = client.shard_manager.clone();
    let shutdown_state = state.clone();
    tokio::spawn(async move {
        wait_for_shutdown_signal().await;
        tracing::info!("shutting down: no new messages, cancelling runs");
        shutdown_state.begin_shutdown();
        shards.shutdown_all().await;
    });
    client
        .start()
        .await
        .map_err(|e| BotError::Discord(e.to_string()))?;
    state.cancel_all().await;
    // Let the removal of cancelled runs' containers finish before the process exits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    state.executor.shutdown().await;
    Ok(())
}

async fn wait_for_shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
