"""The runner's life, as the container's PID 1: started before its job is known (a warm
pool can start it early), it optionally imports the data stack, forks the code's process,
announces readiness, then reads exactly one JSON job line from stdin (after, optionally,
one `prepare` line: a session's snapshot the code's process restores while it waits), runs
the code once, kills every other process in the container, and streams back one result, a
tar of the output directory (with the sizes of the pictures in it) and, for a session, the
new snapshot (the protocol: protocol.py)."""

import json
import sys
import time

from . import protocol
from .constants import MAX_JOB_LINE_BYTES, PREPARE_PREFIX
from .outputs import collect_outputs
from .pictures import measure_pictures
from .privileges import set_dumpable, shield_signals
from .protocol import PROTOCOL_VERSION, Event, emit, send_outputs, send_snapshot
from .supervisor import Forked, kill_everything_else, run_job, signal_everything_else
from .warmup import DEFAULT_PRELOAD, preload, seed_matplotlib_cache


def main(argv=None):
    set_dumpable(0)
    shield_signals()
    seed_matplotlib_cache()
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["--preload"]:
        preload(args[1].split(",") if len(args) > 1 else list(DEFAULT_PRELOAD))
    forked = Forked()
    emit(Event.READY, protocol=PROTOCOL_VERSION)
    line = sys.stdin.buffer.readline(MAX_JOB_LINE_BYTES)
    if line.startswith(PREPARE_PREFIX):
        # A warm container held for a conversation: its state is restored while the model
        # is still deciding what to run.
        forked.prepare(json.loads(line[len(PREPARE_PREFIX):]))
        line = sys.stdin.buffer.readline(MAX_JOB_LINE_BYTES)
    if not line:
        return
    job = json.loads(line)
    # The key stays in this process: the code's process was forked before it was read.
    key = str(job.pop("auth", "")).encode()
    if not key:
        return  # a job without a key cannot be answered in a way the host accepts
    protocol.set_auth_key(key)
    snapshot = run_job(job, forked)
    payload, flags, pictures = collect_outputs(job)
    if not job.get("measure_pictures"):
        pictures = []
    measuring = time.monotonic()
    measured = measure_pictures(payload, pictures)
    if pictures:
        # Whatever the measuring process started is gone before anything else is sent.
        signal_everything_else()
    measure_ms = (time.monotonic() - measuring) * 1000.0
    send_outputs(payload, flags, measured, measure_ms)
    if snapshot is not None:
        send_snapshot(snapshot)
    emit(Event.DONE)
    # A code's process that ended by saving its session was signalled, not yet reaped.
    kill_everything_else()
