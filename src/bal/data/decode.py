"""Decoding one image file into RGB pixels of one square size.

Every image becomes RGB of one square size:

* grayscale (``1``, ``L``, ``LA``) is repeated into three channels;
* 16/32-bit grayscale (``I;16*``, ``I``) is scaled from 0..65535 down to 0..255
  (PIL's own conversion would clip everything above 255 to white);
* palette images (``P``, ``PA``) take their palette colours;
* CMYK, YCbCr and the rest go through ``Image.convert("RGB")``;
* an alpha channel is dropped, keeping the colour stored under transparent pixels.
  This is what torchvision's ``ImageFolder`` loader (``convert("RGB")``) does, so the
  pixels match the reference implementation's;
* an image that is not ``size x size`` is resized with PIL bilinear filtering,
  ignoring its aspect ratio. EXIF orientation is not applied (as in ``ImageFolder``).

"""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from bal.errors import DataError

__all__ = ["ImageDecodeError", "decode_image", "infer_image_size"]

# A truncated JPEG must be reported, not silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


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
        a = np.asarray(img).astype(np.int64)
        a = (np.clip(a, 0, 65535) * 255 + 32767) // 65535
        return Image.fromarray(a.astype(np.uint8)).convert("RGB")
    if mode in ("P", "PA") and (mode == "PA" or "transparency" in img.info):
        # Going through RGBA gives the same colours as convert("RGB") but without
        # PIL's warning about palette transparency.
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")


def decode_image(path: str, size: int) -> np.ndarray:
    """Decode one file fully into RGB pixels of shape (size, size, 3), dtype uint8.

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
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # Image.open only reads the header; force the full decode
            rgb = _to_rgb(img)
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.BILINEAR)
            arr = np.asarray(rgb, dtype=np.uint8)
    except UnidentifiedImageError:
        raise ImageDecodeError(path, "cannot identify image file") from None
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(path, f"too large: {short_reason(e)}") from None
    except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, struct.error...
        raise ImageDecodeError(path, f"truncated/corrupt: {short_reason(e)}") from None
    if arr.shape != (size, size, 3):  # defensive: a plugin returning an odd layout
        raise ImageDecodeError(path, f"truncated/corrupt: decoded to shape {arr.shape}")
    return arr


def _header_size(path: str) -> tuple[int, int] | None:
    try:
        with Image.open(path) as img:
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
