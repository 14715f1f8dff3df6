//! Benchmark: what keeping a conversation's variables costs.
//!
//! 1. W1 `print(1)` through the warm pool, without a session (today's path) and with an
//!    empty session (nothing to restore, an empty snapshot saved): medians, p95 and the
//!    difference; plain `docker run` of the same code in the same run for the ratio.
//! 2. Save and restore of a DataFrame of about 1 MB, 100 MB and 250 MB (memory limit and
//!    snapshot cap raised for the last), also restored through the warm pool and ahead in
//!    a container held for the conversation: the runner's save and restore times, the
//!    snapshot's size, the whole request and its collection (the snapshot brought out),
//!    and pickling the same frame in memory (`pickle.dumps`) in the same process, with the
//!    ratio of the save to it.
//! 3. Small state (a 1,000-row DataFrame, a dict, a seeded RNG) restored through the warm
//!    pool: the restore's median and p95, and the modules the restore itself imported.
//! 4. A conversation's calls: turns of 5 calls, each using the variable the one before
//!    made, through a pool of 2: with the pool full before each call, back to back with the
//!    pool fixed at 2 (`WARM_POOL_MAX=2`), and back to back with the pool sized by demand
//!    (`WARM_POOL_MAX=6`). Between turns the pool is left to fill (a turn takes the model
//!    and the user seconds); how long that took is printed. `-- RUNS --turns-only` runs
//!    only this part.
//!
//! Run with `bash bench/session.sh [RUNS]` (default 30).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/docker.rs"]
mod docker;
#[path = "common/settings.rs"]
mod settings;
#[path = "common/stats.rs"]
mod stats;

use codebox::config::Settings;
use codebox::container::docker::DockerEngine;
use codebox::sandbox::session::{STATE_RESTORE_NAME, SessionIo};
use codebox::sandbox::{ExecutionRequest, ExecutionResult, Executor, Limits, Status};
use docker::docker_w1;
use settings::bench_settings;
use stats::stats;

fn settings(data_dir: &Path, pool: usize, memory_mb: u64, state_mb: u64) -> Settings {
    let mut settings = bench_settings(data_dir, pool);
    settings.sandbox.sandbox_memory_mb = memory_mb;
    settings.sandbox.session_state_max_mb = state_mb;
    settings
}

fn request(
    code: &str,
    settings: &Settings,
    session: Option<SessionIo>,
    inputs: Option<&Path>,
) -> ExecutionRequest {
    ExecutionRequest {
        code: code.to_string(),
        limits: Limits::from_settings(&settings.sandbox),
        input_dir: inputs.map(Path::to_path_buf),
        output_dir: None,
        files: Vec::new(),
        session,
        watch: None,
    }
}

fn session_io(dir: &Path, restore: bool, state_mb: u64) -> SessionIo {
    SessionIo {
        restore,
        save_to: dir.join("snapshot"),
        max_bytes: state_mb * 1024 * 1024,
        conversation: None,
    }
}

/// One execution, and its wall time in ms.
async fn timed(
    executor: &Executor<DockerEngine>,
    request: ExecutionRequest,
) -> (ExecutionResult, f64) {
    let started = Instant::now();
    let result = executor.execute(request).await.unwrap();
    (result, started.elapsed().as_secs_f64() * 1000.0)
}

fn ok(result: &ExecutionResult) {
    assert_eq!(result.status, Status::Ok, "{result:?}");
}

