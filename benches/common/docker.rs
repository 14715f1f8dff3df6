//! Plain `docker run` of the same code, the baseline every benchmark reports against, and the
//! number of runs a benchmark was asked for.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// The first number among the arguments (`cargo bench --bench pool -- 50` runs 50; cargo
/// adds `--bench` itself), else `default`.
pub fn runs_asked(default: usize) -> usize {
    std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(default)
}

/// Milliseconds of `docker run --rm --network none IMAGE python3 -c CODE` with `inputs`
/// read-only at /mnt/inputs (when given) and a fresh writable /mnt/outputs, and whether it
/// succeeded.
pub fn docker_run(image: &str, inputs: &Path, code: &str) -> (f64, bool) {
    run(image, Some(inputs), code)
}

/// Milliseconds of `docker run --rm --network none IMAGE python3 -c 'print(1)'`.
pub fn docker_w1(image: &str) -> f64 {
    let (ms, ok) = run(image, None, "print(1)");
    assert!(ok, "docker run failed");
    ms
}

fn run(image: &str, inputs: Option<&Path>, code: &str) -> (f64, bool) {
    let out = tempfile::tempdir().unwrap();
    // The image runs as the sandbox uid; let it write its outputs.
    std::fs::set_permissions(
        out.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let started = Instant::now();
    let mut command = Command::new("docker");
    command.args([
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "python3",
    ]);
    if let Some(inputs) = inputs {
        command
            .arg("-v")
            .arg(format!("{}:/mnt/inputs:ro", inputs.display()))
            .arg("-v")
            .arg(format!("{}:/mnt/outputs", out.path().display()));
    }
    let status = command
        .args([image, "-c", code])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("docker");
    (started.elapsed().as_secs_f64() * 1000.0, status.success())
}
