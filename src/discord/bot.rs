//! Message handling: attachments become stored files (confirmed in one reply), text goes
//! to the model with the history and the user's files, runs are shown as they go, and the
//! answer comes back within Discord's limits.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serenity::all::{
    ChannelId, Context, CreateAttachment, CreateMessage, EditMessage, EventHandler, GuildId, Http,
    Interaction, Message, Ready, UserId,
};
use serenity::async_trait;
use tokio::sync::Mutex;

use super::commands;
use super::limiter::{Admission, Limiter, Refusal};
use super::progress::{DiscordProgress, StatusSlot};
use super::reply::{self, Attachment, OutgoingFile};
use crate::config::Settings;
use crate::conversations::{AnyConversations, ConversationStore, UsageTotals};
use crate::llm::client::OpenAiChat;
use crate::llm::conversation::{CodeRunner, TurnSettings, run_turn};
use crate::llm::history::{ChatMessage, trim_to_budget};
use crate::llm::pricing;
use crate::llm::tokens::encoding_for;
use crate::llm::tool_result::{Budget, redact};
use crate::render;
use crate::sandbox::docker::DockerEngine;
use crate::sandbox::{Executor, Limits};
use crate::store::{AnyMetadata, FileRecord, FileStore, Origin, StoreError};
use crate::user_runs::{self, UserRun, UserRunResult};

struct RunningTurn {
    abort: tokio::task::AbortHandle,
    status: StatusSlot,
}

pub struct BotState {
    pub settings: Settings,
    pub executor: Arc<Executor<DockerEngine>>,
    pub store: Arc<FileStore<AnyMetadata>>,
    pub conversations: AnyConversations,
    model: OpenAiChat,
    limiter: Limiter,
    running: Mutex<HashMap<String, RunningTurn>>,
    bot_user: OnceLock<UserId>,
    shutting_down: AtomicBool,
    secrets: Vec<String>,
}

impl BotState {
    pub fn new(
        settings: Settings,
        executor: Arc<Executor<DockerEngine>>,
        store: Arc<FileStore<AnyMetadata>>,
        conversations: AnyConversations,
        model: OpenAiChat,
    ) -> BotState {
        let limiter = Limiter::new(
            settings.rate_limit_per_minute,
            settings.max_concurrent_executions,
            settings.max_queued_messages,
        );
        let secrets = settings.secrets();
        BotState {
            settings,
            executor,
            store,
            conversations,
            model,
            limiter,
            running: Mutex::new(HashMap::new()),
            bot_user: OnceLock::new(),
            shutting_down: AtomicBool::new(false),
            secrets,
        }
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Aborts every running turn; their containers are removed by the executor's guards.
    pub async fn cancel_all(&self) {
        let mut running = self.running.lock().await;
        for (_, turn) in running.drain() {
            turn.abort.abort();
        }
    }

    /// Cancels the user's running turn; true when there was one.
    pub async fn cancel_user(&self, http: &Http, user_id: &str) -> bool {
        let turn = self.running.lock().await.remove(user_id);
        let Some(turn) = turn else { return false };
        turn.abort.abort();
        if let Some((channel, message)) = *turn.status.lock().await {
            let _ = channel
                .edit_message(http, message, EditMessage::new().content("🛑 cancelled"))
                .await;
        }
        true
    }

    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// The operator's limits.
    pub fn limits(&self) -> Limits {
        Limits::from_settings(&self.settings)
    }

    /// The limits in a guild: the operator's, lowered by the guild's admins if they chose.
    pub async fn limits_for(&self, guild: Option<GuildId>) -> Limits {
        let operator = self.limits();
        let Some(guild) = guild else { return operator };
        match self.conversations.guild_limits(&guild.to_string()).await {
            Ok(Some(g)) => operator.narrowed(g.timeout_s, g.memory_mb),
            Ok(None) => operator,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read guild limits; using the operator's");
                operator
            }
        }
    }

    fn staging_root(&self) -> std::path::PathBuf {
        self.settings.data_dir.join("staging")
    }

    /// Runs code for a user with their files (used by the model loop and /run).
    pub async fn run_code(
        &self,
        user_id: &str,
        code: String,
        timeout: Duration,
        mut limits: Limits,
    ) -> Result<UserRunResult, String> {
        limits.timeout = timeout.min(limits.timeout);
        user_runs::run_for_user(
            &self.executor,
            &self.store,
            &self.staging_root(),
            UserRun {
                user_id,
                code,
                limits,
                file_ids: None,
                output_dir: None,
            },
        )
        .await
        .map_err(|e| redact(&e.to_string(), &self.secrets))
    }

