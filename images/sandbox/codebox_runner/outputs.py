"""What the code produced, bounded before it crosses the wire: its stdout and stderr as
capped text, relayed live when the job asks, and its output directory as a tar."""

import codecs
import enum
import io
import os
import stat
import tarfile

from .constants import DEFAULT_LIVE_EVENT_CHARS, DEFAULT_LIVE_INTERVAL_MS, MAX_FLAGS_PER_KIND
from .pictures import looks_like_picture
from .protocol import Event, Stream, emit

# Live output is coalesced at least this long (seconds), whatever the job asks.
MIN_LIVE_INTERVAL_S = 0.01


def _utf8_decoder():
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


class CappedText:
    """Keeps the head and tail of a byte stream, decoded as UTF-8, within a char budget.

    Memory stays bounded however much the code prints; the total is still counted so the
    result can say honestly how much was dropped.
    """

    def __init__(self, max_chars):
        self.max_chars = max_chars
        self.head_budget = max_chars // 2
        self.tail_budget = max_chars - self.head_budget
        self.decoder = _utf8_decoder()
        self.head = []
        self.head_len = 0
        self.tail = []
        self.tail_len = 0
        self.total_chars = 0

    def feed(self, data, final=False):
        text = self.decoder.decode(data, final)
        if not text:
            return
        self.total_chars += len(text)
        if self.head_len < self.head_budget:
            take = text[: self.head_budget - self.head_len]
            self.head.append(take)
            self.head_len += len(take)
            text = text[len(take):]
        if text and self.tail_budget > 0:
            self.tail.append(text)
            self.tail_len += len(text)
            if self.tail_len > 2 * self.tail_budget:
                joined = "".join(self.tail)[-self.tail_budget:]
                self.tail = [joined]
                self.tail_len = len(joined)

    def truncated(self):
        return self.total_chars > self.max_chars

    def render(self):
        head = "".join(self.head)
        tail = "".join(self.tail)
        if not self.truncated():
            return head + tail
        tail = tail[-self.tail_budget:] if self.tail_budget else ""
        dropped = self.total_chars - len(head) - len(tail)
        return head + "\n[... %d characters truncated ...]\n" % dropped + tail


class LiveOutput:
    """What the code writes, relayed to the host while it runs (`output` events).

    The host forwards it to whoever watches the run; the result still carries the capped
    stdout and stderr. Events are coalesced per interval and each carries only the newest
    text, so a flood costs the protocol stream at most one bounded event per stream per
    interval, and the total is capped: after it, nothing more is relayed live.
    """

    def __init__(self, spec, send=emit):
        self.max_event = max(1, int(spec.get("max_event_chars", DEFAULT_LIVE_EVENT_CHARS)))
        self.max_total = max(0, int(spec.get("max_total_chars", 0)))
        self.interval = max(
            MIN_LIVE_INTERVAL_S,
            float(spec.get("interval_ms", DEFAULT_LIVE_INTERVAL_MS)) / 1000.0,
        )
        self.send = send
        self.decoders = {}
        self.pending = {}
        self.skipped = {}
        self.sent = {}
        self.unsent = {}
        self.next_flush = 0.0

    def feed(self, stream, data, final=False):
        decoder = self.decoders.setdefault(stream, _utf8_decoder())
        text = decoder.decode(data, final)
        if not text:
            return
        pending = self.pending.get(stream, "") + text
        if len(pending) > self.max_event:
            self.skipped[stream] = self.skipped.get(stream, 0) + len(pending) - self.max_event
            pending = pending[-self.max_event:]
        self.pending[stream] = pending

    def due(self, now):
        """Seconds until the next flush is worth doing, or None when nothing waits."""
        if not any(self.pending.values()):
            return None
        return max(0.0, self.next_flush - now)

    def flush(self, now, force=False):
        if not force and now < self.next_flush:
            return
        for stream in (Stream.STDOUT.value, Stream.STDERR.value):
            text = self.pending.pop(stream, "")
            skipped = self.skipped.pop(stream, 0)
            if not text:
                continue
            room = self.max_total - self.sent.get(stream, 0)
            if room <= 0:
                # Past the budget: only counted, and said once at the end.
                self.unsent[stream] = self.unsent.get(stream, 0) + skipped + len(text)
                continue
            if len(text) > room:
                skipped += len(text) - room
                text = text[-room:]
            self.sent[stream] = self.sent.get(stream, 0) + len(text)
            self.send(Event.OUTPUT, stream=stream, text=text, skipped=skipped)
        if force:
            for stream, unsent in sorted(self.unsent.items()):
                self.send(Event.OUTPUT, stream=stream, text="", skipped=unsent)
            self.unsent = {}
        self.next_flush = now + self.interval


