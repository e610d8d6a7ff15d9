"""Rules that read an embedding and need no model: TypiClust and ProbCover (typicality and coverage).

* TypiClust (Hacohen, Dekel & Weinshall, ICML 2022, TPC-RP): :func:`typiclust_select`,
  the most typical point of the least-covered k-means cluster of an embedding.
* ProbCover (Yehuda, Dekel, Hacohen & Weinshall, NeurIPS 2022): :func:`probcover_delta`
  then :func:`probcover_select`, greedy max coverage of δ-balls.

Both are at their best at a few labels a class, and on an embedding whose neighbours
share classes (a pretrained one more than the rotation pretext's).
"""

from __future__ import annotations

import numpy as np

from bal.errors import ParameterError
from bal.selection.geometry import (
    _BLAS_BLOCK,
    _EXPANSION_RECHECK,
    kmeans_labels,
    typicality,
)
from bal.validation import (
    as_generator,
    check_int,
    check_k,
    check_labelled_mask,
    check_matrix,
    check_real,
)

__all__ = ["probcover_delta", "probcover_select", "typiclust_select"]


# --------------------------------------------------------------------------------------
# TypiClust
# --------------------------------------------------------------------------------------


def typiclust_select(
    features: np.ndarray,
    labelled: np.ndarray,
    k: int,
    rng: np.random.Generator | int | None,
    max_clusters: int = 500,
    min_cluster_size: int = 5,
    knn: int = 20,
) -> np.ndarray:
    """TypiClust (TPC-RP): the most typical point of the least-covered cluster, k times.

    The pool is clustered into ``K = min(labelled.sum() + k, max_clusters, N)`` clusters
    by scikit-learn ``KMeans(n_init=1)``, or ``MiniBatchKMeans(n_init=1,
    batch_size=min(4096, N))`` when K > 50, seeded with ``int(rng.integers(2**31))``.
    Then, k times: among the clusters that still hold an unlabelled point and have at
    least ``min_cluster_size`` points (if none do, among all clusters that still hold an
    unlabelled point), take the one with the fewest labelled points, then the largest,
    then the smallest id; pick its unlabelled point of highest typicality (smallest pool
    index on ties) and count it as labelled.

    Typicality of a point = 1 / mean Euclidean distance to its ``min(knn, size - 1)``
    nearest other points of its cluster (labelled ones included: density is a property
    of the data); ``inf`` when that mean is 0 or the cluster is a single point.

    Parameters
    ----------
    features : ndarray of shape (N, D), real, finite
        Self-supervised features of the whole pool.
    labelled : ndarray of shape (N,), bool
    k : int
        ``1 <= k <=`` number of unlabelled images.
    rng : numpy.random.Generator or int
        Seeds the clustering (an int is a seed). Required: ``None`` is refused.
    max_clusters : int, default 500
    min_cluster_size : int, default 5
        Clusters smaller than this are used only once every larger cluster is exhausted.
    knn : int, default 20

    Returns
    -------
    ndarray of shape (k,), int64
        Distinct unlabelled pool indices in pick order.

    Notes
    -----
    The reference code sorts the clusters once and then cycles through them, drops
    clusters of size <= 5 for good, and measures typicality among the unlabelled members
    only, with ``min(20, size // 2)`` neighbours and ``1 / (mean + 1e-5)``. Here the
    labelled counts are re-read before every pick; when every cluster starts with the
    same count (e.g. nothing labelled), both visit the clusters largest first.
    """
    x = check_matrix("features", features, "(N, D)")
    n = x.shape[0]
    mask = check_labelled_mask("labelled", labelled, n)
    n_labelled = int(mask.sum())
    k = check_k(k, n - n_labelled, "unlabelled rows of features")
    max_clusters = check_int("max_clusters", max_clusters, 1)
    min_cluster_size = check_int("min_cluster_size", min_cluster_size, 1)
    knn = check_int("knn", knn, 1)
    generator = as_generator(rng, "typiclust_select")

    n_clusters = min(n_labelled + k, max_clusters, n)
    labels = kmeans_labels(x, n_clusters, int(generator.integers(2**31)))
    sizes = np.bincount(labels, minlength=n_clusters)
    counts = np.bincount(labels[mask], minlength=n_clusters)
    unlabelled = ~mask
    remaining = np.bincount(labels[unlabelled], minlength=n_clusters)
    scored: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    picks: list[int] = []
    for _ in range(k):
        # A cluster with no unlabelled point left can never be picked from: excluded.
        open_ = remaining > 0
        large = open_ & (sizes >= min_cluster_size)
        ids = np.flatnonzero(large if large.any() else open_)
        # lexsort sorts by the last key first: fewest labelled, largest, smallest id.
        cluster = int(ids[np.lexsort((ids, -sizes[ids], counts[ids]))[0]])
        if cluster not in scored:
            members = np.flatnonzero(labels == cluster)
            scored[cluster] = (members, typicality(x[members], knn))
        members, typ = scored[cluster]
        j = int(np.argmax(np.where(unlabelled[members], typ, -np.inf)))
        index = int(members[j])
        picks.append(index)
        unlabelled[index] = False
        counts[cluster] += 1
        remaining[cluster] -= 1
    return np.asarray(picks, dtype=np.int64)


