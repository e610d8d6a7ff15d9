"""Geometry the selection rules share: blocked squared distances, k-means labels, typicality.

Blocks keep memory bounded: no function here holds an N x N matrix.
"""

from __future__ import annotations

import numpy as np

__all__ = ["kmeans_labels", "typicality"]

# Elements of one float64 temporary in element-wise loops (2 MiB: stays in cache) and in
# BLAS blocks (32 MiB: large enough for matrix products to run at full speed).
_ELEMENTWISE_BLOCK = 1 << 18
_BLAS_BLOCK = 1 << 22

# k-means++ gets its squared distances from ||x||^2 - 2 x.c + ||c||^2, which loses every
# digit when d^2 is tiny next to the norms. Rows below this fraction of ||x||^2 + ||c||^2
# are recomputed from explicit differences, so duplicates get exactly 0. The float32
# dot product's worst-case relative error is about width * 6e-8, ~3e-4 at width 5,120.
_EXPANSION_RECHECK = 1e-3


# TypiClust switches to MiniBatchKMeans above this many clusters, as its reference code.
_MINIBATCH_ABOVE = 50

# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def kmeans_labels(x: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """Cluster labels (N,) int64 by scikit-learn k-means seeded with ``seed``
    (``MiniBatchKMeans`` above 50 clusters, as TypiClust's reference code)."""
    if n_clusters == 1:
        return np.zeros(x.shape[0], dtype=np.int64)
    if n_clusters > _MINIBATCH_ABOVE:
        from sklearn.cluster import MiniBatchKMeans

        model = MiniBatchKMeans(
            n_clusters=n_clusters,
            n_init=1,
            batch_size=min(4096, x.shape[0]),
            random_state=seed,
        )
    else:
        from sklearn.cluster import KMeans

        model = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed)
    return np.asarray(model.fit_predict(x), dtype=np.int64)


def typicality(x: np.ndarray, knn: int) -> np.ndarray:
    """1 / mean distance to the ``min(knn, s - 1)`` nearest other rows, for each of s rows.

    Neighbours are ranked by the fast ``-2 x.y + ||y||^2`` product, then their distances
    are recomputed from explicit differences so duplicates give exactly 0 (-> inf).
    """
    s, d = x.shape
    kk = min(knn, s - 1)
    if kk == 0:
        return np.full(s, np.inf)
    x = x.astype(np.float64, copy=False)
    norms2 = np.einsum("ij,ij->i", x, x)
    out = np.empty(s, dtype=np.float64)
    rows = max(1, min(_BLAS_BLOCK // s, _BLAS_BLOCK // (kk * d)))
    for start in range(0, s, rows):
        block = x[start : start + rows]
        b = block.shape[0]
        # ||x||^2 is the same along a row, so it does not change the ranking.
        score = norms2[None, :] - 2.0 * (block @ x.T)
        # A row is not its own neighbour (its duplicates are).
        score[np.arange(b), np.arange(start, start + b)] = np.inf
        neighbours = np.argpartition(score, kk - 1, axis=1)[:, :kk]
        diff = block[:, None, :] - x[neighbours]
        mean = np.sqrt(np.einsum("bkd,bkd->bk", diff, diff)).mean(axis=1)
        with np.errstate(divide="ignore"):
            out[start : start + b] = 1.0 / mean
    return out


def _exact_sq_dists(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``||x_i - c||^2`` (M,) float64 from explicit differences, in cache-sized blocks."""
    m, d = x.shape
    out = np.empty(m, dtype=np.float64)
    rows = max(1, _ELEMENTWISE_BLOCK // d)
    for start in range(0, m, rows):
        diff = x[start : start + rows].astype(np.float64, copy=False) - c
        out[start : start + rows] = np.einsum("ij,ij->i", diff, diff)
    return out


def _min_sq_dist_to_set(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared distance (M,) of each row of x to its nearest row of ``centres`` (float64).

    The nearest centre is found with one matrix product per block (no M x L matrix in
    memory at once); its distance is then recomputed from explicit differences.
    """
    m = x.shape[0]
    norms2 = np.einsum("ij,ij->i", centres, centres)
    out = np.empty(m, dtype=np.float64)
    rows = max(1, _BLAS_BLOCK // centres.shape[0])
    for start in range(0, m, rows):
        block = x[start : start + rows]
        # ||x||^2 is the same along a row, so it does not change the argmin.
        nearest = np.argmin(norms2[None, :] - 2.0 * (block @ centres.T), axis=1)
        diff = block - centres[nearest]
        out[start : start + rows] = np.einsum("ij,ij->i", diff, diff)
    return out


def _row_sq_norms(x: np.ndarray) -> np.ndarray:
    out = np.empty(x.shape[0], dtype=np.float64)
    rows = max(1, _ELEMENTWISE_BLOCK // x.shape[1])
    for start in range(0, x.shape[0], rows):
        block = x[start : start + rows].astype(np.float64)
        out[start : start + rows] = np.einsum("ij,ij->i", block, block)
    return out


def _sq_dists_to_row(x: np.ndarray, norms2: np.ndarray, i: int) -> np.ndarray:
    """``||x_j - x_i||^2`` for every row j (float64, >= 0), fast and exact where it matters.

    One matrix-vector product in x's own dtype (no float64 copy of a float32 array);
    rows whose result is too small to trust are recomputed from explicit differences.
    """
    c = x[i]
    d2 = norms2 - 2.0 * (x @ c).astype(np.float64) + norms2[i]
    np.maximum(d2, 0.0, out=d2)
    suspect = np.flatnonzero(d2 <= _EXPANSION_RECHECK * (norms2 + norms2[i]))
    if suspect.size:
        d2[suspect] = _exact_sq_dists(x[suspect], c.astype(np.float64))
    return d2
