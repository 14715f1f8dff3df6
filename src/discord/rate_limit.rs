//! Discord's 429s, waited out. Against Discord itself serenity's own limiter reads each
//! `retry_after` and retries; behind a proxy (DISCORD_API_BASE) serenity turns its limiter
//! off and hands the 429 back without `retry_after`, so a fixed wait stands in for it.

use std::time::Duration;

use serenity::all::{ChannelId, CreateMessage, Http, Message};

/// How long a 429 is waited out when Discord's own figure is not passed on.
pub const RATE_LIMITED_WAIT: Duration = Duration::from_secs(2);
/// Attempts of one request that keeps being rate limited.
pub const ATTEMPTS: usize = 4;

pub fn is_rate_limited(err: &serenity::Error) -> bool {
    matches!(
        err,
        serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(response))
            if response.status_code.as_u16() == 429
    )
}

/// Posts `message`, waiting out up to ATTEMPTS rate limits: an answer is never dropped for
/// a 429.
pub async fn send_message(
    http: &Http,
    channel: ChannelId,
    message: CreateMessage,
) -> Result<Message, serenity::Error> {
    let mut attempt = 1;
    loop {
        match channel.send_message(http, message.clone()).await {
            Err(err) if is_rate_limited(&err) && attempt < ATTEMPTS => {
                tracing::debug!(attempt, "message rate limited; waiting");
                tokio::time::sleep(RATE_LIMITED_WAIT).await;
                attempt += 1;
            }
            sent => return sent,
        }
    }
}

/// Edits `id` to `edit`, waiting out rate limits like `send_message`.
pub async fn edit_message(
    http: &Http,
    channel: ChannelId,
    id: serenity::all::MessageId,
    edit: serenity::all::EditMessage,
) -> Result<Message, serenity::Error> {
    let mut attempt = 1;
    loop {
        match channel.edit_message(http, id, edit.clone()).await {
            Err(err) if is_rate_limited(&err) && attempt < ATTEMPTS => {
                tracing::debug!(attempt, "edit rate limited; waiting");
                tokio::time::sleep(RATE_LIMITED_WAIT).await;
                attempt += 1;
            }
            edited => return edited,
        }
    }
}
