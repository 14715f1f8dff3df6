//! Runs on executors elsewhere (`EXECUTOR_URLS`): the healthiest one takes each run; a run
//! that fails before its code started goes to the next one; a run whose code started is
//! never run again, whatever happens to the connection.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Url;

use super::runs::UserRunResult;
use crate::config::{ExecutorSettings, Secret};
use crate::executor_api::{HEALTH_PATH, Health, RUNS_PATH, RunLine, RunRequest};
use crate::sandbox::watch::RunWatch;

/// How long a health check may take before that executor counts as down.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest NDJSON line accepted (a result carries stdout and stderr, each capped).
const MAX_LINE: usize = 16 * 1024 * 1024;
/// Silence longer than this (the executor sends a line every second) is a dead executor.
const SILENCE: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest health answer or refusal read from an executor.
const MAX_SMALL_BODY: usize = 64 * 1024;

/// A response body up to `limit` bytes; longer ones are cut there.
async fn small_body(response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    body
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("no executor of {urls} is reachable and healthy")]
    NoneHealthy { urls: String },
    #[error("every executor failed before the code started; last: {last}")]
    AllFailed { last: String },
    /// The code may have run: this is never retried elsewhere.
    #[error("the executor at {url} failed after the code started: {reason}")]
    AfterStart { url: String, reason: String },
    #[error("the executor at {url} refused the run: {reason}")]
    Refused { url: String, reason: String },
    /// The executor's own verdict (a missing file, a full store...): the same anywhere.
    #[error("{message}")]
    Run { message: String },
    #[error("the executor's answer is unreadable: {0}")]
    BadAnswer(String),
}

pub struct RemoteExecutors {
    urls: Vec<Url>,
    token: Option<Secret>,
    http: reqwest::Client,
}

/// How one attempt ended.
enum Attempt {
    Done(Box<UserRunResult>),
    /// Nothing ran: the next executor may take it.
    BeforeStart(String),
    Final(RemoteError),
}

impl RemoteExecutors {
    /// None when no executor URL is configured (runs stay in this process).
    pub fn from_settings(settings: &ExecutorSettings) -> Option<RemoteExecutors> {
        let urls: Vec<Url> = settings
            .urls()
            .into_iter()
            .filter_map(|u| Url::parse(u).ok())
            .collect();
        if urls.is_empty() {
            return None;
        }
        // Never redirected: a 307 would re-send the user's code to wherever it points.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .ok()?;
        Some(RemoteExecutors {
            urls,
            token: settings.executor_token.clone(),
            http,
        })
    }

    fn describe(&self) -> String {
        self.urls
            .iter()
            .map(Url::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Every executor behind the configured URLs: a name that resolves to several
    /// addresses (Swarm's `tasks.<service>`) is one executor per address.
    async fn endpoints(&self) -> Vec<Url> {
        let mut endpoints = Vec::new();
        for url in &self.urls {
            let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
                continue;
            };
            if host.parse::<std::net::IpAddr>().is_ok() || url.scheme() == "https" {
                // An address already, or TLS that must keep its name.
                endpoints.push(url.clone());
                continue;
            }
            match tokio::net::lookup_host((host, port)).await {
                Ok(addresses) => {
                    let mut seen: Vec<SocketAddr> = Vec::new();
                    for address in addresses {
                        if seen.contains(&address) {
                            continue;
                        }
                        seen.push(address);
                        let mut one = url.clone();
                        if one.set_ip_host(address.ip()).is_ok() {
                            endpoints.push(one);
                        }
                    }
                }
                Err(err) => tracing::warn!(%url, error = %err, "cannot resolve an executor"),
            }
        }
        endpoints
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        }
    }

    async fn health(&self, endpoint: &Url) -> Option<Health> {
        let url = endpoint.join(HEALTH_PATH.trim_start_matches('/')).ok()?;
        let response = self
            .authorized(self.http.get(url))
            .timeout(HEALTH_TIMEOUT)
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = tokio::time::timeout(HEALTH_TIMEOUT, small_body(response, MAX_SMALL_BODY))
            .await
            .ok()?;
        let health: Health = serde_json::from_slice(&body).ok()?;
        health.ready.then_some(health)
    }

