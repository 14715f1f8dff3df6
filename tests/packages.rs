//! Missing packages against the real Docker engine and a local package index: installed
//! before the run by the installer container, outside the time limit, served from the cache
//! afterwards, refused by policy, reported when they fail, bounded in the host disk they
//! take; the code runs once, offline.

mod common;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use codebox::config::{PackagePolicy, Settings};
use codebox::container::docker::DockerEngine;
use codebox::sandbox::{ExecutionRequest, ExecutionResult, Executor, Limits, Status};
use common::index::{LocalIndex, build_wheel, build_wheel_with_payload, build_wheel_with_pth};

struct Fixture {
    _data: tempfile::TempDir,
    wheels: tempfile::TempDir,
    index: LocalIndex,
    executor: Arc<Executor<DockerEngine>>,
    packages: Arc<codebox::packages::PackageManager<DockerEngine>>,
    settings: Settings,
}

/// An index with the projects the tests import: each module prints who it is on import.
/// The test wheels are on no curated list: the policy is the denylist, stated.
async fn fixture() -> Fixture {
    fixture_with(|settings| {
        settings.packages.package_policy = PackagePolicy::Denylist;
        settings.packages.package_denylist = "cbx-denied, other".to_string();
    })
    .await
}

/// The same index, with the test's own package settings.
async fn fixture_with(configure: impl FnOnce(&mut Settings)) -> Fixture {
    let data = tempfile::tempdir().unwrap();
    let wheels = tempfile::tempdir().unwrap();
    let index = LocalIndex::start().await;
    for module in [
        "cbx_alpha",
        "cbx_gamma",
        "cbx_delta",
        "cbx_denied",
        "cbx_epsilon",
    ] {
        let source = format!("VALUE = 42\nNAME = {module:?}\n");
        index.add_wheel(
            &module.replace('_', "-"),
            build_wheel(wheels.path(), module, "1.0", &source),
        );
    }
    index.add_empty_project("cbx-missing");
    let mut settings = Settings {
        data_dir: data.path().to_path_buf(),
        ..Settings::default()
    };
    settings.packages.pip_index_url = Some(index.url.clone());
    settings.sandbox.max_concurrent_executions = 4;
    settings.pool.warm_pool_size = 0;
    configure(&mut settings);
    let engine = Arc::new(DockerEngine::connect().await.unwrap());
    let (executor, packages) = codebox::app::assembly::executor_with_packages(
        engine,
        &settings.sandbox,
        &settings.pool,
        &settings.packages,
        &settings.data_dir,
    )
    .unwrap();
    let executor = Arc::new(executor);
    Fixture {
        packages: packages.unwrap(),
        _data: data,
        wheels,
        index,
        executor,
        settings,
    }
}

impl Fixture {
    async fn run(&self, code: &str) -> ExecutionResult {
        self.run_within(code, None).await
    }

    async fn run_within(&self, code: &str, timeout_s: Option<f64>) -> ExecutionResult {
        self.executor
            .execute(ExecutionRequest {
                code: code.to_string(),
                limits: Limits::from_settings(&self.settings.sandbox).narrowed(timeout_s, None),
                input_dir: None,
                output_dir: None,
                files: Vec::new(),
                session: None,
                watch: None,
            })
            .await
            .unwrap()
    }
}

/// The import is resolved when it really runs: the code (which writes `ran.txt` first) ran
/// up to it, once, and stopped there with the host's reason.
fn assert_ran_up_to_the_import(result: &ExecutionResult) {
    assert_eq!(
        result
            .output_files
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        ["ran.txt"],
        "the code ran up to the import"
    );
}

fn now() -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}

