//! The installer's only way out: an HTTP proxy codebox serves on a Unix socket in the
//! installer's staging directory, for the time of one installation. The container has no
//! network; a forwarder in it (install_packages.py) carries pip's proxy connections from
//! its loopback to this socket. Each connection may go only to an upstream of `Upstreams`;
//! anything else gets `403 Forbidden` and never leaves the host.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::task::JoinSet;

use super::PackagesError;
use super::egress_rules::{
    Asked, MAX_HEAD_BYTES, Upstream, Upstreams, destination, one_shot_head,
    resolved_address_allowed,
};

/// pip sends its request head at once; a client that trickles it is cut off.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// pip opens a handful of connections; more at once is not pip.
const MAX_CONNECTIONS: usize = 32;

/// Serves until dropped; dropping it closes every connection and removes the socket.
pub struct EgressProxy {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl EgressProxy {
    /// Listens on `path` (connectable by the installer's uid) for connections to `allowed`.
    pub fn start(path: &Path, allowed: Upstreams) -> Result<EgressProxy, PackagesError> {
        let io_error = |source| PackagesError::Cache {
            path: path.to_path_buf(),
            source,
        };
        let listener = UnixListener::bind(path).map_err(io_error)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
                .map_err(io_error)?;
        }
        let task = tokio::spawn(serve(listener, allowed));
        Ok(EgressProxy {
            path: path.to_path_buf(),
            task,
        })
    }
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve(listener: UnixListener, allowed: Upstreams) {
    // Owned here: aborting this task drops the set, which aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else {
                    // Out of descriptors, say: wait instead of spinning on the error.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if connections.len() >= MAX_CONNECTIONS {
                    tracing::warn!("installer proxy: too many connections at once");
                    let _ = client.try_write(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                }
                connections.spawn(relay(client, allowed.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn relay(mut client: UnixStream, allowed: Upstreams) {
    let mut head = Vec::with_capacity(1024);
    let asked = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client, &mut head)).await;
    let Asked {
        destination: wanted,
        head_len,
    } = match asked {
        Ok(Ok(asked)) => asked,
        Ok(Err(reason)) => return refuse(&mut client, "400 Bad Request", &reason).await,
        Err(_) => return,
    };
    if !allowed.permits(&wanted) {
        tracing::warn!(
            host = %wanted.to.host,
            port = wanted.to.port,
            "installer proxy refused a destination"
        );
        let reason = format!(
            "codebox's installer may reach only {allowed}, not {} (PACKAGE_DOWNLOAD_HOSTS adds hosts an index links files on)",
            wanted.to
        );
        return refuse(&mut client, "403 Forbidden", &reason).await;
    }
    let mut upstream = match connect(&wanted.to).await {
        Ok(stream) => stream,
        Err(reason) => return refuse(&mut client, "502 Bad Gateway", &reason).await,
    };
    let (head, rest) = head.split_at(head_len);
    if wanted.tunnel {
        let opened = client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await;
        // A client may send its first bytes (a TLS hello) before the 200: they go on too.
        if opened.is_ok() && upstream.write_all(rest).await.is_ok() {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
        return;
    }
    // One plain-http request, body-less (checked with its head), in the absolute form
    // HTTP/1.1 servers take; then only the answer flows, so nothing else the client sends
    // reaches this upstream, whether or not it honours `Connection: close`.
    if upstream.write_all(&one_shot_head(head)).await.is_ok() {
        let _ = tokio::io::copy(&mut upstream, &mut client).await;
        let _ = client.shutdown().await;
    }
}

/// Every address of this host's interfaces (the docker bridge's gateway among them), read
/// at each connection: interfaces come and go. None readable means none known, and the
/// other rules still hold.
fn local_addresses() -> Vec<IpAddr> {
    match nix::ifaddrs::getifaddrs() {
        Ok(interfaces) => interfaces
            .filter_map(|interface| {
                let address = interface.address?;
                address
                    .as_sockaddr_in()
                    .map(|v4| IpAddr::V4(v4.ip()))
                    .or_else(|| address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
            })
            .collect(),
        Err(err) => {
            tracing::warn!(error = %err, "installer proxy: cannot list this host's addresses");
            Vec::new()
        }
    }
}

/// Connects to an allowed destination. A host name is resolved here once and the
/// connection goes to the addresses judged, never to a second answer.
async fn connect(target: &Upstream) -> Result<TcpStream, String> {
    let literal = target.host.parse::<IpAddr>().is_ok();
    let resolved = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::lookup_host((target.host.as_str(), target.port)),
    )
    .await;
    let addresses: Vec<SocketAddr> = match resolved {
        Ok(Ok(addresses)) => addresses.collect(),
        _ => return Err(format!("cannot resolve {target}")),
    };
    let local = local_addresses();
    let vetted: Vec<SocketAddr> = addresses
        .iter()
        .copied()
        .filter(|address| literal || resolved_address_allowed(address.ip(), &local))
        .collect();
    if vetted.is_empty() {
        tracing::warn!(target = %target, ?addresses, "installer proxy: a name resolved to forbidden addresses");
        return Err(format!(
            "{target} resolves only to addresses the installer may not reach (this host's own, loopback, link-local, carrier-grade NAT, unique-local, NAT64, unspecified or multicast)"
        ));
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&vetted[..])).await {
        Ok(Ok(stream)) => Ok(stream),
        _ => Err(format!("cannot connect to {target}")),
    }
}

/// Reads until the request head is complete; what follows it stays in `head` too.
async fn read_head(client: &mut UnixStream, head: &mut Vec<u8>) -> Result<Asked, String> {
    let mut chunk = [0u8; 4096];
    loop {
        let read = client
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading the request: {e}"))?;
        if read == 0 {
            return Err("the request ended early".to_string());
        }
        head.extend_from_slice(&chunk[..read]);
        if let Some(wanted) = destination(head)? {
            return Ok(wanted);
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err("the request head is too long".to_string());
        }
    }
}

async fn refuse(client: &mut UnixStream, status: &str, reason: &str) {
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reason}",
        reason.len()
    );
    let _ = client.write_all(reply.as_bytes()).await;
    let _ = client.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packages::egress_rules::parse_upstreams;