    /// Healthy executors, the best place for the next run first.
    async fn ranked(&self) -> Vec<Url> {
        let endpoints = self.endpoints().await;
        let checks = endpoints.iter().map(|e| self.health(e));
        let healths = futures_util::future::join_all(checks).await;
        let mut healthy: Vec<(i64, Url)> = endpoints
            .into_iter()
            .zip(healths)
            .filter_map(|(endpoint, health)| health.map(|h| (h.load(), endpoint)))
            .collect();
        healthy.sort_by_key(|(load, _)| *load);
        healthy.into_iter().map(|(_, endpoint)| endpoint).collect()
    }

    /// Runs `request` on the healthiest executor, publishing its live events to `watch`.
    pub async fn run(
        &self,
        mut request: RunRequest,
        watch: Option<&RunWatch>,
    ) -> Result<UserRunResult, RemoteError> {
        request.events = true;
        let ranked = self.ranked().await;
        if ranked.is_empty() {
            return Err(RemoteError::NoneHealthy {
                urls: self.describe(),
            });
        }
        let mut last = String::new();
        for endpoint in ranked {
            match self.attempt(&endpoint, &request, watch).await {
                Attempt::Done(result) => return Ok(*result),
                Attempt::Final(err) => return Err(err),
                Attempt::BeforeStart(reason) => {
                    tracing::warn!(executor = %endpoint, %reason, "run failed before its code started; trying the next executor");
                    last = format!("{endpoint}: {reason}");
                }
            }
        }
        Err(RemoteError::AllFailed { last })
    }

    async fn attempt(
        &self,
        endpoint: &Url,
        request: &RunRequest,
        watch: Option<&RunWatch>,
    ) -> Attempt {
        let url = match endpoint.join(RUNS_PATH.trim_start_matches('/')) {
            Ok(url) => url,
            Err(err) => return Attempt::BeforeStart(err.to_string()),
        };
        let body = match serde_json::to_vec(request) {
            Ok(body) => body,
            Err(err) => return Attempt::Final(RemoteError::BadAnswer(err.to_string())),
        };
        let sent = self
            .authorized(self.http.post(url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send();
        let response = match tokio::time::timeout(SILENCE, sent).await {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => return Attempt::BeforeStart(err.to_string()),
            Err(_) => return Attempt::BeforeStart("no answer from the executor".to_string()),
        };
        let status = response.status();
        if status.is_client_error() {
            let body = tokio::time::timeout(SILENCE, small_body(response, MAX_SMALL_BODY))
                .await
                .unwrap_or_default();
            let reason = String::from_utf8_lossy(&body).into_owned();
            return Attempt::Final(RemoteError::Refused {
                url: endpoint.to_string(),
                reason: format!("{status}: {reason}"),
            });
        }
        if !status.is_success() {
            return Attempt::BeforeStart(format!("HTTP {status}"));
        }
        let mut started = false;
        let mut buffer: Vec<u8> = Vec::new();
        let mut body = response.bytes_stream();
        let failed = |started: bool, reason: String| {
            if started {
                Attempt::Final(RemoteError::AfterStart {
                    url: endpoint.to_string(),
                    reason,
                })
            } else {
                Attempt::BeforeStart(reason)
            }
        };
        loop {
            let chunk = match tokio::time::timeout(SILENCE, body.next()).await {
                Err(_) => return failed(started, "the executor went silent".to_string()),
                Ok(None) => return failed(started, "the answer ended without a result".into()),
                Ok(Some(Err(err))) => {
                    return failed(started, format!("the connection broke ({err})"));
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let line = match serde_json::from_slice::<RunLine>(&line) {
                    Ok(line) => line,
                    Err(err) => {
                        return failed(started, format!("unreadable line: {err}"));
                    }
                };
                if let (Some(watch), Some(event)) = (watch, line.to_event()) {
                    watch.publish(event);
                }
                match line {
                    RunLine::Started => started = true,
                    RunLine::Result { result } => return Attempt::Done(result),
                    RunLine::Error {
                        message,
                        code_started,
                        retry,
                    } => {
                        if retry && !code_started && !started {
                            return Attempt::BeforeStart(message);
                        }
                        return Attempt::Final(RemoteError::Run { message });
                    }
                    _ => {}
                }
            }
            if buffer.len() > MAX_LINE {
                return failed(started, "a line longer than allowed".to_string());
            }
        }
    }
}
