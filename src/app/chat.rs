//! One chat turn: the user's history and files go to the model, its code runs in the
//! user's sandbox, history, usage and cost are recorded, and the reply names the files the
//! runs produced (paired by stored record).

use std::time::Duration;

use super::pictures::UserPictures;
use super::runs::{GeneratedFile, UserRunResult};
use super::{App, AppError, CodeRun};
use crate::conversations::{ConversationStore, UsageTotals};
use crate::llm::conversation::{CodeRunner, Progress, TurnSettings, VisionSettings, run_turn};
use crate::llm::history::{ChatMessage, ImageKind, ImageRef, trim_with_images};
use crate::llm::pictures::{self, PictureSource};
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
    /// Pictures attached to the message (stored files whose content is a picture).
    pub images: Vec<ImageRef>,
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

/// A tool call's run that did not happen: the app error, and its text with every secret
/// redacted, which is all the model and the member see of it.
#[derive(Debug, thiserror::Error)]
#[error("{redacted}")]
pub struct ToolRunError {
    redacted: String,
    #[source]
    source: AppError,
}

impl CodeRunner for UserCodeRunner<'_> {
    type Error = ToolRunError;

    async fn run(
        &self,
        code: String,
        timeout: Duration,
        watch: Option<RunWatch>,
    ) -> Result<UserRunResult, ToolRunError> {
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
            .map_err(|source| ToolRunError {
                redacted: redact(&source.to_string(), self.app.secrets()),
                source,
            })
    }
}

/// The stored attachments whose content is a picture, for the model to see (by detected
/// type: a `.png` that is text is not one).
pub fn attached_pictures(stored: &[FileRecord]) -> Vec<ImageRef> {
    stored
        .iter()
        .filter(|r| crate::filetypes::is_picture(&r.file_type))
        .map(|r| ImageRef {
            file_id: r.file_id.clone(),
            filename: r.filename.clone(),
            kind: ImageKind::Attached,
        })
        .collect()
}

/// What the history holds while a turn is under way, and keeps if it never ends.
pub const INTERRUPTED_NOTE: &str =
    "(No answer: this turn was cut short, by /stop or a restart of the bot, before it ended.)";

/// Pure: the user's message and the note that it went unanswered.
pub fn interrupted_turn(user: &ChatMessage) -> [ChatMessage; 2] {
    [
        user.clone(),
        ChatMessage::Assistant {
            content: Some(INTERRUPTED_NOTE.to_string()),
            tool_calls: Vec::new(),
        },
    ]
}

/// The system prompt: what the assistant is, the time it is, what it can see, and the
/// user's files for `load_file` (a document's summary carries its text, kept as lines).
pub fn system_prompt(
    files: &[FileRecord],
    sees: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let mut prompt = String::from(
        "You are codebox, a data assistant in Discord. Use the execute_python_code tool to compute answers, and never state a number that no run printed. When a run fails, read its error, fix the code and call the tool again; do not answer from a failed run. Files written to the working directory are sent to the user automatically. Keep answers short.\n",
    );
    // A model knows only its training cut-off; "today", "this month" and ages need this.
    prompt.push_str(&format!(
        "It is now {} UTC.\n",
        now.format("%A %Y-%m-%d %H:%M")
    ));
    prompt.push_str(if sees {
        "You can see pictures: images the user attaches, and the figures and images your code produces (shown to you after the tool result). Look at a figure before you describe it, and fix it if it is wrong.\n"
    } else {
        "You cannot see pictures; read an image with code (load_file(file_id) gives a PIL image).\n"
    });
    if files.is_empty() {
        prompt.push_str("The user has no stored files.\n");
    } else {
        prompt.push_str(
            "The user's files. In code, load_file('ID') gives a natural object (DataFrame, dict, image...); the same file is read-only at /mnt/data/NAME, and 'ID' also works as a path:\n",
        );
        let ids_and_names: Vec<(&str, &str)> = files
            .iter()
            .map(|f| (f.file_id.as_str(), f.filename.as_str()))
            .collect();
        let data_names = crate::store::names::data_names(&ids_and_names);
        for (f, data_name) in files.iter().zip(&data_names) {
            prompt.push_str(&format!(
                "- ID {} at {}/{} ({}, {} bytes)",
                f.file_id,
                crate::store::names::DATA_DIR_IN_RUN,
                data_name,
                f.file_type,
                f.file_size
            ));
            match &f.summary {
                Some(summary) if crate::filetypes::carries_text(&f.file_type) => {
                    prompt.push_str(&format!(
                        ":\n<<<file {}\n{}\n>>>",
                        f.file_id,
                        summary.replace(">>>", "> > >")
                    ));
                }
                Some(summary) => prompt.push_str(&format!(": {}", summary.replace('\n', " | "))),
                None => {}
            }
            prompt.push('\n');
        }
    }
    prompt
}

