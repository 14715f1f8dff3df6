//! Messages: attachments become stored files (confirmed in one reply), text becomes a chat
//! turn of the application core, shown as it goes, answered within Discord's limits.

use std::sync::Arc;
use tracing::Instrument;

use serenity::all::{
    ButtonStyle, ChannelId, Context, CreateActionRow, CreateAttachment, CreateButton,
    CreateMessage, EditMessage, Http, Message, UserId,
};

use super::buttons::Button;
use super::progress::DiscordProgress;
use super::rate_limit;
use super::reply::{self, Attachment, OutgoingFile, no_mentions};
use super::state::BotState;
use super::status::{EDIT_SPACING, StatusMessage};
use super::streamed::{Streamed, StreamedReply};
use crate::app::access::Access;
use crate::app::{
    Admission, App, ChatReply, ChatTurn, FileRecord, GeneratedFile, Refusal, Ticket, Upload,
    UploadSource,
};
use crate::render;

/// What a DM gets while ALLOW_DMS is off.
pub const DMS_OFF: &str =
    "Direct messages with this bot are turned off; talk to it in a server it is in.";

/// `text` for the author of `msg` alone: in a DM where the message was one, else in a DM
/// of its own (a server channel has no private messages).
pub async fn tell_privately(http: &Http, msg: &Message, text: &str) {
    if msg.guild_id.is_none() {
        say(http, msg.channel_id, text).await;
        return;
    }
    let message = CreateMessage::new()
        .content(text)
        .allowed_mentions(no_mentions());
    if let Err(err) = msg.author.direct_message(http, message).await {
        tracing::warn!(error = %err, "cannot tell a member privately");
    }
}

pub async fn say(http: &Http, channel: ChannelId, text: &str) {
    let message = CreateMessage::new()
        .content(text)
        .allowed_mentions(no_mentions());
    if let Err(err) = rate_limit::send_message(http, channel, message).await {
        tracing::warn!(error = %err, "cannot send a message");
    }
}

fn strip_mentions(content: &str, me: Option<UserId>) -> String {
    let mut text = content.to_string();
    if let Some(me) = me {
        for form in [format!("<@{me}>"), format!("<@!{me}>")] {
            text = text.replace(&form, "");
        }
    }
    text.trim().to_string()
}

/// The sentence a refused message gets.
pub fn refusal_text(app: &App, refusal: &Refusal) -> String {
    match refusal {
        Refusal::RateLimited { retry_after } => format!(
            "🐢 You are sending messages too fast (limit {} per minute). Try again in {} s.",
            app.settings().chat.rate_limit_per_minute,
            retry_after.as_secs().max(1)
        ),
        Refusal::AlreadyRunning => {
            "⏳ Your previous message is still being worked on; use /stop to cancel it.".into()
        }
        Refusal::QueueFull => {
            "🚧 The bot is too busy right now; please try again in a minute.".into()
        }
    }
}

pub fn queued_text(position: usize) -> String {
    format!(
        "⏳ The bot is busy; you are in position {position}. Your message will be answered in turn."
    )
}

/// Admission through the core; a queued user is told their place (sent after the place is
/// taken, so a burst sees distinct positions), then waits.
pub async fn admit(
    state: &BotState,
    http: &Http,
    channel: ChannelId,
    user_id: &str,
) -> Result<Ticket, Refusal> {
    match admit_past_a_cancelled_turn(state, user_id).await? {
        Admission::Now(ticket) => Ok(ticket),
        Admission::Queued { position, ticket } => {
            say(http, channel, &queued_text(position)).await;
            Ok(state.app.wait_turn(ticket).await)
        }
    }
}

/// How long a message right after /stop waits for the cancelled turn to be torn down.
const CANCELLED_TURN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Admission, except that a turn /stop has cancelled but whose task is still being torn
/// down (its ticket not yet dropped, under load) does not refuse the user's next message
/// as "still being worked on": it is waited for, briefly.
async fn admit_past_a_cancelled_turn(
    state: &BotState,
    user_id: &str,
) -> Result<Admission, Refusal> {
    loop {
        // The cancellation came before the first refusal, so this bounds the wait too.
        match state.app.admit(user_id) {
            Err(Refusal::AlreadyRunning)
                if !state.app.is_running(user_id)
                    && state.app.cancelled_within(user_id, CANCELLED_TURN_PATIENCE) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            admission => return admission,
        }
    }
}

/// One message, from the gateway event to the reply posted: a span of its own, with one
/// for each phase inside (the bot-latency benchmark reads them).
pub async fn handle_message(state: Arc<BotState>, ctx: Context, msg: Message) {
    answer_message(state, ctx, msg)
        .instrument(tracing::info_span!("message"))
        .await
}