async fn w1(
    executor: &Executor<DockerEngine>,
    settings: &Settings,
    with_session: bool,
    runs: usize,
) -> (f64, f64, usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut samples = Vec::new();
    let mut warm = 0;
    for _ in 0..runs {
        executor.wait_for_warm_pool(Duration::from_secs(120)).await;
        let session = with_session.then(|| session_io(dir.path(), false, 16));
        let (result, elapsed_ms) =
            timed(executor, request("print(1)", settings, session, None)).await;
        samples.push(elapsed_ms);
        ok(&result);
        warm += usize::from(result.phases.warm);
        if with_session {
            assert!(
                result.session.as_ref().is_some_and(|s| s.saved),
                "{result:?}"
            );
        }
    }
    let stats = stats(samples);
    let (median, p95) = (stats.median, stats.p95);
    (median, p95, warm)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let runs: usize = docker::runs_asked(30);
    let data = tempfile::tempdir().unwrap();
    let engine = Arc::new(DockerEngine::connect().await.unwrap());
    if std::env::args().any(|a| a == "--turns-only") {
        turns(engine, data.path(), runs).await;
        return;
    }

    // 1. W1 through the warm pool, with and without a session.
    let base = settings(data.path(), 1, 1024, 256);
    let image = base.sandbox.sandbox_image.clone();
    println!(
        "codebox session benchmark: {runs} runs, image {image}, runtime {}",
        base.sandbox.sandbox_runtime.as_str()
    );
    let pooled = codebox::app::assembly::from_settings(engine.clone(), &base)
        .unwrap()
        .removing_in_background();
    pooled.wait_for_warm_pool(Duration::from_secs(120)).await;
    let _ = docker_w1(&image);
    let docker: Vec<f64> = (0..runs.min(10)).map(|_| docker_w1(&image)).collect();
    let docker_median = stats(docker).median;
    // Alternate the two so that drift on the machine hits both alike.
    let mut plain = Vec::new();
    let mut with_state = Vec::new();
    let mut warm = (0, 0);
    for _ in 0..runs {
        let (m, _, w) = w1(&pooled, &base, false, 1).await;
        plain.push(m);
        warm.0 += w;
        let (m, _, w) = w1(&pooled, &base, true, 1).await;
        with_state.push(m);
        warm.1 += w;
    }
    let plain = stats(plain);
    let (plain_median, plain_p95) = (plain.median, plain.p95);
    let with_state = stats(with_state);
    let (state_median, state_p95) = (with_state.median, with_state.p95);
    println!("W1 print(1), warm pool, request to result (ms):");
    println!("  plain docker run      median {docker_median:8.1}");
    println!(
        "  no session            median {plain_median:8.1}  p95 {plain_p95:8.1}  warm {}/{runs}",
        warm.0
    );
    println!(
        "  empty session         median {state_median:8.1}  p95 {state_p95:8.1}  warm {}/{runs}",
        warm.1
    );
    println!(
        "  added by the session  {:+.1} ms (median); docker run / session ratio {:.1}x",
        state_median - plain_median,
        docker_median / state_median
    );
    pooled.shutdown().await;

    // 2. Save and restore of DataFrames.
    println!("DataFrame state, fresh containers (ms):");
    println!(
        "  {:>8} {:>12} {:>10} {:>10} {:>12} {:>10} {:>12} {:>10} {:>11}",
        "target",
        "snapshot MB",
        "save",
        "restore",
        "save run",
        "collect",
        "restore run",
        "pickle",
        "save/pickle"
    );
    let mut warm_restores = Vec::new();
    for (label, rows, memory_mb, state_mb) in [
        ("1 MB", 65_536u64, 1024, 256),
        ("100 MB", 6_553_600, 2048, 256),
        ("250 MB", 16_384_000, 4096, 512),
    ] {
        let settings = settings(data.path(), 0, memory_mb, state_mb);
        let executor = codebox::app::assembly::from_settings(engine.clone(), &settings).unwrap();
        let dir = tempfile::tempdir().unwrap();
        // Two float64 columns: 16 bytes a row.
        let code = format!(
            "import numpy as np, pandas as pd, pickle, time\ndf = pd.DataFrame({{'a': np.arange({rows}, dtype='float64'), 'b': np.random.rand({rows})}})\nstarted = time.perf_counter()\npickled = pickle.dumps(df, protocol=5)\nprint(round((time.perf_counter() - started) * 1000, 1))\ndel started, pickled"
        );
        let (saved, save_total) = timed(
            &executor,
            request(
                &code,
                &settings,
                Some(session_io(dir.path(), false, state_mb)),
                None,
            ),
        )
        .await;
        ok(&saved);
        let pickle_ms: f64 = saved.stdout.trim().parse().unwrap_or(f64::NAN);
        let report = saved.session.clone().unwrap();
        assert!(report.saved, "{label}: {report:?}");
        let snapshot = dir.path().join("snapshot");
        let size = std::fs::metadata(&snapshot).unwrap().len() as f64 / 1048576.0;
        let warm_copy = tempfile::tempdir().unwrap();
        std::fs::copy(&snapshot, warm_copy.path().join("snapshot")).unwrap();
        let inputs = staged(&snapshot);
        let (restored, restore_total) = timed(
            &executor,
            request(
                "print(len(df))",
                &settings,
                Some(session_io(dir.path(), true, state_mb)),
                Some(inputs.path()),
            ),
        )
        .await;
        ok(&restored);
        assert_eq!(restored.stdout, format!("{rows}\n"));
        warm_restores.push(
            warm_restore(
                engine.clone(),
                &settings,
                label,
                rows,
                staged(&warm_copy.path().join("snapshot")),
                &restored.phases.restore_imported,
            )
            .await,
        );
        println!(
            "  {label:>8} {size:>12.1} {:>10.1} {:>10.1} {save_total:>12.1} {:>10.1} {restore_total:>12.1} {pickle_ms:>10.1} {:>10.2}x",
            saved.phases.save_ms,
            restored.phases.restore_ms,
            saved.phases.collect_ms,
            saved.phases.save_ms / pickle_ms
        );
    }

    println!("The same states restored through the warm pool (pandas imported before the job):");
    for line in warm_restores {
        println!("{line}");
    }

    // 3. Small state restored through the warm pool.
    let pooled_settings = settings(data.path(), 1, 1024, 64);
    let pooled = codebox::app::assembly::from_settings(engine.clone(), &pooled_settings)
        .unwrap()
        .removing_in_background();
    pooled.wait_for_warm_pool(Duration::from_secs(120)).await;
    let dir = tempfile::tempdir().unwrap();
    let saved = pooled
        .execute(request(
            "import numpy as np, pandas as pd, random\nrandom.seed(1)\nnp.random.seed(1)\nsmall = pd.DataFrame({'a': np.arange(1000), 'b': np.random.rand(1000)})\nconfig = {'name': 'demo', 'rows': [1, 2, 3]}",
            &pooled_settings,
            Some(session_io(dir.path(), false, 64)),
            None,
        ))
        .await
        .unwrap();
    ok(&saved);
    let inputs = staged(&dir.path().join("snapshot"));
    let mut restores = Vec::new();
    let mut warm = 0;
    let mut imported = String::new();
    for _ in 0..runs {
        pooled.wait_for_warm_pool(Duration::from_secs(120)).await;
        let out = tempfile::tempdir().unwrap();
        let result = pooled
            .execute(request(
                "import codebox_session\nprint(','.join(codebox_session.last_restore_imports) or '-')\nlen(small)",
                &pooled_settings,
                Some(session_io(out.path(), true, 64)),
                Some(inputs.path()),
            ))
            .await
            .unwrap();
        ok(&result);
        warm += usize::from(result.phases.warm);
        restores.push(result.phases.restore_ms);
        imported = result.stdout.lines().next().unwrap_or("").to_string();
    }
    let restores = stats(restores);
    println!(
        "Small state (1,000-row DataFrame, dict, RNG states) restored through the warm pool:\n  restore median {:.1} ms  p95 {:.1} ms  warm {warm}/{runs}  imported by the restore: {imported}",
        restores.median, restores.p95
    );
    pooled.shutdown().await;

    turns(engine, data.path(), runs).await;
}

