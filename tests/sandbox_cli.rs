//! `codebox run` against the real Docker engine: ordinary and hostile programs, each with
//! its exact expected outcome, and every run's container checked gone afterwards.

mod common;

use std::fs;

use common::{SECRET_VARS, assert_container_gone, codebox, run_code, run_with};

#[test]
fn hello_world() {
    let data = tempfile::tempdir().unwrap();
    let run = run_code(data.path(), &[], "print('hello, world')");
    assert_eq!(run.status(), "ok");
    assert_eq!(run.stdout(), "hello, world\n");
    assert_eq!(run.stderr(), "");
    assert_eq!(run.json["exit_code"], 0);
    assert!(run.json["error"].is_null());
    assert_eq!(run.json["stdout_truncated"], false);
    assert!(run.json["execution_ms"].as_f64().unwrap() >= 0.0);
    assert!(run.json["total_ms"].as_f64().unwrap() >= run.json["execution_ms"].as_f64().unwrap());
    assert!(run.flags().is_empty());
    assert_container_gone(run.run_id());
}

#[test]
fn code_may_start_with_a_dash_and_inputs_are_refused_for_a_user() {
    let data = tempfile::tempdir().unwrap();
    let run = run_code(data.path(), &[], "-(0.5 * 2 + 1) ** 2");
    assert_eq!(run.status(), "ok", "{}", run.stderr());
    assert_eq!(run.stdout(), "-4.0\n");
    let input = data.path().join("in.csv");
    std::fs::write(&input, "a\n1\n").unwrap();
    let refused = codebox(data.path())
        .args(["run", "--user", "u1", "--input"])
        .arg(&input)
        .args(["-c", "print(1)"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("'--user <USER>' cannot be used with '--input <PATH>'"),
        "{said}"
    );
}

#[test]
fn exception_reports_type_message_and_traceback() {
    let data = tempfile::tempdir().unwrap();
    let run = run_code(
        data.path(),
        &[],
        "print('before')\ndef f(x):\n    return 1 / x\nf(0)\n",
    );
    assert_eq!(run.status(), "error");
    assert_eq!(run.json["exit_code"], 1);
    assert_eq!(run.stdout(), "before\n");
    assert_eq!(run.json["error"]["type"], "ZeroDivisionError");
    assert_eq!(run.json["error"]["message"], "division by zero");
    let stderr = run.stderr();
    assert!(
        stderr.starts_with("Traceback (most recent call last):"),
        "{stderr}"
    );
    assert!(stderr.contains("line 4, in <module>"), "{stderr}");
    assert!(stderr.contains("line 3, in f"), "{stderr}");
    assert!(
        stderr.contains("return 1 / x"),
        "source lines shown: {stderr}"
    );
    assert!(
        !stderr.contains("runner.py"),
        "runner frames hidden: {stderr}"
    );
    assert_container_gone(run.run_id());
}

#[test]
fn sys_exit_codes_are_reported() {
    let data = tempfile::tempdir().unwrap();
    let run = run_code(data.path(), &[], "import sys; sys.exit(3)");
    assert_eq!(run.status(), "error");
    assert_eq!(run.json["exit_code"], 3);
    let run = run_code(data.path(), &[], "import sys; sys.exit(0)");
    assert_eq!(run.status(), "ok");
}

#[test]
fn infinite_loop_times_out_near_the_limit() {
    let data = tempfile::tempdir().unwrap();
    let run = run_code(data.path(), &["--timeout", "2"], "while True:\n    pass\n");
    assert_eq!(run.status(), "timeout");
    assert!(run.json["exit_code"].is_null());
    assert_eq!(run.json["error"]["type"], "TimeoutError");
    assert!(
        run.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 s")
    );
    let ms = run.json["execution_ms"].as_f64().unwrap();
    assert!((1900.0..4000.0).contains(&ms), "execution_ms {ms}");
    assert_container_gone(run.run_id());
}

#[test]
fn timeout_keeps_what_was_printed_before() {
    let data = tempfile::tempdir().unwrap();
    let run = run_code(
        data.path(),
        &["--timeout", "1"],
        "import time\nprint('step 1', flush=True)\ntime.sleep(30)\n",
    );
    assert_eq!(run.status(), "timeout");
    assert_eq!(run.stdout(), "step 1\n");
}

#[test]
fn code_killed_by_a_realtime_signal_still_gets_its_result() {
    let data = tempfile::tempdir().unwrap();
    let run = run_code(
        data.path(),
        &[],
        "import os\nprint('before', flush=True)\nos.kill(os.getpid(), 40)\n",
    );
    assert_eq!(run.status(), "killed", "{}", run.json);
    assert_eq!(run.json["exit_code"], -40);
    assert_eq!(run.stdout(), "before\n");
    assert_eq!(
        run.json["error"]["message"],
        "the code was killed by signal 40"
    );
}

#[test]
fn memory_bomb_is_oom() {
    let data = tempfile::tempdir().unwrap();
    let run = run_code(
        data.path(),
        &["--memory-mb", "128", "--timeout", "30"],
        "data = []\nwhile True:\n    data.append(b'x' * 10**7)\n",
    );
    assert_eq!(run.status(), "oom", "{}", run.json);
    assert_eq!(run.json["error"]["type"], "MemoryError");
    assert!(
        run.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("128 MB")
    );
    assert_container_gone(run.run_id());
}

#[test]
fn fork_bomb_is_contained_and_the_next_run_works() {
    let data = tempfile::tempdir().unwrap();
    let run = run_code(
        data.path(),
        &["--timeout", "4"],
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
    );
    assert_eq!(run.status(), "timeout", "{}", run.json);
    assert_container_gone(run.run_id());
    let next = run_code(data.path(), &[], "print('still fine')");
    assert_eq!(next.status(), "ok");
    assert_eq!(next.stdout(), "still fine\n");
}

#[test]
fn pids_limit_stops_process_creation() {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = codebox(data.path());
    cmd.env("SANDBOX_PIDS", "16");
    let run = run_with(
        cmd,
        &[],
        "import os, time\nn = 0\ntry:\n    for _ in range(100):\n        if os.fork() == 0:\n            time.sleep(30)\n            os._exit(0)\n        n += 1\nexcept OSError as e:\n    print('refused after', n, type(e).__name__)\n",
    );
    assert_eq!(run.status(), "ok", "{}", run.json);
    let out = run.stdout();
    assert!(out.starts_with("refused after"), "{out}");
    let n: u32 = out.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(n < 16, "created {n} processes with a limit of 16");
}

#[test]
fn huge_stdout_is_truncated_and_host_memory_stays_bounded() {
    let data = tempfile::tempdir().unwrap();
    let run = run_code(
        data.path(),
        &[],
        "import sys\nchunk = 'x' * (1024 * 1024)\nfor _ in range(200):\n    sys.stdout.write(chunk)\nprint('END')\n",
    );
    assert_eq!(run.status(), "ok");
    assert_eq!(run.json["stdout_truncated"], true);
    let stdout = run.stdout();
    assert!(stdout.chars().count() <= 100_000 + 100, "{}", stdout.len());
    assert!(stdout.ends_with("END\n"), "the tail is kept");
    assert!(stdout.contains("characters truncated"));
    assert!(
        run.flags()
            .contains(&("stdout_truncated".to_string(), None))
    );
    // Peak RSS of every child this test process has waited for, codebox included.
    let usage =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    let max_rss_mb = usage.max_rss() / 1024;
    // The debug binary alone is about 36 MB resident (`codebox run -c 'print(1)'`); 200 MB
    // of output must add only bounded buffers to that.
    assert!(
        max_rss_mb < 80,
        "codebox peaked at {max_rss_mb} MB for 200 MB of output"
    );
}

#[test]
fn network_is_unreachable() {
    let data = tempfile::tempdir().unwrap();
    let run = run_code(
        data.path(),
        &[],
        r#"
import os, socket
print(sorted(os.listdir('/sys/class/net')))
for target in [('1.1.1.1', 80), ('172.17.0.1', 2375), ('pypi.org', 443)]:
    try:
        socket.create_connection(target, timeout=3)
        print('CONNECTED', target)
    except OSError as e:
        print('blocked', target[0])
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b'x', ('8.8.8.8', 53))
    print('UDP SENT')
except OSError:
    print('udp blocked')
"#,
    );
    assert_eq!(run.status(), "ok", "{}", run.json);
    assert_eq!(
        run.stdout(),
        "['lo']\nblocked 1.1.1.1\nblocked 172.17.0.1\nblocked pypi.org\nudp blocked\n"
    );
}

