//! The executor's endings, driven by a scripted engine: no Docker, and deadlines in paused
//! time.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::{PoolSettings, SandboxSettings};
use crate::container::scripted::{Call, Script, ScriptedEngine};

fn ready() -> String {
    format!(
        r#"{{"event":"ready","protocol":{}}}"#,
        crate::sandbox::protocol::PROTOCOL_VERSION
    )
}
const STARTED: &str = r#"{"event":"started"}"#;
const OK_RESULT: &str = r#"{"event":"result","status":"ok","exit_code":0,"stdout":"1\n","stderr":"","stdout_truncated":false,"stderr_truncated":false,"execution_ms":3.0,"error":null}"#;
const DONE: &str = r#"{"event":"done"}"#;
/// Every job of these tests gets this key; lines after the job carry its MAC.
const TEST_KEY: &str = "a-fixed-key-for-scripted-runners";

fn test_key() -> String {
    TEST_KEY.to_string()
}

/// A line as the runner sends it once it holds the job's key.
fn signed(line: &str) -> String {
    format!(
        "{} {line}",
        crate::sandbox::protocol::line_mac(TEST_KEY.as_bytes(), line.as_bytes())
    )
}

/// The one place tests build an executor.
fn executor(engine: &Arc<ScriptedEngine>, data: &Path) -> Executor<ScriptedEngine> {
    let sandbox = SandboxSettings {
        sandbox_startup_timeout: 10.0,
        ..SandboxSettings::default()
    };
    let pool = PoolSettings {
        warm_pool_size: 0,
        ..PoolSettings::default()
    };
    let mut executor = Executor::new(
        engine.clone(),
        &sandbox,
        &pool,
        data,
        None,
        Arc::new(crate::container::retirer::Retirer::default()),
    )
    .unwrap();
    executor.job_keys = test_key;
    executor
}

fn request(output_dir: &Path) -> ExecutionRequest {
    let mut limits = Limits::from_settings(&SandboxSettings::default());
    limits.timeout = Duration::from_secs(5);
    ExecutionRequest {
        code: "print(1)".to_string(),
        limits,
        input_dir: None,
        output_dir: Some(output_dir.to_path_buf()),
        files: Vec::new(),
        session: None,
        watch: None,
    }
}

/// A runner that got going: ready, then started.
fn running() -> Script {
    Script::new().line(&ready()).line(&signed(STARTED))
}

fn tar_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, name, data).unwrap();
    builder.into_inner().unwrap()
}

/// The id the scripted engine gave the one container of a test.
const CONTAINER: &str = "scripted-1";

