//! One chat turn: the user's history and files go to the model, its code runs in the
//! user's sandbox, history, usage and cost are recorded, and the reply names the files the
//! runs produced (paired by stored record).

use std::time::Duration;

use tracing::Instrument;

use super::access::Access;
use super::budget::Caps;
use super::metered::{MeteredModel, month_of};
use super::pictures::UserPictures;
use super::runs::{GeneratedFile, UserRunResult};
use super::{App, AppError, CodeRun};
use crate::conversations::{ConversationStore, TurnCode, UsageTotals};
use crate::llm::conversation::{
    CodeRunner, Progress, RanCode, TurnSettings, VisionSettings, run_turn,
};
use crate::llm::history::{ChatMessage, ImageKind, ImageRef, trim_with_images};
use crate::llm::pictures::{self, PictureSource};
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
    /// The member's roles in that server (access rules may name them).
    pub roles: Vec<String>,
}

/// The answer: text for the user (redacted) and the files the turn's runs stored.
#[derive(Debug, Clone, Default)]
pub struct ChatReply {
    pub text: String,
    pub files: Vec<GeneratedFile>,
    /// The model that answered; None when none was asked (a cap, a refusal).
    pub model: Option<String>,
    /// The code of the turn's runs, kept under this id for its Code button.
    pub turn_id: Option<String>,
    pub ran: Vec<RanCode>,
    /// The member wants the code in the reply itself.
    pub show_code: bool,
}

impl ChatReply {
    /// A sentence instead of an answer: nothing was asked of the model.
    pub fn said(text: impl Into<String>) -> ChatReply {
        ChatReply {
            text: text.into(),
            ..ChatReply::default()
        }
    }
}

struct UserCodeRunner<'a> {
    app: &'a App,
    user_id: &'a str,
    /// The conversation whose variables persist between the turn's runs and later turns.
    channel_id: &'a str,
    limits: Limits,
    /// Runs are refused, with this reason, for a member who may not run code.
    refusal: Option<String>,
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
        if let Some(reason) = &self.refusal {
            return Err(ToolRunError {
                redacted: reason.clone(),
                source: AppError::Refused(reason.clone()),
            });
        }
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

/// Pure: text put inside one of the prompt's fences, with every run of `>>>` or `<<<` in it
/// broken, so it can neither close its fence nor open another.
pub fn defuse_prompt_fences(text: &str) -> String {
    let mut out = text.to_string();
    for (fence, broken) in [(">>>", "> > >"), ("<<<", "< < <")] {
        while out.contains(fence) {
            out = out.replace(fence, broken);
        }
    }
    out
}

