"""A matplotlib figure as data for the model: what kind of chart each axes is, its title and
axis labels, its series and their first points, in one bounded line of text. A model that
cannot see the PNG still knows what its code drew, and one that can checks it against it."""

MAX_CHARS = 600
MAX_SERIES = 6
FIRST_POINTS = 3


def _number(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return repr(value)[:20]
    if number != number:
        return "nan"
    if number == int(number) and abs(number) < 1e15:
        return str(int(number))
    return "%.4g" % number


def _points(xs, ys):
    pairs = list(zip(list(xs)[:FIRST_POINTS], list(ys)[:FIRST_POINTS]))
    return ", ".join("(%s, %s)" % (_number(x), _number(y)) for x, y in pairs)


def _label(artist):
    label = artist.get_label() if hasattr(artist, "get_label") else ""
    if not isinstance(label, str) or label.startswith("_"):
        return ""
    return label


def _series(ax):
    """(kind, label, count, first points) for each series the axes shows."""
    found = []
    for line in ax.get_lines():
        xs, ys = line.get_xdata(), line.get_ydata()
        found.append(("line", _label(line), len(ys), _points(xs, ys)))
    for container in ax.containers:
        patches = [p for p in container if hasattr(p, "get_height")]
        if not patches:
            continue
        horizontal = getattr(container, "orientation", "vertical") == "horizontal"
        labels = [tick.get_text() for tick in (ax.get_yticklabels() if horizontal else ax.get_xticklabels())]
        values = [p.get_width() if horizontal else p.get_height() for p in patches]
        positions = [p.get_y() + p.get_height() / 2 if horizontal else p.get_x() + p.get_width() / 2 for p in patches]
        xs = labels if len(labels) == len(values) and all(labels) else positions
        kind = "barh" if horizontal else "bar"
        found.append((kind, _label(container), len(values), _points(xs, values)))
    for collection in ax.collections:
        offsets = collection.get_offsets() if hasattr(collection, "get_offsets") else []
        if len(offsets) == 0 or type(collection).__name__ != "PathCollection":
            continue
        found.append(("scatter", _label(collection), len(offsets), _points(offsets[:, 0], offsets[:, 1])))
    if ax.images:
        image = ax.images[0]
        shape = getattr(image.get_array(), "shape", ())
        found.append(("image", "", 1, "x".join(str(n) for n in shape[:2])))
    if not found and ax.patches:
        wedges = [p for p in ax.patches if type(p).__name__ == "Wedge"]
        if wedges:
            labels = [t.get_text() for t in ax.texts][: len(wedges)]
            found.append(("pie", "", len(wedges), ", ".join(labels[:FIRST_POINTS])))
    return found


def _describe_axes(ax):
    series = _series(ax)
    kinds = sorted({kind for kind, _, _, _ in series})
    parts = ["%s chart" % "+".join(kinds) if kinds else "empty axes"]
    title = ax.get_title()
    if title:
        parts.append("title %r" % title)
    for axis, text in (("x", ax.get_xlabel()), ("y", ax.get_ylabel())):
        if text:
            parts.append("%s %r" % (axis, text))
    shown = []
    for kind, label, count, first in series[:MAX_SERIES]:
        name = "%r " % label if label else ""
        noun = "point" if count == 1 else "points"
        shown.append("%s%s %d %s%s" % (name, kind, count, noun, ": " + first if first else ""))
    if series:
        more = " (+%d more)" % (len(series) - MAX_SERIES) if len(series) > MAX_SERIES else ""
        parts.append("%d series%s: %s" % (len(series), more, "; ".join(shown)))
    return ", ".join(parts)


def describe(fig, name):
    """One line for the figure written as `name`; never raises."""
    try:
        axes = [ax for ax in fig.get_axes() if ax.get_visible()]
        title = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else ""
        described = [_describe_axes(ax) for ax in axes]
    except Exception as exc:
        return "[%s: a figure (not described: %s)]" % (name, type(exc).__name__)
    head = "%s: " % name
    if title:
        head += "%r, " % title
    if len(described) > 1:
        body = " | ".join("axes %d: %s" % (i + 1, text) for i, text in enumerate(described))
    else:
        body = described[0] if described else "no axes"
    text = head + body
    if len(text) > MAX_CHARS:
        text = text[: MAX_CHARS - 1] + "…"
    return "[%s]" % text
