//! Benchmark: where a message's time goes, through the real bot (serenity and async-openai
//! against the local fake of Discord and an instantly answering fake model). W1 (`print(1)`)
//! with the warm pool on and off, W2 (a 20,000 x 5 DataFrame described and scattered) with
//! the pool on and off, and plain `docker run` of W1 in the same run for the ratio.
//!
//! The bot logs JSON with an event for every span that closes (LOG_FORMAT=json); each
//! message's phases are read from them: the `message` span (gateway event to reply posted),
//! `message.access`, `message.admit`, `turn.settings`, `turn.history`, `turn.prompt`,
//! `turn.mark_begun`, `model.pictures` (pictures made ready for the request, in a sandbox),
//! `model.admit` / `model.request` / `model.record` (summed over the
//! turn's requests), `run.stage` / `run.execute` / `run.store_outputs`, the executor's own
//! phases (`exec.*`, from its "execution finished" event inside `run.execute`), `turn.save`
//! and `message.reply`.
//! Prints medians; asserts nothing about them. Run with `bash bench/bot-latency.sh [RUNS]`.

#[path = "../tests/common/bot.rs"]
#[allow(dead_code)]
mod bot;
#[path = "common/docker.rs"]
mod docker;
#[path = "../tests/common/fake.rs"]
#[allow(dead_code)]
mod fake;
#[path = "common/stats.rs"]
mod stats;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bot::Bot;
use fake::code_running_model;
use serde_json::Value;
use stats::stats;

const W1: &str = "print(1)";
const W2: &str = "import numpy as np, pandas as pd\nimport matplotlib.pyplot as plt\ndf = pd.DataFrame(np.random.rand(20000, 5), columns=list('abcde'))\nprint(df.describe())\nplt.scatter(df.a, df.b, s=2)\nplt.show()";

/// Phases in the order a message goes through them.
const PHASES: &[&str] = &[
    "message.access",
    "message.admit",
    "turn.settings",
    "turn.history",
    "turn.prompt",
    "turn.mark_begun",
    "model.pictures",
    "model.admit",
    "model.request",
    "model.record",
    "run.stage",
    "run.execute",
    "exec.acquire_ms",
    "exec.stage_ms",
    "exec.handoff_ms",
    "exec.execution_ms",
    "exec.collect_ms",
    "exec.measure_ms",
    "exec.restore_ms",
    "exec.save_ms",
    "run.store_outputs",
    "turn.save",
    "message.reply",
    "message",
];

/// One message: the bench's own clock (sent to the answer received by the fake) and the
/// phases the bot logged for it.
struct Sample {
    whole_ms: f64,
    phases: BTreeMap<String, f64>,
}

/// `1.25ms`, `830µs`, `2.1s`, `90ns` (tracing's span times) in milliseconds.
fn millis(text: &str) -> f64 {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().unwrap_or(0.0);
    match unit {
        "s" => value * 1000.0,
        "ms" => value,
        "µs" | "us" => value / 1000.0,
        "ns" => value / 1_000_000.0,
        _ => 0.0,
    }
}

/// Each `message` span's phases, in the order the messages closed.
fn phases_per_message(log: &str) -> Vec<BTreeMap<String, f64>> {
    let mut messages = Vec::new();
    let mut current = BTreeMap::new();
    for line in log.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let fields = &event["fields"];
        match fields["message"].as_str() {
            Some("close") => {
                let name = event["span"]["name"].as_str().unwrap_or("").to_string();
                let wall = millis(fields["time.busy"].as_str().unwrap_or(""))
                    + millis(fields["time.idle"].as_str().unwrap_or(""));
                *current.entry(name.clone()).or_insert(0.0) += wall;
                if name == "message" {
                    messages.push(std::mem::take(&mut current));
                }
            }
            // The code's own runs only: the sandbox run making a figure ready for the model
            // is in `model.pictures`.
            Some("execution finished") if within(&event, "run.execute") => {
                for phase in PHASES.iter().filter_map(|p| p.strip_prefix("exec.")) {
                    if let Some(ms) = fields[phase].as_f64() {
                        *current.entry(format!("exec.{phase}")).or_insert(0.0) += ms;
                    }
                }
            }
            _ => {}
        }
    }
    messages
}

/// Whether the event was logged inside a span of that name.
fn within(event: &Value, span: &str) -> bool {
    event["spans"]
        .as_array()
        .is_some_and(|spans| spans.iter().any(|s| s["name"] == span))
}

