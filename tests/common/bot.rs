//! A `codebox bot` process in a private DATA_DIR, talking to a fresh local fake of Discord
//! and OpenAI; stopped with SIGTERM (then killed) when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::fake::{Fake, USER_ID};

pub const DISCORD_TOKEN: &str = "canary-discord-token-5f1e2d";
pub const OPENAI_KEY: &str = "canary-openai-key-9c3b7a";

pub struct Bot {
    pub child: Child,
    pub data: tempfile::TempDir,
    pub fake: Fake,
}

impl Bot {
    pub async fn start(extra_env: &[(&str, &str)]) -> Bot {
        Bot::start_in(tempfile::tempdir().unwrap(), extra_env).await
    }

    /// In `data`: a bot started again where one left off.
    pub async fn start_in(data: tempfile::TempDir, extra_env: &[(&str, &str)]) -> Bot {
        Bot::start_with(data, extra_env, Stdio::inherit()).await
    }

    /// A bot whose logs (stderr) go to `log`: what the latency benchmark reads.
    pub async fn start_logging_to(log: &std::path::Path, extra_env: &[(&str, &str)]) -> Bot {
        let file = std::fs::File::create(log).expect("create the bot's log");
        Bot::start_with(tempfile::tempdir().unwrap(), extra_env, Stdio::from(file)).await
    }

    async fn start_with(data: tempfile::TempDir, extra_env: &[(&str, &str)], stderr: Stdio) -> Bot {
        let fake = Fake::start().await;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_codebox"));
        for name in codebox::config::setting_names() {
            cmd.env_remove(name);
        }
        cmd.arg("bot")
            .env("DATA_DIR", data.path())
            .env("DISCORD_TOKEN", DISCORD_TOKEN)
            .env("OPENAI_API_KEY", OPENAI_KEY)
            .env("DISCORD_API_BASE", fake.api_base())
            .env("OPENAI_BASE_URL", fake.openai_base())
            .env("OPENAI_RETRY_DELAY_MS", "50")
            .env(
                "RUST_LOG",
                std::env::var("CODEBOX_TEST_BOT_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            // Warm containers cost a second of CPU each; the test that wants a pool asks.
            .env("WARM_POOL_SIZE", "0")
            // Answers arrive as one post to read; the tests of streaming turn it on.
            .env("OPENAI_STREAM", "false")
            // Every run's status is posted, as the tests of the status expect; the test of
            // quick answers as one message sets the default back.
            .env("STATUS_AFTER_MS", "0");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn codebox bot");
        fake.wait_ready().await;
        Bot { child, data, fake }
    }

    pub fn user_files_dir(&self) -> PathBuf {
        self.data.path().join("user_files").join(USER_ID)
    }

    pub fn send(&self, content: &str) {
        self.fake
            .dispatch("MESSAGE_CREATE", self.fake.message(content, &[]));
    }

    /// A message with one attached file, served by the fake's CDN.
    pub fn send_with_file(&self, content: &str, name: &str, bytes: &[u8]) {
        let url = self.fake.add_cdn_file(name, bytes);
        self.fake.dispatch(
            "MESSAGE_CREATE",
            self.fake.message(content, &[(name, url, bytes.len())]),
        );
    }

    /// SIGKILL, as a crash or the OOM killer would: nothing is cleaned up. Returns the
    /// bot's data directory (kept) and its pid.
    pub fn crash(mut self) -> (tempfile::TempDir, u32) {
        let pid = self.child.id();
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let data = std::mem::replace(&mut self.data, tempfile::tempdir().unwrap());
        (data, pid)
    }

    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("the bot did not stop within 10 s of SIGTERM");
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // A graceful stop lets the bot remove its used containers (it removes them after
        // replying); SIGKILL only when it does not stop.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_ok() {
            for _ in 0..100 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = self.child.kill();
    }
}
