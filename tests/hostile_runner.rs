//! Attacks on the runner itself, under runc and gVisor: the code runs as another uid than
//! the runner, so it can neither stop or signal it nor write to its stream; whatever reaches
//! the host unauthenticated is a protocol error, never a result; and the host's deadline is
//! fixed at the hand-off.

mod common;

use std::time::{Duration, Instant};

use common::{Run, codebox};

fn run(runtime: &str, code: &str, extra: &[&str]) -> (Run, Duration) {
    run_in(tempfile::tempdir().unwrap().path(), runtime, code, extra)
}

/// A run whose outputs stay in `data`.
fn run_in(data: &std::path::Path, runtime: &str, code: &str, extra: &[&str]) -> (Run, Duration) {
    let started = Instant::now();
    let output = codebox(data)
        .args(["run", "--json", "--runtime", runtime])
        .args(extra)
        .args(["-c", code])
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = serde_json::from_slice(&output.stdout).unwrap();
    (Run { json, output }, elapsed)
}

const FORGE: &str = r#"
import os, signal, json
seen = []
for name, sig in (("stop", signal.SIGSTOP), ("int", signal.SIGINT), ("term", signal.SIGTERM)):
    try:
        os.kill(1, sig)
        seen.append(name + ":sent")
    except OSError as e:
        seen.append(name + ":" + type(e).__name__)
fake = {"event": "result", "status": "ok", "exit_code": 0, "stdout": "FORGED", "stderr": "",
        "stdout_truncated": False, "stderr_truncated": False, "execution_ms": 1.0, "error": None}
lines = [fake, {"event": "outputs", "bytes": 0, "flags": []}, {"event": "done"}]
try:
    fd = os.open("/proc/1/fd/1", os.O_WRONLY)
    os.write(fd, "".join(json.dumps(l) + "\n" for l in lines).encode())
    seen.append("stream:opened")
except OSError as e:
    seen.append("stream:" + type(e).__name__)
try:
    open("/proc/1/mem", "rb").read(1)
    seen.append("mem:read")
except OSError as e:
    seen.append("mem:" + type(e).__name__)
# A forged error report on every descriptor the code holds.
for fd in range(3, 64):
    try:
        os.write(fd, b'{"type": "MemoryError", "message": "forged"}')
    except OSError:
        pass
open("kept.txt", "w").write("the outputs survive")
print(" ".join(seen))
"#;

fn the_code_cannot_reach_the_runner(runtime: &str) {
    let (run, _) = run(runtime, FORGE, &[]);
    assert_eq!(run.status(), "ok", "{}", run.json);
    let stdout = run.stdout();
    assert!(!stdout.contains("FORGED"), "{stdout}");
    for denied in [
        "stop:PermissionError",
        "int:PermissionError",
        "term:PermissionError",
        "stream:PermissionError",
        "mem:PermissionError",
    ] {
        assert!(stdout.contains(denied), "{runtime}: {stdout}");
    }
    assert!(
        run.json["error"].is_null(),
        "a forged error report is not believed: {}",
        run.json
    );
    assert_eq!(run.output_names(), ["kept.txt"], "{}", run.json);
}

#[test]
fn the_code_cannot_stop_signal_or_speak_for_the_runner_under_runc() {
    the_code_cannot_reach_the_runner("runc");
}

#[test]
fn the_code_cannot_stop_signal_or_speak_for_the_runner_under_gvisor() {
    the_code_cannot_reach_the_runner("runsc");
}

/// The attack that ran 40 s under gVisor with `--timeout 3`: stop the runner and keep
/// announcing `started`. Now the stop is refused and nothing re-arms the deadline.
fn the_timeout_holds(runtime: &str) {
    let code = r#"
import os, signal, time
while True:
    for attempt in (lambda: os.kill(1, signal.SIGSTOP),
                    lambda: os.write(os.open("/proc/1/fd/1", os.O_WRONLY), b'{"event": "started"}\n')):
        try:
            attempt()
        except OSError:
            pass
    time.sleep(0.05)
"#;
    let (run, elapsed) = run(runtime, code, &["--timeout", "3"]);
    assert_eq!(run.status(), "timeout", "{}", run.json);
    assert!(
        elapsed < Duration::from_secs(20),
        "{runtime}: a 3 s run took {elapsed:?}"
    );
}

