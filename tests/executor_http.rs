//! `codebox executor` over HTTP, against the real Docker engine: bearer auth, results equal
//! to the in-process executor's, a client that goes away cancels its run (container
//! removed), metrics that count what happened, and clients (`EXECUTOR_URLS`) that pick a
//! healthy executor, move a run that failed before its code started, and never re-run one
//! whose code started.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use common::codebox;
use common::executor::ExecutorProcess;
use serde_json::{Value, json};

const TOKEN: &str = "executor-test-token-1f2e";

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
    common::containers_of(pid).await.len()
}

async fn metrics(url: &str) -> String {
    common::executor::metrics(url, TOKEN).await
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
    let executor = ExecutorProcess::start(data.path(), TOKEN, &[]);
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

/// Hostile: without the token nothing of a request's body is read, whatever it is: broken
/// JSON, another content type, deep nesting, megabytes. Each gets the same 401 and no
/// parser's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_checked_before_any_body_is_read() {
    let data = tempfile::tempdir().unwrap();
    let executor = ExecutorProcess::start(data.path(), TOKEN, &[]);
    let url = format!("{}/v1/runs", executor.url);
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"{not json".to_vec()),
        ("text/plain", b"print(1)".to_vec()),
        ("application/json", deep.into_bytes()),
        ("application/json", vec![b' '; 3 * 1024 * 1024]),
    ];
    for (content_type, body) in bodies {
        let size = body.len();
        let response = match client()
            .post(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
        {
            Ok(response) => response,
            // The 401 went out and the connection closed before the client had written a
            // body of megabytes: refused unread, which is the point. (Whether the client
            // reads the answer first or trips over the closed socket is a race.)
            Err(err) if size > 1024 * 1024 && err.is_request() => continue,
            Err(err) => panic!("{content_type}, {size} bytes: {err}"),
        };
        assert_eq!(response.status(), 401, "{content_type}, {size} bytes");
        let text = response.text().await.unwrap();
        assert!(text.contains("bearer token"), "{text}");
    }
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
    let executor = ExecutorProcess::start(there.path(), TOKEN, &[]);
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
    let executor = ExecutorProcess::start(data.path(), TOKEN, &[]);
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
    let runs = move || async move {
        let body = if after_start {
            "{\"event\":\"started\"}\n{\"event\":\"output\",\"stream\":\"stdout\",\"text\":\"half\",\"skipped_chars\":0,\"missed_before\":0}\n"
        } else {
            // Its own engine failed before the code started: another executor may run it.
            "{\"event\":\"alive\"}\n{\"event\":\"error\",\"message\":\"Docker create failed\",\"code_started\":false,\"retry\":true}\n"
        };
        // The answer ends without a result: the connection broke.
        ([("content-type", "application/x-ndjson")], body)
    };
    serve_fake_executor(post(runs)).await
}

