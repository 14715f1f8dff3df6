"""The text of a document, for the model's context: computed here, inside the sandbox, since
documents are untrusted files (zip bombs, hostile XML, broken PDFs) the host never parses.

document_text(path, file_type, max_chars) -> (text, details, remaining)
  text       the first max_chars characters of the document's text
  details    what the document is: "pdf, 3 pages", "docx", "scanned pdf without a text layer"
  remaining  characters of text left out after max_chars (0: the whole text is there)
"""

import html.parser
import re
import zipfile
import xml.etree.ElementTree as ET

# Types whose text goes into the model's context; any file read by the "text" loader
# (plain text, Markdown, code) counts too.
DOCUMENT_TYPES = {"pdf", "docx", "pptx", "odt", "odp", "rtf", "epub", "html", "htm", "xhtml"}

# Text read from one member of an archive-shaped document: a zip bomb stops here.
_MEMBER_LIMIT = 20 * 1024 * 1024


class _Collector:
    """Keeps at most `limit` characters and counts the rest."""

    def __init__(self, limit):
        self.limit = limit
        self.parts = []
        self.kept = 0
        self.dropped = 0

    def add(self, text):
        if not text:
            return
        room = self.limit - self.kept
        if room > 0:
            piece = text[:room]
            self.parts.append(piece)
            self.kept += len(piece)
            self.dropped += len(text) - len(piece)
        else:
            self.dropped += len(text)

    def result(self):
        return "".join(self.parts), self.dropped


def _local(tag):
    return tag.rsplit("}", 1)[-1]


def _xml_member(archive, name):
    info = archive.getinfo(name)
    if info.file_size > _MEMBER_LIMIT:
        raise ValueError("%s is %d bytes uncompressed, over the %d byte limit" % (name, info.file_size, _MEMBER_LIMIT))
    with archive.open(name) as f:
        return ET.fromstring(f.read(_MEMBER_LIMIT + 1))


def _paragraphs(root, paragraph_tags, text_tags):
    """The text of each paragraph-like element, in document order."""
    for element in root.iter():
        if _local(element.tag) in paragraph_tags:
            words = [t.text or "" for t in element.iter() if _local(t.tag) in text_tags]
            yield "".join(words)


def _pdf(path, out):
    import pypdf

    reader = pypdf.PdfReader(path)
    if reader.is_encrypted:
        try:
            reader.decrypt("")
        except Exception:
            return "pdf, encrypted: its text cannot be read without the password"
    pages = len(reader.pages)
    found = 0
    for number, page in enumerate(reader.pages, 1):
        if out.kept >= out.limit:
            # Pages not read are still counted as continuing, roughly by the last page's size.
            out.dropped += 1
            continue
        try:
            text = page.extract_text() or ""
        except Exception as exc:
            text = "[page %d could not be read: %s]" % (number, type(exc).__name__)
        found += len(text.strip())
        out.add("--- page %d ---\n%s\n" % (number, text.strip()))
    if pages and not found:
        out.parts, out.kept, out.dropped = [], 0, 0
        return "scanned pdf without a text layer (%d pages): no text can be extracted; it would need OCR" % pages
    return "pdf, %d page%s" % (pages, "" if pages == 1 else "s")


def _docx(path, out):
    with zipfile.ZipFile(path) as archive:
        root = _xml_member(archive, "word/document.xml")
    for paragraph in _paragraphs(root, {"p"}, {"t", "tab"}):
        out.add(paragraph + "\n")
    return "docx"


def _pptx(path, out):
    with zipfile.ZipFile(path) as archive:
        slides = [n for n in archive.namelist() if re.fullmatch(r"ppt/slides/slide\d+\.xml", n)]
        slides.sort(key=lambda n: int(re.search(r"(\d+)\.xml$", n).group(1)))
        for number, name in enumerate(slides, 1):
            out.add("--- slide %d ---\n" % number)
            for paragraph in _paragraphs(_xml_member(archive, name), {"p"}, {"t"}):
                out.add(paragraph + "\n")
    return "pptx, %d slide%s" % (len(slides), "" if len(slides) == 1 else "s")


def _odf(path, out):
    with zipfile.ZipFile(path) as archive:
        root = _xml_member(archive, "content.xml")
    for element in root.iter():
        if _local(element.tag) in ("p", "h"):
            out.add("".join(element.itertext()) + "\n")
    return "opendocument"


