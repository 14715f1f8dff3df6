"""Just enough of a Rust reader to take the host's side of the protocol from its source:
constants, and the serde names of structs' fields and enums' variants.

Items are found by their declaration anywhere under src/, so a file that moves is still
found; an item that disappears fails the test that needs it."""

import os
import re

SANDBOX_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_DIR = os.path.dirname(os.path.dirname(SANDBOX_DIR))
SRC_DIR = os.path.join(REPO_DIR, "src")

_CHAR_LITERAL = re.compile(r"'(?:\\(?:u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'")


def _strip_comments(text):
    """The source without comments; strings, chars and everything else in place."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c == '"' or (c == "r" and re.match(r'r#*"', text[i:i + 8]) and not text[i - 1:i].isalnum()):
            end = _string_end(text, i)
            out.append(text[i:end])
            i = end
        elif c == "'":
            m = _CHAR_LITERAL.match(text, i)
            end = m.end() if m else i + 1
            out.append(text[i:end])
            i = end
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _string_end(text, i):
    if text[i] == "r":
        hashes = re.match(r"r(#*)\"", text[i:]).group(1)
        close = '"' + hashes
        start = i + 2 + len(hashes)
        return text.index(close, start) + len(close)
    j = i + 1
    while text[j] != '"':
        j += 2 if text[j] == "\\" else 1
    return j + 1


def _mask(text):
    """The same text with the insides of strings and chars blanked (same offsets)."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"' or (c == "r" and re.match(r'r#*"', text[i:i + 8]) and not text[i - 1:i].isalnum()):
            end = _string_end(text, i)
            for k in range(i + 1, end - 1):
                out[k] = " "
            i = end
        elif c == "'":
            m = _CHAR_LITERAL.match(text, i)
            if m:
                for k in range(i + 1, m.end() - 1):
                    out[k] = " "
                i = m.end()
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


class Source:
    def __init__(self, path):
        self.path = path
        with open(path, encoding="utf-8") as f:
            self.text = _strip_comments(f.read())
        self.masked = _mask(self.text)


_sources = {}


def source_of(path):
    """The file's Source, read again only when it changed."""
    stamp = os.stat(path).st_mtime_ns
    cached = _sources.get(path)
    if cached is None or cached[0] != stamp:
        cached = _sources[path] = (stamp, Source(path))
    return cached[1]


def rust_files():
    for root, _, names in os.walk(SRC_DIR):
        for name in sorted(names):
            if name.endswith(".rs"):
                yield os.path.join(root, name)


def find(declaration):
    """The source (comments stripped) that declares `declaration` (a regex), and where."""
    pattern = re.compile(declaration)
    found = []
    for path in rust_files():
        source = source_of(path)
        m = pattern.search(source.masked)
        if m:
            found.append((source, m))
    assert found, "no Rust source under %s declares %r" % (SRC_DIR, declaration)
    assert len(found) == 1, "%r is declared in %s" % (declaration, [s.path for s, _ in found])
    return found[0]


def const_value(name, near=None):
    """The value of `pub const NAME`, or of a private `const NAME` in the file that
    declares `near` (a regex)."""
    if near is None:
        source, m = find(r"pub const %s\s*:\s*[^=]+=\s*" % re.escape(name))
    else:
        source, _ = find(near)
        m = re.search(r"\bconst %s\s*:\s*[^=]+=\s*" % re.escape(name), source.masked)
        assert m, "%s declares no const %s" % (source.path, name)
    end = source.text.index(";", m.end())
    return source.text[m.end():end].strip()


def _block(source, start):
    """(open, close) offsets of the first brace block at or after `start`."""
    masked = source.masked
    open_ = masked.index("{", start)
    depth = 0
    for i in range(open_, len(masked)):
        if masked[i] == "{":
            depth += 1
        elif masked[i] == "}":
            depth -= 1
            if depth == 0:
                return open_, i
    raise ValueError("unbalanced braces in %s" % source.path)


def _items(source, open_, close):
    """The comma-separated items of a block, as (offset, text, masked text)."""
    items, depth, begin = [], 0, open_ + 1
    pairs = {"{": 1, "(": 1, "[": 1, "<": 1, "}": -1, ")": -1, "]": -1, ">": -1}
    masked = source.masked
    for i in range(open_ + 1, close):
        c = masked[i]
        if c == ">" and masked[i - 1] in "-=":
            continue
        depth += pairs.get(c, 0)
        if c == "," and depth == 0:
            items.append((begin, source.text[begin:i], masked[begin:i]))
            begin = i + 1
    items.append((begin, source.text[begin:close], masked[begin:close]))
    return [(o, t, m) for o, t, m in items if m.strip()]