async fn answer_message(state: Arc<BotState>, ctx: Context, msg: Message) {
    let user_id = msg.author.id.to_string();
    if msg.guild_id.is_none() && !state.discord.allow_dms {
        say(&ctx.http, msg.channel_id, DMS_OFF).await;
        return;
    }
    let roles: Vec<String> = msg
        .member
        .as_ref()
        .map(|m| m.roles.iter().map(|r| r.to_string()).collect())
        .unwrap_or_default();
    let guild = msg.guild_id.map(|g| g.to_string());
    if let Access::Blocked(sentence) = state
        .app
        .access_for(&user_id, &roles, guild.as_deref())
        .instrument(tracing::info_span!("message.access"))
        .await
    {
        tracing::info!(user = %user_id, "a blocked member was refused");
        tell_privately(&ctx.http, &msg, &sentence).await;
        return;
    }
    let stored = if msg.attachments.is_empty() {
        Vec::new()
    } else {
        store_attachments(&state, &ctx.http, &msg, &user_id).await
    };
    let text = strip_mentions(&msg.content, state.bot_user());
    if text.is_empty() {
        return;
    }
    let ticket = match admit(&state, &ctx.http, msg.channel_id, &user_id)
        .instrument(tracing::info_span!("message.admit"))
        .await
    {
        Ok(ticket) => ticket,
        Err(refusal) => {
            say(
                &ctx.http,
                msg.channel_id,
                &refusal_text(&state.app, &refusal),
            )
            .await;
            return;
        }
    };
    let status = Arc::new(StatusMessage::new(
        ctx.http.clone(),
        msg.channel_id,
        msg.author.id,
        state.discord.status_after(),
    ));
    state.track_status(&user_id, msg.guild_id, status.clone());
    let answer = Arc::new(StreamedReply::new(ctx.http.clone(), msg.channel_id));
    let turn = ChatTurn {
        user_id: user_id.clone(),
        channel_id: msg.channel_id.to_string(),
        guild_id: guild,
        text,
        images: crate::app::attached_pictures(&stored),
        roles,
    };
    let work = {
        let app = state.app.clone();
        let http = ctx.http.clone();
        let channel = msg.channel_id;
        let status = status.clone();
        let answer = answer.clone();
        async move {
            let _typing = channel.start_typing(&http);
            let progress = DiscordProgress::new(status, app.clone(), answer);
            let reply = app.chat_turn(turn, &progress).await;
            // Free the user before the answer is visible, so a quick follow-up is not
            // refused as "still being worked on".
            drop(ticket);
            reply
        }
    };
    let reply = state.app.run_cancellable(&user_id, work).await;
    state.forget_status(&user_id, &status);
    match reply {
        // Cancelled: /stop already said so; what was streamed of the answer goes.
        None => discard(&ctx.http, msg.channel_id, answer.finish().await).await,
        Some(Ok(reply)) => {
            let plan = reply::plan(
                &answer_text(&state.app, &reply),
                &outgoing(&reply.files),
                state.upload_limit_bytes(),
            );
            let streamed = answer.finish().await;
            deliver(
                &ctx.http,
                msg.channel_id,
                plan,
                streamed,
                answer_buttons(&reply),
            )
            .instrument(tracing::info_span!("message.reply"))
            .await;
        }
        Some(Err(err)) => {
            tracing::warn!(error = %err, "chat turn failed");
            discard(&ctx.http, msg.channel_id, answer.finish().await).await;
            say(&ctx.http, msg.channel_id, &reply::failure_text(&err)).await;
        }
    }
}

/// Removes what a stream posted of an answer that will not come.
async fn discard(http: &Http, channel: ChannelId, streamed: Streamed) {
    for id in streamed.messages {
        if let Err(err) = channel.delete_message(http, id).await {
            tracing::warn!(error = %err, "cannot remove a streamed part of an answer");
        }
    }
}

pub fn outgoing(files: &[GeneratedFile]) -> Vec<OutgoingFile> {
    files
        .iter()
        .map(|g| OutgoingFile {
            file_id: g.file_id.clone(),
            filename: g.filename.clone(),
            size: g.size,
            path: g.path.clone(),
        })
        .collect()
}

