"""codebox in-container runner.

Started as the container's PID 1, before its job is known (a warm pool can start it early).
It optionally imports the data stack, announces readiness, then reads exactly one JSON job
line from stdin, runs the user's code once in a forked child, enforces the time limit, kills
every other process in the container, and streams back one result plus a tar of the output
directory. Protocol on stdout (the only channel the host reads):

    {"event": "ready", "protocol": 6}
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
    MAC {"event": "outputs", "bytes": N, "sha256": H}   then exactly N bytes of tar
    MAC {"event": "state", "bytes": N, "sha256": H}     then exactly N bytes of snapshot,
                                             only when the job has a session and its
                                             state was saved
    MAC {"event": "done"}

A job with a `session` runs as a notebook cell that remembers: the code's process restores
the session's snapshot before the code and saves the top-level variables after it, and
reports each step on a pipe of its own (SessionPhases). The snapshot is unpickled only by
the code's process. That pipe is the code's too, so nothing on it moves a clock: the time
limit covers restoring, the code and saving alike, measured here from the hand-over to the
process's exit (unpickling and pickling run the code's own classes anyway).

Every line after the job carries MAC, the hex HMAC-SHA256 of its JSON under the job's
one-time key (`auth` in the job line). Only this process knows the key: the code's process
was forked before the job arrived and never sees it, and it runs as another uid, so it can
neither signal this process nor open its descriptors or memory, under runc or gVisor.

The host writes the job only after `ready`, and only when `protocol` is the version it
speaks: bump PROTOCOL_VERSION (and the host's) whenever the two stop understanding each
other, so an out-of-date image is named as such instead of failing in odd ways.

The user's code never holds this process's stdout: its fds 1 and 2 are pipes read here.
This process runs as root with only CAP_SETUID, CAP_SETGID and CAP_KILL (the container's
whole capability set); the code's process drops to the sandbox uid before it reads its job.
The host still treats everything on this stream as untrusted and re-validates it.
"""

import codecs
import ctypes
import re
import hashlib
import hmac
import io
import json
import os
import select
import signal
import stat
import sys
import tarfile
import time
import traceback

# What an exception's reported type may look like: `ValueError`, `pandas.errors.ParserError`.
_DOTTED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

PROTOCOL_OUT = sys.stdout.buffer
PROTOCOL_VERSION = 8
PR_SET_DUMPABLE = 4
READ_CHUNK = 65536
# The uid:gid the user's code runs as (the image's `sandbox` user); never this process's.
CODE_GID = 10001


def _code_uid():
    """This container's own uid for the code (the host picks one per container, so the
    kernel's per-user quotas are per run); taken out of the environment before the code's
    process is forked. 10001, the image's user, when the host names none."""
    value = os.environ.pop("CODEBOX_CODE_UID", "")
    try:
        uid = int(value)
    except ValueError:
        return 10001
    return uid if 10001 <= uid < 2**31 - 1 else 10001


CODE_UID = _code_uid()
# Signals whose default action would end this process; none of them may cost the outputs.
SHIELDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM")

# At most this many package requests per run, whatever the code writes to its pipe.
MAX_INSTALL_REQUESTS = 10
# Names listed per report (kept, not kept, restored...): the rest are counted.
MAX_LISTED_NAMES = 200

# The job's one-time key, known from the job line on; every later line is authenticated.
_auth_key = None


def emit(message):
    body = json.dumps(message).encode()
    if _auth_key is not None:
        mac = hmac.new(_auth_key, body, hashlib.sha256).hexdigest().encode()
        body = mac + b" " + body
    PROTOCOL_OUT.write(body + b"\n")
    PROTOCOL_OUT.flush()


def shield_signals():
    for name in SHIELDED_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_IGN)


def unshield_signals():
    for name in SHIELDED_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_DFL)


def drop_privileges():
    """Becomes the code's uid for good: no supplementary groups, no capabilities left (a
    setuid away from root clears them), nothing of this process reachable from the code."""
    if os.getuid() != 0:
        return  # started as an unprivileged user already (an operator's own image run)
    os.setgroups([])
    os.setgid(CODE_GID)
    os.setuid(CODE_UID)


def set_dumpable(value):
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def preload(modules):
    """Import the data stack before the job arrives so a forked child starts warm."""
    import gc

    for name in list(modules) + [
        "codebox_files", "codebox_display", "codebox_session", "ast", "tokenize",
        "importlib.util", "site",
    ]:
        try:
            __import__(name)
            if name == "matplotlib":
                import matplotlib

                matplotlib.use("module://codebox_backend")
                import matplotlib.pyplot  # noqa: F401
        except Exception:  # a broken optional module must not stop the runner
            pass
    warm_up_data_stack()
    try:
        import codebox_session

        codebox_session._cloudpickle()
    except Exception:
        pass
    # Objects that exist now are shared with every forked child; keeping the collector off
    # them spares the child copying their pages.
    gc.freeze()


