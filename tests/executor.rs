//! The executor as a library, against the real Docker engine: concurrency, cancellation and
//! the start-up reap of containers left by dead processes.

mod common;

use std::sync::Arc;

use codebox::config::Settings;
use codebox::container::RUN_ID_LABEL;
use codebox::container::docker::DockerEngine;
use codebox::container::engine::Containers;
use codebox::sandbox::spec::{ContainerSpec, container_config, container_name};
use codebox::sandbox::{Limits, Status};
use common::request;

/// Settings of these tests: no warm pool, `concurrency` runs at once.
fn settings(data_dir: &std::path::Path, concurrency: usize) -> Settings {
    let mut settings = common::settings(data_dir, 0);
    settings.sandbox.max_concurrent_executions = concurrency;
    settings
}

async fn run_labels() -> Vec<String> {
    common::containers_by_label(RUN_ID_LABEL)
        .await
        .into_iter()
        .map(|(run_id, _)| run_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_runs_all_succeed() {
    let data = tempfile::tempdir().unwrap();
    let settings = settings(data.path(), 4);
    let engine = Arc::new(DockerEngine::connect().await.unwrap());
    let executor = Arc::new(common::executor(engine, &settings).unwrap());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let executor = executor.clone();
        let req = request(
            &format!(
                "import time\ntime.sleep(0.3)\nopen('n.txt', 'w').write('{i}')\nprint({i} * {i})"
            ),
            &settings,
        );
        tasks.push(tokio::spawn(async move { executor.execute(req).await }));
    }
    let mut run_ids = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap().unwrap();
        assert_eq!(result.status, Status::Ok, "{result:?}");
        assert_eq!(result.stdout, format!("{}\n", i * i));
        assert_eq!(result.output_files.len(), 1);
        assert_eq!(
            std::fs::read_to_string(&result.output_files[0].path).unwrap(),
            i.to_string()
        );
        run_ids.push(result.run_id);
    }
    let remaining = run_labels().await;
    for id in run_ids {
        assert!(!remaining.contains(&id), "container of {id} remains");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_reaps_containers_of_dead_owners_only() {
    let data = tempfile::tempdir().unwrap();
    let settings = settings(data.path(), 1);
    let engine = Arc::new(DockerEngine::connect().await.unwrap());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let make = |run_id: &str, owner: String| ContainerSpec {
        image: settings.sandbox.sandbox_image.clone(),
        limits: Limits::from_settings(&settings.sandbox),
        input_dir: None,
        run_id: run_id.to_string(),
        owner,
        preload: false,
        pool_id: None,
        packages_dir: None,
        state_mb: None,
        code_uid: codebox::sandbox::run_uids::next_run_uid(),
    };
    let dead_id = format!("reaptest-dead-{}", std::process::id());
    let live_id = format!("reaptest-live-{}", std::process::id());
    // pid 0 is never a live process's pid.
    let dead = make(&dead_id, format!("{host}:0:1"));
    let live = make(&live_id, codebox::container::reaper::current_owner());
    let dead_container = engine
        .create(&container_name(&dead_id), container_config(&dead))
        .await
        .unwrap();
    let live_container = engine
        .create(&container_name(&live_id), container_config(&live))
        .await
        .unwrap();

    let executor = common::executor(engine.clone(), &settings).unwrap();
    let removed = executor.reap_orphans().await.unwrap();
    assert!(removed >= 1);
    let labels = run_labels().await;
    assert!(!labels.contains(&dead_id), "dead owner's container reaped");
    assert!(
        labels.contains(&live_id),
        "a live owner's container is kept"
    );
    engine.remove(&live_container).await.unwrap();
    engine.remove(&dead_container).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_removal_finishes_by_shutdown() {
    let data = tempfile::tempdir().unwrap();
    let settings = settings(data.path(), 2);
    let engine = Arc::new(DockerEngine::connect().await.unwrap());
    let executor = common::executor(engine, &settings)
        .unwrap()
        .removing_in_background();
    let mut run_ids = Vec::new();
    for i in 0..3 {
        let result = executor
            .execute(request(&format!("print({i})"), &settings))
            .await
            .unwrap();
        assert_eq!(result.stdout, format!("{i}\n"));
        run_ids.push(result.run_id);
    }
    executor.shutdown().await;
    let remaining = run_labels().await;
    for id in run_ids {
        assert!(
            !remaining.contains(&id),
            "container of {id} remains after shutdown"
        );
    }
}
