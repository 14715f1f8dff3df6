//! `codebox executor`: the application core's runs behind HTTP, for one Docker host. It owns
//! that host's engine, warm pool and package cache; the bot and the CLI on any host are its
//! clients (`EXECUTOR_URLS`). A run's answer is streamed, with a line (or whitespace) at
//! least every HEARTBEAT, so a client that went away is noticed within about a second and
//! its run dropped: the container guard removes the container.

pub mod connections;
pub mod metrics;
pub mod storage_probe;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;

use crate::app::{App, AppError, CodeRun, UserRunResult, watch};
use crate::config::Secret;
use crate::executor_api::{
    HEALTH_PATH, HEARTBEAT, Health, METRICS_PATH, RUNS_PATH, RunLine, RunRequest,
};
use connections::ConnectionLimits;
use metrics::{Metrics, MetricsError};
use storage_probe::StorageProbe;

/// Events held for a client that reads slowly (it drops them, never slows the run).
const CLIENT_BACKLOG: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "refusing to listen on {addr} without EXECUTOR_TOKEN: anyone who can reach it could run code; set a token or listen on a loopback address"
    )]
    NoToken { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    App(#[from] AppError),
}

struct Service {
    app: Arc<App>,
    token: Option<Secret>,
    metrics: Metrics,
    storage: StorageProbe,
}

/// The one check that a listener may be opened without a token: only on loopback.
/// Callers run it before anything starts (no pool warmed for a service that cannot be safe).
pub fn check_listen(addr: SocketAddr, token: Option<&Secret>) -> Result<(), ServiceError> {
    if token.is_none() && !addr.ip().is_loopback() {
        return Err(ServiceError::NoToken { addr });
    }
    Ok(())
}

/// Serves until `shutdown` completes. `app` must be started.
pub async fn serve(
    app: Arc<App>,
    addr: SocketAddr,
    token: Option<Secret>,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    check_listen(addr, token.as_ref())?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServiceError::Listen { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServiceError::Listen { addr, source })?;
    // The port really bound (0 picks one): tests and operators read it from here.
    println!("codebox executor listening on http://{local}");
    tracing::info!(%local, "executor listening");
    let service = Arc::new(Service {
        storage: StorageProbe::start(app.clone()),
        app,
        token,
        metrics: Metrics::new()?,
    });
    // The token is checked before anything else, for every route: nothing of an
    // unauthenticated request's body is read or parsed.
    let router = Router::new()
        .route(RUNS_PATH, post(run))
        .route(HEALTH_PATH, get(health))
        .route(METRICS_PATH, get(metrics))
        .layer(axum::middleware::from_fn_with_state(
            service.clone(),
            require_token,
        ))
        .with_state(service);
    connections::serve(listener, router, limits.within_file_limit(), shutdown).await;
    Ok(())
}

/// Bearer token check, in constant time; no token configured (loopback only) lets all in.
fn authorized(service: &Service, headers: &HeaderMap) -> bool {
    let Some(token) = &service.token else {
        return true;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Digests compared in constant time: neither the token nor its length leaks by timing.
    use sha2::Digest;
    let given = sha2::Sha256::digest(given.as_bytes());
    let expected = sha2::Sha256::digest(token.expose().as_bytes());
    given
        .iter()
        .zip(expected.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

async fn require_token(
    State(service): State<Arc<Service>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !authorized(&service, request.headers()) {
        return refused();
    }
    next.run(request).await
}

fn refused() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(serde_json::json!({"error": "missing or wrong bearer token"})),
    )
        .into_response()
}

async fn health(State(service): State<Arc<Service>>) -> Response {
    let pool = service.app.pool_status();
    let trouble = service.storage.trouble();
    Json(Health {
        ready: true,
        degraded: trouble.is_some(),
        storage: trouble.map(|t| t.sentence().to_string()),
        pool_idle: pool.as_ref().map_or(0, |p| p.idle),
        pool_target: pool.as_ref().map_or(0, |p| p.target),
        in_flight: service.metrics.in_flight(),
    })
    .into_response()
}

async fn metrics(State(service): State<Arc<Service>>) -> Response {
    let cache_bytes = service
        .app
        .package_cache()
        .and_then(|cache| Ok(cache.entries()?))
        .map(|entries| entries.iter().map(|e| e.bytes).sum())
        .unwrap_or(0);
    match service
        .metrics
        .render(service.app.pool_status().as_ref(), cache_bytes)
    {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

async fn run(State(service): State<Arc<Service>>, Json(request): Json<RunRequest>) -> Response {
    let operator = service.app.operator_limits();
    if let Err(err) = operator.check_request(request.timeout_s, request.memory_mb) {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": err.to_string()})),
        )
            .into_response();
    }
    let mut limits = operator.narrowed(request.timeout_s, request.memory_mb);
    if let Some(chars) = request.output_chars {
        limits.max_output_chars = limits
            .max_output_chars
            .max(chars.min(crate::executor_api::OUTPUT_CHARS_CEILING));
    }
    let events = request.events;
    let (watch, subscription) = watch(CLIENT_BACKLOG);
    let in_flight = service.metrics.run_started();
    let work = {
        let service = service.clone();
        async move {
            let outcome = service
                .app
                .run_code(CodeRun {
                    user_id: request.user_id,
                    code: request.code,
                    limits,
                    file_ids: request.file_ids,
                    output_dir: None,
                    session: request.conversation,
                    watch: Some(watch),
                })
                .await;
            match &outcome {
                Ok(run) => service.metrics.run_finished(run),
                Err(_) => service.metrics.run_failed(),
            }
            outcome.map_err(|err| Failure {
                // This host's engine or sandbox, not the request: another host may do better.
                ours: err.is_host_failure(),
                message: service.app.redact(&err.to_string()),
            })
        }
    };
    let answer = Answer {
        work: Some(Box::pin(work)),
        subscription,
        watching: true,
        code_started: false,
        events,
        service,
        _in_flight: in_flight,
    };
    let content_type = if events {
        "application/x-ndjson"
    } else {
        "application/json"
    };
    (
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(answer.into_stream()),
    )
        .into_response()
}

/// Why a run has no result.
struct Failure {
    ours: bool,
    message: String,
}

type Work = Pin<Box<dyn std::future::Future<Output = Result<UserRunResult, Failure>> + Send>>;

/// One run's answer as it is produced. Dropped when the client goes: the run is dropped
/// with it, which removes its container.
struct Answer {
    work: Option<Work>,
    subscription: crate::app::Subscription,
    /// The run's watch is still there (it goes before the run's files are stored).
    watching: bool,
    code_started: bool,
    events: bool,
    service: Arc<Service>,
    _in_flight: metrics::InFlight,
}

impl Drop for Answer {
    fn drop(&mut self) {
        if self.work.is_some() {
            tracing::info!("client went away; its run is cancelled");
            self.service.metrics.run_abandoned();
        }
    }
}

impl Answer {
    fn into_stream(self) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
        futures_util::stream::unfold(self, |mut answer| async move {
            let line = answer.next_line().await?;
            Some((Ok(line), answer))
        })
    }

    /// The next piece of the body; None after the end.
    async fn next_line(&mut self) -> Option<Bytes> {
        let work = self.work.as_mut()?;
        let heartbeat = tokio::time::sleep(HEARTBEAT);
        tokio::pin!(heartbeat);
        loop {
            tokio::select! {
                outcome = work.as_mut() => {
                    self.work = None;
                    return Some(self.last(outcome));
                }
                watched = self.subscription.recv(), if self.watching => {
                    let Some(watched) = watched else {
                        self.watching = false;
                        continue;
                    };
                    let line = RunLine::from_watched(watched);
                    if matches!(line, RunLine::Started) {
                        self.code_started = true;
                    }
                    if self.events {
                        return Some(ndjson(&line));
                    }
                }
                _ = &mut heartbeat => {
                    return Some(if self.events {
                        ndjson(&RunLine::Alive)
                    } else {
                        // Whitespace before a JSON value is still the same JSON value.
                        Bytes::from_static(b"\n")
                    });
                }
            }
        }
    }

    fn last(&self, outcome: Result<UserRunResult, Failure>) -> Bytes {
        match (outcome, self.events) {
            (Ok(run), true) => ndjson(&RunLine::Result {
                result: Box::new(run),
            }),
            (Ok(run), false) => json_bytes(&run),
            (Err(failure), true) => ndjson(&RunLine::Error {
                message: failure.message,
                code_started: self.code_started,
                retry: failure.ours && !self.code_started,
            }),
            (Err(failure), false) => json_bytes(&serde_json::json!({
                "error": failure.message,
                "code_started": self.code_started,
                "retry": failure.ours && !self.code_started,
            })),
        }
    }
}

fn ndjson(line: &RunLine) -> Bytes {
    let mut bytes = serde_json::to_vec(line).unwrap_or_else(|_| b"{\"event\":\"alive\"}".to_vec());
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn json_bytes(value: &impl serde::Serialize) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}