/// Serves a fake executor: always healthy and idle, its runs answered by `runs`.
async fn serve_fake_executor(runs: axum::routing::MethodRouter) -> SocketAddr {
    let health = || async {
        axum::Json(json!({"ready": true, "pool_idle": 100, "pool_target": 100, "in_flight": 0}))
    };
    let app = Router::new()
        .route("/healthz", get(health))
        .route("/v1/runs", runs);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A fake executor whose result names a "generated file" at a path of its choosing.
async fn lying_executor() -> SocketAddr {
    executor_claiming(
        json!([{"file_id": "AAAAAAAAAAAAAAAA", "filename": "secrets.txt",
                              "size": 10, "file_type": "txt", "path": "/proc/self/environ"}]),
    )
    .await
}

/// A fake executor whose every result claims `generated_files`.
async fn executor_claiming(generated_files: Value) -> SocketAddr {
    let runs = move || async move {
        let result = json!({"event": "result", "result": {
            "status": "ok", "exit_code": 0, "stdout": "done\n", "stderr": "",
            "stdout_truncated": false, "stderr_truncated": false, "execution_ms": 1.0,
            "total_ms": 2.0, "install_ms": 0.0, "packages_installed": [], "packages_cached": [],
            "error": null, "output_files": [], "flags": [], "run_id": "forged",
            "phases": {"warm": false, "acquire_ms": 0.0, "stage_ms": 0.0, "handoff_ms": 0.0,
                       "collect_ms": 0.0},
            "session": null,
            "generated_files": generated_files
        }});
        let body = format!("{{\"event\":\"started\"}}\n{result}\n");
        ([("content-type", "application/x-ndjson")], body)
    };
    serve_fake_executor(post(runs)).await
}

/// `print(1)` for user u1 through the executor at `executor`: the run's JSON.
async fn run_through(data: &Path, executor: SocketAddr) -> Value {
    let data = data.to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        let mut cmd = codebox(&data);
        cmd.env("EXECUTOR_URLS", format!("http://{executor}"))
            .env("EXECUTOR_TOKEN", TOKEN);
        cmd.args(["run", "--user", "u1", "--json", "-c", "print(1)"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_an_executor_names_is_only_ever_one_of_the_users_own() {
    let data = tempfile::tempdir().unwrap();
    let liar = lying_executor().await;
    let run = run_through(data.path(), liar).await;
    assert_eq!(run["stdout"], "done\n");
    assert_eq!(
        run["generated_files"],
        json!([]),
        "a path the executor chose is never taken"
    );
}

/// An executor's measure of a picture counts only for a file its run wrote: claimed for the
/// user's upload (a photo said to be 1x1), it is dropped, so the bot would measure the
/// photo in a picture run of its own before a model saw it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executors_picture_measure_never_counts_for_an_upload() {
    let data = tempfile::tempdir().unwrap();
    let photo = data.path().join("photo.png");
    std::fs::write(&photo, common::docs::png(8, 8, [1, 2, 3])).unwrap();
    let uploaded = tokio::task::spawn_blocking({
        let (data, photo) = (data.path().to_path_buf(), photo.clone());
        move || {
            codebox(&data)
                .args(["files", "upload", "--user", "u1", "--no-summary", "--json"])
                .arg(&photo)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(uploaded.status.success(), "{uploaded:?}");
    let records: Value = serde_json::from_slice(&uploaded.stdout).unwrap();
    let id = records[0]["file_id"].as_str().unwrap().to_string();
    let liar = executor_claiming(json!([{"file_id": id, "filename": "photo.png", "size": 10,
        "file_type": "png", "path": "/nowhere",
        "picture": {"width": 1, "height": 1, "mime": "image/png"}}]))
    .await;
    let run = run_through(data.path(), liar).await;
    let files = run["generated_files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "the user's own file: {run}");
    assert_eq!(files[0]["file_id"], id.as_str());
    assert!(
        files[0].get("picture").is_none(),
        "no measure for an upload: {run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_pick_a_healthy_executor_and_never_rerun_started_code() {
    let data = tempfile::tempdir().unwrap();
    let executor = ExecutorProcess::start(data.path(), TOKEN, &[]);
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

    // A staging dir of an executor on another host (its mark) sharing DATA_DIR: its pid
    // means nothing here. Neither this executor nor a client may remove it.
    let executors_dir = data.path().join("staging/run-1-1-0badcafe-AbCdEf");
    std::fs::create_dir_all(&executors_dir).unwrap();

    // A dead address and a run that breaks before its code started: the real one runs it.
    let urls = format!(
        "http://127.0.0.1:9, http://{before_start}, {}",
        executor.url
    );
    let output = client_run(urls, "print('ran once')").await.unwrap();
    assert!(output.status.success(), "{output:?}");
    let run: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(run["stdout"], "ran once\n", "{run}");
    assert!(
        executors_dir.exists(),
        "a client removed an executor's staging dir"
    );
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

    // A name is every address it resolves to (Swarm's tasks.<service>): localhost is
    // 127.0.0.1, where the executor listens, and perhaps ::1, where nothing does.
    let by_name = executor.url.replace("127.0.0.1", "localhost");
    let output = client_run(by_name, "print('by name')").await.unwrap();
    assert!(output.status.success(), "{output:?}");
    let run: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(run["stdout"], "by name\n", "{run}");

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

/// MONGODB_URI and a database of this test's own.
fn mongo_env() -> [(&'static str, String); 2] {
    let uri = common::mongo_uri();
    let database = common::fresh_database();
    [("MONGODB_URI", uri), ("MONGODB_DATABASE", database)]
}

fn cli(data: &Path, env: &[(&str, &str)], args: &[&str]) -> Value {
    let mut cmd = codebox(data);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mongodb_files_reach_every_executor_and_a_disk_store_migrates() {
    let mongo = mongo_env();
    let env: Vec<(&str, &str)> = mongo.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // A store from before GridFS: records in MongoDB, bytes on this host's disk.
    let old_host = tempfile::tempdir().unwrap();
    let source = old_host.path().join("old.csv");
    std::fs::write(&source, "n\n1\n2\n").unwrap();
    let old_id = {
        let meta = codebox::store::mongo::MongoMetadata::connect(&mongo[0].1, &mongo[1].1)
            .await
            .unwrap();
        let limits = codebox::store::StoreLimits::from_settings(&Default::default());
        let store = codebox::store::FileStore::new(meta, old_host.path(), limits);
        let added = store
            .add("u1", "old.csv", &source, codebox::store::Origin::Uploaded)
            .await
            .unwrap();
        added.record.file_id
    };
    let on_disk = old_host.path().join(format!("user_files/u1/{old_id}.csv"));
    assert!(on_disk.exists());
    let migrated = cli(old_host.path(), &env, &["files", "migrate", "--json"]);
    assert_eq!(migrated["moved"], json!([old_id]), "{migrated}");
    assert!(!on_disk.exists(), "the disk copy goes once GridFS holds it");
    let again = cli(old_host.path(), &env, &["files", "migrate", "--json"]);
    assert_eq!(again["already"], json!([old_id]), "safe to run again");

    // Two executors that share nothing but the database, and a client on a third host.
    let (one, two, client) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let first = ExecutorProcess::start(one.path(), TOKEN, &env);
    let second = ExecutorProcess::start(two.path(), TOKEN, &env);
    fn through<'a>(
        env: &[(&'a str, &'a str)],
        executor: &'a ExecutorProcess,
    ) -> Vec<(&'a str, &'a str)> {
        let mut env = env.to_vec();
        env.push(("EXECUTOR_URLS", executor.url.as_str()));
        env.push(("EXECUTOR_TOKEN", TOKEN));
        env
    }
    // Uploaded from the client; its summary computed on the first executor.
    let upload = client.path().join("new.csv");
    std::fs::write(&upload, "m\n10\n20\n").unwrap();
    let uploaded = cli(
        client.path(),
        &through(&env, &first),
        &[
            "files",
            "upload",
            "--user",
            "u1",
            "--json",
            upload.to_str().unwrap(),
        ],
    );
    let new_id = uploaded[0]["file_id"].as_str().unwrap().to_string();
    assert!(
        uploaded[0]["summary"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "summarized on the first executor: {uploaded}"
    );
    // Loaded on the second one, which never saw either file on its disk.
    let code = format!(
        "a = load_file({old_id:?})\nb = load_file({new_id:?})\nprint(int(a.n.sum()), int(b.m.sum()))\nb.to_csv('out.csv')"
    );
    let run = cli(
        client.path(),
        &through(&env, &second),
        &["run", "--user", "u1", "--json", "-c", &code],
    );
    assert_eq!(run["stdout"], "3 30\n", "{run}");
    let out = &run["generated_files"][0];
    let path = Path::new(out["path"].as_str().unwrap());
    assert!(
        path.starts_with(client.path()),
        "the client fetched its own copy: {}",
        path.display()
    );
    assert!(std::fs::read_to_string(path).unwrap().contains("20"));
    assert!(
        !two.path().join("user_files").exists(),
        "no bytes on the executor's disk"
    );
    drop((first, second));
}