impl App {
    /// Whether `model` gets pictures: MODEL_VISION, the model table, and what its server
    /// said before (a server that refused image parts is not sent them again).
    pub fn model_sees(&self, model: &str) -> bool {
        let chat = &self.settings.chat;
        let refused = self
            .blind_models
            .lock()
            .map(|blind| blind.contains(model))
            .unwrap_or(false);
        !refused && crate::llm::vision::model_sees(chat.model_vision, &chat.models, model)
    }

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
        let sees = self.model_sees(&chat.openai_model);
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
        let user = ChatMessage::User {
            content: turn.text.clone(),
            images: turn.images.clone(),
        };
        // Pictures count against the budget by their tokens (measured in the sandbox).
        let source = UserPictures::new(self, &turn.user_id);
        let mut everything = history.clone();
        everything.push(user.clone());
        let image_tokens = pictures::tokens_of(
            &source
                .resolve(&pictures::referenced(&everything), sees)
                .await,
        );
        trim_with_images(
            encoding,
            &mut history,
            chat.history_token_budget,
            &image_tokens,
        );
        let mut prompt = vec![ChatMessage::System {
            content: system_prompt(&files, sees, chrono::Utc::now()),
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
            vision: VisionSettings {
                sees,
                max_images: chat.vision_max_images,
                max_figures: chat.vision_max_figures,
            },
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
        marked.extend(interrupted_turn(&user));
        if keep_history
            && let Err(err) = conversations
                .save_history(&turn.user_id, &turn.channel_id, &marked)
                .await
        {
            tracing::warn!(error = %err, "cannot mark the turn as begun");
        }
        let outcome = run_turn(model, &runner, progress, &source, &settings, &prompt, user).await;
        if outcome.images_refused
            && let Ok(mut blind) = self.blind_models.lock()
        {
            blind.insert(chat.openai_model.clone());
        }

        history.extend(outcome.new_messages.iter().cloned());
        trim_with_images(
            encoding,
            &mut history,
            chat.history_token_budget,
            &image_tokens,
        );
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
            image_tokens: outcome.image_tokens,
            cost_usd: cost.unwrap_or(0.0),
            unpriced_requests: u64::from(cost.is_none() && outcome.model.is_some()),
            runs: outcome.runs.len() as u64,
            cpu_seconds: outcome
                .runs
                .iter()
                .map(|r| r.result.cpu_ms.unwrap_or(r.result.execution_ms) / 1000.0)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Origin;

    fn record(id: &str, filename: &str) -> FileRecord {
        FileRecord {
            file_id: id.into(),
            user_id: "u".into(),
            filename: filename.into(),
            file_type: "csv".into(),
            file_size: 26,
            sha256: String::new(),
            origin: Origin::Uploaded,
            created_at: chrono::Utc::now(),
            expires_at: None,
            summary: Some("5 rows x 2 columns".into()),
        }
    }

    #[test]
    fn the_prompt_names_every_way_to_a_file_and_forbids_invented_numbers() {
        let files = [
            record("AAAAAAAAAAAAAAAA", "sales.csv"),
            record("BBBBBBBBBBBBBBBB", "sales.csv"),
            record("CCCCCCCCCCCCCCCC", "notes.csv"),
        ];
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-02T21:05:09Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let prompt = system_prompt(&files, false, now);
        assert!(
            prompt.contains("It is now Wednesday 2026-12-02 21:05 UTC.\n"),
            "{prompt}"
        );
        assert!(
            prompt.contains("never state a number that no run printed"),
            "{prompt}"
        );
        assert!(
            prompt.contains("fix the code and call the tool again"),
            "{prompt}"
        );
        assert!(prompt.contains("load_file('ID')"), "{prompt}");
        for line in [
            "- ID AAAAAAAAAAAAAAAA at /mnt/data/sales-AAAAAAAAAAAAAAAA.csv (csv, 26 bytes)",
            "- ID BBBBBBBBBBBBBBBB at /mnt/data/sales-BBBBBBBBBBBBBBBB.csv (csv, 26 bytes)",
            "- ID CCCCCCCCCCCCCCCC at /mnt/data/notes.csv (csv, 26 bytes)",
        ] {
            assert!(prompt.contains(line), "{line}\n{prompt}");
        }
    }
}
