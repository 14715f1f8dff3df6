//! One user message through the model: the model may call `execute_python_code` up to
//! `max_tool_rounds` times; each call runs in a fresh sandbox for that user and the model
//! sees the structured result. API failures become a short message for the user, and the
//! user's message (with any completed tool exchange) is still kept in the history.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use super::client::{ChatModel, ModelError, ModelReply};
use super::history::{ChatMessage, ImageKind, ImageRef};
use super::pictures::{self, PictureSource, Pictures};
use super::pricing::Usage;
use super::tokens::Encoding;
use super::tool::{self, TOOL_NAME};
use super::tool_result::{self, Budget};
use crate::run_result::UserRunResult;
use crate::sandbox::watch::RunWatch;

/// Runs code for the user the conversation belongs to.
pub trait CodeRunner: Send + Sync {
    /// Why a run did not happen; its text is what the model and the member are told, so it
    /// must carry no secret.
    type Error: std::error::Error + Send + Sync + 'static;

    fn run(
        &self,
        code: String,
        timeout: Duration,
        watch: Option<RunWatch>,
    ) -> impl Future<Output = Result<UserRunResult, Self::Error>> + Send;
}

/// Told about each run as it starts and ends (the Discord status message). A progress that
/// shows the run as it happens returns the watch the run publishes to.
pub trait Progress: Send + Sync {
    fn run_started(&self, round: usize) -> impl Future<Output = Option<RunWatch>> + Send;
    fn run_finished(&self, result: Result<&UserRunResult, &str>)
    -> impl Future<Output = ()> + Send;
    /// A model request (before run `round`) is in flight until the returned guard is
    /// dropped: a slow model (a local one can take minutes) is shown thinking.
    fn model_waiting(&self, _round: usize) -> Option<ModelWait> {
        None
    }
    /// The answer's text so far, from a model that streams (redacted by the caller: raw).
    fn answer_text(&self, _text: &str) {}
}

/// The code of one run of a turn, as the Code button shows it: the code that ran (secrets
/// redacted), how it ended and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RanCode {
    pub code: String,
    /// `ok`, `error`, `timeout`..., or `not run: why`.
    pub status: String,
    pub seconds: Option<f64>,
}

/// Held while a model request is in flight; dropping it ends the "thinking" display.
pub type ModelWait = tokio_util::sync::DropGuard;

#[derive(Debug, Clone)]
pub struct TurnSettings {
    pub max_tool_rounds: usize,
    pub max_timeout: Duration,
    pub encoding: Encoding,
    pub budget: Budget,
    /// Extra attempts for transient API errors (429, 5xx, timeouts).
    pub retries: u32,
    pub retry_delay: Duration,
    pub secrets: Vec<String>,
    pub vision: VisionSettings,
}

/// What the model is shown of pictures.
#[derive(Debug, Clone, Copy)]
pub struct VisionSettings {
    /// The model takes image parts (MODEL_VISION and the model table).
    pub sees: bool,
    /// Image parts in one request, newest first.
    pub max_images: usize,
    /// Pictures of one round's runs shown after its tool results.
    pub max_figures: usize,
}

