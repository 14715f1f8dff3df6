"""State that persists between the runs of one user's conversation: the code's top-level
variables saved after it ends, restored before the next run's code starts.

Runs in the code's own process (its uid, its sandbox): a snapshot is untrusted data and is
only ever unpickled here, inside a sandbox of the user it belongs to, never by the host.

Snapshot layout (all integers big-endian):
    MAGIC
    u32 length + JSON header {"python": [major, minor], "modules": {alias: module},
                              "imports": [top-level packages the values need]}
    records, each: u64 length of the rest, u16 name length, name (UTF-8), pickle
Every variable is its own record, so one that cannot be saved or restored costs only itself;
a value that reaches an earlier record's variable refers to it (codebox_sharing), so two
names for one object stay one object. The last record, PROCESS_RECORD, is the process's
state besides variables (RNG states, styles, options, working directory).
"""

import importlib
import importlib.util
import io
import json
import os
import struct
import sys
import types

import codebox_sharing

MAGIC = b"CODEBOX-STATE\x01\n"
PICKLE_PROTOCOL = 5
MAX_LISTED = 200

# Python's own names in a run's globals: never saved.
PYTHON_NAMES = frozenset(
    ["__builtins__", "__name__", "__file__", "__doc__", "__loader__", "__spec__",
     "__package__", "__annotations__", "__cached__"]
)
# The runner's helpers in every run's globals, by the module that has them: not saved
# while they are the runner's, kept like any variable once the code defines its own
# (a notebook's own `display` class).
RUNNERS_HELPERS = {"load_file": "codebox_files", "display": "codebox_display"}
# What the model is told when a name is not kept, by the value's type.
KIND_BY_TYPE = {
    "TextIOWrapper": "file",
    "BufferedReader": "file",
    "BufferedWriter": "file",
    "BufferedRandom": "file",
    "FileIO": "file",
    "socket": "socket",
    "generator": "generator",
    "async_generator": "generator",
    "coroutine": "coroutine",
    "frame": "frame",
    "Thread": "thread",
    "Lock": "lock",
    "RLock": "lock",
    "Connection": "connection",
}


class _OverCap(Exception):
    pass


# The record of what the process keeps besides variables; no variable's name starts with
# a NUL, so it can never clash with one.
PROCESS_RECORD = "\x00process"
# rcParams the runner owns (its backend): never carried from one run to the next.
RUNNERS_RCPARAMS = ("backend", "backend_fallback", "interactive")


def capture_process():
    """What a notebook's process keeps between cells besides its variables: the random and
    numpy global RNG states, matplotlib's rcParams (its style), pandas options and numpy
    print options changed from their defaults, and the working directory."""
    import warnings

    # Reading every option may warn of deprecated ones: nothing the code asked for.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _capture_process()


def _capture_process():
    import random

    state = {"random": random.getstate(), "cwd": os.getcwd()}
    np = sys.modules.get("numpy")
    if np is not None:
        try:
            state["numpy_random"] = np.random.get_state()
            state["numpy_print"] = np.get_printoptions()
        except Exception:
            pass
    mpl = sys.modules.get("matplotlib")
    if mpl is not None:
        try:
            defaults = mpl.rcParamsDefault
            state["rcparams"] = {
                key: value
                for key, value in mpl.rcParams.items()
                if key not in RUNNERS_RCPARAMS and _differs(value, defaults.get(key))
            }
        except Exception:
            pass
    pd = sys.modules.get("pandas")
    if pd is not None:
        try:
            from pandas._config import config as pandas_config

            state["pandas"] = {
                key: pd.get_option(key)
                for key, option in pandas_config._registered_options.items()
                if _differs(pd.get_option(key), option.defval)
            }
        except Exception:
            pass
    return state


def _differs(value, default):
    try:
        return bool(value != default)
    except Exception:
        return True


