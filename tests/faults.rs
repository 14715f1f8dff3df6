//! Faults of the world around the code, drilled against real components: the bot (real
//! serenity and async-openai against the local fake), a MongoDB-compatible server of the
//! test's own that it stops and starts, an executor service, a small full disk.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::bot::Bot;
use common::eventually;
use common::executor::ExecutorProcess;
use common::fake::code_running_model;
use common::tmpfs::Tmpfs;
use serde_json::json;

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
    bot.send_with_file("", "kept.csv", csv);
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
    bot.send_with_file("", "lost.csv", lost);
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

    // /files says storage is down, privately; never "You have no files". The database
    // takes longer than Discord's 3 s to fail, so the answer is deferred (private) first.
    bot.fake
        .dispatch("INTERACTION_CREATE", bot.fake.command("files", json!([])));
    let deferred = bot
        .fake
        .wait_for("the deferred /files answer", LONG, |r| {
            r.path.ends_with("/callback")
        })
        .await;
    assert_eq!(deferred.json["type"], 5, "{:?}", deferred.json);
    assert_eq!(deferred.json["data"]["flags"], 64, "ephemeral");
    let listing = bot
        .fake
        .wait_for("the /files answer during the outage", LONG, |r| {
            r.path.contains("/webhooks/")
        })
        .await;
    assert_eq!(
        listing.content(),
        "⚠️ Sorry: storage is unavailable right now; please try again shortly."
    );
    assert!(
        !bot.fake
            .requests()
            .iter()
            .any(|r| r.content().contains("You have no files")),
        "an outage is not an empty list"
    );
    // /usage too names the trouble instead of the driver's error text.
    bot.fake
        .dispatch("INTERACTION_CREATE", bot.fake.command("usage", json!([])));
    let usage = bot.fake.wait_for_text("Could not read usage", LONG).await;
    assert_eq!(
        usage.content(),
        "Could not read usage: storage is unavailable right now; please try again shortly."
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

fn cli(data: &Path, args: &[&str]) -> std::process::Output {
    common::codebox(data).args(args).output().unwrap()
}

fn listed(data: &Path, user: &str) -> Vec<serde_json::Value> {
    let out = cli(data, &["files", "list", "--user", user, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_full_disk_refuses_new_bytes_clearly_keeps_what_is_stored_and_recovers_after_deleting() {
    let disk = Tmpfs::mount(40);
    let data = disk.path();
    let sources = tempfile::tempdir().unwrap();
    let user = "diskfull";
    let keep = sources.path().join("keep.csv");
    std::fs::write(&keep, "a\n1\n2\n3\n").unwrap();
    let out = common::codebox(data)
        .args(["files", "upload", "--user", user, "--no-summary", "--json"])
        .arg(&keep)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kept: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let kept_id = kept[0]["file_id"].as_str().unwrap().to_string();

    // 6 MB files until the disk says no.
    let mut refusal = None;
    for i in 0..12 {
        let big = sources.path().join(format!("big{i}.bin"));
        let bytes: Vec<u8> = (0..6 * 1024 * 1024u32)
            .map(|n| (n.wrapping_mul(2_654_435_761).wrapping_add(i) >> 13) as u8)
            .collect();
        std::fs::write(&big, bytes).unwrap();
        let out = common::codebox(data)
            .args(["files", "upload", "--user", user, "--no-summary", "--json"])
            .arg(&big)
            .output()
            .unwrap();
        if !out.status.success() {
            refusal = Some(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
            break;
        }
    }
    let refusal = refusal.expect("a 40 MB disk refuses the 7th file of 6 MB");
    assert!(refusal.contains("storage is full"), "{refusal}");
    let records = listed(data, user);
    let on_disk: Vec<PathBuf> = files_under(&data.join("user_files"));
    assert_eq!(
        on_disk.len(),
        records.len(),
        "every file on disk is a record's, nothing half-written: {on_disk:?}"
    );
    assert!(
        !on_disk
            .iter()
            .any(|p| p.to_string_lossy().contains(".incoming")),
        "{on_disk:?}"
    );

    // A run whose output does not fit: a clear word, nothing half-stored.
    let before = records.len();
    let run = common::run_code(
        data,
        &["--user", user],
        "data = bytes(12 * 1024 * 1024)\nwith open('huge.bin', 'wb') as f:\n    f.write(data)\nprint('written')",
    );
    assert_eq!(run.status(), "ok", "{}", run.stderr());
    assert_eq!(
        run.stdout(),
        "written\n",
        "the run's own result still counts"
    );
    let flags = run.flags();
    assert!(
        flags.iter().any(
            |(flag, name)| flag.contains("storage_full") && name.as_deref() == Some("huge.bin")
        ),
        "the file left out is named, with why: {flags:?}"
    );
    let records = listed(data, user);
    assert_eq!(
        records.len(),
        before,
        "no output record for a file that did not fit"
    );
    assert!(
        files_under(&data.join("outputs")).is_empty(),
        "no output left behind: {:?}",
        files_under(&data.join("outputs"))
    );

    // What is stored stays loadable, on the full disk.
    let run = common::run_code(
        data,
        &["--user", user],
        &format!("print(int(load_file('{kept_id}').a.sum()))"),
    );
    assert_eq!(run.stdout(), "6\n", "{}", run.stderr());

    // Space freed by a deletion is usable again.
    let victim = records
        .iter()
        .find(|r| r["filename"].as_str().unwrap().starts_with("big"))
        .unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = cli(data, &["files", "delete", "--user", user, &victim]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = sources.path().join("again.bin");
    std::fs::write(&again, vec![7u8; 5 * 1024 * 1024]).unwrap();
    let out = common::codebox(data)
        .args(["files", "upload", "--user", user, "--no-summary", "--json"])
        .arg(&again)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "after a deletion: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_resumes_after_the_gateway_drops_and_waits_out_rate_limits() {
    let bot = Bot::start(&[]).await;
    bot.fake.model(code_running_model);
    bot.send("run [[one]] print('ran one.')");
    bot.fake.wait_for_text("answer [[one]]", LONG).await;

    bot.fake.drop_gateway();
    eventually("the bot to resume its session", LONG, async || {
        bot.fake.gateway_sessions().1 > 0
    })
    .await;
    assert_eq!(
        bot.fake.gateway_sessions(),
        (1, 1),
        "one session, resumed rather than identified anew"
    );
    bot.send("run [[two]] print('ran two.')");
    let answer = bot.fake.wait_for_text("answer [[two]]", LONG).await;
    assert!(
        answer.content().contains("ran two."),
        "{}",
        answer.content()
    );

    // Discord answers the next two message creations (the status, then the answer) with
    // 429 and retry_after 1 s: both are waited out, neither is lost.
    bot.fake.rate_limit_creates(2);
    bot.send("run [[three]] print('ran three.')");
    let answer = bot
        .fake
        .wait_for("the answer, delivered", LONG, |r| {
            r.status == 200 && r.content().contains("answer [[three]]")
        })
        .await;
    assert!(
        answer.content().contains("ran three."),
        "{}",
        answer.content()
    );
    let creates: Vec<_> = bot
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/messages"))
        .collect();
    let limited: Vec<_> = creates.iter().filter(|r| r.status == 429).collect();
    assert_eq!(limited.len(), 2, "the fake's two 429s were met");
    // Each limited message went out again, the same text, after its retry_after.
    for refused in limited {
        let retried = creates
            .iter()
            .find(|r| r.status == 200 && r.at > refused.at && r.content() == refused.content())
            .unwrap_or_else(|| panic!("never sent again: {}", refused.content()));
        let waited = retried.at.duration_since(refused.at);
        assert!(
            waited >= Duration::from_millis(950),
            "retried {waited:?} after a retry_after of 1 s"
        );
    }
    bot.fake.wait_for_text("✅ done in", LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_bot_restarts_clean_with_its_interrupted_turn_marked() {
    let bot = Bot::start(&[]).await;
    bot.fake.model(code_running_model);
    let csv = b"a\n1\n2\n";
    bot.send_with_file("", "in.csv", csv);
    bot.fake.wait_for_text("Stored `in.csv`", LONG).await;
    bot.send("run [[slow]] import time; print('begun', flush=True); time.sleep(120)");
    bot.fake.wait_for_text("begun", LONG).await;
    let staging = bot.data.path().join("staging");
    assert!(
        !files_under(&staging).is_empty(),
        "the run in flight has its files staged"
    );

    let (data, pid) = bot.crash();
    assert!(
        !common::containers_of(pid).await.is_empty(),
        "the crash left the run's container behind"
    );
    let bot = Bot::start_in(data, &[]).await;
    bot.fake.model(code_running_model);
    // The new process reaps the dead one's container and cleans its directories.
    eventually("the dead bot's container to go", LONG, async || {
        common::containers_of(pid).await.is_empty()
    })
    .await;
    let data = bot.data.path().to_path_buf();
    eventually("staging and outputs cleaned", LONG, async || {
        files_under(&data.join("staging")).is_empty()
            && files_under(&data.join("outputs")).is_empty()
    })
    .await;
    let swept = cli(&data, &["files", "sweep", "--json"]);
    assert!(
        swept.status.success(),
        "{}",
        String::from_utf8_lossy(&swept.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&swept.stdout).unwrap();
    assert_eq!(
        report["orphan_files_removed"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    assert_eq!(
        report["orphan_records_removed"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    assert_eq!(
        report["dead_run_dirs_removed"].as_array().map(Vec::len),
        Some(0),
        "the restarted bot had cleaned them already: {report}"
    );

    // The conversation goes on, with the cut-short turn asked and marked unanswered.
    bot.send("run [[next]] print('ran next.')");
    let answer = bot.fake.wait_for_text("answer [[next]]", LONG).await;
    assert!(
        answer.content().contains("ran next."),
        "{}",
        answer.content()
    );
    let first = &bot.fake.openai_requests()[0];
    let messages = first["messages"].as_array().unwrap();
    let slow = messages
        .iter()
        .position(|m| m["role"] == "user" && m["content"].to_string().contains("[[slow]]"))
        .expect("the interrupted message is in the history");
    let after = &messages[slow + 1];
    assert_eq!(after["role"], "assistant", "{messages:?}");
    assert!(
        after["content"].to_string().contains("cut short"),
        "{after}"
    );
    assert!(
        after
            .get("tool_calls")
            .is_none_or(|c| c.as_array().is_none_or(Vec::is_empty)),
        "no half-written tool call: {after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_executor_restarts_clean_and_its_client_hears_why() {
    let data = tempfile::tempdir().unwrap();
    let executor = ExecutorProcess::start(data.path(), "crash-token", &[]);
    let url = executor.url.clone();
    let client_data = tempfile::tempdir().unwrap();
    let client = common::codebox(client_data.path())
        .env("EXECUTOR_URLS", &url)
        .env("EXECUTOR_TOKEN", "crash-token")
        .args(["run", "--json", "--user", "crashdrill", "-c"])
        .arg("import time; print('begun', flush=True); time.sleep(120)")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = executor.pid();
    // The code has started once its output is in the container's stream.
    eventually("the code to start", LONG, async || {
        common::containers_of(pid).await.iter().any(|c| {
            Command::new("docker")
                .args(["logs", &c.id])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("begun"))
        })
    })
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || client.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        said.contains("failed after the code started"),
        "the client says the run was lost, not re-run: {said}"
    );
    assert!(
        !common::containers_of(pid).await.is_empty(),
        "the crash left the run's container behind"
    );
    drop(executor);

    let executor = ExecutorProcess::start(data.path(), "crash-token", &[]);
    eventually("the dead executor's container to go", LONG, async || {
        common::containers_of(pid).await.is_empty()
    })
    .await;
    let dir = data.path().to_path_buf();
    eventually(
        "the dead executor's directories cleaned",
        LONG,
        async || {
            files_under(&dir.join("staging")).is_empty()
                && files_under(&dir.join("outputs")).is_empty()
        },
    )
    .await;
    let run = common::run_with(
        {
            let mut cmd = common::codebox(client_data.path());
            cmd.env("EXECUTOR_URLS", &executor.url)
                .env("EXECUTOR_TOKEN", "crash-token");
            cmd
        },
        &["--user", "crashdrill"],
        "print('again')",
    );
    assert_eq!(run.stdout(), "again\n");
}

/// Restarts this machine's Docker daemon: every test using it at the same time would fail,
/// so this drill is ignored in the suite and run alone by scripts/fault-drills.sh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the Docker daemon: run alone by scripts/fault-drills.sh"]
async fn a_docker_daemon_restart_mid_run_is_reported_and_the_bot_recovers() {
    let bot = Bot::start(&[("WARM_POOL_SIZE", "1")]).await;
    bot.fake.model(code_running_model);
    let pid = bot.child.id();
    eventually("the warm pool to fill", LONG, async || {
        !common::containers_of(pid).await.is_empty()
    })
    .await;
    bot.send("run [[long]] import time; print('begun', flush=True); time.sleep(50)");
    bot.fake.wait_for_text("begun", LONG).await;
    let sent = Instant::now();
    let restarted = tokio::task::spawn_blocking(|| {
        Command::new("bash")
            .args(["scripts/dockerd.sh", "restart"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(restarted.success(), "scripts/dockerd.sh restart");
    let answer = bot
        .fake
        .wait_for_text("answer [[long]]", Duration::from_secs(120))
        .await
        .content();
    println!(
        "daemon restart mid-run: answered {:.1} s after the restart began: {answer}",
        sent.elapsed().as_secs_f64()
    );
    assert!(
        answer.contains("the Docker daemon went away during run")
            || answer.contains("the sandbox stopped before reporting"),
        "a run whose daemon went away is reported as such, never ok: {answer}"
    );
    // The pool refills and nothing else of this bot's is left on the new daemon.
    let start = Instant::now();
    loop {
        let mine = common::containers_of(pid).await;
        if mine.len() == 1 {
            break;
        }
        assert!(
            start.elapsed() < LONG,
            "containers of the bot after the restart: {mine:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bot.send("run [[after]] print('ran after.')");
    let answer = bot.fake.wait_for_text("answer [[after]]", LONG).await;
    assert!(
        answer.content().contains("ran after."),
        "{}",
        answer.content()
    );
}
