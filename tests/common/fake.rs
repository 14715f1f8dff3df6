//! One local fake that speaks Discord (REST, the gateway over plain ws://, the CDN for
//! attachments) and OpenAI chat completions (a scripted queue of responses), recording every
//! request. The real serenity and async-openai clients talk to it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub const BOT_ID: &str = "900000000000000001";
pub const APP_ID: &str = "900000000000000002";
pub const USER_ID: &str = "700000000000000001";
pub const DM_CHANNEL: &str = "800000000000000001";

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub json: Value,
    /// Uploaded files: (filename, bytes).
    pub files: Vec<(String, Vec<u8>)>,
    /// The HTTP status the fake answered with.
    pub status: u16,
    /// When the fake received it.
    pub at: Instant,
    /// The id of the message it created or edited, if any.
    pub message_id: Option<String>,
}

impl Recorded {
    pub fn content(&self) -> String {
        self.json["content"]
            .as_str()
            .or_else(|| self.json["data"]["content"].as_str())
            .unwrap_or("")
            .to_string()
    }
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    openai_queue: VecDeque<(u16, Value, Duration)>,
    openai_requests: Vec<Value>,
    openai_times: Vec<Instant>,
    gateway: Option<mpsc::UnboundedSender<(String, Value)>>,
    cdn: HashMap<String, Vec<u8>>,
    /// Message edits still to answer with 429 Too Many Requests.
    rate_limited_edits: usize,
    /// Answers model requests when the scripted queue is empty.
    model: Option<Model>,
    /// Message creations still to answer with 429 Too Many Requests.
    rate_limited_creates: usize,
    /// Streamed answers: the wait between two chunks, and the characters of text per chunk.
    stream_spacing: Duration,
    stream_piece_chars: usize,
    /// When each streamed answer sent its last chunk.
    stream_ends: Vec<Instant>,
    /// Gateway sessions begun with IDENTIFY, and resumed with RESUME.
    identifies: usize,
    resumes: usize,
    /// The gateway's last sequence number, carried over a resumed session.
    seq: u64,
}

/// Sent down the gateway channel instead of an event: close the connection (resumable).
const CLOSE_GATEWAY: &str = "__close__";

/// A model computed from each request (for traffic too concurrent for a scripted queue).
type Model = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

#[derive(Clone)]
pub struct Fake {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    ids: Arc<AtomicU64>,
}

type Shared = (Arc<Mutex<Inner>>, Arc<AtomicU64>, SocketAddr);

impl Fake {
    pub async fn start() -> Fake {
        Fake::start_on("127.0.0.1:0").await
    }