_ATTRIBUTES = re.compile(r"^\s*((?:#\[[^\]]*(?:\[[^\]]*\][^\]]*)*\]\s*)*)", re.S)


def _attributes_and_rest(text, masked):
    m = _ATTRIBUTES.match(masked)
    return text[: m.end()], text[m.end():], masked[m.end():]


def _serde(attributes, key):
    """The string value of `key = "..."` in the serde attributes, or None."""
    for attr in re.findall(r"#\[serde\((.*?)\)\]", attributes, re.S):
        m = re.search(r"\b%s\s*=\s*\"([^\"]*)\"" % key, attr)
        if m:
            return m.group(1)
    return None


def _serde_flag(attributes, word):
    return any(
        re.search(r"(^|[\s,(])%s\b(?!\s*=)" % word, attr)
        for attr in re.findall(r"#\[serde\((.*?)\)\]", attributes, re.S)
    )


def _preceding_attributes(source, start):
    """The attributes written just before the item that starts at `start`."""
    before = source.text[:start]
    lines = before.rstrip().split("\n")
    attrs = []
    while lines and lines[-1].strip().startswith("#["):
        attrs.insert(0, lines.pop())
    return "\n".join(attrs)


def _rename(name, rule):
    if rule == "lowercase":
        return name.lower()
    if rule == "snake_case":
        return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()
    assert rule is None, "serde rename_all rule %r is not known here" % rule
    return name


class Field:
    def __init__(self, name, serde_name, default, flatten_type=None):
        self.name, self.serde_name, self.default = name, serde_name, default
        # `#[serde(flatten)]`: the field stands for the fields of this struct.
        self.flatten_type = flatten_type

    def __repr__(self):
        return "Field(%r%s)" % (self.serde_name, ", default" if self.default else "")


def _fields(source, open_, close, all_default=False):
    fields = []
    for _, text, masked in _items(source, open_, close):
        attrs, rest, rest_masked = _attributes_and_rest(text, masked)
        m = re.match(r"\s*(?:pub(?:\([^)]*\))?\s+)?([a-z_][a-z0-9_]*)\s*:\s*([A-Za-z_][\w:]*)",
                     rest_masked)
        assert m, "not a field: %r" % rest
        name = m.group(1)
        flatten = m.group(2).split("::")[-1] if _serde_flag(attrs, "flatten") else None
        fields.append(Field(name, _serde(attrs, "rename") or name,
                            all_default or _serde_flag(attrs, "default"), flatten))
    return fields


def struct_fields(name):
    """The fields of `pub struct NAME { ... }`, by their serde names."""
    source, m = find(r"pub struct %s\s*\{" % re.escape(name))
    attrs = _preceding_attributes(source, m.start())
    open_, close = _block(source, m.start())
    fields = {}
    for f in _fields(source, open_, close, _serde_flag(attrs, "default")):
        if f.flatten_type:
            fields.update(struct_fields(f.flatten_type))
        else:
            fields[f.serde_name] = f
    return fields


def enum_variants(name):
    """{serde name: fields (a dict, for a struct-like variant) or None} of `pub enum NAME`."""
    source, m = find(r"pub enum %s\s*\{" % re.escape(name))
    rule = _serde(_preceding_attributes(source, m.start()), "rename_all")
    open_, close = _block(source, m.start())
    variants = {}
    for offset, text, masked in _items(source, open_, close):
        attrs, rest, rest_masked = _attributes_and_rest(text, masked)
        v = re.match(r"\s*([A-Z][A-Za-z0-9]*)", rest_masked)
        assert v, "not a variant: %r" % rest
        serde_name = _serde(attrs, "rename") or _rename(v.group(1), rule)
        fields = None
        if "{" in rest_masked:
            v_open, v_close = _block(source, offset)
            fields = {f.serde_name: f for f in _fields(source, v_open, v_close)}
        variants[serde_name] = fields
    return variants


def string_literals():
    """Every string literal of the host's source."""
    literals = set()
    for path in rust_files():
        literals |= set(re.findall(r'"((?:\\.|[^"\\])*)"', source_of(path).text))
    return literals
