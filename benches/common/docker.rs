//! W1 through plain `docker run` (the CLI), the baseline every benchmark reports against.

use std::process::{Command, Stdio};
use std::time::Instant;

/// Milliseconds of `docker run --rm --network none IMAGE python3 -c 'print(1)'`.
pub fn docker_w1(image: &str) -> f64 {
    let started = Instant::now();
    let ok = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "python3",
            image,
            "-c",
            "print(1)",
        ])
        .stdout(Stdio::null())
        .status()
        .expect("docker")
        .success();
    assert!(ok, "docker run failed");
    started.elapsed().as_secs_f64() * 1000.0
}
