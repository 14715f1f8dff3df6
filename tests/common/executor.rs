//! A `codebox executor` process on a free loopback port, stopped (SIGTERM, then kill) when
//! dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

/// The executor's Prometheus text, asked with `token`.
pub async fn metrics(url: &str, token: &str) -> String {
    reqwest::Client::new()
        .get(format!("{url}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub struct ExecutorProcess {
    child: Child,
    pub url: String,
}

impl ExecutorProcess {
    /// Started in `data` with `token`, no warm pool, and `env` on top.
    pub fn start(data: &Path, token: &str, env: &[(&str, &str)]) -> ExecutorProcess {
        let mut cmd = super::codebox(data);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .args(["executor", "--listen", "127.0.0.1:0"])
            .env("EXECUTOR_TOKEN", token)
            .env("WARM_POOL_SIZE", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("codebox executor listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        ExecutorProcess { child, url }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then how long the process took to exit (None: still running after `wait`).
    pub fn terminate(&mut self, wait: Duration) -> Option<Duration> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let asked = std::time::Instant::now();
        while asked.elapsed() < wait {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return Some(asked.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ExecutorProcess {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..150 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
    }
}
