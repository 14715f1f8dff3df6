"""A session's phase reports, its report to the host, its snapshot file."""

import json
import os

import pytest

from codebox_runner import session_io
from codebox_runner.session_io import (
    Phase,
    SessionPhases,
    bounded_count,
    bounded_names,
    open_snapshot,
    session_report,
)

SESSION = {"restore": None, "save_to": "/mnt/state/snapshot", "max_bytes": 1 << 20}


def line(**message):
    return json.dumps(message).encode() + b"\n"


def phases_after(*messages, times=None):
    phases = SessionPhases()
    for i, message in enumerate(messages):
        phases.handle(message, (times or range(1, 100))[i])
    return phases


def test_reports_are_accepted_once_and_in_order():
    phases = phases_after(
        {"phase": "finished", "exit_code": 0},  # before restored: ignored
        {"phase": "saved", "kept": ["x"]},  # before finished: ignored
        {"phase": "restored", "restored": ["a"]},
        {"phase": "restored", "restored": ["forged"]},  # twice: ignored
        {"phase": "finished", "exit_code": 3},
        {"phase": "saved", "kept": ["x"], "kept_count": 1},
        {"phase": "saved", "kept": ["forged"]},
    )
    assert phases.restored_at == 3 and phases.restore["restored"] == ["a"]
    assert phases.finished_at == 5 and phases.finished_exit == 3
    assert phases.saved["kept"] == ["x"] and phases.saved["kept_count"] == 1
    assert phases.saved_whole()


def test_a_bad_exit_code_is_one():
    for code in (-1, 256, "0", None, 1.5):
        phases = phases_after({"phase": "restored"}, {"phase": "finished", "exit_code": code})
        assert phases.finished_exit == 1


def test_the_pipe_is_split_into_lines_and_garbage_is_skipped():
    phases = SessionPhases()
    data = b"not json\n[1]\n" + line(phase="restored", restored=["a"]) + line(phase="finish")
    phases.feed(data[:7])
    phases.feed(data[7:])
    assert phases.restore["restored"] == ["a"]
    assert phases.finished_at is None


def test_a_flood_without_newline_is_dropped():
    phases = SessionPhases()
    phases.feed(b"x" * (1 << 20))
    phases.feed(b"y")
    assert phases.buffer == b""
    phases.feed(line(phase="restored"))
    assert phases.restored_at is not None


def test_errors_are_bounded_and_a_save_error_is_no_whole_save():
    phases = phases_after(
        {"phase": "restored", "error": "e" * 1000},
        {"phase": "finished", "exit_code": 0},
        {"phase": "saved", "error": "disk full"},
    )
    assert phases.restore["error"] == "e" * 500
    assert not phases.saved_whole()


def test_names_are_bounded():
    items = ["n" * 150, {"name": "m" * 150, "reason": "r" * 300}, {"nameless": 1}, 7] + ["z"] * 300
    names = bounded_names(items)
    assert names[0] == "n" * 100
    assert names[1] == {"name": "m" * 100, "reason": "r" * 200}
    assert len(names) == 200 and names[2:] == ["z"] * 198
    assert bounded_names("not a list") == []
    assert bounded_names([{"name": "a"}]) == [{"name": "a", "reason": ""}]


@pytest.mark.parametrize("value, count", [(3, 3), (0, 0), (-1, 0), (1 << 40, 0), ("3", 0), (None, 0)])
def test_counts_are_bounded(value, count):
    assert bounded_count(value) == count


def report(phases, timed_out=False, oom=False, handed=0.0, ended=10.0, session=SESSION):
    return session_report(session, phases, handed, ended, timed_out, oom, 30.0)


def test_no_session_no_report():
    assert report(SessionPhases(), session=None) is None


def test_a_whole_run_reports_what_was_kept_and_the_phase_times():
    phases = phases_after(
        {"phase": "restored", "restored": ["a"], "not_restored": [{"name": "f", "reason": "file"}],
         "imported": ["pandas", {"name": "forged"}, "numpy"], "ahead_ms": 12.5},
        {"phase": "finished", "exit_code": 0},
        {"phase": "saved", "kept": ["a", "b"], "kept_count": 2,
         "not_kept": [{"name": "g", "reason": "generator"}], "not_kept_count": 1},
        times=[1.0, 7.5, 9.0],
    )
    assert report(phases) == {
        "restore_ms": 1000.0,
        "restored": ["a"],
        "not_restored": [{"name": "f", "reason": "file"}],
        "restore_imported": ["pandas", "numpy"],
        "restore_ahead_ms": 12.5,
        "restore_error": None,
        "save_ms": 2500.0,
        "saved": True,
        "kept": ["a", "b"],
        "kept_count": 2,
        "not_kept": [{"name": "g", "reason": "generator"}],
        "not_kept_count": 1,
        "save_error": None,
    }


