//! Benchmark: codebox against plain `docker run`, in one run, on the same machine.
//!
//! W1 `print(1)`; W2 pandas on a 1 MB CSV plus one matplotlib PNG; W3 20 concurrent W1.
//! For (a) `docker run --rm IMAGE python3 -c ...` through the CLI, (b) codebox with the warm
//! pool off, (c) codebox with the pool on. Medians and p95 over N runs (default
//! 30; `cargo bench --bench pool -- N` for N) runs, the ratios (a)/(c) and (b)/(c), a per-phase breakdown, and this process's RSS
//! (the executor and pool, as the bot runs them) idle and under W3.
//!
//! In (c) each sequential request waits (untimed) until the pool is full again: it measures
//! a request that finds a warm container, as a chat request seconds after the last does.
//! W3 shows what a burst larger than the pool costs.
//!
//! Run with `bash bench/pool.sh` (it prepares the machine first).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[path = "common/docker.rs"]
mod docker;
#[path = "common/rss.rs"]
mod rss;
#[path = "common/settings.rs"]
mod settings;
#[path = "common/stats.rs"]
mod stats;

use codebox::config::Settings;
use codebox::container::OWNER_LABEL;
use codebox::container::docker::DockerEngine;
use codebox::container::engine::Containers;
use codebox::sandbox::{ExecutionRequest, ExecutionResult, Executor, JobFile, Limits, Status};
use rss::rss_kib;
use settings::bench_settings;
use stats::{Stats, stats};

const W1: &str = "print(1)";
const W2_CODEBOX: &str = r#"
import pandas as pd
import matplotlib.pyplot as plt
df = load_file("bench-csv")
print(df.describe())
df["value"].head(500).plot()
plt.savefig("plot.png")
"#;
const W2_DOCKER: &str = r#"
import pandas as pd
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
df = pd.read_csv("/mnt/inputs/data.csv")
print(df.describe())
df["value"].head(500).plot()
plt.savefig("/mnt/outputs/plot.png")
"#;
const BURST: usize = 20;