def warm_up_data_stack():
    """Runs the first-use paths of pandas and matplotlib once (lazy imports, font loading,
    the Agg renderer, PNG encoding), so the user's first table and first figure do not pay
    for them."""
    try:
        import io

        import matplotlib.pyplot as plt
        import pandas as pd

        frame = pd.read_csv(io.StringIO("a,b\n1,2.5\n3,4.5\n"))
        str(frame.describe())
        fig, ax = plt.subplots()
        frame["b"].plot(ax=ax, title="warm-up")
        fig.savefig(io.BytesIO(), format="png")
        plt.close(fig)
    except Exception:  # a broken optional module must not stop the runner
        pass


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
            return name == "<code>" or name.startswith(self.workdir)
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
                chunk = os.read(self.answer_r, 65536)
                if not chunk:
                    return None
                answer += chunk
            reply = json.loads(answer)
        except (OSError, ValueError):
            return None
        add_site_dirs(reply.get("site_dirs", []))
        if reply.get("error"):
            raise ModuleNotFoundError(
                "No module named %r (%s)" % (fullname, str(reply["error"])[:1500]), name=fullname
            )
        return importlib.machinery.PathFinder.find_spec(fullname, None)


def add_site_dirs(dirs):
    """Puts the host-provided package directories on the code's path, after the image's own.

    Plain path entries, never `site.addsitedir`: a `.pth` file in a cached package would run
    its `import` lines before the user's code (and for every later user of the cache)."""
    import importlib

    for path in dirs:
        if isinstance(path, str) and path.startswith("/opt/codebox-packages/"):
            if path not in sys.path:
                sys.path.append(path)
    importlib.invalidate_caches()


class CappedText:
    """Keeps the head and tail of a byte stream, decoded as UTF-8, within a char budget.

    Memory stays bounded however much the code prints; the total is still counted so the
    result can say honestly how much was dropped.
    """

    def __init__(self, max_chars):
        self.max_chars = max_chars
        self.head_budget = max_chars // 2
        self.tail_budget = max_chars - self.head_budget
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
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

    def __init__(self, spec):
        self.max_event = max(1, int(spec.get("max_event_chars", 4096)))
        self.max_total = max(0, int(spec.get("max_total_chars", 0)))
        self.interval = max(0.01, float(spec.get("interval_ms", 100)) / 1000.0)
        self.decoders = {}
        self.pending = {}
        self.skipped = {}
        self.sent = {}
        self.unsent = {}
        self.next_flush = 0.0

    def feed(self, stream, data, final=False):
        decoder = self.decoders.setdefault(
            stream, codecs.getincrementaldecoder("utf-8")(errors="replace")
        )
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
        for stream in ("stdout", "stderr"):
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
            emit({"event": "output", "stream": stream, "text": text, "skipped": skipped})
        if force:
            for stream, unsent in sorted(self.unsent.items()):
                emit({"event": "output", "stream": stream, "text": "", "skipped": unsent})
            self.unsent = {}
        self.next_flush = now + self.interval


class CpuClock:
    """CPU time the run used, as the kernel counts it: the container's cgroup (v2 cpu.stat
    or v1 cpuacct), which the code cannot write; where a runtime shows no cgroup (gVisor),
    the reaped processes' own usage (every process of the code is this process's child or
    is reparented to it, and all are reaped before reading)."""

    CGROUP_FILES = (
        ("/sys/fs/cgroup/cpu.stat", 1000.0),
        ("/sys/fs/cgroup/cpuacct/cpuacct.usage", 1.0),
        ("/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage", 1.0),
    )

    def __init__(self):
        self.cgroup_ns = self._cgroup_ns()
        self.children_s = self._children_s()

    @classmethod
    def _cgroup_ns(cls):
        for path, ns_per_unit in cls.CGROUP_FILES:
            try:
                with open(path) as f:
                    text = f.read()
            except OSError:
                continue
            try:
                if path.endswith("cpu.stat"):
                    for line in text.splitlines():
                        key, _, value = line.partition(" ")
                        if key == "usage_usec":
                            return int(value) * ns_per_unit
                    continue
                return int(text.strip()) * ns_per_unit
            except ValueError:
                continue
        return None

    @staticmethod
    def _children_s():
        import resource

        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def ms_since(self):
        if self.cgroup_ns is not None:
            now = self._cgroup_ns()
            if now is not None:
                return max(0.0, (now - self.cgroup_ns) / 1e6)
        return max(0.0, (self._children_s() - self.children_s) * 1000.0)


