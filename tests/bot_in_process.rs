//! The Discord front end driven in-process: `discord::run` takes the application core, its
//! settings and a shutdown future (the shape of mini-redis's `run(listener, shutdown)`), so a
//! test (or an embedding program) starts and stops it without signals.

mod common;

use std::sync::Arc;
use std::time::Duration;

use codebox::app::{App, Lifetime};
use codebox::config::{Secret, Settings};
use common::fake::{Fake, completion_text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_answers_in_process_and_stops_when_its_shutdown_future_completes() {
    let fake = Fake::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut settings = Settings {
        data_dir: data.path().to_path_buf(),
        ..Settings::default()
    };
    settings.pool.warm_pool_size = 0;
    settings.discord.discord_token = Some(Secret::new("in-process-token"));
    settings.discord.discord_api_base = Some(fake.api_base());
    settings.chat.openai_api_key = Some(Secret::new("in-process-key"));
    settings.chat.openai_base_url = fake.openai_base();

    let app = Arc::new(App::new(settings.clone(), Lifetime::Service));
    app.start().await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let bot = tokio::spawn(codebox::discord::run(
        app.clone(),
        settings.discord.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    fake.wait_ready().await;
    fake.script_openai(200, completion_text("answered in-process"));
    fake.dispatch("MESSAGE_CREATE", fake.message("hello", &[]));
    fake.wait_for_text("answered in-process", Duration::from_secs(60))
        .await;

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), bot)
        .await
        .expect("run returns once the shutdown future completes")
        .unwrap()
        .unwrap();
    app.shutdown().await;
    // The turn went through the core: history and usage are recorded for the user.
    let (_, usage) = app.usage(common::fake::USER_ID).await.unwrap();
    assert_eq!(usage.requests, 1);
}
