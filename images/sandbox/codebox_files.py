"""load_file(file_id, **kwargs): the user's stored files, as natural Python objects.

The runner registers the files of the run (id -> path, name, type) before the code starts.
The type was detected on the host from the shared table (filetypes.json, next to this
module), which also names the loader for each type; kwargs go to the underlying reader.
"""

import json
import os

_TABLE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "filetypes.json")
_FILES = {}
_LOADER_BY_TYPE = None


def _loaders_by_type():
    global _LOADER_BY_TYPE
    if _LOADER_BY_TYPE is None:
        with open(_TABLE_PATH) as f:
            table = json.load(f)
        _LOADER_BY_TYPE = {row[0]: row[3] for row in table["types"]}
    return _LOADER_BY_TYPE


def register(files):
    """Called by the runner: files is a list of {file_id, filename, file_type, path}."""
    _FILES.clear()
    for entry in files:
        _FILES[entry["file_id"]] = dict(entry)


def list_files():
    """The files this run can load: [{file_id, filename, file_type, path}]."""
    return [dict(v) for v in _FILES.values()]


def file_path(file_id):
    """The read-only path of a file, for readers load_file does not cover."""
    return _entry(file_id)["path"]


def _entry(file_id):
    entry = _FILES.get(file_id)
    if entry is None:
        listed = ["%s (%s)" % (k, v["filename"]) for k, v in sorted(_FILES.items())]
        available = ", ".join(listed[:30]) or "none"
        if len(listed) > 30:
            available += " and %d more" % (len(listed) - 30)
        raise FileNotFoundError(
            "no file with id %r for this user; available: %s" % (file_id, available)
        )
    return entry


def _pandas():
    import pandas

    return pandas


def _csv(path, **kw):
    return _pandas().read_csv(path, **kw)


def _tsv(path, **kw):
    kw.setdefault("sep", "\t")
    return _pandas().read_csv(path, **kw)


def _psv(path, **kw):
    kw.setdefault("sep", "|")
    return _pandas().read_csv(path, **kw)


def _excel(path, **kw):
    # pandas returns the first sheet by default; sheet_name=None gives all sheets as a dict.
    return _pandas().read_excel(path, **kw)


def _ods(path, **kw):
    kw.setdefault("engine", "odf")
    return _pandas().read_excel(path, **kw)


def _parquet(path, **kw):
    return _pandas().read_parquet(path, **kw)


def _feather(path, **kw):
    return _pandas().read_feather(path, **kw)


def _orc(path, **kw):
    return _pandas().read_orc(path, **kw)


def _sas(path, **kw):
    return _pandas().read_sas(path, **kw)


def _stata(path, **kw):
    return _pandas().read_stata(path, **kw)


def _spss(path, **kw):
    return _pandas().read_spss(path, **kw)


def _jsonl(path, **kw):
    kw.setdefault("lines", True)
    return _pandas().read_json(path, **kw)


def _open_maybe_compressed(path):
    if path.endswith(".gz"):
        import gzip

        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _json(path, **kw):
    with _open_maybe_compressed(path) as f:
        return json.load(f, **kw)


def _yaml(path, **kw):
    import yaml

    with open(path, encoding="utf-8") as f:
        docs = list(yaml.safe_load_all(f, **kw))
    return docs[0] if len(docs) == 1 else docs


def _toml(path, **kw):
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    with open(path, "rb") as f:
        return tomllib.load(f, **kw)


def _xml(path, **kw):
    import xml.etree.ElementTree as ET

    return ET.parse(path, **kw).getroot()


def _npy(path, **kw):
    import numpy

    return numpy.load(path, **kw)


def _npz(path, **kw):
    import numpy

    return numpy.load(path, **kw)


def _mat(path, **kw):
    import scipy.io

    return scipy.io.loadmat(path, **kw)


def _pickle(path, **kw):
    # The user's own file, loaded in the user's own sandbox.
    import pickle

    with open(path, "rb") as f:
        return pickle.load(f, **kw)