/// Installer containers created for `distribution` between two instants, from the daemon's
/// own event log.
fn installers_created(distribution: &str, since: &str, until: &str) -> usize {
    let out = std::process::Command::new("docker")
        .args(["events", "--since", since, "--until", until])
        .args(["--filter", "event=create"])
        .args(["--filter", "label=codebox.role=installer"])
        .args([
            "--filter",
            &format!("label=codebox.packages={distribution}"),
        ])
        .args(["--format", "{{.ID}}"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_package_is_installed_outside_the_timeout_then_served_from_the_cache() {
    let f = fixture().await;
    let code = "import cbx_alpha\nprint(cbx_alpha.NAME, cbx_alpha.VALUE)";

    let before_first = now();
    let first = f.run(code).await;
    assert_eq!(first.status, Status::Ok, "{first:?}");
    assert_eq!(first.stdout.trim(), "cbx_alpha 42");
    assert_eq!(first.packages_installed, ["cbx-alpha"]);
    assert!(first.install_ms > 0.0, "{first:?}");
    assert!(
        first.execution_ms < first.install_ms,
        "the install is not counted as execution: {first:?}"
    );
    assert_eq!(f.index.downloads("cbx-alpha"), 1);
    let between = now();
    assert_eq!(installers_created("cbx-alpha", &before_first, &between), 1);

    let second = f.run(code).await;
    let after = now();
    assert_eq!(second.status, Status::Ok, "{second:?}");
    assert_eq!(second.stdout.trim(), "cbx_alpha 42");
    assert!(second.packages_installed.is_empty(), "{second:?}");
    assert_eq!(second.packages_cached, ["cbx-alpha"]);
    assert_eq!(second.install_ms, 0.0);
    assert_eq!(f.index.downloads("cbx-alpha"), 1, "no second download");
    assert_eq!(
        installers_created("cbx-alpha", &between, &after),
        0,
        "a cached package starts no installer container"
    );

    // The operator's view of the same cache.
    let cli = |args: &[&str]| {
        let out = common::codebox(&f.settings.data_dir)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = cli(&["packages", "list"]);
    assert!(listed.contains("cbx-alpha"), "{listed}");
    assert!(listed.contains("1 distributions"), "{listed}");
    let pruned = cli(&["packages", "prune", "--all"]);
    assert!(pruned.contains("removed cbx-alpha"), "{pruned}");
    assert!(cli(&["packages", "list"]).contains("is empty"));
    let third = f.run(code).await;
    assert_eq!(
        third.packages_installed,
        ["cbx-alpha"],
        "pruned, so installed again"
    );
    assert_eq!(f.index.downloads("cbx-alpha"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_missing_the_same_package_install_it_once() {
    let f = Arc::new(fixture().await);
    let code = "import cbx_gamma\nprint(cbx_gamma.VALUE)";
    let (a, b) = tokio::join!(f.run(code), f.run(code));
    for run in [&a, &b] {
        assert_eq!(run.status, Status::Ok, "{run:?}");
        assert_eq!(run.stdout.trim(), "42");
    }
    assert_eq!(
        f.index.downloads("cbx-gamma"),
        1,
        "one installation for both"
    );
    let installed: Vec<_> = [&a, &b]
        .iter()
        .flat_map(|r| r.packages_installed.clone())
        .collect();
    assert_eq!(installed, ["cbx-gamma"], "exactly one run installed it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_package_stops_the_code_at_its_import() {
    let f = fixture().await;
    let result = f
        .run("open('ran.txt', 'w').write('the code ran')\nimport cbx_denied\n")
        .await;
    assert_eq!(result.status, Status::Refused, "{result:?}");
    let error = result.error.clone().unwrap();
    assert_eq!(error.kind, "PackageNotAllowed");
    assert!(
        error.message.contains("package cbx-denied is not allowed"),
        "{error:?}"
    );
    assert_ran_up_to_the_import(&result);
    assert_eq!(f.index.downloads("cbx-denied"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_install_reports_pips_error_and_stops_the_code_at_its_import() {
    let f = fixture().await;
    let result = f
        .run("open('ran.txt', 'w').write('the code ran')\nimport cbx_missing\n")
        .await;
    assert_eq!(result.status, Status::InstallFailed, "{result:?}");
    let error = result.error.clone().unwrap();
    assert_eq!(error.kind, "PackageInstallError");
    assert!(
        error
            .message
            .contains("No matching distribution for `cbx-missing` (imported as `cbx_missing`)"),
        "names the distribution and the import the code wrote: {error:?}"
    );
    assert!(
        error
            .message
            .contains("No matching distribution found for cbx-missing")
            || error.message.contains("Could not find a version"),
        "pip's own words: {error:?}"
    );
    assert_ran_up_to_the_import(&result);
    assert!(result.install_ms > 0.0);
}

/// The installer has no network: its one way out is codebox's proxy, which connects only
/// to the index. An index page that links a "wheel" on another port of the host (a service
/// of the host, the cloud's metadata address...) gets a refusal, and that port sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_installer_reaches_only_the_index_whatever_the_index_links() {
    let f = fixture().await;
    let lure = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let lure_port = lure.local_addr().unwrap().port();
    let reached = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = reached.clone();
    tokio::spawn(async move {
        while let Ok((_conn, _)) = lure.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let host = common::bridge::bridge_host();
    let lure_url = format!("http://{host}:{lure_port}/cbx_lured-1.0-py3-none-any.whl");
    f.index.add_foreign_link("cbx-lured", &lure_url);

    let result = f.run("import cbx_lured\n").await;
    assert_eq!(result.status, Status::InstallFailed, "{result:?}");
    let message = result.error.clone().unwrap().message;
    assert!(
        message.contains("403"),
        "pip reports the proxy's refusal: {message}"
    );
    assert_eq!(
        f.index.page_requests("cbx-lured"),
        1,
        "the index itself was reached"
    );
    assert_eq!(
        reached.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the host's other port saw no connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_code_runs_exactly_once_and_stays_offline() {
    let f = fixture().await;
    let authority = f
        .index
        .url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let (host, port) = authority.split_once(':').unwrap();
    let code = format!(
        r#"
with open("log.txt", "a") as log:
    log.write("ran\n")
import socket
import cbx_delta
print("imported", cbx_delta.VALUE)
try:
    socket.create_connection(({host:?}, {port}), timeout=3)
    print("REACHED THE INDEX")
except OSError as e:
    print("offline", type(e).__name__)
"#
    );
    let result = f.run(&code).await;
    assert_eq!(result.status, Status::Ok, "{result:?}");
    assert!(result.stdout.contains("imported 42"), "{result:?}");
    assert!(result.stdout.contains("offline"), "{result:?}");
    assert!(!result.stdout.contains("REACHED"), "{result:?}");
    let log = result
        .output_files
        .iter()
        .find(|o| o.name == "log.txt")
        .unwrap();
    assert_eq!(std::fs::read_to_string(&log.path).unwrap(), "ran\n");
    assert_eq!(result.packages_installed, ["cbx-delta"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_longer_than_the_time_limit_does_not_time_the_code_out() {
    let f = fixture().await;
    // The install must outlast the 1 s limit whatever the machine: a fast one installs a
    // small wheel from a local index in under a second.
    f.index
        .delay_downloads("cbx-epsilon", std::time::Duration::from_millis(1500));
    let result = f
        .run_within("import cbx_epsilon\nprint(cbx_epsilon.VALUE)", Some(1.0))
        .await;
    assert_eq!(result.status, Status::Ok, "{result:?}");
    assert_eq!(result.stdout, "42\n");
    assert!(result.install_ms > 1000.0, "{result:?}");
    assert!(result.execution_ms < 1000.0, "{result:?}");
}

/// Bytes a directory tree takes on disk (allocated blocks), as `du` counts them.
fn disk_usage(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(items) = std::fs::read_dir(&dir) else {
            continue;
        };
        for item in items.flatten() {
            let Ok(meta) = std::fs::symlink_metadata(item.path()) else {
                continue;
            };
            total += meta.blocks() * 512;
            if meta.is_dir() {
                pending.push(item.path());
            }
        }
    }
    total
}

/// Samples a directory's disk usage every few milliseconds while a test runs: the peak
/// shows what landed on the host even if it was deleted before the run ended.
struct DiskWatch {
    before: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
    sampler: std::thread::JoinHandle<u64>,
}

impl DiskWatch {
    fn start(path: &std::path::Path) -> DiskWatch {
        let path = path.to_path_buf();
        let before = disk_usage(&path);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut peak = 0;
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(disk_usage(&path));
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            peak.max(disk_usage(&path))
        });
        DiskWatch {
            before,
            stop,
            sampler,
        }
    }

    /// (peak growth, growth at the end) in MiB.
    fn finish(self, path: &std::path::Path) -> (f64, f64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let peak = self.sampler.join().unwrap();
        let after = disk_usage(path);
        let mib = |bytes: u64| bytes.saturating_sub(self.before) as f64 / (1024.0 * 1024.0);
        (mib(peak), mib(after))
    }
}

/// Managed containers installing `distribution`, whatever their state.
fn installer_containers(distribution: &str) -> usize {
    let out = std::process::Command::new("docker")
        .args(["ps", "-a", "--quiet"])
        .args(["--filter", "label=codebox.managed=true"])
        .args([
            "--filter",
            &format!("label=codebox.packages={distribution}"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installation_larger_than_its_limit_fails_before_reaching_host_disk() {
    let f = fixture_with(|settings| {
        settings.packages.package_policy = PackagePolicy::Denylist;
        settings.packages.package_install_max_mb = 20;
        settings.packages.package_cache_max_mb = 1000;
    })
    .await;
    // 100 MiB of zeros: a wheel of about 100 KB that unpacks to five times the limit.
    let wheel = build_wheel_with_payload(f.wheels.path(), "cbx_huge", "1.0", "VALUE = 1\n", 100);
    assert!(wheel.1.len() < 1024 * 1024, "{} bytes", wheel.1.len());
    f.index.add_wheel("cbx-huge", wheel);

    let watch = DiskWatch::start(&f.settings.data_dir);
    let result = f
        .run("open('ran.txt', 'w').write('the code ran')\nimport cbx_huge\n")
        .await;
    let (peak_mb, end_mb) = watch.finish(&f.settings.data_dir);
    eprintln!("DATA_DIR growth: peak {peak_mb:.2} MiB, at the end {end_mb:.2} MiB");

    assert_eq!(result.status, Status::InstallFailed, "{result:?}");
    let error = result.error.clone().unwrap();
    eprintln!("{}", error.message);
    assert_eq!(error.kind, "PackageInstallError");
    assert!(
        error.message.contains(
            "installing `cbx-huge` (imported as `cbx_huge`) needs more than 20 MB of disk"
        ),
        "{error:?}"
    );
    assert!(
        error.message.contains("PACKAGE_INSTALL_MAX_MB=20"),
        "names the setting: {error:?}"
    );
    assert_ran_up_to_the_import(&result);
    assert_eq!(f.index.downloads("cbx-huge"), 1, "it was really tried");
    assert!(
        peak_mb < 3.0,
        "host disk grew by {peak_mb:.2} MiB at its peak"
    );
    assert!(end_mb < 3.0, "host disk grew by {end_mb:.2} MiB");
    assert!(!f.packages.cache().contains("cbx-huge"));
    assert_eq!(installer_containers("cbx-huge"), 0, "no installer left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installation_the_cache_cannot_hold_is_refused_and_room_is_made_by_eviction() {
    let f = fixture_with(|settings| {
        settings.packages.package_policy = PackagePolicy::Denylist;
        settings.packages.package_install_max_mb = 64;
        settings.packages.package_cache_max_mb = 12;
    })
    .await;
    for (module, mb) in [("cbx_big", 20), ("cbx_eight_a", 8), ("cbx_eight_b", 8)] {
        let source = format!("NAME = {module:?}\n");
        let wheel = build_wheel_with_payload(f.wheels.path(), module, "1.0", &source, mb);
        f.index.add_wheel(&module.replace('_', "-"), wheel);
    }

    let watch = DiskWatch::start(&f.settings.data_dir);
    let big = f.run("import cbx_big\n").await;
    let (peak_mb, end_mb) = watch.finish(&f.settings.data_dir);
    eprintln!("DATA_DIR growth: peak {peak_mb:.2} MiB, at the end {end_mb:.2} MiB");
    assert_eq!(big.status, Status::InstallFailed, "{big:?}");
    let message = big.error.clone().unwrap().message;
    eprintln!("{message}");
    assert!(
        message.contains("installing `cbx-big` (imported as `cbx_big`) takes 20.0 MB"),
        "{message}"
    );
    assert!(message.contains("PACKAGE_CACHE_MAX_MB=12"), "{message}");
    assert!(
        peak_mb < 3.0,
        "host disk grew by {peak_mb:.2} MiB at its peak"
    );
    assert!(end_mb < 3.0, "host disk grew by {end_mb:.2} MiB");

    // Two installations of 8 MB do not fit a 12 MB cache together: the second evicts the
    // first, which no run is using.
    let cache = f.packages.cache().clone();
    let before = disk_usage(&f.settings.data_dir);
    for module in ["cbx_eight_a", "cbx_eight_b"] {
        let run = f
            .run(&format!("import {module}\nprint({module}.NAME)"))
            .await;
        assert_eq!(run.status, Status::Ok, "{run:?}");
        assert_eq!(run.stdout.trim(), module);
    }
    assert!(!cache.contains("cbx-eight-a"), "evicted to make room");
    assert!(cache.contains("cbx-eight-b"));
    let total: u64 = cache.entries().unwrap().iter().map(|e| e.bytes).sum();
    assert!(total <= 12 * 1024 * 1024, "{total} bytes cached");
    // The same measure sees an installation that was admitted: one 8 MB package, not two.
    let grown = disk_usage(&f.settings.data_dir).saturating_sub(before) as f64 / 1048576.0;
    eprintln!("DATA_DIR growth with cbx-eight-b cached: {grown:.2} MiB");
    assert!((7.9..12.0).contains(&grown), "{grown:.2} MiB");
    for dist in ["cbx-big", "cbx-eight-a", "cbx-eight-b"] {
        assert_eq!(
            installer_containers(dist),
            0,
            "no installer left for {dist}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_an_unlisted_package_is_refused_without_asking_the_index() {
    // The default policy, nothing added: the test wheels are on no curated list.
    let f = fixture_with(|_| {}).await;
    assert_eq!(f.settings.packages.package_policy, PackagePolicy::Allowlist);
    let result = f
        .run("open('ran.txt', 'w').write('the code ran')\nimport cbx_alpha\n")
        .await;
    assert_eq!(result.status, Status::Refused, "{result:?}");
    let error = result.error.clone().unwrap();
    assert_eq!(error.kind, "PackageNotAllowed");
    assert!(
        error
            .message
            .contains("package cbx-alpha is not allowed (not on this server's allowlist"),
        "{error:?}"
    );
    assert_ran_up_to_the_import(&result);
    assert_eq!(f.index.total_requests(), 0, "the index was never asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_allowlist_extends_the_curated_one() {
    let f = fixture_with(|settings| {
        settings.packages.package_allowlist = "cbx_alpha".to_string();
    })
    .await;
    assert_eq!(f.settings.packages.package_policy, PackagePolicy::Allowlist);
    let result = f.run("import cbx_alpha\nprint(cbx_alpha.VALUE)").await;
    assert_eq!(result.status, Status::Ok, "{result:?}");
    assert_eq!(result.packages_installed, ["cbx-alpha"]);
    let refused = f.run("import cbx_gamma\n").await;
    assert_eq!(refused.status, Status::Refused, "{refused:?}");
    assert_eq!(f.index.page_requests("cbx-gamma"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_the_index_lacks_is_remembered_so_retries_start_no_installer() {
    let f = fixture().await;
    let code = "open('ran.txt', 'w').write('the code ran')\nimport cbx_absent\n";
    let before = now();
    let first = f.run(code).await;
    let asked = f.index.page_requests("cbx-absent");
    let second = f.run(code).await;
    let after = now();

    for run in [&first, &second] {
        assert_eq!(run.status, Status::InstallFailed, "{run:?}");
        assert!(
            run.flags.iter().any(|f| f.flag == "package_install_failed"),
            "{run:?}"
        );
    }
    let message = first.error.clone().unwrap().message;
    assert!(
        message.contains("No matching distribution for `cbx-absent` (imported as `cbx_absent`)"),
        "{message}"
    );
    assert_eq!(
        second.outcome.error.unwrap().message,
        message,
        "the same words"
    );
    assert!(asked >= 1, "the first run asked the index");
    assert_eq!(
        f.index.page_requests("cbx-absent"),
        asked,
        "the second did not"
    );
    assert_eq!(installers_created("cbx-absent", &before, &after), 1);
    assert_eq!(installer_containers("cbx-absent"), 0, "no installer left");
}

/// The cache is shared by every user: a `.pth` file in a cached wheel must never run (it
/// could replace `load_file` for everyone), and a run can neither list nor guess what others
/// installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_wheels_pth_never_runs_and_the_cache_cannot_be_listed_or_probed() {
    let f = fixture().await;
    let wheels = tempfile::tempdir().unwrap();
    f.index.add_wheel(
        "cbx-hooked",
        build_wheel_with_pth(
            wheels.path(),
            "cbx_hooked",
            "1.0",
            "VALUE = 7\n",
            "import builtins; builtins.PTH_RAN = True\n",
        ),
    );
    let code = r#"
import builtins, os
import cbx_hooked
print("value", cbx_hooked.VALUE)
print("pth ran", getattr(builtins, "PTH_RAN", False))
try:
    print("listed", os.listdir("/opt/codebox-packages"))
except PermissionError:
    print("listing refused")
"#;
    for _ in 0..2 {
        let run = f.run(code).await;
        assert_eq!(run.status, Status::Ok, "{run:?}");
        assert!(run.stdout.contains("value 7"), "{}", run.stdout);
        assert!(run.stdout.contains("pth ran False"), "{}", run.stdout);
        assert!(run.stdout.contains("listing refused"), "{}", run.stdout);
    }
    // A run that has the cache mounted for its own import cannot probe for what others
    // installed by guessing names: the directories have keyed names.
    let probe = f
        .run(
            r#"
import os, sys
import cbx_alpha
mine = [p for p in sys.path if p.startswith("/opt/codebox-packages/")]
print("mine", len(mine), all(os.path.isdir(p) for p in mine))
print("beside", sorted(os.listdir(os.path.dirname(mine[0]))))
for guess in ["cbx-hooked", "cbx_hooked", "cbx-alpha", "cbx_alpha"]:
    for tail in ["", "/site", "/.last_used"]:
        if os.path.exists("/opt/codebox-packages/" + guess + tail):
            print("found", guess + tail)
"#,
        )
        .await;
    assert_eq!(probe.status, Status::Ok, "{probe:?}");
    // Its own entry holds nothing but the package: no last-use time, no name.
    assert_eq!(
        probe.stdout.trim(),
        "mine 1 True\nbeside ['site']",
        "{probe:?}"
    );
    // Not a vacuous pass: the hook file is really in the shared cache.
    let site = codebox::packages::PackageCache::open(&f.settings.data_dir)
        .unwrap()
        .entry_path("cbx-hooked")
        .join("site");
    assert!(
        site.join("cbx_hooked-hook.pth").is_file(),
        "{:?}",
        std::fs::read_dir(&site).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
}

/// Dependency confusion: a module the code writes itself and imports must never be looked
/// up on the index, even when the index serves a package of that name; an import the code
/// never executes installs nothing; a refused import is an ImportError the code can catch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_imports_that_really_fail_reach_the_index() {
    let f = fixture().await;
    let own = f
        .run("open('cbx_alpha.py', 'w').write('VALUE = \"mine\"\\n')\nimport cbx_alpha\nprint(cbx_alpha.VALUE)\n")
        .await;
    assert_eq!(own.status, Status::Ok, "{own:?}");
    assert_eq!(own.stdout.trim(), "mine");
    assert!(own.packages_installed.is_empty(), "{own:?}");

    let never_called = f
        .run("def later():\n    import cbx_gamma\nprint('fine')\n")
        .await;
    assert_eq!(never_called.status, Status::Ok, "{never_called:?}");
    assert_eq!(
        f.index.total_requests(),
        0,
        "neither the code's own module nor an import it never ran asked the index"
    );

    let caught = f
        .run("try:\n    import cbx_denied\nexcept ImportError as e:\n    print('fallback:', e)\n")
        .await;
    assert_eq!(caught.status, Status::Ok, "{caught:?}");
    assert!(
        caught
            .stdout
            .contains("fallback: No module named 'cbx_denied'")
            && caught.stdout.contains("not allowed"),
        "{}",
        caught.stdout
    );
    assert!(
        caught
            .flags
            .iter()
            .any(|f| f.flag == "package_refused" && f.name.as_deref() == Some("cbx_denied")),
        "{:?}",
        caught.flags
    );
}
