"""Rich display, as Jupyter shows it, for a run whose reader is a model and a Discord
channel: an object's representations (its `_repr_mimebundle_` or `_repr_*_` methods,
plotly and Vega-Altair charts) become PNG files and attachments, and text on stdout.

- PNG and JPEG data: `image_N.png` / `image_N.jpg`; SVG: rendered to `image_N.png` here
  (cairosvg), the host never parses it.
- plotly figures and Vega-Lite charts: `chart_N.png` (kaleido, vl-convert) and the chart's
  HTML as `chart_N.html`.
- Markdown: its text, for the model to read. HTML: its text; the HTML itself is attached as
  `display_N.html` when it is more than a table.
- Anything else: its text (`repr`).
"""

import base64
import html.parser
import json
import os
import re
import sys

_counter = {}
MAX_HTML_BYTES = 5 * 1024 * 1024
# HTML made of these tags only is a table (pandas' `_repr_html_`): its text says it all.
TABLE_TAGS = frozenset(
    "table thead tbody tfoot tr th td caption colgroup col style div span p br b i em "
    "strong small sup sub code pre".split()
)
_DEFAULT_REPR = re.compile(r"^<[\w.]+ object( at 0x[0-9a-f]+)?>$")


def output_dir():
    return os.environ.get("CODEBOX_OUTPUT_DIR") or os.getcwd()


def next_free(kind, extension):
    """`kind_N.extension` with the next N whose name the code has not taken itself."""
    while True:
        _counter[kind] = _counter.get(kind, 0) + 1
        path = os.path.join(output_dir(), "%s_%d.%s" % (kind, _counter[kind], extension))
        if not os.path.lexists(path):
            return path


def _write(kind, extension, data):
    path = next_free(kind, extension)
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return path


def _warn(what, exc):
    print("[%s could not be rendered: %s: %s]" % (what, type(exc).__name__, str(exc)[:200]),
          file=sys.stderr)


def _unwrap(value):
    """A `_repr_*_` may return the data or (data, metadata)."""
    if isinstance(value, tuple) and len(value) == 2:
        return value[0]
    return value


def _as_bytes(data):
    if isinstance(data, str):
        return base64.b64decode(data)
    return data


def bundle_of(obj):
    """The object's representations by MIME type, as IPython's formatter collects them."""
    bundle = {}
    method = getattr(type(obj), "_repr_mimebundle_", None)
    if method is not None:
        try:
            found = obj._repr_mimebundle_(include=None, exclude=None)
            found = found[0] if isinstance(found, tuple) else found
            if isinstance(found, dict):
                bundle.update(found)
        except Exception as exc:
            _warn(type(obj).__name__, exc)
    for mime, name in (
        ("image/png", "_repr_png_"),
        ("image/jpeg", "_repr_jpeg_"),
        ("image/svg+xml", "_repr_svg_"),
        ("text/html", "_repr_html_"),
        ("text/markdown", "_repr_markdown_"),
        ("text/latex", "_repr_latex_"),
        ("application/json", "_repr_json_"),
    ):
        if mime in bundle or getattr(type(obj), name, None) is None:
            continue
        try:
            value = _unwrap(getattr(obj, name)())
        except Exception as exc:
            _warn(type(obj).__name__, exc)
            continue
        if value is not None:
            bundle[mime] = value
    return bundle


def _plotly_figure(obj):
    basedatatypes = sys.modules.get("plotly.basedatatypes")
    return basedatatypes is not None and isinstance(obj, basedatatypes.BaseFigure)


def _altair_chart(obj):
    altair = sys.modules.get("altair")
    top = getattr(altair, "TopLevelMixin", None) if altair is not None else None
    return top is not None and isinstance(obj, top)