#[test]
fn a_three_second_limit_holds_under_runc() {
    the_timeout_holds("runc");
}

#[test]
fn a_three_second_limit_holds_under_gvisor() {
    the_timeout_holds("runsc");
}

/// An exception class whose name carries Discord formatting (a heading, a masked link,
/// newlines) is reported as `Exception`: its type name never leaves the sandbox as markup.
const FORMATTED_NAME: &str = r#"
class Bad(Exception):
    pass
Bad.__qualname__ = "Oops\n# Free Nitro\n[claim here](https://evil.example/login)"
Bad.__module__ = "builtins"
raise Bad("the message stays")
"#;

fn the_exception_name_is_an_identifier(runtime: &str) {
    let (forged, _) = run(runtime, FORMATTED_NAME, &[]);
    assert_eq!(forged.status(), "error", "{}", forged.json);
    assert_eq!(forged.json["error"]["type"], "Exception", "{}", forged.json);
    assert_eq!(forged.json["error"]["message"], "the message stays");
    let plain = "class Fine(ValueError):\n    pass\nraise Fine('x')\n";
    let (fine, _) = run(runtime, plain, &[]);
    assert_eq!(fine.json["error"]["type"], "Fine", "{}", fine.json);
}

#[test]
fn an_exception_name_carries_no_markup_under_runc() {
    the_exception_name_is_an_identifier("runc");
}

#[test]
fn an_exception_name_carries_no_markup_under_gvisor() {
    the_exception_name_is_an_identifier("runsc");
}

/// Output names that are not UTF-8, and names that collide once decoded, cost only those
/// files: the run, its output and the other files are kept.
const CRAFTED_NAMES: &str = r#"
import os
os.mkdir(b"d\xff")
open(b"d\xff/inner", "w").write("x")
open(b"d\xfe", "w").write("y")
os.mkdir("a")
open("a/b", "w").write("z")
open("keep.txt", "w").write("kept")
print("wrote them")
"#;

fn crafted_names_cost_only_themselves(runtime: &str) {
    let (run, _) = run(runtime, CRAFTED_NAMES, &[]);
    assert_eq!(run.status(), "ok", "{}", run.json);
    assert!(run.stdout().contains("wrote them"));
    let names = run.output_names();
    assert!(names.iter().any(|n| n == "keep.txt"), "{names:?}");
    assert!(names.iter().any(|n| n == "a/b"), "{names:?}");
    let flags = run.flags();
    assert!(
        flags.iter().filter(|(f, _)| f == "unsafe_name").count() >= 2,
        "{flags:?}"
    );
}

#[test]
fn crafted_output_names_never_fail_a_run_under_runc() {
    crafted_names_cost_only_themselves("runc");
}

#[test]
fn crafted_output_names_never_fail_a_run_under_gvisor() {
    crafted_names_cost_only_themselves("runsc");
}

/// A session cell that tells the runner, on the phase pipe its process holds, that it has
/// finished, then computes for 9 s under a 5 s limit. The runner's own clock stops it at
/// the limit: `timeout`, no state saved, the time and CPU charged the real ones.
const FORGED_FINISH: &str = r#"
import os, time
for fd in range(3, 64):
    try:
        os.write(fd, b'{"phase": "finished", "exit_code": 0}\n')
    except OSError:
        pass
began = time.monotonic()
while time.monotonic() - began < 9:
    pass
print("computed for 9 s")
"#;

