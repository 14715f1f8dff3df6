//! The `codebox bot` process's resident memory, idle with a full warm pool and under a
//! burst of 20 users' messages that each run `print(1)`: the real binary, with serenity and
//! async-openai talking to the local fake of Discord and OpenAI the bot tests use.
//! Prints figures; asserts nothing about them. Run with `cargo bench --bench bot_rss`.

#[path = "../tests/common/bot.rs"]
#[allow(dead_code)]
mod bot;
#[path = "../tests/common/fake.rs"]
#[allow(dead_code)]
mod fake;
#[path = "common/rss.rs"]
mod rss;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bot::Bot;
use fake::{code_running_model, completion_text, completion_tool_call};
use rss::rss_kib;
use serde_json::json;

const USERS: usize = 20;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut bot = Bot::start(&[
        ("WARM_POOL_SIZE", "2"),
        ("RATE_LIMIT_PER_MINUTE", "1000"),
        ("RUST_LOG", "warn"),
    ])
    .await;
    let (fake, pid) = (bot.fake.clone(), bot.child.id().to_string());
    // Time for the pool's two containers to warm (about 2 s each here).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = rss_kib(&pid);
    // One conversation first: what the first message loads once (tokenizer tables, HTTP
    // clients) is then apart from what a burst costs.
    fake.script_openai(
        200,
        completion_tool_call("call_first", json!({"code": "print(1)"})),
    );
    fake.script_openai(200, completion_text("first done"));
    fake.dispatch(
        "MESSAGE_CREATE",
        fake.message_from("699999999999999999", "first"),
    );
    fake.wait_for_text("first done", Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after_first = rss_kib(&pid);
    // One user at a time, a warm container each: message in to answer out.
    let mut single = Vec::new();
    for i in 0..5 {
        fake.script_openai(
            200,
            completion_tool_call(&format!("call_one_{i}"), json!({"code": "print(1)"})),
        );
        fake.script_openai(200, completion_text(&format!("single {i} done")));
        let sent = Instant::now();
        fake.dispatch(
            "MESSAGE_CREATE",
            fake.message_from("699999999999999998", "once"),
        );
        fake.wait_for_text(&format!("single {i} done"), Duration::from_secs(60))
            .await;
        single.push(sent.elapsed());
        // The pool refills and the status's last edit goes out before the next.
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    single.sort();
    println!(
        "one message running print(1) on a warm container, message to answer: median {} ms (of {:?} ms)",
        single[2].as_millis(),
        single.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );

    // From here the fake model answers each request from its content, whatever the order.
    fake.model(code_running_model);
    let peak = Arc::new(AtomicU64::new(after_first));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling, pid) = (peak.clone(), sampling.clone(), pid.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(&pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let started = Instant::now();
    for i in 0..USERS {
        let user = format!("7000000000000{i:05}");
        fake.dispatch(
            "MESSAGE_CREATE",
            fake.message_from(&user, &format!("run [[u{i}]] print(1)")),
        );
    }
    let mut answered = 0;
    while started.elapsed() < Duration::from_secs(120) {
        answered = fake
            .requests()
            .iter()
            .filter(|r| r.content().starts_with("answer [[u"))
            .count();
        if answered >= USERS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let burst_s = started.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = rss_kib(&pid);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(bot.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = bot.child.wait();
    println!(
        "codebox bot RSS: idle with a full pool (WARM_POOL_SIZE=2) {:.1} MiB; after one conversation {:.1} MiB; peak during {USERS} users' print(1) at once {:.1} MiB; 5 s after {:.1} MiB; {answered}/{USERS} answered in {burst_s:.1} s",
        idle as f64 / 1024.0,
        after_first as f64 / 1024.0,
        peak.load(Ordering::Relaxed) as f64 / 1024.0,
        after as f64 / 1024.0
    );
}
