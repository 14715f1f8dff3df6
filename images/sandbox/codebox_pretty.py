"""The text of a shown value laid out as IPython's pretty printer lays it out, because a
notebook's reader (and the model trained on notebooks) expects it: a tuple, list or dict
whose one-line repr does not fit in 79 columns is broken after each element, each element
indented under the first, and a multi-line element (a numpy array) keeps its own lines
indented to where it starts.

Only the builtin containers themselves are laid out (their subclasses, and every other
object, keep their own repr), as IPython does for types without a pretty printer."""

MAX_WIDTH = 79
# IPython's `max_seq_length`: longer sequences end with "..." after this many elements.
MAX_SEQ_LENGTH = 1000


def _indent_lines(text, indent):
    return text.replace("\n", "\n" + " " * indent)


def pretty(obj, indent=0):
    """`repr(obj)`, or for a tuple, list or dict that does not fit, IPython's layout."""
    kind = type(obj)
    if kind not in (tuple, list, dict) or not obj:
        return _indent_lines(repr(obj), indent)
    one_line = repr(obj)
    if "\n" not in one_line and indent + len(one_line) <= MAX_WIDTH:
        return one_line
    inner = indent + 1
    separator = ",\n" + " " * inner
    if kind is dict:
        items = list(obj.items())
        parts = ["%s: %s" % (pretty(key, inner), pretty(value, inner)) for key, value in items[:MAX_SEQ_LENGTH]]
        opening, closing = "{", "}"
    else:
        items = list(obj)
        parts = [pretty(item, inner) for item in items[:MAX_SEQ_LENGTH]]
        opening, closing = ("(", ")") if kind is tuple else ("[", "]")
        if kind is tuple and len(items) == 1:
            closing = ",)"
    if len(items) > MAX_SEQ_LENGTH:
        parts.append("...")
    return opening + separator.join(parts) + closing