def _chart_files(what, render_png, render_html):
    """`chart_N.png` and `chart_N.html`, each on its own: one that fails says so on stderr
    and leaves no file."""
    png = next_free("chart", "png")
    html = png[: -len("png")] + "html"
    for path, render, label in ((png, render_png, what), (html, render_html, what + "'s HTML")):
        try:
            data = render()
        except Exception as exc:
            _warn(label, exc)
            continue
        with open(path, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
    return True


def show_plotly(fig_or_spec):
    """A plotly figure: `chart_N.png` through kaleido, and its HTML."""
    import plotly.io as pio

    fig = fig_or_spec
    if isinstance(fig_or_spec, dict):
        fig = pio.from_json(json.dumps(fig_or_spec))
    return _chart_files(
        "plotly figure",
        lambda: pio.to_image(fig, format="png", engine="kaleido"),
        lambda: pio.to_html(fig, include_plotlyjs="cdn", full_html=True),
    )


def show_vegalite(spec, chart=None):
    """A Vega-Lite chart (Vega-Altair's): `chart_N.png` through vl-convert, and its HTML."""

    def png():
        import vl_convert

        return vl_convert.vegalite_to_png(spec, scale=1)

    def html():
        if chart is not None and hasattr(chart, "to_html"):
            return chart.to_html()
        import vl_convert

        return vl_convert.vegalite_to_html(spec)

    return _chart_files("Vega-Lite chart", png, html)


def _svg_to_png(svg):
    import cairosvg

    data = svg.encode("utf-8") if isinstance(svg, str) else svg
    return cairosvg.svg2png(bytestring=data)


class _TextOf(html.parser.HTMLParser):
    """The text of HTML, cells separated by tabs and rows by lines, and its tags."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts = []
        self.tags = set()
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag in ("style", "script"):
            self.skip += 1
        elif tag in ("td", "th") and self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append("\t")
        elif tag in ("tr", "br", "p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6"):
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("style", "script") and self.skip:
            self.skip -= 1

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def html_text(markup):
    """(the text of the HTML, whether it is only a table)."""
    parser = _TextOf()
    try:
        parser.feed(markup)
        parser.close()
    except Exception:
        return markup, False
    lines = [re.sub(r"[ \t]*\t[ \t]*", "\t", line).strip() for line in "".join(parser.parts).split("\n")]
    text = "\n".join(line for line in lines if line)
    return text, parser.tags <= TABLE_TAGS


def show(obj, as_text):
    """Shows an object that is not a figure, a PIL image or a pandas table (those keep
    pandas' own text, whatever HTML they also have): True when it was shown here, False
    when only its text (`as_text`) is left to show."""
    if _plotly_figure(obj):
        return show_plotly(obj)
    if _altair_chart(obj):
        try:
            spec = obj.to_dict()
        except Exception as exc:
            _warn("Vega-Altair chart", exc)
            return False
        return show_vegalite(spec, obj)
    bundle = bundle_of(obj)
    if not bundle:
        return False
    return show_bundle(bundle, obj, as_text)


def show_bundle(bundle, obj, as_text):
    shown_image = False
    for mime, data in bundle.items():
        if mime.startswith("application/vnd.vegalite.") and mime.endswith("+json"):
            return show_vegalite(data)
        if mime == "application/vnd.plotly.v1+json":
            return show_plotly(data)
    try:
        if "image/png" in bundle:
            _write("image", "png", _as_bytes(bundle["image/png"]))
            shown_image = True
        elif "image/jpeg" in bundle:
            _write("image", "jpg", _as_bytes(bundle["image/jpeg"]))
            shown_image = True
        elif "image/svg+xml" in bundle:
            _write("image", "png", _svg_to_png(bundle["image/svg+xml"]))
            shown_image = True
    except Exception as exc:
        _warn("image", exc)
    if shown_image:
        return True
    plain = bundle.get("text/plain")
    own_text = plain if isinstance(plain, str) else as_text(obj)
    own_text = None if _DEFAULT_REPR.match(own_text.strip()) else own_text
    text = None
    if isinstance(bundle.get("text/markdown"), str):
        text = bundle["text/markdown"]
    elif isinstance(bundle.get("text/html"), str):
        markup = bundle["text/html"]
        readable, only_table = html_text(markup)
        if not only_table and len(markup.encode("utf-8", "replace")) <= MAX_HTML_BYTES:
            _write("display", "html", markup)
        text = own_text if own_text is not None else readable
    elif own_text is not None:
        text = own_text
    elif isinstance(bundle.get("text/latex"), str):
        text = bundle["text/latex"]
    elif "application/json" in bundle:
        text = json.dumps(bundle["application/json"], indent=2, default=str)
    if text is None:
        return False
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return True


def patch_plotly_show(module):
    """`fig.show()` and `plotly.io.show(fig)` display the figure here (no browser)."""
    base = getattr(module, "BaseFigure", None)
    if base is not None and not getattr(base.show, "_codebox", False):
        def show_figure(self, *args, **kwargs):
            show_plotly(self)

        show_figure._codebox = True
        base.show = show_figure


def patch_plotly_io(module):
    if getattr(getattr(module, "show", None), "_codebox", False):
        return

    def show_figure(fig, *args, **kwargs):
        show_plotly(fig)

    show_figure._codebox = True
    module.show = show_figure


def patch_altair(module):
    """`chart.show()` displays the chart here (no browser)."""
    top = getattr(module, "TopLevelMixin", None)
    if top is None:
        return

    def show_chart(self, *args, **kwargs):
        show_vegalite(self.to_dict(), self)

    top.show = show_chart


def install():
    import codebox_imports

    codebox_imports.after_import("plotly.basedatatypes", patch_plotly_show)
    codebox_imports.after_import("plotly.io", patch_plotly_io)
    codebox_imports.after_import("altair", patch_altair)