def read_oom_kills():
    """OOM kill counter of this container's memory cgroup (v1 or v2), or None."""
    for path, key in (
        ("/sys/fs/cgroup/memory.events", "oom_kill"),
        ("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill"),
    ):
        try:
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 2 and parts[0] == key:
                        return int(parts[1])
        except (OSError, ValueError):
            continue
    return None


def kill_everything_else():
    """SIGKILL every process in the container but this one, then reap them all.

    As PID 1 this reaches background processes and daemons the code left behind, which
    must not outlive the run nor race the output collection.
    """
    for _ in range(50):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except PermissionError:
            pass
        reaped_any = False
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                break
            reaped_any = True
        if not reaped_any:
            time.sleep(0.002)


def child_main(job, out_w, err_w, report_w, ask_w, answer_r, phase_w):
    """Runs in the forked child: becomes the user's program."""
    set_dumpable(1)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    # The phase pipe exists only for a session; without one the code must not hold it.
    session = job.get("session")
    if not session:
        os.close(phase_w)
    keep = sorted({report_w, ask_w, answer_r} | ({phase_w} if session else set()))
    low = 3
    for fd in keep:
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 65536)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), line_buffering=True, errors="backslashreplace"
    )
    os.chdir(job["workdir"])
    for key, value in job.get("env", {}).items():
        os.environ[key] = value
    sys.argv = ["main.py"]
    add_site_dirs(job.get("site_dirs", []))
    sys.path.insert(0, job["workdir"])
    if job.get("scan_imports"):
        sys.meta_path.append(HostInstaller(ask_w, answer_r, job["workdir"]))
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    filename = "<code>"
    source = job["code"]
    import linecache

    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    globals_ = {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__}
    # load_file and display are ready to use without an import, as in a notebook.
    try:
        import codebox_files

        codebox_files.register(job.get("files", []))
        globals_["load_file"] = codebox_files.load_file
    except ImportError:
        pass
    try:
        import codebox_display
    except ImportError:
        codebox_display = None
    if codebox_display is not None:
        globals_["display"] = codebox_display.display
    if session:
        restore_session(session, globals_, phase_w)
    exit_code = 0
    report = None
    try:
        body, last = compile_cell(source, filename)
        exec(body, globals_)
        if last is not None:
            value = eval(last, globals_)
            if codebox_display is not None:
                codebox_display.show_last_value(value)
    except SystemExit as exc:
        code = exc.code
        if code is None:
            exit_code = 0
        elif isinstance(code, int):
            exit_code = code & 0xFF
        else:
            print(code, file=sys.stderr)
            exit_code = 1
    except BaseException as exc:  # the user's exception, reported like python would
        tb = exc.__traceback__
        # Hide this runner's own frame so the traceback starts at the user's code; a syntax
        # error says where it is without any frame.
        if isinstance(exc, SyntaxError):
            tb = None
        elif tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        traceback.print_exception(type(exc), exc, tb)
        hint_missing_file(exc, job.get("files") or [])
        name = type(exc).__qualname__
        module = type(exc).__module__
        if module not in ("builtins", "__main__"):
            name = "%s.%s" % (module, name)
        # The name is the code's to choose: only a dotted identifier is reported, so it can
        # carry no formatting, link or newline to wherever it is shown.
        if not (isinstance(name, str) and len(name) <= 200 and _DOTTED_NAME.fullmatch(name)):
            name = "Exception"
        report = {"type": name, "message": str(exc)[:2000]}
        exit_code = 1
    # Figures still open when the code ends are shown, as a notebook shows them.
    if codebox_display is not None:
        try:
            codebox_display.show_figures()
        except Exception:
            pass
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    if report is not None:
        try:
            os.write(report_w, json.dumps(report).encode())
        except OSError:
            pass
    if session:
        tell_runner(phase_w, {"phase": "finished", "exit_code": exit_code})
        save_session(session, globals_, phase_w)
    os._exit(exit_code)


