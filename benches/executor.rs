//! Benchmark: what the HTTP hop to `codebox executor` adds to a run.
//!
//! W1 `print(1)` for a user, request to result, through the warm pool (one warm container,
//! refilled before each request, untimed): (a) plain `docker run`, (b) the application core
//! running it in process, (c) the same core as a client of a `codebox executor` process on
//! this machine (EXECUTOR_URLS), which ranks executors by /healthz, then streams the run.
//! Medians and p95; (c) - (b) is the hop.
//!
//! Run with `bash bench/executor.sh [RUNS]`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/docker.rs"]
mod docker;
#[path = "common/stats.rs"]
mod stats;

use codebox::app::{App, CodeRun, Lifetime};
use codebox::config::{Settings, Sources};
use docker::docker_w1;
use stats::stats;

const TOKEN: &str = "bench-executor-token";

fn settings(data_dir: &Path, extra: &[(&str, &str)]) -> Settings {
    let mut sources = Sources::from_process(None);
    sources
        .environment
        .retain(|(k, _)| !k.starts_with("EXECUTOR_"));
    sources
        .environment
        .push(("DATA_DIR".into(), data_dir.display().to_string()));
    sources
        .environment
        .push(("WARM_POOL_SIZE".into(), "1".into()));
    for (k, v) in extra {
        sources.environment.push((k.to_string(), v.to_string()));
    }
    Settings::load(&sources).expect("settings")
}

fn w1(user: &str) -> CodeRun {
    CodeRun {
        user_id: user.to_string(),
        code: "print(1)".to_string(),
        limits: codebox::app::Limits::from_settings(&Settings::default().sandbox),
        file_ids: None,
        output_dir: None,
        session: None,
        watch: None,
    }
}

async fn pool_full(url: &str) {
    let client = reqwest::Client::new();
    for _ in 0..600 {
        let health = client
            .get(format!("{url}/healthz"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("healthz");
        let health: serde_json::Value =
            serde_json::from_slice(&health.bytes().await.expect("body")).expect("json");
        if health["pool_idle"] == health["pool_target"] && health["in_flight"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the executor's pool did not refill");
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let runs: usize = docker::runs_asked(30);
    let data = tempfile::tempdir().unwrap();
    let local = settings(data.path(), &[]);
    let image = local.sandbox.sandbox_image.clone();
    println!("codebox executor benchmark: {runs} runs of W1, image {image}, warm pool of 1");

    let _ = docker_w1(&image);
    let docker: Vec<f64> = (0..runs).map(|_| docker_w1(&image)).collect();

    // (b) in process
    let app = App::new(local, Lifetime::Service);
    app.start().await.unwrap();
    let mut in_process = Vec::new();
    for n in 0..=runs {
        assert!(
            app.wait_for_warm_pool(Duration::from_secs(60))
                .await
                .unwrap()
        );
        let started = Instant::now();
        let run = app.run_code(w1("bench")).await.unwrap();
        assert_eq!(run.result.stdout, "1\n");
        if n > 0 {
            in_process.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    app.shutdown().await;

    // (c) through an executor process on this machine, same data directory
    let mut executor = Command::new(env!("CARGO_BIN_EXE_codebox"))
        .args(["executor", "--listen", "127.0.0.1:0"])
        .env("DATA_DIR", data.path())
        .env("WARM_POOL_SIZE", "1")
        .env("EXECUTOR_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("codebox executor");
    let mut line = String::new();
    BufReader::new(executor.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("codebox executor listening on ")
        .expect("listening line")
        .to_string();
    let client = App::new(
        settings(
            data.path(),
            &[("EXECUTOR_URLS", &url), ("EXECUTOR_TOKEN", TOKEN)],
        ),
        Lifetime::Service,
    );
    client.start().await.unwrap();
    let mut remote = Vec::new();
    for n in 0..=runs {
        pool_full(&url).await;
        let started = Instant::now();
        let run = client.run_code(w1("bench")).await.unwrap();
        assert_eq!(run.result.stdout, "1\n");
        if n > 0 {
            remote.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    client.shutdown().await;
    let _ = Command::new("kill").arg(executor.id().to_string()).status();
    let _ = executor.wait();

    let (d, b, c) = (stats(docker), stats(in_process), stats(remote));
    println!("W1 for a user, request to result (ms):");
    println!(
        "  plain docker run          median {:8.1}  p95 {:8.1}",
        d.median, d.p95
    );
    println!(
        "  in process (warm)         median {:8.1}  p95 {:8.1}",
        b.median, b.p95
    );
    println!(
        "  through executor (warm)   median {:8.1}  p95 {:8.1}",
        c.median, c.p95
    );
    println!(
        "  HTTP hop {:+.1} ms (median); docker run / through executor = {:.1}x",
        c.median - b.median,
        d.median / c.median
    );
}
