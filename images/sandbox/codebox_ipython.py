"""`IPython.display` for code written for notebooks: `display`, `Image`, `HTML`, `Markdown`,
`SVG`, `JSON`, `Latex`, `clear_output`. Where IPython is not installed these stand in for
it (`import IPython` finds them); where it is, its `display` is replaced by codebox's, which
understands IPython's own objects through their `_repr_*_` methods."""

import json
import os

import codebox_display
import codebox_imports


class _Shown:
    """Data given as a string, bytes, a path or a URL, as IPython's objects take it."""

    binary = False

    def __init__(self, data=None, url=None, filename=None, **kwargs):
        if data is not None and isinstance(data, str) and not filename and _looks_like_path(data):
            filename = data
            data = None
        if filename is not None:
            with open(filename, "rb" if self.binary else "r") as f:
                data = f.read()
        self.data = data
        self.url = url
        self.metadata = kwargs.get("metadata") or {}

    def __repr__(self):
        return "<IPython.core.display.%s object>" % type(self).__name__


def _looks_like_path(text):
    return len(text) < 4096 and "\n" not in text and os.path.isfile(text)


class HTML(_Shown):
    def _repr_html_(self):
        return self.data


class Markdown(_Shown):
    def _repr_markdown_(self):
        return self.data


class Latex(_Shown):
    def _repr_latex_(self):
        return self.data


class Math(Latex):
    def _repr_latex_(self):
        return "$%s$" % (self.data or "").strip("$")


class SVG(_Shown):
    def _repr_svg_(self):
        return self.data.decode("utf-8", "replace") if isinstance(self.data, bytes) else self.data


class JSON(_Shown):
    def __init__(self, data=None, **kwargs):
        super().__init__(data if not isinstance(data, str) else None, **kwargs)
        if isinstance(data, str):
            self.data = json.loads(data)

    def __repr__(self):
        return json.dumps(self.data, indent=2, default=str)


class Image(_Shown):
    binary = True

    def __init__(self, data=None, url=None, filename=None, format=None, **kwargs):
        if isinstance(data, bytes) or filename is not None:
            super().__init__(data=data, filename=filename, **kwargs)
        else:
            super().__init__(data=data, url=url, **kwargs)
        self.format = (format or _format_of(filename or data)).lower()

    def _repr_png_(self):
        return self.data if self.format == "png" and isinstance(self.data, bytes) else None

    def _repr_jpeg_(self):
        return self.data if self.format in ("jpeg", "jpg") and isinstance(self.data, bytes) else None


def _format_of(source):
    if isinstance(source, bytes):
        return "jpeg" if source[:3] == b"\xff\xd8\xff" else "png"
    if isinstance(source, str) and "." in source:
        return source.rsplit(".", 1)[1]
    return "png"


def clear_output(wait=False):
    """Nothing to clear: what was printed is already the model's to read."""


def set_matplotlib_formats(*formats, **kwargs):
    """Figures are always PNG here."""


def get_ipython():
    return None


def _fill_display(module):
    for name, value in _EXPORTS.items():
        setattr(module, name, value)


def _fill_package(module):
    module.get_ipython = get_ipython
    module.version_info = (0, 0, 0, "codebox")
    module.__version__ = "0.0.0+codebox"


def _use_codebox_display(module):
    """Real IPython without a shell prints `repr` for `display`; codebox's shows it."""
    module.display = codebox_display.display


_EXPORTS = {
    "display": codebox_display.display, "HTML": HTML, "Markdown": Markdown, "Latex": Latex,
    "Math": Math, "SVG": SVG, "JSON": JSON, "Image": Image, "clear_output": clear_output,
    "set_matplotlib_formats": set_matplotlib_formats,
}


def install():
    codebox_imports.fallback("IPython", _fill_package)
    codebox_imports.fallback("IPython.display", _fill_display)
    codebox_imports.fallback("IPython.core", lambda module: None)
    codebox_imports.fallback("IPython.core.display", _fill_display)
    for name in ("IPython.display", "IPython.core.display", "IPython.core.display_functions"):
        codebox_imports.after_import(name, _use_codebox_display)
