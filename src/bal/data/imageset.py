"""A decoded image set: uint8 pixels, labels, the paths they came from, the classes.

Whatever the source (an image folder through :mod:`.cache`, arrays through
:func:`images_from_arrays`), the rest of bal sees an :class:`ImageSet`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bal.errors import BalError
from bal.validation import check_int

__all__ = ["ImageSet", "images_from_arrays", "row_digests", "stratified_indices", "stratified_subset", "subset"]


@dataclass
class ImageSet:
    """A decoded split held in memory.

    Attributes
    ----------
    images : ndarray of uint8, shape (N, S, S, 3)
        RGB pixels, all resized to the square size S.
    labels : ndarray of int64, shape (N,)
        Index into ``classes``.
    paths : list of str, length N
        Source file of each image (as scanned, not resolved).
    classes : list of str
        Sorted class folder names.
    skipped : list of (str, str)
        ``(path, reason)`` for files left out because ``skip_bad=True``.
    """

    images: np.ndarray
    labels: np.ndarray
    paths: list[str]
    classes: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


def images_from_arrays(
    images: np.ndarray,
    labels: Sequence[int],
    classes: Sequence[str] | None = None,
    paths: Sequence[str] | None = None,
) -> ImageSet:
    """Wrap in-memory images as an :class:`ImageSet`.

    images : uint8 (N, S, S, 3) or (N, S, S) grayscale, or float in [0, 1] of those shapes.
    labels : (N,) class indices in ``0 .. len(classes)-1``.
    paths : names used in the run files; default ``"0", "1", ...``.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.floating):
            raise BalError(f"images must be uint8 or float in [0, 1], got dtype {images.dtype}")
        images = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
        raise BalError(f"images must have shape (N, S, S, 3) or (N, S, S), got {images.shape}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(images),):
        raise BalError(f"labels must have shape ({len(images)},), got {labels.shape}")
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    classes = list(classes) if classes is not None else [str(i) for i in range(n_classes)]
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise BalError(f"labels must lie in 0..{len(classes) - 1} (one per class), got {labels.min()}..{labels.max()}")
    paths = [str(p) for p in paths] if paths is not None else [str(i) for i in range(len(images))]
    return ImageSet(np.ascontiguousarray(images), labels, paths, classes, [])


def subset(images: ImageSet, indices: Sequence[int]) -> ImageSet:
    """The images at ``indices`` (sorted), as a new :class:`ImageSet` with the same classes."""
    idx = np.sort(np.asarray(indices, dtype=np.int64))
    return ImageSet(images.images[idx], images.labels[idx], [images.paths[i] for i in idx],
                    list(images.classes), list(images.skipped))


def stratified_indices(labels: np.ndarray, size: int | None, seed: int = 0, name: str = "size") -> np.ndarray:
    """Sorted indices of a class-stratified subset of ``size`` of the ``labels`` (N,), fixed by ``seed``.

    All N indices when ``size`` is None or N; ``name`` is the parameter named in the error
    when ``size`` is not an integer in [1, N].
    """
    n = len(labels)
    if size is None or size == n:
        return np.arange(n)
    check_int(name, size, 1, n)
    from sklearn.model_selection import train_test_split

    idx, _ = train_test_split(np.arange(n), train_size=size, stratify=labels, random_state=seed)
    return np.sort(idx)


def stratified_subset(images: ImageSet, size: int | None, seed: int = 0, what: str = "pool") -> ImageSet:
    """A class-stratified subset of ``size`` images fixed by ``seed`` (all images when ``size`` is None)."""
    if size is None or size == len(images):
        return images
    return subset(images, stratified_indices(images.labels, size, seed, f"{what}_size"))


def row_digests(images: np.ndarray) -> np.ndarray:
    """A 64-bit checksum of each image's pixels, uint64 (N,): any change of a pixel changes it.

    A weighted sum of the bytes modulo 2**64 with odd weights (fixed, seeded): changing
    one byte by d changes the sum by d * w, never 0 mod 2**64 for odd w and 0 < |d| < 256.
    Computed in chunks of 64 MiB (a memory-mapped array's pages handed back), so it is
    cheap enough to check at every start of a run: 0.3 s for CIFAR-10's 50,000 images.
    """
    from bal.data.cache import release

    n = len(images)
    width = int(np.prod(images.shape[1:], dtype=np.int64)) if n else 0
    odd = np.random.default_rng(0x5EED).integers(0, 2**63, size=width, dtype=np.uint64)
    weights = odd * np.uint64(2) + np.uint64(1)
    out = np.empty(n, dtype=np.uint64)
    rows = max(1, (1 << 23) // max(1, width))  # 8 Mi values of uint64 = 64 MiB
    for start in range(0, n, rows):
        block = np.asarray(images[start : start + rows], dtype=np.uint8).reshape(-1, width).astype(np.uint64)
        with np.errstate(over="ignore"):
            out[start : start + rows] = (block * weights).sum(axis=1, dtype=np.uint64)
        release(images, np.arange(start, min(start + rows, n)))
    return out
