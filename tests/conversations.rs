//! History, usage, server and member settings, and turns' code, persisted on both
//! backends.

mod common;

use codebox::conversations::mongo::MongoConversations;
use codebox::conversations::sqlite::SqliteConversations;
use codebox::conversations::{
    AccessRules, ConversationStore, GuildSettings, RanCode, TurnCode, UsageTotals, UserSettings,
    guild_scope,
};
use codebox::llm::history::{ChatMessage, ImageKind, ImageRef};

async fn contract<C: ConversationStore>(store: C) {
    assert!(store.history("u", "c1").await.unwrap().is_empty());
    let messages = vec![
        ChatMessage::User {
            content: "hi".into(),
            images: vec![ImageRef {
                file_id: "PHOTOPHOTOPHOTO1".into(),
                filename: "photo.png".into(),
                kind: ImageKind::Attached,
            }],
        },
        ChatMessage::Figures {
            content: "[Pictures produced by run r]".into(),
            images: vec![ImageRef {
                file_id: "FIGUREFIGUREFIG1".into(),
                filename: "figure_1.png".into(),
                kind: ImageKind::Figure,
            }],
        },
        ChatMessage::Assistant {
            content: Some("hello".into()),
            tool_calls: vec![],
        },
    ];
    store.save_history("u", "c1", &messages).await.unwrap();
    store.save_history("u", "c2", &messages[..1]).await.unwrap();
    store
        .save_history("other", "c1", &messages[..1])
        .await
        .unwrap();
    assert_eq!(store.history("u", "c1").await.unwrap(), messages);
    store.clear_history("u", Some("c1")).await.unwrap();
    assert!(store.history("u", "c1").await.unwrap().is_empty());
    assert_eq!(store.history("u", "c2").await.unwrap().len(), 1);
    store.clear_history("u", None).await.unwrap();
    assert!(store.history("u", "c2").await.unwrap().is_empty());
    assert_eq!(
        store.history("other", "c1").await.unwrap().len(),
        1,
        "other users untouched"
    );

    let delta = UsageTotals {
        requests: 1,
        prompt_tokens: 100,
        cached_tokens: 10,
        completion_tokens: 20,
        image_tokens: 765,
        cost_usd: 0.5,
        unpriced_requests: 0,
        runs: 2,
        cpu_seconds: 1.25,
        unpriced_tokens: 7,
    };
    store
        .add_usage("u", "2026-11", "gpt-4.1", &delta)
        .await
        .unwrap();
    store
        .add_usage("u", "2026-11", "gpt-4o-mini", &delta)
        .await
        .unwrap();
    store
        .add_usage(&guild_scope("g1"), "2026-11", "gpt-4.1", &delta)
        .await
        .unwrap();
    let totals = store.usage("u", "2026-11").await.unwrap();
    assert_eq!(totals.requests, 2);
    assert_eq!(totals.image_tokens, 1530, "pictures' tokens add up too");
    assert_eq!(totals.prompt_tokens, 200);
    assert_eq!(totals.runs, 4);
    assert!((totals.cost_usd - 1.0).abs() < 1e-9);
    assert!((totals.cpu_seconds - 2.5).abs() < 1e-9);
    assert_eq!(totals.unpriced_tokens, 14);
    assert_eq!(
        store.usage("u", "2026-10").await.unwrap(),
        UsageTotals::default()
    );
    // Per model, model names with dots included; the server's scope is its own.
    let by_model = store.usage_by_model("u", "2026-11").await.unwrap();
    assert_eq!(
        by_model.keys().collect::<Vec<_>>(),
        vec!["gpt-4.1", "gpt-4o-mini"]
    );
    assert_eq!(by_model["gpt-4.1"].requests, 1);
    assert_eq!(by_model["gpt-4.1"].prompt_tokens, 100);
    let server = store.usage(&guild_scope("g1"), "2026-11").await.unwrap();
    assert_eq!(server.requests, 1);

    assert_eq!(store.guild_settings("g1").await.unwrap(), None);
    let settings = GuildSettings {
        timeout_s: Some(30.0),
        allowed_models: Some(vec!["gpt-4.1".into()]),
        system_prompt: Some("Answer in French.".into()),
        code_access: AccessRules {
            blocked_roles: vec!["42".into()],
            ..AccessRules::default()
        },
        ..GuildSettings::default()
    };
    store.set_guild_settings("g1", &settings).await.unwrap();
    assert_eq!(store.guild_settings("g1").await.unwrap(), Some(settings));
    assert_eq!(store.guild_settings("g2").await.unwrap(), None);

    assert_eq!(
        store.user_settings("u").await.unwrap(),
        UserSettings::default()
    );
    let chosen = UserSettings {
        model: Some("gpt-4.1".into()),
        show_code: true,
    };
    store.set_user_settings("u", &chosen).await.unwrap();
    assert_eq!(store.user_settings("u").await.unwrap(), chosen);

    let code = TurnCode {
        user_id: "u".into(),
        runs: vec![RanCode {
            code: "print(1)".into(),
            status: "ok".into(),
            seconds: Some(0.25),
        }],
    };
    store
        .save_turn_code("TURNTURNTURNTUR1", &code)
        .await
        .unwrap();
    assert_eq!(
        store.turn_code("TURNTURNTURNTUR1").await.unwrap(),
        Some(code)
    );
    assert_eq!(store.turn_code("TURNTURNTURNTUR2").await.unwrap(), None);
    // Forgetting a user's history forgets the code of their turns.
    store.clear_history("u", None).await.unwrap();
    assert_eq!(store.turn_code("TURNTURNTURNTUR1").await.unwrap(), None);
}

#[tokio::test]
async fn embedded() {
    let dir = tempfile::tempdir().unwrap();
    contract(SqliteConversations::open(&dir.path().join("db.sqlite3")).unwrap()).await;
}

#[tokio::test]
async fn mongodb() {
    let uri = common::mongo_uri();
    let db = format!("codebox_conv_{}", codebox::store::ids::new_file_id());
    contract(MongoConversations::connect(&uri, &db).await.unwrap()).await;
}
