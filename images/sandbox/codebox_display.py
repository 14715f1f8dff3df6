"""Notebook display for codebox runs: `display(obj)`, the value of the last expression, and
figures as PNG files.

What the model reads is text on stdout, written where the display happened, so stdout and
displays keep their order. Figures (matplotlib, PIL images) become files in the output
directory, collected and stored like any file the code writes: `figure_1.png`, ... in the
order they were shown, each figure once, never a figure the code saved itself.
"""

import os
import sys
import weakref

MAX_REPR_CHARS = 5000
MAX_ROWS = 30
MIN_ROWS = 10
MAX_COLUMNS = 20

# Figures already written (shown, displayed, or saved by the code): never written again.
_done = weakref.WeakSet()
_counter = {"figure": 0, "image": 0}


def output_dir():
    return os.environ.get("CODEBOX_OUTPUT_DIR") or os.getcwd()


def _next_free(kind):
    """`figure_N.png` with the next N whose name the code has not taken itself."""
    while True:
        _counter[kind] += 1
        name = "%s_%d.png" % (kind, _counter[kind])
        path = os.path.join(output_dir(), name)
        if not os.path.lexists(path):
            return path


def _pyplot():
    """pyplot if the code imported it; display never imports matplotlib for nothing."""
    return sys.modules.get("matplotlib.pyplot")


def _is_figure(obj):
    figure_module = sys.modules.get("matplotlib.figure")
    return figure_module is not None and isinstance(obj, figure_module.Figure)


def _is_pil_image(obj):
    image_module = sys.modules.get("PIL.Image")
    return image_module is not None and isinstance(obj, image_module.Image)


def write_figure(fig):
    """Writes one figure as the next `figure_N.png`, unless it was written or saved before."""
    if fig in _done or getattr(fig, "_codebox_saved", False):
        return None
    _done.add(fig)
    path = _next_free("figure")
    saver = getattr(type(fig), "_codebox_original_savefig", None) or type(fig).savefig
    try:
        saver(fig, path, format="png", dpi=100, bbox_inches="tight")
    except Exception as exc:  # a figure that cannot render must not end the run
        print("[figure could not be rendered: %s: %s]" % (type(exc).__name__, exc), file=sys.stderr)
        return None
    return path


def show_figures():
    """What `plt.show()` does here: every open pyplot figure becomes a PNG, then closes."""
    plt = _pyplot()
    if plt is None:
        return
    try:
        from matplotlib._pylab_helpers import Gcf

        managers = sorted(Gcf.get_all_fig_managers(), key=lambda m: m.num)
    except Exception:
        return
    for manager in managers:
        write_figure(manager.canvas.figure)
    plt.close("all")


def mark_savefig():
    """Wraps `Figure.savefig` so a figure the code saved to a file is not also sent as
    `figure_N.png` (saving to a buffer does not count)."""
    figure_module = sys.modules.get("matplotlib.figure")
    if figure_module is None:
        return
    cls = figure_module.Figure
    if getattr(cls, "_codebox_original_savefig", None) is not None:
        return
    original = cls.savefig

    def savefig(self, fname, *args, **kwargs):
        result = original(self, fname, *args, **kwargs)
        if isinstance(fname, (str, bytes, os.PathLike)):
            self._codebox_saved = True
        return result

    savefig.__doc__ = original.__doc__
    cls._codebox_original_savefig = original
    cls.savefig = savefig


class _FigureModuleHook:
    """Wraps `Figure.savefig` as soon as `matplotlib.figure` is imported, whatever backend
    the code selects (`matplotlib.use("Agg")` before pyplot never loads ours), so a figure
    the code saved is never sent again as `figure_N.png`."""

    def find_spec(self, name, path=None, target=None):
        if name != "matplotlib.figure":
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is None or spec.loader is None:
                continue
            original = spec.loader.exec_module

            def exec_module(module, original=original):
                original(module)
                mark_savefig()

            spec.loader.exec_module = exec_module
            return spec
        return None


def watch_for_matplotlib():
    """`mark_savefig` now if matplotlib's figures are loaded, else when they are."""
    if sys.modules.get("matplotlib.figure") is not None:
        mark_savefig()
    elif not any(isinstance(f, _FigureModuleHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _FigureModuleHook())


def _cap(text):
    if len(text) <= MAX_REPR_CHARS:
        return text
    half = MAX_REPR_CHARS // 2
    return "%s\n[... %d characters truncated ...]\n%s" % (
        text[:half],
        len(text) - 2 * half,
        text[-half:],
    )


def _pandas_text(obj):
    """pandas' own repr, within our row and column caps (pandas adds its shape footer
    itself, only when it truncates)."""
    import pandas as pd

    with pd.option_context(
        "display.max_rows",
        MAX_ROWS,
        "display.min_rows",
        MIN_ROWS,
        "display.max_columns",
        MAX_COLUMNS,
        "display.width",
        200,
        "display.max_colwidth",
        60,
    ):
        return repr(obj)


def as_text(obj):
    """The text the model sees for a displayed value: bounded tables for pandas objects,
    the `repr` of anything else, capped either way."""
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(obj, (pandas.DataFrame, pandas.Series)):
        try:
            return _cap(_pandas_text(obj))
        except Exception:
            pass
    try:
        return _cap(repr(obj))
    except Exception as exc:
        return "<%s object; repr failed: %s>" % (type(obj).__name__, type(exc).__name__)


def display(*objs):
    """Shows each object like the last line of a notebook cell: figures and images as PNG
    files, everything else as text on stdout."""
    for obj in objs:
        if _is_figure(obj):
            write_figure(obj)
            continue
        if _is_pil_image(obj):
            path = _next_free("image")
            try:
                obj.save(path, format="PNG")
            except Exception as exc:
                print("[image could not be saved: %s]" % type(exc).__name__, file=sys.stderr)
            continue
        text = as_text(obj)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def show_last_value(value):
    """The rule for the value of a cell's last expression (IPython's): None is not shown."""
    if value is None:
        return
    display(value)


watch_for_matplotlib()
