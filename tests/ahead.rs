//! A conversation's next run through the application core: the run before it saved the
//! conversation's variables, `App::prepare_turn` had a warm container restore them while
//! nothing was asked yet, and the next run finds them there (real Docker engine, embedded
//! store).

mod common;

use std::time::Duration;

use codebox::app::{App, CodeRun, Lifetime};

const READY: Duration = Duration::from_secs(90);

fn run(app: &App, code: &str) -> CodeRun {
    CodeRun {
        user_id: "4242".to_string(),
        code: code.to_string(),
        limits: app.operator_limits(),
        file_ids: None,
        output_dir: None,
        session: Some("channel-7".to_string()),
        watch: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversations_next_run_finds_its_variables_restored_ahead() {
    let data = tempfile::tempdir().unwrap();
    // Three waiting: after a run takes one, two wait, and one of them may be held.
    let settings = common::settings(data.path(), 3);
    let app = App::new(settings, Lifetime::Service);
    app.start().await.unwrap();
    assert!(
        app.wait_for_warm_pool(READY).await.unwrap(),
        "the pool fills"
    );

    let first = app.run_code(run(&app, "x = 41")).await.unwrap().result;
    assert!(first.session.as_ref().unwrap().saved, "{first:?}");
    assert!(!first.phases.prepared);
    app.prepare_turn("4242", "channel-7", app.operator_limits());
    // The state is restored in the background, within a second or so.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = app
        .run_code(run(&app, "x += 1\nprint(x)"))
        .await
        .unwrap()
        .result;
    assert_eq!(second.stdout, "42\n", "{second:?}");
    assert!(second.phases.prepared, "{:?}", second.phases);
    let ahead = second.session.as_ref().unwrap().restore_ahead_ms;
    assert!(ahead.is_some_and(|ms| ms > 0.0), "{:?}", second.session);

    // The state that run saved is the one the next finds, held again.
    app.prepare_turn("4242", "channel-7", app.operator_limits());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let third = app.run_code(run(&app, "print(x)")).await.unwrap().result;
    assert_eq!(third.stdout, "42\n", "{third:?}");
    assert!(third.phases.prepared, "{:?}", third.phases);
    app.shutdown().await;
}