impl Default for VisionSettings {
    fn default() -> VisionSettings {
        VisionSettings {
            sees: false,
            max_images: 8,
            max_figures: 4,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TurnOutcome {
    /// What to show the user (already redacted).
    pub reply: String,
    /// Messages to append to the history: the user's, then the exchange.
    pub new_messages: Vec<ChatMessage>,
    pub runs: Vec<UserRunResult>,
    pub usage: Usage,
    pub model: Option<String>,
    pub error: Option<ModelError>,
    /// Tokens of the image parts sent, counted from the pictures' measured sizes.
    pub image_tokens: u64,
    /// The model server refused image parts: the turn went on without them.
    pub images_refused: bool,
    /// The code of each run asked for, in order, run or not.
    pub ran: Vec<RanCode>,
}

async fn complete_with_retry<M: ChatModel>(
    model: &M,
    messages: &[ChatMessage],
    pictures: &Pictures,
    settings: &TurnSettings,
    on_text: super::client::TextSink<'_>,
) -> Result<ModelReply, ModelError> {
    let mut attempt = 0;
    loop {
        match model.complete_streaming(messages, pictures, on_text).await {
            Err(err) if err.is_transient() && attempt < settings.retries => {
                let delay = settings.retry_delay * 2u32.saturating_pow(attempt);
                tracing::warn!(error = %err, attempt, "model API error; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// One request: the pictures the messages refer to are resolved and capped; a server that
/// refuses image parts gets the same request once more with each picture as its sentence,
/// and `sees` turns off for the rest of the turn.
async fn request<M: ChatModel, S: PictureSource>(
    model: &M,
    source: &S,
    messages: &[ChatMessage],
    settings: &TurnSettings,
    sees: &mut bool,
    outcome: &mut TurnOutcome,
    on_text: super::client::TextSink<'_>,
) -> Result<ModelReply, ModelError> {
    let resolved = source
        .resolve(&pictures::referenced(messages), *sees)
        .instrument(tracing::info_span!("model.pictures"))
        .await;
    let shown = pictures::within_cap(messages, resolved, settings.vision.max_images);
    let image_tokens: u64 = pictures::tokens_of(&shown).values().sum();
    match complete_with_retry(model, messages, &shown, settings, on_text).await {
        Ok(reply) => {
            outcome.image_tokens += image_tokens;
            Ok(reply)
        }
        Err(ModelError::Rejected { message, .. })
            if image_tokens > 0 && super::vision::refuses_images(&message) =>
        {
            tracing::warn!(reason = %message, "the model server refused image parts; sending text only");
            *sees = false;
            outcome.images_refused = true;
            let notes = pictures::as_notes(&shown, "this model server does not take pictures");
            complete_with_retry(model, messages, &notes, settings, on_text).await
        }
        Err(err) => Err(err),
    }
}

/// The pictures the round's runs wrote, as figures for the model.
fn figures_of(runs: &[UserRunResult]) -> Vec<ImageRef> {
    runs.iter()
        .flat_map(|run| &run.generated_files)
        .filter(|file| crate::filetypes::is_picture(&file.file_type))
        .map(|file| ImageRef {
            file_id: file.file_id.clone(),
            filename: file.filename.clone(),
            kind: ImageKind::Figure,
        })
        .collect()
}

pub async fn run_turn<M: ChatModel, R: CodeRunner, P: Progress, S: PictureSource>(
    model: &M,
    runner: &R,
    progress: &P,
    source: &S,
    settings: &TurnSettings,
    history: &[ChatMessage],
    user: ChatMessage,
) -> TurnOutcome {
    let mut messages = history.to_vec();
    messages.push(user.clone());
    let mut outcome = TurnOutcome {
        reply: String::new(),
        new_messages: vec![user],
        runs: Vec::new(),
        usage: Usage::default(),
        model: None,
        error: None,
        image_tokens: 0,
        images_refused: false,
        ran: Vec::new(),
    };
    let on_text = |text: &str| progress.answer_text(text);
    let mut sees = settings.vision.sees;
    let mut rounds = 0;
    loop {
        let waiting = progress.model_waiting(rounds + 1);
        let reply = request(
            model,
            source,
            &messages,
            settings,
            &mut sees,
            &mut outcome,
            &on_text,
        )
        .await;
        drop(waiting);
        let reply = match reply {
            Ok(reply) => reply,
            Err(err) => {
                outcome.reply = err.user_message();
                outcome.error = Some(err);
                return outcome;
            }
        };
        outcome.usage.add(reply.usage);
        outcome.model = Some(reply.model.clone());
        let out_of_rounds = rounds >= settings.max_tool_rounds;
        if reply.tool_calls.is_empty() || out_of_rounds {
            let mut text = reply.content.unwrap_or_default();
            if out_of_rounds && !reply.tool_calls.is_empty() {
                text.push_str(&format!(
                    "\n\n(Stopped after {} code runs for this message.)",
                    settings.max_tool_rounds
                ));
            }
            let text = tool_result::redact(&text, &settings.secrets);
            outcome.new_messages.push(ChatMessage::Assistant {
                content: Some(text.clone()),
                tool_calls: vec![],
            });
            outcome.reply = text;
            return outcome;
        }
        rounds += 1;
        let assistant = ChatMessage::Assistant {
            content: reply.content.clone(),
            tool_calls: reply.tool_calls.clone(),
        };
        messages.push(assistant.clone());
        outcome.new_messages.push(assistant);
        let runs_before = outcome.runs.len();
        for call in &reply.tool_calls {
            let content = if call.name != TOOL_NAME {
                format!(
                    "{{\"error\": \"unknown tool {}; the only tool is {TOOL_NAME}\"}}",
                    call.name
                )
            } else {
                match tool::parse_arguments(&call.arguments, settings.max_timeout) {
                    Err(err) => format!("{{\"error\": {}}}", serde_json::json!(err.to_string())),
                    Ok(args) => {
                        let watch = progress.run_started(rounds).await;
                        let code = tool_result::redact(&args.code, &settings.secrets);
                        match runner.run(args.code, args.timeout, watch).await {
                            Ok(result) => {
                                progress.run_finished(Ok(&result)).await;
                                outcome.ran.push(RanCode {
                                    code,
                                    status: result.result.status.as_str().to_string(),
                                    seconds: Some(result.result.execution_ms / 1000.0),
                                });
                                let text = tool_result::render(
                                    &result.result,
                                    &result.generated_files,
                                    settings.encoding,
                                    settings.budget,
                                    &settings.secrets,
                                );
                                outcome.runs.push(result);
                                text
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, "a tool call's run did not happen");
                                let reason = err.to_string();
                                progress.run_finished(Err(&reason)).await;
                                outcome.ran.push(RanCode {
                                    code,
                                    status: format!("not run: {reason}"),
                                    seconds: None,
                                });
                                format!(
                                    "{{\"status\": \"not_run\", \"error\": {}}}",
                                    serde_json::json!(reason)
                                )
                            }
                        }
                    }
                }
            };
            let message = ChatMessage::Tool {
                tool_call_id: call.id.clone(),
                content,
            };
            messages.push(message.clone());
            outcome.new_messages.push(message);
        }
        let round_runs = &outcome.runs[runs_before..];
        if sees {
            let label: Vec<&str> = round_runs
                .iter()
                .map(|r| r.result.run_id.as_str())
                .collect();
            if let Some(figures) = pictures::figures_message(
                &label.join(", "),
                figures_of(round_runs),
                settings.vision.max_figures,
            ) {
                messages.push(figures.clone());
                outcome.new_messages.push(figures);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::llm::history::ToolCallRecord;
    use crate::llm::pictures::Shown;
    use crate::sandbox::Outcome;
    use crate::sandbox::{ExecutionResult, Status};

    /// Replays scripted replies and records the prompts it was given.
    struct ScriptedModel {
        replies: Mutex<Vec<Result<ModelReply, ModelError>>>,
        prompts: Mutex<Vec<Vec<ChatMessage>>>,
        pictures: Mutex<Vec<Pictures>>,
    }

    impl ScriptedModel {
        fn new(mut replies: Vec<Result<ModelReply, ModelError>>) -> ScriptedModel {
            replies.reverse();
            ScriptedModel {
                replies: Mutex::new(replies),
                prompts: Mutex::new(Vec::new()),
                pictures: Mutex::new(Vec::new()),
            }
        }
    }

    impl ChatModel for ScriptedModel {
        async fn complete(
            &self,
            messages: &[ChatMessage],
            pictures: &Pictures,
        ) -> Result<ModelReply, ModelError> {
            self.prompts.lock().unwrap().push(messages.to_vec());
            self.pictures.lock().unwrap().push(pictures.clone());
            self.replies
                .lock()
                .unwrap()
                .pop()
                .unwrap_or(Err(ModelError::Server { status: 500 }))
        }
    }

    struct EchoRunner {
        runs: Mutex<Vec<(String, Duration)>>,
    }

    impl CodeRunner for EchoRunner {
        type Error = std::io::Error;

        async fn run(
            &self,
            code: String,
            timeout: Duration,
            _: Option<RunWatch>,
        ) -> Result<UserRunResult, std::io::Error> {
            self.runs.lock().unwrap().push((code.clone(), timeout));
            if code.contains("unrunnable") {
                return Err(std::io::Error::other("the sandbox is unavailable"));
            }
            Ok(UserRunResult {
                result: ExecutionResult::of(
                    Outcome {
                        status: Status::Ok,
                        exit_code: Some(0),
                        stdout: format!("ran: {code}\n"),
                        stderr: String::new(),
                        stdout_truncated: false,
                        stderr_truncated: false,
                        execution_ms: 5.0,
                        cpu_ms: None,
                        error: None,
                    },
                    10.0,
                ),
                generated_files: if code.contains("draw") {
                    vec![crate::run_result::GeneratedFile {
                        file_id: "FIGUREFIGUREFIG1".into(),
                        filename: "figure_1.png".into(),
                        size: 10,
                        file_type: "png".into(),
                        path: "/nowhere".into(),
                        picture: None,
                    }]
                } else {
                    vec![]
                },
            })
        }
    }

    /// Every picture is a part of 255 tokens when the model sees, else a sentence.
    struct Gallery;
    impl PictureSource for Gallery {
        async fn resolve(&self, images: &[ImageRef], sees: bool) -> Pictures {
            images
                .iter()
                .map(|image| {
                    let shown = if sees {
                        Shown::Part {
                            data_url: format!("data:image/png;base64,{}", image.file_id),
                            tokens: 255,
                        }
                    } else {
                        Shown::Note(format!("[no sight of {}]", image.filename))
                    };
                    (image.clone(), shown)
                })
                .collect()
        }
    }

    struct Quiet;
    impl Progress for Quiet {
        async fn run_started(&self, _: usize) -> Option<RunWatch> {
            None
        }
        async fn run_finished(&self, _: Result<&UserRunResult, &str>) {}
    }

    fn call(id: &str, name: &str, arguments: &str) -> ModelReply {
        ModelReply {
            content: None,
            tool_calls: vec![ToolCallRecord {
                id: id.into(),
                name: name.into(),
                arguments: arguments.into(),
            }],
            usage: Usage {
                prompt_tokens: 10,
                cached_tokens: 0,
                completion_tokens: 5,
            },
            model: "gpt-4o-mini".into(),
        }
    }

    fn text(content: &str) -> ModelReply {
        ModelReply {
            content: Some(content.into()),
            tool_calls: vec![],
            usage: Usage {
                prompt_tokens: 20,
                cached_tokens: 5,
                completion_tokens: 7,
            },
            model: "gpt-4o-mini".into(),
        }
    }

    fn settings(max_tool_rounds: usize) -> TurnSettings {
        TurnSettings {
            max_tool_rounds,
            max_timeout: Duration::from_secs(30),
            encoding: Encoding::O200kBase,
            budget: Budget::default(),
            retries: 1,
            retry_delay: Duration::from_millis(1),
            secrets: vec!["sk-supersecret-value".into()],
            vision: VisionSettings {
                sees: true,
                ..VisionSettings::default()
            },
        }
    }

    /// A turn with no history, no progress shown and the test gallery of pictures.
    async fn turn(
        model: &ScriptedModel,
        runner: &EchoRunner,
        settings: &TurnSettings,
        user: ChatMessage,
    ) -> TurnOutcome {
        run_turn(model, runner, &Quiet, &Gallery, settings, &[], user).await
    }

    fn runner() -> EchoRunner {
        EchoRunner {
            runs: Mutex::new(Vec::new()),
        }
    }

    #[tokio::test]
    async fn tool_calls_run_and_their_results_reach_the_model() {
        let model = ScriptedModel::new(vec![
            Ok(call(
                "c1",
                TOOL_NAME,
                r#"{"code":"print(1)","timeout":999}"#,
            )),
            Ok(text("the answer is 1; key sk-supersecret-value")),
        ]);
        let runner = runner();
        let out = turn(&model, &runner, &settings(5), ChatMessage::user("compute")).await;
        assert_eq!(out.reply, "the answer is 1; key [redacted]");
        assert_eq!(
            runner.runs.lock().unwrap()[0],
            ("print(1)".into(), Duration::from_secs(30))
        );
        assert_eq!(out.runs.len(), 1);
        assert_eq!(out.usage.prompt_tokens, 30);
        assert_eq!(out.usage.completion_tokens, 12);
        // user, assistant call, tool result, assistant answer
        assert_eq!(out.new_messages.len(), 4);
        let prompts = model.prompts.lock().unwrap();
        let ChatMessage::Tool { content, .. } = prompts[1].last().unwrap() else {
            panic!("the second prompt ends with the tool result");
        };
        assert!(content.contains("ran: print(1)"));
    }

    #[tokio::test]
    async fn rounds_are_capped() {
        let model = ScriptedModel::new(vec![
            Ok(call("c1", TOOL_NAME, r#"{"code":"a"}"#)),
            Ok(call("c2", TOOL_NAME, r#"{"code":"b"}"#)),
            Ok(call("c3", TOOL_NAME, r#"{"code":"c"}"#)),
        ]);
        let runner = runner();
        let out = turn(&model, &runner, &settings(2), ChatMessage::user("loop")).await;
        assert_eq!(runner.runs.lock().unwrap().len(), 2, "no third run");
        assert!(
            out.reply.contains("Stopped after 2 code runs"),
            "{}",
            out.reply
        );
        assert!(
            matches!(
                out.new_messages.last(),
                Some(ChatMessage::Assistant { tool_calls, .. }) if tool_calls.is_empty()
            ),
            "no dangling tool call is stored"
        );
    }

    #[tokio::test]
    async fn bad_calls_are_answered_not_run() {
        let model = ScriptedModel::new(vec![
            Ok(call("c1", "rm_rf", "{}")),
            Ok(call("c2", TOOL_NAME, "not json")),
            Ok(call("c3", TOOL_NAME, r#"{"code":"unrunnable"}"#)),
            Ok(text("done")),
        ]);
        let runner = runner();
        let out = turn(&model, &runner, &settings(5), ChatMessage::user("x")).await;
        assert_eq!(out.reply, "done");
        let tools: Vec<String> = out
            .new_messages
            .iter()
            .filter_map(|m| match m {
                ChatMessage::Tool { content, .. } => Some(content.clone()),
                _ => None,
            })
            .collect();
        assert!(tools[0].contains("unknown tool rm_rf"));
        assert!(tools[1].contains("not valid JSON"));
        assert!(tools[2].contains("not_run") && tools[2].contains("unavailable"));
        assert_eq!(
            runner.runs.lock().unwrap().len(),
            1,
            "only the valid call reached the runner"
        );
    }

    #[tokio::test]
    async fn api_failure_keeps_the_users_message() {
        let model = ScriptedModel::new(vec![
            Err(ModelError::RateLimited),
            Err(ModelError::RateLimited),
        ]);
        let out = turn(&model, &runner(), &settings(5), ChatMessage::user("hello")).await;
        assert_eq!(out.error, Some(ModelError::RateLimited));
        assert!(out.reply.contains("busy"), "{}", out.reply);
        assert_eq!(out.new_messages, vec![ChatMessage::user("hello")]);
        assert_eq!(model.prompts.lock().unwrap().len(), 2, "one retry");
        let unauthorized = ScriptedModel::new(vec![Err(ModelError::Unauthorized)]);
        let out = turn(
            &unauthorized,
            &runner(),
            &settings(5),
            ChatMessage::user("hi"),
        )
        .await;
        assert!(out.reply.contains("OPENAI_API_KEY"));
        assert_eq!(
            unauthorized.prompts.lock().unwrap().len(),
            1,
            "401 is not retried"
        );
    }

    fn photo() -> ChatMessage {
        ChatMessage::User {
            content: "what does this say?".into(),
            images: vec![ImageRef {
                file_id: "PHOTOPHOTOPHOTO1".into(),
                filename: "photo.png".into(),
                kind: ImageKind::Attached,
            }],
        }
    }

    #[tokio::test]
    async fn the_model_sees_the_attachment_and_then_the_figure_its_code_drew() {
        let model = ScriptedModel::new(vec![
            Ok(call("c1", TOOL_NAME, r#"{"code":"draw()"}"#)),
            Ok(text("the chart shows a line")),
        ]);
        let out = turn(&model, &runner(), &settings(5), photo()).await;
        let prompts = model.prompts.lock().unwrap();
        let pictures = model.pictures.lock().unwrap();
        assert!(matches!(
            pictures[0].values().next(),
            Some(Shown::Part { .. })
        ));
        // user, assistant call, tool result, the figures message
        let ChatMessage::Figures { content, images } = prompts[1].last().unwrap() else {
            panic!("the figures follow the tool result: {:?}", prompts[1]);
        };
        assert!(matches!(
            prompts[1][prompts[1].len() - 2],
            ChatMessage::Tool { .. }
        ));
        assert!(
            content.contains("run r") && content.contains("FIGUREFIGUREFIG1"),
            "{content}"
        );
        assert_eq!(images[0].kind, ImageKind::Figure);
        assert!(matches!(&pictures[1][&images[0]], Shown::Part { .. }));
        assert_eq!(
            out.image_tokens,
            255 + 2 * 255,
            "the photo twice, the figure once"
        );
        assert!(
            out.new_messages
                .iter()
                .any(|m| matches!(m, ChatMessage::Figures { .. }))
        );
    }

    #[tokio::test]
    async fn a_model_that_does_not_see_gets_sentences_and_no_figures() {
        let model = ScriptedModel::new(vec![
            Ok(call("c1", TOOL_NAME, r#"{"code":"draw()"}"#)),
            Ok(text("done")),
        ]);
        let mut blind = settings(5);
        blind.vision.sees = false;
        let out = turn(&model, &runner(), &blind, photo()).await;
        let pictures = model.pictures.lock().unwrap();
        assert!(
            pictures
                .iter()
                .flat_map(|p| p.values())
                .all(|shown| matches!(shown, Shown::Note(_)))
        );
        assert!(
            !out.new_messages
                .iter()
                .any(|m| matches!(m, ChatMessage::Figures { .. }))
        );
        assert_eq!(out.image_tokens, 0);
    }

    #[tokio::test]
    async fn a_server_refusing_pictures_gets_the_request_again_without_them() {
        let model = ScriptedModel::new(vec![
            Err(ModelError::Rejected {
                status: 400,
                message: "image input is not supported".into(),
            }),
            Ok(text("I cannot see it, but code can read it")),
        ]);
        let out = turn(&model, &runner(), &settings(5), photo()).await;
        assert!(out.images_refused);
        assert!(out.error.is_none(), "{:?}", out.error);
        let pictures = model.pictures.lock().unwrap().clone();
        assert_eq!(pictures.len(), 2, "one retry");
        assert!(matches!(
            pictures[0].values().next(),
            Some(Shown::Part { .. })
        ));
        assert!(
            matches!(pictures[1].values().next(), Some(Shown::Note(n)) if n.contains("does not take pictures"))
        );
        assert_eq!(out.image_tokens, 0, "nothing was sent as a picture");
        // A 400 about something else is not retried.
        let other = ScriptedModel::new(vec![Err(ModelError::Rejected {
            status: 400,
            message: "context length exceeded".into(),
        })]);
        let out = turn(&other, &runner(), &settings(5), photo()).await;
        assert!(!out.images_refused && out.error.is_some());
        assert_eq!(other.prompts.lock().unwrap().len(), 1);
    }
}