/// Stores the message's attachments and says so; the records stored.
async fn store_attachments(
    state: &BotState,
    http: &Http,
    msg: &Message,
    user_id: &str,
) -> Vec<FileRecord> {
    let limit_mb = state.app.settings().store.max_file_size_mb;
    let mut uploads = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for attachment in &msg.attachments {
        if u64::from(attachment.size) > limit_mb * 1024 * 1024 {
            problems.push(format!(
                "`{}` is {} bytes, over the {limit_mb} MB limit: not stored.",
                attachment.filename, attachment.size,
            ));
            continue;
        }
        match attachment.download().await {
            Ok(bytes) => uploads.push(Upload {
                filename: attachment.filename.clone(),
                source: UploadSource::Bytes(bytes),
            }),
            Err(err) => problems.push(format!(
                "`{}` could not be downloaded ({err}).",
                attachment.filename
            )),
        }
    }
    let mut text = String::new();
    let mut stored = Vec::new();
    if !uploads.is_empty() {
        match state.app.store_uploads(user_id, uploads, true).await {
            Ok(report) => {
                stored = report.stored.clone();
                for record in &report.stored {
                    text.push_str(&render::upload_confirmation(record));
                }
                if !report.stored.is_empty() {
                    text.push_str(&format!(
                        "files: {}/{} · use `load_file('<id>')` in code, or just ask.\n",
                        report.file_count,
                        state.app.max_files_per_user()
                    ));
                }
                for old in &report.evicted {
                    problems.push(format!(
                        "Removed your oldest file `{}` (`{}`) to stay within {} files.",
                        old.filename,
                        old.file_id,
                        state.app.max_files_per_user()
                    ));
                }
                for (filename, why) in &report.refused {
                    problems.push(format!("`{filename}` was not stored: {why}."));
                }
            }
            Err(err) => problems.push(match err.storage_trouble() {
                Some(trouble) => format!("Your files were not stored: {}.", trouble.sentence()),
                None => format!("Your files could not be stored ({err})."),
            }),
        }
    }
    for problem in problems {
        text.push_str(&problem);
        text.push('\n');
    }
    for message in reply::plan(&text, &[], 0) {
        say(http, msg.channel_id, &message.content).await;
    }
    stored
}

/// One planned attachment as Discord's; None (logged) when a stored file cannot be read.
pub async fn discord_attachment(attachment: Attachment) -> Option<CreateAttachment> {
    match attachment {
        Attachment::File(file) => match CreateAttachment::path(&file.path).await {
            // The store keeps bytes under the id; the user sees the name.
            Ok(mut a) => {
                a.filename = file.filename;
                Some(a)
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot attach a generated file");
                None
            }
        },
        Attachment::Text { filename, content } => {
            Some(CreateAttachment::bytes(content.into_bytes(), filename))
        }
    }
}

/// The whole answer as posted: the model's text, the code that ran when the member wants
/// it inline, and the model's name.
pub fn answer_text(app: &App, reply: &ChatReply) -> String {
    let mut text = reply.text.clone();
    if reply.show_code && !reply.ran.is_empty() {
        text.push_str("\n\n");
        text.push_str(&render::code_section(&reply.ran));
    }
    if let Some(model) = &reply.model {
        text.truncate(text.trim_end().len());
        text.push('\n');
        text.push_str(&render::reply_footer(model));
    }
    app.redact(&text)
}

/// The Code button of an answer whose turn ran code.
pub fn answer_buttons(reply: &ChatReply) -> Vec<CreateActionRow> {
    let Some(turn_id) = &reply.turn_id else {
        return Vec::new();
    };
    let code = Button::Code {
        turn_id: turn_id.clone(),
    };
    vec![CreateActionRow::Buttons(vec![
        CreateButton::new(code.custom_id())
            .style(ButtonStyle::Secondary)
            .label("Code"),
    ])]
}

/// Posts `plan`, its last message carrying `buttons`. Messages a stream already posted are
/// edited into the plan's first ones (at the edit spacing), and any the plan does not need
/// are deleted, so the channel ends with exactly what an unstreamed answer posts.
pub async fn deliver(
    http: &Http,
    channel: ChannelId,
    plan: Vec<reply::OutgoingMessage>,
    streamed: Streamed,
    buttons: Vec<CreateActionRow>,
) {
    let count = plan.len();
    let mut last = streamed.last_edit;
    for (i, message) in plan.into_iter().enumerate() {
        let components = if i + 1 == count {
            buttons.clone()
        } else {
            Vec::new()
        };
        let mut files = Vec::new();
        for attachment in message.attachments {
            if let Some(file) = discord_attachment(attachment).await {
                files.push(file);
            }
        }
        let sent = match streamed.messages.get(i) {
            Some(id) => {
                if let Some(at) = last {
                    tokio::time::sleep_until(at + EDIT_SPACING).await;
                }
                let mut edit = EditMessage::new()
                    .content(message.content)
                    .components(components)
                    .allowed_mentions(no_mentions());
                for file in files {
                    edit = edit.new_attachment(file);
                }
                let edited = rate_limit::edit_message(http, channel, *id, edit).await;
                last = Some(tokio::time::Instant::now());
                edited
            }
            None => {
                let mut builder = CreateMessage::new()
                    .allowed_mentions(no_mentions())
                    .components(components);
                if !message.content.is_empty() {
                    builder = builder.content(message.content);
                }
                for file in files {
                    builder = builder.add_file(file);
                }
                rate_limit::send_message(http, channel, builder).await
            }
        };
        if let Err(err) = sent {
            tracing::warn!(error = %err, "cannot send a reply");
        }
    }
    let extra = Streamed {
        messages: streamed.messages.into_iter().skip(count).collect(),
        last_edit: None,
    };
    discard(http, channel, extra).await;
}
