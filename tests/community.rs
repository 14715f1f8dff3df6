//! A bot a community runs: model choice, budgets, admins and access, the Code button and
//! streamed answers, through the real `codebox bot` against the fake Discord and model.

mod common;

use std::time::Duration;

use common::bot::Bot;
use common::containers_of;
use common::fake::{Fake, USER_ID, completion_text, completion_tool_call};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);
const GUILD: &str = "600000000000000001";
const CHANNEL: &str = "800000000000000077";
const MANAGE_GUILD: u64 = 1 << 5;
const MEMBER_B: &str = "700000000000000002";
const MEMBER_C: &str = "700000000000000003";

/// The custom ids of the components in a message (or an interaction's answer).
fn custom_ids(message: &Value) -> Vec<String> {
    let components = message
        .get("data")
        .filter(|d| d.get("components").is_some())
        .unwrap_or(message)["components"]
        .clone();
    components
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["custom_id"].as_str().map(str::to_string))
        .collect()
}

/// A slash command whose `user` option names `member` (Discord sends the user resolved).
fn naming(fake: &Fake, mut command: Value, member: &str) -> Value {
    command["data"]["resolved"] = json!({"users": {member: fake.user(member)}});
    command
}

/// The model requests' `model` fields, in order.
fn models_asked(fake: &Fake) -> Vec<String> {
    fake.openai_requests()
        .iter()
        .map(|r| r["model"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Answers every request with the model it was asked of, after `delay`.
fn echo_model(fake: &Fake) {
    fake.model(|request| completion_text(&format!("answered by {}", request["model"])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_choose_their_models_within_what_the_admins_allow() {
    let bot = Bot::start(&[("CHAT_MODELS", "gpt-4.1,gpt-4o")]).await;
    echo_model(&bot.fake);
    // The DM user picks gpt-4.1 by name.
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake.command(
            "model",
            json!([{"name": "name", "type": 3, "value": "gpt-4.1"}]),
        ),
    );
    bot.fake
        .wait_for_text("Your model is now `gpt-4.1`", LONG)
        .await;
    // A server's admin narrows the choice there; a member who is no admin cannot.
    let allow = json!([{"name": "allowed", "type": 3, "value": "gpt-4o-mini,gpt-4o"}]);
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake
            .guild_command_as(MEMBER_C, &[], GUILD, "model", allow.clone(), 0),
    );
    bot.fake
        .wait_for_text("Only this server's admins", LONG)
        .await;
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake.guild_command(GUILD, "model", allow, MANAGE_GUILD),
    );
    bot.fake
        .wait_for_text("Members here may choose: gpt-4o-mini, gpt-4o.", LONG)
        .await;
    // Member B opens the menu there and picks gpt-4o from it.
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake
            .guild_command_as(MEMBER_B, &[], GUILD, "model", json!([]), 0),
    );
    let menu = bot.fake.wait_for_text("You may choose", LONG).await;
    let menu_id = custom_ids(&menu.json)
        .into_iter()
        .find(|id| id.starts_with("codebox-model:"))
        .expect("a model menu");
    assert!(menu_id.ends_with(MEMBER_B), "{menu_id}");
    let offered = menu.json["data"]["components"][0]["components"][0]["options"].clone();
    let offered: Vec<&str> = offered
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["value"].as_str().unwrap())
        .collect();
    assert_eq!(
        offered,
        vec!["gpt-4o-mini", "gpt-4o"],
        "only what the admin allowed"
    );
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake
            .menu_choice(MEMBER_C, Some(GUILD), "1", &menu_id, "gpt-4o"),
    );
    bot.fake
        .wait_for_text("This menu belongs to someone else", LONG)
        .await;
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake
            .menu_choice(MEMBER_B, Some(GUILD), "1", &menu_id, "gpt-4o"),
    );
    bot.fake
        .wait_for_text("Your model is now `gpt-4o`", LONG)
        .await;
    // Member C cannot pick a model the admin did not allow here.
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake.guild_command_as(
            MEMBER_C,
            &[],
            GUILD,
            "model",
            json!([{"name": "name", "type": 3, "value": "gpt-4.1"}]),
            0,
        ),
    );
    bot.fake
        .wait_for_text("is not one of the models you may choose here", LONG)
        .await;

    // Each one's messages go to their own model, and the answer names it.
    bot.send("hello from the DM user");
    bot.fake
        .wait_for_text("answered by \"gpt-4.1\"\n-# gpt-4.1", LONG)
        .await;
    bot.fake.dispatch(
        "MESSAGE_CREATE",
        bot.fake
            .guild_message_as(MEMBER_B, &[], GUILD, CHANNEL, "hello from B"),
    );
    bot.fake
        .wait_for_text("answered by \"gpt-4o\"\n-# gpt-4o", LONG)
        .await;
    bot.fake.dispatch(
        "MESSAGE_CREATE",
        bot.fake
            .guild_message_as(MEMBER_C, &[], GUILD, CHANNEL, "hello from C"),
    );
    bot.fake
        .wait_for_text("answered by \"gpt-4o-mini\"", LONG)
        .await;
    assert_eq!(
        models_asked(&bot.fake),
        vec!["gpt-4.1", "gpt-4o", "gpt-4o-mini"]
    );
    // /usage breaks the DM user's month down by model.
    bot.fake
        .dispatch("INTERACTION_CREATE", bot.fake.command("usage", json!([])));
    let usage = bot.fake.wait_for_text("By model:", LONG).await;
    assert!(
        usage
            .content()
            .contains("- `gpt-4.1`: 1 requests, 120 prompt + 30 completion tokens, $0.0005"),
        "{}",
        usage.content()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_at_the_cap_is_told_which_and_nothing_reaches_the_model() {
    let bot = Bot::start(&[("USER_MONTHLY_BUDGET_USD", "0.0001")]).await;
    echo_model(&bot.fake);
    bot.send("hello");
    let told = bot
        .fake
        .wait_for_text("You have reached your monthly budget", LONG)
        .await;
    let text = told.content();
    assert!(text.contains("$0.00 of $0.0001 spent this month"), "{text}");
    assert!(text.contains("It resets on 2"), "{text}");
    assert!(text.contains("nothing was sent to the model"), "{text}");
    assert!(!text.contains("-# "), "no model answered: {text}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(bot.fake.openai_requests().is_empty());
    // /limits says which caps are in force.
    bot.fake
        .dispatch("INTERACTION_CREATE", bot.fake.command("limits", json!([])));
    bot.fake
        .wait_for_text("Monthly budgets: $0.0001 per member", LONG)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_just_under_the_cap_overshoot_by_at_most_one_request() {
    // A request is estimated at its prompt plus 1000 output tokens: about $0.00065 at
    // gpt-4o-mini's price. Two fit under $0.0016, a third would not.
    let bot = Bot::start(&[
        ("USER_MONTHLY_BUDGET_USD", "0.0016"),
        ("SERVER_MONTHLY_BUDGET_USD", "0.0016"),
    ])
    .await;
    // Slow answers: every message of a burst is in flight before any is billed.
    for _ in 0..12 {
        bot.fake
            .script_openai_after(Duration::from_secs(2), 200, completion_text("fine"));
    }
    // Five at once from one member.
    for _ in 0..5 {
        bot.send("one of five");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let from_one = bot.fake.openai_requests().len();
    assert!(from_one <= 3, "{from_one} requests from one member's burst");
    // Five members of one server at once, under the server's cap.
    let mark = bot.fake.openai_requests().len();
    let members = [
        "700000000000000011",
        "700000000000000012",
        "700000000000000013",
        "700000000000000014",
        "700000000000000015",
    ];
    for member in members {
        bot.fake.dispatch(
            "MESSAGE_CREATE",
            bot.fake
                .guild_message_as(member, &[], GUILD, CHANNEL, "one of a server's five"),
        );
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let from_server = bot.fake.openai_requests().len() - mark;
    let refused = bot
        .fake
        .requests()
        .iter()
        .filter(|r| {
            r.content()
                .contains("This server has reached its monthly budget")
        })
        .count();
    assert!(
        (1..=3).contains(&from_server),
        "{from_server} requests reached the model from a burst of 5 under a cap for 2"
    );
    assert_eq!(
        from_server + refused,
        5,
        "every member got an answer or the sentence"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_stops_another_members_run() {
    let bot = Bot::start(&[]).await;
    bot.fake.script_openai(
        200,
        completion_tool_call("call_s", json!({"code": "import time\ntime.sleep(120)"})),
    );
    bot.fake.dispatch(
        "MESSAGE_CREATE",
        bot.fake
            .guild_message_as(MEMBER_B, &[], GUILD, CHANNEL, "sleep for two minutes"),
    );
    let pid = bot.child.id();
    for _ in 0..300 {
        if containers_of(pid).await.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(containers_of(pid).await.len(), 1, "the run is under way");
    let stop = |permissions| {
        naming(
            &bot.fake,
            bot.fake.guild_command(
                GUILD,
                "stop",
                json!([{"name": "user", "type": 6, "value": MEMBER_B}]),
                permissions,
            ),
            MEMBER_B,
        )
    };
    bot.fake.dispatch("INTERACTION_CREATE", stop(0));
    bot.fake
        .wait_for_text("Only this server's admins", LONG)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        containers_of(pid).await.len(),
        1,
        "a member's stop did nothing"
    );
    bot.fake.dispatch("INTERACTION_CREATE", stop(MANAGE_GUILD));
    bot.fake
        .wait_for_text(&format!("Stopped <@{MEMBER_B}>'s request"), LONG)
        .await;
    for _ in 0..200 {
        if containers_of(pid).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        containers_of(pid).await.is_empty(),
        "the stopped run's container is gone"
    );
    bot.fake.wait_for_text("cancelled", LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_members_are_told_privately_and_code_can_be_closed_alone() {
    let bot = Bot::start(&[
        ("BLOCKED_USER_IDS", MEMBER_B),
        ("CODE_BLOCKED_USER_IDS", USER_ID),
        ("ADMIN_ROLE_IDS", "555"),
    ])
    .await;
    bot.fake.dispatch(
        "MESSAGE_CREATE",
        bot.fake
            .guild_message_as(MEMBER_B, &[], GUILD, CHANNEL, "hello?"),
    );
    let told = bot
        .fake
        .wait_for_text("You are not allowed to use this bot", LONG)
        .await;
    assert!(
        !told.path.contains(CHANNEL),
        "told in a DM, not in the channel: {}",
        told.path
    );
    assert!(
        bot.fake
            .requests()
            .iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/users/@me/channels")),
        "a DM channel was opened"
    );
    // An admin by role blocks a role in the server; a member with it is told privately.
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        naming(
            &bot.fake,
            bot.fake.guild_command_as(
                MEMBER_C,
                &["555"],
                GUILD,
                "access",
                // Choices are sent as their index: block is the first action, bot the first scope.
                json!([{"name": "action", "type": 4, "value": 0},
                       {"name": "scope", "type": 4, "value": 0},
                       {"name": "user", "type": 6, "value": "700000000000000021"}]),
                0,
            ),
            "700000000000000021",
        ),
    );
    bot.fake
        .wait_for_text("blocked users <@700000000000000021>", LONG)
        .await;
    bot.fake.dispatch(
        "MESSAGE_CREATE",
        bot.fake
            .guild_message_as("700000000000000021", &[], GUILD, CHANNEL, "me too?"),
    );
    bot.fake
        .wait_for_text("This server's admins have not allowed you", LONG)
        .await;
    assert!(
        bot.fake.openai_requests().is_empty(),
        "no blocked message reached the model"
    );
    // A member who may not run code chats; the run the model asks for is refused.
    bot.fake.script_openai(
        200,
        completion_tool_call("call_x", json!({"code": "print(6*7)"})),
    );
    bot.fake
        .script_openai(200, completion_text("I could not run code"));
    bot.send("compute 6*7");
    bot.fake.wait_for_text("I could not run code", LONG).await;
    let second = &bot.fake.openai_requests()[1];
    let tool = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        tool.contains("not_run") && tool.contains("running code is not allowed"),
        "{tool}"
    );
    assert!(containers_of(bot.child.id()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_code_button_shows_every_run_of_the_turn_to_the_presser_alone() {
    let bot = Bot::start(&[]).await;
    let first = "x = 6 * 7\nprint(x)";
    let second = "print('second run', x + 1)";
    bot.fake
        .script_openai(200, completion_tool_call("call_1", json!({"code": first})));
    bot.fake
        .script_openai(200, completion_tool_call("call_2", json!({"code": second})));
    bot.fake
        .script_openai(200, completion_text("x is 42 and then 43"));
    bot.send("compute twice");
    let answer = bot.fake.wait_for_text("x is 42 and then 43", LONG).await;
    let code_id = custom_ids(&answer.json)
        .into_iter()
        .find(|id| id.starts_with("codebox-code:"))
        .expect("the answer carries a Code button");
    let message_id = answer.message_id.clone().unwrap();
    // Another member presses it: they alone see the code, as it ran.
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake.button_press(MEMBER_B, &message_id, &code_id),
    );
    let shown = bot.fake.wait_for_text("**Run 2**", LONG).await;
    assert_eq!(shown.json["data"]["flags"], 64, "private to the presser");
    let text = shown.content();
    assert!(text.contains("**Run 1** · ok in "), "{text}");
    assert!(text.contains(&format!("```python\n{first}\n```")), "{text}");
    assert!(
        text.contains(&format!("```python\n{second}\n```")),
        "{text}"
    );
    // A turn without code has no button; /settings show_code:always inlines the code.
    bot.fake
        .script_openai(200, completion_text("no code needed"));
    bot.send("hi");
    let plain = bot.fake.wait_for_text("no code needed", LONG).await;
    assert!(custom_ids(&plain.json).is_empty());
    bot.fake.dispatch(
        "INTERACTION_CREATE",
        bot.fake.command(
            "settings",
            // "always", the first choice, is sent as its index.
            json!([{"name": "show_code", "type": 4, "value": 0}]),
        ),
    );
    bot.fake
        .wait_for_text("Code that ran: in every answer", LONG)
        .await;
    bot.fake.script_openai(
        200,
        completion_tool_call("call_3", json!({"code": "print('inline')"})),
    );
    bot.fake
        .script_openai(200, completion_text("printed inline"));
    bot.send("print inline");
    let inline = bot.fake.wait_for_text("printed inline", LONG).await;
    assert!(
        inline.content().contains("```python\nprint('inline')\n```"),
        "{}",
        inline.content()
    );
}

/// The answer's requests to Discord after `mark`: (method, message id, content, files).
fn answer_requests(fake: &Fake, mark: usize, needle: &str) -> Vec<common::fake::Recorded> {
    let requests = fake.requests_since(mark);
    let ids: Vec<String> = requests
        .iter()
        .filter(|r| r.content().contains(needle))
        .filter_map(|r| r.message_id.clone())
        .collect();
    requests
        .into_iter()
        .filter(|r| r.message_id.as_ref().is_some_and(|id| ids.contains(id)))
        .filter(|r| r.method == "POST" || r.method == "PATCH")
        .collect()
}

/// A turn that runs code writing a file, then a long answer with a code block.
fn script_long_answer(fake: &Fake) -> String {
    let mut answer = String::from("Here is what the run found:\n```text\n");
    for i in 0..30 {
        answer.push_str(&format!("line {i:02}: the value was {}\n", i * i));
    }
    answer.push_str("```\nThat is all: 30 lines, the file is attached.");
    fake.script_openai(
        200,
        completion_tool_call(
            "call_f",
            json!({"code": "open('found.txt', 'w').write('found\\n')"}),
        ),
    );
    fake.script_openai(200, completion_text(&answer));
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_is_edited_as_written_and_ends_as_the_unstreamed_one() {
    // The same turn without streaming: what the answer must end as.
    let plain = Bot::start(&[]).await;
    script_long_answer(&plain.fake);
    plain.send("find it");
    let unstreamed = plain
        .fake
        .wait_for_text("That is all: 30 lines", LONG)
        .await;
    drop(plain);

    let bot = Bot::start(&[("OPENAI_STREAM", "true")]).await;
    bot.fake.stream_slowly(Duration::from_millis(250), 40);
    script_long_answer(&bot.fake);
    let mark = bot.fake.request_count();
    bot.send("find it");
    let last = bot
        .fake
        .wait_for("the final answer with its Code button", LONG, |r| {
            r.method == "PATCH" && r.content().contains("That is all") && !r.files.is_empty()
        })
        .await;
    let ends = bot.fake.stream_ends();
    let model_done = *ends.last().expect("the answer was streamed");
    let requests = answer_requests(&bot.fake, mark, "Here is what the run found");
    assert_eq!(requests[0].method, "POST", "posted with the first tokens");
    let edits: Vec<&common::fake::Recorded> =
        requests.iter().filter(|r| r.method == "PATCH").collect();
    let before_done = edits.iter().filter(|r| r.at < model_done).count();
    assert!(
        before_done >= 2,
        "{before_done} edits before the model finished"
    );
    for pair in edits.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(1400),
            "two edits {gap:?} apart: {:?} then {:?}",
            pair[0].content(),
            pair[1].content()
        );
    }
    assert_eq!(
        last.content(),
        unstreamed.content(),
        "the final edit is the unstreamed answer"
    );
    let names = |r: &common::fake::Recorded| -> Vec<String> {
        r.files.iter().map(|(name, _)| name.clone()).collect()
    };
    assert_eq!(names(&last), names(&unstreamed));
    assert_eq!(
        custom_ids(&last.json).len(),
        custom_ids(&unstreamed.json).len(),
        "the Code button too"
    );
    // The streamed request asked for its usage, which was billed.
    let request = &bot.fake.openai_requests()[1];
    assert_eq!(request["stream"], true);
    assert_eq!(request["stream_options"]["include_usage"], true);
    bot.fake
        .dispatch("INTERACTION_CREATE", bot.fake.command("usage", json!([])));
    bot.fake
        .wait_for_text("2 model requests, 220 prompt tokens", LONG)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_on_other_servers_the_servers_prompt_and_dms_off() {
    // A second OpenAI-compatible server for one model, with its own key.
    let other = Fake::start().await;
    other.model(|_| completion_text("from the other server"));
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!(
            "[models.\"elsewhere-7b\"]\nbase_url = \"{}\"\napi_key_env = \"ELSEWHERE_KEY\"\ninput = 0.0\noutput = 0.0\n\n[models.\"no-tools\"]\ntools = false\n",
            other.openai_base()
        ),
    )
    .unwrap();
    let bot = Bot::start(&[
        ("CODEBOX_CONFIG", config.path().to_str().unwrap()),
        ("CHAT_MODELS", "elsewhere-7b,no-tools"),
        ("ELSEWHERE_KEY", "canary-elsewhere-key-31f0"),
        ("ALLOW_DMS", "false"),
    ])
    .await;
    echo_model(&bot.fake);
    // DMs are off: a DM gets one sentence, and no model is asked.
    bot.send("hello in a DM");
    bot.fake
        .wait_for_text("Direct messages with this bot are turned off", LONG)
        .await;
    // A member picks the model served elsewhere: that server answers.
    let choose = |model: &str| {
        bot.fake.guild_command_as(
            MEMBER_B,
            &[],
            GUILD,
            "model",
            json!([{"name": "name", "type": 3, "value": model}]),
            0,
        )
    };
    bot.fake
        .dispatch("INTERACTION_CREATE", choose("elsewhere-7b"));
    bot.fake
        .wait_for_text("Your model is now `elsewhere-7b`", LONG)
        .await;
    bot.fake.dispatch(
        "MESSAGE_CREATE",
        bot.fake
            .guild_message_as(MEMBER_B, &[], GUILD, CHANNEL, "who answers?"),
    );
    bot.fake
        .wait_for_text("from the other server\n-# elsewhere-7b", LONG)
        .await;
    assert_eq!(other.openai_requests().len(), 1);
    assert!(bot.fake.openai_requests().is_empty());
    // A model that cannot call tools is refused with a sentence, and not asked.
    bot.fake.dispatch("INTERACTION_CREATE", choose("no-tools"));
    bot.fake
        .wait_for_text("Your model is now `no-tools`", LONG)
        .await;
    bot.fake.dispatch(
        "MESSAGE_CREATE",
        bot.fake
            .guild_message_as(MEMBER_B, &[], GUILD, CHANNEL, "and now?"),
    );
    bot.fake
        .wait_for_text("`no-tools` cannot call tools", LONG)
        .await;
    assert_eq!(other.openai_requests().len(), 1);
    assert!(bot.fake.openai_requests().is_empty());

    // The server's prompt: admins set it (bounded), everyone may see it, the model gets it.
    let prompt = |sub: &str, options: Value, permissions| {
        bot.fake.guild_command(
            GUILD,
            "prompt",
            json!([{"name": sub, "type": 1, "options": options}]),
            permissions,
        )
    };
    let text = json!([{"name": "text", "type": 3, "value": "Answer like a pirate."}]);
    bot.fake
        .dispatch("INTERACTION_CREATE", prompt("set", text.clone(), 0));
    bot.fake
        .wait_for_text("Only this server's admins", LONG)
        .await;
    let too_long = json!([{"name": "text", "type": 3, "value": "y".repeat(1501)}]);
    bot.fake
        .dispatch("INTERACTION_CREATE", prompt("set", too_long, MANAGE_GUILD));
    bot.fake
        .wait_for_text("the prompt is 1501 characters; at most 1500", LONG)
        .await;
    bot.fake
        .dispatch("INTERACTION_CREATE", prompt("set", text, MANAGE_GUILD));
    bot.fake
        .wait_for_text("instructions in this server are set", LONG)
        .await;
    bot.fake
        .dispatch("INTERACTION_CREATE", prompt("show", json!([]), 0));
    bot.fake
        .wait_for_text("```\nAnswer like a pirate.\n```", LONG)
        .await;
    bot.fake.dispatch(
        "MESSAGE_CREATE",
        bot.fake
            .guild_message_as(MEMBER_C, &[], GUILD, CHANNEL, "ahoy?"),
    );
    bot.fake
        .wait_for_text("answered by \"gpt-4o-mini\"", LONG)
        .await;
    let system = bot.fake.openai_requests()[0]["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        system.contains("<<<server\nAnswer like a pirate.\n>>>"),
        "{system}"
    );
    for request in bot.fake.requests() {
        assert!(!request.json.to_string().contains("canary-elsewhere-key"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_streamed_answer_leaves_no_part_behind() {
    let bot = Bot::start(&[("OPENAI_STREAM", "true")]).await;
    bot.fake.stream_slowly(Duration::from_millis(400), 10);
    bot.fake.script_openai(
        200,
        completion_text(&"a long answer that is stopped half way. ".repeat(20)),
    );
    bot.send("write slowly");
    let part = bot
        .fake
        .wait_for("the first streamed part", LONG, |r| {
            r.method == "POST" && r.content().starts_with("a long")
        })
        .await;
    let id = part.message_id.unwrap();
    bot.fake
        .dispatch("INTERACTION_CREATE", bot.fake.command("stop", json!([])));
    bot.fake
        .wait_for("the streamed part removed", LONG, |r| {
            r.method == "DELETE" && r.path.ends_with(&id)
        })
        .await;
}
