"""The code's process: forked by the runner before its job is known, it drops to the code's
uid, waits for the job on a pipe, and becomes the user's program, run as a notebook cell.

It never holds the runner's stdout: its fds 1 and 2 are pipes the runner reads, and what
it reports (its exception, its session's phases, its missing packages) goes on pipes of
its own, which the runner treats as the code's."""

import builtins
import io
import json
import os
import re
import signal
import sys
import time
import traceback

from .constants import (
    CLOSE_FDS_BELOW,
    EXIT_PRIVILEGE_DROP_FAILED,
    MAX_EXCEPTION_MESSAGE_CHARS,
    MAX_EXCEPTION_NAME_CHARS,
    PREPARE_PREFIX,
    READ_CHUNK,
)
from .packages import CODE_FILENAME, HostInstaller, add_site_dirs
from .privileges import drop_privileges, set_dumpable, unshield_signals
from .session_io import Phase, restore_session, save_session, tell_runner
from .user_files import plain_name

# What an exception's reported type may look like: `ValueError`, `pandas.errors.ParserError`.
_DOTTED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def run_when_handed(job_r, out_w, err_w, report_w, ask_w, answer_r, phase_w):
    """The forked process, its parent's descriptors closed: becomes the code's uid, then
    waits for the job and runs it. Never returns."""
    signal.set_wakeup_fd(-1)
    unshield_signals()
    try:
        drop_privileges()
    except OSError:
        os._exit(EXIT_PRIVILEGE_DROP_FAILED)  # never run code with the runner's privileges
    rehearse()
    keep_while_waiting = {job_r, report_w, ask_w, answer_r, phase_w}

    def ahead(line):
        return prepare_ahead(line, out_w, err_w, phase_w, keep_while_waiting)

    data, prepared = read_job(job_r, ahead)
    if not data:
        os._exit(0)  # the runner ended without a job
    job = json.loads(data)
    child_main(job, out_w, err_w, report_w, ask_w, answer_r, phase_w, prepared)


def read_job(job_r, ahead):
    """The job's bytes, read to the end of the pipe, and what `ahead` made of a `prepare`
    line before them (None without one): that line is acted on as soon as it is whole,
    not when the job arrives."""
    chunks, prepared, head = [], None, b""
    while True:
        data = os.read(job_r, READ_CHUNK)
        if not data:
            break
        if head is None:
            chunks.append(data)
            continue
        head += data
        if head.startswith(PREPARE_PREFIX):
            if b"\n" not in head:
                continue
            line, head = head.split(b"\n", 1)
            prepared = ahead(line[len(PREPARE_PREFIX):])
        elif PREPARE_PREFIX.startswith(head):
            continue
        chunks.append(head)
        head = None
    if head:
        chunks.append(head)
    return b"".join(chunks), prepared


def prepare_ahead(line, out_w, err_w, phase_w, keep):
    """Restores a session's snapshot before the job, as the job would (same globals, same
    working directory, the code's stdio already in place, so nothing it runs can reach the
    runner's). None, with nothing changed, when it cannot be done ahead: a snapshot needing
    a module that only the host could install restores with the job, where it can ask."""
    try:
        message = json.loads(line)
        path, workdir = str(message["restore"]), str(message["workdir"])
        import importlib.util

        import codebox_session

        if not all(importlib.util.find_spec(top) for top in codebox_session.header_imports(path)):
            return None
    except Exception:
        return None
    started = time.monotonic()
    take_stdio(out_w, err_w, keep)
    enter_workdir(workdir)
    globals_ = notebook_globals()
    restore_session({"restore": path}, globals_, phase_w, ahead_since=started)
    return globals_


def rehearse():
    """Walks, before the job arrives, the paths every run takes around its code (reading a
    job, compiling a cell, capturing the process's state): their first touch of each memory
    page shared with the runner copies it (milliseconds in all), and done here that is off
    the request's time. Reads and computes only: nothing the code could see changes."""
    try:
        import pickle

        import codebox_session

        json.loads(json.dumps({"code": "value = 1\nvalue", "files": [], "env": {}}))
        compile_cell("value = 1\nvalue", CODE_FILENAME)
        pickle.dumps(codebox_session.capture_process(), protocol=codebox_session.PICKLE_PROTOCOL)
    except Exception:  # only time is at stake
        pass


def take_stdio(out_w, err_w, keep):
    """fds 0-2 become /dev/null and the code's own pipes, and every other descriptor not
    in `keep` is closed: from here the process holds nothing of the runner's."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    close_all_but(keep)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), line_buffering=True, errors="backslashreplace"
    )


def close_all_but(keep):
    """Closes every descriptor from 3 up that is not in `keep`."""
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, CLOSE_FDS_BELOW)


def enter_workdir(workdir):
    """The working directory and what a script run from it sees: its argv, its directory
    first on sys.path, default signal handling."""
    os.chdir(workdir)
    sys.argv = ["main.py"]
    sys.path.insert(0, workdir)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def notebook_globals():
    """The builtins module itself, as a script's `__main__` has it (not its dict)."""
    return {"__name__": "__main__", "__file__": "main.py", "__builtins__": builtins}


