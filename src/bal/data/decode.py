"""Decoding one image file into RGB pixels of one square size, fast for large photos.

Every image becomes RGB of one square size S:

* a JPEG much larger than S is decoded at a reduced scale (Pillow's ``draft``: the
  decoder skips detail, 1/2 to 1/8 of each side, never below S); any other image much
  larger than S is first shrunk by an integer factor with ``Image.reduce`` (box filter);
  a 12-megapixel photo so decodes several times faster than a full decode and resize
  (``benchmarks/scale.py`` measures it);
* the EXIF orientation is applied (``ImageOps.exif_transpose``), so a phone photo is upright;
* grayscale (``1``, ``L``, ``LA``) is repeated into three channels;
* 16/32-bit grayscale (``I;16*``, ``I``) is scaled from 0..65535 down to 0..255
  (PIL's own conversion would clip everything above 255 to white);
* floating-point grayscale (``F``, a float TIFF) whose values lie in 0..1 is scaled to
  0..255 (PIL would make it all black); other float values are clipped to 0..255, as
  PIL does, and NaN is black;
* palette images (``P``, ``PA``) take their palette colours;
* CMYK, YCbCr and the rest go through ``Image.convert("RGB")``;
* an alpha channel is dropped, keeping the colour stored under transparent pixels.
  This is what torchvision's ``ImageFolder`` loader (``convert("RGB")``) does, so the
  pixels match the reference implementation's;
* the aspect ratio is kept (:func:`fit_square`): an image whose long side is at most
  twice its short side (every camera and phone format, 16:9 included) is centre-cropped
  to its central square; a longer one (a panorama, a scanned strip) is scaled so its long
  side is S and padded with black above and below (or left and right), so it is seen
  whole. The square is then resized to S x S with PIL's antialiased bilinear filter. A
  square image of size S is left exactly as it is (CIFAR's pixels are the files').

Only the formats of bal's file extensions are opened (:data:`ACCEPTED_FORMATS`): a file
of any other format is refused whatever its name, so that a PostScript file called
``photo.jpg`` never reaches Ghostscript. An image whose decode would hold more than
:data:`MAX_DECODE_PIXELS` pixels (after a JPEG's reduced-scale decoding) is refused
before it is decoded: a small compressed file can expand to gigabytes.
"""

from __future__ import annotations

import io
from collections import Counter

import numpy as np

# The plugins of ACCEPTED_FORMATS, registered up front: Image.open(formats=...) only knows loaded ones.
from PIL import (  # noqa: F401
    BmpImagePlugin,
    Image,
    ImageFile,
    ImageOps,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    UnidentifiedImageError,
    WebPImagePlugin,  # noqa: F401
)

from bal.errors import DataError

__all__ = [
    "ACCEPTED_FORMATS", "MAX_DECODE_PIXELS", "PAD_ABOVE", "ImageDecodeError", "decode_image", "encode_png",
    "fit_square", "image_header", "infer_image_size",
]

#: Aspect ratio (long side / short side) above which an image is padded rather than cropped.
PAD_ABOVE = 2.0

# A truncated JPEG must be reported, not silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")

#: Pillow's names of the formats of :data:`bal.data.IMAGE_EXTENSIONS` (a phone's multi-picture
#: JPEG opens through "JPEG", as format "MPO").
ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "WEBP", "TIFF")
_ACCEPTED = "JPEG, PNG, BMP, WebP or TIFF"

#: The most pixels bal decodes in one image (100 megapixels: ~300 MB as RGB, ~1 GB at the
#: peak for a 16-bit one). A JPEG is counted after its reduced-scale decoding, so a phone's
#: 200-megapixel JPEG is well inside.
MAX_DECODE_PIXELS = 100_000_000


