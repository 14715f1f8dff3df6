"""Capped stdout/stderr, live output, and the output directory's tar."""

import io
import json
import os
import tarfile

from codebox_runner.outputs import CappedText, LiveOutput, Skip, collect_outputs, compact_flags
from codebox_runner.protocol import Event


def capped(max_chars, *pieces):
    text = CappedText(max_chars)
    for piece in pieces:
        text.feed(piece)
    text.feed(b"", final=True)
    return text


def test_text_within_the_cap_is_kept_whole():
    text = capped(11, b"hello ", b"world")
    assert not text.truncated()
    assert text.render() == "hello world"
    assert text.total_chars == 11


def test_text_over_the_cap_keeps_head_and_tail_and_counts_the_rest():
    text = capped(10, b"a" * 5, b"b" * 100, b"c" * 5)
    assert text.truncated()
    assert text.total_chars == 110
    assert text.render() == "aaaaa\n[... 100 characters truncated ...]\nccccc"


def test_the_tail_stays_bounded_however_much_is_fed():
    text = CappedText(10)
    for _ in range(10000):
        text.feed(b"x" * 100)
    assert text.tail_len <= 2 * text.tail_budget
    assert text.total_chars == 1000000
    assert text.render().endswith("\nxxxxx")


def test_utf8_split_across_reads_is_decoded_whole_and_counted_in_chars():
    data = "héllo wörld".encode()
    text = capped(100, data[:2], data[2:9], data[9:])
    assert text.render() == "héllo wörld"
    assert text.total_chars == 11


def test_invalid_utf8_is_replaced_not_fatal():
    assert capped(100, b"ok \xff\xfe").render() == "ok \ufffd\ufffd"


def test_a_zero_cap_keeps_nothing_but_counts():
    text = capped(0, b"abc")
    assert text.render() == "\n[... 3 characters truncated ...]\n"


class Sent(list):
    def __call__(self, event, **fields):
        self.append(dict(fields, event=event))


def live(spec):
    sent = Sent()
    return LiveOutput(spec, send=sent), sent


def test_live_output_is_coalesced_per_interval():
    out, sent = live({"max_event_chars": 100, "max_total_chars": 1000, "interval_ms": 100})
    out.feed("stdout", b"one ")
    out.flush(10.0)
    out.feed("stdout", b"two ")
    out.flush(10.05)  # within the interval: nothing
    assert [s["text"] for s in sent] == ["one "]
    assert abs(out.due(10.05) - 0.05) < 1e-9
    out.feed("stdout", b"three")
    out.flush(10.1)
    assert [s["text"] for s in sent] == ["one ", "two three"]
    assert all(s["event"] is Event.OUTPUT and s["stream"] == "stdout" for s in sent)


def test_nothing_waiting_is_never_due():
    out, _ = live({"max_event_chars": 10, "max_total_chars": 10, "interval_ms": 100})
    assert out.due(0.0) is None
    out.feed("stderr", b"x")
    assert out.due(0.0) == 0.0


def test_one_event_carries_only_the_newest_text_and_counts_the_skipped():
    out, sent = live({"max_event_chars": 4, "max_total_chars": 1000, "interval_ms": 100})
    out.feed("stderr", b"abcdefghij")
    out.flush(0.0)
    assert sent == [{"event": Event.OUTPUT, "stream": "stderr", "text": "ghij", "skipped": 6}]


def test_past_the_total_only_a_count_is_sent_once_at_the_end():
    out, sent = live({"max_event_chars": 100, "max_total_chars": 5, "interval_ms": 10})
    out.feed("stdout", b"abc")
    out.flush(0.0)
    out.feed("stdout", b"defgh")
    out.flush(1.0)
    out.feed("stdout", b"ijk")
    out.flush(2.0)
    assert [(s["text"], s["skipped"]) for s in sent] == [("abc", 0), ("gh", 3)]
    out.flush(3.0, force=True)
    assert sent[-1] == {"event": Event.OUTPUT, "stream": "stdout", "text": "", "skipped": 3}
    assert len(sent) == 3


def test_stdout_is_sent_before_stderr_and_the_interval_has_a_floor():
    out, sent = live({"max_event_chars": 10, "max_total_chars": 100, "interval_ms": 0})
    assert out.interval == 0.01
    out.feed("stderr", b"e")
    out.feed("stdout", b"o")
    out.flush(0.0)
    assert [s["stream"] for s in sent] == ["stdout", "stderr"]


