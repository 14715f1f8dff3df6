"""The measure of a run's pictures, without the image's data stack: what counts as one,
what of the measuring process's report is believed, and that a process that never answers
costs its budget and nothing else."""

import json
import os
import time

from codebox_runner import pictures
from codebox_runner.pictures import looks_like_picture, measure_pictures, parse_measures


def test_pictures_are_known_by_their_first_bytes():
    assert looks_like_picture(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0d")
    assert looks_like_picture(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01")
    assert looks_like_picture(b"GIF89a\x01\x00\x01\x00\x00\x00")
    assert looks_like_picture(b"RIFF\x24\x00\x00\x00WEBP")
    for other in (b"RIFF\x24\x00\x00\x00WAVE", b"%PDF-1.7\n", b"a,b\n1,2\n", b"", b"\x89PN"):
        assert not looks_like_picture(other), other


def test_only_plausible_measures_of_pictures_asked_about_are_believed():
    lines = [
        {"name": "a.png", "width": 640, "height": 480, "mime": "image/png", "ok": True},
        {"name": "a.png", "width": 1, "height": 1, "mime": "image/png"},  # the first counts
        {"name": "b.png", "width": 0, "height": 480, "mime": "image/png"},
        {"name": "c.png", "width": 640.5, "height": 480, "mime": "image/png"},
        {"name": "d.png", "width": True, "height": 480, "mime": "image/png"},
        {"name": "e.png", "width": 1025, "height": 480, "mime": "image/png"},
        {"name": "f.png", "width": 64, "height": 48, "mime": "text/html"},
        {"name": "elsewhere.png", "width": 64, "height": 48, "mime": "image/png"},
        {"name": ["a.png"], "width": 64, "height": 48, "mime": "image/png"},
        ["not", "an", "object"],
    ]
    report = b"\n".join(json.dumps(line).encode() for line in lines) + b"\nnot json\n\xff\xfe"
    names = ["a.png", "b.png", "c.png", "d.png", "e.png", "f.png"]
    assert parse_measures(report, names) == [
        {"name": "a.png", "width": 640, "height": 480, "mime": "image/png"}
    ]


def test_nothing_to_measure_forks_nothing(monkeypatch):
    monkeypatch.setattr(os, "fork", lambda: (_ for _ in ()).throw(AssertionError("forked")))
    assert measure_pictures(b"", []) == []


def test_a_measure_that_never_ends_costs_its_budget_only(monkeypatch):
    # Without PIL here the measuring process would fail at once: one that hangs instead
    # stands for a picture crafted to keep the decoder busy.
    def hang(payload, pictures, report_w):
        time.sleep(60)
        os._exit(0)

    monkeypatch.setattr(pictures, "_measure_and_exit", hang)
    started = time.monotonic()
    assert measure_pictures(b"x" * 10, [("a.png", 0, 10)], budget_s=0.3) == []
    assert time.monotonic() - started < 5


def test_a_measure_that_cannot_start_or_be_read_costs_the_measures_only(monkeypatch):
    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    assert measure_pictures(b"x" * 10, [("a.png", 0, 10)]) == []
    monkeypatch.undo()

    # A report nested deeper than the parser goes (a decoder taken over could send it).
    def nested(payload, pictures, report_w):
        os.write(report_w, b"[" * 16000)
        os.close(report_w)
        os._exit(0)

    monkeypatch.setattr(pictures, "_measure_and_exit", nested)
    assert measure_pictures(b"x" * 10, [("a.png", 0, 10)]) == []
