"""Pictures made ready for the model, here, inside the sandbox: the host never decodes an
untrusted image. prepare(path, max_side, max_bytes) measures the picture and, when it is
larger than the model takes, downscales it; measure(source, max_side) only measures it (a
run's own figures, codebox_runner.pictures). The host only moves the bytes and reads this
report.

Report: {"ok": true, "width", "height", "mime", "downscaled": bool, "data": base64 or absent}
        {"ok": false, "note": why the file is not shown as a picture}
"""

import base64
import io
import warnings

# The model takes these four; anything else (even if PIL reads it) is not sent as a picture.
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
MIME_TYPES = tuple(_MIME.values())

# Decoding more pixels than this could take the run's whole memory (40 M pixels RGBA is
# 160 MB); such a picture is refused before any pixel is decoded.
MAX_PIXELS = 40_000_000


def _encode(img, as_png, quality=85):
    buf = io.BytesIO()
    if as_png:
        img.save(buf, format="PNG", optimize=True)
    else:
        img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _flatten(img):
    """JPEG has no alpha: the picture goes onto white, as a viewer would show it."""
    from PIL import Image

    if img.mode != "RGBA":
        return img
    white = Image.new("RGB", img.size, "white")
    white.paste(img, mask=img.getchannel("A"))
    return white


def _open(source, max_side=None):
    """(img, fmt, width, height) of a picture whose every pixel decoded, or the report of
    why it is not shown as one (or, with `max_side`, why it was not decoded)."""
    from PIL import Image

    # PIL's own bomb check is replaced by the stricter one below, which names the size;
    # opening reads only the header.
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(source)
            fmt = img.format
            if fmt not in _MIME:
                return {"ok": False, "note": "not a PNG, JPEG, GIF or WebP picture (%s)" % (fmt or "unknown")}
            width, height = img.size
            if width * height > MAX_PIXELS:
                return {
                    "ok": False,
                    "note": "%dx%d is too many pixels to decode safely (at most %d)" % (width, height, MAX_PIXELS),
                }
            if max_side is not None and max(width, height) > max_side:
                return {"ok": False, "note": "%dx%d is over %d px on a side" % (width, height, max_side)}
            img.load()
    except Exception as exc:
        return {"ok": False, "note": "not a readable picture (%s: %s)" % (type(exc).__name__, str(exc)[:160])}
    return img, fmt, width, height


def measure(source, max_side):
    """The picture's size and type, every pixel decoded, nothing re-encoded: what the host
    needs to send it as it is. `source` is a path or a binary file. A picture with a side
    over `max_side` is not decoded (the host would downscale it anyway)."""
    opened = _open(source, max_side)
    if isinstance(opened, dict):
        return opened
    _, fmt, width, height = opened
    return {"ok": True, "width": width, "height": height, "mime": _MIME[fmt]}


def prepare(path, max_side, max_bytes, size_on_disk):
    from PIL import Image

    opened = _open(path)
    if isinstance(opened, dict):
        return opened
    img, fmt, width, height = opened
    if max(width, height) <= max_side and size_on_disk <= max_bytes:
        return {"ok": True, "width": width, "height": height, "mime": _MIME[fmt], "downscaled": False}

    if getattr(img, "is_animated", False):
        img.seek(0)
    alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    img = img.convert("RGBA" if alpha else "RGB")
    img.thumbnail((max_side, max_side), Image.LANCZOS)
    # Charts and screenshots stay PNG (sharp text); photos become JPEG.
    as_png = fmt in ("PNG", "GIF")
    if not as_png:
        img = _flatten(img)
    data = _encode(img, as_png)
    while len(data) > max_bytes:
        if as_png:
            as_png = False
            img = _flatten(img)
        else:
            img = img.resize((max(1, img.width * 3 // 4), max(1, img.height * 3 // 4)), Image.LANCZOS)
        data = _encode(img, as_png)
    return {
        "ok": True,
        "width": img.width,
        "height": img.height,
        "mime": "image/png" if as_png else "image/jpeg",
        "downscaled": True,
        "original": [width, height],
        "data": base64.b64encode(data).decode("ascii"),
    }
