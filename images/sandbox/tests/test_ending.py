"""How a run ended, from synthetic wait statuses: no process needed."""

import json
import os
import signal

import pytest

from codebox_runner.ending import ending, reported_error, timeout_message
from codebox_runner.protocol import Status
from codebox_runner.session_io import SessionPhases


def exited(code):
    return code << 8


def killed(sig):
    return int(sig)


def test_the_synthetic_statuses_mean_what_they_say():
    assert os.WIFEXITED(exited(3)) and os.WEXITSTATUS(exited(3)) == 3
    assert os.WIFSIGNALED(killed(signal.SIGKILL)) and os.WTERMSIG(killed(9)) == 9


def end(status=None, timed_out=False, oom=False, reported=None):
    return ending(status, timed_out, oom, reported, "TIMEOUT TEXT", 512)


def test_exit_zero_is_ok_without_error():
    assert end(exited(0)) == (Status.OK, 0, None)


def test_a_nonzero_exit_without_report_is_a_system_exit():
    assert end(exited(3)) == (
        Status.ERROR, 3, {"type": "SystemExit", "message": "exit code 3"}
    )


def test_the_codes_report_names_its_exception():
    report = {"type": "ValueError", "message": "bad"}
    assert end(exited(1), reported=report) == (Status.ERROR, 1, report)


def test_a_kill_is_oom_only_when_the_cgroup_counted_one():
    assert end(killed(signal.SIGKILL), oom=True) == (
        Status.OOM, -9,
        {"type": "MemoryError", "message": "the code ran out of memory (limit 512 MB) and was killed"},
    )
    assert end(killed(signal.SIGKILL)) == (
        Status.KILLED, -9, {"type": "Killed", "message": "the code was killed by signal SIGKILL"},
    )
    assert end(killed(signal.SIGSEGV), oom=True) == (
        Status.KILLED, -11, {"type": "Killed", "message": "the code was killed by signal SIGSEGV"},
    )


def test_a_timeout_wins_over_everything():
    assert end(None, timed_out=True) == (
        Status.TIMEOUT, None, {"type": "TimeoutError", "message": "TIMEOUT TEXT"}
    )


def report_bytes(**message):
    return json.dumps(message).encode()


def test_the_report_is_believed_only_after_exit_one():
    report = report_bytes(type="KeyError", message="'k'")
    assert reported_error(report, exited(1)) == {"type": "KeyError", "message": "'k'"}
    assert reported_error(report, exited(0)) is None
    assert reported_error(report, exited(2)) is None
    assert reported_error(report, killed(9)) is None
    assert reported_error(report, None) is None
    assert reported_error(b"", exited(1)) is None


@pytest.mark.parametrize(
    "report",
    [b"{not json", b'"a string"', report_bytes(type=3, message="m"), report_bytes(type="T")],
)
def test_a_malformed_report_is_no_error(report):
    assert reported_error(report, exited(1)) is None


def test_the_report_is_bounded():
    got = reported_error(report_bytes(type="T" * 300, message="m" * 3000), exited(1))
    assert got == {"type": "T" * 200, "message": "m" * 2000}


def test_timeout_messages_say_what_the_run_was_doing():
    assert timeout_message(None, SessionPhases(), 30.0) == (
        "execution exceeded the time limit of 30 s and was stopped"
    )
    assert timeout_message(None, SessionPhases(), 2.5) == (
        "execution exceeded the time limit of 2.5 s and was stopped"
    )
    session = {"save_to": "/mnt/state/snapshot"}
    restoring = SessionPhases()
    assert timeout_message(session, restoring, 30.0) == (
        "the time limit of 30 s ran out while the session's variables were being restored, "
        "and the run was stopped"
    )
    running = SessionPhases()
    running.handle({"phase": "restored"}, 1.0)
    assert timeout_message(session, running, 30.0) == (
        "execution exceeded the time limit of 30 s and was stopped"
    )
    running.handle({"phase": "finished", "exit_code": 0}, 2.0)
    assert timeout_message(session, running, 30.0) == (
        "the time limit of 30 s ran out while the session's variables were being saved "
        "(the output is kept, the variables are not), and the run was stopped"
    )


def test_a_realtime_signal_without_a_name_is_reported_by_number():
    assert end(killed(40)) == (
        Status.KILLED, -40, {"type": "Killed", "message": "the code was killed by signal 40"},
    )
