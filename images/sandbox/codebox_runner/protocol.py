"""The runner's side of the line protocol with the host: its vocabulary, its framing and
its authentication.

Protocol on stdout (the only channel the host reads):

    {"event": "ready", "protocol": PROTOCOL_VERSION}
    MAC {"event": "started"}
    MAC {"event": "missing", "modules": [name]}   while the code runs, when an import in the
                                             code really fails; every process of the code
                                             is stopped (SIGSTOP) and its clock paused
                                             until the host answers with one stdin line
                                             {"site_dirs": [...]} or {"error": "..."}
    MAC {"event": "output", "stream": "stdout"|"stderr", "text": T, "skipped": N}
                                             while the code runs, only when the job has
                                             `live`: what the code wrote since the last one
                                             (its newest `max_event_chars`, N older chars
                                             skipped), at most one per stream per
                                             `interval_ms`, `max_total_chars` per stream
    MAC {"event": "result", ..., "session": {...} or null}
    MAC {"event": "outputs", "bytes": N, "sha256": H, "flags": [...],
         "pictures": [{"name", "width", "height", "mime"}], "measure_ms": M}
                                             then exactly N bytes of tar; `pictures`:
                                             the outputs that decoded whole as pictures
                                             (codebox_runner.pictures), measured in M ms
    MAC {"event": "state", "bytes": N, "sha256": H}     then exactly N bytes of snapshot,
                                             only when the job has a session and its
                                             state was saved
    MAC {"event": "done"}

On stdin the host writes, after `ready`, at most one line `prepare {"restore": PATH,
"workdir": DIR}` while it holds the container for a conversation (the code's process
restores that snapshot at once, reporting `ahead_ms` with its restore), then the job line.

Every line after the job carries MAC, the hex HMAC-SHA256 of its JSON under the job's
one-time key (`auth` in the job line), then one space. Only the runner's own process knows
the key: the code's process was forked before the job arrived and never sees it, and it
runs as another uid, so it can neither signal the runner nor open its descriptors or
memory, under runc or gVisor. (The process that measures the outputs' pictures, forked
once the code is dead, holds a copy in its memory and no channel to use it on:
pictures.py.)

The host writes the job only after `ready`, and only when `protocol` is the version it
speaks: bump PROTOCOL_VERSION (and the host's, src/sandbox/protocol.rs) whenever the two
stop understanding each other, so an out-of-date image is named as such instead of failing
in odd ways. The host treats everything on this stream as untrusted and re-validates it.
"""

import enum
import hashlib
import hmac
import json
import select
import sys

from .constants import SNAPSHOT_CHUNK_BYTES

PROTOCOL_VERSION = 9

# The stream the host reads: this process's own stdout, never the code's (its fds 1 and 2
# are pipes the runner reads).
PROTOCOL_OUT = sys.stdout.buffer

# The job's one-time key, known from the job line on; every later line is authenticated.
_auth_key = None


class Event(enum.Enum):
    """The `event` of each line, in the order a run sends them."""

    READY = "ready"
    STARTED = "started"
    MISSING = "missing"
    OUTPUT = "output"
    RESULT = "result"
    OUTPUTS = "outputs"
    STATE = "state"
    DONE = "done"


class Status(enum.Enum):
    """How the code ended, the `status` of `result`."""

    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    OOM = "oom"
    KILLED = "killed"


class Stream(enum.Enum):
    """Which of the code's streams an `output` event relays."""

    STDOUT = "stdout"
    STDERR = "stderr"


def set_auth_key(key):
    """From now on every line is authenticated with `key` (bytes), or none when None."""
    global _auth_key
    _auth_key = key


def line_mac(key, body):
    """Pure: the MAC put in front of a line's JSON `body` (bytes) under `key` (bytes)."""
    return hmac.new(key, body, hashlib.sha256).hexdigest().encode()


def frame(message, key):
    """Pure: one protocol line for `message`, authenticated when `key` is not None."""
    body = json.dumps(message).encode()
    if key is not None:
        body = line_mac(key, body) + b" " + body
    return body + b"\n"


def message(event, **fields):
    """Pure: the JSON object of one line: its event first, then its fields in order."""
    return dict({"event": event.value}, **fields)


def write_all(data):
    """Writes every byte of `data`. Under `python -u` the stream is the raw file, whose
    write is one system call: a signal arriving mid-write (the code's process ending)
    returns it short, and a dropped tail would desynchronise the host's reading."""
    view = memoryview(data)
    while view:
        written = PROTOCOL_OUT.write(view)
        if written is None:  # a non-blocking stream that is full: wait until it is not
            select.select([], [PROTOCOL_OUT], [])
            continue
        view = view[written:]


def emit(event, **fields):
    write_all(frame(message(event, **fields), _auth_key))
    PROTOCOL_OUT.flush()


def send_outputs(payload, flags, pictures=(), measure_ms=0.0):
    """`outputs` and the tar's bytes, which follow the line unframed."""
    digest = hashlib.sha256(payload).hexdigest()
    emit(
        Event.OUTPUTS,
        bytes=len(payload),
        sha256=digest,
        flags=flags,
        pictures=list(pictures),
        measure_ms=round(measure_ms, 3),
    )
    write_all(payload)
    PROTOCOL_OUT.flush()


def send_snapshot(snapshot):
    """`state` and the snapshot's bytes, streamed in chunks (it may be hundreds of MB).

    The size and digest are taken first; a file that shrinks meanwhile is padded with
    zeros, so the stream still carries exactly the announced number of bytes (and the host
    refuses it for its digest)."""
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = snapshot.read(SNAPSHOT_CHUNK_BYTES)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
    snapshot.seek(0)
    emit(Event.STATE, bytes=size, sha256=digest.hexdigest())
    sent = 0
    while sent < size:
        chunk = snapshot.read(min(SNAPSHOT_CHUNK_BYTES, size - sent))
        if not chunk:
            break
        write_all(chunk)
        sent += len(chunk)
    write_all(b"\0" * (size - sent))
    PROTOCOL_OUT.flush()
    snapshot.close()