def test_a_timeout_while_restoring():
    got = report(SessionPhases(), timed_out=True)
    assert got["restore_error"] == "restoring did not finish within the time limit of 30 s"
    assert got["save_error"] == "the code was stopped at its time limit"
    assert got["saved"] is False and got["restore_ms"] == 10000.0 and got["save_ms"] == 0.0


def test_a_timeout_while_saving():
    phases = phases_after({"phase": "restored"}, {"phase": "finished", "exit_code": 0})
    got = report(phases, timed_out=True)
    assert got["save_error"] == "saving did not finish within the time limit of 30 s"
    assert got["restore_error"] is None


def test_code_that_never_finished_or_never_saved():
    restored = phases_after({"phase": "restored"})
    assert report(restored)["save_error"] == "the code ended without finishing"
    finished = phases_after({"phase": "restored"}, {"phase": "finished", "exit_code": 0})
    assert report(finished)["save_error"] == "the save did not complete"
    assert report(finished, oom=True)["save_error"] == "out of memory while saving"


def test_forged_phase_times_stay_within_the_run():
    phases = phases_after({"phase": "restored"}, {"phase": "finished", "exit_code": 0},
                          times=[50.0, 60.0])
    got = report(phases, handed=0.0, ended=10.0)
    assert got["restore_ms"] == 10000.0 and got["save_ms"] == 0.0


def test_the_phase_names_are_the_pipes_words():
    assert [p.value for p in Phase] == ["restored", "finished", "saved"]


def test_the_child_side_writes_lines_the_runner_side_reads(tmp_path):
    read_fd, write_fd = os.pipe()
    try:
        session_io.restore_session({"restore": None}, {}, write_fd)
        session_io.tell_runner(write_fd, {"phase": "finished", "exit_code": 0})
        save_to = str(tmp_path / "snapshot")
        session_io.save_session({"save_to": save_to, "max_bytes": 1 << 20}, {"x": 41}, write_fd)
        os.close(write_fd)
        write_fd = None
        data = b""
        while True:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_fd)
        if write_fd is not None:
            os.close(write_fd)
    phases = SessionPhases()
    phases.feed(data)
    assert phases.restore == {
        "restored": [], "not_restored": [], "imported": [], "error": None, "ahead_ms": None,
    }
    assert phases.finished_exit == 0
    assert phases.saved_whole() and phases.saved["kept"] == ["x"]
    restored = {}
    result = __import__("codebox_session").restore(save_to, restored, lambda name: None)
    assert result["restored"] == ["x"] and restored["x"] == 41


def reported_by(step, session):
    """The one report `step` (restore_session or save_session) writes on its pipe."""
    read_fd, write_fd = os.pipe()
    try:
        step(session, {}, write_fd)
        os.close(write_fd)
        write_fd = None
        return json.loads(os.read(read_fd, 65536))
    finally:
        os.close(read_fd)
        if write_fd is not None:
            os.close(write_fd)


def test_a_failed_save_is_reported_as_its_exception(tmp_path):
    session = {"save_to": str(tmp_path / "no" / "dir"), "max_bytes": 10}
    message = reported_by(session_io.save_session, session)
    assert message["phase"] == "saved"
    assert message["error"].startswith("FileNotFoundError: ")


def test_an_unreadable_snapshot_is_a_restore_error(tmp_path):
    bad = tmp_path / "state"
    bad.write_bytes(b"not a snapshot")
    message = reported_by(session_io.restore_session, {"restore": str(bad)})
    assert message["phase"] == "restored"
    assert message["error"].startswith("the saved state could not be read (ValueError")


def test_the_snapshot_is_opened_only_if_it_is_a_small_regular_file(tmp_path):
    own = os.getuid()
    good = tmp_path / "snapshot"
    good.write_bytes(b"s" * 10)
    with open_snapshot(str(good), 10, code_uid=own) as f:
        assert f.read() == b"s" * 10
    assert open_snapshot(str(good), 9, code_uid=own) is None
    os.symlink(good, tmp_path / "link")
    assert open_snapshot(str(tmp_path / "link"), 100, code_uid=own) is None
    os.mkfifo(tmp_path / "fifo")
    assert open_snapshot(str(tmp_path / "fifo"), 100, code_uid=own) is None  # and no hang
    assert open_snapshot(str(tmp_path / "missing"), 100, code_uid=own) is None