class _HtmlText(html.parser.HTMLParser):
    _SKIP = {"script", "style", "head", "title", "noscript", "template"}
    _BREAK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre", "table"}

    def __init__(self, out):
        super().__init__(convert_charrefs=True)
        self.out = out
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self._SKIP:
            self.skipping += 1
        elif tag in self._BREAK:
            self.out.add("\n")

    def handle_endtag(self, tag):
        if tag in self._SKIP and self.skipping:
            self.skipping -= 1

    def handle_data(self, data):
        if not self.skipping:
            self.out.add(re.sub(r"[ \t\r\f\v]+", " ", data))


def _html_into(markup, out):
    parser = _HtmlText(out)
    parser.feed(markup)
    parser.close()


def _html(path, out):
    with open(path, "rb") as f:
        markup = f.read(_MEMBER_LIMIT).decode("utf-8", "replace")
    _html_into(markup, out)
    return "html"


def _epub(path, out):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        order = []
        try:
            container = _xml_member(archive, "META-INF/container.xml")
            rootfile = next(e.get("full-path") for e in container.iter() if _local(e.tag) == "rootfile")
            opf = _xml_member(archive, rootfile)
            base = rootfile.rsplit("/", 1)[0] + "/" if "/" in rootfile else ""
            items = {e.get("id"): e.get("href") for e in opf.iter() if _local(e.tag) == "item"}
            order = [base + items[e.get("idref")] for e in opf.iter() if _local(e.tag) == "itemref" and e.get("idref") in items]
        except Exception:
            order = []
        if not order:
            order = sorted(n for n in names if n.endswith((".xhtml", ".html", ".htm")))
        chapters = 0
        for name in order:
            if name not in names or out.kept >= out.limit:
                continue
            info = archive.getinfo(name)
            if info.file_size > _MEMBER_LIMIT:
                continue
            chapters += 1
            _html_into(archive.read(name).decode("utf-8", "replace"), out)
    return "epub, %d chapter%s" % (chapters, "" if chapters == 1 else "s")


_RTF_SKIP_GROUPS = ("fonttbl", "colortbl", "stylesheet", "info", "pict", "header", "footer", "*")


def _rtf(path, out):
    with open(path, "rb") as f:
        source = f.read(_MEMBER_LIMIT).decode("latin-1")
    depth_skipped = []
    depth = 0
    pieces = []
    tokens = re.finditer(r"\\([a-zA-Z]+)(-?\d+)? ?|\\'([0-9a-fA-F]{2})|\\(.)|([{}])|([^\\{}]+)", source)
    for m in tokens:
        word, _, hexbyte, symbol, brace, text = m.groups()
        if brace == "{":
            depth += 1
            continue
        if brace == "}":
            if depth_skipped and depth_skipped[-1] == depth:
                depth_skipped.pop()
            depth -= 1
            continue
        skipping = bool(depth_skipped)
        if word is not None:
            if word in _RTF_SKIP_GROUPS and not skipping:
                depth_skipped.append(depth)
            elif not skipping and word in ("par", "line", "row"):
                pieces.append("\n")
            elif not skipping and word == "tab":
                pieces.append("\t")
        elif symbol is not None:
            if symbol == "*" and not skipping:
                depth_skipped.append(depth)
            elif not skipping and symbol in "\\{}":
                pieces.append(symbol)
        elif hexbyte is not None and not skipping:
            pieces.append(bytes([int(hexbyte, 16)]).decode("cp1252", "replace"))
        elif text is not None and not skipping:
            pieces.append(text.replace("\r", "").replace("\n", ""))
    out.add("".join(pieces))
    return "rtf"


def _plain(path, out):
    with open(path, "rb") as f:
        data = f.read(out.limit * 4 + 4)
        rest = len(f.read(_MEMBER_LIMIT))
    text = data.decode("utf-8", "replace")
    out.add(text)
    out.dropped += rest
    return "text"


_EXTRACTORS = {
    "pdf": _pdf,
    "docx": _docx,
    "pptx": _pptx,
    "odt": _odf,
    "odp": _odf,
    "rtf": _rtf,
    "epub": _epub,
    "html": _html,
    "htm": _html,
    "xhtml": _html,
}


def is_document(file_type, loader):
    return file_type in DOCUMENT_TYPES or loader == "text"


def document_text(path, file_type, max_chars):
    out = _Collector(max_chars)
    details = _EXTRACTORS.get(file_type, _plain)(path, out)
    text, remaining = out.result()
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return text, details, remaining
