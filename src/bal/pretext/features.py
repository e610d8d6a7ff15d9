"""The embedding the selection rules see: which view, how normalised, or the user's own.

CDD, TypiClust, ProbCover and the ``typical`` first rule all read one feature matrix
per pool image. It comes from the rotation network (:data:`VIEWS`: the upright image as
docs/method.md, the mean over the four rotations, or one rotation per image as the authors'
kmeans.py), from a pretrained backbone (:mod:`.backbone`), or from a file the user
brings (``--features FILE.npy``); and it may be L2-normalised before k-means
(:data:`FEATURE_NORMS`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bal.errors import ParameterError
from bal.selection.cdd import cluster_distance_difference, sort_by_cdd
from bal.validation import check_choice

__all__ = ["FEATURE_NORMS", "VIEWS", "cdd_order", "check_view", "load_features_file", "normalise_features"]

#: The views of an image a pretext folder embeds: ``upright`` (docs/method.md's deterministic choice,
#: ``features.npy``), ``mean`` (the mean over the four rotations) and ``random`` (one of the four,
#: drawn per image from a seeded stream, as the authors' kmeans.py does unseeded).
VIEWS = ("upright", "mean", "random")
#: ``none``: the features as the network gives them (the authors'); ``l2``: each row scaled to unit length,
#: so k-means compares directions (cosine geometry), as self-supervised features usually are.
FEATURE_NORMS = ("none", "l2")


def normalise_features(features: np.ndarray, norm: str) -> np.ndarray:
    """``features`` (N, D) as float32, rows scaled to unit length for ``norm="l2"`` (zero rows stay zero)."""
    check_choice("feature_norm", norm, FEATURE_NORMS)
    x = np.asarray(features, dtype=np.float32)
    if norm == "l2":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.finfo(np.float32).tiny)
    return x


def cdd_order(features: np.ndarray, n_clusters: int, *, seed: int = 0, algorithm: str = "auto"
              ) -> tuple[np.ndarray, np.ndarray]:
    """CDD (N,) of every row and the pool order by CDD ascending (docs/method.md step 2)."""
    cdd = cluster_distance_difference(features, n_clusters, seed=seed, algorithm=algorithm)
    return cdd, sort_by_cdd(cdd)


#: The largest absolute value an embedding may hold: above it, squared distances (summed over
#: thousands of dimensions, in float32) overflow to infinity.
MAX_FEATURE_MAGNITUDE = 1e15


def load_features_file(path: str | os.PathLike, n_rows: int, what: str = "the pool") -> np.ndarray:
    """An embedding the user brings: a ``.npy`` file of shape (``n_rows``, D), real and finite.

    Every problem is a :class:`~bal.errors.ParameterError` naming ``features`` and the file:
    missing, not a NumPy file (or one that needs pickle), not 2-D, not numbers, NaN or
    infinity, values above :data:`MAX_FEATURE_MAGNITUDE`, or a row count other than ``n_rows``
    (one row per image of ``what``).
    """
    path = Path(path)
    if not path.is_file():
        raise ParameterError("features", f"{{name}} {path}: no such file")
    try:
        x = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError) as e:
        raise ParameterError("features", f"{{name}} {path} is not a NumPy .npy array file ({e})") from None
    if x.ndim != 2 or x.shape[1] == 0:
        raise ParameterError("features", f"{{name}} {path} must hold a 2-D array (images, dimensions), "
                                         f"got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ParameterError("features", f"{{name}} {path} must hold numbers, got dtype {x.dtype}")
    if x.shape[0] != n_rows:
        raise ParameterError("features", f"{{name}} {path} has {x.shape[0]} rows, but {what} holds {n_rows} "
                                         f"images: one row per image, in the order of paths.txt")
    out = np.asarray(x, dtype=np.float32)
    if not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        raise ParameterError("features", f"{{name}} {path}: row {bad} holds NaN or infinity")
    largest = float(np.abs(out).max()) if out.size else 0.0
    if largest > MAX_FEATURE_MAGNITUDE:
        raise ParameterError("features", f"{{name}} {path} holds values up to {largest:.3g}: squared distances "
                                         f"between such rows overflow, and k-means would order the pool by "
                                         f"nothing; rescale the embedding (divide it by its largest value)")
    return out


def check_view(view: str) -> str:
    return check_choice("view", view, VIEWS)

