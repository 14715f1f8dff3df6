"""The runner's framing on the wire: lines, MACs, blobs."""

import hashlib
import hmac
import io
import json

import pytest

from codebox_runner import protocol
from codebox_runner.protocol import Event, emit, frame, line_mac, message


@pytest.fixture
def wire(monkeypatch):
    out = io.BytesIO()
    monkeypatch.setattr(protocol, "PROTOCOL_OUT", out)
    monkeypatch.setattr(protocol, "_auth_key", None)
    return out


def test_a_line_before_the_key_is_bare_json():
    assert frame({"event": "ready", "protocol": 8}, None) == b'{"event": "ready", "protocol": 8}\n'


def test_a_line_after_the_key_is_its_hmac_a_space_and_its_json():
    key = b"0123abcd" * 8
    line = frame({"event": "started"}, key)
    assert line.endswith(b"\n")
    mac, space, body = line[:64], line[64:65], line[65:-1]
    assert space == b" "
    assert body == b'{"event": "started"}'
    assert mac == hmac.new(key, body, hashlib.sha256).hexdigest().encode()
    assert mac == line_mac(key, body)


def test_another_key_gives_another_mac():
    body = b'{"event": "done"}'
    assert line_mac(b"a", body) != line_mac(b"b", body)
    assert len(line_mac(b"", body)) == 64


def test_the_event_comes_first_then_the_fields_in_order():
    encoded = json.dumps(message(Event.OUTPUT, stream="stdout", text="hi", skipped=0))
    assert encoded == '{"event": "output", "stream": "stdout", "text": "hi", "skipped": 0}'


def test_emit_uses_the_key_once_set(wire, monkeypatch):
    emit(Event.READY, protocol=protocol.PROTOCOL_VERSION)
    protocol.set_auth_key(b"job-key")
    emit(Event.STARTED)
    ready, started, rest = wire.getvalue().split(b"\n")
    assert rest == b""
    assert json.loads(ready) == {"event": "ready", "protocol": protocol.PROTOCOL_VERSION}
    mac, body = started.split(b" ", 1)
    assert mac == hmac.new(b"job-key", body, hashlib.sha256).hexdigest().encode()
    assert json.loads(body) == {"event": "started"}


def test_outputs_announce_the_tar_then_carry_it_raw(wire):
    protocol.set_auth_key(b"k")
    payload = b"\x00tar bytes\nwith a newline\xff"
    protocol.send_outputs(payload, [{"flag": "too_many_files", "name": "x"}])
    data = wire.getvalue()
    line, blob = data.split(b"\n", 1)
    announced = json.loads(line.split(b" ", 1)[1])
    assert announced == {
        "event": "outputs",
        "bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "flags": [{"flag": "too_many_files", "name": "x"}],
        "pictures": [],
        "measure_ms": 0.0,
    }
    assert blob == payload


def test_a_snapshot_is_streamed_in_chunks_with_its_digest(wire, monkeypatch):
    monkeypatch.setattr(protocol, "SNAPSHOT_CHUNK_BYTES", 7)
    protocol.set_auth_key(b"k")
    snapshot = io.BytesIO(bytes(range(256)) * 3)
    protocol.send_snapshot(snapshot)
    line, blob = wire.getvalue().split(b"\n", 1)
    announced = json.loads(line.split(b" ", 1)[1])
    assert announced == {
        "event": "state",
        "bytes": 768,
        "sha256": hashlib.sha256(bytes(range(256)) * 3).hexdigest(),
    }
    assert blob == bytes(range(256)) * 3
    assert snapshot.closed


class Shrinking(io.BytesIO):
    """A snapshot that loses its tail between hashing and sending."""

    def seek(self, pos, whence=0):
        self.truncate(10)
        return super().seek(pos, whence)


def test_a_snapshot_that_shrinks_still_sends_the_announced_bytes(wire):
    protocol.set_auth_key(b"k")
    protocol.send_snapshot(Shrinking(b"s" * 50))
    line, blob = wire.getvalue().split(b"\n", 1)
    assert json.loads(line.split(b" ", 1)[1])["bytes"] == 50
    assert blob == b"s" * 10 + b"\0" * 40


def test_the_docstring_names_the_version_constant_not_a_number():
    doc = protocol.__doc__
    assert '{"event": "ready", "protocol": PROTOCOL_VERSION}' in doc
    assert '"protocol": %d' % protocol.PROTOCOL_VERSION not in doc


def test_the_entry_point_is_thin_and_runs_the_package(tmp_path):
    import os

    import codebox_runner

    runner = os.path.join(os.path.dirname(os.path.dirname(codebox_runner.__file__)), "runner.py")
    source = open(runner).read()
    assert "from codebox_runner.main import main" in source
    assert len(source.splitlines()) < 20


class ShortWrites(io.RawIOBase):
    """A raw stream (as stdout is under `python -u`) whose every write takes at most 7
    bytes, as a write interrupted by a signal does."""

    def __init__(self):
        self.data = bytearray()

    def writable(self):
        return True

    def write(self, b):
        taken = bytes(b[:7])
        self.data += taken
        return len(taken)


def test_a_blob_written_short_by_the_stream_still_arrives_whole(monkeypatch, tmp_path):
    out = ShortWrites()
    monkeypatch.setattr(protocol, "PROTOCOL_OUT", out)
    monkeypatch.setattr(protocol, "_auth_key", None)
    content = bytes(range(256)) * 40
    path = tmp_path / "snapshot"
    path.write_bytes(content)
    with open(path, "rb") as snapshot:
        protocol.send_snapshot(snapshot)
    emit(Event.DONE)
    line, rest = bytes(out.data).split(b"\n", 1)
    announced = json.loads(line)
    assert announced["bytes"] == len(content)
    assert announced["sha256"] == hashlib.sha256(content).hexdigest()
    assert rest == content + b'{"event": "done"}\n'
