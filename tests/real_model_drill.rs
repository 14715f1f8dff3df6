//! The real-model drill: the real bot (real serenity and async-openai clients, the fake
//! Discord of the tests, real Docker) driven by a real local model. Ignored by `cargo test`;
//! `scripts/real-model-drill.sh` starts the model and runs it. Every task is checked by its
//! numeric or textual answer (and, where the task is about that, by what was attached or
//! whether code ran), never by the model's wording alone.
//!
//! REAL_MODEL_URL: the model server's /v1 base. REAL_MODEL_TASKS: comma-separated task
//! names to run (all when unset). A recording proxy between the bot and the model counts
//! rounds and tokens and keeps the code the model wrote.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use common::bot::Bot;
use common::fake::{Recorded, USER_ID};
use serde_json::{Value, json};

const TURN_TIMEOUT: Duration = Duration::from_secs(900);
/// MAX_TOOL_ROUNDS of the drill's bot: after that many runs, its next answer ends the turn
/// whatever it asks for.
const TOOL_ROUNDS: usize = 5;

/// One model exchange as the proxy saw it.
#[derive(Clone)]
struct Exchange {
    request: Value,
    response: Value,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
    client: reqwest::Client,
}

async fn forward(State(proxy): State<Proxy>, body: Bytes) -> (axum::http::StatusCode, String) {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answer = proxy
        .client
        .post(format!("{}/chat/completions", proxy.upstream))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await;
    let (status, text) = match answer {
        Ok(answer) => {
            let status = answer.status().as_u16();
            (status, answer.text().await.unwrap_or_default())
        }
        Err(err) => (
            502,
            json!({"error": {"message": err.to_string()}}).to_string(),
        ),
    };
    let response: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    proxy
        .exchanges
        .lock()
        .unwrap()
        .push(Exchange { request, response });
    (
        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::BAD_GATEWAY),
        text,
    )
}

async fn start_proxy(upstream: String) -> (String, Arc<Mutex<Vec<Exchange>>>) {
    let exchanges = Arc::new(Mutex::new(Vec::new()));
    let proxy = Proxy {
        upstream,
        exchanges: exchanges.clone(),
        client: reqwest::Client::builder()
            .timeout(TURN_TIMEOUT)
            .build()
            .unwrap(),
    };
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(forward))
        .with_state(proxy);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), exchanges)
}

