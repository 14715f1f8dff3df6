//! The bot end to end: the real `codebox bot` process (real serenity and async-openai
//! clients) against one local fake of Discord and OpenAI, with real sandboxes.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::fake::{Fake, USER_ID, completion_text, completion_tool_call};
use serde_json::{Value, json};

const DISCORD_TOKEN: &str = "canary-discord-token-5f1e2d";
const OPENAI_KEY: &str = "canary-openai-key-9c3b7a";

struct Bot {
    child: Child,
    data: tempfile::TempDir,
    fake: Fake,
}

impl Bot {
    async fn start(extra_env: &[(&str, &str)]) -> Bot {
        let fake = Fake::start().await;
        let data = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_codebox"));
        for name in codebox::config::SETTING_NAMES {
            cmd.env_remove(name);
        }
        cmd.arg("bot")
            .env("DATA_DIR", data.path())
            .env("DISCORD_TOKEN", DISCORD_TOKEN)
            .env("OPENAI_API_KEY", OPENAI_KEY)
            .env("DISCORD_API_BASE", fake.api_base())
            .env("OPENAI_BASE_URL", fake.openai_base())
            .env("OPENAI_RETRY_DELAY_MS", "50")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn codebox bot");
        fake.wait_ready().await;
        Bot { child, data, fake }
    }

    fn user_files_dir(&self) -> PathBuf {
        self.data.path().join("user_files").join(USER_ID)
    }

    fn send(&self, content: &str) {
        self.fake
            .dispatch("MESSAGE_CREATE", self.fake.message(content, &[]));
    }

    fn stop(mut self) -> std::process::ExitStatus {
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
        let _ = self.child.kill();
    }
}

const LONG: Duration = Duration::from_secs(60);

fn tool_contents(request: &Value) -> Vec<Value> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| serde_json::from_str(m["content"].as_str().unwrap()).unwrap())
        .collect()
}

fn assert_no_secrets(bot: &Bot) {
    for request in bot.fake.requests() {
        let text = format!("{} {:?}", request.json, request.files);
        assert!(
            !text.contains(DISCORD_TOKEN) && !text.contains(OPENAI_KEY),
            "secret sent to Discord: {text}"
        );
        assert!(!text.contains("canary"), "{text}");
    }
    for request in bot.fake.openai_requests() {
        let text = request.to_string();
        assert!(
            !text.contains(DISCORD_TOKEN) && !text.contains(OPENAI_KEY),
            "secret sent to the model: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_and_plot_column_b() {
    let bot = Bot::start(&[]).await;
    let csv = b"a,b\n1,2\n2,4\n3,9\n";
    let url = bot.fake.add_cdn_file("data.csv", csv);
    let code = r#"
import codebox_files, os, json
import matplotlib.pyplot as plt
fid = [f for f in codebox_files.list_files() if f["filename"] == "data.csv"][0]["file_id"]
df = load_file(fid)
print("sum of b =", df["b"].sum())
df.plot(x="a", y="b")
plt.savefig("plot.png")
# Secrets hunting from inside: nothing of the bot's environment is here.
print("env:", sorted(os.environ))
"#;
    bot.fake
        .script_openai(200, completion_tool_call("call_1", json!({"code": code})));
    bot.fake.script_openai(
        200,
        completion_text("Here is column b plotted against a; b sums to 15."),
    );
    bot.fake.dispatch(
        "MESSAGE_CREATE",
        bot.fake
            .message("plot column b", &[("data.csv", url, csv.len())]),
    );

    let stored = bot.fake.wait_for_text("Stored `data.csv`", LONG).await;
    let text = stored.content();
    assert!(text.contains("(csv, 16 B)"), "{text}");
    assert!(
        text.contains("3 rows x 2 columns"),
        "the summary is in the confirmation: {text}"
    );
    assert!(text.contains("files: 1/20"), "{text}");
    let on_disk: Vec<_> = std::fs::read_dir(bot.user_files_dir())
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(on_disk.len(), 1);
    assert_eq!(std::fs::read(on_disk[0].path()).unwrap(), csv);

    let answer = bot.fake.wait_for_text("b sums to 15", LONG).await;
    assert_eq!(answer.files.len(), 1, "the plot is attached");
    assert_eq!(answer.files[0].0, "plot.png");
    assert_eq!(&answer.files[0].1[..8], b"\x89PNG\r\n\x1a\n");

    let status = bot.fake.wait_for_text("done in", LONG).await;
    assert_eq!(
        status.method, "PATCH",
        "the status message is edited as the run ends"
    );
    bot.fake
        .wait_for("the running status", LONG, |r| {
            r.content().contains("running code")
        })
        .await;

    let openai = bot.fake.openai_requests();
    assert_eq!(openai.len(), 2);
    let system = openai[0]["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("data.csv"),
        "the model knows the user's files: {system}"
    );
    assert_eq!(
        openai[0]["tools"][0]["function"]["name"],
        "execute_python_code"
    );
    let tool = &tool_contents(&openai[1])[0];
    assert_eq!(tool["status"], "ok", "{tool}");
    assert!(
        tool["stdout"].as_str().unwrap().contains("sum of b = 15"),
        "{tool}"
    );
    assert_eq!(tool["generated_files"][0]["filename"], "plot.png");
    assert_eq!(
        tool["generated_files"][0]["file_id"]
            .as_str()
            .unwrap()
            .len(),
        16
    );
    let env = tool["stdout"].as_str().unwrap();
    for secret in ["DISCORD_TOKEN", "OPENAI_API_KEY", "MONGODB_URI"] {
        assert!(!env.contains(secret), "{env}");
    }
    assert_no_secrets(&bot);
    assert!(bot.stop().success(), "SIGTERM is a clean exit");
}