class Skip(enum.Enum):
    """Why a file of the output directory was not collected: the `flag` of its report."""

    SYMLINK = "skipped_symlink"
    SPECIAL_FILE = "skipped_special_file"
    TOO_MANY_FILES = "too_many_files"
    FILE_TOO_LARGE = "file_too_large"
    TOTAL_BYTES_EXCEEDED = "total_bytes_exceeded"
    UNREADABLE_FILE = "unreadable_file"


def wire_name(rel):
    """Pure: a name as JSON can carry it. A name that is not UTF-8 (scandir gives its bad
    bytes as lone surrogates) would make the line unreadable to the host, and cost the run
    its outputs: its bad bytes become U+FFFD here."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _flag(skip, name, **more):
    return dict({"flag": skip.value, "name": wire_name(name)}, **more)


def _data_offset(end, size):
    """Pure: where the data of the tar entry that ends at `end` starts: a tar pads each
    entry's data to whole blocks, right after its header."""
    return end - -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def collect_outputs(job):
    """Tars regular files of the output dir without following any symlink.

    Caps are applied here so an oversized output never crosses the wire; every skip is
    reported as a flag. The host re-checks each entry. Returns the tar, the flags and,
    for each file collected that claims to be a picture (by its first bytes), its name
    with where its bytes lie in the tar: (name, offset, size).
    """
    root = job["output_dir"]
    max_files = int(job["max_output_files"])
    max_file_bytes = int(job["max_output_file_bytes"])
    max_total_bytes = int(job["max_output_total_bytes"])
    flags = []
    pictures = []
    buf = io.BytesIO()
    count = 0
    total = 0
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        stack = [""]
        while stack:
            rel_dir = stack.pop()
            try:
                entries = sorted(os.scandir(os.path.join(root, rel_dir)), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                rel = os.path.join(rel_dir, entry.name) if rel_dir else entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    stack.append(rel)
                    continue
                if stat.S_ISLNK(st.st_mode):
                    flags.append(_flag(Skip.SYMLINK, rel))
                    continue
                if not stat.S_ISREG(st.st_mode):
                    flags.append(_flag(Skip.SPECIAL_FILE, rel))
                    continue
                if count >= max_files:
                    flags.append(_flag(Skip.TOO_MANY_FILES, rel))
                    continue
                if st.st_size > max_file_bytes:
                    flags.append(_flag(Skip.FILE_TOO_LARGE, rel, size=st.st_size))
                    continue
                if total + st.st_size > max_total_bytes:
                    flags.append(_flag(Skip.TOTAL_BYTES_EXCEEDED, rel, size=st.st_size))
                    continue
                try:
                    fd = os.open(os.path.join(root, rel), os.O_RDONLY | os.O_NOFOLLOW)
                except OSError:
                    flags.append(_flag(Skip.UNREADABLE_FILE, rel))
                    continue
                with os.fdopen(fd, "rb") as f:
                    data = f.read(max_file_bytes + 1)
                # The file may have grown since its stat: what was read is what counts.
                if len(data) > max_file_bytes or total + len(data) > max_total_bytes:
                    flags.append(_flag(Skip.FILE_TOO_LARGE, rel, size=len(data)))
                    continue
                info = tarfile.TarInfo(rel)
                info.size = len(data)
                info.mode = 0o644
                info.mtime = int(st.st_mtime)
                tar.addfile(info, io.BytesIO(data))
                if looks_like_picture(data[:12]) and wire_name(rel) == rel:
                    pictures.append((rel, _data_offset(buf.tell(), len(data)), len(data)))
                count += 1
                total += len(data)
    return buf.getvalue(), compact_flags(flags), pictures


def compact_flags(flags):
    """Pure: at most MAX_FLAGS_PER_KIND flags of each kind, in first-seen order of kinds,
    and one more per kind that counts the rest."""
    by_kind = {}
    for flag in flags:
        by_kind.setdefault(flag["flag"], []).append(flag)
    compact = []
    for kind, items in by_kind.items():
        compact.extend(items[:MAX_FLAGS_PER_KIND])
        if len(items) > MAX_FLAGS_PER_KIND:
            compact.append({"flag": kind, "name": None, "more": len(items) - MAX_FLAGS_PER_KIND})
    return compact
