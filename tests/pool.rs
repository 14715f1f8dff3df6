//! The warm pool against the real Docker engine: a request takes a container started
//! earlier (stack imported), sees its files read-only, and the pool refills; dead and old
//! containers are replaced; other limits go to a fresh container; shutdown leaves nothing.

mod common;

use std::sync::Arc;
use std::time::Duration;

use codebox::config::PackagePolicy;
use codebox::container::docker::DockerEngine;
use codebox::container::engine::Containers;
use codebox::container::{OWNER_LABEL, POOL_LABEL, RUN_ID_LABEL};
use codebox::sandbox::{Executor, JobFile, Status};
use common::index::{LocalIndex, build_wheel};
use common::{request, settings};

const READY: Duration = Duration::from_secs(60);

/// One executor's warm containers (by pool label), as (run id, container id).
async fn pool_containers(executor: &Executor<DockerEngine>) -> Vec<(String, String)> {
    let pool = executor.pool_status().unwrap().id;
    let owner = codebox::container::reaper::current_owner();
    DockerEngine::connect()
        .await
        .unwrap()
        .list_managed()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| {
            c.labels.get(OWNER_LABEL) == Some(&owner) && c.labels.get(POOL_LABEL) == Some(&pool)
        })
        .map(|c| (c.labels[RUN_ID_LABEL].clone(), c.id))
        .collect()
}

