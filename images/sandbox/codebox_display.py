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

import codebox_charts
import codebox_imports
import codebox_pretty
import codebox_rich

MAX_REPR_CHARS = 5000
MAX_ROWS = 30
MIN_ROWS = 10
MAX_COLUMNS = 20

# Figures already written (shown, displayed, or saved by the code): never written again.
_done = weakref.WeakSet()


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
    path = codebox_rich.next_free("figure", "png")
    saver = getattr(type(fig), "_codebox_original_savefig", None) or type(fig).savefig
    try:
        saver(fig, path, format="png", dpi=100, bbox_inches="tight")
    except Exception as exc:  # a figure that cannot render must not end the run
        print("[figure could not be rendered: %s: %s]" % (type(exc).__name__, exc), file=sys.stderr)
        return None
    # What the figure shows, in words, where it was shown: for a model that cannot see it.
    sys.stdout.write(codebox_charts.describe(fig, os.path.basename(path)) + "\n")
    sys.stdout.flush()
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


def mark_savefig(figure_module=None):
    """Wraps `Figure.savefig` so a figure the code saved to a file is not also sent as
    `figure_N.png` (saving to a buffer does not count)."""
    figure_module = figure_module or sys.modules.get("matplotlib.figure")
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


def watch_for_matplotlib():
    """`mark_savefig` as soon as matplotlib's figures are loaded, whatever backend the code
    selects (`matplotlib.use("Agg")` before pyplot never loads ours), so a figure the code
    saved is never sent again as `figure_N.png`."""
    codebox_imports.after_import("matplotlib.figure", mark_savefig)


def _cap(text):
    if len(text) <= MAX_REPR_CHARS:
        return text
    half = MAX_REPR_CHARS // 2
    return "%s\n[... %d characters truncated ...]\n%s" % (
        text[:half],
        len(text) - 2 * half,
        text[-half:],
    )


def _within(pd, option, cap):
    """Our cap on a pandas display option, or the code's own setting when it is lower."""
    try:
        own = pd.get_option(option)
    except Exception:
        return cap
    return own if isinstance(own, int) and not isinstance(own, bool) and 0 < own < cap else cap


def _pandas_text(obj):
    """pandas' own repr, within our row and column caps or the code's lower settings
    (pandas adds its shape footer itself, only when it truncates)."""
    import pandas as pd

    with pd.option_context(
        "display.max_rows",
        _within(pd, "display.max_rows", MAX_ROWS),
        "display.min_rows",
        _within(pd, "display.min_rows", MIN_ROWS),
        "display.max_columns",
        _within(pd, "display.max_columns", MAX_COLUMNS),
        "display.width",
        200,
        "display.max_colwidth",
        60,
    ):
        return repr(obj)


def _is_table(obj):
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(obj, (pandas.DataFrame, pandas.Series))


def as_text(obj):
    """The text the model sees for a displayed value: bounded tables for pandas objects,
    the `repr` of anything else (builtin containers laid out as IPython does), capped
    either way."""
    if _is_table(obj):
        try:
            return _cap(_pandas_text(obj))
        except Exception:
            pass
    try:
        return _cap(codebox_pretty.pretty(obj))
    except Exception as exc:
        return "<%s object; repr failed: %s>" % (type(obj).__name__, type(exc).__name__)


def display(*objs, **kwargs):
    """Shows each object like the last line of a notebook cell: figures, images and charts
    as files, everything else as text on stdout (IPython's keyword arguments are taken and
    have nothing to change here)."""
    for obj in objs:
        if _is_figure(obj):
            write_figure(obj)
            continue
        if _is_pil_image(obj):
            path = codebox_rich.next_free("image", "png")
            try:
                obj.save(path, format="PNG")
            except Exception as exc:
                print("[image could not be saved: %s]" % type(exc).__name__, file=sys.stderr)
            continue
        if not _is_table(obj):
            try:
                if codebox_rich.show(obj, as_text):
                    continue
            except Exception as exc:  # a broken representation falls back to the text
                print("[%s could not be displayed: %s]" % (type(obj).__name__, type(exc).__name__),
                      file=sys.stderr)
        text = as_text(obj)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def show_last_value(value):
    """The rule for the value of a cell's last expression (IPython's): None is not shown."""
    if value is None:
        return
    display(value)


watch_for_matplotlib()
codebox_rich.install()
import codebox_ipython  # noqa: E402  (it uses `display`, defined above)

codebox_ipython.install()