    /// Listening on `addr`, for a bot that is not on this host's loopback (in a container).
    pub async fn start_on(addr: &str) -> Fake {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Mutex::new(Inner::default()));
        let ids = Arc::new(AtomicU64::new(910_000_000_000_000_000));
        let shared: Shared = (inner.clone(), ids.clone(), addr);
        let app = Router::new()
            .route("/api/v10/gateway", get(gateway_url))
            .route("/api/v10/gateway/bot", get(gateway_url))
            .route("/gateway", get(gateway))
            .route("/cdn/{name}", get(cdn))
            .route("/v1/chat/completions", post(openai))
            .fallback(any(rest))
            .with_state(shared);
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Fake { addr, inner, ids }
    }

    pub fn api_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn openai_base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn script_openai(&self, status: u16, body: Value) {
        self.script_openai_after(Duration::ZERO, status, body);
    }

    /// A scripted answer sent only after `delay` (a slow model server).
    pub fn script_openai_after(&self, delay: Duration, status: u16, body: Value) {
        self.inner
            .lock()
            .unwrap()
            .openai_queue
            .push_back((status, body, delay));
    }

    /// Model requests that find the scripted queue empty are answered by `model`.
    pub fn model(&self, model: impl Fn(&Value) -> Value + Send + Sync + 'static) {
        self.inner.lock().unwrap().model = Some(Arc::new(model));
    }

    /// Streamed answers send their text `piece_chars` at a time, `spacing` apart.
    pub fn stream_slowly(&self, spacing: Duration, piece_chars: usize) {
        let mut inner = self.inner.lock().unwrap();
        inner.stream_spacing = spacing;
        inner.stream_piece_chars = piece_chars;
    }

    /// When each streamed answer was sent whole.
    pub fn stream_ends(&self) -> Vec<Instant> {
        self.inner.lock().unwrap().stream_ends.clone()
    }

    /// When each model request arrived.
    pub fn openai_request_times(&self) -> Vec<Instant> {
        self.inner.lock().unwrap().openai_times.clone()
    }

    pub fn openai_requests(&self) -> Vec<Value> {
        self.inner.lock().unwrap().openai_requests.clone()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// How many requests were recorded so far: a mark for `requests_since`.
    pub fn request_count(&self) -> usize {
        self.inner.lock().unwrap().requests.len()
    }

    /// The requests recorded after `mark` (a long run need not copy them all each time).
    pub fn requests_since(&self, mark: usize) -> Vec<Recorded> {
        let inner = self.inner.lock().unwrap();
        inner.requests.get(mark..).unwrap_or_default().to_vec()
    }

    pub fn add_cdn_file(&self, name: &str, bytes: &[u8]) -> String {
        self.inner
            .lock()
            .unwrap()
            .cdn
            .insert(name.to_string(), bytes.to_vec());
        format!("http://{}/cdn/{name}", self.addr)
    }

    pub fn next_id(&self) -> String {
        self.ids.fetch_add(1, Ordering::SeqCst).to_string()
    }

    /// The next `count` message creations are answered with 429 and a `retry_after`.
    pub fn rate_limit_creates(&self, count: usize) {
        self.inner.lock().unwrap().rate_limited_creates = count;
    }

    /// Closes the gateway connection with a resumable code (4000), as Discord does when
    /// its side fails; the bot is expected to reconnect and RESUME.
    pub fn drop_gateway(&self) {
        let inner = self.inner.lock().unwrap();
        let tx = inner.gateway.as_ref().expect("gateway connected");
        tx.send((CLOSE_GATEWAY.to_string(), Value::Null)).unwrap();
    }

    /// (IDENTIFYs, RESUMEs) the gateway has seen.
    pub fn gateway_sessions(&self) -> (usize, usize) {
        let inner = self.inner.lock().unwrap();
        (inner.identifies, inner.resumes)
    }

    /// The next `count` message edits are answered with 429 (Discord's rate limit).
    pub fn rate_limit_edits(&self, count: usize) {
        self.inner.lock().unwrap().rate_limited_edits = count;
    }

    /// A press of a button (custom id) on message `message_id` by `user` in the DM channel.
    pub fn button_press(&self, user: &str, message_id: &str, custom_id: &str) -> Value {
        let mut message = message_json(&self.ids, DM_CHANNEL, "", &[]);
        message["id"] = json!(message_id);
        json!({
            "id": self.next_id(), "application_id": APP_ID, "type": 3,
            "data": {"custom_id": custom_id, "component_type": 2},
            "channel_id": DM_CHANNEL,
            "channel": {"id": DM_CHANNEL, "type": 1},
            "user": self.user(user), "token": format!("token-{}", self.next_id()),
            "version": 1, "message": message, "locale": "en-US", "app_permissions": "0",
            "entitlements": [], "context": 1, "authorizing_integration_owners": {},
            "attachment_size_limit": 10485760
        })
    }

    /// Waits until the bot has identified and registered its slash commands.
    pub async fn wait_ready(&self) {
        self.wait_for(
            "the bot to register its commands",
            Duration::from_secs(60),
            |r| r.method == "PUT" && r.path.ends_with("/commands"),
        )
        .await;
    }

    pub fn dispatch(&self, event: &str, data: Value) {
        let inner = self.inner.lock().unwrap();
        let tx = inner.gateway.as_ref().expect("gateway connected");
        tx.send((event.to_string(), data)).unwrap();
    }

    /// Waits for a recorded Discord request matching `pred`, returning it.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Recorded) -> bool,
    ) -> Recorded {
        let start = Instant::now();
        loop {
            if let Some(found) = self.requests().into_iter().find(|r| pred(r)) {
                return found;
            }
            if start.elapsed() > timeout {
                let seen: Vec<String> = self
                    .requests()
                    .iter()
                    .map(|r| format!("{} {} {}", r.method, r.path, r.content()))
                    .collect();
                panic!("timed out waiting for {what}; seen:\n{}", seen.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Posted messages (and edits, and interaction answers) whose text contains `needle`.
    pub async fn wait_for_text(&self, needle: &str, timeout: Duration) -> Recorded {
        let needle = needle.to_string();
        self.wait_for(
            &format!("a message containing {needle:?}"),
            timeout,
            move |r| r.content().contains(&needle),
        )
        .await
    }

    pub fn user(&self, id: &str) -> Value {
        json!({"id": id, "username": format!("user{id}"), "discriminator": "0", "avatar": null, "global_name": null, "bot": false})
    }

    /// A DM from the test user, with optional attachments [(filename, url, size)].
    pub fn message(&self, content: &str, attachments: &[(&str, String, usize)]) -> Value {
        let attachments: Vec<Value> = attachments
            .iter()
            .map(|(name, url, size)| {
                json!({"id": self.next_id(), "filename": name, "size": size, "url": url,
                       "proxy_url": url, "content_type": "text/csv"})
            })
            .collect();
        json!({
            "id": self.next_id(), "channel_id": DM_CHANNEL, "author": self.user(USER_ID),
            "content": content, "timestamp": "2026-11-22T12:00:00.000000+00:00",
            "edited_timestamp": null, "tts": false, "mention_everyone": false,
            "mentions": [], "mention_roles": [], "attachments": attachments, "embeds": [],
            "pinned": false, "type": 0
        })
    }

    /// A DM from another user.
    pub fn message_from(&self, user: &str, content: &str) -> Value {
        let mut message = self.message(content, &[]);
        message["author"] = self.user(user);
        message
    }

    /// A message from the test user in a server channel, optionally mentioning the bot.
    pub fn guild_message(
        &self,
        guild: &str,
        channel: &str,
        content: &str,
        mention_bot: bool,
    ) -> Value {
        let mut message = self.message(content, &[]);
        message["guild_id"] = json!(guild);
        message["channel_id"] = json!(channel);
        message["member"] = json!({"roles": [], "joined_at": "2026-01-01T00:00:00.000000+00:00",
                                   "deaf": false, "mute": false, "flags": 0});
        if mention_bot {
            message["mentions"] = json!([{"id": BOT_ID, "username": "codebox", "discriminator": "0", "avatar": null, "bot": true}]);
            message["content"] = json!(format!("<@{BOT_ID}> {content}"));
        }
        message
    }

    /// A message from `user` with `roles` in a server channel.
    pub fn guild_message_as(
        &self,
        user: &str,
        roles: &[&str],
        guild: &str,
        channel: &str,
        content: &str,
    ) -> Value {
        let mut message = self.guild_message(guild, channel, content, false);
        message["author"] = self.user(user);
        message["member"]["roles"] = json!(roles);
        message
    }

    /// A slash command from `user` with `roles` in a server, with the member's permission bits.
    pub fn guild_command_as(
        &self,
        user: &str,
        roles: &[&str],
        guild: &str,
        name: &str,
        options: Value,
        permissions: u64,
    ) -> Value {
        let mut command = self.guild_command(guild, name, options, permissions);
        command["member"]["user"] = self.user(user);
        command["member"]["roles"] = json!(roles);
        command
    }

    /// A user's pick in a select menu (custom id) on message `message_id`, in `guild`.
    pub fn menu_choice(
        &self,
        user: &str,
        guild: Option<&str>,
        message_id: &str,
        custom_id: &str,
        value: &str,
    ) -> Value {
        let mut press = self.button_press(user, message_id, custom_id);
        press["data"] = json!({"custom_id": custom_id, "component_type": 3, "values": [value]});
        if let Some(guild) = guild {
            let user = press["user"].take();
            press.as_object_mut().unwrap().remove("user");
            press["guild_id"] = json!(guild);
            press["member"] = json!({"user": user, "roles": [], "joined_at": "2026-01-01T00:00:00.000000+00:00",
                "deaf": false, "mute": false, "flags": 0, "permissions": "0"});
        }
        press
    }

    /// A slash command from the test user in a server, with the member's permission bits.
    pub fn guild_command(
        &self,
        guild: &str,
        name: &str,
        options: Value,
        permissions: u64,
    ) -> Value {
        let mut command = self.command(name, options);
        let user = command["user"].take();
        command.as_object_mut().unwrap().remove("user");
        command["guild_id"] = json!(guild);
        command["channel_id"] = json!("800000000000000099");
        command["channel"] = json!({"id": "800000000000000099", "type": 0});
        command["context"] = json!(0);
        command["member"] = json!({"user": user, "roles": [], "joined_at": "2026-01-01T00:00:00.000000+00:00",
            "deaf": false, "mute": false, "flags": 0, "permissions": permissions.to_string()});
        command
    }

    /// A slash command from the test user in the DM channel.
    pub fn command(&self, name: &str, options: Value) -> Value {
        json!({
            "id": self.next_id(), "application_id": APP_ID, "type": 2,
            "data": {"id": self.next_id(), "name": name, "type": 1, "options": options},
            "channel_id": DM_CHANNEL,
            "channel": {"id": DM_CHANNEL, "type": 1},
            "user": self.user(USER_ID), "token": format!("token-{}", self.next_id()),
            "version": 1, "locale": "en-US", "app_permissions": "0", "entitlements": [],
            "context": 1, "authorizing_integration_owners": {}, "attachment_size_limit": 10485760
        })
    }
}

/// How the bot's message of a run's pictures begins.
pub const FIGURES_PREFIX: &str = "[Pictures produced by run";

/// The image parts of one request: (message index, data URL).
pub fn image_parts(request: &Value) -> Vec<(usize, String)> {
    let mut parts = Vec::new();
    for (i, message) in request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for part in message["content"].as_array().into_iter().flatten() {
            if part["type"] == "image_url" {
                parts.push((
                    i,
                    part["image_url"]["url"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
    }
    parts
}

/// The text of a message, whether its content is a string or parts.
pub fn message_text(message: &Value) -> String {
    match &message["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

pub fn completion_text(text: &str) -> Value {
    json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop", "logprobs": null}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
    })
}

pub fn completion_tool_call(call_id: &str, arguments: Value) -> Value {
    json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": call_id, "type": "function",
                "function": {"name": "execute_python_code", "arguments": arguments.to_string()}}]},
            "finish_reason": "tool_calls", "logprobs": null}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140}
    })
}