/// What one message of a task sends.
struct Turn {
    text: &'static str,
    attachment: Option<(&'static str, Vec<u8>)>,
}

/// What the bot posted for a task, and what the model did for it.
struct Seen {
    /// Everything the bot posted or edited for the task's last turn, in order.
    text: String,
    files: Vec<String>,
    /// Model requests and tool calls over the whole task.
    requests: usize,
    tool_calls: usize,
    tokens: u64,
    code: Vec<String>,
    /// Tool results the model got (JSON), over the whole task.
    tool_results: Vec<Value>,
    finished: bool,
}

struct Task {
    name: &'static str,
    turns: Vec<Turn>,
    check: fn(&Seen) -> Result<(), String>,
}

fn contains_number(text: &str, wanted: f64) -> bool {
    let cleaned = text.replace(',', "");
    let mut number = String::new();
    let mut found = Vec::new();
    for c in cleaned.chars().chain([' ']) {
        if c.is_ascii_digit() || c == '.' || (c == '-' && number.is_empty()) {
            number.push(c);
        } else if !number.is_empty() {
            if let Ok(n) = number.trim_end_matches('.').parse::<f64>() {
                found.push(n);
            }
            number.clear();
        }
    }
    found
        .iter()
        .any(|n| (n - wanted).abs() <= wanted.abs() * 1e-6 + 1e-9)
}

fn says(seen: &Seen, wanted: f64) -> Result<(), String> {
    if contains_number(&seen.text, wanted) {
        Ok(())
    } else {
        Err(format!("the answer does not say {wanted}"))
    }
}

fn sales_csv() -> Vec<u8> {
    b"a,b\n1,3\n2,7\n3,9\n4,11\n5,12\n".to_vec()
}

/// An Excel file of 37 rows, written by a sandbox run (no Excel writer on the host).
fn rows_xlsx() -> Vec<u8> {
    let data = tempfile::tempdir().unwrap();
    let run = common::run_with(
        common::codebox(data.path()),
        &["--user", "fixture"],
        "import pandas as pd\npd.DataFrame({'id': range(37), 'v': [i * 2 for i in range(37)]}).to_excel('rows.xlsx', index=False)",
    );
    let path = run.json["generated_files"][0]["path"].as_str().unwrap();
    std::fs::read(path).unwrap()
}

fn tasks() -> Vec<Task> {
    vec![
        Task {
            name: "csv_sum_mean",
            turns: vec![Turn {
                text: "What are the sum and the mean of column b in the file I attached?",
                attachment: Some(("sales.csv", sales_csv())),
            }],
            check: |seen| says(seen, 42.0).and_then(|()| says(seen, 8.4)),
        },
        Task {
            name: "excel_rows",
            turns: vec![Turn {
                text: "How many data rows does this Excel file have?",
                attachment: Some(("rows.xlsx", rows_xlsx())),
            }],
            check: |seen| says(seen, 37.0),
        },
        Task {
            name: "plot",
            turns: vec![Turn {
                text: "Plot column b against column a of the attached CSV as a line chart.",
                attachment: Some(("sales.csv", sales_csv())),
            }],
            check: |seen| {
                if seen.files.iter().any(|f| f.ends_with(".png")) {
                    Ok(())
                } else {
                    Err(format!("no PNG attached (files: {:?})", seen.files))
                }
            },
        },
        Task {
            name: "follow_up_variable",
            turns: vec![
                Turn {
                    text: "Compute the product of all whole numbers from 1 to 12 and keep it in a variable named f.",
                    attachment: None,
                },
                Turn {
                    text: "Now divide f by 1000 and tell me the result.",
                    attachment: None,
                },
            ],
            check: |seen| says(seen, 479001.6),
        },
        Task {
            name: "package_install",
            turns: vec![Turn {
                text: "Use the Python package num2words to write the number 1994 in English words.",
                attachment: None,
            }],
            check: |seen| {
                let text = seen.text.to_lowercase().replace('-', " ");
                if !text.contains("nine hundred and ninety four")
                    && !text.contains("nine hundred ninety four")
                {
                    return Err("the answer does not spell 1994".into());
                }
                let installed = seen.tool_results.iter().any(|r| {
                    r["packages_installed"]
                        .as_array()
                        .is_some_and(|p| p.iter().any(|p| p == "num2words"))
                });
                if installed {
                    Ok(())
                } else {
                    Err("no run installed num2words".into())
                }
            },
        },
        Task {
            name: "fix_failing_code",
            turns: vec![Turn {
                text: "What is the total of the amount column in this file?",
                attachment: Some((
                    "amounts.csv",
                    b"region;amount\nnorth;10.5\nsouth;20.25\neast;5.25\n".to_vec(),
                )),
            }],
            check: |seen| says(seen, 36.0),
        },
        Task {
            name: "file_by_id",
            turns: vec![
                Turn {
                    text: "Write a CSV file squares.csv with columns n and n_squared for n from 1 to 20.",
                    attachment: None,
                },
                Turn {
                    text: "Load the squares.csv file you just made by its file id and tell me the sum of n_squared.",
                    attachment: None,
                },
            ],
            check: |seen| says(seen, 2870.0),
        },
        Task {
            name: "no_code",
            turns: vec![Turn {
                text: "Without running any code: in one sentence, what is a CSV file?",
                attachment: None,
            }],
            check: |seen| {
                if seen.tool_calls > 0 {
                    Err(format!(
                        "{} tool calls for a question needing none",
                        seen.tool_calls
                    ))
                } else if !["comma", "tabular", "table", "values"]
                    .iter()
                    .any(|w| seen.text.to_lowercase().contains(w))
                {
                    Err("the answer says nothing of what a CSV holds".into())
                } else {
                    Ok(())
                }
            },
        },
    ]
}

fn message(bot: &Bot, user: &str, turn: &Turn) -> Value {
    let attachments: Vec<(&str, String, usize)> = turn
        .attachment
        .iter()
        .map(|(name, bytes)| (*name, bot.fake.add_cdn_file(name, bytes), bytes.len()))
        .collect();
    let mut message = bot.fake.message(turn.text, &attachments);
    message["author"] = bot.fake.user(user);
    message
}

fn finished_turn(exchange: &Exchange) -> bool {
    let message = &exchange.response["choices"][0]["message"];
    // An error answer ends the turn too (the bot replies with a sentence).
    exchange.response["choices"].is_null()
        || message["tool_calls"]
            .as_array()
            .is_none_or(|calls| calls.is_empty())
}

async fn run_task(
    bot: &Bot,
    exchanges: &Arc<Mutex<Vec<Exchange>>>,
    user: &str,
    task: &Task,
) -> Seen {
    let first_exchange = exchanges.lock().unwrap().len();
    let mut discord_mark = 0;
    let mut finished = true;
    for turn in &task.turns {
        discord_mark = bot.fake.request_count();
        let before = exchanges.lock().unwrap().len();
        bot.fake
            .dispatch("MESSAGE_CREATE", message(bot, user, turn));
        let began = Instant::now();
        loop {
            let done = {
                let turn = &exchanges.lock().unwrap()[before..];
                turn.last().is_some_and(finished_turn) || turn.len() > TOOL_ROUNDS
            };
            if done {
                break;
            }
            if began.elapsed() > TURN_TIMEOUT {
                finished = false;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The reply (and its attachments) follow the last model answer.
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let posted: Vec<Recorded> = bot.fake.requests_since(discord_mark);
    // The answer only: not the upload's confirmation (it quotes the file's summary) nor
    // the status message (created, then edited: its id comes back in a later request).
    let edited: Vec<String> = posted
        .iter()
        .filter(|r| r.method == "PATCH")
        .filter_map(|r| r.path.rsplit('/').next().map(str::to_string))
        .collect();
    let text = posted
        .iter()
        .filter(|r| r.method == "POST")
        .filter(|r| !r.message_id.as_ref().is_some_and(|id| edited.contains(id)))
        .map(Recorded::content)
        .filter(|c| !c.starts_with("📎") && !c.starts_with("⏳") && !c.starts_with("💭"))
        .collect::<Vec<_>>()
        .join("\n");
    let files = posted
        .iter()
        .flat_map(|r| r.files.iter().map(|(name, _)| name.clone()))
        .collect();
    let exchanges = exchanges.lock().unwrap()[first_exchange..].to_vec();
    // For reading what the model was sent and said: REAL_MODEL_DRILL_DUMP=dir.
    if let Ok(dir) = std::env::var("REAL_MODEL_DRILL_DUMP") {
        let all: Vec<Value> = exchanges
            .iter()
            .map(|e| json!({"request": e.request, "response": e.response}))
            .collect();
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(
            format!("{dir}/{}.json", task.name),
            serde_json::to_vec_pretty(&all).unwrap_or_default(),
        );
    }
    let mut code = Vec::new();
    let mut tokens = 0;
    let mut tool_calls = 0;
    for exchange in &exchanges {
        tokens += exchange.response["usage"]["total_tokens"]
            .as_u64()
            .unwrap_or(0);
        for call in exchange.response["choices"][0]["message"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            tool_calls += 1;
            let arguments: Value = call["function"]["arguments"]
                .as_str()
                .and_then(|a| serde_json::from_str(a).ok())
                .unwrap_or(Value::Null);
            code.push(
                arguments["code"]
                    .as_str()
                    .unwrap_or("(no code argument)")
                    .to_string(),
            );
        }
    }
    let tool_results = exchanges
        .last()
        .map(|last| {
            last.request["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| m["role"] == "tool")
                .filter_map(|m| serde_json::from_str(m["content"].as_str()?).ok())
                .collect()
        })
        .unwrap_or_default();
    Seen {
        text,
        files,
        requests: exchanges.len(),
        tool_calls,
        tokens,
        code,
        tool_results,
        finished,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real model server: scripts/real-model-drill.sh"]
async fn real_model_drill() {
    let upstream =
        std::env::var("REAL_MODEL_URL").unwrap_or_else(|_| "http://127.0.0.1:8091/v1".into());
    let only: Option<Vec<String>> = std::env::var("REAL_MODEL_TASKS")
        .ok()
        .map(|s| s.split(',').map(|t| t.trim().to_string()).collect());
    let (proxy, exchanges) = start_proxy(upstream).await;
    let bot = Bot::start(&[
        ("OPENAI_BASE_URL", proxy.as_str()),
        ("OPENAI_MODEL", "qwen2.5-coder-1.5b-instruct"),
        ("OPENAI_TIMEOUT", "900"),
        ("OPENAI_RETRIES", "0"),
        ("RATE_LIMIT_PER_MINUTE", "1000"),
        ("MODEL_VISION", "off"),
        ("MAX_TOOL_ROUNDS", "5"),
    ])
    .await;
    let mut passed = 0;
    let mut ran = 0;
    let began = Instant::now();
    for (index, task) in tasks().iter().enumerate() {
        if only
            .as_ref()
            .is_some_and(|names| !names.iter().any(|n| n == task.name))
        {
            continue;
        }
        ran += 1;
        // A user of its own per task: its own history, files and variables.
        let user = format!("{}{:02}", &USER_ID[..USER_ID.len() - 2], index + 10);
        let started = Instant::now();
        let seen = run_task(&bot, &exchanges, &user, task).await;
        let seconds = started.elapsed().as_secs_f64();
        let verdict = if seen.finished {
            (task.check)(&seen)
        } else {
            Err("the turn did not finish".into())
        };
        if verdict.is_ok() {
            passed += 1;
        }
        println!(
            "TASK {:<20} {:<4} model_requests={} tool_calls={} tokens={} seconds={:.0}{}",
            task.name,
            if verdict.is_ok() { "PASS" } else { "FAIL" },
            seen.requests,
            seen.tool_calls,
            seen.tokens,
            seconds,
            verdict
                .err()
                .map(|e| format!(" why={e}"))
                .unwrap_or_default()
        );
        for (n, code) in seen.code.iter().enumerate() {
            println!("  code {}:\n    {}", n + 1, code.replace('\n', "\n    "));
        }
        let reply: String = seen.text.chars().take(400).collect();
        println!("  reply: {}", reply.replace('\n', " / "));
    }
    println!(
        "SUMMARY passed={passed}/{ran} seconds={:.0}",
        began.elapsed().as_secs_f64()
    );
}
