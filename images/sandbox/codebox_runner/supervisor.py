"""The runner's hold on the code: the code's process forked ahead, its job handed over,
its pipes read, its clock kept, and everything it started killed when it ends.

The clock is the runner's own: started at the hand-over, paused only while the host
provides a missing package (every process of the code stopped), and never moved by what
the code's process says on its pipes."""

import enum
import json
import os
import select
import signal
import time

from .accounting import CpuClock, read_oom_kills
from .child import run_when_handed
from .constants import (
    DRAIN_AFTER_EXIT_S,
    KILL_ROUND_PAUSE_S,
    KILL_ROUNDS,
    MAX_ERROR_REPORT_BYTES,
    PREPARE_PREFIX,
    READ_CHUNK,
    WAKE_READ_BYTES,
)
from .ending import ending, reported_error, timeout_message
from .outputs import CappedText, LiveOutput
from .packages import PackageRequests
from .protocol import Event, Stream, emit
from .session_io import SessionPhases, open_snapshot, session_report
from .user_files import expose_files, hide_files


class Stage(enum.Enum):
    """Where the supervision of one run is."""

    # The code's process runs, within its time limit.
    RUNNING = "running"
    # It exited: what is left in its pipes is read, for DRAIN_AFTER_EXIT_S at most.
    DRAINING = "draining"
    # It exited and its pipes are read (or the drain time is over).
    EXITED = "exited"
    # Its time limit ran out while it ran.
    TIMED_OUT = "timed_out"
    # It said it saved the session: all it has left is to exit, which is not waited for
    # (tearing down a process with the data stack loaded takes ~5 ms).
    SAVED = "saved"


class Forked:
    """The code's process, forked before its job is known, waiting on a pipe for it.

    Forking a process that has the data stack imported costs milliseconds (page tables, the
    child's first copy-on-write faults); done ahead, that time is not in the request. No
    user code runs before the job arrives and the child has replaced its stdio.
    """

    def __init__(self):
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        self.report_r, report_w = os.pipe()
        self.ask_r, ask_w = os.pipe()
        answer_r, self.answer_w = os.pipe()
        self.phase_r, phase_w = os.pipe()
        self.wake_r, self.wake_w = os.pipe()
        job_r, self.job_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.pid = os.fork()
        if self.pid == 0:
            for fd in (
                self.out_r,
                self.err_r,
                self.report_r,
                self.ask_r,
                self.answer_w,
                self.phase_r,
                self.wake_r,
                self.wake_w,
                self.job_w,
            ):
                os.close(fd)
            run_when_handed(job_r, out_w, err_w, report_w, ask_w, answer_r, phase_w)
        for fd in (out_w, err_w, report_w, ask_w, answer_r, phase_w, job_r):
            os.close(fd)

    def prepare(self, message):
        """Asks the child to restore a session's snapshot now, while the job is awaited:
        one line ahead of the job on the same pipe."""
        self._send(PREPARE_PREFIX + json.dumps(message).encode() + b"\n")

    def hand_over(self, job):
        """Gives the child its job; it starts the code when the pipe closes."""
        self._send(json.dumps(job).encode())
        os.close(self.job_w)

    def _send(self, data):
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.job_w, view):]
        except OSError:
            pass  # the child died: the wait loop reports how