/// A model that does what the user says: `run [[TAG]] CODE` is answered with a tool call
/// running CODE (with a `timeout` when CODE has a line `# timeout=N`), and the tool's result with `answer [[TAG]]: RESULT` (the first 1,500
/// characters), so each reply names the message it answers, however runs interleave.
pub fn code_running_model(request: &Value) -> Value {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let text = message_text;
    // The pictures a run drew come after its tool result, as a user-role message: they
    // are not what the user asked, and the run's result is still the one to answer.
    let messages: Vec<Value> = messages
        .into_iter()
        .filter(|m| !(m["role"] == "user" && text(m).starts_with(FIGURES_PREFIX)))
        .collect();
    let asked = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(text)
        .unwrap_or_default();
    let (tag, code) = match asked
        .split_once("run [[")
        .and_then(|(_, rest)| rest.split_once("]]"))
    {
        Some((tag, code)) => (tag.to_string(), code.trim().to_string()),
        None => return completion_text("answer [[?]]: nothing to run"),
    };
    match messages.last() {
        Some(last) if last["role"] == "tool" => {
            let result: String = text(last).chars().take(1500).collect();
            completion_text(&format!("answer [[{tag}]]: {result}"))
        }
        _ => {
            // A line `# timeout=N` in the code asks for that time limit, as a model may.
            let mut arguments = json!({"code": code});
            if let Some(seconds) = code
                .lines()
                .find_map(|l| l.trim().strip_prefix("# timeout="))
                .and_then(|n| n.trim().parse::<f64>().ok())
            {
                arguments["timeout"] = json!(seconds);
            }
            completion_tool_call(&format!("call_{tag}"), arguments)
        }
    }
}

