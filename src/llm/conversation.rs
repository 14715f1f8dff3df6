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
use crate::user_runs::UserRunResult;

/// Runs code for the user the conversation belongs to.
pub trait CodeRunner: Send + Sync {
    fn run(
        &self,
        code: String,
        timeout: Duration,
    ) -> impl Future<Output = Result<UserRunResult, String>> + Send;
}

/// Told about each run as it starts and ends (the Discord status message).
pub trait Progress: Send + Sync {
    fn run_started(&self, round: usize) -> impl Future<Output = ()> + Send;
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
                        progress.run_started(rounds).await;
                        match runner.run(args.code, args.timeout).await {
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