#[tokio::test]
async fn a_reported_run_is_ok_with_its_outputs() {
    let data = tempfile::tempdir().unwrap();
    let archive = tar_of("table.csv", b"a,b\n1,2\n");
    let engine = Arc::new(
        ScriptedEngine::new().script(
            running()
                .line(&signed(OK_RESULT))
                .line(&signed(&format!(
                    r#"{{"event":"outputs","bytes":{},"sha256":"{}","flags":[]}}"#,
                    archive.len(),
                    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&archive))
                )))
                .stdout(archive)
                .line(&signed(DONE)),
        ),
    );
    let out = data.path().join("out");
    let result = executor(&engine, data.path())
        .execute(request(&out))
        .await
        .unwrap();
    assert_eq!(result.status, Status::Ok);
    assert_eq!(result.stdout, "1\n");
    assert_eq!(result.exit_code, Some(0));
    assert!(result.flags.is_empty(), "{:?}", result.flags);
    assert_eq!(result.output_files.len(), 1);
    assert_eq!(result.output_files[0].name, "table.csv");
    assert_eq!(std::fs::read(out.join("table.csv")).unwrap(), b"a,b\n1,2\n");
    let job = String::from_utf8(engine.stdin(CONTAINER)).unwrap();
    assert!(job.contains(r#""code":"print(1)""#), "{job}");
    assert!(engine.killed().is_empty());
    assert_eq!(engine.removed(), [CONTAINER]);
}

#[tokio::test(start_paused = true)]
async fn a_silent_run_past_its_deadline_is_killed_as_a_timeout() {
    let data = tempfile::tempdir().unwrap();
    let engine = Arc::new(ScriptedEngine::new().script(running().hang()));
    let result = executor(&engine, data.path())
        .execute(request(&data.path().join("out")))
        .await
        .unwrap();
    assert_eq!(result.status, Status::Timeout);
    assert_eq!(result.exit_code, None);
    assert_eq!(result.outcome.error.unwrap().kind, "TimeoutError");
    assert_eq!(engine.killed(), [CONTAINER]);
    assert_eq!(engine.removed(), [CONTAINER]);
}

#[tokio::test(start_paused = true)]
async fn a_runner_that_never_starts_the_code_is_a_startup_timeout() {
    let data = tempfile::tempdir().unwrap();
    let engine = Arc::new(ScriptedEngine::new().script(Script::new().hang()));
    let err = executor(&engine, data.path())
        .execute(request(&data.path().join("out")))
        .await
        .unwrap_err();
    assert!(matches!(err, ExecutorError::StartupTimeout { .. }), "{err}");
    assert_eq!(engine.killed(), [CONTAINER]);
    assert_eq!(engine.removed(), [CONTAINER]);
}

#[tokio::test]
async fn a_stream_that_ends_without_a_result_after_an_oom_kill_is_oom() {
    let data = tempfile::tempdir().unwrap();
    let engine = Arc::new(ScriptedEngine::new().script(running()).oom_killed());
    let result = executor(&engine, data.path())
        .execute(request(&data.path().join("out")))
        .await
        .unwrap();
    assert_eq!(result.status, Status::Oom);
    assert_eq!(result.outcome.error.unwrap().kind, "MemoryError");
    assert!(engine.calls().contains(&Call::ExitState(CONTAINER.into())));
    assert_eq!(engine.removed(), [CONTAINER]);
}

#[tokio::test]
async fn a_stream_that_ends_without_a_result_or_oom_is_killed() {
    let data = tempfile::tempdir().unwrap();
    let engine = Arc::new(
        ScriptedEngine::new()
            .script(running().stderr("runner: segfault"))
            .exit_code(137),
    );
    let result = executor(&engine, data.path())
        .execute(request(&data.path().join("out")))
        .await
        .unwrap();
    assert_eq!(result.status, Status::Killed);
    assert_eq!(result.exit_code, Some(137));
    let error = result.outcome.error.unwrap();
    assert_eq!(error.kind, "SandboxError");
    assert!(error.message.contains("exit code 137"), "{}", error.message);
    assert!(
        error.message.contains("runner: segfault"),
        "{}",
        error.message
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_run_still_removes_its_container() {
    let data = tempfile::tempdir().unwrap();
    let engine = Arc::new(
        ScriptedEngine::new()
            .script(running().hang())
            .remove_delay(Duration::from_secs(2)),
    );
    let executor = executor(&engine, data.path());
    let out = data.path().join("out");
    let mut run = Box::pin(executor.execute(request(&out)));
    let under_way = tokio::time::timeout(Duration::from_secs(1), run.as_mut()).await;
    assert!(under_way.is_err(), "the code is still running");
    assert!(engine.calls().contains(&Call::Start(CONTAINER.into())));
    drop(run);
    executor.shutdown().await;
    assert_eq!(engine.removed(), [CONTAINER]);
}

#[tokio::test(start_paused = true)]
async fn a_garbage_line_kills_the_run_as_a_protocol_error() {
    let data = tempfile::tempdir().unwrap();
    let engine = Arc::new(ScriptedEngine::new().script(running().line("not json").hang()));
    let result = executor(&engine, data.path())
        .execute(request(&data.path().join("out")))
        .await
        .unwrap();
    assert_eq!(result.status, Status::Killed);
    assert_eq!(result.outcome.error.unwrap().kind, "ProtocolError");
    assert!(result.flags.iter().any(|f| f.flag == "protocol_error"));
    assert_eq!(engine.killed(), [CONTAINER]);
    assert_eq!(engine.removed(), [CONTAINER]);
}

#[tokio::test(start_paused = true)]
async fn a_garbage_line_after_an_ok_result_is_never_ok() {
    let data = tempfile::tempdir().unwrap();
    let engine = Arc::new(
        ScriptedEngine::new().script(
            running()
                .line(&signed(OK_RESULT))
                .line(&signed("{\"event\":42}"))
                .hang(),
        ),
    );
    let result = executor(&engine, data.path())
        .execute(request(&data.path().join("out")))
        .await
        .unwrap();
    assert_ne!(result.status, Status::Ok);
    assert_eq!(result.outcome.error.unwrap().kind, "ProtocolError");
    assert!(result.flags.iter().any(|f| f.flag == "protocol_error"));
    assert_eq!(engine.killed(), [CONTAINER]);
}

#[tokio::test]
async fn an_unreachable_daemon_is_a_clear_error() {
    let data = tempfile::tempdir().unwrap();
    let engine = Arc::new(ScriptedEngine::new().unavailable());
    let err = executor(&engine, data.path())
        .execute(request(&data.path().join("out")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExecutorError::Engine(EngineError::Unavailable { .. })),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("cannot reach the Docker daemon"),
        "{err}"
    );
}

#[tokio::test]
async fn a_daemon_that_goes_away_mid_run_is_a_clear_error() {
    let data = tempfile::tempdir().unwrap();
    let engine = Arc::new(ScriptedEngine::new().script(running().daemon_dies()));
    let err = executor(&engine, data.path())
        .execute(request(&data.path().join("out")))
        .await
        .unwrap_err();
    assert!(matches!(err, ExecutorError::DaemonGone { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("outcome is unknown"), "{message}");
    assert!(
        message.contains("cannot reach the Docker daemon"),
        "{message}"
    );
}

#[tokio::test]
async fn a_stream_that_breaks_off_without_a_result_is_killed_and_says_why() {
    let data = tempfile::tempdir().unwrap();
    let engine = Arc::new(
        ScriptedEngine::new()
            .script(running().fail("connection reset"))
            .exit_code(1),
    );
    let result = executor(&engine, data.path())
        .execute(request(&data.path().join("out")))
        .await
        .unwrap();
    assert_eq!(result.status, Status::Killed);
    let message = result.outcome.error.unwrap().message;
    assert!(message.contains("connection reset"), "{message}");
    assert_eq!(engine.removed(), [CONTAINER]);
}

#[tokio::test]
async fn a_runner_of_another_protocol_version_never_gets_the_job() {
    for ready in [r#"{"event":"ready"}"#, r#"{"event":"ready","protocol":1}"#] {
        let data = tempfile::tempdir().unwrap();
        let engine = Arc::new(ScriptedEngine::new().script(Script::new().line(ready).hang()));
        let err = executor(&engine, data.path())
            .execute(request(&data.path().join("out")))
            .await
            .unwrap_err();
        assert!(matches!(err, ExecutorError::OutdatedImage(_)), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("codebox-sandbox:latest is out of date"),
            "{message}"
        );
        assert!(
            message.contains("codebox image build --tag codebox-sandbox:latest"),
            "{message}"
        );
        assert!(engine.stdin(CONTAINER).is_empty(), "the job was written");
        assert_eq!(engine.killed(), [CONTAINER]);
        assert_eq!(engine.removed(), [CONTAINER]);
    }
}

#[tokio::test]
async fn the_job_waits_for_the_runner_to_be_ready() {
    let data = tempfile::tempdir().unwrap();
    let engine = Arc::new(ScriptedEngine::new().script(Script::new().hang()));
    let executor = executor(&engine, data.path());
    let out = data.path().join("out");
    let mut run = Box::pin(executor.execute(request(&out)));
    let under_way = tokio::time::timeout(Duration::from_millis(200), run.as_mut()).await;
    assert!(under_way.is_err());
    assert!(engine.calls().contains(&Call::Start(CONTAINER.into())));
    assert!(engine.stdin(CONTAINER).is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_unauthenticated_result_is_a_protocol_error_never_ok() {
    let data = tempfile::tempdir().unwrap();
    // What code holding the runner's stdout would write: a well-formed result without the
    // job key's MAC.
    let engine = Arc::new(ScriptedEngine::new().script(running().line(OK_RESULT).hang()));
    let result = executor(&engine, data.path())
        .execute(request(&data.path().join("out")))
        .await
        .unwrap();
    assert_eq!(result.status, Status::Killed);
    assert_eq!(result.stdout, "", "nothing of the forgery is believed");
    assert!(result.flags.iter().any(|f| f.flag == "protocol_error"));
    assert_eq!(engine.killed(), [CONTAINER]);
}

#[tokio::test(start_paused = true)]
async fn a_second_started_cannot_rearm_the_deadline() {
    let data = tempfile::tempdir().unwrap();
    let engine = Arc::new(ScriptedEngine::new().script(running().line(&signed(STARTED)).hang()));
    let result = executor(&engine, data.path())
        .execute(request(&data.path().join("out")))
        .await
        .unwrap();
    assert_eq!(result.status, Status::Killed);
    assert!(
        result.flags.iter().any(|f| f.flag == "protocol_error"),
        "{:?}",
        result.flags
    );
    assert_eq!(engine.killed(), [CONTAINER]);
}
