"""Cluster Distance Difference (CDD), METHOD.md step 2.

Cluster the pretext features with k-means, measure each image's Euclidean distance to
every centre and keep ``CDD = d2 - d1`` where ``d1 <= d2`` are the two smallest. Small
CDD = near the boundary between two clusters; large CDD = deep inside one. The pool is
then sorted by CDD ascending.
"""

from __future__ import annotations

import numbers

import numpy as np

from bal.errors import BalError

__all__ = [
    "KMEANS_ALGORITHMS",
    "cdd_from_distances",
    "cluster_distance_difference",
    "kmeans_distances",
    "sort_by_cdd",
]

KMEANS_ALGORITHMS = ("kmeans", "minibatch", "faiss")

# Rows per chunk of the exact distance computation, and the cap on the number of
# float64 elements of one (rows, K, D) difference block (2**22 elements = 32 MiB).
_MAX_CHUNK_ROWS = 8192
_MAX_BLOCK_ELEMENTS = 1 << 22


def cdd_from_distances(distances: np.ndarray) -> np.ndarray:
    """CDD of each row of a distance matrix.

    Parameters
    ----------
    distances : ndarray of shape (N, K), real, K >= 2
        Non-negative, finite distance of each image (row) to each centre (column).

    Returns
    -------
    ndarray of shape (N,), float64
        ``d2 - d1 >= 0`` where ``d1 <= d2`` are the two smallest entries of the row
        (equal when the two nearest centres are equidistant).
    """
    d = np.asarray(distances)
    if d.ndim != 2:
        raise BalError(f"distances must be a 2-D array (N, K), got shape {d.shape}")
    if d.shape[1] < 2:
        raise BalError(
            "distances must have at least 2 columns (centres) to define a CDD, "
            f"got shape {d.shape}"
        )
    if not (np.issubdtype(d.dtype, np.floating) or np.issubdtype(d.dtype, np.integer)):
        raise BalError(f"distances must be a real numeric array, got dtype {d.dtype}")
    d = d.astype(np.float64, copy=False)
    if not np.all(np.isfinite(d)):
        raise BalError("distances contains NaN or infinite values")
    if np.any(d < 0):
        raise BalError(f"distances must be >= 0, got a minimum of {d.min()!r}")
    if d.shape[0] == 0:
        return np.empty(0, dtype=np.float64)
    # partition puts the smallest at column 0 and the second smallest at column 1.
    two = np.partition(d, 1, axis=1)[:, :2]
    return two[:, 1] - two[:, 0]


def kmeans_distances(
    features: np.ndarray,
    n_clusters: int,
    seed: int = 0,
    algorithm: str = "kmeans",
) -> tuple[np.ndarray, np.ndarray]:
    """Fit k-means on the features and return the centres and every row's distances to them.

    Parameters
    ----------
    features : ndarray of shape (N, D), real, finite
        One feature vector per pool image (e.g. the pretext network's penultimate layer).
        float32 input is clustered in float32 (as scikit-learn does); the returned
        distances are always computed in float64.
    n_clusters : int
        Number of clusters K, ``2 <= K <= N``.
    seed : int, default 0
        Random state of the k-means initialisation, in ``[0, 2**32 - 1]``.
    algorithm : {"kmeans", "minibatch", "faiss"}, default "kmeans"
        ``"kmeans"``: ``sklearn.cluster.KMeans(init="k-means++", n_init=1)``.
        ``"minibatch"``: ``sklearn.cluster.MiniBatchKMeans(init="k-means++", n_init=1,
        batch_size=min(4096, N))``. ``"faiss"``: ``faiss.Kmeans`` seeded with ``seed``
        (faiss initialises by random sampling, not k-means++); needs ``faiss-cpu``.

    Returns
    -------
    centres : ndarray of shape (K, D), float64
    distances : ndarray of shape (N, K), float64
        Exact Euclidean distances ``||x - c||_2``, computed from explicit differences
        rather than ``||x||^2 - 2 x.c + ||c||^2``, which cancels catastrophically for
        images close to a centre, exactly where d1 matters.
    """
    x = _check_features(features)
    n = x.shape[0]
    k = _check_n_clusters(n_clusters, n)
    seed = _check_seed(seed)
    if algorithm not in KMEANS_ALGORITHMS:
        raise BalError(
            f"algorithm must be one of {', '.join(KMEANS_ALGORITHMS)}, got {algorithm!r}"
        )

    if algorithm == "kmeans":
        from sklearn.cluster import KMeans

        model = KMeans(n_clusters=k, init="k-means++", n_init=1, random_state=seed)
        centres = model.fit(x).cluster_centers_
    elif algorithm == "minibatch":
        from sklearn.cluster import MiniBatchKMeans

        # n_init=1 matches "kmeans" (and scikit-learn's "auto" for k-means++).
        model = MiniBatchKMeans(
            n_clusters=k,
            init="k-means++",
            n_init=1,
            random_state=seed,
            batch_size=min(4096, n),
        )
        centres = model.fit(x).cluster_centers_
    else:
        centres = _faiss_centres(x, k, seed)

    centres = np.asarray(centres, dtype=np.float64)
    return centres, _euclidean_distances(x, centres)


