//! What a run leaves on the host: nothing once it ends, and nothing for long when its
//! process is killed mid-run (staged hard links would keep a deleted file's bytes alive, and
//! output directories sit outside every quota).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::codebox;
use serde_json::Value;

fn ok(data: &Path, args: &[&str]) -> Value {
    common::cli_json(data, args)
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            du(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

#[test]
fn outputs_over_the_quota_leave_nothing_behind() {
    let data = tempfile::tempdir().unwrap();
    let code = "for i in range(3):\n    open(f'big{i}.bin', 'wb').write(bytes(900_000))\n";
    for _ in 0..3 {
        let mut cmd = codebox(data.path());
        let out = cmd
            .env("MAX_FILE_SIZE_MB", "1")
            .env("MAX_BYTES_PER_USER", "2097152")
            .args(["run", "--user", "u1", "--json", "-c", code])
            .output()
            .unwrap();
        assert!(out.status.success());
        let run: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(run["status"], "ok", "{run}");
        assert_eq!(
            entries(&data.path().join("outputs")),
            Vec::<String>::new(),
            "the run's directory is gone once its files are stored"
        );
    }
    let stored = du(&data.path().join("user_files"));
    assert!(
        stored <= 2 * 1024 * 1024,
        "the store keeps the quota: {stored}"
    );
    assert!(
        du(data.path()) < 3 * 1024 * 1024 + 512 * 1024,
        "DATA_DIR holds the quota and its database, no more: {}",
        du(data.path())
    );
}

#[test]
fn a_killed_run_leaves_no_staged_copy_once_swept() {
    let data = tempfile::tempdir().unwrap();
    let csv = data.path().join("secret.csv");
    std::fs::write(&csv, "a\n1\n").unwrap();
    let uploaded = ok(
        data.path(),
        &[
            "files",
            "upload",
            "--user",
            "u1",
            "--no-summary",
            "--json",
            csv.to_str().unwrap(),
        ],
    );
    let id = uploaded[0]["file_id"].as_str().unwrap().to_string();
    let mut run = codebox(data.path())
        .args(["run", "--user", "u1", "-c", "import time\ntime.sleep(120)"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let staging = data.path().join("staging");
    let started = Instant::now();
    while entries(&staging).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no staging dir"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Give the container time to start with the staged file mounted.
    std::thread::sleep(Duration::from_secs(2));
    run.kill().unwrap();
    run.wait().unwrap();
    let left = entries(&staging);
    assert_eq!(
        left.len(),
        1,
        "the killed run left its staging dir: {left:?}"
    );

    ok(
        data.path(),
        &["files", "delete", "--user", "u1", &id, "--json"],
    );
    let swept = ok(data.path(), &["files", "sweep", "--json"]);
    assert_eq!(
        swept["dead_run_dirs_removed"].as_array().map(Vec::len),
        Some(1),
        "{swept}"
    );
    assert_eq!(
        entries(&staging),
        Vec::<String>::new(),
        "no hard link keeps the deleted file's bytes"
    );
    // The next run removes the killed run's container (its owner is dead).
    let out = codebox(data.path())
        .args(["run", "-c", "print(1)"])
        .output()
        .unwrap();
    assert!(out.status.success());
}
