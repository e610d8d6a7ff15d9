"""Cluster Distance Difference (CDD), docs/method.md step 2.

Cluster the pretext features with k-means, measure each image's Euclidean distance to
every centre and keep ``CDD = d2 - d1`` where ``d1 <= d2`` are the two smallest. Small
CDD = near the boundary between two clusters; large CDD = deep inside one. The pool is
then sorted by CDD ascending.
"""

from __future__ import annotations

import numpy as np

from bal.errors import ParameterError
from bal.validation import check_choice, check_int, check_matrix, check_seed

__all__ = [
    "KMEANS_ALGORITHMS",
    "cdd_from_distances",
    "cluster_distance_difference",
    "kmeans_distances",
    "sort_by_cdd",
]

KMEANS_ALGORITHMS = ("auto", "kmeans", "minibatch", "faiss")

#: ``algorithm="auto"`` runs exact k-means up to this many rows; above, faiss when it is
#: installed, else mini-batch k-means (exact k-means on 10^6 x 512 takes minutes per
#: iteration on a CPU; mini-batch takes seconds).
AUTO_EXACT_ROWS = 200_000

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
        raise ParameterError("distances", f"{{name}} must be a 2-D array (N, K), got shape {d.shape}")
    if d.shape[1] < 2:
        raise ParameterError("distances", "{name} must have at least 2 columns (centres) to define a CDD, "
                                          f"got shape {d.shape}")
    if d.shape[0] == 0:
        return np.empty(0, dtype=np.float64)
    d = check_matrix("distances", d, "(N, K)").astype(np.float64, copy=False)
    if np.any(d < 0):
        raise ParameterError("distances", f"{{name}} must be >= 0, got a minimum of {d.min()!r}")
    # partition puts the smallest at column 0 and the second smallest at column 1.
    two = np.partition(d, 1, axis=1)[:, :2]
    return two[:, 1] - two[:, 0]


def kmeans_distances(
    features: np.ndarray,
    n_clusters: int,
    seed: int = 0,
    algorithm: str = "auto",
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
    algorithm : {"auto", "kmeans", "minibatch", "faiss"}, default "auto"
        ``"auto"``: ``"kmeans"`` up to :data:`AUTO_EXACT_ROWS` rows (CIFAR's 50,000
        included), above that ``"faiss"`` when installed, else ``"minibatch"``.
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
    x = check_matrix("features", features)
    n = x.shape[0]
    k = check_int("n_clusters", n_clusters)
    if not 2 <= k <= n:
        raise ParameterError("n_clusters", f"{{name}} must satisfy 2 <= {{name}} <= N (number of features, {n}), "
                                           f"got {k}")
    seed = check_seed("seed", seed)
    check_choice("algorithm", algorithm, KMEANS_ALGORITHMS)
    if algorithm == "auto":
        algorithm = "kmeans" if n <= AUTO_EXACT_ROWS else ("faiss" if _has_faiss() else "minibatch")

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
    algorithm: str = "auto",
) -> np.ndarray:
    """CDD of every pool image: k-means on the features, then ``d2 - d1``.

    Cost: k-means O(N K D) per iteration (mini-batch above :data:`AUTO_EXACT_ROWS` rows),
    exact distances O(N K D) in row blocks of 32 MiB; memory O(N K) besides the features.

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
        raise ParameterError("cdd", f"{{name}} must be a 1-D array (N,), got shape {c.shape}")
    if c.size:
        check_matrix("cdd", c[:, None], "(N,)")
    return np.argsort(c, kind="stable").astype(np.int64, copy=False)


def _has_faiss() -> bool:
    import importlib.util

    return importlib.util.find_spec("faiss") is not None


def _faiss_centres(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    try:
        import faiss
    except ImportError as exc:
        raise ParameterError(
            "algorithm",
            "{name}='faiss' needs the faiss package: pip install faiss-cpu "
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
