//! The chat model behind a small trait; `OpenAiChat` (async-openai) is its real adapter.

use std::future::Future;
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionMessageToolCalls, CreateChatCompletionRequest, CreateChatCompletionResponse,
};
use serde_json::{Value, json};

use super::history::{ChatMessage, ImageRef, ToolCallRecord};
use super::pictures::{Pictures, Shown};
use super::pricing::Usage;
use super::tool;
use super::vision::Detail;

/// One reply of the model: text, tool calls, or both.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelReply {
    pub content: Option<String>,
    pub tool_calls: Vec<ToolCallRecord>,
    pub usage: Usage,
    pub model: String,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ModelError {
    #[error("the model API refused the key (401)")]
    Unauthorized,
    #[error("the model API is rate limiting (429)")]
    RateLimited,
    #[error("the model API failed ({status})")]
    Server { status: u16 },
    #[error("the model API did not answer within {seconds} s")]
    Timeout { seconds: u64 },
    #[error("cannot reach the model API: {reason}")]
    Unreachable { reason: String },
    #[error("the model API answered something unusable: {reason}")]
    BadResponse { reason: String },
    /// The server refused the request itself (400): in its own words, which may name a
    /// content type it does not take (image parts).
    #[error("the model API refused the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// Not sent: a cap or a rule of the bot's stopped it first; `sentence` says which.
    #[error("not sent to the model: {sentence}")]
    NotSent { sentence: String },
}

impl ModelError {
    /// Worth another try: the same request may succeed in a moment.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ModelError::RateLimited
                | ModelError::Server { .. }
                | ModelError::Timeout { .. }
                | ModelError::Unreachable { .. }
        )
    }

    /// What the user is told: short, and without internals.
    pub fn user_message(&self) -> String {
        match self {
            ModelError::Unauthorized => {
                "The model service rejected the bot's credentials; an admin needs to check OPENAI_API_KEY.".into()
            }
            ModelError::RateLimited => {
                "The model service is busy (rate limited). Please try again in a minute.".into()
            }
            ModelError::Server { status } => {
                format!("The model service had an error ({status}). Please try again shortly.")
            }
            ModelError::Timeout { seconds } => {
                format!("The model service did not answer within {seconds} s. Please try again.")
            }
            ModelError::Unreachable { .. } => {
                "The model service cannot be reached right now. Please try again later.".into()
            }
            ModelError::BadResponse { .. } => {
                "The model service sent a reply the bot could not read. Please try again.".into()
            }
            ModelError::Rejected { status, .. } => {
                format!("The model service refused the request ({status}); an admin can check the model settings.")
            }
            ModelError::NotSent { sentence } => sentence.clone(),
        }
    }
}

/// Told the answer's text as it grows.
pub type TextSink<'a> = &'a (dyn Fn(&str) + Send + Sync);

pub trait ChatModel: Send + Sync {
    /// `pictures` says what each picture the messages refer to becomes.
    fn complete(
        &self,
        messages: &[ChatMessage],
        pictures: &Pictures,
    ) -> impl Future<Output = Result<ModelReply, ModelError>> + Send;

    /// The same reply as `complete`; a model that streams tells `on_text` the answer's text
    /// as it is written (not the text of a reply that calls tools).
    fn complete_streaming(
        &self,
        messages: &[ChatMessage],
        pictures: &Pictures,
        on_text: TextSink<'_>,
    ) -> impl Future<Output = Result<ModelReply, ModelError>> + Send {
        let _ = on_text;
        self.complete(messages, pictures)
    }
}

pub struct OpenAiChat {
    client: Client<OpenAIConfig>,
    model: String,
    timeout: Duration,
    /// Answers are asked for as a stream (`stream_options.include_usage` bills them).
    stream: bool,
}

impl OpenAiChat {
    /// `timeout` bounds one request. Retries are the model loop's (`OPENAI_RETRIES`,
    /// `OPENAI_RETRY_DELAY_MS`), so every attempt gets its own timeout and one place
    /// decides what is worth retrying.
    pub fn new(api_base: &str, api_key: &str, model: &str, timeout: Duration) -> OpenAiChat {
        let config = OpenAIConfig::new()
            .with_api_base(api_base)
            .with_api_key(api_key);
        // async-openai's default transport retries on its own; a bare transport leaves
        // retrying to the loop alone.
        let transport = async_openai::middleware::ReqwestService::new(reqwest::Client::new());
        OpenAiChat {
            client: Client::with_config(config).with_http_service(transport),
            model: model.to_string(),
            timeout,
            stream: false,
        }
    }