# --------------------------------------------------------------------------------------
# ProbCover
# --------------------------------------------------------------------------------------


def probcover_delta(features: np.ndarray, pseudo_labels: np.ndarray, alpha: float = 0.95) -> float:
    """ProbCover's ball radius: the largest δ whose balls are pure for a fraction ``alpha`` of the points.

    A point's δ-ball (the points within distance δ, boundary included) is pure when they
    all share its pseudo-label (ProbCover uses k-means labels, K = number of classes).
    With ``d(i)`` the distance from point i to the nearest point of another
    pseudo-label, the ball is pure iff ``δ < d(i)``, so purity(δ) = mean(d > δ). With
    ``d`` sorted ascending and ``m = N - ceil(alpha * N)``, purity(δ) ≥ alpha exactly
    when δ < d[m]; the δ returned is the largest float below ``d[m]``.

    Parameters
    ----------
    features : ndarray of shape (N, D), real, finite
    pseudo_labels : ndarray of shape (N,), int, at least two distinct values
    alpha : float in (0, 1]

    Returns
    -------
    float, > 0 unless duplicates of different pseudo-labels exist (then 0).
    """
    x = check_matrix("features", features).astype(np.float64, copy=False)
    labels = np.asarray(pseudo_labels)
    if labels.shape != (x.shape[0],):
        raise ParameterError("pseudo_labels", f"{{name}} must have shape ({x.shape[0]},), got {labels.shape}")
    if np.unique(labels).size < 2:
        raise ParameterError("pseudo_labels", "{name} must hold at least two different labels")
    alpha = check_real("alpha", alpha, low=0, low_open=True, high=1)
    norms2 = np.einsum("ij,ij->i", x, x)
    nearest_other = np.empty(x.shape[0])
    rows = max(1, _BLAS_BLOCK // x.shape[0])
    for start in range(0, x.shape[0], rows):
        block = x[start : start + rows]
        d2 = norms2[start : start + rows, None] - 2.0 * (block @ x.T) + norms2[None, :]
        d2[labels[start : start + rows, None] == labels[None, :]] = np.inf
        # the nearest one is found by the fast formula, its distance recomputed exactly
        diff = block - x[np.argmin(d2, axis=1)]
        nearest_other[start : start + rows] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    n = x.shape[0]
    m = n - int(np.ceil(alpha * n - 1e-9))
    # 0 when duplicates carry different pseudo-labels (k-means never does that to equal rows)
    return max(0.0, float(np.nextafter(np.sort(nearest_other)[m], -np.inf)))


def _within(block: np.ndarray, block_norms2: np.ndarray, x: np.ndarray, norms2: np.ndarray,
            delta: float) -> np.ndarray:
    """Boolean (B, N): ``||block_b - x_j|| <= delta``, the same answer for a pair whichever side it is on.

    The fast ``||a||^2 - 2 a.b + ||b||^2`` decides every pair clearly inside or outside;
    pairs within rounding of the boundary are recomputed from explicit differences, which
    give the same value for (i, j) and (j, i) and in any block. ProbCover's coverage
    counts rely on that symmetry.
    """
    d2 = block_norms2[:, None] - 2.0 * (block @ x.T) + norms2[None, :]
    limit = delta * delta
    tol = _EXPANSION_RECHECK * (block_norms2[:, None] + norms2[None, :]) + 1e-12
    inside = d2 <= limit
    rows, cols = np.nonzero(np.abs(d2 - limit) <= tol)
    if rows.size:
        diff = block[rows] - x[cols]
        inside[rows, cols] = np.einsum("ij,ij->i", diff, diff) <= limit
    return inside


def probcover_select(
    features: np.ndarray,
    labelled: np.ndarray,
    k: int,
    delta: float,
    rng: np.random.Generator | int | None,
) -> np.ndarray:
    """ProbCover: k times, the unlabelled point whose δ-ball covers most still-uncovered points.

    Points within δ of a labelled point start covered. Each pick maximises the number of
    uncovered points in its ball (itself included if uncovered); equal counts go to the
    first of them in a random order of the pool drawn once from ``rng``. Not the smallest
    index: a pool listed from class folders is in class order, and once the dense balls
    are taken every isolated point ties at 1, so the smallest index labelled one class
    (measured: CIFAR-10's 10,000-image pool in folder order, 200 airplanes a cycle from
    the third cycle on; the reference code's pool is in CIFAR's shuffled order). When no
    pick would cover anything new, the rest are drawn uniformly at random from the
    unlabelled points (as the reference code does).

    The ball graph is never stored: with a δ that makes balls hold thousands of points,
    its edges outgrow memory (N = 10^5 synthetic images needed more than 21 GB). Counts
    are computed in row blocks instead and, after each pick, lowered by a pass over the
    points it newly covered. Every point is newly covered at most once, so the whole
    selection costs O(N^2 D) time, twice one pass over all pairs, and O(N) memory
    beyond one block.

    Parameters
    ----------
    features : ndarray of shape (N, D), real, finite (ProbCover uses L2-normalised ones)
    labelled : ndarray of shape (N,), bool
    k : int, ``1 <= k <=`` number of unlabelled points
    delta : float >= 0, the ball radius (:func:`probcover_delta`)
    rng : numpy.random.Generator or int, for the random fill

    Returns
    -------
    ndarray of shape (k,), int64: distinct unlabelled pool indices in pick order.
    """
    x = check_matrix("features", features).astype(np.float64, copy=False)
    n = x.shape[0]
    mask = check_labelled_mask("labelled", labelled, n)
    k = check_k(k, n - int(mask.sum()), "unlabelled rows of features")
    delta = check_real("delta", delta, low=0)
    generator = as_generator(rng, "probcover_select")
    norms2 = np.einsum("ij,ij->i", x, x)
    step = max(1, _BLAS_BLOCK // n)

    def blocks(rows: np.ndarray):
        for start in range(0, rows.size, step):
            part = rows[start : start + step]
            yield part, _within(x[part], norms2[part], x, norms2, delta)

    covered = np.zeros(n, dtype=bool)
    for _, inside in blocks(np.flatnonzero(mask)):
        covered |= inside.any(axis=0)
    # gain[i]: uncovered points in i's ball (i itself is in it)
    gain = np.zeros(n, dtype=np.int64)
    for part, inside in blocks(np.arange(n)):
        gain[part] = (inside & ~covered[None, :]).sum(axis=1)
    available = ~mask
    priority = generator.permutation(n)  # who wins a tie
    picks: list[int] = []
    while len(picks) < k:
        score = np.where(available, gain, -1)
        top = score.max()
        tied = np.flatnonzero(score == top)
        best = int(tied[np.argmin(priority[tied])])
        if top <= 0:
            rest = np.flatnonzero(available)
            fill = generator.choice(rest, size=k - len(picks), replace=False)
            picks.extend(int(i) for i in fill)
            break
        picks.append(best)
        available[best] = False
        ball = _within(x[best : best + 1], norms2[best : best + 1], x, norms2, delta)[0]
        newly = np.flatnonzero(ball & ~covered)
        covered[newly] = True
        for _, inside in blocks(newly):  # every point whose ball holds a newly covered one loses it
            gain -= inside.sum(axis=0)
    return np.asarray(picks, dtype=np.int64)
