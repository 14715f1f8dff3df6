"""The real runner as a subprocess, for end-to-end tests without Docker.

The runner is a container's PID 1: it signals every other process (`kill(-1)`) to stop or
end the code. So it is only ever started here as PID 1 of a PID namespace of its own
(`unshare --pid`), where that reaches the code's processes and nothing of the host. As
root the code's process drops to the code's uid as in the image; without root the
namespace is in a user namespace too and the runner, not root there, skips the drop.
Where neither is possible, or no Python is usable by the code's uid, the end-to-end tests
are skipped.
"""

import hashlib
import hmac
import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import time

SANDBOX_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(SANDBOX_DIR, "runner.py")
# The uid the code's process runs as when the tests run as root: the image's user.
CODE_UID = 10001

_prefix = None
_python = None


def _open_to_others(path):
    """Whether another uid can reach and read `path` (every directory on the way open)."""
    import stat

    path = os.path.realpath(path)
    try:
        if not os.stat(path).st_mode & stat.S_IROTH:
            return False
        parent = os.path.dirname(path)
        while True:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
            if parent == "/":
                return True
            parent = os.path.dirname(parent)
    except OSError:
        return False


def runner_python():
    """A Python the code's process can still use once it is another uid: as root, one
    whose standard library that uid can read (a pyenv under /root is not); else this one."""
    global _python
    if _python is None:
        _python = ""
        candidates = [sys.executable] if os.geteuid() != 0 else [sys.executable, "/usr/bin/python3"]
        for exe in candidates:
            try:
                out = subprocess.run(
                    [exe, "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
                    capture_output=True, text=True, timeout=30,
                )
            except (OSError, subprocess.TimeoutExpired):
                continue
            stdlib = out.stdout.strip()
            if out.returncode == 0 and (os.geteuid() != 0 or _open_to_others(os.path.join(stdlib, "ast.py"))):
                _python = exe
                break
    return _python or None


def namespace_prefix():
    """The command that starts a process as PID 1 of a new PID namespace, or None."""
    global _prefix
    if _prefix is None:
        _prefix = []
        if shutil.which("unshare"):
            base = ["unshare", "--pid", "--fork", "--kill-child"]
            if os.geteuid() != 0:
                base = ["unshare", "--user", "--pid", "--fork", "--kill-child"]
            try:
                ok = subprocess.run(base + ["true"], capture_output=True, timeout=10).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
            if ok:
                _prefix = base
    return _prefix or None


class Scratch:
    """Directories the code's uid can use: under /var/tmp (pytest's own are root's, 0700)."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="codebox-runner-test.", dir="/var/tmp")
        os.chmod(self.root, 0o755)

    def dir(self, name, mode=0o1777):
        path = os.path.join(self.root, name)
        os.mkdir(path)
        os.chmod(path, mode)
        return path

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


def job_for(code, workdir, output_dir, **extra):
    job = {
        "code": code,
        "timeout_s": 10.0,
        "memory_mb": 512,
        "workdir": workdir,
        "output_dir": output_dir,
        "max_output_chars": 10000,
        "max_output_files": 10,
        "max_output_file_bytes": 1 << 20,
        "max_output_total_bytes": 4 << 20,
        "files": [],
        "scan_imports": False,
        "session": None,
        "live": None,
        "auth": secrets.token_hex(32),
    }
    job.update(extra)
    return job


class Transcript:
    def __init__(self):
        self.ready = None
        self.lines = []  # (mac, body bytes, message) after ready
        self.blobs = {}  # event name -> bytes
        self.returncode = None
        self.stderr = b""

    def events(self):
        return [message["event"] for _, _, message in self.lines]

    def one(self, event):
        found = [message for _, _, message in self.lines if message["event"] == event]
        assert len(found) == 1, (event, self.events())
        return found[0]

    @property
    def result(self):
        return self.one("result")


class Stream:
    """Reads the runner's stdout as the host does: lines, and the blobs they announce."""

    def __init__(self, fd, deadline):
        self.fd = fd
        self.buf = b""
        self.deadline = deadline

    def _fill(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the runner did not finish in time")
        readable, _, _ = select.select([self.fd], [], [], left)
        if not readable:
            raise TimeoutError("the runner did not finish in time")
        data = os.read(self.fd, 1 << 16)
        if not data:
            raise EOFError("the runner's stdout ended")
        self.buf += data

    def line(self):
        while b"\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def exactly(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


def run(job, answer=None, timeout=60, preload=None, env=None, send_job=True, runner=RUNNER,
        before=b"", pause_s=0.0):
    """Starts the runner, gives it `job` (a dict, or raw bytes as the job line) and reads
    its whole stream, checking every line's MAC under the job's key. `answer(modules)` is
    the host's reply (a dict) to a `missing` event. `before`: bytes written ahead of the
    job line (a `prepare` line), `pause_s` before the job follows."""
    prefix = namespace_prefix()
    assert prefix and runner_python(), "no way to run the runner here (the caller skips)"
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": SANDBOX_DIR,
        "PYTHONDONTWRITEBYTECODE": "1",
        "CODEBOX_CODE_UID": str(CODE_UID),
        "LANG": "C.UTF-8",
    }
    environment.update(env or {})
    command = prefix + [runner_python(), "-u", runner] + (["--preload", preload] if preload else [])
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
        cwd="/",
    )
    transcript = Transcript()
    stream = Stream(proc.stdout.fileno(), time.monotonic() + timeout)
    try:
        transcript.ready = json.loads(stream.line())
        if not send_job:
            proc.stdin.close()
            proc.wait(timeout=timeout)
            transcript.returncode = proc.returncode
            transcript.rest = proc.stdout.read()
            transcript.stderr = proc.stderr.read()
            return transcript
        line = job if isinstance(job, bytes) else json.dumps(job).encode() + b"\n"
        if before:
            proc.stdin.write(before)
            proc.stdin.flush()
            time.sleep(pause_s)
        proc.stdin.write(line)
        proc.stdin.flush()
        key = str(job.get("auth", "")).encode() if isinstance(job, dict) else b""
        while True:
            try:
                raw = stream.line()
            except EOFError:
                break
            mac, _, body = raw.partition(b" ")
            expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
            assert hmac.compare_digest(mac, expected), "a line without the job's MAC: %r" % raw
            message = json.loads(body)
            transcript.lines.append((mac, body, message))
            event = message["event"]
            if event in ("outputs", "state"):
                blob = stream.exactly(message["bytes"])
                assert hashlib.sha256(blob).hexdigest() == message["sha256"]
                transcript.blobs[event] = blob
            elif event == "missing":
                reply = answer(message["modules"]) if answer else {"error": "no packages here"}
                proc.stdin.write(json.dumps(reply).encode() + b"\n")
                proc.stdin.flush()
            elif event == "done":
                break
        proc.stdin.close()
        proc.wait(timeout=max(1, stream.deadline - time.monotonic()))
        transcript.returncode = proc.returncode
        transcript.rest = stream.buf + proc.stdout.read()
        transcript.stderr = proc.stderr.read()
        return transcript
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            try:
                f.close()
            except OSError:
                pass
