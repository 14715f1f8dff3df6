"""The pictures among a run's outputs, measured before they leave the sandbox, so the host
can show a figure to the model without a second sandbox run just to learn its size.

Measured in a process of its own, forked once the code and everything it started are
dead: it drops to the code's uid and keeps nothing but the pipe it reports on (its stdio
is /dev/null), so a picture crafted to exploit the decoder reaches neither the protocol
stream nor the job's key, only a report the runner bounds here and the host checks again.
The runner itself never decodes a picture. A picture that is not measured in time (or at
all) is simply not reported: the host then measures it the old way."""

import json
import os
import select
import signal
import time

from .constants import (
    CLOSE_FDS_BELOW,
    MAX_MEASURED_PICTURES,
    MAX_PICTURE_REPORT_BYTES,
    MEASURE_PICTURES_S,
    READ_CHUNK,
)
from .privileges import drop_privileges

# The four picture types the model takes, by their first bytes.
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")
_MIME_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
# A measure the host can use: a side it could ever send.
_MAX_SIDE = 65535


def looks_like_picture(head):
    """Pure: whether a file starting with `head` (its first 12 bytes) claims to be a PNG,
    JPEG, GIF or WebP picture."""
    return head.startswith(_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def measure_pictures(root, names, budget_s=MEASURE_PICTURES_S):
    """[{"name", "width", "height", "mime"}] for the pictures among `names` (relative to
    `root`) that decoded whole within `budget_s`; the others are left out."""
    names = list(names)[:MAX_MEASURED_PICTURES]
    if not names:
        return []
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _measure_and_exit(root, names, report_w)
    os.close(report_w)
    report = _read_until(report_r, time.monotonic() + budget_s)
    os.close(report_r)
    # Not waited for: tearing down a copy of the runner takes milliseconds, and the
    # runner reaps every process it leaves once the run is answered.
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return parse_measures(report, names)


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


def _measure_and_exit(root, names, report_w):
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
            pass  # a kernel that refuses it: the picture's pixel cap still holds
        drop_privileges()
        import codebox_vision

        for name in names:
            fd = os.open(os.path.join(root, name), os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as picture:
                measured = codebox_vision.measure(picture)
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
        if name not in names or name in seen or mime not in _MIME_TYPES:
            continue
        if not all(type(side) is int and 0 < side <= _MAX_SIDE for side in (width, height)):
            continue
        seen.add(name)
        measures.append({"name": name, "width": width, "height": height, "mime": mime})
    return measures
