//! `codebox executor`: this host's sandboxes served over HTTP.

use std::process::ExitCode;
use std::sync::Arc;

use codebox::app::{App, Lifetime};
use codebox::config::Settings;

use super::signals::wait_for_shutdown_signal;

pub async fn executor(
    settings: Settings,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let addr = match listen {
        Some(addr) => addr,
        None => settings.executor.listen_addr()?,
    };
    let token = settings.executor.executor_token.clone();
    let limits = codebox::service::connections::ConnectionLimits::from_settings(&settings.executor);
    codebox::service::check_listen(addr, token.as_ref())?;
    let app = Arc::new(App::new(settings, Lifetime::Service));
    app.start().await?;
    let outcome =
        codebox::service::serve(app.clone(), addr, token, limits, wait_for_shutdown_signal()).await;
    app.shutdown().await;
    outcome?;
    Ok(ExitCode::SUCCESS)
}
