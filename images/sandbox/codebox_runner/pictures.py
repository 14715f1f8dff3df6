"""The pictures among a run's outputs, measured before they leave the sandbox, so the host
can show a figure to the model without a second sandbox run just to learn its size.

What is measured is the bytes collected into the output tar, never the files again. They
are measured in a process of its own, forked once every process of the code is dead: it
drops to the code's uid, may start no process (RLIMIT_NPROC 0), and keeps nothing but the
pipe it reports on (its stdio is /dev/null). It was forked from the runner after the job
arrived, so its memory holds a copy of the job's key, but a picture crafted to exploit the
decoder reaches no channel the key could be used on: not the protocol stream, not the
runner (another uid, not dumpable). Its report is bounded here and checked again by the
host; when the measure is over, every process but the runner is killed again. A picture
not measured in time (or at all) is simply not reported: the host then measures it in a
picture run of its own. The runner itself never decodes a picture."""

import io
import json
import os
import resource
import select
import signal
import time

# Loads no decoder: PIL is imported only when a picture is measured.
import codebox_vision

from .constants import (
    CLOSE_FDS_BELOW,
    MAX_MEASURED_PICTURES,
    MAX_PICTURE_REPORT_BYTES,
    MEASURE_PICTURES_S,
    MEASURED_MAX_SIDE,
    READ_CHUNK,
)
from .privileges import drop_privileges

# The four picture types the model takes, by their first bytes.
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")


def looks_like_picture(head):
    """Pure: whether a file starting with `head` (its first 12 bytes) claims to be a PNG,
    JPEG, GIF or WebP picture."""
    return head.startswith(_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def measure_pictures(payload, pictures, budget_s=MEASURE_PICTURES_S):
    """[{"name", "width", "height", "mime"}] for the pictures (name, offset, size) whose
    bytes lie in `payload` (the output tar) and decoded whole within `budget_s`; the others
    are left out. Whatever goes wrong (no process can be forked, a report that does not
    parse), the run keeps its outputs: it only has no measures."""
    pictures = list(pictures)[:MAX_MEASURED_PICTURES]
    if not pictures:
        return []
    try:
        report_r, report_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            _measure_and_exit(payload, pictures, report_w)
        os.close(report_w)
        report = _read_until(report_r, time.monotonic() + budget_s)
        os.close(report_r)
        # Not waited for: tearing down a copy of the runner takes milliseconds, and the
        # runner reaps every process it leaves once the run is answered.
        os.kill(pid, signal.SIGKILL)
        return parse_measures(report, [name for name, _, _ in pictures])
    except Exception:
        return []


def _read_until(fd, deadline):
    """What the measuring process wrote until it closed its pipe, the deadline passed or
    the report reached its cap."""
    report = bytearray()
    while len(report) < MAX_PICTURE_REPORT_BYTES:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        readable, _, _ = select.select([fd], [], [], left)
        if not readable:
            break
        data = os.read(fd, READ_CHUNK)
        if not data:
            break
        report.extend(data)
    return bytes(report[:MAX_PICTURE_REPORT_BYTES])


def _measure_and_exit(payload, pictures, report_w):
    """The measuring process: never returns."""
    try:
        signal.set_wakeup_fd(-1)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, report_w)
        os.closerange(report_w + 1, CLOSE_FDS_BELOW)
        # Should a picture take the container's memory, this process goes first.
        try:
            with open("/proc/self/oom_score_adj", "w") as adj:
                adj.write("1000")
        except OSError:
            pass  # a kernel that refuses it: the side cap below still bounds the decode
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
        drop_privileges()
        view = memoryview(payload)
        for name, offset, size in pictures:
            measured = codebox_vision.measure(io.BytesIO(view[offset:offset + size]), MEASURED_MAX_SIDE)
            if measured.get("ok"):
                measured["name"] = name
                os.write(report_w, json.dumps(measured).encode() + b"\n")
        # Closed before exiting, so the runner reads the end of the report without
        # waiting for this process's memory to be torn down.
        os.close(report_w)
    except BaseException:
        pass
    os._exit(0)


def parse_measures(report, names):
    """Pure: the measures in the report (bytes, one JSON object per line) of pictures that
    were asked about, each once, with sizes and types the host could use."""
    measures, seen = [], set()
    for line in report.split(b"\n"):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        name, width, height, mime = (entry.get(k) for k in ("name", "width", "height", "mime"))
        if name not in names or name in seen or mime not in codebox_vision.MIME_TYPES:
            continue
        if not all(type(side) is int and 0 < side <= MEASURED_MAX_SIDE for side in (width, height)):
            continue
        seen.add(name)
        measures.append({"name": name, "width": width, "height": height, "mime": mime})
    return measures