def cluster_distance_difference(
    features: np.ndarray,
    n_clusters: int,
    seed: int = 0,
    algorithm: str = "kmeans",
) -> np.ndarray:
    """CDD of every pool image: k-means on the features, then ``d2 - d1``.

    Parameters are those of :func:`kmeans_distances`.

    Returns
    -------
    ndarray of shape (N,), float64, all >= 0
    """
    _, distances = kmeans_distances(features, n_clusters, seed=seed, algorithm=algorithm)
    return cdd_from_distances(distances)


def sort_by_cdd(cdd: np.ndarray) -> np.ndarray:
    """Pool order by CDD ascending (boundary images first).

    Parameters
    ----------
    cdd : ndarray of shape (N,), real, finite

    Returns
    -------
    ndarray of shape (N,), int64
        ``order[pos]`` is the pool index at sorted position ``pos``; ``order[0]`` is the
        index of the smallest CDD. Equal CDDs keep their pool order (stable sort), so the
        result does not depend on the sorting algorithm.
    """
    c = np.asarray(cdd)
    if c.ndim != 1:
        raise BalError(f"cdd must be a 1-D array (N,), got shape {c.shape}")
    if not (np.issubdtype(c.dtype, np.floating) or np.issubdtype(c.dtype, np.integer)):
        raise BalError(f"cdd must be a real numeric array, got dtype {c.dtype}")
    if not np.all(np.isfinite(c)):
        raise BalError("cdd contains NaN or infinite values")
    return np.argsort(c, kind="stable").astype(np.int64, copy=False)


def _check_features(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features)
    if x.ndim != 2:
        raise BalError(f"features must be a 2-D array (N, D), got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise BalError(f"features must have at least one row and one column, got shape {x.shape}")
    if np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        x = x.astype(np.float64)
    elif not np.issubdtype(x.dtype, np.floating):
        raise BalError(f"features must be a real numeric array, got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise BalError("features contains NaN or infinite values")
    return x


def _check_n_clusters(n_clusters: int, n: int) -> int:
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, numbers.Integral):
        raise BalError(f"n_clusters must be an integer, got {n_clusters!r}")
    if not 2 <= n_clusters <= n:
        raise BalError(
            f"n_clusters must satisfy 2 <= n_clusters <= N (number of features, {n}), "
            f"got {n_clusters}"
        )
    return int(n_clusters)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise BalError(f"seed must be an integer, got {seed!r}")
    if not 0 <= seed <= 2**32 - 1:
        raise BalError(f"seed must be in [0, 2**32 - 1], got {seed}")
    return int(seed)


def _faiss_centres(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    try:
        import faiss
    except ImportError as exc:
        raise BalError(
            "algorithm='faiss' needs the faiss package: pip install faiss-cpu "
            "(or install bal with the extra: pip install 'bal[faiss]')"
        ) from exc
    model = faiss.Kmeans(x.shape[1], k, seed=seed)
    model.train(np.ascontiguousarray(x, dtype=np.float32))
    return model.centroids


def _euclidean_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Exact float64 distances (N, K), in row chunks so memory stays bounded."""
    n, d = x.shape
    k = centres.shape[0]
    out = np.empty((n, k), dtype=np.float64)
    rows = max(1, min(_MAX_CHUNK_ROWS, _MAX_BLOCK_ELEMENTS // (k * d)))
    for start in range(0, n, rows):
        block = x[start : start + rows].astype(np.float64, copy=False)
        diff = block[:, None, :] - centres[None, :, :]
        out[start : start + rows] = np.sqrt(np.einsum("bkd,bkd->bk", diff, diff))
    return out
