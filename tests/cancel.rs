//! A request dropped mid-run (a cancelled future, a closed connection) removes its container.
//! Alone in its own test binary so that every container owned by this process is its own.

mod common;

use std::sync::Arc;
use std::time::Duration;

use codebox::container::OWNER_LABEL;
use codebox::container::docker::DockerEngine;
use codebox::container::engine::Containers;
use codebox::container::reaper::current_owner;

async fn containers_owned_by_this_process(engine: &DockerEngine) -> usize {
    let owner = current_owner();
    engine
        .list_managed()
        .await
        .unwrap()
        .iter()
        .filter(|c| c.labels.get(OWNER_LABEL) == Some(&owner))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_request_leaves_no_container() {
    let data = tempfile::tempdir().unwrap();
    let settings = common::settings(data.path(), 0);
    let engine = Arc::new(DockerEngine::connect().await.unwrap());
    let executor = Arc::new(common::executor(engine.clone(), &settings).unwrap());
    let request = common::request("import time\ntime.sleep(60)", &settings);
    let task = {
        let executor = executor.clone();
        tokio::spawn(async move { executor.execute(request).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        containers_owned_by_this_process(&engine).await,
        1,
        "the run is under way"
    );
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let mut remaining = usize::MAX;
    for _ in 0..50 {
        remaining = containers_owned_by_this_process(&engine).await;
        if remaining == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(remaining, 0, "the cancelled run's container was removed");
}