def hint_missing_file(exc, files):
    """A missing path that names one of the user's files (its name, its /mnt/data name or
    its id, in any directory): say where it is. Models look for uploads in the working
    directory or under paths of other interpreters."""
    if not isinstance(exc, FileNotFoundError):
        return
    missing = exc.filename
    if not isinstance(missing, str):
        # Some libraries (pandas) raise it with the path only in the message.
        quoted = re.search(r"'([^']+)'", str(exc))
        missing = quoted.group(1) if quoted else ""
    wanted = os.path.basename(missing.strip())
    for entry in files:
        if not isinstance(entry, dict):
            continue
        file_id = entry.get("file_id")
        names = {entry.get("filename"), entry.get("data_name"), file_id}
        if isinstance(file_id, str):
            # The id with the type's extension, as a model guesses a stored name.
            names.add("%s.%s" % (file_id, entry.get("file_type")))
        if wanted and wanted in names and _plain_name(entry.get("data_name")):
            print(
                "codebox: the user's file %r is at /mnt/data/%s; load_file(%r) reads it too"
                % (wanted, entry["data_name"], entry.get("file_id")),
                file=sys.stderr,
            )
            return


def compile_cell(source, filename):
    """The code as a notebook cell: everything, and separately its last statement when
    that is an expression whose value is shown (not when the line ends with `;`)."""
    import ast

    tree = ast.parse(source, filename, "exec")
    if not tree.body or not isinstance(tree.body[-1], ast.Expr) or ends_with_semicolon(source):
        return compile(tree, filename, "exec"), None
    last = tree.body.pop()
    expression = ast.Expression(last.value)
    return compile(tree, filename, "exec"), compile(expression, filename, "eval")


def ends_with_semicolon(source):
    """IPython's rule: a cell whose last code token is `;` shows nothing."""
    import tokenize

    last = None
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type not in (
                tokenize.COMMENT,
                tokenize.NL,
                tokenize.NEWLINE,
                tokenize.INDENT,
                tokenize.DEDENT,
                tokenize.ENDMARKER,
            ):
                last = token
    except (tokenize.TokenError, SyntaxError):
        return False
    return last is not None and last.type == tokenize.OP and last.string == ";"


def tell_runner(fd, message):
    data = json.dumps(message).encode() + b"\n"
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        pass


def import_like_the_code(name):
    """An import as if the code wrote it, so a package the host installed for an earlier
    run of the session is asked for again (and found in the cache) before values that need
    it are unpickled."""
    try:
        exec(compile("import %s" % name, "<code>", "exec"), {})
    except BaseException:
        pass


def restore_session(session, globals_, phase_w):
    report = {"restored": [], "not_restored": [], "error": None}
    path = session.get("restore")
    if path:
        try:
            import codebox_session

            report = codebox_session.restore(path, globals_, import_like_the_code)
        except BaseException as exc:
            report["error"] = "the saved state could not be restored (%s)" % type(exc).__name__
    tell_runner(phase_w, dict(report, phase="restored"))


def save_session(session, globals_, phase_w):
    try:
        import codebox_session

        report = codebox_session.save(
            globals_, session["save_to"], int(session["max_bytes"])
        )
        report["phase"] = "saved"
    except BaseException as exc:
        report = {"phase": "saved", "error": "%s: %s" % (type(exc).__name__, str(exc)[:200])}
    tell_runner(phase_w, report)


class Forked:
    """The code's process, forked before its job is known, waiting on a pipe for it.

    Forking a process that has the data stack imported costs milliseconds (page tables, the
    child's first copy-on-write faults); done ahead, that time is not in the request. No
    user code runs before the job arrives and the child has replaced its stdio.
    """

    def __init__(self):
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        self.report_r, report_w = os.pipe()
        self.ask_r, ask_w = os.pipe()
        answer_r, self.answer_w = os.pipe()
        self.phase_r, phase_w = os.pipe()
        self.wake_r, self.wake_w = os.pipe()
        job_r, self.job_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.pid = os.fork()
        if self.pid == 0:
            for fd in (
                self.out_r,
                self.err_r,
                self.report_r,
                self.ask_r,
                self.answer_w,
                self.phase_r,
                self.wake_r,
                self.wake_w,
                self.job_w,
            ):
                os.close(fd)
            signal.set_wakeup_fd(-1)
            unshield_signals()
            try:
                drop_privileges()
            except OSError:
                os._exit(112)  # never run code with the runner's privileges
            chunks = []
            while True:
                data = os.read(job_r, READ_CHUNK)
                if not data:
                    break
                chunks.append(data)
            if not chunks:
                os._exit(0)  # the runner ended without a job
            job = json.loads(b"".join(chunks))
            child_main(job, out_w, err_w, report_w, ask_w, answer_r, phase_w)
        for fd in (out_w, err_w, report_w, ask_w, answer_r, phase_w, job_r):
            os.close(fd)

    def hand_over(self, job):
        """Gives the child its job; it starts the code when the pipe closes."""
        data = json.dumps(job).encode()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.job_w, view):]
        except OSError:
            pass  # the child died: the wait loop reports how
        os.close(self.job_w)