    fn should_answer(&self, msg: &Message) -> bool {
        if msg.guild_id.is_none() {
            return true;
        }
        if let Some(me) = self.bot_user.get()
            && msg.mentions.iter().any(|u| u.id == *me)
        {
            return true;
        }
        let channels = self.settings.bot_channel_ids();
        channels.is_empty() || channels.contains(&msg.channel_id.get())
    }
}

pub struct Handler(pub Arc<BotState>);

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        let _ = self.0.bot_user.set(ready.user.id);
        tracing::info!(user = %ready.user.name, "connected to Discord");
        if let Err(err) = commands::register(&ctx.http).await {
            tracing::warn!(error = %err, "cannot register slash commands");
        }
    }

    async fn message(&self, ctx: Context, msg: Message) {
        let state = self.0.clone();
        if msg.author.bot
            || state.shutting_down.load(Ordering::SeqCst)
            || !state.should_answer(&msg)
        {
            return;
        }
        tokio::spawn(async move { handle_message(state, ctx, msg).await });
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        if let Interaction::Command(command) = interaction {
            let state = self.0.clone();
            tokio::spawn(async move { commands::handle(state, ctx, command).await });
        }
    }
}

async fn say(http: &Http, channel: ChannelId, text: &str) {
    if let Err(err) = channel
        .send_message(http, CreateMessage::new().content(text))
        .await
    {
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

async fn handle_message(state: Arc<BotState>, ctx: Context, msg: Message) {
    let user_id = msg.author.id.to_string();
    if !msg.attachments.is_empty() {
        store_attachments(&state, &ctx.http, &msg, &user_id).await;
    }
    let text = strip_mentions(&msg.content, state.bot_user.get().copied());
    if text.is_empty() {
        return;
    }
    let ticket = match state.limiter.admit(&user_id, Instant::now()) {
        Ok(Admission::Now(ticket)) => ticket,
        Ok(Admission::Queued { position, ticket }) => {
            say(
                &ctx.http,
                msg.channel_id,
                &format!("⏳ The bot is busy; you are in position {position}. Your message will be answered in turn."),
            )
            .await;
            state.limiter.wait_turn(ticket).await
        }
        Err(Refusal::RateLimited { retry_after }) => {
            say(
                &ctx.http,
                msg.channel_id,
                &format!(
                    "🐢 You are sending messages too fast (limit {} per minute). Try again in {} s.",
                    state.settings.rate_limit_per_minute,
                    retry_after.as_secs().max(1)
                ),
            )
            .await;
            return;
        }
        Err(Refusal::AlreadyRunning) => {
            say(
                &ctx.http,
                msg.channel_id,
                "⏳ Your previous message is still being worked on; use /stop to cancel it.",
            )
            .await;
            return;
        }
        Err(Refusal::QueueFull) => {
            say(
                &ctx.http,
                msg.channel_id,
                "🚧 The bot is too busy right now; please try again in a minute.",
            )
            .await;
            return;
        }
    };
    let status: StatusSlot = Arc::new(Mutex::new(None));
    let turn = {
        let state = state.clone();
        let ctx = ctx.clone();
        let status = status.clone();
        let user_id = user_id.clone();
        tokio::spawn(async move {
            let reply = answer(&state, &ctx, &msg, &user_id, &text, status).await;
            // Free the user before the answer is visible, so a quick follow-up is not
            // refused as "still being worked on".
            drop(ticket);
            reply.deliver(&ctx.http, msg.channel_id).await;
        })
    };
    state.running.lock().await.insert(
        user_id.clone(),
        RunningTurn {
            abort: turn.abort_handle(),
            status,
        },
    );
    let _ = turn.await;
    let mut running = state.running.lock().await;
    if running.get(&user_id).is_some_and(|t| t.abort.is_finished()) {
        running.remove(&user_id);
    }
}

async fn store_attachments(state: &BotState, http: &Http, msg: &Message, user_id: &str) {
    let limit = state.store.limits().max_file_bytes;
    let mut stored: Vec<FileRecord> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for attachment in &msg.attachments {
        if u64::from(attachment.size) > limit {
            problems.push(format!(
                "`{}` is {} bytes, over the {} MB limit: not stored.",
                attachment.filename,
                attachment.size,
                limit / (1024 * 1024)
            ));
            continue;
        }
        let bytes = match attachment.download().await {
            Ok(bytes) => bytes,
            Err(err) => {
                problems.push(format!(
                    "`{}` could not be downloaded ({err}).",
                    attachment.filename
                ));
                continue;
            }
        };
        let temp = match tempfile::NamedTempFile::new_in(&state.settings.data_dir)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes).map(|_| f))
        {
            Ok(file) => file,
            Err(err) => {
                problems.push(format!(
                    "`{}` could not be saved ({err}).",
                    attachment.filename
                ));
                continue;
            }
        };
        match state
            .store
            .add(user_id, &attachment.filename, temp.path(), Origin::Uploaded)
            .await
        {
            Ok(added) => {
                for old in added.evicted {
                    problems.push(format!(
                        "Removed your oldest file `{}` (`{}`) to stay within {} files.",
                        old.filename, old.file_id, state.settings.max_files_per_user
                    ));
                }
                stored.push(added.record);
            }
            Err(StoreError::FileTooLarge {
                filename,
                size,
                limit,
            }) => problems.push(format!(
                "`{filename}` is {size} bytes, over the {limit}-byte limit: not stored."
            )),
            Err(err) => problems.push(format!(
                "`{}` could not be stored ({err}).",
                attachment.filename
            )),
        }
    }
    if !stored.is_empty() {
        match user_runs::summarize(
            &state.executor,
            &state.store,
            &state.staging_root(),
            &stored,
            state.limits(),
        )
        .await
        {
            Ok(summaries) => {
                for record in &mut stored {
                    record.summary = summaries.get(&record.file_id).cloned();
                }
            }
            Err(err) => tracing::warn!(error = %err, "summaries failed"),
        }
    }
    let count = state
        .store
        .list(user_id)
        .await
        .map(|l| l.len())
        .unwrap_or(0);
    let mut text = String::new();
    for record in &stored {
        text.push_str(&render::upload_confirmation(record));
    }
    if !stored.is_empty() {
        text.push_str(&format!(
            "files: {count}/{} · use `load_file('<id>')` in code, or just ask.\n",
            state.settings.max_files_per_user
        ));
    }
    for problem in problems {
        text.push_str(&problem);
        text.push('\n');
    }
    for message in reply::plan(&text, &[], 0) {
        say(http, msg.channel_id, &message.content).await;
    }
}

