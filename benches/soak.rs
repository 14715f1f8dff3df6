//! Soak: mixed traffic through the real `codebox bot` (serenity and async-openai against the
//! local fake of Discord and the model, a local package index, real sandboxes) for a while,
//! then a report: answered / sent, p50/p95 latency per window, the bot's RSS and open file
//! descriptors over time, sandbox containers left after it stops, and DATA_DIR's stored
//! files against the store's records. Prints figures; the only failures are the promises
//! (a lost message, a leaked container, files and records that disagree).
//! Usage: `cargo bench --bench soak -- SECONDS` (bench/soak.sh; default 1800).

#[path = "../tests/common/bot.rs"]
#[allow(dead_code)]
mod bot;
#[path = "../tests/common/bridge.rs"]
#[allow(dead_code)]
mod bridge;
#[path = "../tests/common/fake.rs"]
#[allow(dead_code)]
mod fake;
#[path = "../tests/common/index.rs"]
#[allow(dead_code)]
mod index;
#[path = "common/rss.rs"]
mod rss;
#[path = "common/stats.rs"]
mod stats;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bot::Bot;
use fake::{Fake, Recorded, USER_ID, code_running_model};
use index::{LocalIndex, build_wheel};
use rss::rss_kib;
use serde_json::{Value, json};
use stats::stats;

/// Users sending at once; one of them (the fake's USER_ID) also uses /stop and /reset.
const USERS: usize = 4;
/// An action not finished within this is counted unanswered.
const PATIENCE: Duration = Duration::from_secs(120);
const W2: &str = "import pandas as pd, numpy as np, matplotlib.pyplot as plt\ndf = pd.DataFrame({'x': np.arange(20000), 'y': np.random.rand(20000)})\ndf['y'].head(500).plot(); plt.savefig('plot.png')\nprint(len(df.describe()) and 'ran TAG.')";

#[derive(Clone, Copy, Debug)]
enum Action {
    W1,
    W2,
    Upload,
    Package,
    AbsentPackage,
    Timeout,
    Stop,
    Reset,
}

const EVERYONE: [Action; 6] = [
    Action::W1,
    Action::Upload,
    Action::W2,
    Action::Package,
    Action::Timeout,
    Action::AbsentPackage,
];
const COMMANDER: [Action; 4] = [Action::W1, Action::Stop, Action::W1, Action::Reset];

struct Done {
    at: Instant,
    latency: Duration,
    ok: bool,
    action: Action,
}

struct Traffic {
    fake: Fake,
    done: Mutex<Vec<Done>>,
    sent: Mutex<usize>,
}

