//! `codebox bot`: the Discord bot on this host's application core.

use std::process::ExitCode;
use std::sync::Arc;

use codebox::app::{App, Lifetime};
use codebox::config::Settings;

use super::signals::wait_for_shutdown_signal;

pub async fn bot(settings: Settings) -> anyhow::Result<ExitCode> {
    // Refuse before anything starts (no pool warmed for nothing).
    codebox::discord::required_token(&settings.discord, &settings.chat)?;
    let discord = settings.discord.clone();
    let app = Arc::new(App::new(settings, Lifetime::Service));
    app.start().await?;
    let outcome = codebox::discord::run(app.clone(), discord, wait_for_shutdown_signal()).await;
    app.shutdown().await;
    outcome?;
    Ok(ExitCode::SUCCESS)
}