def test_as_root_the_snapshot_must_be_the_codes():
    if os.getuid() != 0:
        pytest.skip("the owner is only checked when the runner is root")
    import tempfile

    with tempfile.NamedTemporaryFile() as f:
        f.write(b"x")
        f.flush()
        assert open_snapshot(f.name, 10, code_uid=10001) is None
        os.chown(f.name, 10001, 10001)
        assert open_snapshot(f.name, 10, code_uid=10001) is not None


def test_a_name_over_the_snapshot_cap_names_the_setting(tmp_path):
    import codebox_session

    big = "x" * (3 << 20)
    report = codebox_session.save({"big": big, "small": 1}, str(tmp_path / "s"), 2 << 20)
    assert report["kept"] == ["small"]
    assert report["not_kept"] == [
        {"name": "big", "reason": "the session's snapshot is full (SESSION_STATE_MAX_MB=2)"}
    ]


def test_the_process_state_of_a_notebook_carries_over(tmp_path):
    import random

    import codebox_session

    random.seed(7)
    expected = random.random()
    random.seed(7)
    here = os.getcwd()
    sub = tmp_path / "sub"
    sub.mkdir()
    os.chdir(sub)
    try:
        report = codebox_session.save({"x": 1}, str(tmp_path / "s"), 1 << 20)
        assert report["kept"] == ["x"], "the process record is not a variable"
        random.seed(99)
        os.chdir(here)
        globals_ = {}
        restored = codebox_session.restore(str(tmp_path / "s"), globals_, lambda top: None)
        assert restored["error"] is None and restored["restored"] == ["x"]
        assert random.random() == expected, "the RNG goes on where it was"
        assert os.getcwd() == str(sub)
    finally:
        os.chdir(here)


def test_two_names_for_one_object_stay_one_object(tmp_path):
    import codebox_session

    shared = [1, 2]
    globals_ = {"a": shared, "b": shared, "holder": {"items": shared}, "n": 5, "m": 5}
    report = codebox_session.save(globals_, str(tmp_path / "s"), 1 << 20)
    assert report["kept"] == ["a", "b", "holder", "n", "m"]
    back = {}
    restored = codebox_session.restore(str(tmp_path / "s"), back, lambda top: None)
    assert restored["error"] is None and restored["not_restored"] == []
    back["a"].append(3)
    assert back["b"] == [1, 2, 3] and back["holder"]["items"] is back["a"]


def test_a_value_sharing_an_object_that_failed_to_come_back_fails_alone(tmp_path):
    import codebox_session

    shared = {"k": 1}
    codebox_session.save(
        {"first": shared, "second": [shared], "alone": 3}, str(tmp_path / "s"), 1 << 20
    )
    # Corrupt the first record's pickle: the one that refers to it cannot come back either,
    # the independent one does.
    data = bytearray((tmp_path / "s").read_bytes())
    at = data.index(b"first") + len("first")
    data[at] = ord("X")
    (tmp_path / "s").write_bytes(bytes(data))
    back = {}
    restored = codebox_session.restore(str(tmp_path / "s"), back, lambda top: None)
    assert restored["restored"] == ["alone"]
    assert [entry["name"] for entry in restored["not_restored"]] == ["first", "second"]
    assert "shares an object with 'first'" in restored["not_restored"][1]["reason"]


def test_functions_and_methods_the_code_defined_see_the_notebooks_globals(tmp_path):
    import codebox_session

    source = (
        "def lookup(name):\n    return eval(name)\n"
        "class Shown:\n    def __init__(self, name): self.name = name\n"
        "    def __repr__(self): return repr(eval(self.name))\n"
        "    @staticmethod\n    def later(): return LATER\n"
    )
    globals_ = {"__name__": "__main__"}
    exec(source, globals_)
    globals_["value"] = 41
    codebox_session.save(globals_, str(tmp_path / "s"), 1 << 20)
    back = {"__name__": "__main__"}
    codebox_session.restore(str(tmp_path / "s"), back, lambda top: None)
    back["LATER"] = "defined after the save"
    assert back["lookup"]("value") == 41
    assert repr(back["Shown"]("value")) == "41"
    assert back["Shown"].later() == "defined after the save"


def test_a_reported_ahead_time_is_believed_only_when_plausible():
    from codebox_runner.session_io import bounded_ms

    assert bounded_ms(12.5) == 12.5 and bounded_ms(0) == 0.0
    for forged in (-1, float("nan"), float("inf"), 1e12, True, "5", None, [1]):
        assert bounded_ms(forged) is None, forged