    pub fn streaming(mut self, stream: bool) -> OpenAiChat {
        self.stream = stream;
        self
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    fn request(
        &self,
        messages: &[ChatMessage],
        pictures: &Pictures,
        stream: bool,
    ) -> Result<CreateChatCompletionRequest, ModelError> {
        let mut json = request_json(&self.model, messages, pictures);
        if stream {
            json["stream"] = json!(true);
            json["stream_options"] = json!({"include_usage": true});
        }
        serde_json::from_value(json).map_err(|e| ModelError::BadResponse {
            reason: format!("request: {e}"),
        })
    }

    async fn stream_reply(
        &self,
        request: CreateChatCompletionRequest,
        on_text: TextSink<'_>,
    ) -> Result<ModelReply, ModelError> {
        use futures_util::StreamExt;
        let mut stream = self
            .client
            .chat()
            .create_stream(request)
            .await
            .map_err(map_error)?;
        let mut assembly = super::stream::StreamAssembly::default();
        while let Some(chunk) = stream.next().await {
            if assembly.push(chunk.map_err(map_error)?) && !assembly.has_tool_calls() {
                on_text(assembly.text());
            }
        }
        Ok(assembly.finish())
    }
}

/// Pure: a user-role message's content: plain text, or text then image parts when any
/// picture is shown (a picture not shown is its sentence, in the text).
fn user_content(content: &str, images: &[ImageRef], pictures: &Pictures) -> Value {
    let mut text = content.to_string();
    let mut parts = Vec::new();
    for image in images {
        match pictures.get(image) {
            Some(Shown::Part { data_url, .. }) => parts.push(json!({
                "type": "image_url",
                "image_url": {"url": data_url, "detail": Detail::High.as_str()},
            })),
            Some(Shown::Note(note)) => {
                text.push('\n');
                text.push_str(note);
            }
            None => text.push_str(&format!(
                "\n[image {} (file id {}) not shown]",
                image.filename, image.file_id
            )),
        }
    }
    if parts.is_empty() {
        return json!(text);
    }
    let mut content = vec![json!({"type": "text", "text": text})];
    content.extend(parts);
    Value::Array(content)
}

/// Pure: our history as the OpenAI chat request, with the one tool.
pub fn request_json(model: &str, messages: &[ChatMessage], pictures: &Pictures) -> Value {
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| match m {
            ChatMessage::System { content } => json!({"role": "system", "content": content}),
            ChatMessage::User { content, images } | ChatMessage::Figures { content, images } => {
                json!({"role": "user", "content": user_content(content, images, pictures)})
            }
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                let mut v = json!({"role": "assistant", "content": content});
                if !tool_calls.is_empty() {
                    v["tool_calls"] = tool_calls
                        .iter()
                        .map(|c| {
                            json!({"id": c.id, "type": "function",
                                   "function": {"name": c.name, "arguments": c.arguments}})
                        })
                        .collect();
                }
                v
            }
            ChatMessage::Tool {
                tool_call_id,
                content,
            } => json!({"role": "tool", "tool_call_id": tool_call_id, "content": content}),
        })
        .collect();
    json!({
        "model": model,
        "messages": messages,
        "tools": [{
            "type": "function",
            "function": {
                "name": tool::TOOL_NAME,
                "description": tool::DESCRIPTION,
                "parameters": tool::parameters_schema(),
            }
        }],
    })
}

fn map_error(err: OpenAIError) -> ModelError {
    match err {
        OpenAIError::ApiError(api) => match api.status_code.as_u16() {
            401 | 403 => ModelError::Unauthorized,
            429 => ModelError::RateLimited,
            status @ (400 | 413 | 415 | 422) => ModelError::Rejected {
                status,
                message: api.api_error.message.chars().take(500).collect(),
            },
            status => ModelError::Server { status },
        },
        OpenAIError::Reqwest(e) => match e.status() {
            Some(status) if status.as_u16() == 429 => ModelError::RateLimited,
            Some(status) if status.as_u16() == 401 => ModelError::Unauthorized,
            Some(status) if status.as_u16() == 400 => ModelError::Rejected {
                status: 400,
                message: e.to_string(),
            },
            Some(status) => ModelError::Server {
                status: status.as_u16(),
            },
            None => ModelError::Unreachable {
                reason: e.to_string(),
            },
        },
        // A stream cut mid-way is a connection that failed: worth another try.
        OpenAIError::StreamError(e) => ModelError::Unreachable {
            reason: e.to_string(),
        },
        OpenAIError::JSONDeserialize(e, _) => ModelError::BadResponse {
            reason: e.to_string(),
        },
        other => ModelError::BadResponse {
            reason: other.to_string(),
        },
    }
}

pub fn reply_from_response(
    response: CreateChatCompletionResponse,
) -> Result<ModelReply, ModelError> {
    let choice = response
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| ModelError::BadResponse {
            reason: "no choices".into(),
        })?;
    let tool_calls = choice
        .message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .filter_map(|call| match call {
            ChatCompletionMessageToolCalls::Function(f) => Some(ToolCallRecord {
                id: f.id,
                name: f.function.name,
                arguments: f.function.arguments,
            }),
            ChatCompletionMessageToolCalls::Custom(_) => None,
        })
        .collect();
    let usage = response
        .usage
        .map(|u| Usage {
            prompt_tokens: u.prompt_tokens as u64,
            cached_tokens: u
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0) as u64,
            completion_tokens: u.completion_tokens as u64,
        })
        .unwrap_or_default();
    Ok(ModelReply {
        content: choice.message.content,
        tool_calls,
        usage,
        model: response.model,
    })
}

impl ChatModel for OpenAiChat {
    async fn complete(
        &self,
        messages: &[ChatMessage],
        pictures: &Pictures,
    ) -> Result<ModelReply, ModelError> {
        let request = self.request(messages, pictures, false)?;
        let response = tokio::time::timeout(self.timeout, self.client.chat().create(request))
            .await
            .map_err(|_| ModelError::Timeout {
                seconds: self.timeout.as_secs(),
            })?
            .map_err(map_error)?;
        reply_from_response(response)
    }

    async fn complete_streaming(
        &self,
        messages: &[ChatMessage],
        pictures: &Pictures,
        on_text: TextSink<'_>,
    ) -> Result<ModelReply, ModelError> {
        if !self.stream {
            return self.complete(messages, pictures).await;
        }
        let request = self.request(messages, pictures, true)?;
        // The whole stream shares one request's time.
        tokio::time::timeout(self.timeout, self.stream_reply(request, on_text))
            .await
            .map_err(|_| ModelError::Timeout {
                seconds: self.timeout.as_secs(),
            })?
    }
}
