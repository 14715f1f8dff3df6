//! Runs watched as they happen, against the real Docker engine: a subscriber gets the code's
//! output while it runs (fresh and warm containers, runc and runsc), a flood never grows the
//! host or slows the run, and `codebox run` streams to the terminal and cancels on SIGINT
//! or SIGTERM without leaving its container.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use codebox::config::Runtime;
use codebox::container::docker::DockerEngine;
use codebox::sandbox::watch::{OutputStream, RunEvent, Subscription, watch};
use codebox::sandbox::{ExecutionRequest, Executor, Limits, Status};
use common::{codebox, settings};

const TICKS: &str =
    "import time\nfor i in range(15):\n    print(i, flush=True)\n    time.sleep(0.2)";

fn request(
    code: &str,
    limits: Limits,
    watch: codebox::sandbox::watch::RunWatch,
) -> ExecutionRequest {
    ExecutionRequest {
        code: code.to_string(),
        limits,
        input_dir: None,
        output_dir: None,
        files: Vec::new(),
        session: None,
        watch: Some(watch),
    }
}

/// Everything a subscriber receives, with when it arrived.
fn collect(
    mut subscription: Subscription,
) -> tokio::task::JoinHandle<Vec<(Instant, RunEvent, u64)>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(watched) = subscription.recv().await {
            seen.push((Instant::now(), watched.event, watched.missed_before));
        }
        seen
    })
}

