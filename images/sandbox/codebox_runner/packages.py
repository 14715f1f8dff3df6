"""Missing packages, both ends of the code's request pipe: the finder in the code's process
that asks for an import nothing else satisfies, and the runner's relay that asks the host
(`missing`) while every process of the code is stopped."""

import json
import os
import signal
import sys
import time

from .constants import (
    MAX_HOST_ANSWER_BYTES,
    MAX_INSTALL_ERROR_CHARS,
    MAX_INSTALL_REQUESTS,
    MAX_PACKAGE_REQUEST_BYTES,
    READ_CHUNK,
)
from .protocol import Event, emit

# Where the host mounts the packages it installs; no other directory is put on the path.
PACKAGES_ROOT = "/opt/codebox-packages/"
# What the code's own frames are named: its cell, compiled as this file name.
CODE_FILENAME = "<code>"


class HostInstaller:
    """The last finder on the code's `sys.meta_path`: an import that nothing else can satisfy
    asks the host for the package, through the runner, while the code is stopped.

    Only imports written in the code itself (or in modules it wrote to its working
    directory) ask: a module the code creates and imports is found before this finder is
    reached and never goes to the index, and a library probing for optional dependencies
    gets its ImportError as usual."""

    def __init__(self, ask_w, answer_r, workdir):
        self.ask_w = ask_w
        self.answer_r = answer_r
        self.workdir = workdir.rstrip("/") + "/"
        self.asked = set()

    def _from_the_code(self):
        frame = sys._getframe(2)
        while frame is not None:
            name = frame.f_code.co_filename
            if name.startswith("<frozen importlib") or name.endswith("importlib/__init__.py"):
                frame = frame.f_back
                continue
            return name == CODE_FILENAME or name.startswith(self.workdir)
        return False

    def find_spec(self, fullname, path, target=None):
        import importlib.machinery

        if path is not None or "." in fullname or fullname in self.asked:
            return None
        if not (fullname.isascii() and fullname.isidentifier()):
            return None
        if fullname in sys.stdlib_module_names or fullname == "codebox_files":
            return None
        if len(self.asked) >= MAX_INSTALL_REQUESTS or not self._from_the_code():
            return None
        self.asked.add(fullname)
        try:
            os.write(self.ask_w, json.dumps({"module": fullname}).encode() + b"\n")
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = os.read(self.answer_r, READ_CHUNK)
                if not chunk:
                    return None
                answer += chunk
            reply = json.loads(answer)
        except (OSError, ValueError):
            return None
        add_site_dirs(reply.get("site_dirs", []))
        if reply.get("error"):
            raise ModuleNotFoundError(
                "No module named %r (%s)"
                % (fullname, str(reply["error"])[:MAX_INSTALL_ERROR_CHARS]),
                name=fullname,
            )
        return importlib.machinery.PathFinder.find_spec(fullname, None)


def add_site_dirs(dirs):
    """Puts the host-provided package directories on the code's path, after the image's own.

    Plain path entries, never `site.addsitedir`: a `.pth` file in a cached package would run
    its `import` lines before the user's code (and for every later user of the cache)."""
    import importlib

    given = False
    for path in dirs:
        if isinstance(path, str) and path.startswith(PACKAGES_ROOT):
            given = True
            if path not in sys.path:
                sys.path.append(path)
    # A directory already listed may have new packages in it (installed within the second
    # its finder last looked); with none given nothing changed, and invalidating every
    # finder costs a millisecond of each run.
    if given:
        importlib.invalidate_caches()


def stop_the_code(sig):
    """SIGSTOP/SIGCONT to every process but this one: the code and whatever it started."""
    try:
        os.kill(-1, sig)
    except (ProcessLookupError, PermissionError):
        pass


class PackageRequests:
    """The code's requests for missing packages, relayed to the host one line at a time.

    The pipe belongs to the code, so anything may arrive on it: only well-formed names are
    relayed, at most MAX_INSTALL_REQUESTS of them; every process of the code is stopped
    while the host works, so the pause is nobody's time."""

    def __init__(self, answer_w, host_in=None, pause=stop_the_code):
        self.answer_w = answer_w
        # The host's answers arrive on the runner's stdin, after the job line.
        self.host_in = host_in
        self.pause = pause
        self.buffer = b""
        self.count = 0
        self.paused = 0.0
        self.paused_total = 0.0

    def feed(self, data):
        self.buffer += data
        if len(self.buffer) > MAX_PACKAGE_REQUEST_BYTES:
            self.buffer = b""
            self.answer({"error": "package request too long"})
            return
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.handle(line)

    def handle(self, line):
        try:
            name = json.loads(line).get("module")
        except (ValueError, AttributeError):
            name = None
        if not (isinstance(name, str) and name.isascii() and name.isidentifier()):
            self.answer({"error": "not a module name"})
            return
        if self.count >= MAX_INSTALL_REQUESTS:
            self.answer({"error": "no more package installs in this run"})
            return
        self.count += 1
        paused_at = time.monotonic()
        self.pause(signal.SIGSTOP)
        try:
            emit(Event.MISSING, modules=[name])
            host_in = self.host_in if self.host_in is not None else sys.stdin.buffer
            reply = host_in.readline(MAX_HOST_ANSWER_BYTES)
        finally:
            self.pause(signal.SIGCONT)
        try:
            answer = json.loads(reply) if reply else {"error": "the host did not answer"}
        except ValueError:
            answer = {"error": "the host's answer was unreadable"}
        waited = time.monotonic() - paused_at
        self.paused += waited
        self.paused_total += waited
        self.answer(answer)

    def answer(self, reply):
        try:
            os.write(self.answer_w, json.dumps(reply).encode() + b"\n")
        except OSError:
            pass

    def take_paused(self):
        paused, self.paused = self.paused, 0.0
        return paused