def job(root, **caps):
    job = {
        "output_dir": str(root),
        "max_output_files": 10,
        "max_output_file_bytes": 1000,
        "max_output_total_bytes": 5000,
    }
    job.update(caps)
    return job


def members(payload):
    with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_outputs_are_regular_files_only_links_and_specials_are_flagged(tmp_path):
    (tmp_path / "a.txt").write_text("A")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("B")
    os.symlink("/etc/passwd", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    payload, flags, _ = collect_outputs(job(tmp_path))
    assert members(payload) == {"a.txt": b"A", "sub/b.txt": b"B"}
    assert sorted((f["flag"], f["name"]) for f in flags) == [
        ("skipped_special_file", "fifo"),
        ("skipped_symlink", "link"),
    ]


def test_output_caps_are_flagged_not_sent(tmp_path):
    for i in range(4):
        (tmp_path / ("f%d" % i)).write_bytes(b"x" * 10)
    (tmp_path / "g-large").write_bytes(b"y" * 101)
    payload, flags, _ = collect_outputs(job(tmp_path, max_output_files=2))
    assert members(payload) == {"f0": b"x" * 10, "f1": b"x" * 10}
    assert flags == [
        {"flag": "too_many_files", "name": "f2"},
        {"flag": "too_many_files", "name": "f3"},
        {"flag": "too_many_files", "name": "g-large"},
    ]
    payload, flags, _ = collect_outputs(job(tmp_path, max_output_file_bytes=100))
    assert set(members(payload)) == {"f0", "f1", "f2", "f3"}
    assert flags == [{"flag": "file_too_large", "name": "g-large", "size": 101}]


def test_the_total_is_capped_across_files(tmp_path):
    (tmp_path / "a").write_bytes(b"1" * 30)
    (tmp_path / "b").write_bytes(b"2" * 30)
    payload, flags, _ = collect_outputs(job(tmp_path, max_output_total_bytes=50))
    assert members(payload) == {"a": b"1" * 30}
    assert flags == [{"flag": "total_bytes_exceeded", "name": "b", "size": 30}]


def test_a_missing_output_dir_is_an_empty_tar(tmp_path):
    payload, flags, _ = collect_outputs(job(tmp_path / "nowhere"))
    assert members(payload) == {} and flags == []


def test_flags_are_compacted_per_kind():
    flags = [{"flag": "too_many_files", "name": str(i)} for i in range(25)]
    flags.insert(3, {"flag": "skipped_symlink", "name": "l"})
    compact = compact_flags(flags)
    assert compact[:20] == [{"flag": "too_many_files", "name": str(i)} for i in range(20)]
    assert compact[20] == {"flag": "too_many_files", "name": None, "more": 5}
    assert compact[21] == {"flag": "skipped_symlink", "name": "l"}
    assert len(compact) == 22


def test_the_skip_kinds_are_the_flags_the_runner_names():
    assert {s.value for s in Skip} == {
        "skipped_symlink", "skipped_special_file", "too_many_files", "file_too_large",
        "total_bytes_exceeded", "unreadable_file",
    }


def test_pictures_are_listed_with_where_their_bytes_lie_in_the_tar(tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3
    (tmp_path / "chart.png").write_bytes(png)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"j" * 10)
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "misnamed.txt").write_bytes(b"GIF89a" + b"g" * 600)
    payload, _, pictures = collect_outputs(job(tmp_path))
    names = {name: (offset, size) for name, offset, size in pictures}
    assert sorted(names) == ["chart.png", "misnamed.txt", "sub/photo.jpg"]
    for name, (offset, size) in names.items():
        assert payload[offset:offset + size] == (tmp_path / name).read_bytes(), name


def test_names_that_are_not_utf8_reach_the_wire_readable_and_are_not_measured(tmp_path):
    root = os.fsencode(tmp_path)
    with open(os.path.join(root, b"\xff.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + b"p" * 100)
    os.symlink("/etc/passwd", os.path.join(root, b"\xfe-link"))
    _, flags, pictures = collect_outputs(job(tmp_path))
    assert pictures == [], "a name the host cannot read is no picture of the run's"
    assert [f["name"] for f in flags] == ["\ufffd-link"]
    # Strict UTF-8, as the host's JSON parser reads it: no lone surrogate left.
    json.dumps(flags, ensure_ascii=False).encode("utf-8")