struct UserCodeRunner<'a> {
    state: &'a BotState,
    user_id: &'a str,
    limits: Limits,
}

impl CodeRunner for UserCodeRunner<'_> {
    async fn run(&self, code: String, timeout: Duration) -> Result<UserRunResult, String> {
        self.state
            .run_code(self.user_id, code, timeout, self.limits.clone())
            .await
    }
}

fn system_prompt(files: &[FileRecord]) -> String {
    let mut prompt = String::from(
        "You are codebox, a data assistant in Discord. Use the execute_python_code tool to compute answers; never guess numbers you can compute. Files written to the working directory are sent to the user. Keep answers short.\n",
    );
    if files.is_empty() {
        prompt.push_str("The user has no stored files.\n");
    } else {
        prompt.push_str("The user's files (load with load_file(file_id)):\n");
        for f in files {
            prompt.push_str(&format!(
                "- {} `{}` ({}, {} bytes)",
                f.file_id, f.filename, f.file_type, f.file_size
            ));
            if let Some(summary) = &f.summary {
                prompt.push_str(&format!(": {}", summary.replace('\n', " | ")));
            }
            prompt.push('\n');
        }
    }
    prompt
}

/// A finished turn's reply, sent after the user's turn is released.
struct Reply {
    plan: Vec<reply::OutgoingMessage>,
    /// Output directories of the turn's runs, deleted once their files are sent.
    output_dirs: Vec<std::path::PathBuf>,
}