/// 4. A conversation's calls back to back.
async fn turns(engine: Arc<DockerEngine>, data: &Path, runs: usize) {
    let turns = runs.clamp(3, 20);
    println!(
        "A turn of 5 calls, each using the one before's variable, pool of 2, {turns} turns (ms per turn):"
    );
    for (label, max, wait_each_call) in [
        ("pool full before each call", 2, true),
        ("back to back, pool fixed at 2", 2, false),
        ("back to back, pool sized by demand", 6, false),
    ] {
        let mut settings = settings(data, 2, 1024, 64);
        settings.pool.warm_pool_max = max;
        let (totals, warm, refills, per_call) =
            conversation(engine.clone(), &settings, turns, wait_each_call).await;
        let totals = stats(totals);
        let refills = stats(refills);
        println!(
            "  {label:<36} median {:8.1}  p95 {:8.1}  warm {warm}/{}  pool refilled between turns in {:.0} ms (median)\n  {:<36} calls 1-5 median {per_call}",
            totals.median,
            totals.p95,
            turns * 5,
            refills.median,
            ""
        );
    }
}

/// One restore of the `rows`-row frame in `inputs` through a warm container, as a line of
/// the report, beside what the fresh container's restore imported.
async fn warm_restore(
    engine: Arc<DockerEngine>,
    settings: &Settings,
    label: &str,
    rows: u64,
    inputs: tempfile::TempDir,
    fresh_imported: &[String],
) -> String {
    let mut settings = settings.clone();
    // Two: a state is restored ahead only in a container the pool can spare.
    settings.pool.warm_pool_size = 2;
    let executor = codebox::app::assembly::from_settings(engine, &settings)
        .unwrap()
        .removing_in_background();
    executor.wait_for_warm_pool(Duration::from_secs(120)).await;
    let out = tempfile::tempdir().unwrap();
    let (restored, total) = timed(
        &executor,
        request(
            "print(len(df))",
            &settings,
            Some(session_io(
                out.path(),
                true,
                settings.sandbox.session_state_max_mb,
            )),
            Some(inputs.path()),
        ),
    )
    .await;
    ok(&restored);
    assert_eq!(restored.stdout, format!("{rows}\n"));

    // The same state restored ahead in a held container, the run coming once it is done.
    executor.wait_for_warm_pool(Duration::from_secs(120)).await;
    let state = inputs.path().join(STATE_RESTORE_NAME);
    let limits = codebox::sandbox::Limits::from_settings(&settings.sandbox);
    let held = executor
        .prepare("bench", &state, &limits, Duration::from_secs(120))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs_f64(
        1.0 + 2.0 * restored.phases.restore_ms / 1000.0,
    ))
    .await;
    let mut io = session_io(out.path(), true, settings.sandbox.session_state_max_mb);
    io.conversation = Some("bench".to_string());
    let (ahead, ahead_total) = timed(
        &executor,
        request("print(len(df))", &settings, Some(io), Some(inputs.path())),
    )
    .await;
    ok(&ahead);
    assert_eq!(ahead.stdout, format!("{rows}\n"));
    executor.shutdown().await;
    let ahead_ms = ahead.session.as_ref().and_then(|s| s.restore_ahead_ms);
    let list = |names: &[String]| {
        if names.is_empty() {
            "nothing".to_string()
        } else {
            names.join(",")
        }
    };
    format!(
        "  {label:>8}: restore {:.1} ms, restore run {total:.1} ms, warm {}; the restore imported {} (fresh container: {})\n  {label:>8}  restored ahead (held {held}, used {}): restore left on the run's path {:.1} ms, restore run {ahead_total:.1} ms; the restore itself took {} ms before the run",
        restored.phases.restore_ms,
        restored.phases.warm,
        list(&restored.phases.restore_imported),
        list(fresh_imported),
        ahead.phases.prepared,
        ahead.phases.restore_ms,
        ahead_ms.map_or_else(|| "-".to_string(), |ms| format!("{ms:.1}")),
    )
}

