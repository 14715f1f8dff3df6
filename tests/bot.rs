//! The bot end to end: the real `codebox bot` process (real serenity and async-openai
//! clients) against one local fake of Discord and OpenAI, with real sandboxes.

mod common;

use std::time::Duration;

use common::containers_of;
use common::executor::ExecutorProcess;
use common::fake::{Fake, USER_ID, completion_text, completion_tool_call};
use serde_json::{Value, json};

use common::bot::{Bot, DISCORD_TOKEN, OPENAI_KEY};

const LONG: Duration = Duration::from_secs(60);

/// The custom ids of the buttons in a message's (or response's) components.
fn custom_ids(message: &Value) -> Vec<String> {
    message["components"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .filter_map(|button| button["custom_id"].as_str().map(str::to_string))
        .collect()
}

/// Polls up to 20 s until the bot owns `count` containers; the last count seen.
async fn wait_for_containers_of(pid: u32, count: usize) -> usize {
    let mut seen = containers_of(pid).await.len();
    for _ in 0..200 {
        if seen == count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = containers_of(pid).await.len();
    }
    seen
}

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
    let bot = Bot::start(&[("WARM_POOL_SIZE", "1")]).await;
    let bot_pid = bot.child.id();
    let csv = b"a,b\n1,2\n2,4\n3,9\n";
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
    bot.send_with_file("plot column b", "data.csv", csv);

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
    // ... and today's date (UTC), as the bot's clock has it.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(
        system.contains("It is now ") && system.contains(&today),
        "the model knows the date: {system}"
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
    let left = containers_of(bot_pid).await;
    assert!(
        left.is_empty(),
        "the stopped bot left its warm pool: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_times_out() {
    let bot = Bot::start(&[("CODE_EXECUTION_TIMEOUT", "2")]).await;
    // The model asks for more time than allowed: the admin limit wins.
    bot.fake.script_openai(
        200,
        completion_tool_call(
            "call_t",
            json!({"code": "while True:\n    pass", "timeout": 600}),
        ),
    );
    bot.fake.script_openai(
        200,
        completion_text("That loop never ends, so it was stopped."),
    );
    bot.send("run an endless loop");
    let status = bot.fake.wait_for_text("timed out after 2 s", LONG).await;
    assert_eq!(status.method, "PATCH");
    bot.fake.wait_for_text("never ends", LONG).await;
    let tool = &tool_contents(&bot.fake.openai_requests()[1])[0];
    assert_eq!(tool["status"], "timeout");
    assert_eq!(tool["error"]["type"], "TimeoutError");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_429_then_500_are_retried_then_reported() {
    let bot = Bot::start(&[("OPENAI_RETRIES", "2")]).await;
    bot.fake.script_openai(429, common::fake::api_error(429));
    bot.fake.script_openai(500, common::fake::api_error(500));
    bot.fake
        .script_openai(200, completion_text("third time lucky"));
    bot.send("hello?");
    bot.fake.wait_for_text("third time lucky", LONG).await;
    assert_eq!(
        bot.fake.openai_requests().len(),
        3,
        "two retries, then success"
    );

    // Every attempt fails: the user gets a short, clear message...
    bot.fake.script_openai(429, common::fake::api_error(429));
    bot.fake.script_openai(429, common::fake::api_error(429));
    bot.fake.script_openai(429, common::fake::api_error(429));
    bot.send("are you there?");
    let busy = bot.fake.wait_for_text("rate limited", LONG).await;
    assert!(busy.content().len() < 200, "{}", busy.content());
    // ...and nothing is lost: the next request still carries the unanswered message.
    bot.fake
        .script_openai(200, completion_text("yes, back now"));
    bot.send("now?");
    bot.fake.wait_for_text("back now", LONG).await;
    let last = bot.fake.openai_requests().last().unwrap().clone();
    let users: Vec<&str> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["hello?", "are you there?", "now?"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_thousand_character_answer_is_split_on_lines() {
    let bot = Bot::start(&[]).await;
    let answer: String = (0..100)
        .map(|i| format!("row {i:03} {}\n", "x".repeat(42)))
        .collect();
    assert!(answer.len() > 5000);
    bot.fake.script_openai(200, completion_text(&answer));
    bot.send("give me a long answer");
    bot.fake.wait_for_text("row 099", LONG).await;
    let parts: Vec<String> = bot
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.content().starts_with("row "))
        .map(|r| r.content())
        .collect();
    assert_eq!(parts.len(), 3, "{parts:?}");
    // The last part ends with the model's name, Discord's small text.
    let footer = "\n-# gpt-4o-mini";
    assert!(parts[2].ends_with(footer), "{}", parts[2]);
    let mut text = parts.join("\n");
    text.truncate(text.len() - footer.len());
    for part in &parts {
        assert!(part.chars().count() <= 2000);
        assert!(
            part.trim_end_matches(footer).ends_with('x'),
            "split at a line end: {:?}",
            part.chars().rev().take(40).collect::<String>()
        );
    }
    assert_eq!(text + "\n", answer, "nothing lost or reordered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_delete_through_slash_commands() {
    let bot = Bot::start(&[]).await;
    bot.send_with_file("", "notes.txt", b"remember the milk\n");
    let stored = bot
        .fake
        .wait_for_text("Stored `notes.txt`", LONG)
        .await
        .content();
    let id: String = stored.split('`').nth(3).unwrap().to_string();
    assert_eq!(id.len(), 16, "{stored}");

    bot.fake
        .dispatch("INTERACTION_CREATE", bot.fake.command("files", json!([])));
    let listing = bot.fake.wait_for_text("Your files (1/20)", LONG).await;
    assert!(listing.path.ends_with("/callback"));
    assert!(listing.content().contains(&id));
    assert_eq!(listing.json["data"]["flags"], 64, "ephemeral");

    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake
            .command("files", json!([{"name": "id", "type": 3, "value": id}])),
    );
    let download = bot
        .fake
        .wait_for("the file download", LONG, |r| {
            r.path.ends_with("/callback") && !r.files.is_empty()
        })
        .await;
    assert_eq!(download.files[0].0, "notes.txt");
    assert_eq!(download.files[0].1, b"remember the milk\n");

    // /delete asks with Confirm / Cancel buttons; only the file's owner can press them.
    let ask = |fake: &Fake| {
        fake.dispatch(
            "INTERACTION_CREATE",
            fake.command("delete", json!([{"name": "id", "type": 3, "value": id}])),
        )
    };
    ask(&bot.fake);
    let question = bot.fake.wait_for_text("for good?", LONG).await;
    let buttons = custom_ids(&question.json["data"]);
    assert_eq!(buttons.len(), 2, "{}", question.json);
    let (confirm, cancel) = (buttons[0].clone(), buttons[1].clone());
    assert!(confirm.starts_with("codebox-delete:"), "{confirm}");
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake
            .button_press("700000000000000002", "910000000000000555", &confirm),
    );
    bot.fake
        .wait_for_text("belongs to someone else", LONG)
        .await;
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake
            .button_press(USER_ID, "910000000000000555", &cancel),
    );
    let kept = bot.fake.wait_for_text("Kept `", LONG).await;
    assert_eq!(
        kept.json["type"], 7,
        "the question is replaced: {}",
        kept.json
    );
    assert_eq!(kept.json["data"]["components"], json!([]));
    assert_eq!(
        std::fs::read_dir(bot.user_files_dir()).unwrap().count(),
        1,
        "not deleted by a stranger or by Cancel"
    );
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake
            .button_press(USER_ID, "910000000000000555", &confirm),
    );
    bot.fake.wait_for_text("Deleted `notes.txt`", LONG).await;
    assert_eq!(std::fs::read_dir(bot.user_files_dir()).unwrap().count(), 0);
    bot.fake
        .dispatch("INTERACTION_CREATE", bot.fake.command("files", json!([])));
    bot.fake.wait_for_text("You have no files", LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_cancels_a_long_run_and_removes_its_container() {
    let bot = Bot::start(&[]).await;
    bot.fake.script_openai(
        200,
        completion_tool_call("call_s", json!({"code": "import time\ntime.sleep(120)"})),
    );
    bot.send("sleep for two minutes");
    bot.fake.wait_for_text("running code", LONG).await;
    // The status message goes out as the run starts; its container follows shortly.
    let pid = bot.child.id();
    assert_eq!(
        wait_for_containers_of(pid, 1).await,
        1,
        "the run is under way"
    );
    bot.fake
        .dispatch("INTERACTION_CREATE", bot.fake.command("stop", json!([])));
    bot.fake.wait_for_text("Cancelled your request", LONG).await;
    let status = bot.fake.wait_for_text("cancelled", LONG).await;
    assert_eq!(status.method, "PATCH");
    // Force-removal is asynchronous after the abort; under a loaded daemon (all the bot tests
    // start containers at once on two cores) it has been seen to take more than 5 s.
    assert_eq!(
        wait_for_containers_of(pid, 0).await,
        0,
        "the cancelled run's container is gone"
    );
    bot.fake.script_openai(200, completion_text("ready again"));
    bot.send("still there?");
    bot.fake.wait_for_text("ready again", LONG).await;
}

/// Every request that created or changed the status message `id`, in order.
fn status_requests(fake: &Fake, id: &str) -> Vec<common::fake::Recorded> {
    fake.requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/messages") || r.path.ends_with(&format!("/messages/{id}")))
        .filter(|r| r.message_id.as_deref() == Some(id) || r.path.ends_with(id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_shows_output_while_code_runs_within_discords_edit_rate() {
    let bot = Bot::start(&[]).await;
    let code =
        "import time\nfor i in range(35):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.2)";
    bot.fake.script_openai(
        200,
        completion_tool_call("call_live", json!({"code": code})),
    );
    bot.fake
        .script_openai(200, completion_text("It ticked thirty-five times."));
    // Discord answers the first edit with 429: the bot waits, it does not give up.
    bot.fake.rate_limit_edits(1);
    bot.send("tick for seven seconds");
    let posted = bot.fake.wait_for_text("running code", LONG).await;
    assert_eq!(posted.method, "POST");
    let id = posted
        .message_id
        .clone()
        .expect("the status message has an id");
    assert_eq!(
        custom_ids(&posted.json),
        vec![format!("codebox-stop:{USER_ID}")],
        "a Stop button from the start"
    );
    bot.fake
        .wait_for_text("It ticked thirty-five times.", LONG)
        .await;
    // The last edit keeps its spacing; the answer did not wait for it.
    bot.fake.wait_for_text("✅ done in", LONG).await;
    let status = status_requests(&bot.fake, &id);
    let last = status.last().unwrap();
    assert!(
        last.content().starts_with("✅ done in"),
        "{}",
        last.content()
    );
    assert_eq!(
        custom_ids(&last.json),
        Vec::<String>::new(),
        "no Stop once ended"
    );

    let edits: Vec<_> = status.iter().filter(|r| r.method == "PATCH").collect();
    let limited: Vec<_> = edits.iter().filter(|r| r.status == 429).collect();
    assert_eq!(limited.len(), 1, "the fake's 429 was met");
    let with_output: Vec<_> = edits
        .iter()
        .filter(|r| r.status == 200 && r.content().contains("tick "))
        .collect();
    assert!(
        with_output.len() >= 2,
        "at least two edits with output before the final one: {:?}",
        edits.iter().map(|r| r.content()).collect::<Vec<_>>()
    );
    for edit in &with_output {
        let text = edit.content();
        assert!(text.starts_with("⏳ running code… "), "{text}");
        assert!(text.contains("```\n") && text.len() <= 2000, "{text}");
        assert_eq!(custom_ids(&edit.json).len(), 1, "Stop stays while it runs");
    }
    let ticks_in = |text: String| {
        text.lines()
            .filter_map(|l| l.strip_prefix("tick ")?.parse::<u32>().ok())
            .max()
    };
    let shown: Vec<u32> = with_output
        .iter()
        .filter_map(|r| ticks_in(r.content()))
        .collect();
    assert!(
        shown.windows(2).all(|w| w[0] <= w[1]),
        "in order: {shown:?}"
    );
    // At most one edit per 1.5 s, the rate-limited one and the final one included; after
    // the 429 the next edit waited.
    for pair in status.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= Duration::from_millis(1450) || pair[0].method == "POST",
            "edits {gap:?} apart"
        );
    }
    let after_limit = status
        .iter()
        .position(|r| r.status == 429)
        .map(|i| status[i + 1].at.duration_since(status[i].at))
        .unwrap();
    assert!(
        after_limit >= Duration::from_millis(1900),
        "{after_limit:?}"
    );
    assert!(
        status.iter().all(|r| r.files.is_empty()),
        "nothing is attached to the status"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_button_cancels_for_the_user_who_started_the_run_only() {
    let bot = Bot::start(&[]).await;
    bot.fake.script_openai(
        200,
        completion_tool_call("call_b", json!({"code": "import time\ntime.sleep(120)"})),
    );
    bot.send("sleep for two minutes");
    let posted = bot.fake.wait_for_text("running code", LONG).await;
    let id = posted.message_id.clone().unwrap();
    let stop = custom_ids(&posted.json).remove(0);
    let pid = bot.child.id();
    assert_eq!(
        wait_for_containers_of(pid, 1).await,
        1,
        "the run is under way"
    );

    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake.button_press("700000000000000002", &id, &stop),
    );
    let refused = bot
        .fake
        .wait_for_text("belongs to someone else", LONG)
        .await;
    assert_eq!(refused.json["data"]["flags"], 64, "told privately");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(containers_of(pid).await.len(), 1, "still running");

    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake.button_press(USER_ID, &id, &stop),
    );
    bot.fake.wait_for_text("Cancelled your request", LONG).await;
    let cancelled = bot.fake.wait_for_text("🛑 cancelled", LONG).await;
    assert_eq!(
        cancelled.path,
        format!(
            "/api/v10/channels/{}/messages/{id}",
            common::fake::DM_CHANNEL
        )
    );
    assert_eq!(custom_ids(&cancelled.json), Vec::<String>::new());
    assert_eq!(
        wait_for_containers_of(pid, 0).await,
        0,
        "the cancelled run's container is gone"
    );
    // A press on the old status after the run ended stops nothing.
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake.button_press(USER_ID, &id, &stop),
    );
    bot.fake.wait_for_text("already ended", LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_hitting_the_rate_limit_is_told() {
    let bot = Bot::start(&[("RATE_LIMIT_PER_MINUTE", "2")]).await;
    for n in 0..2 {
        bot.fake
            .script_openai(200, completion_text(&format!("answer {n}")));
        bot.send(&format!("question {n}"));
        bot.fake.wait_for_text(&format!("answer {n}"), LONG).await;
    }
    bot.send("question 2");
    let refused = bot.fake.wait_for_text("too fast", LONG).await;
    assert!(
        refused.content().contains("limit 2 per minute"),
        "{}",
        refused.content()
    );
    assert_eq!(
        bot.fake.openai_requests().len(),
        2,
        "the refused message never reached the model"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_and_usage_commands() {
    let bot = Bot::start(&[]).await;
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake.command(
            "run",
            json!([{"name": "code", "type": 3, "value": "print(6 * 7)"}]),
        ),
    );
    let result = bot.fake.wait_for_text("42", LONG).await;
    assert!(
        result.path.contains("/webhooks/"),
        "the deferred answer is edited in: {}",
        result.path
    );
    assert!(
        result.content().starts_with("**ok**"),
        "{}",
        result.content()
    );

    bot.fake.script_openai(200, completion_text("counted"));
    bot.send("count my tokens");
    bot.fake.wait_for_text("counted", LONG).await;
    bot.fake
        .dispatch("INTERACTION_CREATE", bot.fake.command("usage", json!([])));
    let usage = bot.fake.wait_for_text("Usage for", LONG).await.content();
    assert!(
        usage.contains("1 model requests, 120 prompt tokens"),
        "{usage}"
    );
    assert!(usage.contains("30 completion tokens"), "{usage}");
    // gpt-4o-mini: 120 * 0.15 + 30 * 0.60 per million = $0.000036
    assert!(usage.contains("cost $0.0000"), "{usage}");
}

const GUILD: &str = "600000000000000001";
const LISTED: &str = "800000000000000010";
const OTHER: &str = "800000000000000011";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_channels_mentions_and_guild_limits() {
    let bot = Bot::start(&[("BOT_CHANNELS", LISTED)]).await;
    // An unlisted channel without a mention is ignored.
    bot.fake.dispatch(
        "MESSAGE_CREATE",
        bot.fake.guild_message(GUILD, OTHER, "ignored?", false),
    );
    // A listed channel is answered.
    bot.fake
        .script_openai(200, completion_text("answer in the listed channel"));
    bot.fake.dispatch(
        "MESSAGE_CREATE",
        bot.fake.guild_message(GUILD, LISTED, "hello", false),
    );
    let listed = bot
        .fake
        .wait_for_text("answer in the listed channel", LONG)
        .await;
    assert!(listed.path.contains(LISTED));
    // A mention is answered anywhere, and the mention is not sent to the model.
    bot.fake
        .script_openai(200, completion_text("answer to a mention"));
    bot.fake.dispatch(
        "MESSAGE_CREATE",
        bot.fake.guild_message(GUILD, OTHER, "are you here?", true),
    );
    let mentioned = bot.fake.wait_for_text("answer to a mention", LONG).await;
    assert!(mentioned.path.contains(OTHER));
    let requests = bot.fake.openai_requests();
    assert_eq!(
        requests.len(),
        2,
        "the unlisted, unmentioned message never reached the model"
    );
    let last_user = requests[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .unwrap()
        .clone();
    assert_eq!(last_user["content"], "are you here?");

    // Members without Manage Server cannot change limits; admins can lower them.
    let manage_guild = 1 << 5;
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake.guild_command(
            GUILD,
            "limits",
            json!([{"name": "timeout", "type": 10, "value": 1.0}]),
            0,
        ),
    );
    bot.fake
        .wait_for_text("Only this server's admins", LONG)
        .await;
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake.guild_command(
            GUILD,
            "limits",
            json!([{"name": "timeout", "type": 10, "value": 100000.0}]),
            manage_guild,
        ),
    );
    bot.fake.wait_for_text("operator's maximum", LONG).await;
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake.guild_command(
            GUILD,
            "limits",
            json!([{"name": "timeout", "type": 10, "value": 1.0}]),
            manage_guild,
        ),
    );
    bot.fake
        .wait_for_text("Limits for this server: 1 s", LONG)
        .await;
    // Runs in that server now stop after 1 s; DMs keep the operator's limit.
    bot.fake.script_openai(
        200,
        completion_tool_call(
            "call_g",
            json!({"code": "import time\ntime.sleep(5)\nprint('slept')"}),
        ),
    );
    bot.fake
        .script_openai(200, completion_text("the server limit applied"));
    bot.fake.dispatch(
        "MESSAGE_CREATE",
        bot.fake.guild_message(GUILD, LISTED, "sleep 5 s", false),
    );
    bot.fake.wait_for_text("timed out after 1 s", LONG).await;
    bot.fake
        .wait_for_text("the server limit applied", LONG)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_clears_history_but_keeps_files() {
    let bot = Bot::start(&[]).await;
    bot.send_with_file("", "keep.txt", b"keep me\n");
    bot.fake.wait_for_text("Stored `keep.txt`", LONG).await;
    bot.fake.script_openai(200, completion_text("first answer"));
    bot.send("remember this");
    bot.fake.wait_for_text("first answer", LONG).await;
    bot.fake
        .dispatch("INTERACTION_CREATE", bot.fake.command("reset", json!([])));
    bot.fake.wait_for_text("history cleared", LONG).await;
    bot.fake.script_openai(200, completion_text("fresh start"));
    bot.send("what did I say?");
    bot.fake.wait_for_text("fresh start", LONG).await;
    let last = bot.fake.openai_requests().last().unwrap().clone();
    let users: Vec<&Value> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .collect();
    assert_eq!(users.len(), 1, "the old turn is gone");
    assert!(
        last["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("keep.txt"),
        "files kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_bot_tells_the_next_user_their_queue_position() {
    let bot = Bot::start(&[("MAX_CONCURRENT_EXECUTIONS", "1")]).await;
    bot.fake.script_openai(
        200,
        completion_tool_call("call_q", json!({"code": "import time\ntime.sleep(3)"})),
    );
    bot.fake
        .script_openai(200, completion_text("first user done"));
    bot.fake
        .script_openai(200, completion_text("second user done"));
    bot.send("slow work");
    bot.fake.wait_for_text("running code", LONG).await;
    bot.fake.dispatch(
        "MESSAGE_CREATE",
        bot.fake.message_from("700000000000000002", "me too"),
    );
    let queued = bot.fake.wait_for_text("position 1", LONG).await;
    assert!(queued.content().contains("busy"), "{}", queued.content());
    bot.fake.wait_for_text("first user done", LONG).await;
    bot.fake.wait_for_text("second user done", LONG).await;
    let order: Vec<String> = bot
        .fake
        .requests()
        .iter()
        .map(|r| r.content())
        .filter(|c| c.contains("user done"))
        .map(|c| c.lines().next().unwrap_or("").to_string())
        .collect();
    assert_eq!(order, ["first user done", "second user done"]);
}

#[test]
fn the_bot_refuses_to_start_without_its_token() {
    let data = tempfile::tempdir().unwrap();
    let output = common::codebox(data.path()).arg("bot").output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DISCORD_TOKEN is not set"), "{stderr}");
    let output = common::codebox(data.path())
        .arg("bot")
        .env("DISCORD_TOKEN", "x")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("OPENAI_API_KEY is not set"), "{stderr}");
}

/// Directories left under DATA_DIR/outputs (every path removes its run directory).
fn leftover_output_dirs(bot: &Bot) -> Vec<String> {
    match std::fs::read_dir(bot.data.path().join("outputs")) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_whose_names_the_store_cleans_are_still_attached() {
    let bot = Bot::start(&[]).await;
    let code = r#"
for name in ["a:b.csv", ".env", 'q?*"|.txt', "plain.txt"]:
    open(name, "w").write(name + "\n")
"#;
    bot.fake
        .script_openai(200, completion_tool_call("call_n", json!({"code": code})));
    bot.fake
        .script_openai(200, completion_text("four files written"));
    bot.send("write four files");
    let answer = bot.fake.wait_for_text("four files written", LONG).await;
    let mut contents: Vec<String> = answer
        .files
        .iter()
        .map(|(_, bytes)| String::from_utf8_lossy(bytes).trim().to_string())
        .collect();
    contents.sort();
    assert_eq!(
        contents,
        [".env", "a:b.csv", "plain.txt", "q?*\"|.txt"],
        "every generated file is attached, whatever the store made of its name: {:?}",
        answer.files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert_eq!(
        leftover_output_dirs(&bot),
        Vec::<String>::new(),
        "the run directory is removed once its files are stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_command_takes_the_message_path() {
    let bot = Bot::start(&[]).await;
    // Outputs are stored and attached, and the run directory does not stay behind.
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake.command(
            "run",
            json!([{"name": "code", "type": 3, "value": "open('out.txt','w').write('hi')\nprint('wrote')"}]),
        ),
    );
    let result = bot
        .fake
        .wait_for("the /run answer", LONG, |r| {
            r.path.contains("/webhooks/") && r.content().contains("wrote")
        })
        .await;
    assert_eq!(result.files.len(), 1, "the output is attached");
    assert_eq!(result.files[0].0, "out.txt");
    assert_eq!(leftover_output_dirs(&bot), Vec::<String>::new());
    // (Beside it on disk: the channel's saved variables, which are not a file to the user.)
    let stored = std::fs::read_dir(bot.user_files_dir())
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read(e.path()).unwrap() == b"hi")
        .count();
    assert_eq!(stored, 1, "and stored for the user");

    // A running /run holds the user's turn (admission) and /stop cancels it.
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake.command(
            "run",
            json!([{"name": "code", "type": 3, "value": "import time\ntime.sleep(120)"}]),
        ),
    );
    let pid = bot.child.id();
    assert_eq!(
        wait_for_containers_of(pid, 1).await,
        1,
        "the run is under way"
    );
    bot.send("and meanwhile a question");
    bot.fake.wait_for_text("still being worked on", LONG).await;
    bot.fake
        .dispatch("INTERACTION_CREATE", bot.fake.command("stop", json!([])));
    bot.fake.wait_for_text("Cancelled your request", LONG).await;
    bot.fake.wait_for_text("🛑 cancelled", LONG).await;
    assert_eq!(
        wait_for_containers_of(pid, 0).await,
        0,
        "the cancelled run's container is gone"
    );
    assert_eq!(leftover_output_dirs(&bot), Vec::<String>::new());
    assert_eq!(
        bot.fake.openai_requests().len(),
        0,
        "the refused message never reached the model"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_model_request_has_its_own_timeout_and_retries_wait_the_set_delay() {
    let bot = Bot::start(&[
        ("OPENAI_TIMEOUT", "1"),
        ("OPENAI_RETRIES", "1"),
        ("OPENAI_RETRY_DELAY_MS", "1500"),
    ])
    .await;
    // The first attempt outlives its own timeout; the retry answers at once.
    bot.fake.script_openai_after(
        Duration::from_secs(3),
        200,
        completion_text("too late to matter"),
    );
    bot.fake
        .script_openai(200, completion_text("second attempt on time"));
    bot.send("hello");
    bot.fake.wait_for_text("second attempt on time", LONG).await;
    let times = bot.fake.openai_request_times();
    assert_eq!(times.len(), 2, "one retry");
    let gap = times[1] - times[0];
    assert!(
        gap >= Duration::from_millis(2400),
        "1 s timeout + 1.5 s delay before the retry, got {gap:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_the_bot_sends_can_ping_anyone() {
    let bot = Bot::start(&[]).await;
    let code = "print('@everyone <@&123456789012345678> <@700000000000000001>')\nraise ValueError('@here ping')";
    bot.fake
        .script_openai(200, completion_tool_call("call_m", json!({"code": code})));
    bot.fake
        .script_openai(200, completion_text("It printed @everyone and raised."));
    bot.send("ping everybody");
    let answer = bot.fake.wait_for_text("It printed @everyone", LONG).await;
    assert_eq!(
        answer.json["allowed_mentions"]["parse"],
        json!([]),
        "{}",
        answer.json
    );
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake
            .command("run", json!([{"name": "code", "type": 3, "value": code}])),
    );
    let run = bot
        .fake
        .wait_for("the /run answer", LONG, |r| {
            r.path.contains("/webhooks/") && r.content().contains("@here ping")
        })
        .await;
    assert_eq!(
        run.json["allowed_mentions"]["parse"],
        json!([]),
        "{}",
        run.json
    );
    let text = run.content();
    let exception = text.find("@here ping").unwrap();
    assert!(
        text[..exception].matches("```").count() % 2 == 1,
        "the exception is inside a code block: {text}"
    );
    // Every message and edit the bot made disabled mentions.
    for request in bot.fake.requests() {
        if matches!(request.method.as_str(), "POST" | "PATCH") && request.path.contains("/messages")
        {
            assert_eq!(
                request.json["allowed_mentions"]["parse"],
                json!([]),
                "{} {}",
                request.path,
                request.json
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_uses_a_variable_from_its_last_call_and_the_user_gets_the_figure() {
    let bot = Bot::start(&[("WARM_POOL_SIZE", "1")]).await;
    let first = "import matplotlib.pyplot as plt\nx = 41\nplt.plot([1, 4, 9]); plt.show()";
    bot.fake
        .script_openai(200, completion_tool_call("call_1", json!({"code": first})));
    bot.fake.script_openai(
        200,
        completion_tool_call("call_2", json!({"code": "print(x + 1)"})),
    );
    bot.fake.script_openai(
        200,
        completion_text("x plus one is 42, and here is the plot"),
    );
    bot.send("plot and remember");
    let answer = bot.fake.wait_for_text("x plus one is 42", LONG).await;
    assert_eq!(
        answer.files.len(),
        1,
        "the figure from plt.show() is attached"
    );
    assert_eq!(answer.files[0].0, "figure_1.png");
    assert_eq!(&answer.files[0].1[..8], b"\x89PNG\r\n\x1a\n");
    let openai = bot.fake.openai_requests();
    let shown = &tool_contents(&openai[1])[0];
    assert_eq!(
        shown["generated_files"][0]["filename"], "figure_1.png",
        "{shown}"
    );
    let second = tool_contents(&openai[2]);
    let second = second.last().unwrap();
    assert_eq!(second["status"], "ok", "{second}");
    assert_eq!(second["stdout"], "42\n", "{second}");
    let tools = openai[0]["tools"][0]["function"]["description"]
        .as_str()
        .unwrap();
    assert!(tools.contains("persist across calls"), "{tools}");

    // /reset forgets the variables with the history.
    bot.fake
        .dispatch("INTERACTION_CREATE", bot.fake.command("reset", json!([])));
    bot.fake.wait_for_text("Variables forgotten", LONG).await;
    bot.fake.script_openai(
        200,
        completion_tool_call("call_3", json!({"code": "print(x)"})),
    );
    bot.fake.script_openai(200, completion_text("x is gone"));
    bot.send("what is x?");
    bot.fake.wait_for_text("x is gone", LONG).await;
    let last = bot.fake.openai_requests().last().unwrap().clone();
    let after = tool_contents(&last);
    let after = after.last().unwrap();
    assert_eq!(after["error"]["type"], "NameError", "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_runs_code_on_an_executor_elsewhere_and_shows_it_live() {
    const TOKEN: &str = "bot-executor-token";
    let uri = common::mongo_uri();
    let database = common::fresh_database();
    // In its own data directory, sharing only MongoDB with the bot.
    let data = tempfile::tempdir().unwrap();
    let executor = ExecutorProcess::start(
        data.path(),
        TOKEN,
        &[("MONGODB_URI", &uri), ("MONGODB_DATABASE", &database)],
    );
    let url = executor.url.clone();

    let bot = Bot::start(&[
        ("EXECUTOR_URLS", &url),
        ("EXECUTOR_TOKEN", TOKEN),
        ("MONGODB_URI", &uri),
        ("MONGODB_DATABASE", &database),
    ])
    .await;
    let csv = b"a,b\n1,2\n2,4\n3,9\n";
    let code = "import time, codebox_files\nimport matplotlib.pyplot as plt\nfid = codebox_files.list_files()[0]['file_id']\ndf = load_file(fid)\nfor i in range(12):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.3)\ndf.plot(x='a', y='b'); plt.show()\nprint('b sums to', df.b.sum())";
    bot.fake
        .script_openai(200, completion_tool_call("call_r", json!({"code": code})));
    bot.fake
        .script_openai(200, completion_text("Plotted remotely; b sums to 15."));
    bot.send_with_file("plot it", "data.csv", csv);
    let stored = bot.fake.wait_for_text("Stored `data.csv`", LONG).await;
    assert!(
        stored.content().contains("3 rows x 2 columns"),
        "summarized on the executor: {}",
        stored.content()
    );
    let answer = bot.fake.wait_for_text("Plotted remotely", LONG).await;
    assert_eq!(
        answer.files.len(),
        1,
        "the figure from plt.show() is attached"
    );
    assert_eq!(answer.files[0].0, "figure_1.png");
    assert!(answer.files[0].1.starts_with(b"\x89PNG"));
    let live = bot
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.content().contains("tick "))
        .count();
    assert!(
        live >= 1,
        "the status showed the remote run's output as it came"
    );
    let tool = tool_contents(&bot.fake.openai_requests()[1]);
    assert!(
        tool.iter().any(|t| t.to_string().contains("b sums to 15")),
        "{tool:?}"
    );
    // The code ran on the executor: the bot created no container and keeps no bytes.
    assert_eq!(containers_of(bot.child.id()).await.len(), 0);
    assert!(!bot.user_files_dir().exists(), "file bytes are in GridFS");
    let metrics = common::executor::metrics(&executor.url, TOKEN).await;
    assert!(
        metrics.contains("codebox_runs_total{status=\"ok\"} 2"),
        "the summary and the model's run ran there, the figure measured in its run: {metrics}"
    );
    // The model saw the figure, measured on the executor, as the user got it.
    let parts = common::fake::image_parts(&bot.fake.openai_requests()[1]);
    assert_eq!(parts.len(), 1, "the figure follows the tool result");
    let (_, data) = parts[0].1.split_once(";base64,").unwrap();
    use base64::Engine as _;
    let seen = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    assert_eq!(seen, answer.files[0].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_model_is_shown_thinking_and_then_answering() {
    let bot = Bot::start(&[]).await;
    bot.fake.script_openai_after(
        Duration::from_secs(9),
        200,
        completion_text("the slow answer"),
    );
    bot.send("take your time");
    let thinking = bot.fake.wait_for_text("the model is thinking", LONG).await;
    let id = thinking.message_id.clone().unwrap();
    bot.fake.wait_for_text("the slow answer", LONG).await;
    let after = bot
        .fake
        .wait_for_text("the model answered after", LONG)
        .await;
    assert_eq!(after.method, "PATCH");
    assert!(
        after.path.ends_with(&id),
        "the same status message: {}",
        after.path
    );
    let shown: Vec<String> = status_requests(&bot.fake, &id)
        .iter()
        .map(|r| r.content())
        .collect();
    assert!(
        shown
            .iter()
            .any(|t| t.contains("thinking… 8 s") || t.contains("thinking… 9 s")),
        "the elapsed time is kept current: {shown:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_cancels_a_model_request_in_flight() {
    let bot = Bot::start(&[]).await;
    bot.fake.script_openai_after(
        Duration::from_secs(40),
        200,
        completion_text("an answer nobody waits for"),
    );
    bot.send("think hard");
    bot.fake.wait_for_text("the model is thinking", LONG).await;
    bot.fake
        .dispatch("INTERACTION_CREATE", bot.fake.command("stop", json!([])));
    bot.fake.wait_for_text("Cancelled your request", LONG).await;
    let status = bot.fake.wait_for_text("cancelled", LONG).await;
    assert_eq!(status.method, "PATCH");
    // The user is free at once: the next message is answered although the first request
    // would still be waiting for its model.
    bot.fake.script_openai(200, completion_text("ready again"));
    bot.send("still there?");
    bot.fake
        .wait_for_text("ready again", Duration::from_secs(20))
        .await;
    assert!(
        bot.fake
            .requests()
            .iter()
            .all(|r| !r.content().contains("an answer nobody waits for")),
        "the cancelled answer is never posted"
    );
}

/// The messages the bot posted (POST .../messages), in order.
fn posts(fake: &Fake) -> Vec<common::fake::Recorded> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/messages"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_run_is_answered_in_one_message_and_a_slow_one_shows_its_status() {
    // Longer than a fresh container's start on a loaded machine, shorter than the slow run.
    let bot = Bot::start(&[("STATUS_AFTER_MS", "2500")]).await;
    bot.fake.script_openai(
        200,
        completion_tool_call("call_quick", json!({"code": "print(6 * 7)"})),
    );
    bot.fake
        .script_openai(200, completion_text("quick answer: 42"));
    bot.send("multiply");
    bot.fake.wait_for_text("quick answer: 42", LONG).await;
    // The status would have been due 2.5 s after the run started: give it that long.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let quick: Vec<String> = posts(&bot.fake).iter().map(|r| r.content()).collect();
    assert_eq!(quick.len(), 1, "one message for a quick answer: {quick:?}");
    assert!(quick[0].contains("quick answer: 42"), "{quick:?}");

    let mark = posts(&bot.fake).len();
    bot.fake.script_openai(
        200,
        completion_tool_call(
            "call_slow",
            json!({"code": "import time\ntime.sleep(5)\nprint('slept')"}),
        ),
    );
    bot.fake
        .script_openai(200, completion_text("slow answer: slept"));
    bot.send("sleep a while");
    let status = bot.fake.wait_for_text("running code", LONG).await;
    assert_eq!(
        status.method, "POST",
        "the status is posted once the run lasts"
    );
    bot.fake.wait_for_text("slow answer: slept", LONG).await;
    let slow: Vec<String> = posts(&bot.fake)[mark..]
        .iter()
        .map(|r| r.content())
        .collect();
    assert_eq!(slow.len(), 2, "the status, then the answer: {slow:?}");
    assert!(slow[0].contains("running code") && slow[1].contains("slow answer"));
}
