"""What the runner does before its job is known so the code starts warm: the data stack
imported and its first-use paths run, matplotlib's font cache in place."""

import os

from .constants import MEASURED_MAX_SIDE

# Imported besides the ones named on the command line: the runner's helpers for the code
# and what compiling a cell needs.
ALWAYS_PRELOADED = (
    "codebox_files", "codebox_display", "codebox_session", "ast", "tokenize",
    "importlib.util", "site",
)
DEFAULT_PRELOAD = ("numpy", "pandas", "matplotlib")
# The font cache built into the image (Dockerfile.sandbox).
IMAGE_MPLCONFIG = "/opt/codebox/mplconfig"


def preload(modules):
    """Import the data stack before the job arrives so a forked child starts warm."""
    import gc

    for name in list(modules) + list(ALWAYS_PRELOADED):
        try:
            __import__(name)
            if name == "matplotlib":
                import matplotlib

                matplotlib.use("module://codebox_backend")
                import matplotlib.pyplot  # noqa: F401
        except Exception:  # a broken optional module must not stop the runner
            pass
    warm_up_data_stack()
    warm_up_cell_path()
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
        png = io.BytesIO()
        fig.savefig(png, format="png")
        plt.close(fig)
        # The measure of a run's figures (codebox_runner.pictures) opens PNGs with PIL.
        import codebox_vision

        png.seek(0)
        codebox_vision.measure(png, MEASURED_MAX_SIDE)
    except Exception:  # a broken optional module must not stop the runner
        pass


def warm_up_cell_path():
    """Loads cloudpickle and runs once the child's rehearsal of what every run does around
    its code (the tokenizer's patterns are compiled on first use, 3 ms; pandas' option
    machinery), so each forked child inherits them ready."""
    try:
        import codebox_session

        codebox_session._cloudpickle()
    except Exception:  # a broken optional module must not stop the runner
        pass
    from .child import rehearse

    rehearse()


def seed_matplotlib_cache(source=IMAGE_MPLCONFIG):
    """Copies the font cache built into the image to the writable MPLCONFIGDIR, open to the
    code's uid too (this process is another uid)."""
    target = os.environ.get("MPLCONFIGDIR")
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
