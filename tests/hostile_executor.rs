//! Hostile clients of `codebox executor` that have no token: a request head that never
//! ends, a connection kept alive and left idle, a flood of connections from one address,
//! and an unfinished head held open across SIGTERM. None of them may stall the executor
//! for the clients that have a token.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::executor::ExecutorProcess;

const TOKEN: &str = "hostile-executor-token-7a1c";

fn address(executor: &ExecutorProcess) -> SocketAddr {
    executor
        .url
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap()
}

/// Connects from `from` (any 127.x address is this machine), so a test can be several
/// clients.
fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Stream,
        nix::sys::socket::SockFlag::empty(),
        None,
    )
    .unwrap();
    let local = nix::sys::socket::SockaddrIn::new(from[0], from[1], from[2], from[3], 0);
    nix::sys::socket::bind(std::os::fd::AsRawFd::as_raw_fd(&socket), &local).unwrap();
    let stream = TcpStream::from(socket);
    let std::net::SocketAddr::V4(to) = to else {
        panic!("the executor listens on IPv4 loopback")
    };
    nix::sys::socket::connect(
        std::os::fd::AsRawFd::as_raw_fd(&stream),
        &nix::sys::socket::SockaddrIn::from(to),
    )
    .unwrap();
    stream
}

/// How long until the server closes `stream` (None: still open after `within`).
fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let began = Instant::now();
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(began.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(began.elapsed());
            }
            Err(_) => return None,
        }
    }
}

fn authorized_health(from: [u8; 4], to: SocketAddr) -> String {
    let mut stream = connect_from(from, to);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nhost: executor\r\nauthorization: Bearer {TOKEN}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[test]
fn a_request_head_that_never_ends_is_closed_at_the_header_timeout() {
    let data = tempfile::tempdir().unwrap();
    let executor =
        ExecutorProcess::start(data.path(), TOKEN, &[("EXECUTOR_HEADER_TIMEOUT_S", "1")]);
    let to = address(&executor);
    let mut silent = connect_from([127, 0, 0, 1], to);
    let mut unfinished = connect_from([127, 0, 0, 1], to);
    unfinished
        .write_all(b"POST /v1/runs HTTP/1.1\r\nhost: executor\r\nx-slow: ")
        .unwrap();
    for (what, stream) in [("no byte", &mut silent), ("half a head", &mut unfinished)] {
        let closed = closed_within(stream, Duration::from_secs(5));
        assert!(
            closed.is_some_and(|t| t < Duration::from_secs(4)),
            "{what}: {closed:?}"
        );
    }
}

#[test]
fn an_idle_kept_alive_connection_is_closed() {
    let data = tempfile::tempdir().unwrap();
    let executor =
        ExecutorProcess::start(data.path(), TOKEN, &[("EXECUTOR_HEADER_TIMEOUT_S", "1")]);
    let mut stream = connect_from([127, 0, 0, 1], address(&executor));
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nhost: executor\r\nauthorization: Bearer {TOKEN}\r\n\r\n"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "kept alive: {head}");
    let closed = closed_within(&mut stream, Duration::from_secs(5));
    assert!(
        closed.is_some_and(|t| t < Duration::from_secs(4)),
        "{closed:?}"
    );
}

#[test]
fn a_flood_from_one_address_leaves_other_clients_served() {
    let (soft, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    if soft < 4096 {
        nix::sys::resource::setrlimit(
            nix::sys::resource::Resource::RLIMIT_NOFILE,
            hard.min(8192),
            hard,
        )
        .unwrap();
    }
    let data = tempfile::tempdir().unwrap();
    let executor = ExecutorProcess::start(
        data.path(),
        TOKEN,
        &[
            ("EXECUTOR_HEADER_TIMEOUT_S", "60"),
            ("EXECUTOR_MAX_CONNECTIONS", "400"),
            ("EXECUTOR_MAX_CONNECTIONS_PER_PEER", "100"),
        ],
    );
    let to = address(&executor);
    // 2000 connections from one address, none sending a byte: 100 held, the rest refused.
    let mut flood: Vec<TcpStream> = (0..2000)
        .map(|_| connect_from([127, 0, 0, 1], to))
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let mut refused = 0;
    flood.retain_mut(|stream| {
        stream.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 256];
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => {
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(text.starts_with("HTTP/1.1 503"), "{text}");
                refused += 1;
                false
            }
            _ => true,
        }
    });
    assert_eq!(refused, 1900, "{} held", flood.len());
    let fds = std::fs::read_dir(format!("/proc/{}/fd", executor.pid()))
        .unwrap()
        .count();
    assert!(fds < 400, "the executor holds {fds} descriptors");
    // Another address, with a token, is served at once.
    let began = Instant::now();
    let answer = authorized_health([127, 0, 0, 2], to);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
    // Three more addresses fill the total cap; then everyone is refused with a 503.
    for last in 3..=5 {
        for _ in 0..100 {
            flood.push(connect_from([127, 0, 0, last], to));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let answer = authorized_health([127, 0, 0, 2], to);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many connections"), "{answer}");
    // Once the flood goes, the token is enough again.
    drop(flood);
    std::thread::sleep(Duration::from_millis(500));
    let answer = authorized_health([127, 0, 0, 2], to);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn sigterm_ends_the_executor_within_its_grace_despite_an_unfinished_head() {
    let data = tempfile::tempdir().unwrap();
    let mut executor = ExecutorProcess::start(
        data.path(),
        TOKEN,
        &[
            ("EXECUTOR_HEADER_TIMEOUT_S", "120"),
            ("EXECUTOR_SHUTDOWN_GRACE_S", "2"),
        ],
    );
    let to = address(&executor);
    let mut unfinished = connect_from([127, 0, 0, 1], to);
    unfinished
        .write_all(b"POST /v1/runs HTTP/1.1\r\nhost: executor\r\n")
        .unwrap();
    let _idle = connect_from([127, 0, 0, 1], to);
    std::thread::sleep(Duration::from_millis(200));
    let took = executor.terminate(Duration::from_secs(20));
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(6)),
        "exited after {took:?}"
    );
}
