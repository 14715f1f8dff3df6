//! Faults of the world around the code, drilled against real components: the bot (real
//! serenity and async-openai against the local fake), a MongoDB-compatible server of the
//! test's own that it stops and starts, an executor service, a small full disk.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::bot::Bot;
use common::executor::ExecutorProcess;
use common::fake::code_running_model;

const LONG: Duration = Duration::from_secs(90);

/// A MongoDB-compatible server (secantusd-py) on its own port and storage, which a test
/// may stop (SIGKILL: an outage, not a shutdown) and start again on both.
struct Database {
    port: u16,
    storage: tempfile::TempDir,
    child: Option<Child>,
}

impl Database {
    fn start() -> Database {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut db = Database {
            port,
            storage: tempfile::tempdir().unwrap(),
            child: None,
        };
        db.resume();
        db
    }

    fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    fn resume(&mut self) {
        let child = Command::new("secantusd-py")
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(self.storage.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("secantusd-py (scripts/test.sh installs it)");
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "no database");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every regular file under `dir`, relative.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    found.sort();
    found
}

async fn health(url: &str, token: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{url}/healthz"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_health(url: &str, token: &str, degraded: bool) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let h = health(url, token).await;
        if h["degraded"] == degraded {
            return h;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "healthz never said degraded={degraded}: {h}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gets_a_clear_sentence_loses_nothing_and_heals_without_a_restart() {
    let mut db = Database::start();
    let database = "codebox_outage";
    let env = [
        ("MONGODB_URI", db.uri()),
        ("MONGODB_DATABASE", database.to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let bot = Bot::start(&env).await;
    bot.fake.model(code_running_model);
    let executor_data = tempfile::tempdir().unwrap();
    let executor = ExecutorProcess::start(executor_data.path(), "outage-token", &env);
    let healthy = wait_health(&executor.url, "outage-token", false).await;
    assert!(healthy.get("storage").is_none(), "{healthy}");

    // Before: a file and a conversation.
    let csv = b"a\n1\n2\n";
    let cdn = bot.fake.add_cdn_file("kept.csv", csv);
    bot.fake.dispatch(
        "MESSAGE_CREATE",
        bot.fake.message("", &[("kept.csv", cdn, csv.len())]),
    );
    bot.fake.wait_for_text("Stored `kept.csv`", LONG).await;
    bot.send("run [[before]] print('ran before.')");
    bot.fake.wait_for_text("answer [[before]]", LONG).await;

    db.kill();
    let degraded = wait_health(&executor.url, "outage-token", true).await;
    assert!(
        degraded["storage"]
            .as_str()
            .unwrap()
            .contains("storage is unavailable"),
        "{degraded}"
    );
    assert_eq!(degraded["ready"], true);
    let files_before = files_under(bot.data.path());

    bot.send("run [[during]] print('ran during.')");
    let said = bot
        .fake
        .wait_for_text("storage is unavailable right now", LONG)
        .await;
    assert_eq!(
        said.content(),
        "⚠️ Sorry: storage is unavailable right now; please try again shortly."
    );
    let lost = b"b\n3\n";
    let cdn = bot.fake.add_cdn_file("lost.csv", lost);
    bot.fake.dispatch(
        "MESSAGE_CREATE",
        bot.fake.message("", &[("lost.csv", cdn, lost.len())]),
    );
    let refused = bot
        .fake
        .wait_for_text("`lost.csv` was not stored", LONG)
        .await;
    assert!(
        refused
            .content()
            .contains("storage is unavailable right now"),
        "{}",
        refused.content()
    );
    assert_eq!(
        files_under(bot.data.path()),
        files_before,
        "nothing of the refused upload is left on disk"
    );
    assert!(
        !bot.fake
            .requests()
            .iter()
            .any(|r| r.content().contains("answer [[during]]")),
        "no answer was made up without the history"
    );

    // Back: the same bot and executor, no restart.
    db.resume();
    wait_health(&executor.url, "outage-token", false).await;
    bot.send("run [[after]] import codebox_files; print('ran after.', sorted(f['filename'] for f in codebox_files.list_files()), int(load_file(codebox_files.list_files()[0]['file_id']).a.sum()))");
    let answer = bot.fake.wait_for_text("answer [[after]]", LONG).await;
    assert!(
        answer.content().contains("ran after. ['kept.csv'] 3"),
        "the file stored before the outage is there, the refused one is not: {}",
        answer.content()
    );
    // Nothing of the refused upload reached GridFS either (its bytes are 4 long).
    let client = mongodb::Client::with_uri_str(db.uri()).await.unwrap();
    let lengths: Vec<i64> = client
        .database(database)
        .collection::<mongodb::bson::Document>("codebox_files.files")
        .distinct("length", mongodb::bson::doc! {})
        .await
        .unwrap()
        .into_iter()
        .filter_map(|b| b.as_i64().or_else(|| b.as_i32().map(i64::from)))
        .collect();
    assert!(
        lengths.contains(&(csv.len() as i64)) && !lengths.contains(&(lost.len() as i64)),
        "GridFS file lengths {lengths:?}"
    );
    drop(executor);
}