#[test]
fn secrets_of_the_host_are_invisible() {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = codebox(data.path());
    for (name, value) in SECRET_VARS {
        cmd.env(name, value);
    }
    let run = run_with(
        cmd,
        &[],
        r#"
import glob, os
print(dict(os.environ))
for path in glob.glob('/proc/*/environ') + glob.glob('/proc/*/cmdline'):
    try:
        print(path, open(path, 'rb').read())
    except OSError as e:
        print(path, type(e).__name__)
for root in ['/etc', '/opt', '/tmp', '/mnt', '/root', '/home', '/run']:
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                with open(os.path.join(dirpath, name), 'rb') as f:
                    if b'canary' in f.read(1 << 20):
                        print('FOUND IN', dirpath, name)
            except OSError:
                pass
print('searched')
"#,
    );
    assert_eq!(run.status(), "ok", "{}", run.json);
    let everything = run.json.to_string();
    assert!(run.stdout().contains("searched"));
    assert!(
        !everything.contains("canary"),
        "a secret leaked: {everything}"
    );
    for (name, _) in SECRET_VARS {
        assert!(!run.stdout().contains(name), "{name} visible inside");
    }
}

#[test]
fn inputs_are_readable_but_not_writable() {
    let data = tempfile::tempdir().unwrap();
    let input = data.path().join("data.csv");
    fs::write(&input, "a,b\n1,2\n3,4\n").unwrap();
    let run = run_code(
        data.path(),
        &["--input", input.to_str().unwrap()],
        r#"
import os, pandas as pd
df = pd.read_csv('/mnt/inputs/data.csv')
print(int(df['b'].sum()))
for attempt in [
    lambda: open('/mnt/inputs/data.csv', 'a').write('9,9\n'),
    lambda: os.remove('/mnt/inputs/data.csv'),
    lambda: os.chmod('/mnt/inputs/data.csv', 0o777),
    lambda: open('/mnt/inputs/new.txt', 'w'),
    lambda: os.rename('/mnt/inputs/data.csv', '/mnt/inputs/moved.csv'),
]:
    try:
        attempt()
        print('WRITE SUCCEEDED')
    except OSError as e:
        print('refused', e.errno)
"#,
    );
    assert_eq!(run.status(), "ok", "{}", run.json);
    let lines: Vec<&str> = run.stdout().lines().collect();
    assert_eq!(lines[0], "6");
    assert_eq!(lines.len(), 6);
    assert!(
        lines[1..].iter().all(|l| l.starts_with("refused")),
        "{lines:?}"
    );
    assert_eq!(fs::read_to_string(&input).unwrap(), "a,b\n1,2\n3,4\n");
}