def apply_process(state):
    """Puts `capture_process`'s state back; each part on its own, so one that fails (a
    removed option) costs only itself."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _apply_process(state)


def _apply_process(state):
    import random

    def attempt(part):
        try:
            part()
        except Exception:
            pass

    if "random" in state:
        attempt(lambda: random.setstate(state["random"]))
    if "numpy_random" in state or "numpy_print" in state:
        try:
            import numpy as np
        except Exception:
            np = None
        if np is not None:
            if "numpy_random" in state:
                attempt(lambda: np.random.set_state(state["numpy_random"]))
            if "numpy_print" in state:
                attempt(lambda: np.set_printoptions(**state["numpy_print"]))
    if state.get("rcparams"):
        import matplotlib

        for key, value in state["rcparams"].items():
            attempt(lambda: matplotlib.rcParams.__setitem__(key, value))
    if state.get("pandas"):
        import pandas as pd

        for key, value in state["pandas"].items():
            attempt(lambda: pd.set_option(key, value))
    cwd = state.get("cwd")
    if isinstance(cwd, str) and os.path.isdir(cwd):
        attempt(lambda: os.chdir(cwd))


def _cloudpickle():
    """cloudpickle (functions and classes the code defined are saved by value), loaded
    from the copy joblib carries without importing joblib itself (a quarter of a second),
    under a name of its own so a cloudpickle the code installs cannot clash with it."""
    if "_codebox_cloudpickle" in sys.modules:
        return sys.modules["_codebox_cloudpickle"]
    try:
        spec = importlib.util.find_spec("joblib")
        if spec is None or not spec.submodule_search_locations:
            return None
        directory = os.path.join(list(spec.submodule_search_locations)[0], "externals", "cloudpickle")
        init = os.path.join(directory, "__init__.py")
        if not os.path.exists(init):
            return None
        module_spec = importlib.util.spec_from_file_location(
            "_codebox_cloudpickle", init, submodule_search_locations=[directory]
        )
        module = importlib.util.module_from_spec(module_spec)
        sys.modules["_codebox_cloudpickle"] = module
        module_spec.loader.exec_module(module)
        return module
    except Exception:
        sys.modules.pop("_codebox_cloudpickle", None)
        return None


def _pickler_class():
    cloudpickle = _cloudpickle()
    if cloudpickle is not None:
        return cloudpickle.CloudPickler
    import pickle

    return pickle.Pickler


def kind_of(value):
    name = type(value).__name__
    return KIND_BY_TYPE.get(name, name)


def _top_level(module_name):
    if not isinstance(module_name, str) or not module_name:
        return None
    top = module_name.split(".")[0]
    if top in ("__main__", "builtins") or top in sys.stdlib_module_names:
        return None
    return top


def _is_runners(name, value):
    module = sys.modules.get(RUNNERS_HELPERS.get(name, ""))
    return module is not None and value is getattr(module, name, None)


def _candidates(globals_):
    for name, value in list(globals_.items()):
        if name in PYTHON_NAMES or name.startswith("__") or _is_runners(name, value):
            continue
        if getattr(value, "_codebox_injected", False):
            continue
        yield name, value


def _cap_reason(max_bytes):
    """Why a name did not fit: the operator's setting, named, so the fix is findable."""
    return "the session's snapshot is full (SESSION_STATE_MAX_MB=%d)" % (max_bytes >> 20)


