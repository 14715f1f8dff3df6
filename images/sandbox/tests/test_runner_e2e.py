"""The whole runner as a subprocess: one job in, the authenticated stream out.

It runs as PID 1 of a PID namespace of its own (runner_process), as in a container, and
as root its code's process drops to the code's uid; the image's data stack is not needed.
"""

import io
import json
import os
import tarfile
import time

import pytest

import runner_process as rp

pytestmark = pytest.mark.skipif(
    not (rp.namespace_prefix() and rp.runner_python()),
    reason="needs a PID namespace (unshare) and a Python the code's uid can use",
)


@pytest.fixture
def scratch():
    scratch = rp.Scratch()
    yield scratch
    scratch.cleanup()


@pytest.fixture
def dirs(scratch):
    return scratch.dir("work"), scratch.dir("outputs")


def run(dirs, code, **extra):
    answer = extra.pop("answer", None)
    workdir, output_dir = dirs
    return rp.run(rp.job_for(code, workdir, output_dir, **extra), answer=answer)


def members(payload):
    with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_a_run_is_ready_started_result_outputs_done_all_authenticated(dirs):
    workdir, output_dir = dirs
    code = (
        "print('hello')\n"
        "open(%r + '/table.csv', 'w').write('a,b\\n1,2\\n')\n"
        "{'answer': 42}" % output_dir
    )
    t = run(dirs, code)
    assert t.ready == {"event": "ready", "protocol": 9}
    assert t.events() == ["started", "result", "outputs", "done"]  # each MAC checked by rp
    result = t.result
    assert result["status"] == "ok" and result["exit_code"] == 0 and result["error"] is None
    assert result["stdout"] == "hello\n{'answer': 42}\n"
    assert result["stderr"] == "" and result["session"] is None
    assert result["stdout_chars"] == 21 and result["stdout_truncated"] is False
    assert result["execution_ms"] > 0
    assert list(result) == [
        "event", "status", "exit_code", "stdout", "stderr", "stdout_truncated",
        "stderr_truncated", "stdout_chars", "stderr_chars", "execution_ms", "cpu_ms", "error",
        "session",
    ]
    assert members(t.blobs["outputs"]) == {"table.csv": b"a,b\n1,2\n"}
    assert t.one("outputs")["flags"] == []
    assert t.returncode == 0 and t.rest == b""


def test_the_code_runs_as_the_code_uid_not_the_runners(dirs):
    t = run(dirs, "import os\nprint(os.getuid(), os.getgid(), os.getgroups())")
    if os.geteuid() == 0:
        assert t.result["stdout"] == "%d 10001 []\n" % rp.CODE_UID
    else:
        assert t.result["status"] == "ok"


def test_an_exception_is_reported_with_the_users_traceback_only(dirs):
    t = run(dirs, "print('before')\ndef f(x):\n    return 1 / x\nf(0)\n")
    result = t.result
    assert result["status"] == "error" and result["exit_code"] == 1
    assert result["error"] == {"type": "ZeroDivisionError", "message": "division by zero"}
    assert result["stdout"] == "before\n"
    stderr = result["stderr"]
    assert stderr.startswith("Traceback (most recent call last):\n  File \"<code>\", line 4")
    assert "line 3, in f" in stderr and "return 1 / x" in stderr
    assert "codebox_runner" not in stderr and "runner.py" not in stderr


def test_a_crafted_exception_name_is_reported_as_exception(dirs):
    t = run(dirs, "class E(Exception): pass\nE.__qualname__ = 'X\\n# Heading'\nraise E('boom')")
    assert t.result["error"] == {"type": "Exception", "message": "boom"}


def test_sys_exit_codes(dirs):
    t = run(dirs, "import sys; sys.exit(3)")
    assert (t.result["status"], t.result["exit_code"]) == ("error", 3)
    assert t.result["error"] == {"type": "SystemExit", "message": "exit code 3"}


def test_the_time_limit_holds_and_says_so(dirs):
    started = time.monotonic()
    t = run(dirs, "import time\nprint('start', flush=True)\nwhile True: time.sleep(0.01)",
            timeout_s=1.0)
    assert time.monotonic() - started < 8
    result = t.result
    assert result["status"] == "timeout" and result["exit_code"] is None
    assert result["error"] == {
        "type": "TimeoutError",
        "message": "execution exceeded the time limit of 1 s and was stopped",
    }
    assert result["stdout"] == "start\n"
    assert 1000 <= result["execution_ms"] < 3000