/// What a computed model answers to make the fake reply with another status.
pub fn with_status(status: u16, body: Value) -> Value {
    json!({"__status": status, "body": body})
}

pub fn api_error(status: u16) -> Value {
    json!({"error": {"message": format!("fake error {status}"), "type": "server_error", "param": null, "code": null}})
}

async fn gateway_url(State((_, _, addr)): State<Shared>) -> Json<Value> {
    Json(json!({"url": format!("ws://{addr}/gateway"), "shards": 1,
        "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}}))
}

async fn cdn(State((inner, _, _)): State<Shared>, Path(name): Path<String>) -> Response {
    match inner.lock().unwrap().cdn.get(&name) {
        Some(bytes) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn openai(State((inner, _, _)): State<Shared>, Json(body): Json<Value>) -> Response {
    let (status, body, delay) = {
        let mut inner = inner.lock().unwrap();
        inner.openai_requests.push(body);
        inner.openai_times.push(Instant::now());
        let model = inner.model.clone();
        match inner.openai_queue.pop_front() {
            Some(scripted) => scripted,
            None => match model {
                Some(model) => {
                    let answer = model(inner.openai_requests.last().unwrap());
                    match answer["__status"].as_u64() {
                        Some(status) => (status as u16, answer["body"].clone(), Duration::ZERO),
                        None => (200, answer, Duration::ZERO),
                    }
                }
                None => (500, api_error(500), Duration::ZERO),
            },
        }
    };
    tokio::time::sleep(delay).await;
    let streamed = inner.lock().unwrap().openai_requests.last().unwrap()["stream"] == true;
    if streamed && status == 200 {
        return stream_of(inner, &body);
    }
    (StatusCode::from_u16(status).unwrap(), Json(body)).into_response()
}

/// A completion as OpenAI streams it: the text in pieces, each tool call's id and name then
/// its arguments in two fragments, the finish, and the usage chunk (`include_usage`).
fn stream_chunks(completion: &Value, piece_chars: usize) -> Vec<Value> {
    let model = completion["model"].clone();
    let chunk = |choices: Value, usage: Value| {
        json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
               "model": model, "choices": choices, "usage": usage})
    };
    let delta = |delta: Value| {
        chunk(
            json!([{"index": 0, "delta": delta, "finish_reason": null}]),
            Value::Null,
        )
    };
    let message = &completion["choices"][0]["message"];
    let mut chunks = vec![delta(json!({"role": "assistant", "content": ""}))];
    let text: Vec<char> = message["content"].as_str().unwrap_or("").chars().collect();
    for piece in text.chunks(piece_chars.max(1)) {
        chunks.push(delta(json!({"content": piece.iter().collect::<String>()})));
    }
    for (index, call) in message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let arguments = call["function"]["arguments"].as_str().unwrap_or("");
        let half = arguments
            .char_indices()
            .nth(arguments.chars().count() / 2)
            .map_or(0, |(i, _)| i);
        chunks.push(delta(
            json!({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
            "function": {"name": call["function"]["name"], "arguments": &arguments[..half]}}]}),
        ));
        chunks.push(delta(json!({"tool_calls": [{"index": index, "function": {"arguments": &arguments[half..]}}]})));
    }
    let finish = completion["choices"][0]["finish_reason"].clone();
    chunks.push(chunk(
        json!([{"index": 0, "delta": {}, "finish_reason": finish}]),
        Value::Null,
    ));
    chunks.push(chunk(json!([]), completion["usage"].clone()));
    chunks
}