/// `turns` turns of 5 chained calls; returns each turn's total, the warm calls and how long
/// the pool took to fill again after each turn.
async fn conversation(
    engine: Arc<DockerEngine>,
    settings: &Settings,
    turns: usize,
    wait_each_call: bool,
) -> (Vec<f64>, usize, Vec<f64>, String) {
    let executor = codebox::app::assembly::from_settings(engine, settings)
        .unwrap()
        .removing_in_background();
    executor.wait_for_warm_pool(Duration::from_secs(120)).await;
    let (mut totals, mut warm, mut refills) = (Vec::new(), 0, Vec::new());
    let mut per_call: Vec<Vec<f64>> = vec![Vec::new(); 5];
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..turns {
        let mut total = 0.0;
        let mut inputs: Option<tempfile::TempDir> = None;
        for (call, samples) in per_call.iter_mut().enumerate() {
            if wait_each_call {
                executor.wait_for_warm_pool(Duration::from_secs(120)).await;
            }
            let code = if call == 0 {
                "x = 1".to_string()
            } else {
                "x = x + 1\nprint(x)".to_string()
            };
            let (result, elapsed_ms) = timed(
                &executor,
                request(
                    &code,
                    settings,
                    Some(session_io(dir.path(), inputs.is_some(), 64)),
                    inputs.as_ref().map(|d| d.path()),
                ),
            )
            .await;
            total += elapsed_ms;
            samples.push(elapsed_ms);
            ok(&result);
            if call > 0 {
                assert_eq!(result.stdout, format!("{}\n", call + 1));
            }
            warm += usize::from(result.phases.warm);
            inputs = Some(staged(&dir.path().join("snapshot")));
        }
        totals.push(total);
        let started = Instant::now();
        executor.wait_for_warm_pool(Duration::from_secs(120)).await;
        refills.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    executor.shutdown().await;
    let medians: Vec<String> = per_call
        .into_iter()
        .map(|calls| format!("{:.1}", stats(calls).median))
        .collect();
    (totals, warm, refills, medians.join(" / "))
}

/// A directory holding `snapshot` as the next run's state to restore, readable by the
/// sandbox uid as the executor stages it.
fn staged(snapshot: &Path) -> tempfile::TempDir {
    let inputs = tempfile::tempdir().unwrap();
    std::fs::rename(snapshot, inputs.path().join(STATE_RESTORE_NAME)).unwrap();
    std::fs::set_permissions(
        inputs.path().join(STATE_RESTORE_NAME),
        std::os::unix::fs::PermissionsExt::from_mode(0o444),
    )
    .unwrap();
    std::fs::set_permissions(
        inputs.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    inputs
}