def test_a_signal_ending_the_code_is_named(dirs):
    t = run(dirs, "import os, signal; os.kill(os.getpid(), signal.SIGTERM)")
    assert t.result["status"] == "killed" and t.result["exit_code"] == -15
    assert t.result["error"] == {"type": "Killed", "message": "the code was killed by signal SIGTERM"}


def test_what_the_code_left_running_is_killed_and_does_not_hold_the_run(dirs):
    started = time.monotonic()
    t = run(dirs, "import subprocess\nsubprocess.Popen(['sleep', '60'])\nprint('left it')")
    assert t.result["status"] == "ok" and t.result["stdout"] == "left it\n"
    assert time.monotonic() - started < 10


def test_output_over_the_cap_is_truncated_and_counted(dirs):
    t = run(dirs, "print('x' * 50000, end='')", max_output_chars=100)
    result = t.result
    assert result["stdout_truncated"] is True and result["stdout_chars"] == 50000
    assert result["stdout"] == "x" * 50 + "\n[... 49900 characters truncated ...]\n" + "x" * 50


def test_output_files_are_capped_and_flagged(dirs):
    _, output_dir = dirs
    code = (
        "import os\n"
        "for i in range(4): open(%r + '/f%%d' %% i, 'w').write('y')\n"
        "os.symlink('/etc/passwd', %r + '/link')\n" % (output_dir, output_dir)
    )
    t = run(dirs, code, max_output_files=2)
    assert members(t.blobs["outputs"]) == {"f0": b"y", "f1": b"y"}
    assert t.one("outputs")["flags"] == [
        {"flag": "too_many_files", "name": "f2"},
        {"flag": "too_many_files", "name": "f3"},
        {"flag": "skipped_symlink", "name": "link"},
    ]


def test_live_output_is_relayed_while_the_code_runs(dirs):
    code = "import time\nfor i in range(3):\n    print('tick', i, flush=True); time.sleep(0.3)"
    t = run(dirs, code, live={"max_event_chars": 100, "max_total_chars": 1000, "interval_ms": 50})
    outputs = [m for _, _, m in t.lines if m["event"] == "output"]
    assert "".join(m["text"] for m in outputs) == "tick 0\ntick 1\ntick 2\n"
    assert all(m["stream"] == "stdout" and m["skipped"] == 0 for m in outputs)
    assert len(outputs) == 3  # one per tick: they came while it ran
    events = t.events()
    assert events.index("result") > max(i for i, e in enumerate(events) if e == "output")
    assert t.result["stdout"] == "tick 0\ntick 1\ntick 2\n"


def test_no_live_output_without_live(dirs):
    t = run(dirs, "print('quiet')")
    assert "output" not in t.events()


def test_a_missing_package_stops_the_code_asks_the_host_and_fails_with_its_words(dirs):
    asked = []

    def answer(modules):
        asked.append(modules)
        time.sleep(1.5)  # the host's time is not the code's
        return {"site_dirs": [], "error": "not on the allow list"}

    t = run(dirs, "import zz_codebox_missing\n", scan_imports=True, answer=answer, timeout_s=1.0)
    assert asked == [["zz_codebox_missing"]]
    assert t.events() == ["started", "missing", "result", "outputs", "done"]
    result = t.result
    assert result["status"] == "error"
    assert result["error"] == {
        "type": "ModuleNotFoundError",
        "message": "No module named 'zz_codebox_missing' (not on the allow list)",
    }
    assert result["execution_ms"] < 1000


def test_without_scan_imports_nothing_is_asked(dirs):
    t = run(dirs, "import zz_codebox_missing\n")
    assert "missing" not in t.events()
    assert t.result["error"]["message"] == "No module named 'zz_codebox_missing'"