def child_main(job, out_w, err_w, report_w, ask_w, answer_r, phase_w, prepared=None):
    """Runs in the forked child: becomes the user's program. `prepared`: the globals its
    session was restored into ahead (prepare_ahead), stdio and working directory taken."""
    set_dumpable(1)
    os.setsid()
    # The phase pipe exists only for a session; without one the code must not hold it.
    session = job.get("session")
    if not session:
        os.close(phase_w)
    keep = {report_w, ask_w, answer_r} | ({phase_w} if session else set())
    if prepared is None:
        take_stdio(out_w, err_w, keep)
        enter_workdir(job["workdir"])
        globals_ = notebook_globals()
    else:
        close_all_but(keep)  # the job's pipe, kept while it was awaited
        globals_ = prepared
    for key, value in job.get("env", {}).items():
        os.environ[key] = value
    add_site_dirs(job.get("site_dirs", []))

    filename = CODE_FILENAME
    source = job["code"]
    import linecache

    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    # load_file and display are ready to use without an import, as in a notebook; a name
    # the session restored (the code's own `display`) stays the code's.
    ours = {}
    try:
        import codebox_files

        codebox_files.register(job.get("files", []))
        ours["load_file"] = codebox_files.load_file
    except ImportError:
        pass
    try:
        import codebox_display
    except ImportError:
        codebox_display = None
    if codebox_display is not None:
        ours["display"] = codebox_display.display
    for name, value in ours.items():
        globals_.setdefault(name, value)
    # Last, after the display's stand-ins (IPython where it is not installed): a module
    # asked of the host is one that nothing in the image provides.
    if job.get("scan_imports"):
        sys.meta_path.append(HostInstaller(ask_w, answer_r, job["workdir"]))
    if session and prepared is None:
        restore_session(session, globals_, phase_w)
    exit_code = 0
    report = None
    try:
        body, last = compile_cell(source, filename)
        exec(body, globals_)
        if last is not None:
            value = eval(last, globals_)
            # IPython's `_`: the last value a cell showed, for the next cell to use.
            if value is not None:
                globals_["_"] = value
            if codebox_display is not None:
                codebox_display.show_last_value(value)
    except SystemExit as exc:
        exit_code = system_exit_code(exc.code)
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
        report = exception_report(exc)
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
        tell_runner(phase_w, {"phase": Phase.FINISHED.value, "exit_code": exit_code})
        save_session(session, globals_, phase_w)
    os._exit(exit_code)


def system_exit_code(code):
    """The exit status of `sys.exit(code)`, as python's own: None is 0, an int its low byte,
    anything else is printed to stderr and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def exception_name(exc_type):
    """The reported type of an exception: its qualified name, with its module unless that is
    builtins or the code's own. The name is the code's to choose: only a dotted identifier
    is reported, so it can carry no formatting, link or newline to wherever it is shown."""
    name = exc_type.__qualname__
    module = exc_type.__module__
    if module not in ("builtins", "__main__"):
        name = "%s.%s" % (module, name)
    if not (
        isinstance(name, str)
        and len(name) <= MAX_EXCEPTION_NAME_CHARS
        and _DOTTED_NAME.fullmatch(name)
    ):
        name = "Exception"
    return name


def exception_report(exc):
    """What the code's process tells the runner about the exception that ended the code."""
    return {"type": exception_name(type(exc)), "message": str(exc)[:MAX_EXCEPTION_MESSAGE_CHARS]}


def hint_missing_file(exc, files, out=None):
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
        if wanted and wanted in names and plain_name(entry.get("data_name")):
            print(
                "codebox: the user's file %r is at /mnt/data/%s; load_file(%r) reads it too"
                % (wanted, entry["data_name"], entry.get("file_id")),
                file=out if out is not None else sys.stderr,
            )
            return


def compile_cell(source, filename):
    """The code as a notebook cell: everything, and separately its last statement when
    that is an expression whose value is shown (not when the line ends with `;`)."""
    import ast

    try:
        tree = ast.parse(source, filename, "exec")
    except SyntaxError:
        quiet = without_display_magics(source)
        if quiet == source:
            raise
        tree = ast.parse(quiet, filename, "exec")
    if not tree.body or not isinstance(tree.body[-1], ast.Expr) or ends_with_semicolon(source):
        return compile(tree, filename, "exec"), None
    last = tree.body.pop()
    expression = ast.Expression(last.value)
    return compile(tree, filename, "exec"), compile(expression, filename, "eval")


# IPython's line magics that only set up a notebook's display: nothing to do here, where
# figures are always shown inline. Other magics stay the SyntaxError they are in Python.
_DISPLAY_MAGIC = re.compile(r"^([ \t]*)%(matplotlib|config|load_ext|reload_ext|autoreload)\b.*$", re.M)


def without_display_magics(source):
    """The source with each display magic line made a `pass`, line numbers unchanged."""
    return _DISPLAY_MAGIC.sub(lambda m: m.group(1) + "pass", source)


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