class PackageRequests:
    """The code's requests for missing packages, relayed to the host one line at a time.

    The pipe belongs to the code, so anything may arrive on it: only well-formed names are
    relayed, at most MAX_INSTALL_REQUESTS of them; every process of the code is stopped
    while the host works, so the pause is nobody's time."""

    def __init__(self, answer_w):
        self.answer_w = answer_w
        self.buffer = b""
        self.count = 0
        self.paused = 0.0
        self.paused_total = 0.0

    def feed(self, data):
        self.buffer += data
        if len(self.buffer) > 65536:
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
        stop_the_code(signal.SIGSTOP)
        try:
            emit({"event": "missing", "modules": [name]})
            reply = sys.stdin.buffer.readline(1024 * 1024)
        finally:
            stop_the_code(signal.SIGCONT)
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


def stop_the_code(sig):
    """SIGSTOP/SIGCONT to every process but this one: the code and whatever it started."""
    try:
        os.kill(-1, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_job(job, forked):
    """Runs the job's code; returns the open snapshot file to stream after the outputs, or
    None when there is none to send."""
    max_chars = int(job["max_output_chars"])
    timeout_s = float(job["timeout_s"])
    out_r, err_r, report_r, wake_r = forked.out_r, forked.err_r, forked.report_r, forked.wake_r
    pid = forked.pid
    session = job.get("session")

    oom_before = read_oom_kills()
    exposed = expose_files(job)
    emit({"event": "started"})
    forked.hand_over(job)
    handed = time.monotonic()

    stdout = CappedText(max_chars)
    stderr = CappedText(max_chars)
    live = LiveOutput(job["live"]) if isinstance(job.get("live"), dict) else None
    report = bytearray()
    asks = PackageRequests(forked.answer_w)
    phases = SessionPhases()

    def relayed(capped, stream):
        if live is None:
            return capped.feed

        def feed(data):
            capped.feed(data)
            live.feed(stream, data)

        return feed

    sinks = {
        out_r: relayed(stdout, "stdout"),
        err_r: relayed(stderr, "stderr"),
        report_r: report.extend,
        forked.ask_r: asks.feed,
    }
    if session:
        sinks[forked.phase_r] = phases.feed
    else:
        os.close(forked.phase_r)
    # One clock, started at the hand-over and read only here: what the code's process says
    # on its phase pipe never stops it or moves its deadline.
    deadline = handed + timeout_s
    code_paused = 0.0
    exit_status = None
    timed_out = False
    ended = None
    cpu_before = CpuClock()
    while True:
        now = time.monotonic()
        if exit_status is None and now >= deadline:
            timed_out = True
            ended = now
            break
        if exit_status is not None and (not sinks or now >= drain_until):
            break
        wait = (deadline if exit_status is None else drain_until) - now
        flush_in = live.due(now) if live is not None else None
        if flush_in is not None:
            wait = min(wait, flush_in)
        readable, _, _ = select.select(list(sinks) + [wake_r], [], [], max(wait, 0))
        for fd in readable:
            if fd == wake_r:
                try:
                    os.read(wake_r, 4096)
                except BlockingIOError:
                    pass
                continue
            data = os.read(fd, READ_CHUNK)
            if data:
                if fd != report_r or len(report) < 65536:
                    sinks[fd](data)
            else:
                os.close(fd)
                del sinks[fd]
        if live is not None:
            live.flush(time.monotonic())
        # Time spent waiting for the host's packages is never the code's.
        paused = asks.take_paused()
        deadline += paused
        code_paused += paused
        if exit_status is None:
            while True:
                try:
                    reaped, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if reaped == 0:
                    break
                if reaped == pid:
                    exit_status = status
                    exited = ended = time.monotonic()
                    # Background processes may hold the pipes open; drain briefly, not forever.
                    drain_until = exited + 0.2
    execution_ms = max(0.0, ended - handed - code_paused) * 1000.0
    left_at = time.monotonic()

    kill_everything_else()
    cpu_ms = cpu_before.ms_since()
    hide_files(exposed)
    for fd in list(sinks):
        try:
            while True:
                data = os.read(fd, READ_CHUNK)
                if not data:
                    break
                if fd != report_r or len(report) < 65536:
                    sinks[fd](data)
        except OSError:
            pass
        os.close(fd)
    stdout.feed(b"", final=True)
    stderr.feed(b"", final=True)
    if live is not None:
        live.feed("stdout", b"", final=True)
        live.feed("stderr", b"", final=True)
        live.flush(time.monotonic(), force=True)

    oom_after = read_oom_kills()
    out_of_memory = oom_after is not None and oom_after > (oom_before or 0)
    error = None
    # The report comes from the code's own process, so it may only describe a failure that
    # really happened: the child exits 1 after an uncaught exception.
    if (
        report
        and exit_status is not None
        and os.WIFEXITED(exit_status)
        and os.WEXITSTATUS(exit_status) == 1
    ):
        try:
            parsed = json.loads(report.decode("utf-8", "replace"))
            if (
                isinstance(parsed, dict)
                and isinstance(parsed.get("type"), str)
                and isinstance(parsed.get("message"), str)
            ):
                error = {"type": parsed["type"][:200], "message": parsed["message"][:2000]}
        except ValueError:
            error = None

    if timed_out:
        status, exit_code = "timeout", None
        error = {"type": "TimeoutError", "message": timeout_message(session, phases, timeout_s)}
    elif os.WIFSIGNALED(exit_status):
        sig = os.WTERMSIG(exit_status)
        exit_code = -sig
        if sig == signal.SIGKILL and out_of_memory:
            status = "oom"
            error = {
                "type": "MemoryError",
                "message": "the code ran out of memory (limit %s MB) and was killed"
                % job.get("memory_mb", "?"),
            }
        else:
            status = "killed"
            error = {
                "type": "Killed",
                "message": "the code was killed by signal %s" % signal.Signals(sig).name,
            }
    else:
        exit_code = os.WEXITSTATUS(exit_status)
        status = "ok" if exit_code == 0 else "error"
        if status == "error" and error is None:
            error = {"type": "SystemExit", "message": "exit code %d" % exit_code}

    emit(
        {
            "event": "result",
            "status": status,
            "exit_code": exit_code,
            "stdout": stdout.render(),
            "stderr": stderr.render(),
            "stdout_truncated": stdout.truncated(),
            "stderr_truncated": stderr.truncated(),
            "stdout_chars": stdout.total_chars,
            "stderr_chars": stderr.total_chars,
            "execution_ms": round(execution_ms, 3),
            "cpu_ms": None if cpu_ms is None else round(cpu_ms, 3),
            "error": error,
            "session": session_report(
                session, phases, handed, ended, timed_out, out_of_memory, timeout_s
            ),
        }
    )
    if session and phases.saved is not None and not phases.saved.get("error"):
        if not timed_out:
            return open_snapshot(session["save_to"], int(session["max_bytes"]))
    return None


# What /mnt/data points to in the image: made here, root's, so the code can read the links
# in it and neither add, remove nor replace one.
DATA_LINKS = "/tmp/.codebox-data"
INPUT_ROOT = "/mnt/inputs/"


def _plain_name(name):
    return (
        isinstance(name, str)
        and 0 < len(name.encode("utf-8", "replace")) <= 255
        and "/" not in name
        and "\0" not in name
        and name not in (".", "..")
    )


def expose_files(job):
    """The user's files where models look for them, besides load_file(id): as
    /mnt/data/<name> (ChatGPT's interpreter's place) and as the bare file id in the working
    directory. Links made by this process (root) in directories the code cannot change
    links in; the ones in the working directory are taken away again before outputs are
    collected, so they are never mistaken for outputs. Returns those."""
    made = []
    files = job.get("files") or []
    if not files:
        return made
    try:
        os.mkdir(DATA_LINKS, 0o755)
    except OSError:
        return made
    workdir = job.get("workdir")
    for entry in files:
        target = entry.get("path") if isinstance(entry, dict) else None
        if not (isinstance(target, str) and target.startswith(INPUT_ROOT)):
            continue
        name = entry.get("data_name")
        if _plain_name(name):
            try:
                os.symlink(target, os.path.join(DATA_LINKS, name))
            except OSError:
                pass
        file_id = entry.get("file_id")
        if isinstance(workdir, str) and _plain_name(file_id):
            link = os.path.join(workdir, file_id)
            try:
                os.symlink(target, link)
                made.append(link)
            except OSError:
                pass
    return made


def hide_files(links):
    for link in links:
        try:
            if os.path.islink(link):
                os.unlink(link)
        except OSError:
            pass


def timeout_message(session, phases, timeout_s):
    """What the run was doing, by its own account, when its limit ran out."""
    if session and phases.restored_at is None:
        doing = "while the session's variables were being restored"
    elif session and phases.finished_at is not None:
        doing = "while the session's variables were being saved (the output is kept, the variables are not)"
    else:
        return "execution exceeded the time limit of %g s and was stopped" % timeout_s
    return "the time limit of %g s ran out %s, and the run was stopped" % (timeout_s, doing)


def session_report(session, phases, handed, ended, timed_out, out_of_memory, timeout_s):
    """What became of the session's state in this run, for the host (which re-checks it).
    The split into restore and save times is the code's process's own account, bounded by
    the run's measured time; it never changes what the run is charged."""
    if not session:
        return None
    restore = phases.restore or {}
    saved = phases.saved or {}
    save_error = saved.get("error")
    if timed_out and phases.finished_at is not None:
        save_error = "saving did not finish within the time limit of %g s" % timeout_s
    elif timed_out:
        save_error = "the code was stopped at its time limit"
    elif phases.finished_at is None:
        save_error = "the code ended without finishing"
    elif phases.saved is None:
        save_error = "out of memory while saving" if out_of_memory else "the save did not complete"
    restored_at = min(phases.restored_at or ended, ended)
    restore_ms = (restored_at - handed) * 1000.0
    save_ms = (ended - max(phases.finished_at, restored_at)) * 1000.0 if phases.finished_at else 0.0
    return {
        "restore_ms": round(max(restore_ms, 0.0), 3),
        "restored": restore.get("restored", []),
        "not_restored": restore.get("not_restored", []),
        "restore_error": restore.get("error") or (
            None if phases.restored_at is not None
            else "restoring did not finish within the time limit of %g s" % timeout_s
        ),
        "save_ms": round(max(save_ms, 0.0), 3),
        "saved": save_error is None,
        "kept": saved.get("kept", []),
        "kept_count": saved.get("kept_count", 0),
        "not_kept": saved.get("not_kept", []),
        "not_kept_count": saved.get("not_kept_count", 0),
        "save_error": save_error,
    }


def open_snapshot(path, max_bytes):
    """The snapshot the code's process wrote, if it is what it should be: a regular file of
    the code's uid within the cap, never a link the code planted to something of ours."""
    try:
        # Non-blocking: a FIFO planted there must not hang this process on open.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes or (
        os.getuid() == 0 and st.st_uid != CODE_UID
    ):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