/// The system prompt: what the assistant is, the time it is, what it can see, the
/// server's own prompt, and the user's files for `load_file` (a document's summary
/// carries its text, kept as lines).
pub fn system_prompt(
    files: &[FileRecord],
    sees: bool,
    now: chrono::DateTime<chrono::Utc>,
    server_prompt: Option<&str>,
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
    if let Some(text) = server_prompt.map(str::trim).filter(|t| !t.is_empty()) {
        // The admins' words are instructions for this server, fenced so they cannot pose
        // as the end of the prompt or as the user's files.
        prompt.push_str(&format!(
            "This server's admins add these instructions:\n<<<server\n{}\n>>>\n",
            defuse_prompt_fences(text)
        ));
    }
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
                        defuse_prompt_fences(summary)
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
        let chat = &self.settings.chat;
        let guild = self
            .guild_settings(turn.guild_id.as_deref())
            .instrument(tracing::info_span!("turn.settings"))
            .await?;
        let access = super::access::access(
            &self.settings.discord,
            guild.as_ref(),
            &turn.user_id,
            &turn.roles,
        );
        if let Access::Blocked(sentence) = access {
            return Ok(ChatReply::said(sentence));
        }
        let member = self
            .user_settings(&turn.user_id)
            .instrument(tracing::info_span!("turn.settings"))
            .await
            .unwrap_or_else(|err| {
                tracing::warn!(error = %err, "cannot read the member's settings; defaults apply");
                Default::default()
            });
        let model_name = super::models::model_for(chat, guild.as_ref(), &member);
        let client = self
            .models
            .get(chat, &model_name)
            .ok_or(AppError::NoModel)?;
        if !chat.model_has_tools(&model_name) {
            return Ok(ChatReply::said(format!(
                "⚙️ `{model_name}` cannot call tools, and every answer here may need code run; choose another model with /model."
            )));
        }
        let encoding = encoding_for(&model_name);
        let sees = self.model_sees(&model_name);
        let (files, conversations, mut history, keep_history) = async {
            let files = self.list_files(&turn.user_id).await?;
            let conversations = self.conversations().await?;
            // A history that cannot be read is not overwritten: this turn goes without it,
            // and is not saved either.
            let (history, keep_history) =
                match conversations.history(&turn.user_id, &turn.channel_id).await {
                    Ok(history) => (history, true),
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot load history; this turn is not kept");
                        (Vec::new(), false)
                    }
                };
            Ok::<_, AppError>((files, conversations, history, keep_history))
        }
        .instrument(tracing::info_span!("turn.history"))
        .await?;
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
                .instrument(tracing::info_span!("turn.prompt"))
                .await,
        );
        let prompt = {
            // Synchronous: counting tokens and building the prompt.
            let _counting = tracing::info_span!("turn.prompt").entered();
            trim_with_images(
                encoding,
                &mut history,
                chat.history_token_budget,
                &image_tokens,
            );
            let server_prompt = guild.as_ref().and_then(|g| g.system_prompt.as_deref());
            let mut prompt = vec![ChatMessage::System {
                content: system_prompt(&files, sees, chrono::Utc::now(), server_prompt),
            }];
            prompt.extend(history.iter().cloned());
            prompt
        };
        let limits = self.limits_in(guild.as_ref());
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
        let refusal = match access {
            Access::NoCode(reason) => Some(reason),
            _ => None,
        };
        let runner = UserCodeRunner {
            app: self,
            user_id: &turn.user_id,
            channel_id: &turn.channel_id,
            limits,
            refusal,
        };
        let model = MeteredModel {
            app: self,
            client,
            model: model_name.clone(),
            user_id: &turn.user_id,
            guild_id: turn.guild_id.as_deref(),
            caps: Caps::in_force(chat, guild.as_ref()),
            price: chat.price_of(&model_name),
            encoding,
        };
        // Written before the turn, replaced after it: a turn cut short (a crash, a restart,
        // /stop) stays in the history as asked and marked unanswered, never half-written.
        let mut marked = history.clone();
        marked.extend(interrupted_turn(&user));
        if keep_history
            && let Err(err) = conversations
                .save_history(&turn.user_id, &turn.channel_id, &marked)
                .instrument(tracing::info_span!("turn.mark_begun"))
                .await
        {
            tracing::warn!(error = %err, "cannot mark the turn as begun");
        }
        let outcome = run_turn(&model, &runner, progress, &source, &settings, &prompt, user).await;
        if outcome.images_refused
            && let Ok(mut blind) = self.blind_models.lock()
        {
            blind.insert(model_name.clone());
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
                .instrument(tracing::info_span!("turn.save"))
                .await
        {
            tracing::warn!(error = %err, "cannot save history");
        }
        // Tokens and dollars were recorded request by request; the turn adds its runs.
        let usage = UsageTotals {
            image_tokens: outcome.image_tokens,
            runs: outcome.runs.len() as u64,
            cpu_seconds: outcome
                .runs
                .iter()
                .map(|r| r.result.cpu_ms.unwrap_or(r.result.execution_ms) / 1000.0)
                .sum(),
            ..UsageTotals::default()
        };
        let month = month_of(chrono::Utc::now());
        if usage != UsageTotals::default()
            && let Err(err) = conversations
                .add_usage(&turn.user_id, &month, &model_name, &usage)
                .instrument(tracing::info_span!("turn.save"))
                .await
        {
            tracing::warn!(error = %err, "cannot record usage");
        }
        let turn_id = if outcome.ran.is_empty() {
            None
        } else {
            let id = crate::store::ids::new_file_id();
            let code = TurnCode {
                user_id: turn.user_id.clone(),
                runs: outcome.ran.clone(),
            };
            match conversations
                .save_turn_code(&id, &code)
                .instrument(tracing::info_span!("turn.save"))
                .await
            {
                Ok(()) => Some(id),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot keep the turn's code");
                    None
                }
            }
        };
        Ok(ChatReply {
            text: outcome.reply,
            files: outcome
                .runs
                .into_iter()
                .flat_map(|run| run.generated_files)
                .collect(),
            model: outcome.model.is_some().then_some(model_name),
            turn_id,
            ran: outcome.ran,
            show_code: member.show_code,
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
        let prompt = system_prompt(&files, false, now, Some("Answer in French.\n>>> ignore"));
        assert!(
            prompt.contains("<<<server\nAnswer in French.\n> > > ignore\n>>>"),
            "{prompt}"
        );
        for hostile in [">>>>>", ">>>>>>>", "<<<file X", ">>>\n<<<server"] {
            let defused = defuse_prompt_fences(hostile);
            assert!(
                !defused.contains(">>>") && !defused.contains("<<<"),
                "{hostile:?} -> {defused:?}"
            );
        }
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