def save(globals_, path, max_bytes):
    """Writes the snapshot; returns what was kept and what was not (name and why)."""
    kept, not_kept = [], []
    modules, imports = {}, set()
    values = []
    for name, value in _candidates(globals_):
        if isinstance(value, types.ModuleType):
            modules[name] = value.__name__
            top = _top_level(value.__name__)
            if top:
                imports.add(top)
            continue
        for module_name in (type(value).__module__, getattr(value, "__module__", None)):
            top = _top_level(module_name)
            if top:
                imports.add(top)
        if isinstance(value, io.IOBase):
            # cloudpickle would save a file's contents; a handle never survives its process.
            not_kept.append({"name": name, "reason": "file"})
            continue
        values.append((name, value))
    header = json.dumps(
        {"python": list(sys.version_info[:2]), "modules": modules, "imports": sorted(imports)}
    ).encode()
    base_pickler = _pickler_class()
    sharing_pickler = codebox_sharing.pickler_class(base_pickler)
    saved = codebox_sharing.Saved()
    values.sort(key=codebox_sharing.save_order)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w+b") as f:
        f.write(MAGIC + struct.pack(">I", len(header)) + header)
        if f.tell() > max_bytes:
            raise _OverCap()
        for name, value in values:
            start = f.tell()
            pickler = sharing_pickler(f, saved, protocol=PICKLE_PROTOCOL) if saved else None
            try:
                pickler = pickler or base_pickler(f, protocol=PICKLE_PROTOCOL)
                _write_record(f, name, pickler, value, max_bytes)
                kept.append(name)
                saved.add(name, value)
            except _OverCap:
                _drop_from(f, start)
                not_kept.append({"name": name, "reason": _cap_reason(max_bytes)})
            except OSError as exc:
                _drop_from(f, start)
                reason = _cap_reason(max_bytes) if exc.errno in (27, 28) else "cannot be written"
                not_kept.append({"name": name, "reason": reason})
            except Exception:
                _drop_from(f, start)
                not_kept.append({"name": name, "reason": kind_of(value)})
        # The process's state as the last record; left out when it does not fit.
        import pickle

        start = f.tell()
        try:
            _write_record(f, PROCESS_RECORD, pickle.Pickler(f, protocol=PICKLE_PROTOCOL),
                          capture_process(), max_bytes)
        except Exception:
            _drop_from(f, start)
    os.chmod(path, 0o644)
    return {"kept": kept[:MAX_LISTED], "kept_count": len(kept), "not_kept": not_kept[:MAX_LISTED],
            "not_kept_count": len(not_kept), "modules": sorted(modules)[:MAX_LISTED]}


def _write_record(f, name, pickler, value, max_bytes):
    """One record at the end of the file: its length, its name, the pickle of `value`."""
    start = f.tell()
    encoded = name.encode("utf-8", "replace")[:65535]
    f.write(struct.pack(">QH", 0, len(encoded)) + encoded)
    pickler.dump(value)
    end = f.tell()
    if end > max_bytes:
        raise _OverCap()
    f.seek(start)
    f.write(struct.pack(">Q", end - start - 8))
    f.seek(end)


def _drop_from(f, start):
    f.seek(start)
    f.truncate()


def _with_globals(function, globals_):
    """The same function reading and writing the notebook's globals: cloudpickle gives a
    function it saved by value a dict of its own, so `eval(name)` or a global assigned in a
    later run would not be seen."""
    if function.__globals__ is globals_ or function.__module__ != "__main__":
        return function
    rebound = types.FunctionType(
        function.__code__, globals_, function.__name__, function.__defaults__, function.__closure__
    )
    rebound.__kwdefaults__ = function.__kwdefaults__
    rebound.__qualname__ = function.__qualname__
    rebound.__doc__ = function.__doc__
    rebound.__dict__.update(function.__dict__)
    rebound.__annotations__ = function.__annotations__
    return rebound


def _rebound(value, globals_):
    """A restored function, or the methods of a restored class, defined by the code (in
    `__main__`), bound to the notebook's globals; anything else as it is."""
    try:
        if isinstance(value, types.FunctionType):
            return _with_globals(value, globals_)
        if isinstance(value, type) and value.__module__ == "__main__":
            for attr, member in list(vars(value).items()):
                if isinstance(member, types.FunctionType):
                    setattr(value, attr, _with_globals(member, globals_))
                elif isinstance(member, (staticmethod, classmethod)):
                    setattr(value, attr, type(member)(_with_globals(member.__func__, globals_)))
                elif isinstance(member, property):
                    setattr(value, attr, property(
                        *(f if f is None else _with_globals(f, globals_)
                          for f in (member.fget, member.fset, member.fdel)),
                        member.__doc__,
                    ))
    except Exception:  # a class that refuses new attributes keeps its own
        pass
    return value