fn a_forged_finish_buys_no_time(runtime: &str) {
    let session = ["--user", "u", "--session", "s", "--timeout", "5"];
    let (run, _) = run(runtime, FORGED_FINISH, &session);
    assert_eq!(run.status(), "timeout", "{runtime}: {}", run.json);
    assert!(!run.stdout().contains("computed for 9 s"), "{}", run.json);
    let wall = run.json["execution_ms"].as_f64().unwrap();
    assert!(
        (4900.0..6500.0).contains(&wall),
        "{runtime}: execution_ms {wall}"
    );
    let cpu = run.json["cpu_ms"].as_f64().unwrap();
    assert!(
        cpu > 3000.0,
        "{runtime}: a busy loop of 5 s used {cpu} ms of CPU"
    );
    assert_eq!(run.json["session"]["saved"], false, "{}", run.json);
    let message = run.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("time limit of 5 s"), "{message}");
}

#[test]
fn a_forged_finish_buys_no_time_under_runc() {
    a_forged_finish_buys_no_time("runc");
}

#[test]
fn a_forged_finish_buys_no_time_under_gvisor() {
    a_forged_finish_buys_no_time("runsc");
}

/// One run takes every inotify instance its uid may hold (128 by default under runc) and
/// keeps them; another user's run at the same time still gets one, because each run's code
/// has a uid of its own.
const HOARD_INOTIFY: &str = r#"
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
held = 0
while libc.inotify_init() >= 0:
    held += 1
time.sleep(16)
print("held", held, "uid", os.getuid())
"#;

const ONE_INOTIFY: &str = r#"
import ctypes, os, time
time.sleep(1)
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init()
print("inotify", "ok" if fd >= 0 else os.strerror(ctypes.get_errno()), "uid", os.getuid())
"#;

fn a_run_cannot_take_another_runs_kernel_quota(runtime: &str) {
    let hoarder = {
        let runtime = runtime.to_string();
        std::thread::spawn(move || {
            run(
                &runtime,
                HOARD_INOTIFY,
                &["--user", "hoarder", "--timeout", "30"],
            )
            .0
        })
    };
    std::thread::sleep(Duration::from_secs(7));
    let (other, _) = run(runtime, ONE_INOTIFY, &["--user", "other"]);
    let hoarder = hoarder.join().unwrap();
    let hoarded = hoarder.stdout();
    let held: u32 = hoarded
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", hoarder.json));
    assert!(held >= 100, "{runtime}: the hoarder held only {held}");
    let seen = other.stdout();
    assert!(
        seen.starts_with("inotify ok"),
        "{runtime}: {seen} while {hoarded}"
    );
    let uid_of = |text: &str| text.split_whitespace().last().unwrap().to_string();
    assert_ne!(uid_of(seen), uid_of(hoarded), "{seen} / {hoarded}");
    assert_ne!(uid_of(seen), "10001");
}

#[test]
fn a_run_cannot_take_another_runs_kernel_quota_under_runc() {
    a_run_cannot_take_another_runs_kernel_quota("runc");
}

#[test]
fn a_run_cannot_take_another_runs_kernel_quota_under_gvisor() {
    a_run_cannot_take_another_runs_kernel_quota("runsc");
}

/// The code tries to set what the host believes of its pictures: it replaces the measure in
/// its own process, leaves a process behind that keeps swapping the picture for another
/// after the code ends, and writes files that only claim to be pictures (a PNG signature
/// then garbage; a header naming more pixels than may be decoded). The measure runs in a
/// process of its own once all of the code's are dead: the collected picture is reported at
/// its real size, the others not at all.
const PICTURE_LIES: &str = r#"
import os, shutil, struct, subprocess, sys, zlib
import codebox_vision
codebox_vision.measure = lambda source: {"ok": True, "width": 1, "height": 1, "mime": "image/png"}
from PIL import Image
Image.new("RGB", (800, 600), "red").save("/mnt/outputs/real.png")
Image.new("RGB", (800, 600), "red").save("/tmp/large.png")
Image.new("RGB", (300, 200), "blue").save("/tmp/small.png")
open("/mnt/outputs/fake.png", "wb").write(b"\x89PNG\r\n\x1a\n" + os.urandom(4000))
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0))
bomb += chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")
open("/mnt/outputs/bomb.png", "wb").write(bomb)
swap = (
    "import os, shutil\n"
    "parent = int(os.environ['PARENT'])\n"
    "while os.getppid() == parent:\n    pass\n"
    "while True:\n"
    "    for source in ('/tmp/small.png', '/tmp/large.png'):\n"
    "        shutil.copy(source, '/tmp/next.png')\n"
    "        os.replace('/tmp/next.png', '/mnt/outputs/real.png')\n"
)
subprocess.Popen([sys.executable, "-c", swap], env=dict(os.environ, PARENT=str(os.getpid())),
                 start_new_session=True)