def send_snapshot(snapshot):
    """`state` and the snapshot's bytes, streamed in chunks (it may be hundreds of MB)."""
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = snapshot.read(1 << 20)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
    snapshot.seek(0)
    emit({"event": "state", "bytes": size, "sha256": digest.hexdigest()})
    sent = 0
    while sent < size:
        chunk = snapshot.read(min(1 << 20, size - sent))
        if not chunk:
            break
        PROTOCOL_OUT.write(chunk)
        sent += len(chunk)
    PROTOCOL_OUT.write(b"\0" * (size - sent))
    PROTOCOL_OUT.flush()
    snapshot.close()


def _bounded_names(items, limit=MAX_LISTED_NAMES):
    names = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str):
            names.append(item[:100])
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            names.append({"name": item["name"][:100], "reason": str(item.get("reason", ""))[:200]})
        if len(names) >= limit:
            break
    return names


def _bounded_count(value):
    return value if isinstance(value, int) and 0 <= value < 1 << 40 else 0


class SessionPhases:
    """The code's process's reports on the session's state: restored, finished, saved.

    The pipe belongs to the code, so each report is accepted once and in order, bounded,
    and believed only for what it can change: which names were kept, and how a timeout is
    worded. A forged `finished` buys no time: the clock is the runner's own."""

    def __init__(self):
        self.buffer = b""
        self.restored_at = None
        self.restore = None
        self.finished_at = None
        self.finished_exit = 0
        self.saved = None

    def feed(self, data):
        self.buffer += data
        if len(self.buffer) > 1 << 20:
            self.buffer = b""
            return
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                self.handle(message, time.monotonic())

    def handle(self, message, now):
        phase = message.get("phase")
        error = message.get("error")
        error = str(error)[:500] if error else None
        if phase == "restored" and self.restored_at is None:
            self.restored_at = now
            self.restore = {
                "restored": _bounded_names(message.get("restored")),
                "not_restored": _bounded_names(message.get("not_restored")),
                "error": error,
            }
        elif phase == "finished" and self.restored_at is not None and self.finished_at is None:
            self.finished_at = now
            code = message.get("exit_code")
            self.finished_exit = code if isinstance(code, int) and 0 <= code < 256 else 1
        elif phase == "saved" and self.finished_at is not None and self.saved is None:
            self.saved = {
                "kept": _bounded_names(message.get("kept")),
                "kept_count": _bounded_count(message.get("kept_count")),
                "not_kept": _bounded_names(message.get("not_kept")),
                "not_kept_count": _bounded_count(message.get("not_kept_count")),
                "error": error,
            }