def test_a_session_saves_its_variables_and_the_next_run_restores_them(scratch):
    state_dir = scratch.dir("state")
    inputs = scratch.dir("inputs", 0o755)
    first = run(
        (scratch.dir("w1"), scratch.dir("o1")),
        "x = 41\nnames = ['a', 'b']\nf = open('/dev/null')",
        session={"restore": None, "save_to": state_dir + "/snapshot", "max_bytes": 1 << 20},
    )
    assert first.events() == ["started", "result", "outputs", "state", "done"]
    report = first.result["session"]
    assert report["saved"] is True and report["save_error"] is None
    assert sorted(report["kept"]) == ["names", "x"] and report["kept_count"] == 2
    assert report["not_kept"] == [{"name": "f", "reason": "file"}]
    snapshot = first.blobs["state"]
    assert snapshot.startswith(b"CODEBOX-STATE")
    restore = os.path.join(inputs, ".codebox-state")
    with open(restore, "wb") as f:
        f.write(snapshot)
    os.chmod(restore, 0o644)
    second = run(
        (scratch.dir("w2"), scratch.dir("o2")),
        "print(x + 1, names)",
        session={"restore": restore, "save_to": state_dir + "/snapshot", "max_bytes": 1 << 20},
    )
    assert second.result["stdout"] == "42 ['a', 'b']\n"
    assert sorted(second.result["session"]["restored"]) == ["names", "x"]
    assert second.result["session"]["restore_error"] is None


def test_a_session_run_that_times_out_sends_no_state(scratch):
    t = run(
        (scratch.dir("w"), scratch.dir("o")),
        "while True: pass",
        timeout_s=1.0,
        session={"restore": None, "save_to": scratch.dir("state") + "/snapshot", "max_bytes": 1 << 20},
    )
    assert t.events() == ["started", "result", "outputs", "done"]
    assert t.result["session"]["save_error"] == "the code was stopped at its time limit"
    assert t.result["error"]["message"] == "execution exceeded the time limit of 1 s and was stopped"


def forging(*phases):
    """Code that writes these phase reports on every descriptor it may hold (the phase
    pipe among them), then keeps running."""
    return (
        "import os, json, time\n"
        "print('before', flush=True)\n"
        "for phase in %r:\n"
        "    for fd in range(3, 64):\n"
        "        try: os.write(fd, json.dumps(phase).encode() + b'\\n')\n"
        "        except OSError: pass\n"
        "while True: time.sleep(0.01)\n"
    ) % (phases,)


def run_in_session(scratch, code, timeout_s):
    return run(
        (scratch.dir("w"), scratch.dir("o")),
        code,
        timeout_s=timeout_s,
        session={"restore": None, "save_to": scratch.dir("state") + "/snapshot", "max_bytes": 1 << 20},
    )


def test_a_forged_finish_buys_no_time(scratch):
    started = time.monotonic()
    t = run_in_session(scratch, forging({"phase": "finished", "exit_code": 0}), 1.0)
    assert t.result["status"] == "timeout"
    assert time.monotonic() - started < 8


def test_a_session_run_ends_with_its_output_exit_code_and_error_and_leaves_nothing_running(scratch):
    # The code's process is not waited for once it says it saved (where the cgroup counts
    # CPU): what it printed, its exit code and its exception must all still be there, and a
    # process it started must not hold the run.
    code = (
        "import subprocess, sys\n"
        "subprocess.Popen(['sleep', '30'])\n"
        "print('out ' * 50000)\n"
        "print('err', file=sys.stderr)\n"
        "raise ValueError('bad value')\n"
    )
    started = time.monotonic()
    t = run(
        (scratch.dir("w"), scratch.dir("o")),
        code,
        session={"restore": None, "save_to": scratch.dir("state") + "/snapshot", "max_bytes": 1 << 20},
    )
    assert time.monotonic() - started < 8
    assert t.events() == ["started", "result", "outputs", "state", "done"]
    assert t.result["stdout_chars"] == 200001 and t.result["stdout_truncated"] is True
    assert t.result["stderr"].startswith("err\nTraceback")
    assert t.result["exit_code"] == 1 and t.result["status"] == "error"
    assert t.result["error"] == {"type": "ValueError", "message": "bad value"}
    assert t.result["session"]["saved"] is True
    exited = run(
        (scratch.dir("w2"), scratch.dir("o2")),
        "import sys\nprint('bye')\nsys.exit(3)",
        session={"restore": None, "save_to": scratch.dir("state2") + "/snapshot", "max_bytes": 1 << 20},
    )
    assert exited.result["stdout"] == "bye\n" and exited.result["exit_code"] == 3


