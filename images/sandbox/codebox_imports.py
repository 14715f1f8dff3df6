"""Runs a function right after a module is first imported, whoever imports it and however:
the display's patches must be in place before the code's first use of matplotlib's figures,
plotly's `show` or IPython's `display`, and the runner never imports those for nothing.

A hook may also stand in for a module nothing on the path provides (`fallback`), so that
`from IPython.display import display` works where IPython is not installed."""

import importlib.abc
import importlib.util
import sys

_after = {}
_fallbacks = {}


def _run_after(name, module):
    for action in _after.get(name, ()):
        try:
            action(module)
        except Exception:  # a patch that fails must never break the code's import
            pass


class _AfterImport(importlib.abc.MetaPathFinder):
    """First on the meta path: finds the module through the finders after it and wraps its
    loader so the actions run once the module has executed."""

    def find_spec(self, name, path=None, target=None):
        if name not in _after:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or isinstance(finder, _Fallback) or find is None:
                continue
            spec = find(name, path, target)
            if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
                continue
            original = spec.loader.exec_module

            def exec_module(module, original=original):
                original(module)
                _run_after(name, module)

            spec.loader.exec_module = exec_module
            return spec
        return None


class _FallbackLoader(importlib.abc.Loader):
    def __init__(self, make):
        self.make = make

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        self.make(module)
        _run_after(module.__name__, module)


class _Fallback(importlib.abc.MetaPathFinder):
    """Last on the meta path: answers only for a module no other finder found."""

    def find_spec(self, name, path=None, target=None):
        make = _fallbacks.get(name)
        if make is None:
            return None
        is_package = any(other.startswith(name + ".") for other in _fallbacks)
        return importlib.util.spec_from_loader(
            name, _FallbackLoader(make), is_package=is_package
        )


def _install():
    if not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())
    if not any(isinstance(f, _Fallback) for f in sys.meta_path):
        sys.meta_path.append(_Fallback())


def after_import(name, action):
    """`action(module)` once `name` is imported; at once if it already is."""
    _install()
    _after.setdefault(name, []).append(action)
    module = sys.modules.get(name)
    if module is not None:
        try:
            action(module)
        except Exception:
            pass


def fallback(name, make):
    """`make(module)` fills in `name` when nothing on the path provides it."""
    _install()
    _fallbacks[name] = make