def collect_outputs(job):
    """Tars regular files of the output dir without following any symlink.

    Caps are applied here so an oversized output never crosses the wire; every skip is
    reported as a flag. The host re-checks each entry.
    """
    root = job["output_dir"]
    max_files = int(job["max_output_files"])
    max_file_bytes = int(job["max_output_file_bytes"])
    max_total_bytes = int(job["max_output_total_bytes"])
    flags = []
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
                    flags.append({"flag": "skipped_symlink", "name": rel})
                    continue
                if not stat.S_ISREG(st.st_mode):
                    flags.append({"flag": "skipped_special_file", "name": rel})
                    continue
                if count >= max_files:
                    flags.append({"flag": "too_many_files", "name": rel})
                    continue
                if st.st_size > max_file_bytes:
                    flags.append({"flag": "file_too_large", "name": rel, "size": st.st_size})
                    continue
                if total + st.st_size > max_total_bytes:
                    flags.append({"flag": "total_bytes_exceeded", "name": rel, "size": st.st_size})
                    continue
                try:
                    fd = os.open(os.path.join(root, rel), os.O_RDONLY | os.O_NOFOLLOW)
                except OSError:
                    flags.append({"flag": "unreadable_file", "name": rel})
                    continue
                with os.fdopen(fd, "rb") as f:
                    data = f.read(max_file_bytes + 1)
                if len(data) > max_file_bytes or total + len(data) > max_total_bytes:
                    flags.append({"flag": "file_too_large", "name": rel, "size": len(data)})
                    continue
                info = tarfile.TarInfo(rel)
                info.size = len(data)
                info.mode = 0o644
                info.mtime = int(st.st_mtime)
                tar.addfile(info, io.BytesIO(data))
                count += 1
                total += len(data)
    # Collapse runaway flag lists (10,000 files over the cap) into a count.
    by_kind = {}
    for flag in flags:
        by_kind.setdefault(flag["flag"], []).append(flag)
    compact = []
    for kind, items in by_kind.items():
        compact.extend(items[:20])
        if len(items) > 20:
            compact.append({"flag": kind, "name": None, "more": len(items) - 20})
    return buf.getvalue(), compact