def _read_exact(f, n):
    data = f.read(n)
    if len(data) != n:
        raise ValueError("the snapshot is cut short")
    return data


# The top-level modules the last restore imported (what it cost besides unpickling), for
# the session benchmark to report.
last_restore_imports = []


def _read_header(f):
    """The snapshot's JSON header, `f` positioned at its first record."""
    if f.read(len(MAGIC)) != MAGIC:
        raise ValueError("not a codebox snapshot")
    (length,) = struct.unpack(">I", _read_exact(f, 4))
    return json.loads(_read_exact(f, length))


def header_imports(path):
    """The top-level modules a snapshot's restore will import (its header's `imports` and
    the modules it binds to names), read from its header alone; none for a missing file.
    Raises for a file that is no snapshot."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return []
    with f:
        header = _read_header(f)
    tops = [top for top in header.get("imports", []) if isinstance(top, str) and top.isidentifier()]
    for module_name in header.get("modules", {}).values():
        if isinstance(module_name, str) and module_name.split(".")[0].isidentifier():
            tops.append(module_name.split(".")[0])
    return sorted(set(tops))


def restore(path, globals_, import_like_the_code):
    """Puts the snapshot's names back into `globals_`. A name that cannot come back is
    listed with the reason; a snapshot that cannot be read at all is an `error`, and the
    code runs without it either way."""
    import pickle

    global last_restore_imports
    before = set(sys.modules)
    restored, not_restored = [], []
    values = {}
    report = {"restored": restored, "not_restored": not_restored, "error": None}
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return report
    except OSError as exc:
        report["error"] = "the saved state could not be opened (%s)" % type(exc).__name__
        return report
    with f:
        try:
            total = os.fstat(f.fileno()).st_size
            header = _read_header(f)
            for top in header.get("imports", []):
                if isinstance(top, str) and top.isidentifier():
                    import_like_the_code(top)
            for alias, module_name in header.get("modules", {}).items():
                try:
                    globals_[alias] = importlib.import_module(module_name)
                    restored.append(alias)
                except Exception as exc:
                    not_restored.append(
                        {"name": alias, "reason": "module %s: %s" % (module_name, type(exc).__name__)}
                    )
            _cloudpickle()  # functions saved by value name its reconstructors
            while True:
                prefix = f.read(8)
                if not prefix:
                    break
                if len(prefix) != 8:
                    raise ValueError("the snapshot is cut short")
                (size,) = struct.unpack(">Q", prefix)
                record_end = f.tell() + size
                if record_end > total:
                    raise ValueError("the snapshot is cut short")
                (name_length,) = struct.unpack(">H", _read_exact(f, 2))
                name = _read_exact(f, name_length).decode("utf-8", "replace")
                # Unpickled straight from the file: a large frame is never held twice.
                try:
                    if name == PROCESS_RECORD:
                        apply_process(pickle.load(f))
                    else:
                        value = codebox_sharing.unpickler(f, values).load()
                        globals_[name] = values[name] = value
                        restored.append(name)
                except Exception as exc:
                    not_restored.append(
                        {"name": name, "reason": "%s: %s" % (type(exc).__name__, str(exc)[:120])}
                    )
                f.seek(record_end)
        except Exception as exc:
            report["error"] = "the saved state could not be read (%s: %s)" % (
                type(exc).__name__,
                str(exc)[:200],
            )
    for name in restored:
        value = globals_.get(name)
        if value is not None:
            globals_[name] = _rebound(value, globals_)
    report["restored"] = restored[:MAX_LISTED]
    report["not_restored"] = not_restored[:MAX_LISTED]
    # The libraries, not the standard modules and extension internals they pulled in.
    last_restore_imports = sorted({
        top for top in (name.split(".")[0] for name in set(sys.modules) - before)
        if top not in sys.stdlib_module_names and not top.startswith("_")
    })
    return report