def _joblib(path, **kw):
    import joblib

    return joblib.load(path, **kw)


def _sqlite(path, **kw):
    import sqlite3
    import urllib.parse

    # Read-only mount: immutable=1 stops SQLite from looking for a journal it cannot create.
    uri = "file:%s?mode=ro&immutable=1" % urllib.parse.quote(path)
    return sqlite3.connect(uri, uri=True, **kw)


def _hdf5(path, **kw):
    if kw.get("key") is not None:
        return _pandas().read_hdf(path, **kw)
    try:
        return _pandas().read_hdf(path, **kw)
    except Exception:
        import h5py

        return h5py.File(path, "r")


def _netcdf(path, **kw):
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:3] == b"CDF":
        import scipy.io

        kw.setdefault("mmap", False)
        return scipy.io.netcdf_file(path, "r", **kw)
    import h5py

    return h5py.File(path, "r")


def _image(path, **kw):
    from PIL import Image

    image = Image.open(path, **kw)
    image.load()
    return image


def _text(path, **kw):
    kw.setdefault("encoding", "utf-8")
    kw.setdefault("errors", "replace")
    with open(path, **kw) as f:
        return f.read()


def _zip(path, **kw):
    import zipfile

    return zipfile.ZipFile(path, **kw)


def _tar(path, **kw):
    import tarfile

    return tarfile.open(path, **kw)


def _gzip(path, **kw):
    import gzip

    with gzip.open(path, "rb", **kw) as f:
        return f.read()


def _bzip2(path, **kw):
    import bz2

    with bz2.open(path, "rb", **kw) as f:
        return f.read()


def _xz(path, **kw):
    import lzma

    with lzma.open(path, "rb", **kw) as f:
        return f.read()


def _wav(path, **kw):
    import scipy.io.wavfile

    return scipy.io.wavfile.read(path, **kw)


def _bytes(path, **kw):
    with open(path, "rb") as f:
        return f.read()


LOADERS = {
    "csv": _csv, "tsv": _tsv, "psv": _psv, "excel": _excel, "ods": _ods,
    "parquet": _parquet, "feather": _feather, "orc": _orc, "sas": _sas, "stata": _stata,
    "spss": _spss, "jsonl": _jsonl, "json": _json, "yaml": _yaml, "toml": _toml,
    "xml": _xml, "npy": _npy, "npz": _npz, "mat": _mat, "pickle": _pickle,
    "joblib": _joblib, "sqlite": _sqlite, "hdf5": _hdf5, "netcdf": _netcdf,
    "image": _image, "text": _text, "zip": _zip, "tar": _tar, "gzip": _gzip,
    "bzip2": _bzip2, "xz": _xz, "wav": _wav, "bytes": _bytes,
}


def load_file(file_id, **kwargs):
    """Returns the stored file as its natural object; kwargs go to the reader.

    DataFrame for tables (csv, tsv, xlsx/xls/ods first sheet, parquet, feather, orc,
    sas7bdat, dta, sav, jsonl), parsed objects for json/yaml/toml/xml, numpy arrays for
    npy/npz, unpickled objects for pkl/joblib, a read-only sqlite3 connection, pandas or
    h5py for h5/hdf5, a PIL image for pictures, text for text and code, ZipFile/TarFile
    for archives, bytes otherwise.
    """
    entry = _entry(file_id)
    loader = LOADERS.get(_loaders_by_type().get(entry["file_type"], "bytes"), _bytes)
    return loader(entry["path"], **kwargs)


def _table_summary(df, extra=""):
    import io

    buf = io.StringIO()
    buf.write("%s%d rows x %d columns\n" % (extra, len(df), len(df.columns)))
    buf.write("dtypes: %s\n" % ", ".join("%s: %s" % (c, t) for c, t in list(df.dtypes.items())[:30]))
    with _pandas().option_context("display.width", 120, "display.max_columns", 12):
        buf.write(df.head(5).to_string(max_colwidth=30))
    return buf.getvalue()


