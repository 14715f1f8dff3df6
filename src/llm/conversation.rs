//! One user message through the model: the model may call `execute_python_code` up to
//! `max_tool_rounds` times; each call runs in a fresh sandbox for that user and the model
//! sees the structured result. API failures become a short message for the user, and the
//! user's message (with any completed tool exchange) is still kept in the history.

use std::future::Future;
use std::time::Duration;

use super::client::{ChatModel, ModelError, ModelReply};
use super::history::ChatMessage;
use super::pricing::Usage;
use super::tokens::Encoding;
use super::tool::{self, TOOL_NAME};
use super::tool_result::{self, Budget};
use crate::app::runs::UserRunResult;
use crate::sandbox::watch::RunWatch;

/// Runs code for the user the conversation belongs to.
pub trait CodeRunner: Send + Sync {
    fn run(
        &self,
        code: String,
        timeout: Duration,
        watch: Option<RunWatch>,
    ) -> impl Future<Output = Result<UserRunResult, String>> + Send;
}

/// Told about each run as it starts and ends (the Discord status message). A progress that
/// shows the run as it happens returns the watch the run publishes to.
pub trait Progress: Send + Sync {
    fn run_started(&self, round: usize) -> impl Future<Output = Option<RunWatch>> + Send;
    fn run_finished(&self, result: Result<&UserRunResult, &str>)
    -> impl Future<Output = ()> + Send;
}

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
}

async fn complete_with_retry<M: ChatModel>(
    model: &M,
    messages: &[ChatMessage],
    settings: &TurnSettings,
) -> Result<ModelReply, ModelError> {
    let mut attempt = 0;
    loop {
        match model.complete(messages).await {
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

pub async fn run_turn<M: ChatModel, R: CodeRunner, P: Progress>(
    model: &M,
    runner: &R,
    progress: &P,
    settings: &TurnSettings,
    history: &[ChatMessage],
    user_text: &str,
) -> TurnOutcome {
    let mut messages = history.to_vec();
    let user = ChatMessage::User {
        content: user_text.to_string(),
    };
    messages.push(user.clone());
    let mut outcome = TurnOutcome {
        reply: String::new(),
        new_messages: vec![user],
        runs: Vec::new(),
        usage: Usage::default(),
        model: None,
        error: None,
    };
    let mut rounds = 0;
    loop {
        let reply = match complete_with_retry(model, &messages, settings).await {
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
                        match runner.run(args.code, args.timeout, watch).await {
                            Ok(result) => {
                                progress.run_finished(Ok(&result)).await;
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
                            Err(reason) => {
                                progress.run_finished(Err(&reason)).await;
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
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::llm::history::ToolCallRecord;
    use crate::sandbox::{ExecutionResult, Status};

    /// Replays scripted replies and records the prompts it was given.
    struct ScriptedModel {
        replies: Mutex<Vec<Result<ModelReply, ModelError>>>,
        prompts: Mutex<Vec<Vec<ChatMessage>>>,
    }

    impl ScriptedModel {
        fn new(mut replies: Vec<Result<ModelReply, ModelError>>) -> ScriptedModel {
            replies.reverse();
            ScriptedModel {
                replies: Mutex::new(replies),
                prompts: Mutex::new(Vec::new()),
            }
        }
    }

    impl ChatModel for ScriptedModel {
        async fn complete(&self, messages: &[ChatMessage]) -> Result<ModelReply, ModelError> {
            self.prompts.lock().unwrap().push(messages.to_vec());
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
        async fn run(
            &self,
            code: String,
            timeout: Duration,
            _: Option<RunWatch>,
        ) -> Result<UserRunResult, String> {
            self.runs.lock().unwrap().push((code.clone(), timeout));
            if code.contains("unrunnable") {
                return Err("the sandbox is unavailable".into());
            }
            Ok(UserRunResult {
                result: ExecutionResult {
                    status: Status::Ok,
                    exit_code: Some(0),
                    stdout: format!("ran: {code}\n"),
                    stderr: String::new(),
                    stdout_truncated: false,
                    stderr_truncated: false,
                    execution_ms: 5.0,
                    total_ms: 10.0,
                    install_ms: 0.0,
                    packages_installed: Vec::new(),
                    packages_cached: Vec::new(),
                    phases: Default::default(),
                    session: None,
                    error: None,
                    output_files: vec![],
                    flags: vec![],
                    run_id: "r".into(),
                },
                generated_files: vec![],
            })
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
        }
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
        let out = run_turn(&model, &runner, &Quiet, &settings(5), &[], "compute").await;
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
        let out = run_turn(&model, &runner, &Quiet, &settings(2), &[], "loop").await;
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
        let out = run_turn(&model, &runner, &Quiet, &settings(5), &[], "x").await;
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
        let out = run_turn(&model, &runner(), &Quiet, &settings(5), &[], "hello").await;
        assert_eq!(out.error, Some(ModelError::RateLimited));
        assert!(out.reply.contains("busy"), "{}", out.reply);
        assert_eq!(
            out.new_messages,
            vec![ChatMessage::User {
                content: "hello".into()
            }]
        );
        assert_eq!(model.prompts.lock().unwrap().len(), 2, "one retry");
        let unauthorized = ScriptedModel::new(vec![Err(ModelError::Unauthorized)]);
        let out = run_turn(&unauthorized, &runner(), &Quiet, &settings(5), &[], "hi").await;
        assert!(out.reply.contains("OPENAI_API_KEY"));
        assert_eq!(
            unauthorized.prompts.lock().unwrap().len(),
            1,
            "401 is not retried"
        );
    }
}