#[test]
fn outputs_are_collected_with_subdirectories() {
    let data = tempfile::tempdir().unwrap();
    let out = data.path().join("out");
    let run = run_code(
        data.path(),
        &["--out", out.to_str().unwrap()],
        r#"
import os
import matplotlib.pyplot as plt
plt.plot([1, 2, 3], [3, 1, 2])
plt.savefig('plot.png')
os.makedirs('tables', exist_ok=True)
with open('tables/result.csv', 'w') as f:
    f.write('x,y\n1,2\n')
"#,
    );
    assert_eq!(run.status(), "ok", "{}", run.json);
    assert_eq!(run.output_names(), ["plot.png", "tables/result.csv"]);
    let png = fs::read(out.join("plot.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(
        fs::read_to_string(out.join("tables/result.csv")).unwrap(),
        "x,y\n1,2\n"
    );
    let files = run.json["output_files"].as_array().unwrap();
    let csv = files
        .iter()
        .find(|f| f["name"] == "tables/result.csv")
        .unwrap();
    assert_eq!(csv["size"], 8);
    assert_eq!(csv["path"], out.join("tables/result.csv").to_str().unwrap());
}

#[test]
fn symlinks_in_the_output_do_not_leak_files() {
    let data = tempfile::tempdir().unwrap();
    let out = data.path().join("out");
    let run = run_code(
        data.path(),
        &["--out", out.to_str().unwrap()],
        r#"
import os
os.symlink('/etc/passwd', 'passwd')
os.symlink('/proc/1/environ', 'environ')
os.symlink('/', 'root')
os.makedirs('d')
os.symlink('/etc/hostname', 'd/hostname')
open('real.txt', 'w').write('ok')
"#,
    );
    assert_eq!(run.status(), "ok", "{}", run.json);
    assert_eq!(run.output_names(), ["real.txt"]);
    let mut skipped: Vec<String> = run
        .flags()
        .into_iter()
        .filter(|(f, _)| f == "skipped_symlink")
        .filter_map(|(_, n)| n)
        .collect();
    skipped.sort();
    assert_eq!(skipped, ["d/hostname", "environ", "passwd", "root"]);
    let mut on_disk: Vec<String> = walk(&out);
    on_disk.sort();
    assert_eq!(on_disk, ["real.txt"]);
}

#[test]
fn ten_thousand_files_and_an_oversized_file_are_capped_with_flags() {
    let data = tempfile::tempdir().unwrap();
    let out = data.path().join("out");
    let mut cmd = codebox(data.path());
    cmd.env("MAX_OUTPUT_FILES", "50")
        .env("MAX_OUTPUT_FILE_MB", "1");
    let run = run_with(
        cmd,
        &["--out", out.to_str().unwrap()],
        r#"
with open('big.bin', 'wb') as f:
    f.write(b'x' * (2 * 1024 * 1024))
for i in range(10000):
    with open(f'f{i:05}.txt', 'w') as f:
        f.write(str(i))
print('written')
"#,
    );
    assert_eq!(run.status(), "ok", "{}", run.json);
    assert_eq!(run.output_names().len(), 50);
    assert_eq!(walk(&out).len(), 50);
    let flags = run.json["flags"].as_array().unwrap();
    let big = flags
        .iter()
        .find(|f| f["flag"] == "file_too_large")
        .unwrap();
    assert_eq!(big["name"], "big.bin");
    assert_eq!(big["size"], 2 * 1024 * 1024);
    let too_many: u64 = flags
        .iter()
        .filter(|f| f["flag"] == "too_many_files")
        .map(|f| f["more"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(too_many, 10000 - 50, "every skipped file is counted");
    assert!(flags.len() < 100, "flags stay compact: {}", flags.len());
}

#[test]
fn odd_names_cannot_escape_the_output_directory() {
    let data = tempfile::tempdir().unwrap();
    let out = data.path().join("nested").join("out");
    let run = run_code(
        data.path(),
        &["--out", out.to_str().unwrap()],
        r#"
names = ['..\\..\\evil.txt', 'new\nline.txt', '...', '..x', ' spaced name.txt', 'ünï.txt']
for name in names:
    with open(name, 'w') as f:
        f.write('data')
try:
    open('../escape.txt', 'w').write('x')
    print('ESCAPED')
except OSError as e:
    print('parent refused', e.errno)
try:
    open('/mnt/abs.txt', 'w').write('x')
    print('ESCAPED')
except OSError as e:
    print('absolute refused', e.errno)
"#,
    );
    assert_eq!(run.status(), "ok", "{}", run.json);
    assert!(!run.stdout().contains("ESCAPED"), "{}", run.stdout());
    assert_eq!(
        run.output_names(),
        [" spaced name.txt", "...", "..x", "ünï.txt"]
    );
    let unsafe_names: Vec<String> = run
        .flags()
        .into_iter()
        .filter(|(f, _)| f == "unsafe_name")
        .filter_map(|(_, n)| n)
        .collect();
    assert_eq!(unsafe_names.len(), 2, "{unsafe_names:?}");
    let mut everything = walk(data.path().join("nested").as_path());
    everything.sort();
    assert_eq!(
        everything,
        ["out/ spaced name.txt", "out/...", "out/..x", "out/ünï.txt"]
    );
}

#[test]
fn background_processes_do_not_outlive_the_run() {
    let data = tempfile::tempdir().unwrap();
    let out = data.path().join("out");
    let run = run_code(
        data.path(),
        &["--out", out.to_str().unwrap()],
        r#"
import os, subprocess
subprocess.Popen(['sh', '-c', 'sleep 1; echo late > late.txt'], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    import time
    time.sleep(1)
    open('late2.txt', 'w').write('late')
    os._exit(0)
print('main done')
"#,
    );
    assert_eq!(run.status(), "ok", "{}", run.json);
    assert_eq!(run.stdout(), "main done\n");
    let ms = run.json["execution_ms"].as_f64().unwrap();
    assert!(
        ms < 900.0,
        "the run did not wait for its background processes: {ms}"
    );
    assert!(run.output_names().is_empty(), "{:?}", run.output_names());
    assert_container_gone(run.run_id());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(walk(&out).is_empty());
}

#[test]
fn runs_under_gvisor_see_its_kernel() {
    let data = tempfile::tempdir().unwrap();
    let run = run_code(
        data.path(),
        &["--runtime", "runsc"],
        "import os\nprint(os.uname().release)\nwritten = open('x.txt', 'w').write('y')\n",
    );
    assert_eq!(run.status(), "ok", "{}", run.json);
    assert_eq!(run.stdout(), "4.4.0\n");
    assert_eq!(run.output_names(), ["x.txt"]);
    assert_container_gone(run.run_id());
}

/// Prints the root field of the input mount, then the whole table.
const SHOW_MOUNTINFO: &str = r#"
table = open('/proc/self/mountinfo').read()
roots = [l.split()[3] for l in table.splitlines() if l.split()[4] == '/mnt/inputs']
print(roots[0])
print(table)
"#;

/// `/proc/self/mountinfo` shows a run the host path of what is bind-mounted into it, as far
/// as the file system allows: `codebox doctor` says what runs see, and each case holds.
#[test]
fn mountinfo_shows_runs_only_the_host_paths_doctor_names() {
    let doctor = |data: &std::path::Path, runtime: &str| {
        let output = codebox(data)
            .env("SANDBOX_RUNTIME", runtime)
            .arg("doctor")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{text}");
        text.lines()
            .find(|l| l.contains("host paths"))
            .unwrap_or_else(|| panic!("no host paths line in {text}"))
            .to_string()
    };
    let run_with_input = |data: &std::path::Path, runtime: &str| {
        let input = data.join("data.csv");
        fs::write(&input, "a\n1\n").unwrap();
        let run = run_code(
            data,
            &["--runtime", runtime, "--input", input.to_str().unwrap()],
            SHOW_MOUNTINFO,
        );
        assert_eq!(run.status(), "ok", "{}", run.json);
        run.stdout().to_string()
    };

    // runc, DATA_DIR somewhere in a file system (the root one, or /tmp's): its path within
    // that file system, as doctor says.
    let plain = tempfile::tempdir().unwrap();
    let canonical = fs::canonicalize(plain.path()).unwrap();
    let host_table = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let expected =
        codebox::sandbox::mount_view::path_seen_by_runc(&canonical, &host_table).unwrap();
    let seen = run_with_input(plain.path(), "runc");
    let root = seen.lines().next().unwrap();
    assert!(
        root.starts_with(&format!("{}/staging/", expected.display()))
            || root.starts_with(&format!("{}/pool/", expected.display())),
        "{root} is not under {expected:?}"
    );
    let line = doctor(plain.path(), "runc");
    assert!(
        line.contains(&format!(
            "see host paths such as {}/staging in",
            expected.display()
        )),
        "{line}"
    );

    // runsc: no host path at all.
    let secret_name = canonical.file_name().unwrap().to_str().unwrap();
    let seen = run_with_input(plain.path(), "runsc");
    assert!(!seen.contains(secret_name), "{seen}");
    assert_eq!(seen.lines().next(), Some("/"), "{seen}");
    assert!(doctor(plain.path(), "runsc").contains("see no host path"));

    // runc, DATA_DIR the root of its own file system: only paths within it.
    let own = common::tmpfs::Tmpfs::mount(64);
    let own_name = own.path().file_name().unwrap().to_str().unwrap();
    let seen = run_with_input(own.path(), "runc");
    assert!(!seen.contains(own_name), "{seen}");
    let root = seen.lines().next().unwrap();
    assert!(
        root.starts_with("/staging/") || root.starts_with("/pool/"),
        "{root}"
    );
    assert!(
        doctor(own.path(), "runc").contains("root of its own file system"),
        "{}",
        doctor(own.path(), "runc")
    );
}

#[test]
fn code_from_a_script_file_and_from_stdin() {
    use std::io::Write;
    use std::process::Stdio;
    let data = tempfile::tempdir().unwrap();
    let script = data.path().join("job.py");
    fs::write(&script, "print(6 * 7)\n").unwrap();
    let output = codebox(data.path())
        .args(["run", "--json"])
        .arg(&script)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["stdout"], "42\n");

    let mut child = codebox(data.path())
        .args(["run", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"print('from stdin')\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["stdout"], "from stdin\n");
}

#[test]
fn readable_summary_without_json() {
    let data = tempfile::tempdir().unwrap();
    let output = codebox(data.path())
        .args(["run", "-c", "print('hi')\nraise KeyError('k')"])
        .output()
        .unwrap();
    assert!(output.status.success());
    // The code's output streams first (stderr to stderr), then the summary, which does not
    // repeat what was already shown whole.
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("hi\nstatus: error (exit code 1)"),
        "{text}"
    );
    assert!(text.contains("error: KeyError: 'k'"), "{text}");
    assert!(!text.contains("--- stdout ---"), "{text}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Traceback") && stderr.contains("KeyError: 'k'"),
        "{stderr}"
    );
}

/// A run that cannot start fails with one line on stderr naming what to fix, and nothing
/// on stdout (no JSON when the sandbox did not run).
#[test]
fn a_run_that_cannot_start_fails_with_one_line_naming_the_fix() {
    let cases: [(&str, &str, &[&str]); 3] = [
        (
            "SANDBOX_IMAGE",
            "codebox-no-such-image:never",
            &["codebox-no-such-image:never", "codebox image build"],
        ),
        (
            "DOCKER_HOST",
            "unix:///nonexistent/docker.sock",
            &["Docker daemon"],
        ),
        ("SANDBOX_MEMORY_MB", "a lot", &["SANDBOX_MEMORY_MB"]),
    ];
    for (name, value, expected) in cases {
        let data = tempfile::tempdir().unwrap();
        let output = codebox(data.path())
            .env(name, value)
            .args(["run", "--json", "-c", "print(1)"])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{name}={value}");
        assert!(output.stdout.is_empty(), "{name}={value}: no JSON");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{name}={value}: {stderr}");
        for part in expected {
            assert!(stderr.contains(part), "{name}={value}: {stderr}");
        }
    }
}

#[test]
fn doctor_reports_a_healthy_machine() {
    let data = tempfile::tempdir().unwrap();
    let output = codebox(data.path()).arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    for name in [
        "docker daemon",
        "runtime runc",
        "runtime runsc",
        "sandbox image",
        "data dir",
        "host paths",
        "warm pool",
        "packages",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("ok") && l.contains(name)),
            "{name} missing from {text}"
        );
    }
    let broken = codebox(data.path())
        .env("SANDBOX_IMAGE", "codebox-no-such-image:never")
        .arg("doctor")
        .output()
        .unwrap();
    assert!(!broken.status.success());
    let text = String::from_utf8_lossy(&broken.stdout);
    assert!(text.contains("FAIL  sandbox image"), "{text}");
    assert!(text.contains("fix: codebox image build"), "{text}");
}

fn walk(root: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else {
                found.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    found
}

/// Numbers are validated at the boundary: no panic, no container started and left behind,
/// one clear line.
#[test]
fn absurd_numbers_are_refused_before_any_container_starts() {
    let data = tempfile::tempdir().unwrap();
    for args in [
        ["--timeout", "1e30"],
        ["--timeout", "1e19"],
        ["--memory-mb", "17592186044416"],
    ] {
        let output = codebox(data.path())
            .args(["run", "--json"])
            .args(args)
            .args(["-c", "print(1)"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(args[0]), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty());
    }
}
