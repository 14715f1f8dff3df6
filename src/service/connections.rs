//! Who may hold a connection to the executor, for how long, and how connections end.
//!
//! Nothing here needs a token: the limits hold before a byte is read, because a client
//! without one can still open sockets. A request head (or the wait for the next one on a
//! kept-alive connection) gets `header_timeout`; one address holds at most `max_per_peer`
//! connections and everyone together `max_total`, so a flood from one address leaves the
//! others served; past a cap the connection gets a 503 and is closed at once. At shutdown,
//! connections that never completed a request head close at once, runs in flight get
//! `shutdown_grace` to finish, and whatever is left then is dropped (its run cancelled, its
//! container removed).

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ExecutorSettings;

/// What a connection may take; from `ExecutorSettings`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub max_total: usize,
    pub max_per_peer: usize,
    pub shutdown_grace: Duration,
}

/// File descriptors kept for everything but client connections: Docker's sockets, the
/// containers' attach streams, the store, logs.
const FDS_FOR_THE_REST: u64 = 512;

const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 42\r\n\r\n\
{\"error\":\"too many connections, try again\"}";

impl ConnectionLimits {
    pub fn from_settings(settings: &ExecutorSettings) -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: Duration::from_secs_f64(settings.executor_header_timeout_s),
            max_total: settings.executor_max_connections,
            max_per_peer: settings.executor_max_connections_per_peer,
            shutdown_grace: Duration::from_secs_f64(settings.executor_shutdown_grace_s),
        }
    }

    /// The total cap this process can really hold: raises the soft file limit to the hard
    /// one, and lowers the cap (with a warning) when even that is too small, so a flood
    /// meets the cap and its 503 instead of `EMFILE` for everyone.
    pub fn within_file_limit(mut self) -> ConnectionLimits {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
            return self;
        };
        let usable = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
            hard
        } else {
            soft
        };
        let room = usable.saturating_sub(FDS_FOR_THE_REST).max(16);
        if (self.max_total as u64) > room {
            tracing::warn!(
                configured = self.max_total,
                file_limit = usable,
                cap = room,
                "EXECUTOR_MAX_CONNECTIONS is above what the file limit allows; lowered"
            );
            self.max_total = room as usize;
        }
        self
    }
}

/// Connections held now, in all and by address.
#[derive(Default)]
struct Held {
    total: usize,
    by_peer: HashMap<IpAddr, usize>,
}

/// One connection's place under the caps, given back when it is dropped.
struct Slot {
    held: Arc<Mutex<Held>>,
    peer: IpAddr,
}

impl Slot {
    fn take(held: &Arc<Mutex<Held>>, peer: IpAddr, limits: &ConnectionLimits) -> Option<Slot> {
        let mut counts = held.lock().unwrap_or_else(|e| e.into_inner());
        let of_peer = counts.by_peer.get(&peer).copied().unwrap_or(0);
        if counts.total >= limits.max_total || of_peer >= limits.max_per_peer {
            return None;
        }
        counts.total += 1;
        counts.by_peer.insert(peer, of_peer + 1);
        Some(Slot {
            held: held.clone(),
            peer,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.held.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                counts.by_peer.remove(&self.peer);
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then ends every connection
/// within the grace.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let held = Arc::new(Mutex::new(Held::default()));
    let tracker = TaskTracker::new();
    let stopping = CancellationToken::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // The timer is what makes hyper enforce the head timeout at all; it also bounds the
    // wait for the next request on a kept-alive connection.
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors (or a connection reset before it was taken): pause
                // instead of spinning; the caps keep this rare.
                tracing::warn!(error = %err, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let peer = peer.ip().to_canonical();
        let Some(slot) = Slot::take(&held, peer, &limits) else {
            refuse(&tcp);
            tracing::debug!(%peer, "connection refused: over the connection cap");
            continue;
        };
        // Answers are streamed in small lines: Nagle's algorithm would hold each one back
        // for the peer's delayed ACK (tens of milliseconds per run).
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
        tracker.spawn(connection(
            tcp,
            slot,
            router.clone(),
            http.clone(),
            stopping.clone(),
            limits.shutdown_grace,
        ));
    }
    drop(listener);
    stopping.cancel();
    tracker.close();
    // Every connection task ends itself within the grace; the margin covers the last
    // bytes of a finished answer.
    if tokio::time::timeout(
        limits.shutdown_grace + Duration::from_secs(1),
        tracker.wait(),
    )
    .await
    .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace; dropping them");
    }
}

/// A one-shot 503 written without waiting: it always fits an empty socket buffer, and a
/// refused connection must not cost a task or a descriptor for longer than this.
fn refuse(tcp: &TcpStream) {
    let _ = tcp.try_write(TOO_MANY);
}

async fn connection(
    tcp: TcpStream,
    _slot: Slot,
    router: Router,
    http: hyper::server::conn::http1::Builder,
    stopping: CancellationToken,
    grace: Duration,
) {
    let started = Arc::new(AtomicBool::new(false));
    let service = {
        let started = started.clone();
        hyper::service::service_fn(move |request| {
            started.store(true, Ordering::Relaxed);
            tower_service::Service::call(&mut router.clone(), request)
        })
    };
    let conn = http.serve_connection(TokioIo::new(tcp), service);
    tokio::pin!(conn);
    let outcome = tokio::select! {
        outcome = conn.as_mut() => outcome,
        () = stopping.cancelled() => {
            conn.as_mut().graceful_shutdown();
            if !started.load(Ordering::Relaxed) {
                // Never a whole request: nothing to finish.
                return;
            }
            match tokio::time::timeout(grace, conn.as_mut()).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    tracing::info!("a run was still answering at the end of the shutdown grace; cancelled");
                    return;
                }
            }
        }
    };
    if let Err(err) = outcome {
        tracing::debug!(error = %err, "connection ended with an error");
    }
}