fn stream_of(inner: Arc<Mutex<Inner>>, completion: &Value) -> Response {
    let (spacing, piece) = {
        let inner = inner.lock().unwrap();
        let piece = match inner.stream_piece_chars {
            0 => usize::MAX,
            n => n,
        };
        (inner.stream_spacing, piece)
    };
    let mut lines: Vec<String> = stream_chunks(completion, piece)
        .iter()
        .map(|c| format!("data: {c}\n\n"))
        .collect();
    lines.push("data: [DONE]\n\n".to_string());
    let count = lines.len();
    use futures_util::StreamExt;
    let body = futures_util::stream::iter(lines.into_iter().enumerate()).then(move |(i, line)| {
        let inner = inner.clone();
        async move {
            if i > 0 {
                tokio::time::sleep(spacing).await;
            }
            if i + 1 == count {
                inner.lock().unwrap().stream_ends.push(Instant::now());
            }
            Ok::<_, std::convert::Infallible>(Bytes::from(line))
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(axum::body::Body::from_stream(body))
        .unwrap()
}

async fn gateway(ws: WebSocketUpgrade, State(shared): State<Shared>) -> Response {
    ws.on_upgrade(move |socket| gateway_session(socket, shared))
}

async fn send(socket: &mut WebSocket, value: Value) -> bool {
    socket
        .send(WsMessage::Text(value.to_string().into()))
        .await
        .is_ok()
}

async fn gateway_session(mut socket: WebSocket, (inner, _, addr): Shared) {
    if !send(
        &mut socket,
        json!({"op": 10, "d": {"heartbeat_interval": 41250}, "s": null, "t": null}),
    )
    .await
    {
        return;
    }
    // Wait for IDENTIFY, or RESUME of the session a dropped connection had.
    let resumed;
    loop {
        match socket.recv().await {
            Some(Ok(WsMessage::Text(text))) => {
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if v["op"] == 2 {
                    resumed = false;
                    break;
                }
                if v["op"] == 6 && v["d"]["session_id"] == "fake-session" {
                    resumed = true;
                    break;
                }
                if v["op"] == 1 {
                    send(&mut socket, json!({"op": 11})).await;
                }
            }
            Some(Ok(_)) => {}
            _ => return,
        }
    }
    let ready = json!({
        "v": 10, "user": {"id": BOT_ID, "username": "codebox", "discriminator": "0", "avatar": null, "bot": true, "global_name": null},
        "guilds": [], "session_id": "fake-session", "resume_gateway_url": format!("ws://{addr}/gateway"),
        "shard": [0, 1], "application": {"id": APP_ID, "flags": 0}, "private_channels": [], "relationships": []
    });
    let first = if resumed {
        let mut inner = inner.lock().unwrap();
        inner.resumes += 1;
        inner.seq += 1;
        json!({"op": 0, "t": "RESUMED", "s": inner.seq, "d": {}})
    } else {
        let mut inner = inner.lock().unwrap();
        inner.identifies += 1;
        inner.seq = 1;
        json!({"op": 0, "t": "READY", "s": 1, "d": ready})
    };
    if !send(&mut socket, first).await {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    inner.lock().unwrap().gateway = Some(tx);
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Text(text))) => {
                    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if v["op"] == 1 && !send(&mut socket, json!({"op": 11})).await {
                        return;
                    }
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            event = rx.recv() => match event {
                Some((name, _)) if name == CLOSE_GATEWAY => {
                    inner.lock().unwrap().gateway = None;
                    let _ = socket
                        .send(WsMessage::Close(Some(axum::extract::ws::CloseFrame {
                            code: 4000,
                            reason: "fake: unknown error, reconnect".into(),
                        })))
                        .await;
                    return;
                }
                Some((name, data)) => {
                    let seq = {
                        let mut inner = inner.lock().unwrap();
                        inner.seq += 1;
                        inner.seq
                    };
                    if !send(&mut socket, json!({"op": 0, "t": name, "s": seq, "d": data})).await {
                        return;
                    }
                }
                None => return,
            }
        }
    }
}

fn message_json(
    ids: &AtomicU64,
    channel: &str,
    content: &str,
    attachments: &[(String, usize)],
) -> Value {
    let attachments: Vec<Value> = attachments
        .iter()
        .map(|(name, size)| {
            json!({"id": ids.fetch_add(1, Ordering::SeqCst).to_string(), "filename": name, "size": size,
                   "url": "http://invalid/x", "proxy_url": "http://invalid/x"})
        })
        .collect();
    json!({
        "id": ids.fetch_add(1, Ordering::SeqCst).to_string(), "channel_id": channel,
        "author": {"id": BOT_ID, "username": "codebox", "discriminator": "0", "avatar": null, "bot": true},
        "content": content, "timestamp": "2026-11-22T12:00:00.000000+00:00", "edited_timestamp": null,
        "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [],
        "attachments": attachments, "embeds": [], "pinned": false, "type": 0
    })
}

async fn rest(State((inner, ids, _)): State<Shared>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let headers: HeaderMap = request.headers().clone();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut json_body = Value::Null;
    let mut files = Vec::new();
    if content_type.starts_with("multipart/form-data") {
        if let Ok(mut multipart) = Multipart::from_request(request, &()).await {
            while let Ok(Some(field)) = multipart.next_field().await {
                let name = field.name().unwrap_or("").to_string();
                let filename = field.file_name().map(str::to_string);
                let data = field.bytes().await.unwrap_or_default();
                match filename {
                    Some(filename) => files.push((filename, data.to_vec())),
                    None if name == "payload_json" => {
                        json_body = serde_json::from_slice(&data).unwrap_or(Value::Null)
                    }
                    None => {}
                }
            }
        }
    } else {
        let bytes = Bytes::from_request(request, &()).await.unwrap_or_default();
        json_body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    }
    let parts: Vec<&str> = path.trim_start_matches("/api/v10/").split('/').collect();
    let file_meta: Vec<(String, usize)> = files.iter().map(|(n, d)| (n.clone(), d.len())).collect();
    let (response, message_id) = answer(&ids, &method, &parts, &json_body, &file_meta, &inner);
    let recorded = Recorded {
        method: method.to_string(),
        path: path.clone(),
        json: json_body.clone(),
        files: files.clone(),
        status: response.status().as_u16(),
        at: Instant::now(),
        message_id,
    };
    inner.lock().unwrap().requests.push(recorded);
    response
}

/// Discord's 429: wait a second.
fn rate_limited() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [("retry-after", "1")],
        Json(json!({"message": "You are being rate limited.", "retry_after": 1.0, "global": false, "code": 0})),
    )
        .into_response()
}