    async fn ask(path: &Path, request: &str) -> String {
        let mut stream = UnixStream::connect(path).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
        String::from_utf8_lossy(&reply).into_owned()
    }

    #[tokio::test]
    async fn allowed_destinations_are_relayed_and_others_refused() {
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = server.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = server.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    let line = String::from_utf8_lossy(&buf[..n])
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string();
                    let body = format!("saw {line}");
                    let _ = conn
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                });
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("egress.sock");
        let allowed = Upstreams::for_index(Some(&format!("http://127.0.0.1:{port}/simple/")), &[]);
        let proxy = EgressProxy::start(&socket, allowed).unwrap();

        let plain = ask(
            &socket,
            &format!("GET http://127.0.0.1:{port}/simple/x/ HTTP/1.1\r\nHost: a\r\n\r\n"),
        )
        .await;
        assert!(
            plain.ends_with(&format!(
                "saw GET http://127.0.0.1:{port}/simple/x/ HTTP/1.1"
            )),
            "{plain}"
        );

        let tunnel = {
            let mut stream = UnixStream::connect(&socket).await.unwrap();
            stream
                .write_all(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut established = [0u8; 39];
            stream.read_exact(&mut established).await.unwrap();
            assert_eq!(
                &established[..],
                b"HTTP/1.1 200 Connection established\r\n\r\n"
            );
            stream.write_all(b"PING / HTTP/1.1\r\n\r\n").await.unwrap();
            let mut reply = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
            String::from_utf8_lossy(&reply).into_owned()
        };
        assert!(tunnel.ends_with("saw PING / HTTP/1.1"), "{tunnel}");

        for request in [
            "CONNECT 127.0.0.1:22 HTTP/1.1\r\n\r\n".to_string(),
            "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\n\r\n".to_string(),
        ] {
            let reply = ask(&socket, &request).await;
            assert!(reply.starts_with("HTTP/1.1 403 Forbidden"), "{reply}");
            assert!(
                reply.contains(&format!("may reach only 127.0.0.1:{port}")),
                "{reply}"
            );
        }
        drop(proxy);

        // An allowed name that resolves to the host itself (DNS rebinding) is not dialled.
        let by_name = Upstreams::for_index(Some(&format!("http://localhost:{port}/simple/")), &[]);
        let proxy = EgressProxy::start(&socket, by_name).unwrap();
        let rebound = ask(
            &socket,
            &format!("CONNECT localhost:{port} HTTP/1.1\r\n\r\n"),
        )
        .await;
        assert!(rebound.starts_with("HTTP/1.1 502 Bad Gateway"), "{rebound}");
        assert!(rebound.contains("may not reach"), "{rebound}");

        let garbage = ask(&socket, "hello\r\n\r\n").await;
        assert!(garbage.starts_with("HTTP/1.1 400 Bad Request"), "{garbage}");

        drop(proxy);
        assert!(!socket.exists(), "the socket goes with the proxy");
        assert!(parse_upstreams("x.example:1").is_ok());
    }
}