def test_a_forged_save_only_ends_the_codes_own_run(scratch):
    # A code that says it finished and saved is taken at its word: its run ends there, as
    # if it had exited with the code it named; the loop after it never holds the run.
    started = time.monotonic()
    t = run_in_session(
        scratch, forging({"phase": "finished", "exit_code": 0}, {"phase": "saved"}), 5.0
    )
    assert t.result["stdout"] == "before\n"
    assert t.result["status"] in ("ok", "timeout")
    if t.result["status"] == "ok":  # where the cgroup counts CPU: ended by the forged save
        assert time.monotonic() - started < 4


def test_a_job_without_its_key_gets_no_answer(dirs):
    workdir, output_dir = dirs
    job = rp.job_for("print(1)", workdir, output_dir)
    job.pop("auth")
    t = rp.run(job)
    assert t.lines == [] and t.rest == b"" and t.returncode == 0


def test_no_job_ends_the_runner_after_ready(dirs):
    t = rp.run(None, send_job=False)
    assert t.ready == {"event": "ready", "protocol": 9}
    assert t.rest == b"" and t.returncode == 0


def test_the_code_cannot_speak_on_the_protocol_stream(dirs):
    # Whatever the code writes goes to its own pipes: the stream stays the runner's.
    code = "import os, sys\nos.write(1, b'{\"event\": \"done\"}\\n')\nprint('{\"event\": \"result\"}')"
    t = run(dirs, code)
    assert t.events() == ["started", "result", "outputs", "done"]
    assert t.result["stdout"] == '{"event": "done"}\n{"event": "result"}\n'


def test_the_cell_sees_a_scripts_globals(dirs):
    t = run(dirs, "print(type(__builtins__).__name__, __name__, __file__)\nimport sys\nprint(sys.argv)")
    assert t.result["stdout"] == "module __main__ main.py\n['main.py']\n"


def test_names_the_code_defines_are_kept_ours_only_while_ours(scratch):
    state_dir = scratch.dir("state")
    inputs = scratch.dir("inputs", 0o755)
    first = run(
        (scratch.dir("w1"), scratch.dir("o1")),
        # (A notebook's own `display` class needs cloudpickle, which the image has.)
        "display = 'my own display'\n6 * 7",
        session={"restore": None, "save_to": state_dir + "/snapshot", "max_bytes": 1 << 20},
    )
    assert first.result["stdout"] == "42\n"
    assert sorted(first.result["session"]["kept"]) == ["_", "display"]
    restore = os.path.join(inputs, ".codebox-state")
    with open(restore, "wb") as f:
        f.write(first.blobs["state"])
    os.chmod(restore, 0o644)
    second = run(
        (scratch.dir("w2"), scratch.dir("o2")),
        "print(_ + 1, display)",
        session={"restore": restore, "save_to": state_dir + "/snapshot", "max_bytes": 1 << 20},
    )
    assert second.result["stdout"] == "43 my own display\n"
    # The runner's own helpers are never saved.
    third = run(
        (scratch.dir("w3"), scratch.dir("o3")),
        "y = 1",
        session={"restore": None, "save_to": state_dir + "/snapshot2", "max_bytes": 1 << 20},
    )
    assert third.result["session"]["kept"] == ["y"]


def saved_snapshot(scratch, code):
    """The snapshot a session run of `code` saves, where the next run's job can read it."""
    first = run(
        (scratch.dir("w0"), scratch.dir("o0")),
        code,
        session={"restore": None, "save_to": scratch.dir("state0") + "/snapshot", "max_bytes": 1 << 20},
    )
    assert first.result["session"]["saved"] is True, first.result
    inputs = scratch.dir("inputs", 0o755)
    restore = os.path.join(inputs, ".codebox-state")
    with open(restore, "wb") as f:
        f.write(first.blobs["state"])
    os.chmod(restore, 0o644)
    return restore


def run_prepared(scratch, restore, code, pause_s=0.5):
    """A session run whose snapshot the runner was asked to restore `pause_s` before the
    job came, as the host does for a container it holds for a conversation."""
    workdir = scratch.dir("w1")
    prepare = b"prepare " + json.dumps({"restore": restore, "workdir": workdir}).encode() + b"\n"
    return rp.run(
        rp.job_for(
            code,
            workdir,
            scratch.dir("o1"),
            session={"restore": restore, "save_to": scratch.dir("state1") + "/snapshot", "max_bytes": 1 << 20},
        ),
        before=prepare,
        pause_s=pause_s,
    )


