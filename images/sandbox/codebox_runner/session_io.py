"""A job's notebook session, both ends of its phase pipe.

A job with a `session` runs as a notebook cell that remembers: the code's process restores
the session's snapshot before the code and saves the top-level variables after it, and
reports each step on a pipe of its own (SessionPhases). The snapshot is unpickled only by
the code's process. That pipe is the code's too, so nothing on it moves a clock: the time
limit covers restoring, the code and saving alike, measured by the runner from the
hand-over to the process's exit (unpickling and pickling run the code's own classes
anyway).
"""

import enum
import json
import os
import stat
import time

from .constants import (
    MAX_AHEAD_MS,
    MAX_LISTED_NAME_CHARS,
    MAX_LISTED_NAMES,
    MAX_LISTED_REASON_CHARS,
    MAX_PHASE_ERROR_CHARS,
    MAX_PHASE_REPORT_BYTES,
    MAX_REPORTED_COUNT,
    MAX_SAVE_ERROR_CHARS,
)
from .packages import CODE_FILENAME
from .privileges import CODE_UID


class Phase(enum.Enum):
    """The code's process's reports on its phase pipe, in the only order accepted."""

    RESTORED = "restored"
    FINISHED = "finished"
    SAVED = "saved"


# The code's process's side.


def tell_runner(fd, message):
    data = json.dumps(message).encode() + b"\n"
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        pass


def import_like_the_code(name):
    """An import as if the code wrote it, so a package the host installed for an earlier
    run of the session is asked for again (and found in the cache) before values that need
    it are unpickled."""
    try:
        exec(compile("import %s" % name, CODE_FILENAME, "exec"), {})
    except BaseException:
        pass


def restore_session(session, globals_, phase_w, ahead_since=None):
    """Restores the snapshot and reports it; `ahead_since`: the restore was done before the
    job arrived, from that moment on (its duration is reported, off the run's time)."""
    report = {"restored": [], "not_restored": [], "error": None}
    path = session.get("restore")
    if path:
        try:
            import codebox_session

            report = codebox_session.restore(path, globals_, import_like_the_code)
            report["imported"] = list(codebox_session.last_restore_imports)
        except BaseException as exc:
            report["error"] = "the saved state could not be restored (%s)" % type(exc).__name__
    if ahead_since is not None:
        report["ahead_ms"] = round((time.monotonic() - ahead_since) * 1000.0, 3)
    tell_runner(phase_w, dict(report, phase=Phase.RESTORED.value))


def save_session(session, globals_, phase_w):
    try:
        import codebox_session

        report = codebox_session.save(
            globals_, session["save_to"], int(session["max_bytes"])
        )
        report["phase"] = Phase.SAVED.value
    except BaseException as exc:
        report = {
            "phase": Phase.SAVED.value,
            "error": "%s: %s" % (type(exc).__name__, str(exc)[:MAX_SAVE_ERROR_CHARS]),
        }
    tell_runner(phase_w, report)


# The runner's side.


def bounded_names(items, limit=MAX_LISTED_NAMES):
    """Pure: the names of a report (strings, or {name, reason}), each cut to its bound, at
    most `limit` of them; anything else in the list is left out."""
    names = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str):
            names.append(item[:MAX_LISTED_NAME_CHARS])
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            names.append({
                "name": item["name"][:MAX_LISTED_NAME_CHARS],
                "reason": str(item.get("reason", ""))[:MAX_LISTED_REASON_CHARS],
            })
        if len(names) >= limit:
            break
    return names