async fn wait_gone(run_id: &str) {
    for _ in 0..100 {
        if !common::run_container_exists(run_id).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("container of run {run_id} still exists 10 s after its run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_container_runs_one_job_with_its_files_and_the_pool_refills() {
    let data = tempfile::tempdir().unwrap();
    let settings = settings(data.path(), 1);
    let engine = Arc::new(DockerEngine::connect().await.unwrap());
    let executor = common::executor(engine, &settings).unwrap();
    assert!(executor.wait_for_warm_pool(READY).await, "the pool fills");

    let inputs = tempfile::tempdir().unwrap();
    std::fs::write(inputs.path().join("data.csv"), "a,b\n1,2\n3,4\n").unwrap();
    let mut req = request(
        r#"
import sys
df = load_file("file-1")
print("sum", int(df["b"].sum()), "pandas preloaded:", "pandas" in sys.modules)
try:
    open("/mnt/inputs/data.csv", "a").write("x")
    print("WROTE")
except OSError as e:
    print("read-only", e.errno)
"#,
        &settings,
    );
    req.input_dir = Some(inputs.path().to_path_buf());
    req.files = vec![JobFile {
        file_id: "file-1".into(),
        filename: "data.csv".into(),
        file_type: "csv".into(),
        path: "/mnt/inputs/data.csv".into(),
        data_name: "data.csv".into(),
    }];
    let result = executor.execute(req).await.unwrap();
    assert_eq!(result.status, Status::Ok, "{result:?}");
    assert!(
        result.phases.warm,
        "the warm container was used: {result:?}"
    );
    assert!(result.stdout.contains("sum 6"), "{result:?}");
    assert!(
        result.stdout.contains("pandas preloaded: True"),
        "{result:?}"
    );
    assert!(result.stdout.contains("read-only"), "{result:?}");
    assert!(!result.stdout.contains("WROTE"), "{result:?}");
    assert_eq!(
        std::fs::read_to_string(inputs.path().join("data.csv")).unwrap(),
        "a,b\n1,2\n3,4\n"
    );

    // Single use: the container is removed, and a different one waits now.
    wait_gone(&result.run_id).await;
    assert!(executor.wait_for_warm_pool(READY).await, "the pool refills");
    let waiting = pool_containers(&executor).await;
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let doctor = common::codebox(data.path()).arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout);
    let line = text.lines().find(|l| l.contains("warm pool")).unwrap();
    assert!(line.starts_with("ok"), "{text}");
    let count: usize = line
        .split("; ")
        .nth(1)
        .and_then(|part| part.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line}"));
    assert!(count >= 1, "doctor sees this pool's container: {line}");
    assert_ne!(waiting[0].0, result.run_id);
    let second = executor
        .execute(request("print(2)", &settings))
        .await
        .unwrap();
    assert!(second.phases.warm);
    assert_ne!(second.run_id, result.run_id);
    assert_eq!(second.stdout, "2\n");

    executor.shutdown().await;
    assert!(
        pool_containers(&executor).await.is_empty(),
        "shutdown removes the pool"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_warm_container_is_replaced_and_the_request_still_runs() {
    let data = tempfile::tempdir().unwrap();
    let settings = settings(data.path(), 1);
    let engine = Arc::new(DockerEngine::connect().await.unwrap());
    let executor = common::executor(engine.clone(), &settings).unwrap();
    assert!(executor.wait_for_warm_pool(READY).await);
    let (dead_run, dead_id) = pool_containers(&executor).await.remove(0);
    // What a daemon restart does to a waiting container.
    engine.kill(&dead_id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let result = executor
        .execute(request("print('still runs')", &settings))
        .await
        .unwrap();
    assert_eq!(result.status, Status::Ok, "{result:?}");
    assert_eq!(result.stdout, "still runs\n");
    assert_ne!(result.run_id, dead_run);
    wait_gone(&dead_run).await;
    assert!(
        executor.wait_for_warm_pool(READY).await,
        "refilled after the death"
    );
    assert!(executor.pool_status().unwrap().replaced >= 1);
    executor.shutdown().await;
    assert!(pool_containers(&executor).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_past_their_age_are_replaced() {
    let data = tempfile::tempdir().unwrap();
    let mut settings = settings(data.path(), 1);
    settings.pool.warm_pool_max_age_s = 1.0;
    let engine = Arc::new(DockerEngine::connect().await.unwrap());
    let executor = common::executor(engine, &settings).unwrap();
    assert!(executor.wait_for_warm_pool(READY).await);
    let first = pool_containers(&executor).await;
    let mut replaced = false;
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if executor.pool_status().unwrap().replaced >= 1 {
            replaced = true;
            break;
        }
    }
    assert!(replaced, "{:?}", executor.pool_status());
    wait_gone(&first[0].0).await;
    executor.shutdown().await;
    assert!(pool_containers(&executor).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_container_limits_get_a_fresh_container() {
    let data = tempfile::tempdir().unwrap();
    let settings = settings(data.path(), 1);
    let engine = Arc::new(DockerEngine::connect().await.unwrap());
    let executor = common::executor(engine, &settings).unwrap();
    assert!(executor.wait_for_warm_pool(READY).await);
    let mut req = request("print('small')", &settings);
    req.limits = req.limits.narrowed(None, Some(256));
    let result = executor.execute(req).await.unwrap();
    assert_eq!(result.stdout, "small\n");
    assert!(
        !result.phases.warm,
        "memory is fixed at creation: {result:?}"
    );
    // A narrower time limit travels with the job, so the warm container serves it.
    let mut req = request("print('quick')", &settings);
    req.limits = req.limits.narrowed(Some(5.0), None);
    let result = executor.execute(req).await.unwrap();
    assert!(result.phases.warm, "{result:?}");
    executor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_container_gets_missing_packages_and_stays_single_use_under_hostile_code() {
    let data = tempfile::tempdir().unwrap();
    let wheels = tempfile::tempdir().unwrap();
    let index = LocalIndex::start().await;
    index.add_wheel(
        "cbx-warm",
        build_wheel(wheels.path(), "cbx_warm", "1.0", "VALUE = 7\n"),
    );
    let mut settings = settings(data.path(), 1);
    settings.packages.pip_index_url = Some(index.url.clone());
    // The test wheel is on no curated list.
    settings.packages.package_policy = PackagePolicy::Denylist;
    let engine = Arc::new(DockerEngine::connect().await.unwrap());
    let executor = common::executor(engine, &settings).unwrap();
    assert!(executor.wait_for_warm_pool(READY).await);
    let result = executor
        .execute(request("import cbx_warm\nprint(cbx_warm.VALUE)", &settings))
        .await
        .unwrap();
    assert_eq!(result.status, Status::Ok, "{result:?}");
    assert!(result.phases.warm);
    assert_eq!(result.stdout, "7\n");
    assert_eq!(result.packages_installed, ["cbx-warm"]);

    // Code that tries to leave something behind for the next job: the next job gets
    // another container, where none of it exists.
    assert!(executor.wait_for_warm_pool(READY).await);
    let planted = executor
        .execute(request(
            "import os, subprocess\nopen('/tmp/planted', 'w').write('x')\nsubprocess.Popen(['sleep', '600'])\nprint('planted')",
            &settings,
        ))
        .await
        .unwrap();
    assert!(
        planted.phases.warm && planted.stdout.contains("planted"),
        "{planted:?}"
    );
    assert!(executor.wait_for_warm_pool(READY).await);
    let next = executor
        .execute(request(
            "import os\nprint(os.path.exists('/tmp/planted'), len([p for p in os.listdir('/proc') if p.isdigit()]))",
            &settings,
        ))
        .await
        .unwrap();
    assert!(next.phases.warm);
    assert!(next.stdout.starts_with("False "), "{next:?}");
    executor.shutdown().await;
    assert!(pool_containers(&executor).await.is_empty());
}

/// Restarts the Docker daemon under a live pool: the waiting containers die with it, and
/// the pool must refill once the daemon answers again. Ignored by default because it stops
/// the daemon every other test uses; run it alone:
/// `cargo test --test pool -- --ignored --test-threads 1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn the_pool_refills_after_a_daemon_restart() {
    let data = tempfile::tempdir().unwrap();
    let settings = settings(data.path(), 2);
    let engine = Arc::new(DockerEngine::connect().await.unwrap());
    let executor = common::executor(engine, &settings).unwrap();
    assert!(executor.wait_for_warm_pool(READY).await);
    let before: Vec<String> = pool_containers(&executor)
        .await
        .into_iter()
        .map(|c| c.0)
        .collect();
    let sh = |script: &str| {
        assert!(
            std::process::Command::new("sh")
                .args(["-c", script])
                .status()
                .unwrap()
                .success(),
            "{script}"
        )
    };
    sh("pkill -x dockerd; while pgrep -x dockerd >/dev/null; do sleep 0.2; done");
    tokio::time::sleep(Duration::from_secs(3)).await;
    sh("nohup dockerd >>/var/log/dockerd.log 2>&1 & \
        for i in $(seq 100); do docker info >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1");
    let mut refilled = false;
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now: Vec<String> = pool_containers(&executor)
            .await
            .into_iter()
            .map(|c| c.0)
            .collect();
        if executor.pool_status().unwrap().idle == 2 && now.iter().all(|r| !before.contains(r)) {
            refilled = true;
            break;
        }
    }
    assert!(refilled, "{:?}", executor.pool_status());
    let result = executor
        .execute(request("print('after restart')", &settings))
        .await
        .unwrap();
    assert!(result.phases.warm, "{result:?}");
    assert_eq!(result.stdout, "after restart\n");
    executor.shutdown().await;
    assert!(pool_containers(&executor).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_container_shows_figures_and_saves_then_restores_a_session() {
    use codebox::sandbox::session::{STATE_RESTORE_NAME, SessionIo};
    use std::os::unix::fs::PermissionsExt;

    let data = tempfile::tempdir().unwrap();
    let settings = settings(data.path(), 1);
    let engine = Arc::new(DockerEngine::connect().await.unwrap());
    let executor = common::executor(engine, &settings).unwrap();
    let state = tempfile::tempdir().unwrap();
    let io = |restore: bool| SessionIo {
        restore,
        save_to: state.path().join("snapshot"),
        max_bytes: 16 * 1024 * 1024,
        conversation: None,
    };

    assert!(executor.wait_for_warm_pool(READY).await, "the pool fills");
    let mut first = request(
        "import matplotlib.pyplot as plt\nx = 41\nplt.plot([1, 2]); plt.show()\n'shown'",
        &settings,
    );
    first.session = Some(io(false));
    let saved = executor.execute(first).await.unwrap();
    assert!(saved.phases.warm, "{saved:?}");
    assert_eq!(saved.status, Status::Ok, "{saved:?}");
    // The figure is described where it was shown, for a model that cannot see it.
    assert_eq!(
        saved.stdout,
        "[figure_1.png: line chart, 1 series: line 2 points: (0, 1), (1, 2)]\n'shown'\n"
    );
    let names: Vec<&str> = saved.output_files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["figure_1.png"]);
    let report = saved.session.clone().unwrap();
    assert!(report.saved, "{report:?}");
    // `_`, the value the run showed last, is kept like a variable, as in IPython.
    assert_eq!(report.kept, ["x", "_"]);

    let inputs = tempfile::tempdir().unwrap();
    let staged = inputs.path().join(STATE_RESTORE_NAME);
    std::fs::rename(state.path().join("snapshot"), &staged).unwrap();
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(inputs.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(executor.wait_for_warm_pool(READY).await, "the pool refills");
    let mut second = request("print(x + 1, plt.__name__, _)", &settings);
    second.input_dir = Some(inputs.path().to_path_buf());
    second.session = Some(io(true));
    let restored = executor.execute(second).await.unwrap();
    assert!(restored.phases.warm);
    assert_eq!(
        restored.stdout, "42 matplotlib.pyplot shown\n",
        "{restored:?}"
    );
    assert!(restored.phases.restore_ms > 0.0);
    executor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_held_for_a_conversation_restores_its_state_before_the_code_comes() {
    use codebox::sandbox::session::{STATE_RESTORE_NAME, SessionIo};
    use std::os::unix::fs::PermissionsExt;

    let data = tempfile::tempdir().unwrap();
    let settings = settings(data.path(), 2);
    let engine = Arc::new(DockerEngine::connect().await.unwrap());
    let executor = common::executor(engine, &settings).unwrap();
    let state = tempfile::tempdir().unwrap();
    let io = |restore: bool| SessionIo {
        restore,
        save_to: state.path().join("snapshot"),
        max_bytes: 16 * 1024 * 1024,
        conversation: Some("user/channel".to_string()),
    };
    assert!(executor.wait_for_warm_pool(READY).await, "the pool fills");
    let mut first = request(
        "import pandas as pd\nframe = pd.DataFrame({'v': range(100000)})\nx = 41",
        &settings,
    );
    first.session = Some(io(false));
    let saved = executor.execute(first).await.unwrap();
    assert!(saved.session.as_ref().unwrap().saved, "{saved:?}");
    assert!(!saved.phases.prepared);

    // The conversation's state, as the store keeps it; a run's staging hard-links it.
    let kept = tempfile::tempdir().unwrap();
    let snapshot = kept.path().join("state");
    std::fs::rename(state.path().join("snapshot"), &snapshot).unwrap();
    std::fs::set_permissions(&snapshot, std::fs::Permissions::from_mode(0o444)).unwrap();
    let staged = |how: fn(&std::path::Path, &std::path::Path)| {
        let inputs = tempfile::tempdir().unwrap();
        how(&snapshot, &inputs.path().join(STATE_RESTORE_NAME));
        std::fs::set_permissions(inputs.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        inputs
    };
    let link = |from: &std::path::Path, to: &std::path::Path| std::fs::hard_link(from, to).unwrap();
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        std::fs::copy(from, to).unwrap();
    };

    assert!(executor.wait_for_warm_pool(READY).await, "the pool refills");
    assert!(!executor.holds_for("user/channel"));
    let limits = codebox::sandbox::Limits::from_settings(&settings.sandbox);
    assert!(
        executor
            .prepare("user/channel", &snapshot, &limits, READY)
            .await
            .unwrap()
    );
    assert!(executor.holds_for("user/channel"));
    // The pool's last waiting container stays for runs that will certainly come.
    assert!(
        !executor
            .prepare("user/other", &snapshot, &limits, Duration::ZERO)
            .await
            .unwrap()
    );
    assert!(!executor.holds_for("user/other"));
    // Asked again for the same state: the same container stays held.
    assert!(
        executor
            .prepare("user/channel", &snapshot, &limits, READY)
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let inputs = staged(link);
    let mut second = request("print(x + 1, len(frame))", &settings);
    second.input_dir = Some(inputs.path().to_path_buf());
    second.session = Some(io(true));
    let restored = executor.execute(second).await.unwrap();
    assert_eq!(restored.stdout, "42 100000\n", "{restored:?}");
    assert!(
        restored.phases.prepared && restored.phases.warm,
        "{restored:?}"
    );
    let report = restored.session.clone().unwrap();
    let ahead = report
        .restore_ahead_ms
        .expect("the restore says it was done ahead");
    assert!(ahead > 0.0, "{report:?}");
    assert!(
        !executor.holds_for("user/channel"),
        "a held container runs one job"
    );

    // A state that is not the held one (another file) is never run in it.
    assert!(executor.wait_for_warm_pool(READY).await, "the pool refills");
    assert!(
        executor
            .prepare("user/channel", &snapshot, &limits, READY)
            .await
            .unwrap()
    );
    let other = staged(copy);
    let mut third = request("print(x + 1)", &settings);
    third.input_dir = Some(other.path().to_path_buf());
    third.session = Some(io(true));
    let fresh = executor.execute(third).await.unwrap();
    assert_eq!(fresh.stdout, "42\n", "{fresh:?}");
    assert!(!fresh.phases.prepared, "{fresh:?}");
    assert_eq!(fresh.session.unwrap().restore_ahead_ms, None);
    assert!(!executor.holds_for("user/channel"));

    // Held containers go with the executor.
    assert!(executor.wait_for_warm_pool(READY).await, "the pool refills");
    assert!(
        executor
            .prepare("user/channel", &snapshot, &limits, READY)
            .await
            .unwrap()
    );
    executor.shutdown().await;
    assert!(pool_containers(&executor).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_back_to_back_grow_the_pool_so_the_next_burst_finds_it_warm() {
    let data = tempfile::tempdir().unwrap();
    let mut settings = settings(data.path(), 1);
    settings.pool.warm_pool_max = 3;
    let engine = Arc::new(DockerEngine::connect().await.unwrap());
    let executor = common::executor(engine, &settings).unwrap();
    assert!(executor.wait_for_warm_pool(READY).await, "the pool fills");
    assert_eq!(executor.pool_status().unwrap().target, 1);

    // A model's three tool calls at once: one warm container is all there is.
    let calls = (0..3).map(|n| executor.execute(request(&format!("print({n})"), &settings)));
    for result in futures_util::future::join_all(calls).await {
        let result = result.unwrap();
        assert_eq!(result.status, Status::Ok, "{result:?}");
    }
    assert_eq!(
        executor.pool_status().unwrap().target,
        3,
        "three calls at once ask for three"
    );
    assert!(executor.wait_for_warm_pool(READY).await, "the pool grows");
    assert_eq!(pool_containers(&executor).await.len(), 3);

    // The next turn's three calls each find a warm container.
    for n in 0..3 {
        let result = executor
            .execute(request(&format!("print({n})"), &settings))
            .await
            .unwrap();
        assert_eq!(result.status, Status::Ok, "{result:?}");
        assert!(
            result.phases.warm,
            "call {n} of the burst was warm: {result:?}"
        );
    }

    executor.shutdown().await;
    assert!(
        pool_containers(&executor).await.is_empty(),
        "shutdown removes the grown pool"
    );
}