def seed_matplotlib_cache():
    """Copies the font cache built into the image to the writable MPLCONFIGDIR, open to the
    code's uid too (this process is another uid)."""
    target = os.environ.get("MPLCONFIGDIR")
    source = "/opt/codebox/mplconfig"
    if not target or not os.path.isdir(source):
        return
    try:
        os.makedirs(target, exist_ok=True)
        os.chmod(target, 0o1777)
        for name in os.listdir(source):
            if name.endswith(".json"):
                path = os.path.join(target, name)
                with open(os.path.join(source, name), "rb") as src:
                    with open(path, "wb") as dst:
                        dst.write(src.read())
                os.chmod(path, 0o666)
    except OSError:
        pass


def main():
    global _auth_key
    set_dumpable(0)
    shield_signals()
    seed_matplotlib_cache()
    args = sys.argv[1:]
    if args[:1] == ["--preload"]:
        preload(args[1].split(",") if len(args) > 1 else ["numpy", "pandas", "matplotlib"])
    forked = Forked()
    emit({"event": "ready", "protocol": PROTOCOL_VERSION})
    line = sys.stdin.buffer.readline(16 * 1024 * 1024)
    if not line:
        return
    job = json.loads(line)
    # The key stays in this process: the code's process was forked before it was read.
    _auth_key = str(job.pop("auth", "")).encode()
    if not _auth_key:
        return  # a job without a key cannot be answered in a way the host accepts
    snapshot = run_job(job, forked)
    payload, flags = collect_outputs(job)
    digest = hashlib.sha256(payload).hexdigest()
    emit({"event": "outputs", "bytes": len(payload), "sha256": digest, "flags": flags})
    PROTOCOL_OUT.write(payload)
    PROTOCOL_OUT.flush()
    if snapshot is not None:
        send_snapshot(snapshot)
    emit({"event": "done"})


if __name__ == "__main__":
    main()