def _document_summary(entry, kind, document_chars):
    import codebox_documents

    text, details, remaining = codebox_documents.document_text(entry["path"], entry["file_type"], document_chars)
    if not text:
        return "%s; no text" % details if "no text" not in details else details
    summary = "%s; text:\n%s" % (details, text)
    if remaining:
        summary += "\n[text continues: %d more characters not shown; read the rest with code]" % remaining
    return summary


def summarize(file_id, max_chars=1500, document_chars=0):
    """A short description of a file for the model: computed here, inside the sandbox.
    Documents (PDF, DOCX, PPTX, ODT, RTF, EPUB, HTML, text and code) carry their text, up to
    document_chars characters, when document_chars is set."""
    import codebox_documents

    entry = _entry(file_id)
    kind = _loaders_by_type().get(entry["file_type"], "bytes")
    if document_chars and codebox_documents.is_document(entry["file_type"], kind):
        try:
            return _document_summary(entry, kind, document_chars)
        except Exception as exc:  # a broken document still gets a summary, saying so
            return "%s file whose text could not be read: %s: %s" % (entry["file_type"], type(exc).__name__, str(exc)[:300])
    try:
        if kind in ("excel", "ods"):
            sheets = load_file(file_id, sheet_name=None)
            names = list(sheets)
            text = _table_summary(sheets[names[0]], "sheets: %s\nfirst sheet: " % ", ".join(map(str, names)))
        elif kind in ("csv", "tsv", "psv", "parquet", "feather", "orc", "sas", "stata", "spss", "jsonl"):
            text = _table_summary(load_file(file_id))
        elif kind == "image":
            img = load_file(file_id)
            text = "image %dx%d, mode %s, format %s" % (img.width, img.height, img.mode, img.format)
        elif kind == "zip":
            names = load_file(file_id).namelist()
            text = "archive with %d members: %s" % (len(names), ", ".join(names[:10]))
        elif kind == "tar":
            names = load_file(file_id).getnames()
            text = "archive with %d members: %s" % (len(names), ", ".join(names[:10]))
        elif kind in ("json", "yaml", "toml"):
            value = load_file(file_id)
            if isinstance(value, dict):
                text = "%s object with keys: %s" % (kind, ", ".join(map(str, list(value)[:20])))
            elif isinstance(value, list):
                text = "%s array of %d items" % (kind, len(value))
            else:
                text = "%s value: %r" % (kind, value)
        elif kind == "npy":
            arr = load_file(file_id)
            text = "array shape %s, dtype %s" % (arr.shape, arr.dtype)
        elif kind == "npz":
            data = load_file(file_id)
            text = "arrays: %s" % ", ".join("%s %s" % (k, data[k].shape) for k in data.files[:20])
        elif kind == "sqlite":
            con = load_file(file_id)
            tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
            text = "sqlite database with tables: %s" % ", ".join(tables[:20])
        elif kind == "text":
            content = load_file(file_id)
            lines = content.splitlines()
            text = "%d lines; first lines:\n%s" % (len(lines), "\n".join(lines[:5]))
        else:
            text = "%s file, %d bytes" % (entry["file_type"], os.path.getsize(entry["path"]))
    except Exception as exc:  # a broken file still gets a summary, saying so
        text = "%s file that could not be read: %s: %s" % (entry["file_type"], type(exc).__name__, exc)
    if len(text) > max_chars:
        text = text[: max_chars - 3] + "..."
    return text


def prepare_image(file_id, max_side, max_bytes):
    """The picture of file_id made ready for the model (see codebox_vision)."""
    import codebox_vision

    entry = _entry(file_id)
    report = codebox_vision.prepare(entry["path"], max_side, max_bytes, os.path.getsize(entry["path"]))
    report["file_id"] = file_id
    return report


def summarize_all():
    return {file_id: summarize(file_id) for file_id in _FILES}