fn answer(
    ids: &AtomicU64,
    method: &Method,
    parts: &[&str],
    body: &Value,
    file_meta: &[(String, usize)],
    inner: &Mutex<Inner>,
) -> (Response, Option<String>) {
    let content = body["content"].as_str().unwrap_or("").to_string();
    let response = match (method.clone(), parts) {
        (Method::POST, ["channels", channel, "typing"]) => {
            let _ = channel;
            StatusCode::NO_CONTENT.into_response()
        }
        (Method::POST, ["channels", channel, "messages"]) => {
            {
                let mut inner = inner.lock().unwrap();
                if inner.rate_limited_creates > 0 {
                    inner.rate_limited_creates -= 1;
                    return (rate_limited(), None);
                }
            }
            let message = message_json(ids, channel, &content, file_meta);
            let id = message["id"].as_str().map(str::to_string);
            return (Json(message).into_response(), id);
        }
        (Method::PATCH, ["channels", channel, "messages", id]) => {
            {
                let mut inner = inner.lock().unwrap();
                if inner.rate_limited_edits > 0 {
                    inner.rate_limited_edits -= 1;
                    return (rate_limited(), None);
                }
            }
            let mut message = message_json(ids, channel, &content, file_meta);
            message["id"] = json!(id);
            return (Json(message).into_response(), Some(id.to_string()));
        }
        (Method::PUT, ["applications", _, "commands"]) => Json(json!([])).into_response(),
        (Method::POST, ["users", "@me", "channels"]) => {
            let id = ids.fetch_add(1, Ordering::SeqCst).to_string();
            let recipient = body["recipient_id"].as_str().unwrap_or(USER_ID);
            let user = json!({"id": recipient, "username": format!("user{recipient}"),
                              "discriminator": "0", "avatar": null, "global_name": null, "bot": false});
            return (
                Json(json!({"id": id, "type": 1, "last_message_id": null, "recipients": [user]}))
                    .into_response(),
                Some(id),
            );
        }
        (Method::DELETE, ["channels", _, "messages", _]) => StatusCode::NO_CONTENT.into_response(),
        (Method::POST, ["interactions", _, _, "callback"]) => StatusCode::NO_CONTENT.into_response(),
        (Method::PATCH, ["webhooks", _, _, "messages", _]) | (Method::POST, ["webhooks", _, _]) => {
            Json(message_json(ids, DM_CHANNEL, &content, file_meta)).into_response()
        }
        (Method::GET, ["users", "@me"]) => Json(json!({"id": BOT_ID, "username": "codebox", "discriminator": "0", "avatar": null, "bot": true})).into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "Unknown route in fake", "code": 0})),
        )
            .into_response(),
    };
    (response, None)
}