async fn ticks_arrive_while_running(executor: &Executor<DockerEngine>, limits: Limits, what: &str) {
    let (watch, subscription) = watch(64);
    let seen = collect(subscription);
    let result = executor
        .execute(request(TICKS, limits, watch))
        .await
        .unwrap();
    let ended = Instant::now();
    assert_eq!(result.status, Status::Ok, "{what}: {result:?}");
    let seen = seen.await.unwrap();
    assert_eq!(
        seen.first().map(|s| &s.1),
        Some(&RunEvent::Started),
        "{what}"
    );
    let mut text = String::new();
    let mut arrivals = Vec::new();
    for (at, event, missed) in &seen {
        assert_eq!(
            *missed, 0,
            "{what}: a subscriber that keeps up misses nothing"
        );
        if let RunEvent::Output {
            stream,
            text: piece,
            skipped_chars,
        } = event
        {
            assert_eq!(*stream, OutputStream::Stdout, "{what}");
            assert_eq!(*skipped_chars, 0, "{what}");
            text.push_str(piece);
            arrivals.push(*at);
        }
    }
    let expected: String = (0..15).map(|i| format!("{i}\n")).collect();
    assert_eq!(text, expected, "{what}: every line, in order");
    assert_eq!(result.stdout, expected, "{what}: the result is unchanged");
    let first = arrivals.first().copied().unwrap();
    assert!(
        ended.duration_since(first) >= Duration::from_secs(2),
        "{what}: the first line came {:?} before the end",
        ended.duration_since(first)
    );
    assert!(
        arrivals.len() >= 10,
        "{what}: lines came as they were printed, not in one piece at the end ({} events)",
        arrivals.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_each_line_before_the_run_ends_fresh_warm_and_under_gvisor() {
    let data = tempfile::tempdir().unwrap();
    let engine = Arc::new(DockerEngine::connect().await.unwrap());

    let cold = settings(data.path(), 0);
    let executor = common::executor(engine.clone(), &cold).unwrap();
    let limits = Limits::from_settings(&cold.sandbox);
    ticks_arrive_while_running(&executor, limits.clone(), "fresh, runc").await;
    let gvisor = Limits {
        runtime: Runtime::Runsc,
        ..limits
    };
    ticks_arrive_while_running(&executor, gvisor, "fresh, runsc").await;
    executor.shutdown().await;

    let warm = settings(data.path(), 1);
    let executor = common::executor(engine, &warm).unwrap();
    assert!(executor.wait_for_warm_pool(Duration::from_secs(60)).await);
    ticks_arrive_while_running(&executor, Limits::from_settings(&warm.sandbox), "warm").await;
    executor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_watched_by_a_subscriber_that_never_reads_ends_truncated_and_in_time() {
    let data = tempfile::tempdir().unwrap();
    let settings = settings(data.path(), 0);
    let executor =
        common::executor(Arc::new(DockerEngine::connect().await.unwrap()), &settings).unwrap();
    let mut limits = Limits::from_settings(&settings.sandbox);
    // A run the stalled subscriber blocked would fill its pipes and hit this.
    limits.timeout = Duration::from_secs(30);
    let (watch, subscription) = watch(2);
    // Spread over a second or more, so that it makes many more events than the backlog.
    let flood = "import sys, time\nchunk = 'x' * (1024 * 1024)\nfor _ in range(200):\n    sys.stdout.write(chunk)\n    time.sleep(0.01)\nprint('END')\n";
    let result = executor
        .execute(request(flood, limits, watch))
        .await
        .unwrap();
    assert_eq!(result.status, Status::Ok, "{:?}", result.error);
    assert!(result.stdout_truncated);
    assert!(result.stdout.ends_with("END\n"));
    assert!(result.stdout.chars().count() <= settings.sandbox.max_output_chars + 100);
    assert!(
        subscription.missed() > 0,
        "the subscriber's backlog is bounded: events beyond it were dropped"
    );
    // What the subscriber still holds: at most its capacity, each event bounded.
    let mut held = subscription;
    let mut count = 0;
    while let Ok(Some(watched)) =
        tokio::time::timeout(Duration::from_millis(100), held.recv()).await
    {
        count += 1;
        if let RunEvent::Output { text, .. } = watched.event {
            assert!(text.chars().count() <= 4096);
        }
    }
    assert!(count <= 2, "{count} events held");
    executor.shutdown().await;
}

#[test]
fn the_cli_streams_a_flood_with_bounded_memory_and_shows_the_capped_output_after() {
    let data = tempfile::tempdir().unwrap();
    let output = codebox(data.path())
        .args([
            "run",
            "-c",
            "import sys\nchunk = 'x' * (1024 * 1024)\nfor _ in range(200):\n    sys.stdout.write(chunk)\nprint('END')\n",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("characters of stdout not shown live"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Output seen incompletely live is followed by the run's capped copy, tail included.
    assert!(
        stdout.contains("--- stdout (truncated) ---"),
        "{}",
        &stdout[stdout.len().saturating_sub(500)..]
    );
    assert!(stdout.contains("END\n"));
    assert!(stdout.contains("status: ok"));
    assert!(
        stdout.len() < 2_000_000,
        "{} bytes reached the terminal",
        stdout.len()
    );
    let usage =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    let max_rss_mb = usage.max_rss() / 1024;
    assert!(
        max_rss_mb < 80,
        "codebox peaked at {max_rss_mb} MB streaming 200 MB of output"
    );
}

#[test]
fn a_cli_run_shows_output_as_it_comes_and_says_the_summary_once() {
    let data = tempfile::tempdir().unwrap();
    let output = codebox(data.path())
        .args([
            "run",
            "-c",
            "import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.starts_with("to stdout\nstatus: ok"), "{stdout}");
    assert_eq!(
        stdout.matches("to stdout").count(),
        1,
        "not repeated: {stdout}"
    );
    assert!(!stdout.contains("to stderr"), "{stdout}");
    assert_eq!(stderr, "to stderr\n");
}

async fn containers_of(pid: u32) -> usize {
    common::containers_of(pid).await.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_or_sigterm_cancels_a_cli_run_and_leaves_no_container() {
    for (signal, code) in [
        (nix::sys::signal::Signal::SIGINT, 130),
        (nix::sys::signal::Signal::SIGTERM, 143),
    ] {
        let data = tempfile::tempdir().unwrap();
        let mut child = codebox(data.path())
            .args([
                "run",
                "-c",
                "import time\nprint('up', flush=True)\ntime.sleep(120)",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        // The line arrives while the code sleeps: streamed, not printed at the end.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let read = tokio::task::spawn_blocking(move || {
            stdout.read_line(&mut line).unwrap();
            line
        });
        let line = tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .expect("the first line is streamed while the code runs")
            .unwrap();
        assert_eq!(line, "up\n");
        assert_eq!(containers_of(pid).await, 1, "the run is under way");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
        let status = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.status.code(), Some(code), "{signal}");
        let stderr = String::from_utf8_lossy(&status.stderr);
        assert!(stderr.contains("run cancelled"), "{stderr}");
        assert_eq!(
            containers_of(pid).await,
            0,
            "{signal}: its container is gone"
        );
    }
}
