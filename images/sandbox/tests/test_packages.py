"""Missing packages: the code's finder and the runner's relay, over real pipes."""

import io
import json
import os
import signal
import sys

import pytest

from codebox_runner import protocol
from codebox_runner.constants import MAX_INSTALL_REQUESTS
from codebox_runner.packages import HostInstaller, PackageRequests, add_site_dirs


@pytest.fixture
def wire(monkeypatch):
    out = io.BytesIO()
    monkeypatch.setattr(protocol, "PROTOCOL_OUT", out)
    monkeypatch.setattr(protocol, "_auth_key", b"key")
    return out


@pytest.fixture
def pipe():
    r, w = os.pipe()
    os.set_blocking(r, False)
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def answers(read_fd):
    try:
        data = os.read(read_fd, 1 << 16)
    except BlockingIOError:
        return []
    return [json.loads(line) for line in data.splitlines()]


def relay(answer_w, host_lines):
    signals = []
    requests = PackageRequests(answer_w, host_in=io.BytesIO(host_lines), pause=signals.append)
    return requests, signals


def events(wire):
    lines = wire.getvalue().splitlines()
    return [json.loads(line.split(b" ", 1)[1]) for line in lines]


def test_a_request_stops_the_code_asks_the_host_and_relays_its_answer(wire, pipe):
    answer_r, answer_w = pipe
    requests, signals = relay(answer_w, b'{"site_dirs": ["/opt/codebox-packages/a"]}\n')
    requests.feed(b'{"module": "tabul')
    assert signals == [] and events(wire) == []
    requests.feed(b'ate"}\n')
    assert signals == [signal.SIGSTOP, signal.SIGCONT]
    assert events(wire) == [{"event": "missing", "modules": ["tabulate"]}]
    assert answers(answer_r) == [{"site_dirs": ["/opt/codebox-packages/a"]}]
    assert requests.count == 1
    paused = requests.take_paused()
    assert paused >= 0.0 and requests.take_paused() == 0.0


@pytest.mark.parametrize(
    "line", [b'{"module": "a.b"}', b'{"module": "x y"}', b"[1]", b"garbage", b'{"module": 3}',
             '{"module": "ünï"}'.encode()]
)
def test_only_module_names_are_relayed(wire, pipe, line):
    answer_r, answer_w = pipe
    requests, signals = relay(answer_w, b"")
    requests.feed(line + b"\n")
    assert answers(answer_r) == [{"error": "not a module name"}]
    assert signals == [] and events(wire) == []


def test_requests_are_capped_per_run(wire, pipe):
    answer_r, answer_w = pipe
    requests, signals = relay(answer_w, b'{"site_dirs": []}\n' * 20)
    for i in range(MAX_INSTALL_REQUESTS + 2):
        requests.feed(b'{"module": "m%d"}\n' % i)
    got = answers(answer_r)
    assert got[:MAX_INSTALL_REQUESTS] == [{"site_dirs": []}] * MAX_INSTALL_REQUESTS
    assert got[MAX_INSTALL_REQUESTS:] == [{"error": "no more package installs in this run"}] * 2
    assert len(events(wire)) == MAX_INSTALL_REQUESTS


def test_an_overlong_request_is_dropped(wire, pipe):
    answer_r, answer_w = pipe
    requests, _ = relay(answer_w, b"")
    requests.feed(b"x" * 65537)
    assert requests.buffer == b""
    assert answers(answer_r) == [{"error": "package request too long"}]


@pytest.mark.parametrize(
    "host, said",
    [(b"", "the host did not answer"), (b"{broken\n", "the host's answer was unreadable")],
)
def test_a_silent_or_garbled_host_is_an_error_for_the_code(wire, pipe, host, said):
    answer_r, answer_w = pipe
    requests, signals = relay(answer_w, host)
    requests.feed(b'{"module": "x"}\n')
    assert answers(answer_r) == [{"error": said}]
    assert signals == [signal.SIGSTOP, signal.SIGCONT]


def test_only_the_hosts_package_directories_join_the_path(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = list(sys.path)
    add_site_dirs(["/opt/codebox-packages/p1", "/etc", 3, "/opt/codebox-packages/p1", "relative"])
    assert sys.path == before + ["/opt/codebox-packages/p1"]


def test_finders_are_invalidated_only_when_package_directories_are_given(monkeypatch):
    import importlib

    monkeypatch.setattr(sys, "path", list(sys.path))
    calls = []
    monkeypatch.setattr(importlib, "invalidate_caches", lambda: calls.append(1))
    add_site_dirs([])
    add_site_dirs(["/etc", 3])
    assert calls == []
    add_site_dirs(["/opt/codebox-packages/p1"])
    add_site_dirs(["/opt/codebox-packages/p1"])  # known already: may hold new packages
    assert calls == [1, 1]


@pytest.fixture
def installer(tmp_path):
    ask_r, ask_w = os.pipe()
    answer_r, answer_w = os.pipe()
    finder = HostInstaller(ask_w, answer_r, str(tmp_path))
    sys.meta_path.append(finder)
    yield finder, ask_r, answer_w
    sys.meta_path.remove(finder)
    for fd in (ask_r, ask_w, answer_r, answer_w):
        os.close(fd)


def test_an_import_in_the_code_asks_and_fails_with_the_hosts_words(installer):
    finder, ask_r, answer_w = installer
    os.write(answer_w, b'{"site_dirs": [], "error": "not on the allow list"}\n')
    with pytest.raises(ModuleNotFoundError) as raised:
        exec(compile("import zz_codebox_missing_one", "<code>", "exec"), {})
    assert str(raised.value) == (
        "No module named 'zz_codebox_missing_one' (not on the allow list)"
    )
    assert json.loads(os.read(ask_r, 1024)) == {"module": "zz_codebox_missing_one"}
    # Asked once: the second import fails as usual.
    with pytest.raises(ModuleNotFoundError) as again:
        exec(compile("import zz_codebox_missing_one", "<code>", "exec"), {})
    assert "allow list" not in str(again.value)


def test_a_library_probing_for_a_module_does_not_ask(installer):
    finder, ask_r, _ = installer
    os.set_blocking(ask_r, False)
    with pytest.raises(ModuleNotFoundError):
        exec(compile("import zz_codebox_optional_dep", "/usr/lib/somelib.py", "exec"), {})
    with pytest.raises(BlockingIOError):
        os.read(ask_r, 1024)
    assert finder.asked == set()


def test_stdlib_dotted_and_non_identifier_names_are_never_asked(installer):
    finder, _, _ = installer
    assert finder.find_spec("sqlite3", None) is None
    assert finder.find_spec("a.b", None) is None
    assert finder.find_spec("not-a-name", None) is None
    assert finder.find_spec("codebox_files", None) is None
    assert finder.find_spec("sub", ["/some/package/path"]) is None
    assert finder.asked == set()