def bounded_ms(value):
    """Pure: a reported duration, or None for anything that is not a plausible one."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= MAX_AHEAD_MS:
        return float(value)
    return None


def bounded_count(value):
    """Pure: a reported count, or 0 for anything that is not a plausible one."""
    return value if isinstance(value, int) and 0 <= value < MAX_REPORTED_COUNT else 0


class SessionPhases:
    """The code's process's reports on the session's state: restored, finished, saved.

    The pipe belongs to the code, so each report is accepted once and in order, bounded,
    and believed only for what it can change: which names were kept, and how a timeout is
    worded. A forged `finished` buys no time: the clock is the runner's own."""

    def __init__(self):
        self.buffer = b""
        self.restored_at = None
        self.restore = None
        self.finished_at = None
        self.finished_exit = 0
        self.saved = None

    def feed(self, data):
        self.buffer += data
        if len(self.buffer) > MAX_PHASE_REPORT_BYTES:
            self.buffer = b""
            return
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                self.handle(message, time.monotonic())

    def handle(self, message, now):
        phase = message.get("phase")
        error = message.get("error")
        error = str(error)[:MAX_PHASE_ERROR_CHARS] if error else None
        if phase == Phase.RESTORED.value and self.restored_at is None:
            self.restored_at = now
            self.restore = {
                "restored": bounded_names(message.get("restored")),
                "not_restored": bounded_names(message.get("not_restored")),
                "imported": [n for n in bounded_names(message.get("imported")) if isinstance(n, str)],
                "error": error,
                "ahead_ms": bounded_ms(message.get("ahead_ms")),
            }
        elif (
            phase == Phase.FINISHED.value
            and self.restored_at is not None
            and self.finished_at is None
        ):
            self.finished_at = now
            code = message.get("exit_code")
            self.finished_exit = code if isinstance(code, int) and 0 <= code < 256 else 1
        elif phase == Phase.SAVED.value and self.finished_at is not None and self.saved is None:
            self.saved = {
                "kept": bounded_names(message.get("kept")),
                "kept_count": bounded_count(message.get("kept_count")),
                "not_kept": bounded_names(message.get("not_kept")),
                "not_kept_count": bounded_count(message.get("not_kept_count")),
                "error": error,
            }

    def saved_whole(self):
        """Whether the code's process says it wrote the snapshot without an error."""
        return self.saved is not None and not self.saved.get("error")


def session_report(session, phases, handed, ended, timed_out, out_of_memory, timeout_s):
    """What became of the session's state in this run, for the host (which re-checks it).
    The split into restore and save times is the code's process's own account, bounded by
    the run's measured time; it never changes what the run is charged."""
    if not session:
        return None
    restore = phases.restore or {}
    saved = phases.saved or {}
    save_error = saved.get("error")
    if timed_out and phases.finished_at is not None:
        save_error = "saving did not finish within the time limit of %g s" % timeout_s
    elif timed_out:
        save_error = "the code was stopped at its time limit"
    elif phases.finished_at is None:
        save_error = "the code ended without finishing"
    elif phases.saved is None:
        save_error = "out of memory while saving" if out_of_memory else "the save did not complete"
    restored_at = min(phases.restored_at or ended, ended)
    restore_ms = (restored_at - handed) * 1000.0
    save_ms = (ended - max(phases.finished_at, restored_at)) * 1000.0 if phases.finished_at else 0.0
    return {
        "restore_ms": round(max(restore_ms, 0.0), 3),
        "restored": restore.get("restored", []),
        "not_restored": restore.get("not_restored", []),
        "restore_imported": restore.get("imported", []),
        "restore_ahead_ms": restore.get("ahead_ms"),
        "restore_error": restore.get("error") or (
            None if phases.restored_at is not None
            else "restoring did not finish within the time limit of %g s" % timeout_s
        ),
        "save_ms": round(max(save_ms, 0.0), 3),
        "saved": save_error is None,
        "kept": saved.get("kept", []),
        "kept_count": saved.get("kept_count", 0),
        "not_kept": saved.get("not_kept", []),
        "not_kept_count": saved.get("not_kept_count", 0),
        "save_error": save_error,
    }


def open_snapshot(path, max_bytes, code_uid=CODE_UID):
    """The snapshot the code's process wrote, if it is what it should be: a regular file of
    the code's uid within the cap, never a link the code planted to something of ours."""
    try:
        # Non-blocking: a FIFO planted there must not hang this process on open.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes or (
        os.getuid() == 0 and st.st_uid != code_uid
    ):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")