impl Reply {
    async fn deliver(self, http: &Http, channel: ChannelId) {
        send_plan(http, channel, self.plan).await;
        for dir in self.output_dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

async fn answer(
    state: &BotState,
    ctx: &Context,
    msg: &Message,
    user_id: &str,
    text: &str,
    status: StatusSlot,
) -> Reply {
    let _typing = msg.channel_id.start_typing(&ctx.http);
    let channel_key = msg.channel_id.to_string();
    let encoding = encoding_for(&state.settings.openai_model);
    let files = state.store.list(user_id).await.unwrap_or_default();
    let mut history = match state.conversations.history(user_id, &channel_key).await {
        Ok(history) => history,
        Err(err) => {
            tracing::warn!(error = %err, "cannot load history");
            Vec::new()
        }
    };
    trim_to_budget(encoding, &mut history, state.settings.history_token_budget);
    let mut prompt = vec![ChatMessage::System {
        content: system_prompt(&files),
    }];
    prompt.extend(history.iter().cloned());
    let limits = state.limits_for(msg.guild_id).await;
    let settings = TurnSettings {
        max_tool_rounds: state.settings.max_tool_rounds,
        max_timeout: limits.timeout,
        encoding,
        budget: Budget::default(),
        // async-openai already retries each request (OPENAI_RETRIES); the loop does not.
        retries: 0,
        retry_delay: Duration::from_millis(state.settings.openai_retry_delay_ms),
        secrets: state.secrets.clone(),
    };
    let progress = DiscordProgress {
        http: ctx.http.clone(),
        channel: msg.channel_id,
        slot: status,
    };
    let runner = UserCodeRunner {
        state,
        user_id,
        limits,
    };
    let outcome = run_turn(&state.model, &runner, &progress, &settings, &prompt, text).await;

    history.extend(outcome.new_messages.iter().cloned());
    trim_to_budget(encoding, &mut history, state.settings.history_token_budget);
    if let Err(err) = state
        .conversations
        .save_history(user_id, &channel_key, &history)
        .await
    {
        tracing::warn!(error = %err, "cannot save history");
    }
    let model = outcome
        .model
        .clone()
        .unwrap_or_else(|| state.settings.openai_model.clone());
    let cost = pricing::cost(&state.settings.pricing, &model, outcome.usage);
    let usage = UsageTotals {
        requests: 1,
        prompt_tokens: outcome.usage.prompt_tokens,
        cached_tokens: outcome.usage.cached_tokens,
        completion_tokens: outcome.usage.completion_tokens,
        cost_usd: cost.unwrap_or(0.0),
        unpriced_requests: u64::from(cost.is_none() && outcome.model.is_some()),
        runs: outcome.runs.len() as u64,
        cpu_seconds: outcome
            .runs
            .iter()
            .map(|r| r.result.execution_ms / 1000.0)
            .sum(),
    };
    if let Err(err) = state
        .conversations
        .add_usage(
            user_id,
            &chrono::Utc::now().format("%Y-%m").to_string(),
            &usage,
        )
        .await
    {
        tracing::warn!(error = %err, "cannot record usage");
    }

    let files: Vec<OutgoingFile> = outcome
        .runs
        .iter()
        .flat_map(|run| {
            run.generated_files.iter().filter_map(|g| {
                let output = run
                    .result
                    .output_files
                    .iter()
                    .find(|o| o.name.replace('/', "_") == g.filename)?;
                Some(OutgoingFile {
                    file_id: g.file_id.clone(),
                    filename: g.filename.clone(),
                    size: g.size,
                    path: output.path.clone(),
                })
            })
        })
        .collect();
    let upload_limit = state.settings.discord_upload_limit_mb * 1024 * 1024;
    Reply {
        plan: reply::plan(&outcome.reply, &files, upload_limit),
        output_dirs: outcome
            .runs
            .iter()
            .filter_map(|run| {
                let first = run.result.output_files.first()?;
                output_root(&first.path, &first.name)
            })
            .collect(),
    }
}

/// The run's output directory, from one file's path and its relative name.
fn output_root(path: &Path, name: &str) -> Option<std::path::PathBuf> {
    let depth = Path::new(name).components().count();
    let mut root = path.to_path_buf();
    for _ in 0..depth {
        root = root.parent()?.to_path_buf();
    }
    Some(root)
}

pub async fn send_plan(http: &Http, channel: ChannelId, plan: Vec<reply::OutgoingMessage>) {
    for message in plan {
        let mut builder = CreateMessage::new();
        if !message.content.is_empty() {
            builder = builder.content(message.content);
        }
        for attachment in message.attachments {
            let file = match attachment {
                Attachment::File(file) => match CreateAttachment::path(&file.path).await {
                    Ok(a) => a,
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot attach a generated file");
                        continue;
                    }
                },
                Attachment::Text { filename, content } => {
                    CreateAttachment::bytes(content.into_bytes(), filename)
                }
            };
            builder = builder.add_file(file);
        }
        if let Err(err) = channel.send_message(http, builder).await {
            tracing::warn!(error = %err, "cannot send a reply");
        }
    }
}