def test_a_session_restored_ahead_runs_with_its_variables_and_says_so(scratch):
    restore = saved_snapshot(scratch, "x = 41\nimport random\nrandom.seed(7)\nimport os\nos.makedirs('sub', exist_ok=True)\nos.chdir('sub')")
    # The restore takes its time ahead: a value that is slow to unpickle.
    t = run_prepared(scratch, restore, "import os, random\nprint(x + 1, os.path.basename(os.getcwd()), random.random() < 1)", pause_s=0.5)
    assert t.events() == ["started", "result", "outputs", "state", "done"]
    assert t.result["stdout"] == "42 sub True\n", t.result
    session = t.result["session"]
    assert sorted(session["restored"]) == ["os", "random", "x"] and session["restore_error"] is None
    assert isinstance(session["restore_ahead_ms"], float) and session["restore_ahead_ms"] > 0
    assert session["saved"] is True and "x" in session["kept"]


def test_a_session_restored_with_its_job_reports_no_ahead_time(scratch):
    restore = saved_snapshot(scratch, "x = 41")
    t = run(
        (scratch.dir("w1"), scratch.dir("o1")),
        "print(x + 1)",
        session={"restore": restore, "save_to": scratch.dir("state1") + "/snapshot", "max_bytes": 1 << 20},
    )
    assert t.result["stdout"] == "42\n"
    assert t.result["session"]["restore_ahead_ms"] is None


def test_what_a_restore_ahead_runs_writes_to_the_codes_stdout_never_the_runners(scratch):
    # A value whose unpickling writes to fd 1 and 2: before the job the code's process
    # already holds its own pipes there, so this is the run's output, not a protocol line.
    restore = saved_snapshot(
        scratch,
        "import os\n"
        "class Loud:\n"
        "    def __reduce__(self):\n"
        "        return (os.write, (1, b'{\"event\": \"done\"}\\n'))\n"
        "loud = Loud()\n",
    )
    t = run_prepared(scratch, restore, "print('code')")
    assert t.events() == ["started", "result", "outputs", "state", "done"]
    assert t.result["stdout"] == '{"event": "done"}\ncode\n', t.result


def test_a_restore_ahead_that_never_ends_is_still_bounded_by_the_runs_time(scratch):
    restore = saved_snapshot(
        scratch,
        "import time\n"
        "class Slow:\n"
        "    def __reduce__(self):\n"
        "        return (time.sleep, (3600,))\n"
        "slow = Slow()\n",
    )
    workdir = scratch.dir("w1")
    prepare = b"prepare " + json.dumps({"restore": restore, "workdir": workdir}).encode() + b"\n"
    started = time.monotonic()
    t = rp.run(
        rp.job_for(
            "print('never')",
            workdir,
            scratch.dir("o1"),
            timeout_s=1.0,
            session={"restore": restore, "save_to": scratch.dir("state1") + "/snapshot", "max_bytes": 1 << 20},
        ),
        before=prepare,
        pause_s=0.2,
    )
    assert time.monotonic() - started < 20
    assert t.result["status"] == "timeout", t.result
    assert "never" not in t.result["stdout"]


def test_a_snapshot_needing_a_module_the_image_lacks_restores_with_its_job(scratch):
    restore = saved_snapshot(scratch, "x = 41")
    with open(restore, "rb") as f:
        data = f.read()
    magic = data[: data.index(b"\n") + 1]  # CODEBOX-STATE, its version, a newline
    rest = data[len(magic):]
    # Rewrite the header: one import no one has.
    import struct

    (length,) = struct.unpack(">I", rest[:4])
    header = json.loads(rest[4 : 4 + length])
    header["imports"] = list(header.get("imports", [])) + ["codebox_no_such_module"]
    body = json.dumps(header).encode()
    with open(restore, "wb") as f:
        f.write(magic + struct.pack(">I", len(body)) + body + rest[4 + length :])
    t = run_prepared(scratch, restore, "print(x + 1)")
    assert t.result["stdout"] == "42\n", t.result
    assert t.result["session"]["restore_ahead_ms"] is None
