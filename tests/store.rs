//! One store suite, run against both metadata backends: the embedded SQLite default and a
//! real MongoDB-compatible server (scripts/test.sh starts one; CODEBOX_TEST_MONGODB_URI
//! names it, default mongodb://127.0.0.1:27017). A missing server fails these tests.
//! Every store reads a manual clock: expiry is tested by moving it, never by sleeping.

mod common;

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration as StdDuration, SystemTime};

use chrono::{Duration, DurationRound, Utc};
use codebox::store::ManualClock;
use codebox::store::blobs::{AnyBlobs, Blobs};
use codebox::store::gridfs::GridFsBlobs;
use codebox::store::mongo::MongoMetadata;
use codebox::store::sqlite::SqliteMetadata;
use codebox::store::{
    FileRecord, FileStore, Metadata, MetadataError, Origin, StoreError, StoreLimits,
};

fn limits() -> StoreLimits {
    StoreLimits {
        max_files_per_user: 20,
        max_file_bytes: 1024 * 1024,
        max_bytes_per_user: 10 * 1024 * 1024,
        expiration: Some(Duration::hours(48)),
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    /// The store's time; it moves only when a test advances it.
    clock: ManualClock,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            clock: ManualClock::new(Utc::now()),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A source file to upload.
    fn source(&self, name: &str, content: &[u8]) -> PathBuf {
        let dir = self.dir.path().join("src");
        fs::create_dir_all(&dir).unwrap();
        // The original name only reaches the store as a string, never as this path.
        let path = dir.join(format!(
            "{}-{}",
            codebox::store::ids::new_file_id(),
            name.len()
        ));
        fs::write(&path, content).unwrap();
        path
    }
}

async fn add<M: Metadata>(
    store: &FileStore<M>,
    fx: &Fixture,
    user: &str,
    name: &str,
    content: &[u8],
) -> FileRecord {
    let path = fx.source(name, content);
    store
        .add(user, name, &path, Origin::Uploaded)
        .await
        .unwrap()
        .record
}

fn ids(records: &[FileRecord]) -> Vec<String> {
    records.iter().map(|r| r.file_id.clone()).collect()
}

async fn upload_list_delete<M: Metadata>(store: FileStore<M>, fx: Fixture) {
    let a = add(&store, &fx, "alice", "data.csv", b"a,b\n1,2\n").await;
    let b = add(&store, &fx, "alice", "notes.md", b"# hi\n").await;
    assert_eq!(a.file_type, "csv");
    assert_eq!(a.file_size, 8);
    assert_eq!(a.origin, Origin::Uploaded);
    assert_eq!(a.sha256, sha256_hex(b"a,b\n1,2\n"));
    assert!(a.expires_at.unwrap() > a.created_at + Duration::hours(47));
    assert_eq!(
        ids(&store.list("alice").await.unwrap()),
        [a.file_id.clone(), b.file_id.clone()]
    );
    let path = store.local_path(&a).await.unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"a,b\n1,2\n");
    assert_eq!(store.get("alice", &a.file_id).await.unwrap(), a);

    let deleted = store.delete("alice", &a.file_id).await.unwrap();
    assert_eq!(deleted.file_id, a.file_id);
    assert!(!path.exists(), "disk file removed with its metadata");
    assert_eq!(
        ids(&store.list("alice").await.unwrap()),
        vec![b.file_id.clone()]
    );
    assert!(matches!(
        store.get("alice", &a.file_id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete("alice", &a.file_id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(store.metadata().get(&a.file_id).await.unwrap().is_none());
}

async fn eviction_takes_the_oldest_first<M: Metadata>(store: FileStore<M>, fx: Fixture) {
    let generate = |name: &'static str| {
        let store = &store;
        let source = fx.source(name, name.as_bytes());
        async move { store.add("u1", name, &source, Origin::Generated).await }
    };
    let mut uploads = Vec::new();
    for i in 0..2 {
        uploads.push(add(&store, &fx, "u1", &format!("f{i}.txt"), b"x").await);
    }
    let chart = generate("chart.png").await.unwrap();
    assert!(chart.evicted.is_empty());
    // What runs wrote goes first, oldest first, before any upload.
    let table = generate("table.csv").await.unwrap();
    assert_eq!(ids(&table.evicted), [chart.record.file_id.as_str()]);
    let upload = store
        .add("u1", "f2.txt", &fx.source("f2.txt", b"y"), Origin::Uploaded)
        .await
        .unwrap();
    assert_eq!(ids(&upload.evicted), [table.record.file_id.as_str()]);
    // Uploads alone fill the quota: a file a run wrote is refused, and no upload goes.
    match generate("more.png").await {
        Err(StoreError::UploadsFull { filename, limit }) => {
            assert_eq!((filename.as_str(), limit.as_str()), ("more.png", "3 files"));
        }
        other => panic!("expected UploadsFull, got {other:?}"),
    }
    // An upload still makes room for itself, by the oldest upload.
    let fourth = store
        .add("u1", "f3.txt", &fx.source("f3.txt", b"z"), Origin::Uploaded)
        .await
        .unwrap();
    assert_eq!(ids(&fourth.evicted), [uploads[0].file_id.clone()]);
    assert_eq!(
        ids(&store.list("u1").await.unwrap()),
        [
            uploads[1].file_id.clone(),
            upload.record.file_id.clone(),
            fourth.record.file_id.clone()
        ]
    );
    for gone in [&uploads[0], &chart.record, &table.record] {
        assert!(!store.blobs().has(gone).await.unwrap());
        assert!(store.metadata().get(&gone.file_id).await.unwrap().is_none());
    }
}

async fn byte_quota_evicts_and_refuses<M: Metadata>(store: FileStore<M>, fx: Fixture) {
    let first = add(&store, &fx, "u2", "a.bin", &[1u8; 40]).await;
    let second = add(&store, &fx, "u2", "b.bin", &[2u8; 40]).await;
    let third = store
        .add(
            "u2",
            "c.bin",
            &fx.source("c.bin", &[3u8; 40]),
            Origin::Uploaded,
        )
        .await
        .unwrap();
    assert_eq!(
        ids(&third.evicted),
        vec![first.file_id.clone()],
        "100-byte quota"
    );
    assert_eq!(
        ids(&store.list("u2").await.unwrap()),
        [second.file_id.clone(), third.record.file_id.clone()]
    );
    let too_big = store
        .add(
            "u2",
            "big.bin",
            &fx.source("big.bin", &[4u8; 101]),
            Origin::Uploaded,
        )
        .await;
    assert!(
        matches!(
            too_big,
            Err(StoreError::FileTooLarge {
                size: 101,
                limit: 100,
                ..
            })
        ),
        "{too_big:?}"
    );
    assert_eq!(
        store.list("u2").await.unwrap().len(),
        2,
        "nothing evicted for a refused file"
    );
    let leftovers: Vec<_> = fs::read_dir(store.blobs().incoming_dir("u2"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".incoming"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

async fn expiry_hides_then_sweep_removes<M: Metadata>(store: FileStore<M>, fx: Fixture) {
    let short = add(&store, &fx, "u3", "short.txt", b"bye").await;
    assert_eq!(
        short.expires_at.unwrap() - short.created_at,
        Duration::hours(48)
    );
    fx.clock
        .advance(Duration::hours(48) - Duration::milliseconds(2));
    assert_eq!(store.list("u3").await.unwrap().len(), 1, "not expired yet");
    assert_eq!(store.get("u3", &short.file_id).await.unwrap(), short);
    assert!(
        store
            .sweep(fx.clock.now())
            .await
            .unwrap()
            .removed
            .is_empty(),
        "nothing to sweep before the expiry"
    );

    fx.clock.advance(Duration::milliseconds(2));
    assert!(
        store.list("u3").await.unwrap().is_empty(),
        "expired files are invisible"
    );
    assert!(matches!(
        store.get("u3", &short.file_id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.show(&short.file_id).await.unwrap(), None);
    assert!(
        store
            .metadata()
            .get(&short.file_id)
            .await
            .unwrap()
            .is_some(),
        "still there until the sweep"
    );
    assert!(store.blobs().has(&short).await.unwrap());
    let report = store.sweep(store.clock().now()).await.unwrap();
    assert_eq!(report.removed, vec![short.file_id.clone()]);
    assert!(
        store
            .metadata()
            .get(&short.file_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!store.blobs().has(&short).await.unwrap());
    assert!(
        store
            .sweep(fx.clock.now())
            .await
            .unwrap()
            .removed
            .is_empty()
    );
}

async fn an_add_drops_expired_files_without_calling_them_evicted<M: Metadata>(
    store: FileStore<M>,
    fx: Fixture,
) {
    let old = add(&store, &fx, "u11", "old.txt", b"old").await;
    let older = add(&store, &fx, "u11", "older.txt", b"older").await;
    fx.clock.advance(Duration::hours(49));
    let fresh = store
        .add(
            "u11",
            "fresh.txt",
            &fx.source("fresh.txt", b"fresh"),
            Origin::Uploaded,
        )
        .await
        .unwrap();
    assert!(fresh.evicted.is_empty(), "{:?}", fresh.evicted);
    assert_eq!(
        fresh.record.created_at,
        fx.clock
            .now()
            .duration_trunc(Duration::milliseconds(1))
            .unwrap(),
        "created at the store's time"
    );
    assert_eq!(
        ids(&store.list("u11").await.unwrap()),
        vec![fresh.record.file_id.clone()]
    );
    for gone in [&old, &older] {
        assert!(!store.blobs().has(gone).await.unwrap());
        assert!(store.metadata().get(&gone.file_id).await.unwrap().is_none());
    }
}

async fn never_expiring_files_stay<M: Metadata>(store: FileStore<M>, fx: Fixture) {
    let kept = add(&store, &fx, "u4", "keep.txt", b"forever").await;
    assert_eq!(kept.expires_at, None);
    fx.clock.advance(Duration::days(3650));
    let report = store.sweep(fx.clock.now()).await.unwrap();
    assert!(report.removed.is_empty());
    assert_eq!(store.list("u4").await.unwrap().len(), 1);
}

async fn reconcile_removes_orphans_on_both_sides<M: Metadata>(store: FileStore<M>, fx: Fixture) {
    let kept = add(&store, &fx, "u5", "kept.txt", b"k").await;
    let lost = add(&store, &fx, "u5", "lost.txt", b"l").await;
    fs::remove_file(store.local_path(&lost).await.unwrap()).unwrap();
    let user_dir = fx.data_dir().join("user_files/u5");
    let old_orphan = user_dir.join("AAAAAAAAAAAAAAAA.txt");
    fs::write(&old_orphan, "orphan").unwrap();
    let an_hour_ago = SystemTime::now() - StdDuration::from_secs(3600);
    filetime::set_file_mtime(
        &old_orphan,
        filetime::FileTime::from_system_time(an_hour_ago),
    )
    .unwrap();
    let young_orphan = user_dir.join("BBBBBBBBBBBBBBBB.txt");
    fs::write(&young_orphan, "maybe an add in progress").unwrap();

    let report = store.reconcile().await.unwrap();
    assert_eq!(report.orphan_records, vec![lost.file_id.clone()]);
    assert_eq!(report.orphan_files, vec![old_orphan.clone()]);
    assert!(!old_orphan.exists());
    assert!(
        young_orphan.exists(),
        "young files are left for their add to finish"
    );
    assert!(store.blobs().has(&kept).await.unwrap());
    assert_eq!(
        ids(&store.list("u5").await.unwrap()),
        vec![kept.file_id.clone()]
    );
}

async fn users_are_isolated<M: Metadata>(store: FileStore<M>, fx: Fixture) {
    let secret = add(&store, &fx, "alice", "secret.csv", b"s,t\n1,2\n").await;
    assert!(store.list("bob").await.unwrap().is_empty());
    for result in [
        store.get("bob", &secret.file_id).await,
        store.delete("bob", &secret.file_id).await,
    ] {
        match result {
            Err(StoreError::NotFound { file_id }) => assert_eq!(file_id, secret.file_id),
            other => panic!("bob reached alice's file: {other:?}"),
        }
    }
    assert!(store.blobs().has(&secret).await.unwrap());
    assert_eq!(store.get("alice", &secret.file_id).await.unwrap(), secret);
}

async fn odd_names_never_become_paths<M: Metadata>(store: FileStore<M>, fx: Fixture) {
    for (name, shown) in [
        ("../../../etc/passwd", "passwd"),
        ("..", "file"),
        ("C:\\Windows\\evil.csv", "evil.csv"),
        ("new\nline.txt", "newline.txt"),
        ("/abs/olute.txt", "olute.txt"),
        ("ünï cødé.txt", "ünï cødé.txt"),
    ] {
        let record = add(&store, &fx, "u6", name, b"content").await;
        assert_eq!(record.filename, shown, "{name:?}");
        // The local copy (the stored file on disk, or GridFS's cached copy) is named by id.
        let path = store.local_path(&record).await.unwrap();
        assert!(path.starts_with(fx.data_dir()), "{}", path.display());
        assert_eq!(path.parent().unwrap().file_name().unwrap(), "u6");
        assert_eq!(
            path.file_name().unwrap().to_string_lossy(),
            format!("{}.{}", record.file_id, record.file_type)
        );
        assert_eq!(fs::read(&path).unwrap(), b"content");
    }
    assert!(!fx.dir.path().join("etc").exists());
    for bad_user in ["../other", "a/b", "", "x y"] {
        let result = store
            .add(
                bad_user,
                "f.txt",
                &fx.source("f.txt", b"x"),
                Origin::Uploaded,
            )
            .await;
        assert!(
            matches!(result, Err(StoreError::InvalidUser { .. })),
            "{bad_user:?}"
        );
    }
    assert!(matches!(
        store.get("u6", "../../etc/passwd").await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn types_come_from_content_when_the_name_lies<M: Metadata>(store: FileStore<M>, fx: Fixture) {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0";
    let record = add(&store, &fx, "u7", "table.csv", png).await;
    assert_eq!(record.file_type, "png");
    assert!(
        store
            .local_path(&record)
            .await
            .unwrap()
            .to_string_lossy()
            .ends_with(".png")
    );
    let none = add(&store, &fx, "u7", "README", b"plain words\n").await;
    assert_eq!(none.file_type, "txt");
}

async fn metadata_contract<M: Metadata>(store: FileStore<M>, fx: Fixture) {
    let record = add(&store, &fx, "u8", "a.json", b"{\"k\": 1}").await;
    assert_eq!(record.file_type, "json");
    let dup = store.metadata().insert(&record).await;
    assert!(
        matches!(dup, Err(MetadataError::Duplicate { .. })),
        "{dup:?}"
    );
    assert!(
        store
            .set_summary(&record.file_id, "json object with keys: k")
            .await
            .unwrap()
    );
    let stored = store.get("u8", &record.file_id).await.unwrap();
    assert_eq!(stored.summary.as_deref(), Some("json object with keys: k"));
    assert_eq!(
        stored.created_at.timestamp_millis(),
        record.created_at.timestamp_millis()
    );
    assert!(!store.set_summary("ZZZZZZZZZZZZZZZZ", "x").await.unwrap());
}

async fn concurrent_adds_respect_the_limit<M: Metadata + 'static>(
    store: FileStore<M>,
    fx: Fixture,
) {
    let store = std::sync::Arc::new(store);
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = store.clone();
        let path = fx.source(&format!("c{i}.txt"), b"c");
        tasks.push(tokio::spawn(async move {
            store
                .add("u9", "c.txt", &path, Origin::Uploaded)
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.list("u9").await.unwrap().len(), 5);
    let on_disk = fs::read_dir(store.blobs().incoming_dir("u9"))
        .unwrap()
        .count();
    assert_eq!(on_disk, 5);
}

async fn the_sweeper_really_runs<M: Metadata + 'static>(store: FileStore<M>, fx: Fixture) {
    let record = add(&store, &fx, "u10", "soon.txt", b"gone soon").await;
    fx.clock.advance(Duration::hours(48));
    let store = std::sync::Arc::new(store);
    let handle = codebox::store::sweeper::spawn(store.clone(), StdDuration::from_millis(200));
    // Only the background task's own pace is waited for; the expiry itself is the clock's.
    let mut gone = false;
    for _ in 0..50 {
        if !store.blobs().has(&record).await.unwrap()
            && store
                .metadata()
                .get(&record.file_id)
                .await
                .unwrap()
                .is_none()
        {
            gone = true;
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    drop(handle);
    assert!(gone, "the periodic sweep removed bytes and metadata");
}

fn sqlite_store(fx: &Fixture, limits: StoreLimits) -> FileStore<SqliteMetadata> {
    let meta = SqliteMetadata::open(&fx.data_dir().join("codebox.sqlite3")).unwrap();
    FileStore::with_clock(meta, &fx.data_dir(), limits, fx.clock.clock())
}

/// Metadata in a fresh database (tests stay independent on one server), and its name.
async fn mongo_metadata() -> (MongoMetadata, String) {
    let uri = common::mongo_uri();
    let database = common::fresh_database();
    let meta = MongoMetadata::connect(&uri, &database)
        .await
        .unwrap_or_else(|err| panic!("MongoDB-compatible server at {uri}: {err}"));
    (meta, database)
}

async fn mongo_store(fx: &Fixture, limits: StoreLimits) -> FileStore<MongoMetadata> {
    let (meta, _) = mongo_metadata().await;
    FileStore::with_clock(meta, &fx.data_dir(), limits, fx.clock.clock())
}

/// MongoDB for the records and GridFS for the bytes, as when MONGODB_URI is set.
async fn gridfs_store(fx: &Fixture, limits: StoreLimits) -> FileStore<MongoMetadata> {
    let (meta, database) = mongo_metadata().await;
    let uri = common::mongo_uri();
    let db = codebox::store::db::connect_mongo(&uri, &database)
        .await
        .unwrap();
    FileStore::with_clock(meta, &fx.data_dir(), limits, fx.clock.clock()).with_blobs(
        AnyBlobs::GridFs(GridFsBlobs::new(&db, &fx.data_dir(), 1024 * 1024 * 1024)),
    )
}

/// A conversation's snapshot: hidden from the user's files, replaced per session, never a
/// reason to evict the user's files, forgotten on demand.
async fn session_snapshots_are_hidden_replaced_and_never_evict_files<M: Metadata>(
    store: FileStore<M>,
    fx: Fixture,
) {
    let kept = add(&store, &fx, "u5", "data.csv", &[1u8; 60]).await;
    let only_kept = vec![kept.file_id.clone()];
    let first = store
        .put_session_state("u5", "chan-1", &fx.source("s", &[7u8; 20]))
        .await
        .unwrap();
    assert_eq!(first.origin, Origin::State);
    assert_eq!(ids(&store.list("u5").await.unwrap()), only_kept);
    assert!(matches!(
        store.get("u5", &first.file_id).await,
        Err(StoreError::NotFound { .. })
    ));
    let second = store
        .put_session_state("u5", "chan-1", &fx.source("s", &[8u8; 30]))
        .await
        .unwrap();
    let current = store.session_state("u5", "chan-1").await.unwrap().unwrap();
    assert_eq!(current.file_id, second.file_id, "replaced, not added");
    assert!(store.session_state("u5", "chan-2").await.unwrap().is_none());
    assert!(store.session_state("u6", "chan-1").await.unwrap().is_none());
    // 60 + 50 > the 100-byte quota: refused rather than evicting data.csv.
    let refused = store
        .put_session_state("u5", "chan-1", &fx.source("s", &[9u8; 50]))
        .await;
    assert!(
        matches!(refused, Err(StoreError::FileTooLarge { .. })),
        "{refused:?}"
    );
    assert_eq!(ids(&store.list("u5").await.unwrap()), only_kept);
    assert_eq!(
        store
            .session_state("u5", "chan-1")
            .await
            .unwrap()
            .unwrap()
            .file_id,
        second.file_id,
        "the previous snapshot survives a refused one"
    );
    assert_eq!(store.forget_all_session_states("u5").await.unwrap(), 1);
    assert!(store.session_state("u5", "chan-1").await.unwrap().is_none());
    assert_eq!(ids(&store.list("u5").await.unwrap()), only_kept);
}

fn limits_for(case: &str) -> StoreLimits {
    let base = limits();
    match case {
        "eviction_takes_the_oldest_first" => StoreLimits {
            max_files_per_user: 3,
            ..base
        },
        "byte_quota_evicts_and_refuses"
        | "session_snapshots_are_hidden_replaced_and_never_evict_files" => StoreLimits {
            max_bytes_per_user: 100,
            ..base
        },
        "an_add_drops_expired_files_without_calling_them_evicted" => StoreLimits {
            max_files_per_user: 2,
            ..base
        },
        "never_expiring_files_stay" => StoreLimits {
            expiration: None,
            ..base
        },
        "concurrent_adds_respect_the_limit" => StoreLimits {
            max_files_per_user: 5,
            ..base
        },
        _ => base,
    }
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let fx = Fixture::new();
                    let store = sqlite_store(&fx, limits_for(stringify!($case)));
                    super::$case(store, fx).await;
                }
            )*
        }
        mod mongodb {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let fx = Fixture::new();
                    let store = mongo_store(&fx, limits_for(stringify!($case))).await;
                    super::$case(store, fx).await;
                }
            )*
        }
    };
}

/// The same cases with the bytes in GridFS (reconcile has a GridFS case of its own below).
macro_rules! gridfs_suite {
    ($($case:ident),* $(,)?) => {
        mod gridfs {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let fx = Fixture::new();
                    let store = gridfs_store(&fx, limits_for(stringify!($case))).await;
                    super::$case(store, fx).await;
                }
            )*
        }
    };
}

suite!(
    upload_list_delete,
    eviction_takes_the_oldest_first,
    byte_quota_evicts_and_refuses,
    expiry_hides_then_sweep_removes,
    an_add_drops_expired_files_without_calling_them_evicted,
    never_expiring_files_stay,
    reconcile_removes_orphans_on_both_sides,
    users_are_isolated,
    odd_names_never_become_paths,
    types_come_from_content_when_the_name_lies,
    metadata_contract,
    concurrent_adds_respect_the_limit,
    the_sweeper_really_runs,
    session_snapshots_are_hidden_replaced_and_never_evict_files,
);

gridfs_suite!(
    upload_list_delete,
    eviction_takes_the_oldest_first,
    byte_quota_evicts_and_refuses,
    expiry_hides_then_sweep_removes,
    an_add_drops_expired_files_without_calling_them_evicted,
    never_expiring_files_stay,
    users_are_isolated,
    odd_names_never_become_paths,
    types_come_from_content_when_the_name_lies,
    metadata_contract,
    concurrent_adds_respect_the_limit,
    the_sweeper_really_runs,
    session_snapshots_are_hidden_replaced_and_never_evict_files,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_copies_of_gridfs_files_stay_within_their_bound() {
    let fx = Fixture::new();
    let uri = common::mongo_uri();
    let database = common::fresh_database();
    let meta = MongoMetadata::connect(&uri, &database).await.unwrap();
    let db = codebox::store::db::connect_mongo(&uri, &database)
        .await
        .unwrap();
    // Room for two 1,000-byte copies, not three.
    let store = FileStore::with_clock(meta, &fx.data_dir(), limits(), fx.clock.clock()).with_blobs(
        AnyBlobs::GridFs(GridFsBlobs::new(&db, &fx.data_dir(), 2500)),
    );
    let cache = fx.data_dir().join("file_cache/u8");
    let copies = || {
        fs::read_dir(&cache)
            .unwrap()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .count()
    };
    let an_hour_ago =
        filetime::FileTime::from_system_time(SystemTime::now() - StdDuration::from_secs(3600));
    let mut records = Vec::new();
    for n in 0..2u8 {
        let record = add(&store, &fx, "u8", "f.bin", &[n; 1000]).await;
        let copy = store.local_path(&record).await.unwrap();
        filetime::set_file_mtime(&copy, an_hour_ago).unwrap();
        records.push(record);
    }
    // A third copy does not fit: the least recently used one goes, never a fresh one.
    records.push(add(&store, &fx, "u8", "f.bin", &[2; 1000]).await);
    assert_eq!(copies(), 2, "the least recently used copy went");
    // Every file is still there: a missing copy is fetched again.
    for (n, record) in records.iter().enumerate() {
        let path = store.local_path(record).await.unwrap();
        assert_eq!(fs::read(&path).unwrap(), vec![n as u8; 1000]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gridfs_bytes_are_fetched_verified_and_reconciled() {
    let fx = Fixture::new();
    let store = gridfs_store(&fx, limits()).await;
    let kept = add(&store, &fx, "u5", "kept.txt", b"kept bytes").await;
    let lost = add(&store, &fx, "u5", "lost.txt", b"lost bytes").await;
    // The bytes are in the database: a host without the local copy fetches them.
    let local = store.local_path(&kept).await.unwrap();
    fs::remove_file(&local).unwrap();
    let fetched = store.local_path(&kept).await.unwrap();
    assert_eq!(fs::read(&fetched).unwrap(), b"kept bytes");
    // A local copy that is not what the record vouches for is never served.
    let mut forged = kept.clone();
    forged.sha256 = sha256_hex(b"something else");
    fs::remove_file(&fetched).unwrap();
    assert!(store.local_path(&forged).await.is_err());
    assert!(!fetched.exists(), "no half-checked copy stays behind");
    // Bytes gone from GridFS: reconcile drops the record; young orphans are left alone.
    store.blobs().remove(&lost).await.unwrap();
    let orphan = fx.source("orphan.txt", b"an add in progress");
    if let AnyBlobs::GridFs(gridfs) = store.blobs() {
        gridfs.upload("ZZZZZZZZZZZZZZZZ", &orphan).await.unwrap();
        let report = store.reconcile().await.unwrap();
        assert_eq!(report.orphan_records, vec![lost.file_id.clone()]);
        assert!(report.orphan_files.is_empty(), "{:?}", report.orphan_files);
        assert!(gridfs.contains("ZZZZZZZZZZZZZZZZ").await.unwrap());
    }
    let known: HashSet<String> = [kept.file_id.clone()].into();
    assert!(
        store
            .blobs()
            .remove_orphans(&known)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(&store.list("u5").await.unwrap()),
        vec![kept.file_id.clone()]
    );
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
