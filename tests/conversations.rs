//! History and usage persistence on both backends.

mod common;

use codebox::conversations::mongo::MongoConversations;
use codebox::conversations::sqlite::SqliteConversations;
use codebox::conversations::{ConversationStore, GuildLimits, UsageTotals};
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
    };
    store.add_usage("u", "2026-11", &delta).await.unwrap();
    store.add_usage("u", "2026-11", &delta).await.unwrap();
    let totals = store.usage("u", "2026-11").await.unwrap();
    assert_eq!(totals.requests, 2);
    assert_eq!(totals.image_tokens, 1530, "pictures' tokens add up too");
    assert_eq!(totals.prompt_tokens, 200);
    assert_eq!(totals.runs, 4);
    assert!((totals.cost_usd - 1.0).abs() < 1e-9);
    assert!((totals.cpu_seconds - 2.5).abs() < 1e-9);
    assert_eq!(
        store.usage("u", "2026-10").await.unwrap(),
        UsageTotals::default()
    );

    assert_eq!(store.guild_limits("g1").await.unwrap(), None);
    let limits = GuildLimits {
        timeout_s: Some(30.0),
        memory_mb: None,
    };
    store.set_guild_limits("g1", &limits).await.unwrap();
    assert_eq!(store.guild_limits("g1").await.unwrap(), Some(limits));
    assert_eq!(store.guild_limits("g2").await.unwrap(), None);
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