async fn measure(code: &str, pool: usize, runs: usize, log: &Path) -> Vec<Sample> {
    let pool_size = pool.to_string();
    let bot = Bot::start_logging_to(
        log,
        &[
            ("WARM_POOL_SIZE", pool_size.as_str()),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "warn,codebox=info"),
            ("STATUS_AFTER_MS", "1000"),
            ("RATE_LIMIT_PER_MINUTE", "1000"),
        ],
    )
    .await;
    bot.fake.model(code_running_model);
    // The pool's containers warm (about 2 s each here) before the first message.
    tokio::time::sleep(Duration::from_secs(if pool > 0 { 8 } else { 1 })).await;
    let mut whole = Vec::new();
    // The first message loads what a process loads once (tokenizer tables, HTTP clients):
    // measured, then left out.
    for i in 0..=runs {
        let tag = format!("m{i}");
        let sent = Instant::now();
        // A user of its own each: no history grows from one message to the next.
        let user = format!("6{:017}", i + 1);
        bot.fake.dispatch(
            "MESSAGE_CREATE",
            bot.fake
                .message_from(&user, &format!("run [[{tag}]] {code}")),
        );
        let answer = bot
            .fake
            .wait_for_text(&format!("answer [[{tag}]]"), Duration::from_secs(120))
            .await;
        whole.push((answer.at - sent).as_secs_f64() * 1000.0);
        // The pool refills before the next message, as between a user's messages.
        tokio::time::sleep(Duration::from_millis(if pool > 0 { 3000 } else { 500 })).await;
    }
    bot.stop();
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let phases = phases_per_message(&log);
    whole
        .into_iter()
        .zip(
            phases
                .into_iter()
                .chain(std::iter::repeat_with(BTreeMap::new)),
        )
        .skip(1)
        .map(|(whole_ms, phases)| Sample { whole_ms, phases })
        .collect()
}

fn median_of(samples: &[Sample], phase: &str) -> Option<f64> {
    let values: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.phases.get(phase).copied())
        .collect();
    (!values.is_empty()).then(|| stats(values).median)
}

fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs = docker::runs_asked(8);
    let logs = tempfile::tempdir().unwrap();
    let image = codebox::config::Settings::default().sandbox.sandbox_image;
    println!("codebox bot latency: {runs} messages each (after one left out), image {image}");
    let _ = docker::docker_w1(&image);
    let docker_ms: Vec<f64> = (0..runs).map(|_| docker::docker_w1(&image)).collect();
    let docker_median = stats(docker_ms).median;
    let w1_pool = measure(W1, 2, runs, &logs.path().join("w1-pool.log")).await;
    let w1_fresh = measure(W1, 0, runs, &logs.path().join("w1-fresh.log")).await;
    let w2_pool = measure(W2, 2, runs, &logs.path().join("w2-pool.log")).await;
    let w2_fresh = measure(W2, 0, runs, &logs.path().join("w2-fresh.log")).await;

    let columns = [
        ("W1 pool", &w1_pool),
        ("W1 no pool", &w1_fresh),
        ("W2 pool", &w2_pool),
        ("W2 no pool", &w2_fresh),
    ];
    println!("\nmedian ms per phase (a phase met twice in a turn is summed):");
    print!("  {:<20}", "phase");
    for (label, _) in &columns {
        print!(" {label:>11}");
    }
    println!();
    for phase in PHASES {
        print!("  {phase:<20}");
        for (_, samples) in &columns {
            print!(" {:>11}", cell(median_of(samples, phase)));
        }
        println!();
    }
    print!("  {:<20}", "whole (bench clock)");
    let mut medians = Vec::new();
    let mut p95s = Vec::new();
    for (_, samples) in &columns {
        let whole = stats(samples.iter().map(|s| s.whole_ms).collect());
        medians.push(whole.median);
        p95s.push(whole.p95);
        print!(" {:>11.1}", whole.median);
    }
    println!();
    print!("  {:<20}", "whole p95");
    for p95 in &p95s {
        print!(" {p95:>11.1}");
    }
    println!();
    println!(
        "\nW1 message->answer with the pool: median {:.1} ms; plain docker run of print(1): {docker_median:.1} ms; ratio {:.1}x (target <= 15 ms and >= 15x)",
        medians[0],
        docker_median / medians[0]
    );
    println!(
        "W1 without the pool: median {:.1} ms ({:.1}x docker run)",
        medians[1],
        docker_median / medians[1]
    );
    let w2_code = median_of(&w2_pool, "exec.execution_ms").unwrap_or(f64::NAN);
    println!(
        "W2 with the pool: median {:.1} ms; the code's own execution_ms {w2_code:.1}; bound 1.2x + 30 = {:.1} ms",
        medians[2],
        w2_code * 1.2 + 30.0
    );
    println!(
        "W2 without the pool: median {:.1} ms (every run and picture run in a fresh container)",
        medians[3]
    );
}
