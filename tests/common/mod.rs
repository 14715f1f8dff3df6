//! Helpers shared by the integration tests. They talk to the real Docker engine and the real
//! `codebox` binary; scripts/test.sh prepares both.
#![allow(dead_code)]

pub mod bot;
pub mod bridge;
pub mod docs;
pub mod executor;
pub mod fake;
pub mod index;
pub mod tmpfs;

use std::path::Path;
use std::process::{Command, Output};

use codebox::container::RUN_ID_LABEL;
use codebox::container::docker::DockerEngine;
use codebox::container::engine::Containers;
use serde_json::Value;

pub const SECRET_VARS: [(&str, &str); 3] = [
    ("DISCORD_TOKEN", "canary-discord-5f1e2d"),
    ("OPENAI_API_KEY", "canary-openai-9c3b7a"),
    (
        "MONGODB_URI",
        "mongodb://canary-user:canary-pass-4d2e@db.invalid/x",
    ),
];

/// The `codebox` binary with a private DATA_DIR and no inherited codebox settings.
pub fn codebox(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_codebox"));
    for name in codebox::config::setting_names() {
        cmd.env_remove(name);
    }
    cmd.env("DATA_DIR", data_dir);
    cmd
}

/// `codebox ARGS` in `data`, which must succeed; its stdout as JSON.
pub fn cli_json(data: &Path, args: &[&str]) -> Value {
    let out = codebox(data).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An executor from whole settings (each test states its settings in one struct).
pub fn executor(
    engine: std::sync::Arc<DockerEngine>,
    settings: &codebox::config::Settings,
) -> Result<codebox::sandbox::Executor<DockerEngine>, codebox::app::assembly::AssemblyError> {
    codebox::app::assembly::from_settings(engine, settings)
}

pub struct Run {
    pub json: Value,
    pub output: Output,
}

impl Run {
    pub fn status(&self) -> &str {
        self.json["status"].as_str().unwrap_or("")
    }
    pub fn stdout(&self) -> &str {
        self.json["stdout"].as_str().unwrap_or("")
    }
    pub fn stderr(&self) -> &str {
        self.json["stderr"].as_str().unwrap_or("")
    }
    pub fn run_id(&self) -> &str {
        self.json["run_id"].as_str().unwrap_or("")
    }
    pub fn flags(&self) -> Vec<(String, Option<String>)> {
        self.json["flags"]
            .as_array()
            .map(|flags| {
                flags
                    .iter()
                    .map(|f| {
                        (
                            f["flag"].as_str().unwrap_or("").to_string(),
                            f["name"].as_str().map(str::to_string),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    pub fn output_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.json["output_files"]
            .as_array()
            .map(|files| {
                files
                    .iter()
                    .map(|f| f["name"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// `codebox run --json ARGS... -c CODE`, asserting the contract: exit 0, one JSON object.
pub fn run_code(data_dir: &Path, args: &[&str], code: &str) -> Run {
    run_with(codebox(data_dir), args, code)
}

pub fn run_with(mut cmd: Command, args: &[&str], code: &str) -> Run {
    let output = cmd
        .arg("run")
        .arg("--json")
        .args(args)
        .arg("-c")
        .arg(code)
        .output()
        .expect("spawn codebox");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "codebox run failed: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.trim_end().lines().count(),
        1,
        "exactly one JSON line expected, got: {stdout}"
    );
    let json: Value = serde_json::from_str(&stdout).expect("valid JSON");
    Run { json, output }
}

/// The MongoDB-compatible server the store tests use (scripts/test.sh starts one and sets
/// CODEBOX_TEST_MONGODB_URI).
pub fn mongo_uri() -> String {
    std::env::var("CODEBOX_TEST_MONGODB_URI")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27017".to_string())
}

/// A database name no other test uses, so tests share one server independently.
pub fn fresh_database() -> String {
    format!("codebox_test_{}", codebox::store::ids::new_file_id())
}

/// Settings with a private DATA_DIR and `pool` warm containers; the rest default.
pub fn settings(data_dir: &Path, pool: usize) -> codebox::config::Settings {
    let mut settings = codebox::config::Settings {
        data_dir: data_dir.to_path_buf(),
        ..codebox::config::Settings::default()
    };
    settings.pool.warm_pool_size = pool;
    settings
}

/// A plain run of `code` under the settings' limits.
pub fn request(
    code: &str,
    settings: &codebox::config::Settings,
) -> codebox::sandbox::ExecutionRequest {
    codebox::sandbox::ExecutionRequest {
        code: code.to_string(),
        limits: codebox::sandbox::Limits::from_settings(&settings.sandbox),
        input_dir: None,
        output_dir: None,
        files: Vec::new(),
        session: None,
        watch: None,
    }
}

/// Every container codebox manages, running or not.
pub async fn managed_containers() -> Vec<codebox::container::engine::ManagedContainer> {
    let engine = DockerEngine::connect().await.expect("docker daemon");
    engine.list_managed().await.expect("list containers")
}

/// Every managed container carrying `label`, as (the label's value, container id).
pub async fn containers_by_label(label: &str) -> Vec<(String, String)> {
    managed_containers()
        .await
        .into_iter()
        .filter_map(|c| Some((c.labels.get(label)?.clone(), c.id)))
        .collect()
}

/// True when any container (running or not) carries this run's id.
pub async fn run_container_exists(run_id: &str) -> bool {
    containers_by_label(RUN_ID_LABEL)
        .await
        .iter()
        .any(|(id, _)| id == run_id)
}

pub fn assert_container_gone(run_id: &str) {
    assert!(!run_id.is_empty(), "result has no run id");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    assert!(
        !runtime.block_on(run_container_exists(run_id)),
        "container of run {run_id} still exists"
    );
}

/// Sandbox containers owned by the codebox process `pid` (its owner label names the pid).
pub async fn containers_of(pid: u32) -> Vec<codebox::container::engine::ManagedContainer> {
    managed_containers()
        .await
        .into_iter()
        .filter(|c| {
            c.labels
                .get(codebox::container::OWNER_LABEL)
                .is_some_and(|owner| owner.contains(&format!(":{pid}:")))
        })
        .collect()
}

/// Waits until `check` holds, polling every 200 ms, or fails saying `what`.
pub async fn eventually(what: &str, limit: std::time::Duration, check: impl AsyncFn() -> bool) {
    let start = std::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