print("written")
"#;

/// Width and height from a PNG's header (the test reads what the host collected).
fn png_size(bytes: &[u8]) -> Option<(u64, u64)> {
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" {
        return None;
    }
    let word = |at: usize| u64::from(u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()));
    Some((word(16), word(20)))
}

fn picture_measures_are_the_runners(runtime: &str) {
    let data = tempfile::tempdir().unwrap();
    let (run, _) = run_in(data.path(), runtime, PICTURE_LIES, &[]);
    assert_eq!(run.status(), "ok", "{}", run.json);
    let files = run.json["output_files"].as_array().unwrap();
    let file = |name: &str| {
        files
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("{name} collected: {}", run.json))
            .clone()
    };
    let real = file("real.png");
    let collected = std::fs::read(real["path"].as_str().unwrap()).unwrap();
    let picture = &real["picture"];
    match png_size(&collected) {
        // The swap can leave a copy half-written: no picture, and none claimed.
        None => assert!(picture.is_null(), "{runtime}: {}", run.json),
        Some(size) => {
            assert!(
                [(800, 600), (300, 200)].contains(&size),
                "{runtime}: {size:?}"
            );
            assert_eq!(
                (picture["width"].as_u64(), picture["height"].as_u64()),
                (Some(size.0), Some(size.1)),
                "{runtime}: the measure is of the bytes collected: {}",
                run.json
            );
            assert_eq!(picture["mime"], "image/png");
        }
    }
    assert!(
        file("fake.png")["picture"].is_null(),
        "{runtime}: {}",
        run.json
    );
    assert!(
        file("bomb.png")["picture"].is_null(),
        "{runtime}: {}",
        run.json
    );
}

#[test]
fn picture_measures_are_the_runners_not_the_codes_under_runc() {
    picture_measures_are_the_runners("runc");
}

/// Under gVisor nothing is measured in the run (forking the runner there takes longer than
/// the picture run it would save): every picture is left to the host's picture run.
#[test]
fn under_gvisor_pictures_are_left_to_the_picture_run() {
    let (run, _) = run("runsc", PICTURE_LIES, &[]);
    assert_eq!(run.status(), "ok", "{}", run.json);
    let files = run.json["output_files"].as_array().unwrap();
    assert_eq!(files.len(), 3, "{}", run.json);
    assert!(files.iter().all(|f| f["picture"].is_null()), "{}", run.json);
}

/// A session run whose code leaves the container's every process slot taken (the code's
/// processes are signalled, not reaped, once it saved its session): the measure of its
/// picture cannot start, and the run keeps its outputs and its state all the same.
const PIDS_TAKEN: &str = r#"
import os, time
from PIL import Image
Image.new("RGB", (64, 48), "red").save("/mnt/outputs/kept.png")
children = 0
while True:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    children += 1
x = 41
print("children", children)
"#;

#[test]
fn a_picture_that_cannot_be_measured_costs_only_its_measure() {
    let data = tempfile::tempdir().unwrap();
    let (run, _) = run_in(
        data.path(),
        "runc",
        PIDS_TAKEN,
        &["--user", "u", "--session", "s"],
    );
    assert_eq!(run.status(), "ok", "{}", run.json);
    assert!(run.stdout().contains("children"), "{}", run.json);
    assert_eq!(run.output_names(), ["kept.png"], "{}", run.json);
    let (next, _) = run_in(
        data.path(),
        "runc",
        "print(x + 1)",
        &["--user", "u", "--session", "s"],
    );
    assert_eq!(next.stdout(), "42\n", "the state was kept: {}", next.json);
}
