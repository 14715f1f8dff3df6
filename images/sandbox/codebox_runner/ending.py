"""How a run ended, in the words of `result`: its status, exit code and error, from what
the runner saw itself (the exit status, its own clock, the cgroup's OOM counter) and from
the code's report, which is believed only for an exit it can explain."""

import json
import os
import signal

from .constants import MAX_EXCEPTION_MESSAGE_CHARS, MAX_EXCEPTION_NAME_CHARS
from .protocol import Status

# The words of the endings the host words the same way when the runner cannot
# (src/sandbox/ending.rs): a timeout the runner did not report, and an OOM kill.
TIMEOUT_TEXT = "execution exceeded the time limit of %g s and was stopped"
OOM_TEXT = "the code ran out of memory (limit %s MB) and was killed"
KILLED_TEXT = "the code was killed by signal %s"


def timeout_message(session, phases, timeout_s):
    """What the run was doing, by its own account, when its limit ran out."""
    if session and phases.restored_at is None:
        doing = "while the session's variables were being restored"
    elif session and phases.finished_at is not None:
        doing = "while the session's variables were being saved (the output is kept, the variables are not)"
    else:
        return TIMEOUT_TEXT % timeout_s
    return "the time limit of %g s ran out %s, and the run was stopped" % (timeout_s, doing)


def oom_message(memory_mb):
    return OOM_TEXT % memory_mb


def killed_message(sig):
    try:
        name = signal.Signals(sig).name
    except ValueError:
        # Realtime signals between SIGRTMIN and SIGRTMAX have no name of their own; a code
        # that dies of one still gets its result.
        name = str(sig)
    return KILLED_TEXT % name


def reported_error(report, exit_status):
    """The code's own report of its exception (bytes from its report pipe), bounded; None
    unless the code's process exited 1, as it does after an uncaught exception, so the
    report can only describe a failure that really happened."""
    if not (
        report
        and exit_status is not None
        and os.WIFEXITED(exit_status)
        and os.WEXITSTATUS(exit_status) == 1
    ):
        return None
    try:
        parsed = json.loads(report.decode("utf-8", "replace"))
    except ValueError:
        return None
    if (
        isinstance(parsed, dict)
        and isinstance(parsed.get("type"), str)
        and isinstance(parsed.get("message"), str)
    ):
        return {
            "type": parsed["type"][:MAX_EXCEPTION_NAME_CHARS],
            "message": parsed["message"][:MAX_EXCEPTION_MESSAGE_CHARS],
        }
    return None


def ending(exit_status, timed_out, out_of_memory, reported, timeout_text, memory_mb):
    """Pure: (status, exit_code, error) of a run. `exit_status` is the code's process's
    wait status (unused when it timed out), `reported` its own report (reported_error),
    `timeout_text` what to say when it timed out."""
    if timed_out:
        return Status.TIMEOUT, None, {"type": "TimeoutError", "message": timeout_text}
    if os.WIFSIGNALED(exit_status):
        sig = os.WTERMSIG(exit_status)
        if sig == signal.SIGKILL and out_of_memory:
            return Status.OOM, -sig, {"type": "MemoryError", "message": oom_message(memory_mb)}
        return Status.KILLED, -sig, {"type": "Killed", "message": killed_message(sig)}
    exit_code = os.WEXITSTATUS(exit_status)
    if exit_code == 0:
        return Status.OK, exit_code, reported
    if reported is None:
        reported = {"type": "SystemExit", "message": "exit code %d" % exit_code}
    return Status.ERROR, exit_code, reported
