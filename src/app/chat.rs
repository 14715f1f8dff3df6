//! One chat turn: the user's history and files go to the model, its code runs in the
//! user's sandbox, history, usage and cost are recorded, and the reply names the files the
//! runs produced (paired by stored record).

use std::time::Duration;

use super::runs::{GeneratedFile, UserRunResult};
use super::{App, AppError, CodeRun};
use crate::conversations::{ConversationStore, UsageTotals};
use crate::llm::conversation::{CodeRunner, Progress, TurnSettings, run_turn};
use crate::llm::history::{ChatMessage, trim_to_budget};
use crate::llm::pricing;
use crate::llm::tokens::encoding_for;
use crate::llm::tool_result::{Budget, redact};
use crate::sandbox::Limits;
use crate::sandbox::watch::RunWatch;
use crate::store::FileRecord;

/// A user's message to answer.
#[derive(Debug, Clone)]
pub struct ChatTurn {
    pub user_id: String,
    /// The conversation: history is kept per user and channel.
    pub channel_id: String,
    /// The server it came from, whose admins may have lowered the limits.
    pub guild_id: Option<String>,
    pub text: String,
}

/// The answer: text for the user (redacted) and the files the turn's runs stored.
#[derive(Debug, Clone)]
pub struct ChatReply {
    pub text: String,
    pub files: Vec<GeneratedFile>,
}

struct UserCodeRunner<'a> {
    app: &'a App,
    user_id: &'a str,
    /// The conversation whose variables persist between the turn's runs and later turns.
    channel_id: &'a str,
    limits: Limits,
}

impl CodeRunner for UserCodeRunner<'_> {
    async fn run(
        &self,
        code: String,
        timeout: Duration,
        watch: Option<RunWatch>,
    ) -> Result<UserRunResult, String> {
        let mut limits = self.limits.clone();
        limits.timeout = timeout.min(limits.timeout);
        self.app
            .run_code(CodeRun {
                user_id: self.user_id.to_string(),
                code,
                limits,
                file_ids: None,
                output_dir: None,
                session: Some(self.channel_id.to_string()),
                watch,
            })
            .await
            .map_err(|e| redact(&e.to_string(), self.app.secrets()))
    }
}

/// What the history holds while a turn is under way, and keeps if it never ends.
pub const INTERRUPTED_NOTE: &str =
    "(No answer: this turn was cut short, by /stop or a restart of the bot, before it ended.)";

/// Pure: the user's message and the note that it went unanswered.
pub fn interrupted_turn(text: &str) -> [ChatMessage; 2] {
    [
        ChatMessage::User {
            content: text.to_string(),
        },
        ChatMessage::Assistant {
            content: Some(INTERRUPTED_NOTE.to_string()),
            tool_calls: Vec::new(),
        },
    ]
}

/// The system prompt: what the assistant is, and the user's files for `load_file`.
pub fn system_prompt(files: &[FileRecord]) -> String {
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

impl App {
    /// Answers one message. Model failures become a short sentence in the reply (the
    /// user's message stays in the history); only a missing model or store is an error.
    pub async fn chat_turn(
        &self,
        turn: ChatTurn,
        progress: &impl Progress,
    ) -> Result<ChatReply, AppError> {
        let model = self.model.as_ref().ok_or(AppError::NoModel)?;
        let chat = &self.settings.chat;
        let encoding = encoding_for(&chat.openai_model);
        let files = self.list_files(&turn.user_id).await?;
        let conversations = self.conversations().await?;
        // A history that cannot be read is not overwritten: this turn goes without it, and
        // is not saved either.
        let (mut history, keep_history) =
            match conversations.history(&turn.user_id, &turn.channel_id).await {
                Ok(history) => (history, true),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot load history; this turn is not kept");
                    (Vec::new(), false)
                }
            };
        trim_to_budget(encoding, &mut history, chat.history_token_budget);
        let mut prompt = vec![ChatMessage::System {
            content: system_prompt(&files),
        }];
        prompt.extend(history.iter().cloned());
        let limits = self.limits_for(turn.guild_id.as_deref()).await;
        let settings = TurnSettings {
            max_tool_rounds: chat.max_tool_rounds,
            max_timeout: limits.timeout,
            encoding,
            budget: Budget::default(),
            retries: chat.openai_retries,
            retry_delay: Duration::from_millis(chat.openai_retry_delay_ms),
            secrets: self.secrets.clone(),
        };
        let runner = UserCodeRunner {
            app: self,
            user_id: &turn.user_id,
            channel_id: &turn.channel_id,
            limits,
        };
        // Written before the turn, replaced after it: a turn cut short (a crash, a restart,
        // /stop) stays in the history as asked and marked unanswered, never half-written.
        let mut marked = history.clone();
        marked.extend(interrupted_turn(&turn.text));
        if keep_history
            && let Err(err) = conversations
                .save_history(&turn.user_id, &turn.channel_id, &marked)
                .await
        {
            tracing::warn!(error = %err, "cannot mark the turn as begun");
        }
        let outcome = run_turn(model, &runner, progress, &settings, &prompt, &turn.text).await;

        history.extend(outcome.new_messages.iter().cloned());
        trim_to_budget(encoding, &mut history, chat.history_token_budget);
        if keep_history
            && let Err(err) = conversations
                .save_history(&turn.user_id, &turn.channel_id, &history)
                .await
        {
            tracing::warn!(error = %err, "cannot save history");
        }
        let model_name = outcome
            .model
            .clone()
            .unwrap_or_else(|| chat.openai_model.clone());
        let cost = pricing::cost(&chat.pricing, &model_name, outcome.usage);
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
        let month = chrono::Utc::now().format("%Y-%m").to_string();
        if let Err(err) = conversations.add_usage(&turn.user_id, &month, &usage).await {
            tracing::warn!(error = %err, "cannot record usage");
        }
        Ok(ChatReply {
            text: outcome.reply,
            files: outcome
                .runs
                .into_iter()
                .flat_map(|run| run.generated_files)
                .collect(),
        })
    }
}