fn write_csv(dir: &Path) -> PathBuf {
    let path = dir.join("data.csv");
    let mut text = String::from("id,value,group,score\n");
    let mut i: u64 = 0;
    while text.len() < 1024 * 1024 {
        let value = ((i * 7919) % 10007) as f64 / 13.0;
        let score = ((i * 104729) % 1009) as f64 / 7.0;
        text.push_str(&format!("{i},{value:.4},g{},{score:.3}\n", i % 17));
        i += 1;
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn request(code: &str, settings: &Settings, inputs: &Path) -> ExecutionRequest {
    ExecutionRequest {
        code: code.to_string(),
        limits: Limits::from_settings(&settings.sandbox),
        input_dir: Some(inputs.to_path_buf()),
        output_dir: None,
        files: vec![JobFile {
            file_id: "bench-csv".into(),
            filename: "data.csv".into(),
            file_type: "csv".into(),
            path: "/mnt/inputs/data.csv".into(),
            data_name: "data.csv".into(),
        }],
        session: None,
        watch: None,
    }
}

fn check(result: &ExecutionResult, workload: &str) {
    assert_eq!(result.status, Status::Ok, "{workload}: {result:?}");
    if workload == "W2" {
        assert!(
            result.output_files.iter().any(|f| f.name == "plot.png"),
            "W2 saves a PNG: {result:?}"
        );
    }
}

#[derive(Default)]
struct Breakdown {
    acquire: Vec<f64>,
    stage: Vec<f64>,
    handoff: Vec<f64>,
    run: Vec<f64>,
    collect: Vec<f64>,
}

impl Breakdown {
    fn add(&mut self, r: &ExecutionResult) {
        self.acquire.push(r.phases.acquire_ms);
        self.stage.push(r.phases.stage_ms);
        self.handoff.push(r.phases.handoff_ms);
        self.run.push(r.execution_ms);
        self.collect.push(r.phases.collect_ms);
    }

    fn line(self) -> String {
        let m = |v: Vec<f64>| stats(v).median;
        format!(
            "acquire {:.1}, stage {:.1}, hand-off {:.1}, run {:.1}, collect {:.1}",
            m(self.acquire),
            m(self.stage),
            m(self.handoff),
            m(self.run),
            m(self.collect)
        )
    }
}

async fn codebox_sequential(
    executor: &Executor<DockerEngine>,
    settings: &Settings,
    inputs: &Path,
    code: &str,
    workload: &str,
    runs: usize,
) -> (Stats, String, usize) {
    let mut samples = Vec::new();
    let mut breakdown = Breakdown::default();
    let mut warm = 0;
    for _ in 0..runs {
        executor.wait_for_warm_pool(Duration::from_secs(120)).await;
        let started = Instant::now();
        let result = executor
            .execute(request(code, settings, inputs))
            .await
            .unwrap();
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        check(&result, workload);
        warm += usize::from(result.phases.warm);
        breakdown.add(&result);
    }
    (stats(samples), breakdown.line(), warm)
}

/// W3: BURST concurrent W1 requests; (runs per second, failures, warm runs).
async fn codebox_burst(
    executor: &Arc<Executor<DockerEngine>>,
    settings: &Settings,
    inputs: &Path,
) -> (f64, usize, usize) {
    executor.wait_for_warm_pool(Duration::from_secs(120)).await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..BURST)
        .map(|_| {
            let executor = executor.clone();
            let req = request(W1, settings, inputs);
            tokio::spawn(async move { executor.execute(req).await })
        })
        .collect();
    let mut failures = 0;
    let mut warm = 0;
    for task in tasks {
        match task.await {
            Ok(Ok(r)) if r.status == Status::Ok && r.stdout == "1\n" => {
                warm += usize::from(r.phases.warm)
            }
            _ => failures += 1,
        }
    }
    (
        BURST as f64 / started.elapsed().as_secs_f64(),
        failures,
        warm,
    )
}

fn docker_burst(image: &str, inputs: &Path) -> (f64, usize) {
    let started = Instant::now();
    let handles: Vec<_> = (0..BURST)
        .map(|_| {
            let (image, inputs) = (image.to_string(), inputs.to_path_buf());
            std::thread::spawn(move || docker::docker_run(&image, &inputs, W1).1)
        })
        .collect();
    let failures = handles
        .into_iter()
        .map(|h| h.join())
        .filter(|ok| !matches!(ok, Ok(true)))
        .count();
    (BURST as f64 / started.elapsed().as_secs_f64(), failures)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench --bench pool -- 50` runs 50 of each; cargo adds `--bench` itself.
    let runs: usize = docker::runs_asked(30);
    let data = tempfile::tempdir().unwrap();
    let inputs = tempfile::tempdir().unwrap();
    write_csv(inputs.path());
    let base = bench_settings(data.path(), 0);
    // The configured pool (WARM_POOL_SIZE, default 2) for (c); a configured 0 still
    // benchmarks the default.
    let pool_size = match Settings::load(&codebox::config::Sources::from_process(None)) {
        Ok(s) if s.pool.warm_pool_size > 0 => s.pool.warm_pool_size,
        _ => 2,
    };
    let image = base.sandbox.sandbox_image.clone();
    let engine = Arc::new(DockerEngine::connect().await.unwrap());
    println!(
        "codebox benchmark: {runs} runs per workload, W3 = {BURST} concurrent W1, image {image}, \
         MAX_CONCURRENT_EXECUTIONS={}, WARM_POOL_SIZE={pool_size} for (c), runtime {}",
        base.sandbox.max_concurrent_executions,
        base.sandbox.sandbox_runtime.as_str()
    );
    let rss_start = rss_kib("self");

    // (a) plain docker run
    let _ = docker::docker_run(&image, inputs.path(), W1); // first-use effects out of the samples
    let mut a1 = Vec::new();
    let mut a2 = Vec::new();
    for _ in 0..runs {
        let (ms, ok) = docker::docker_run(&image, inputs.path(), W1);
        assert!(ok, "docker run W1 failed");
        a1.push(ms);
    }
    for _ in 0..runs {
        let (ms, ok) = docker::docker_run(&image, inputs.path(), W2_DOCKER);
        assert!(ok, "docker run W2 failed");
        a2.push(ms);
    }
    let (a3, a3_fail) = docker_burst(&image, inputs.path());
    let (a1, a2) = (stats(a1), stats(a2));

    // (b) codebox, pool off
    // As the bot runs it: used containers are removed after the result is returned.
    let off = Arc::new(
        codebox::app::assembly::from_settings(engine.clone(), &base)
            .unwrap()
            .removing_in_background(),
    );
    let _ = off.execute(request(W1, &base, inputs.path())).await;
    let (b1, b1_phases, _) = codebox_sequential(&off, &base, inputs.path(), W1, "W1", runs).await;
    let (b2, b2_phases, _) =
        codebox_sequential(&off, &base, inputs.path(), W2_CODEBOX, "W2", runs).await;
    let (b3, b3_fail, _) = codebox_burst(&off, &base, inputs.path()).await;
    off.shutdown().await;

    // (c) codebox, pool on
    let on_settings = bench_settings(data.path(), pool_size);
    let on = Arc::new(
        codebox::app::assembly::from_settings(engine.clone(), &on_settings)
            .unwrap()
            .removing_in_background(),
    );
    on.wait_for_warm_pool(Duration::from_secs(120)).await;
    let rss_idle = rss_kib("self");
    let (c1, c1_phases, c1_warm) =
        codebox_sequential(&on, &on_settings, inputs.path(), W1, "W1", runs).await;
    let (c2, c2_phases, c2_warm) =
        codebox_sequential(&on, &on_settings, inputs.path(), W2_CODEBOX, "W2", runs).await;
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib("self"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let (c3, c3_fail, c3_warm) = codebox_burst(&on, &on_settings, inputs.path()).await;
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    let status = on.pool_status();
    on.shutdown().await;

    // (d) the same burst with a pool as large as the burst: what a deployment that expects
    // bursts can buy with memory.
    let big_settings = bench_settings(data.path(), BURST);
    let big = Arc::new(
        codebox::app::assembly::from_settings(engine.clone(), &big_settings)
            .unwrap()
            .removing_in_background(),
    );
    let (d3, d3_fail, d3_warm) = codebox_burst(&big, &big_settings, inputs.path()).await;
    big.shutdown().await;

    let owner = codebox::container::reaper::current_owner();
    let leaked = engine
        .list_managed()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.labels.get(OWNER_LABEL) == Some(&owner))
        .count();

    let row = |name: &str, a: &Stats, b: &Stats, c: &Stats| {
        println!(
            "{name:<3} median ms  docker run {:>8.1}  pool off {:>8.1}  pool on {:>8.1}   (a)/(c) {:>6.1}x  (b)/(c) {:>6.1}x",
            a.median,
            b.median,
            c.median,
            a.median / c.median,
            b.median / c.median
        );
        println!(
            "{name:<3} p95 ms     docker run {:>8.1}  pool off {:>8.1}  pool on {:>8.1}",
            a.p95, b.p95, c.p95
        );
    };
    println!();
    row("W1", &a1, &b1, &c1);
    row("W2", &a2, &b2, &c2);
    println!(
        "W3  runs/s     docker run {a3:>8.1}  pool off {b3:>8.1}  pool on {c3:>8.1}   (c)/(a) {:>6.2}x  (c)/(b) {:>6.2}x  (throughput: higher is better)",
        c3 / a3,
        c3 / b3
    );
    println!(
        "W3  failures   docker run {a3_fail}  pool off {b3_fail}  pool on {c3_fail}; warm runs in the pool-on burst: {c3_warm}/{BURST}"
    );
    println!(
        "W3  with WARM_POOL_SIZE={BURST}: {d3:.1} runs/s, {d3_fail} failures, {d3_warm}/{BURST} warm; (d)/(a) {:.2}x",
        d3 / a3
    );
    println!();
    println!("phase medians (ms), pool off W1: {b1_phases}");
    println!("phase medians (ms), pool on  W1: {c1_phases}  ({c1_warm}/{runs} warm)");
    println!("phase medians (ms), pool off W2: {b2_phases}");
    println!("phase medians (ms), pool on  W2: {c2_phases}  ({c2_warm}/{runs} warm)");
    println!("pool: {status:?}");
    println!(
        "RSS of this process (executor + pool): start {:.1} MiB, idle with a full pool {:.1} MiB, peak under W3 {:.1} MiB",
        rss_start as f64 / 1024.0,
        rss_idle as f64 / 1024.0,
        peak.load(Ordering::Relaxed) as f64 / 1024.0
    );
    println!("containers left by this benchmark: {leaked}");
}