def signal_everything_else():
    """SIGKILL every process in the container but this one, without waiting for them to be
    torn down: none runs another instruction of its own; `kill_everything_else` reaps them
    once the run is answered."""
    try:
        os.kill(-1, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_everything_else():
    """SIGKILL every process in the container but this one, then reap them all.

    As PID 1 this reaches background processes and daemons the code left behind, which
    must not outlive the run nor race the output collection.
    """
    for _ in range(KILL_ROUNDS):
        signal_everything_else()
        reaped_any = False
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                break
            reaped_any = True
        if not reaped_any:
            time.sleep(KILL_ROUND_PAUSE_S)


def run_job(job, forked):
    """Runs the job's code; returns the open snapshot file to stream after the outputs, or
    None when there is none to send."""
    max_chars = int(job["max_output_chars"])
    timeout_s = float(job["timeout_s"])
    out_r, err_r, report_r, wake_r = forked.out_r, forked.err_r, forked.report_r, forked.wake_r
    pid = forked.pid
    session = job.get("session")

    oom_before = read_oom_kills()
    exposed = expose_files(job)
    emit(Event.STARTED)
    forked.hand_over(job)
    handed = time.monotonic()

    stdout = CappedText(max_chars)
    stderr = CappedText(max_chars)
    live = LiveOutput(job["live"]) if isinstance(job.get("live"), dict) else None
    report = bytearray()
    asks = PackageRequests(forked.answer_w)
    phases = SessionPhases()

    def relayed(capped, stream):
        if live is None:
            return capped.feed

        def feed(data):
            capped.feed(data)
            live.feed(stream, data)

        return feed

    sinks = {
        out_r: relayed(stdout, Stream.STDOUT.value),
        err_r: relayed(stderr, Stream.STDERR.value),
        report_r: report.extend,
        forked.ask_r: asks.feed,
    }
    if session:
        sinks[forked.phase_r] = phases.feed
    else:
        os.close(forked.phase_r)

    def take(fd, data):
        # The report is the code's to flood: it stops growing at its cap.
        if fd != report_r or len(report) < MAX_ERROR_REPORT_BYTES:
            sinks[fd](data)

    # One clock, started at the hand-over and read only here: what the code's process says
    # on its phase pipe never stops it or moves its deadline.
    deadline = handed + timeout_s
    code_paused = 0.0
    exit_status = None
    stage = Stage.RUNNING
    ended = None
    drain_until = None
    cpu_before = CpuClock()
    # Where the kernel counts the container's CPU, the code's process need not be reaped
    # before the result; elsewhere (gVisor) its usage is known only once it is.
    leaves_once_saved = bool(session) and cpu_before.cgroup_ns is not None
    while True:
        now = time.monotonic()
        if stage is Stage.RUNNING and now >= deadline:
            stage = Stage.TIMED_OUT
            ended = now
            break
        if stage is Stage.DRAINING and (not sinks or now >= drain_until):
            stage = Stage.EXITED
            break
        wait = (deadline if stage is Stage.RUNNING else drain_until) - now
        flush_in = live.due(now) if live is not None else None
        if flush_in is not None:
            wait = min(wait, flush_in)
        readable, _, _ = select.select(list(sinks) + [wake_r], [], [], max(wait, 0))
        for fd in readable:
            if fd == wake_r:
                try:
                    os.read(wake_r, WAKE_READ_BYTES)
                except BlockingIOError:
                    pass
                continue
            data = os.read(fd, READ_CHUNK)
            if data:
                take(fd, data)
            else:
                os.close(fd)
                del sinks[fd]
        if live is not None:
            live.flush(time.monotonic())
        # Time spent waiting for the host's packages is never the code's.
        paused = asks.take_paused()
        deadline += paused
        code_paused += paused
        if stage is Stage.RUNNING and leaves_once_saved and phases.saved is not None:
            # Its output was written before it said so; its exit code is the one it said
            # (its to choose, as with any exit).
            exit_status = phases.finished_exit << 8
            ended = time.monotonic()
            stage = Stage.SAVED
            break
        if stage is Stage.RUNNING:
            while True:
                try:
                    reaped, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if reaped == 0:
                    break
                if reaped == pid:
                    exit_status = status
                    ended = time.monotonic()
                    # Background processes may hold the pipes open; drain briefly, not forever.
                    drain_until = ended + DRAIN_AFTER_EXIT_S
                    stage = Stage.DRAINING
    timed_out = stage is Stage.TIMED_OUT
    execution_ms = max(0.0, ended - handed - code_paused) * 1000.0

    if stage is Stage.SAVED:
        signal_everything_else()
    else:
        kill_everything_else()
    cpu_ms = cpu_before.ms_since()
    hide_files(exposed)
    for fd in list(sinks):
        # Unreaped, the processes still hold the pipes: what they wrote is read, no end of
        # file awaited.
        if stage is Stage.SAVED:
            os.set_blocking(fd, False)
        try:
            while True:
                data = os.read(fd, READ_CHUNK)
                if not data:
                    break
                take(fd, data)
        except OSError:
            pass
        os.close(fd)
    stdout.feed(b"", final=True)
    stderr.feed(b"", final=True)
    if live is not None:
        live.feed(Stream.STDOUT.value, b"", final=True)
        live.feed(Stream.STDERR.value, b"", final=True)
        live.flush(time.monotonic(), force=True)

    oom_after = read_oom_kills()
    out_of_memory = oom_after is not None and oom_after > (oom_before or 0)
    status, exit_code, error = ending(
        exit_status,
        timed_out,
        out_of_memory,
        reported_error(report, exit_status),
        timeout_message(session, phases, timeout_s) if timed_out else None,
        job.get("memory_mb", "?"),
    )
    emit(
        Event.RESULT,
        status=status.value,
        exit_code=exit_code,
        stdout=stdout.render(),
        stderr=stderr.render(),
        stdout_truncated=stdout.truncated(),
        stderr_truncated=stderr.truncated(),
        stdout_chars=stdout.total_chars,
        stderr_chars=stderr.total_chars,
        execution_ms=round(execution_ms, 3),
        cpu_ms=None if cpu_ms is None else round(cpu_ms, 3),
        error=error,
        session=session_report(
            session, phases, handed, ended, timed_out, out_of_memory, timeout_s
        ),
    )
    if session and phases.saved_whole() and not timed_out:
        return open_snapshot(session["save_to"], int(session["max_bytes"]))
    return None
