//! What the model sees, end to end: the real `codebox bot` (real serenity and async-openai
//! clients) against the local fake of Discord and OpenAI, with real sandboxes. Pictures the
//! user attaches and the figures runs draw reach the model as image parts of the stored
//! bytes; documents' text reaches it in the first request.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::bot::Bot;
use common::docs;
use common::fake::{
    FIGURES_PREFIX, USER_ID, completion_text, completion_tool_call, image_parts, message_text,
    with_status,
};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(90);

fn decode(data_url: &str) -> Vec<u8> {
    let (_, data) = data_url.split_once(";base64,").expect("a base64 data URL");
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("valid base64")
}

/// Width and height from a PNG's header (the test reads what the sandbox wrote).
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

fn user_texts(request: &Value) -> Vec<String> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(message_text)
        .collect()
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The id the bot gave the last file it stored under `name` (from its confirmation).
async fn stored_id(bot: &Bot, name: &str) -> String {
    let text = bot
        .fake
        .wait_for_text(&format!("Stored `{name}`"), LONG)
        .await
        .content();
    let after = text
        .split(&format!("Stored `{name}`"))
        .nth(1)
        .unwrap()
        .to_string();
    after
        .split(" as `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_gets_the_attached_picture_and_the_figure_its_code_drew() {
    let bot = Bot::start(&[]).await;
    let picture = docs::png(64, 48, [200, 30, 30]);
    let code = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.title('b by a')\nplt.show()\n";
    bot.fake
        .script_openai(200, completion_tool_call("call_1", json!({"code": code})));
    bot.fake
        .script_openai(200, completion_text("The chart shows b by a."));
    bot.send_with_file("what does this say? then plot", "shot.png", &picture);
    let answer = bot.fake.wait_for_text("The chart shows", LONG).await;

    let requests = bot.fake.openai_requests();
    assert_eq!(requests.len(), 2);
    let first = image_parts(&requests[0]);
    assert_eq!(first.len(), 1, "one picture in the first request");
    assert!(
        first[0].1.starts_with("data:image/png;base64,"),
        "never a CDN link"
    );
    assert_eq!(
        decode(&first[0].1),
        picture,
        "the stored bytes, as attached"
    );
    let messages = requests[0]["messages"].as_array().unwrap();
    assert_eq!(messages[first[0].0]["role"], "user");
    assert_eq!(
        messages[first[0].0]["content"][1]["image_url"]["detail"],
        "high"
    );

    let second = requests[1]["messages"].as_array().unwrap();
    let last = second.last().unwrap();
    assert_eq!(last["role"], "user");
    let text = message_text(last);
    assert!(text.starts_with(FIGURES_PREFIX), "{text}");
    assert_eq!(
        second[second.len() - 2]["role"],
        "tool",
        "right after the tool result"
    );
    let parts = image_parts(&requests[1]);
    let figure = parts
        .iter()
        .find(|(i, _)| *i == second.len() - 1)
        .expect("the figure is an image part");
    let figure_bytes = decode(&figure.1);
    assert_eq!(answer.files.len(), 1, "the user gets the figure too");
    assert_eq!(
        figure_bytes, answer.files[0].1,
        "the model sees what the user got"
    );
    let (w, h) = png_size(&figure_bytes);
    assert!(w <= 1024 && h <= 1024, "{w}x{h}");
    assert!(text.contains("figure_1.png"), "{text}");
    // The attachment is replayed in the second request too (it is in the history).
    assert!(parts.iter().any(|(_, url)| decode(url) == picture));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_vision_off_no_request_carries_a_picture() {
    let bot = Bot::start(&[("MODEL_VISION", "off")]).await;
    let code = "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\n";
    bot.fake
        .script_openai(200, completion_tool_call("call_1", json!({"code": code})));
    bot.fake.script_openai(200, completion_text("drawn"));
    bot.send_with_file("look at this", "shot.png", &docs::png(32, 32, [0, 0, 0]));
    let id = stored_id(&bot, "shot.png").await;
    bot.fake.wait_for_text("drawn", LONG).await;
    let requests = bot.fake.openai_requests();
    for request in &requests {
        assert!(image_parts(request).is_empty(), "no image part: {request}");
        assert!(!request.to_string().contains(FIGURES_PREFIX));
    }
    let asked = user_texts(&requests[0]).join("\n");
    assert!(
        asked.contains(&id) && asked.contains("cannot see pictures"),
        "{asked}"
    );
    let system = requests[0]["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("You cannot see pictures"), "{system}");
    // What it cannot see, it reads: the run's result describes the figure it drew.
    let tool = requests[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_string())
        .unwrap();
    assert!(
        tool.contains("[figure_1.png: line chart, 1 series: line 2 points: (0, 1), (1, 2)]"),
        "{tool}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_only_claims_to_be_a_picture_is_not_sent_as_one() {
    let bot = Bot::start(&[]).await;
    bot.fake.script_openai(200, completion_text("first"));
    bot.send_with_file(
        "look",
        "fake.png",
        b"I am text that calls itself a picture\n",
    );
    bot.fake.wait_for_text("first", LONG).await;
    // PNG's signature, then nothing a decoder can read.
    let mut broken = b"\x89PNG\r\n\x1a\n".to_vec();
    broken.extend_from_slice(&[7u8; 200]);
    bot.fake.script_openai(200, completion_text("second"));
    bot.send_with_file("and this", "broken.png", &broken);
    bot.fake.wait_for_text("second", LONG).await;
    let requests = bot.fake.openai_requests();
    assert!(image_parts(&requests[0]).is_empty());
    let system = requests[0]["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("/mnt/data/fake.png (txt"),
        "detected as text: {system}"
    );
    assert!(image_parts(&requests[1]).is_empty(), "{}", requests[1]);
    let asked = user_texts(&requests[1]).join("\n");
    assert!(
        asked.contains("broken.png") && asked.contains("not shown as a picture"),
        "{asked}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_pictures_are_downscaled_and_bombs_refused_inside_the_sandbox() {
    let bot = Bot::start(&[]).await;
    let pid = bot.child.id();
    bot.fake.script_openai(200, completion_text("warm"));
    bot.send("hello");
    bot.fake.wait_for_text("warm", LONG).await;
    let before = rss_kb(pid);

    bot.fake.script_openai(200, completion_text("wide seen"));
    bot.send_with_file("wide", "wide.png", &docs::png(3000, 1000, [10, 200, 10]));
    bot.fake.wait_for_text("wide seen", LONG).await;
    bot.fake.script_openai(200, completion_text("huge seen"));
    bot.send_with_file("huge", "huge.png", &docs::png(10_000, 10_000, [1, 2, 3]));
    bot.fake.wait_for_text("huge seen", LONG).await;
    bot.fake.script_openai(200, completion_text("bomb seen"));
    bot.send_with_file("bomb", "bomb.png", &docs::png_bomb(60_000));
    bot.fake.wait_for_text("bomb seen", LONG).await;
    let after = rss_kb(pid);

    let requests = bot.fake.openai_requests();
    let wide = image_parts(&requests[1]);
    assert_eq!(wide.len(), 1);
    assert_eq!(
        png_size(&decode(&wide[0].1)),
        (2048, 683),
        "downscaled to 2048 px"
    );
    let huge = user_texts(&requests[2]).join("\n");
    assert!(
        huge.contains("huge.png") && huge.contains("too many pixels"),
        "{huge}"
    );
    let bomb = user_texts(&requests[3]).join("\n");
    assert!(
        bomb.contains("bomb.png") && bomb.contains("too many pixels"),
        "{bomb}"
    );
    // The 10000x10000 picture (300 MB decoded) and the bomb were never decoded here.
    assert!(
        after < before + 40 * 1024,
        "the bot's RSS went from {before} kB to {after} kB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_picture_becomes_a_note_when_the_history_is_replayed() {
    let bot = Bot::start(&[]).await;
    bot.fake.script_openai(200, completion_text("a red square"));
    bot.send_with_file("what is it?", "photo.png", &docs::png(40, 40, [255, 0, 0]));
    let id = stored_id(&bot, "photo.png").await;
    bot.fake.wait_for_text("a red square", LONG).await;
    bot.fake.script_openai(200, completion_text("still red"));
    bot.send("and now?");
    bot.fake.wait_for_text("still red", LONG).await;
    let deleted = common::codebox(bot.data.path())
        .args(["files", "delete", "--user", USER_ID, &id])
        .output()
        .unwrap();
    assert!(deleted.status.success(), "{deleted:?}");
    bot.fake.script_openai(200, completion_text("gone"));
    bot.send("and after deleting it?");
    bot.fake.wait_for_text("gone", LONG).await;
    let requests = bot.fake.openai_requests();
    assert_eq!(
        image_parts(&requests[1]).len(),
        1,
        "replayed while the file lives"
    );
    assert!(image_parts(&requests[2]).is_empty());
    let history = user_texts(&requests[2]).join("\n");
    assert!(
        history.contains("[image photo.png is no longer available]"),
        "{history}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn picture_tokens_count_in_usage_and_in_the_history_budget() {
    let bot = Bot::start(&[("HISTORY_TOKEN_BUDGET", "700")]).await;
    bot.fake.script_openai(200, completion_text("a square"));
    // 1024x1024 at detail high: 765 tokens, more than the whole budget.
    bot.send_with_file(
        "first question",
        "big.png",
        &docs::png(1024, 1024, [9, 9, 9]),
    );
    bot.fake.wait_for_text("a square", LONG).await;
    bot.fake.script_openai(200, completion_text("next"));
    bot.send("second question");
    bot.fake.wait_for_text("next", LONG).await;
    bot.fake.script_openai(200, completion_text("third"));
    bot.send("third question");
    bot.fake.wait_for_text("third", LONG).await;
    let requests = bot.fake.openai_requests();
    let second = user_texts(&requests[1]).join("\n");
    assert!(
        second.contains("first question"),
        "the last turn is always kept: {second}"
    );
    assert_eq!(image_parts(&requests[1]).len(), 1);
    let third = user_texts(&requests[2]).join("\n");
    assert!(third.contains("second question"));
    assert!(
        !third.contains("first question"),
        "the turn with the picture no longer fits: {third}"
    );
    assert!(image_parts(&requests[2]).is_empty());
    bot.fake
        .dispatch("INTERACTION_CREATE", bot.fake.command("usage", json!([])));
    let usage = bot.fake.wait_for_text("Usage for", LONG).await.content();
    assert!(
        usage.contains("1530 images"),
        "the picture was sent twice: {usage}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_reach_the_model_in_the_first_request() {
    let bot = Bot::start(&[]).await;
    bot.fake.script_openai(200, completion_text("summarised"));
    let pdf = docs::pdf(&[
        Some("Findings: churn fell to 4 percent"),
        Some("Method: survey of 812 customers"),
        Some("Conclusion: keep the annual plan"),
    ]);
    let url_pdf = bot.fake.add_cdn_file("report.pdf", &pdf);
    let memo = docs::docx(&["Board memo", "Dividends rise to 30 cents."]);
    let url_docx = bot.fake.add_cdn_file("memo.docx", &memo);
    bot.fake.dispatch(
        "MESSAGE_CREATE",
        bot.fake.message(
            "summarise these",
            &[
                ("report.pdf", url_pdf, pdf.len()),
                ("memo.docx", url_docx, memo.len()),
            ],
        ),
    );
    bot.fake.wait_for_text("summarised", LONG).await;
    let requests = bot.fake.openai_requests();
    assert_eq!(requests.len(), 1, "no tool call was needed");
    let system = requests[0]["messages"][0]["content"].as_str().unwrap();
    for needle in [
        "pdf, 3 pages",
        "churn fell to 4 percent",
        "survey of 812 customers",
        "keep the annual plan",
        "Dividends rise to 30 cents.",
    ] {
        assert!(system.contains(needle), "{needle}: {system}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refusing_pictures_is_asked_again_without_them_and_remembered() {
    let bot = Bot::start(&[]).await;
    bot.fake.model(|request| {
        if image_parts(request).is_empty() {
            completion_text("text only, fine")
        } else {
            with_status(
                400,
                json!({"error": {"message": "image input is not supported - hint: provide the mmproj", "type": "invalid_request_error", "param": null, "code": null}}),
            )
        }
    });
    bot.send_with_file("see this?", "photo.png", &docs::png(20, 20, [1, 1, 1]));
    bot.fake.wait_for_text("text only, fine", LONG).await;
    let requests = bot.fake.openai_requests();
    assert_eq!(
        requests.len(),
        2,
        "refused once, then sent without the picture"
    );
    assert_eq!(image_parts(&requests[0]).len(), 1);
    assert!(image_parts(&requests[1]).is_empty());
    let asked = user_texts(&requests[1]).join("\n");
    assert!(asked.contains("does not take pictures"), "{asked}");
    let mark = bot.fake.request_count();
    bot.send("again");
    common::eventually("the second answer", LONG, async || {
        bot.fake
            .requests_since(mark)
            .iter()
            .any(|r| r.content().contains("text only, fine"))
    })
    .await;
    let requests = bot.fake.openai_requests();
    assert_eq!(requests.len(), 3, "the model is not offered pictures again");
    assert!(image_parts(&requests[2]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_picture_becomes_a_note_when_the_history_is_replayed() {
    // 0.0015 hours: the picture expires 5.4 s after it is stored.
    let bot = Bot::start(&[("FILE_EXPIRATION_HOURS", "0.0015")]).await;
    bot.fake
        .script_openai(200, completion_text("a blue square"));
    bot.send_with_file("what is it?", "photo.png", &docs::png(40, 40, [0, 0, 255]));
    bot.fake.wait_for_text("a blue square", LONG).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    bot.fake.script_openai(200, completion_text("expired"));
    bot.send("and now?");
    bot.fake.wait_for_text("expired", LONG).await;
    let requests = bot.fake.openai_requests();
    assert_eq!(image_parts(&requests[0]).len(), 1);
    assert!(image_parts(&requests[1]).is_empty());
    let history = user_texts(&requests[1]).join("\n");
    assert!(
        history.contains("[image photo.png is no longer available]"),
        "{history}"
    );
}

/// The runs the bot's log says the executor finished (one line per run).
fn runs_logged(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|line| line.contains("\"execution finished\""))
        .count()
}

/// A figure the run measured in its own sandbox goes to the model as it is stored, with no
/// second sandbox run to measure it; one too large for the model still goes through the
/// picture run, downscaled there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_figure_the_run_measured_needs_no_second_run() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("bot.log");
    let bot = Bot::start_logging_to(
        &log,
        &[("LOG_FORMAT", "json"), ("RUST_LOG", "warn,codebox=info")],
    )
    .await;
    let small = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.show()\n";
    bot.fake
        .script_openai(200, completion_tool_call("call_1", json!({"code": small})));
    bot.fake.script_openai(200, completion_text("small seen"));
    bot.send("plot small");
    let answer = bot.fake.wait_for_text("small seen", LONG).await;
    assert_eq!(runs_logged(&log), 1, "the code's run only");
    let requests = bot.fake.openai_requests();
    let parts = image_parts(&requests[1]);
    assert_eq!(parts.len(), 1, "the figure is shown");
    let figure = decode(&parts[0].1);
    assert_eq!(figure, answer.files[0].1, "as stored");
    let (w, h) = png_size(&figure);
    assert!(w.max(h) <= 1024, "{w}x{h}: small enough to go as it is");

    let large = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.savefig('/mnt/outputs/large.png', dpi=400)\n";
    bot.fake
        .script_openai(200, completion_tool_call("call_2", json!({"code": large})));
    bot.fake.script_openai(200, completion_text("large seen"));
    bot.send("plot large");
    bot.fake.wait_for_text("large seen", LONG).await;
    assert_eq!(runs_logged(&log), 3, "the code's run, then the picture run");
    let requests = bot.fake.openai_requests();
    let parts = image_parts(&requests[3]);
    let last = parts.last().expect("the large figure is shown");
    let (w, h) = png_size(&decode(&last.1));
    assert_eq!(w.max(h), 1024, "{w}x{h}: downscaled from 2560 px");
}