impl Traffic {
    /// Waits for a recorded request after `mark` that satisfies `pred`.
    async fn wait(&self, mark: usize, pred: impl Fn(&Recorded) -> bool) -> bool {
        let start = Instant::now();
        let mut seen = mark;
        while start.elapsed() < PATIENCE {
            let new = self.fake.requests_since(seen);
            seen += new.len();
            if new.iter().any(&pred) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// What the fake saw of an action that went unanswered, so a failed soak says where
    /// the message stopped (never answered, refused, or answered otherwise).
    fn explain_unanswered(
        &self,
        user: &str,
        action: Action,
        tag: &str,
        mark: usize,
        after: Duration,
    ) {
        let marker = format!("[[{tag}]]");
        let model_requests = self
            .fake
            .openai_requests()
            .iter()
            .filter(|r| r.to_string().contains(&marker))
            .count();
        eprintln!(
            "unanswered: {action:?} of user {user} ({marker}) after {:.1} s; {model_requests} model requests carried it; Discord requests since it was sent, from its user's work:",
            after.as_secs_f64()
        );
        for r in self.fake.requests_since(mark) {
            let content = r.content();
            if content.contains(tag) || content.contains("still being worked on") {
                let shown: String = content.chars().take(160).collect();
                eprintln!("  {} {} -> {}: {shown:?}", r.method, r.path, r.status);
            }
        }
    }

    fn message(&self, user: &str, text: &str, attachments: &[(&str, String, usize)]) -> Value {
        let mut message = self.fake.message(text, attachments);
        message["author"] = self.fake.user(user);
        message
    }

    async fn act(&self, user: &str, action: Action, n: usize) {
        let tag = format!("{user}-{n}");
        let mark = self.fake.request_count();
        let started = Instant::now();
        *self.sent.lock().unwrap() += 1;
        let answer = format!("answer [[{tag}]]");
        let answered = |r: &Recorded| r.status == 200 && r.content().contains(&answer);
        let ask = |code: &str| {
            self.fake.dispatch(
                "MESSAGE_CREATE",
                self.message(
                    user,
                    &format!("run [[{tag}]] {}", code.replace("TAG", &tag)),
                    &[],
                ),
            );
        };
        let ok = match action {
            Action::W1 => {
                ask("print('ran TAG.')");
                self.wait(mark, |r| {
                    answered(r) && r.content().contains(&format!("ran {tag}."))
                })
                .await
            }
            Action::W2 => {
                ask(W2);
                self.wait(mark, |r| {
                    answered(r)
                        && r.content().contains(&format!("ran {tag}."))
                        && !r.files.is_empty()
                })
                .await
            }
            Action::Package => {
                ask("import cbx_soak; print('ran TAG.', cbx_soak.VALUE)");
                self.wait(mark, |r| {
                    answered(r) && r.content().contains(&format!("ran {tag}. 42"))
                })
                .await
            }
            Action::AbsentPackage => {
                ask("import cbx_absent");
                self.wait(mark, |r| answered(r) && r.content().contains("cbx_absent"))
                    .await
            }
            Action::Timeout => {
                ask("# timeout=3\nimport time; time.sleep(60)");
                self.wait(mark, |r| answered(r) && r.content().contains("timeout"))
                    .await
            }
            Action::Upload => {
                let name = format!("soak-{tag}.csv");
                let csv = format!("a,b\n{n},2\n3,4\n");
                let url = self.fake.add_cdn_file(&name, csv.as_bytes());
                self.fake.dispatch(
                    "MESSAGE_CREATE",
                    self.message(user, "", &[(&name, url, csv.len())]),
                );
                let stored = format!("Stored `{name}`");
                self.wait(mark, |r| r.status == 200 && r.content().contains(&stored))
                    .await
            }
            Action::Stop => {
                ask("import time; print('begun TAG', flush=True); time.sleep(60)");
                let begun = format!("begun {tag}");
                if self.wait(mark, |r| r.content().contains(&begun)).await {
                    let mark = self.fake.request_count();
                    self.fake
                        .dispatch("INTERACTION_CREATE", self.fake.command("stop", json!([])));
                    self.wait(mark, |r| r.content().contains("Cancelled your request"))
                        .await
                } else {
                    false
                }
            }
            Action::Reset => {
                self.fake
                    .dispatch("INTERACTION_CREATE", self.fake.command("reset", json!([])));
                self.wait(mark, |r| {
                    r.content().contains("Conversation history cleared")
                })
                .await
            }
        };
        if !ok {
            self.explain_unanswered(user, action, &tag, mark, started.elapsed());
        }
        self.done.lock().unwrap().push(Done {
            at: Instant::now(),
            latency: started.elapsed(),
            ok,
            action,
        });
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Sandbox containers of the bot with this pid (its owner label), whatever else runs here.
fn containers_of(pid: u32) -> usize {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "label=codebox.managed=true",
            "--format",
            "{{.Label \"codebox.owner\"}}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|owner| owner.contains(&format!(":{pid}:")))
        .count()
}

/// Stored files on disk (not the store's temporary or hidden ones).
fn stored_files(dir: &std::path::Path) -> usize {
    let Ok(users) = std::fs::read_dir(dir) else {
        return 0;
    };
    users
        .flatten()
        .filter_map(|u| std::fs::read_dir(u.path()).ok())
        .flat_map(|files| files.flatten())
        .filter(|f| !f.file_name().to_string_lossy().starts_with('.'))
        .count()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(1800);
    let length = Duration::from_secs(seconds);
    let window = length / 6;
    let wheels = tempfile::tempdir().unwrap();
    let index = LocalIndex::start().await;
    index.add_wheel(
        "cbx-soak",
        build_wheel(wheels.path(), "cbx_soak", "1.0", "VALUE = 42\n"),
    );
    let mut bot = Bot::start(&[
        ("WARM_POOL_SIZE", "2"),
        ("RATE_LIMIT_PER_MINUTE", "1000"),
        ("PIP_INDEX_URL", &index.url),
        ("PACKAGE_ALLOWLIST", "cbx-soak"),
        ("RUST_LOG", "error"),
    ])
    .await;
    let (fake, pid) = (bot.fake.clone(), bot.child.id());
    fake.model(code_running_model);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let traffic = Arc::new(Traffic {
        fake: fake.clone(),
        done: Mutex::new(Vec::new()),
        sent: Mutex::new(0),
    });
    let started = Instant::now();
    let mut samples = vec![(
        0.0,
        rss_kib(&pid.to_string()),
        open_fds(pid),
        containers_of(pid),
    )];
    let mut users = Vec::new();
    for u in 0..USERS {
        let traffic = traffic.clone();
        users.push(tokio::spawn(async move {
            let (user, actions): (String, &[Action]) = if u == 0 {
                (USER_ID.to_string(), &COMMANDER)
            } else {
                (format!("7300000000000{u:05}"), &EVERYONE)
            };
            let mut n = 0;
            while started.elapsed() < length {
                traffic
                    .act(&user, actions[(n + u) % actions.len()], n)
                    .await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(300 + 200 * u as u64)).await;
            }
        }));
    }
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        while started.elapsed() < length {
            tokio::time::sleep(window).await;
            samples.push((
                started.elapsed().as_secs_f64(),
                rss_kib(&pid.to_string()),
                open_fds(pid),
                containers_of(pid),
            ));
        }
        samples
    });
    for user in users {
        let _ = user.await;
    }
    samples.extend(sampler.await.unwrap());
    let total = started.elapsed();

    let done = std::mem::take(&mut *traffic.done.lock().unwrap());
    let sent = *traffic.sent.lock().unwrap();
    let answered = done.iter().filter(|d| d.ok).count();
    println!(
        "soak of {:.0} s, {USERS} users: {answered} of {sent} actions answered as expected",
        total.as_secs_f64()
    );
    for (name, kind) in [
        ("W1", Action::W1 as u8),
        ("W2", Action::W2 as u8),
        ("upload", Action::Upload as u8),
        ("package", Action::Package as u8),
        ("absent package", Action::AbsentPackage as u8),
        ("timeout", Action::Timeout as u8),
        ("/stop", Action::Stop as u8),
        ("/reset", Action::Reset as u8),
    ] {
        let of: Vec<&Done> = done.iter().filter(|d| d.action as u8 == kind).collect();
        let ok = of.iter().filter(|d| d.ok).count();
        if !of.is_empty() {
            let s = stats(
                of.iter()
                    .map(|d| d.latency.as_secs_f64() * 1000.0)
                    .collect(),
            );
            println!(
                "  {name}: {ok}/{} ok, p50 {:.0} ms, p95 {:.0} ms",
                of.len(),
                s.median,
                s.p95
            );
        }
    }
    println!(
        "  per window of {:.0} s (W1 only, where the bot's own overhead shows):",
        window.as_secs_f64()
    );
    for w in 0..6u32 {
        let from = started + window * w;
        let to = from + window;
        let lat: Vec<f64> = done
            .iter()
            .filter(|d| matches!(d.action, Action::W1) && d.ok && d.at >= from && d.at < to)
            .map(|d| d.latency.as_secs_f64() * 1000.0)
            .collect();
        if lat.is_empty() {
            continue;
        }
        let count = lat.len();
        let s = stats(lat);
        println!(
            "    {:>5.0}-{:<5.0} s: {count} W1, p50 {:.0} ms, p95 {:.0} ms",
            (window * w).as_secs_f64(),
            (window * (w + 1)).as_secs_f64(),
            s.median,
            s.p95
        );
    }
    println!("  bot process over time (s: RSS MiB, open fds, sandbox containers incl. 2 warm):");
    for (at, rss, fds, containers) in &samples {
        println!(
            "    {at:>6.0}: {:.1} MiB, {fds} fds, {containers} containers",
            *rss as f64 / 1024.0
        );
    }

    // Stop the bot as an operator would, then count what is left.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = bot.child.wait();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let left = containers_of(pid);
    let on_disk = stored_files(&bot.data.path().join("user_files"));
    let records: i64 = rusqlite::Connection::open(bot.data.path().join("codebox.sqlite3"))
        .and_then(|db| db.query_row("SELECT COUNT(*) FROM user_files", [], |row| row.get(0)))
        .unwrap_or(-1);
    println!(
        "after the bot stopped: {left} sandbox containers left; DATA_DIR holds {on_disk} stored files for {records} store records"
    );
    let mut broken = Vec::new();
    if answered != sent {
        broken.push(format!("{} of {sent} actions unanswered", sent - answered));
    }
    if left != 0 {
        broken.push(format!("{left} containers left"));
    }
    if on_disk as i64 != records {
        broken.push(format!("{on_disk} files for {records} records"));
    }
    if !broken.is_empty() {
        eprintln!("SOAK FAILED: {}", broken.join("; "));
        std::process::exit(1);
    }
    println!("soak passed");
}