class ImageDecodeError(DataError):
    """One file that could not be decoded; ``reason`` is short, e.g. ``'empty file'``."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def short_reason(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg if len(msg) <= 200 else msg[:197] + "..."


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageDecodeError(path, f"cannot read: {e.strerror or short_reason(e)}") from None
    if not data:
        raise ImageDecodeError(path, "empty file")
    return data


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _SIXTEEN_BIT_MODES:
        a = np.clip(np.asarray(img), 0, 65535).astype(np.uint32)  # 4 bytes a pixel, not 8
        a *= 255
        a += 32767
        a //= 65535
        return Image.fromarray(a.astype(np.uint8)).convert("RGB")
    if mode == "F":
        a = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        if a.size and a.min() >= 0.0 and a.max() <= 1.0:  # a 0..1 float image, the usual float TIFF
            a = a * 255.0
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8)).convert("RGB")
    if mode in ("P", "PA") and (mode == "PA" or "transparency" in img.info):
        # Going through RGBA gives the same colours as convert("RGB") but without
        # PIL's warning about palette transparency.
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")


def fit_square(img: Image.Image, size: int) -> Image.Image:
    """``img`` (RGB) as a ``size`` x ``size`` square by the module's aspect rule: centre crop, or pad beyond 2:1."""
    w, h = img.size
    if (w, h) == (size, size):
        return img
    long, short = max(w, h), min(w, h)
    if long <= PAD_ABOVE * short:
        left, top = (w - short) // 2, (h - short) // 2
        box = (left, top, left + short, top + short)
        return img.resize((size, size), Image.BILINEAR, box=box, reducing_gap=None if short < 3 * size else 3.0)
    scaled = (size, max(1, round(h * size / w))) if w >= h else (max(1, round(w * size / h)), size)
    inner = img.resize(scaled, Image.BILINEAR, reducing_gap=None if long < 3 * size else 3.0)
    canvas = Image.new("RGB", (size, size))
    canvas.paste(inner, ((size - scaled[0]) // 2, (size - scaled[1]) // 2))
    return canvas


def decode_image(path: str, size: int) -> np.ndarray:
    """Decode one file into RGB pixels of shape (size, size, 3), dtype uint8 (see the module docstring).

    Raises
    ------
    ImageDecodeError
        (a :class:`~bal.errors.DataError`) whose ``reason`` is short, e.g.
        ``"empty file"``, ``"cannot identify image file"`` or
        ``"truncated/corrupt: <PIL's message>"``.
    """
    data = _read_bytes(path)
    # Another library may have switched this on; a truncated file must fail here.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as img:
            if img.format in ("JPEG", "MPO") and min(img.size) > 2 * size:
                img.draft(img.mode, (size, size))  # decode at 1/2, 1/4 or 1/8 scale, each side >= size
            w, h = img.size
            if w * h > MAX_DECODE_PIXELS:
                raise ImageDecodeError(path, f"too large: {w} x {h} pixels is more than bal decodes in one image "
                                             f"({MAX_DECODE_PIXELS // 1_000_000} megapixels); shrink it first")
            img.load()  # Image.open only reads the header; force the full decode
            factor = min(img.size) // (2 * size)
            if factor >= 2 and img.mode not in _SIXTEEN_BIT_MODES:
                img = img.reduce(factor)  # box filter by an integer factor: cheap, and keeps >= 2 * size
            img = ImageOps.exif_transpose(img)
            rgb = fit_square(_to_rgb(img), size)
            arr = np.asarray(rgb, dtype=np.uint8)
    except UnidentifiedImageError:
        raise ImageDecodeError(path, f"cannot identify image file: not an image of an accepted format ({_ACCEPTED})"
                               ) from None
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(path, f"too large: {short_reason(e)}") from None
    except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, struct.error...
        raise ImageDecodeError(path, f"truncated/corrupt: {short_reason(e)}") from None
    if arr.shape != (size, size, 3):  # defensive: a plugin returning an odd layout
        raise ImageDecodeError(path, f"truncated/corrupt: decoded to shape {arr.shape}")
    return arr


def encode_png(pixels: np.ndarray, max_side: int = 256) -> bytes:
    """uint8 RGB pixels (H, W, 3) as PNG bytes, shrunk (antialiased) to at most ``max_side`` per side."""
    img = Image.fromarray(np.ascontiguousarray(pixels))
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def image_header(path: str) -> tuple[int, int] | None:
    """``(width, height)`` as the image is shown (EXIF orientation applied), from the header only; None if
    unreadable."""
    try:
        with Image.open(path, formats=ACCEPTED_FORMATS) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except Exception:
        return None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _header_size(path: str) -> tuple[int, int] | None:
    try:
        with Image.open(path, formats=ACCEPTED_FORMATS) as img:
            return img.size
    except Exception:
        return None


def infer_image_size(paths: list[str]) -> int:
    """The square size for a dataset: ``min(w, h)`` of the most common ``(w, h)``.

    Only headers are read; unreadable files are ignored here (decoding reports them).
    Ties go to the size seen first in ``paths``.

    Raises
    ------
    DataError
        If none of the files has a readable image header.
    """
    counts = Counter(s for s in map(_header_size, paths) if s is not None)
    if not counts:
        raise DataError(f"cannot infer the image size: none of the {len(paths)} files is a readable image")
    (w, h), _ = counts.most_common(1)[0]
    return int(min(w, h))
