//! `codebox executor` over HTTP, against the real Docker engine: bearer auth, results equal
//! to the in-process executor's, a client that goes away cancels its run (container
//! removed), metrics that count what happened, and clients (`EXECUTOR_URLS`) that pick a
//! healthy executor, move a run that failed before its code started, and never re-run one
//! whose code started.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use codebox::sandbox::OWNER_LABEL;
use codebox::sandbox::docker::DockerEngine;
use codebox::sandbox::engine::Containers;
use common::codebox;
use serde_json::{Value, json};

const TOKEN: &str = "executor-test-token-1f2e";

struct Executor {
    child: Child,
    url: String,
}

impl Executor {
    fn start(data: &Path) -> Executor {
        let mut child = codebox(data)
            .args(["executor", "--listen", "127.0.0.1:0"])
            .env("EXECUTOR_TOKEN", TOKEN)
            .env("WARM_POOL_SIZE", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("codebox executor listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        Executor { child, url }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..150 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn post_json(url: &str, body: &Value) -> reqwest::RequestBuilder {
    client()
        .post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
}

async fn containers_of(pid: u32) -> usize {
    DockerEngine::connect()
        .await
        .unwrap()
        .list_managed()
        .await
        .unwrap()
        .iter()
        .filter(|c| {
            c.labels
                .get(OWNER_LABEL)
                .is_some_and(|owner| owner.contains(&format!(":{pid}:")))
        })
        .count()
}

async fn metrics(url: &str) -> String {
    client()
        .get(format!("{url}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of one Prometheus sample line (0 when absent).
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_right_token_nothing_runs() {
    let data = tempfile::tempdir().unwrap();
    let executor = Executor::start(data.path());
    let run = json!({"user_id": "u1", "code": "print(1)"});
    for auth in [None, Some("wrong-token"), Some("")] {
        let mut request = post_json(&format!("{}/v1/runs", executor.url), &run);
        if let Some(token) = auth {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{auth:?}");
        let health = client()
            .get(format!("{}/healthz", executor.url))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 401);
    }
    assert!(!metrics(&executor.url).await.contains("codebox_runs_total{"));
    let health = client()
        .get(format!("{}/healthz", executor.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let health: Value = serde_json::from_slice(&health).unwrap();
    assert_eq!(health["ready"], true, "{health}");
    assert_eq!(health["in_flight"], 0);
}

#[test]
fn an_executor_will_not_listen_beyond_loopback_without_a_token() {
    let data = tempfile::tempdir().unwrap();
    let output = codebox(data.path())
        .args(["executor", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("without EXECUTOR_TOKEN"), "{stderr}");
}

/// `codebox run --user u1 --json` in `data`, through executors when `urls` is set.
fn cli_run(data: &Path, urls: Option<&str>, args: &[&str], code: &str) -> Value {
    let mut cmd = codebox(data);
    if let Some(urls) = urls {
        cmd.env("EXECUTOR_URLS", urls).env("EXECUTOR_TOKEN", TOKEN);
    }
    common::run_with(cmd, &[&["--user", "u1"], args].concat(), code).json
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_through_http_equals_the_in_process_run() {
    let here = tempfile::tempdir().unwrap();
    let there = tempfile::tempdir().unwrap();
    let executor = Executor::start(there.path());
    let cases: [(&str, &[&str], &str); 5] = [
        ("ok", &[], "print(6 * 7)"),
        (
            "timeout",
            &["--timeout", "2"],
            "import time\ntime.sleep(30)",
        ),
        (
            "oom",
            &["--memory-mb", "128"],
            "x = bytearray(1024 * 1024 * 1024)\nprint(len(x))",
        ),
        (
            "outputs",
            &[],
            "open('a.txt', 'w').write('alpha')\nimport matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.savefig('p.png')\nprint('saved')",
        ),
        ("refused", &[], "import cbx_not_on_any_list\n"),
    ];
    for (what, args, code) in cases {
        let local = cli_run(here.path(), None, args, code);
        let remote = cli_run(there.path(), Some(&executor.url), args, code);
        for key in ["status", "stdout", "exit_code", "stdout_truncated"] {
            assert_eq!(local[key], remote[key], "{what}: {key}\n{local}\n{remote}");
        }
        assert_eq!(local["error"]["type"], remote["error"]["type"], "{what}");
        let names = |v: &Value| -> Vec<String> {
            let mut names: Vec<String> = v["generated_files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["filename"].as_str().unwrap().to_string())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(&local), names(&remote), "{what}");
        // The client finds each stored file in its own view of the store.
        for file in remote["generated_files"].as_array().unwrap() {
            let path = Path::new(file["path"].as_str().unwrap());
            assert!(path.starts_with(there.path()), "{}", path.display());
            assert!(path.exists(), "{}", path.display());
        }
        assert_eq!(
            local["status"],
            what.replace("outputs", "ok"),
            "{what}: {local}"
        );
    }
    let text = metrics(&executor.url).await;
    assert_eq!(
        sample(&text, "codebox_runs_total{status=\"ok\"}"),
        2.0,
        "{text}"
    );
    assert_eq!(sample(&text, "codebox_runs_total{status=\"timeout\"}"), 1.0);
    assert_eq!(sample(&text, "codebox_runs_total{status=\"oom\"}"), 1.0);
    assert_eq!(sample(&text, "codebox_runs_total{status=\"refused\"}"), 1.0);
    assert_eq!(sample(&text, "codebox_run_seconds_count"), 5.0);
    assert_eq!(
        sample(&text, "codebox_run_phase_seconds_count{phase=\"code\"}"),
        5.0
    );
    assert_eq!(sample(&text, "codebox_runs_in_flight"), 0.0);
    assert!(text.contains("codebox_pool_target"), "{text}");
    assert!(text.contains("codebox_package_cache_bytes"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_cancels_its_run_and_its_container() {
    let data = tempfile::tempdir().unwrap();
    let executor = Executor::start(data.path());
    let mut response = post_json(
        &format!("{}/v1/runs", executor.url),
        &json!({"user_id": "u1", "code": "import time\nprint('up', flush=True)\ntime.sleep(120)", "events": true}),
    )
    .bearer_auth(TOKEN)
    .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut seen = String::new();
    while !seen.contains("\"output\"") {
        let chunk = tokio::time::timeout(Duration::from_secs(60), response.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("{\"event\":\"started\"}"), "{seen}");
    assert_eq!(
        containers_of(executor.pid()).await,
        1,
        "the run is under way"
    );
    drop(response);
    let mut left = 1;
    for _ in 0..100 {
        left = containers_of(executor.pid()).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "the abandoned run's container is gone");
    let text = metrics(&executor.url).await;
    assert_eq!(
        sample(&text, "codebox_runs_total{status=\"cancelled\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(sample(&text, "codebox_runs_in_flight"), 0.0);
}

/// A fake executor: healthy and idle (so it is tried first), but its runs break, before
/// the code started or after, as told.
async fn flaky_executor(after_start: bool) -> SocketAddr {
    let health = || async {
        axum::Json(json!({"ready": true, "pool_idle": 100, "pool_target": 100, "in_flight": 0}))
    };
    let runs = move || async move {
        let body = if after_start {
            "{\"event\":\"started\"}\n{\"event\":\"output\",\"stream\":\"stdout\",\"text\":\"half\",\"skipped_chars\":0,\"missed_before\":0}\n"
        } else {
            "{\"event\":\"alive\"}\n"
        };
        // The answer ends without a result: the connection broke.
        ([("content-type", "application/x-ndjson")], body)
    };
    let app = Router::new()
        .route("/healthz", get(health))
        .route("/v1/runs", post(runs));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_pick_a_healthy_executor_and_never_rerun_started_code() {
    let data = tempfile::tempdir().unwrap();
    let executor = Executor::start(data.path());
    let before_start = flaky_executor(false).await;
    let after_start = flaky_executor(true).await;
    let client_run = |urls: String, code: &'static str| {
        let data = data.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let mut cmd = codebox(&data);
            cmd.env("EXECUTOR_URLS", urls).env("EXECUTOR_TOKEN", TOKEN);
            cmd.args(["run", "--user", "u1", "--json", "-c", code])
                .output()
                .unwrap()
        })
    };

    // A dead address and a run that breaks before its code started: the real one runs it.
    let urls = format!(
        "http://127.0.0.1:9, http://{before_start}, {}",
        executor.url
    );
    let output = client_run(urls, "print('ran once')").await.unwrap();
    assert!(output.status.success(), "{output:?}");
    let run: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(run["stdout"], "ran once\n", "{run}");
    let text = metrics(&executor.url).await;
    assert_eq!(sample(&text, "codebox_runs_total{status=\"ok\"}"), 1.0);

    // Code that started and then lost its executor is an error, never a second run.
    let urls = format!("http://{after_start}, {}", executor.url);
    let output = client_run(urls, "print('must not run twice')")
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("failed after the code started"), "{stderr}");
    let text = metrics(&executor.url).await;
    assert_eq!(
        sample(&text, "codebox_runs_total{status=\"ok\"}"),
        1.0,
        "the real executor was not asked to run it again"
    );

    // None healthy: a clear error naming them.
    let output = client_run("http://127.0.0.1:9".into(), "print(1)")
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no executor of http://127.0.0.1:9/ is reachable"),
        "{stderr}"
    );
}
