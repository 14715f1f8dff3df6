//! The bot deployed in a two-node Swarm (scripts/multinode-drill.sh sets the Swarm up and
//! runs this): the real `codebox bot`, a task of the stack's `bot` service, talks to this
//! test's fake Discord and model and runs code on the executors it finds through
//! `tasks.executor`. Bursts of messages are spread over both nodes; the burst throughput
//! with one executor node and with two is printed; node 2's daemon is stopped mid-burst and
//! every message is still answered, with the result or a clear error.
//! Ignored: it needs the drill's Swarm. The drill passes its facts in CODEBOX_DRILL_*.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::eventually;
use common::fake::{Fake, code_running_model};

const W2: &str = "import pandas as pd, numpy as np, matplotlib.pyplot as plt\ndf = pd.DataFrame({'x': np.arange(20000), 'y': np.random.rand(20000)})\ndf['y'].head(500).plot(); plt.savefig('plot.png')\nprint(len(df.describe()) and 'ran TAG.')";

struct Drill {
    fake: Fake,
    executors: Vec<String>,
    token: String,
    runs: usize,
    node2: String,
    node2_pid_file: String,
    http: reqwest::Client,
}

/// One executor node's burst against two nodes', as printed.
fn one_against_two(one: &Burst, two: &Burst) -> String {
    format!(
        "one executor node {:.2} s (median answer {} ms), two {:.2} s (median {} ms): {:.2}x",
        one.seconds,
        one.median_answer.as_millis(),
        two.seconds,
        two.median_answer.as_millis(),
        one.seconds / two.seconds
    )
}

fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by scripts/multinode-drill.sh"))
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// How a burst went: seconds from the first message to the last answer, and each answer.
struct Burst {
    seconds: f64,
    median_answer: Duration,
    answers: Vec<String>,
}

impl Drill {
    async fn get(&self, url: &str, path: &str) -> Option<String> {
        let response = self
            .http
            .get(format!("{url}{path}"))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.text().await.ok()
    }

    /// Ready with a full warm pool (so bursts start from the same place).
    async fn warm(&self, url: &str) -> bool {
        let Some(body) = self.get(url, "/healthz").await else {
            return false;
        };
        let health: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        health["ready"] == true && health["pool_idle"] == health["pool_target"]
    }

    async fn runs_on(&self, url: &str) -> u64 {
        let text = self.get(url, "/metrics").await.unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("codebox_runs_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// The node 2 that is up (an earlier drill's, now down, may still be listed).
    fn node2_id(&self) -> String {
        docker(&[
            "node",
            "ls",
            "--format",
            "{{.ID}} {{.Hostname}} {{.Status}}",
        ])
        .lines()
        .find_map(|l| l.strip_suffix(&format!(" {} Ready", self.node2)))
        .unwrap_or_else(|| panic!("no Swarm node named {} is ready", self.node2))
        .to_string()
    }

    async fn in_flight_on(&self, url: &str) -> u64 {
        let body = self.get(url, "/healthz").await.unwrap_or_default();
        let health: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        health["in_flight"].as_u64().unwrap_or(0)
    }

    /// One executor node (node 2 out of the executor placement) or two; returns once the
    /// executors are warm, so bursts start from the same place.
    async fn executor_nodes(&self, count: usize) {
        let id = self.node2_id();
        if count == 2 {
            docker(&[
                "node",
                "update",
                "--label-add",
                "codebox.executor=true",
                &id,
            ]);
            eventually(
                "node 2's executor to be warm",
                Duration::from_secs(240),
                async || self.warm(&self.executors[1]).await,
            )
            .await;
        } else if self.get(&self.executors[1], "/healthz").await.is_some() {
            docker(&["node", "update", "--label-rm", "codebox.executor", &id]);
            eventually(
                "node 2's executor to be gone",
                Duration::from_secs(120),
                async || self.get(&self.executors[1], "/healthz").await.is_none(),
            )
            .await;
            // Swarm's DNS drops the task's address once the task is removed.
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        eventually(
            "node 1's executor to be warm",
            Duration::from_secs(120),
            async || self.warm(&self.executors[0]).await,
        )
        .await;
    }

    /// `runs` users each send one message running `code` (TAG replaced by the message's
    /// tag), all at once; returns when every message is answered.
    async fn burst(&self, phase: &str, code: &str, during: impl AsyncFnOnce()) -> Burst {
        let started = Instant::now();
        let mut sent = Vec::new();
        for i in 0..self.runs {
            let tag = format!("{phase}-{i}");
            // One user per message: a user's turns are taken one at a time.
            let user = format!("71000000{:03}{i:07}", phase.as_bytes()[0]);
            let text = format!("run [[{tag}]] {}", code.replace("TAG", &tag));
            self.fake
                .dispatch("MESSAGE_CREATE", self.fake.message_from(&user, &text));
            sent.push((tag, Instant::now()));
        }
        during().await;
        let mut answers = Vec::new();
        let mut latencies = Vec::new();
        let mut last = started;
        for (tag, at) in &sent {
            let needle = format!("answer [[{tag}]]");
            let found = self
                .fake
                .wait_for_text(&needle, Duration::from_secs(300))
                .await;
            latencies.push(found.at.duration_since(*at));
            last = last.max(found.at);
            answers.push(found.content());
        }
        latencies.sort();
        Burst {
            seconds: last.duration_since(started).as_secs_f64(),
            median_answer: latencies[latencies.len() / 2],
            answers,
        }
    }

    fn all_ran(&self, phase: &str, burst: &Burst) {
        for (i, answer) in burst.answers.iter().enumerate() {
            assert!(
                answer.contains(&format!("ran {phase}-{i}.")),
                "message {phase}-{i} was answered without its result: {answer}"
            );
        }
    }

    fn stop_node2_daemon(&self) {
        let pid = std::fs::read_to_string(&self.node2_pid_file).unwrap();
        let pid = nix::unistd::Pid::from_raw(pid.trim().parse().unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the two-node Swarm of scripts/multinode-drill.sh"]
async fn a_burst_through_the_bot_is_spread_over_the_swarm_and_survives_a_node_stopping() {
    let fake = Fake::start_on(&setting("CODEBOX_DRILL_FAKE_ADDR")).await;
    fake.model(code_running_model);
    let drill = Drill {
        fake,
        executors: setting("CODEBOX_DRILL_EXECUTORS")
            .split(',')
            .map(str::to_string)
            .collect(),
        token: setting("CODEBOX_DRILL_TOKEN"),
        runs: setting("CODEBOX_DRILL_RUNS").parse().unwrap(),
        node2: setting("CODEBOX_DRILL_NODE2"),
        node2_pid_file: setting("CODEBOX_DRILL_NODE2_PID_FILE"),
        http: reqwest::Client::new(),
    };
    let base = drill.fake.api_base();
    let bot = setting("CODEBOX_DRILL_BOT_SERVICE");
    docker(&[
        "service",
        "update",
        "--quiet",
        "--env-add",
        &format!("DISCORD_API_BASE={base}"),
        "--env-add",
        &format!("OPENAI_BASE_URL={base}/v1"),
        "--replicas",
        "1",
        &bot,
    ]);
    drill.fake.wait_ready().await;
    for url in &drill.executors {
        eventually(
            "the executors to be warm",
            Duration::from_secs(240),
            async || drill.warm(url).await,
        )
        .await;
    }
    let runs = drill.runs;

    // W1 and W2, two executor nodes and then one.
    drill.executor_nodes(2).await;
    let (before1, before2) = (
        drill.runs_on(&drill.executors[0]).await,
        drill.runs_on(&drill.executors[1]).await,
    );
    let w1_two = drill.burst("a", "print('ran TAG.')", async || {}).await;
    drill.all_ran("a", &w1_two);
    let on1 = drill.runs_on(&drill.executors[0]).await - before1;
    let on2 = drill.runs_on(&drill.executors[1]).await - before2;
    assert!(
        on1 > 0 && on2 > 0,
        "a burst through the bot ran on both nodes: node 1 ran {on1}, node 2 ran {on2}"
    );
    drill.executor_nodes(2).await;
    let (before1, before2) = (
        drill.runs_on(&drill.executors[0]).await,
        drill.runs_on(&drill.executors[1]).await,
    );
    let w2_two = drill.burst("b", W2, async || {}).await;
    drill.all_ran("b", &w2_two);
    let w2_on1 = drill.runs_on(&drill.executors[0]).await - before1;
    let w2_on2 = drill.runs_on(&drill.executors[1]).await - before2;
    drill.executor_nodes(1).await;
    let w1_one = drill.burst("c", "print('ran TAG.')", async || {}).await;
    drill.all_ran("c", &w1_one);
    drill.executor_nodes(1).await;
    let w2_one = drill.burst("d", W2, async || {}).await;
    drill.all_ran("d", &w2_one);
    println!(
        "through the bot, bursts of {runs} messages: W1 {}; node 1 ran {on1} and node 2 ran {on2} of the two-node W1 burst",
        one_against_two(&w1_one, &w1_two)
    );
    println!(
        "through the bot, bursts of {runs} messages: W2 {}; node 1 ran {w2_on1} and node 2 ran {w2_on2} of the two-node W2 burst",
        one_against_two(&w2_one, &w2_two)
    );

    // Node 2's daemon stopped a second into a burst of runs that take two seconds.
    drill.executor_nodes(2).await;
    let in_flight_on_node2 = std::sync::atomic::AtomicU64::new(0);
    let fault = drill
        .burst(
            "f",
            "import time; time.sleep(2); print('ran TAG.')",
            async || {
                tokio::time::sleep(Duration::from_secs(1)).await;
                in_flight_on_node2.store(
                    drill.in_flight_on(&drill.executors[1]).await,
                    std::sync::atomic::Ordering::SeqCst,
                );
                drill.stop_node2_daemon();
            },
        )
        .await;
    let in_flight_on_node2 = in_flight_on_node2.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        in_flight_on_node2 > 0,
        "node 2 was stopped with runs of the burst under way"
    );
    let (mut completed, mut clear) = (0, 0);
    for (i, answer) in fault.answers.iter().enumerate() {
        if answer.contains(&format!("ran f-{i}.")) {
            completed += 1;
        } else if answer.contains("\"status\": \"not_run\"")
            && (answer.contains("failed after the code started")
                || answer.contains("is reachable and healthy"))
        {
            clear += 1;
        } else {
            panic!("message f-{i} got neither its result nor a clear error: {answer}");
        }
    }
    println!(
        "node 2's daemon stopped mid-burst ({in_flight_on_node2} runs under way there): {completed} of {runs} messages answered with their result, {clear} with a clear error, none lost"
    );
    docker(&["service", "scale", "--detach", &format!("{bot}=0")]);
}
