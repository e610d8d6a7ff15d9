"""Selection rules of well-known active-learning baselines, as pure NumPy functions.

* Core-set (Sener & Savarese, ICLR 2018): :func:`kcenter_greedy`, farthest-first
  traversal of the task model's penultimate features.
* BADGE (Ash et al., ICLR 2020): :func:`gradient_embedding` then
  :func:`kmeanspp_seeding`, together :func:`badge_select`.
* TypiClust (Hacohen, Dekel & Weinshall, ICML 2022, TPC-RP): :func:`typiclust_select`,
  the most typical point of the least-covered k-means cluster of self-supervised features.
* ProbCover (Yehuda, Dekel, Hacohen & Weinshall, NeurIPS 2022): :func:`probcover_delta`
  then :func:`probcover_select`, greedy max coverage of δ-balls.

Cost in time and memory, N pool images of D features, k picks, L labelled:

=========== =============================================== ==================================
rule        time                                            memory
=========== =============================================== ==================================
k-center    O(k N D) + O(L N D) (blocked products)          O(N) distances, blocks of 32 MiB
BADGE       O(k M C D) over M candidates                    O(M C D) float32 embeddings
TypiClust   k-means O(N K D) + k-NN inside each cluster     O(N); a cluster's block of 32 MiB
ProbCover   O(N^2 D) in blocks, once per run                O(N + edges), edges = N x mean degree
=========== =============================================== ==================================

None of them holds an N x N matrix.

No training happens here: the caller runs the models and passes arrays in. Every
function returns pool (or row) indices in the order they were picked.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bal.errors import ParameterError
from bal.selection.uncertainty import log_softmax
from bal.validation import (
    as_generator,
    check_indices,
    check_int,
    check_k,
    check_labelled_mask,
    check_logits,
    check_matrix,
    check_real,
)

__all__ = [
    "badge_select",
    "gradient_embedding",
    "kcenter_greedy",
    "kmeanspp_seeding",
    "kmeans_labels",
    "probcover_delta",
    "probcover_select",
    "typicality",
    "typiclust_select",
]

# Elements of one float64 temporary in element-wise loops (2 MiB: stays in cache) and in
# BLAS blocks (32 MiB: large enough for matrix products to run at full speed).
_ELEMENTWISE_BLOCK = 1 << 18
_BLAS_BLOCK = 1 << 22

# k-means++ gets its squared distances from ||x||^2 - 2 x.c + ||c||^2, which loses every
# digit when d^2 is tiny next to the norms. Rows below this fraction of ||x||^2 + ||c||^2
# are recomputed from explicit differences, so duplicates get exactly 0. The float32
# dot product's worst-case relative error is about width * 6e-8, ~3e-4 at width 5,120.
_EXPANSION_RECHECK = 1e-3

# BADGE builds its gradient embeddings up to this many values (512 MiB of float32); beyond,
# it works on their factors (see badge_select).
_BADGE_DENSE_LIMIT = 1 << 27

# TypiClust switches to MiniBatchKMeans above this many clusters, as its reference code.
_MINIBATCH_ABOVE = 50


# --------------------------------------------------------------------------------------
# Core-set
# --------------------------------------------------------------------------------------


def kcenter_greedy(
    features: np.ndarray,
    labelled: np.ndarray,
    candidates: np.ndarray,
    k: int,
) -> np.ndarray:
    """Core-set greedy k-center: ``k`` candidates, each the farthest from all centres so far.

    Parameters
    ----------
    features : ndarray of shape (N, D), real, finite
        Features of the whole pool (the task model's penultimate layer).
    labelled : ndarray of shape (N,), bool
        ``True`` for labelled images; they are the initial centres.
    candidates : ndarray of shape (n,), integer
        Distinct pool indices in ``[0, N)`` that may be picked (usually the unlabelled
        ones). Labelled entries are ignored: they are centres already.
    k : int
        ``1 <= k <=`` number of unlabelled candidates.

    Returns
    -------
    ndarray of shape (k,), int64
        Distinct pool indices in pick order. Each pick maximises the Euclidean distance
        (float64) to its nearest centre, and then becomes a centre; equal distances go
        to the earliest position in ``candidates``. With nothing labelled, the first pick
        is the candidate farthest from the mean of all N features (deterministic, where
        the original paper starts from a random point).
    """
    x = check_matrix("features", features, "(N, D)")
    n = x.shape[0]
    mask = check_labelled_mask("labelled", labelled, n)
    cand = check_indices("candidates", candidates, n)
    avail = cand[~mask[cand]]
    k = check_k(k, avail.size, "unlabelled entries in candidates")

    # Only candidates need a distance: centres are never picked again. Holding the
    # candidates' rows in float64 keeps the incremental updates exact (ties stay ties).
    xc = x[avail].astype(np.float64)
    picks: list[int] = []
    if mask.any():
        min_d2 = _min_sq_dist_to_set(xc, x[mask].astype(np.float64))
    else:
        mean = x.mean(axis=0, dtype=np.float64)
        first = int(np.argmax(_exact_sq_dists(xc, mean)))
        picks.append(first)
        min_d2 = _exact_sq_dists(xc, xc[first])
        min_d2[first] = -1.0
    while len(picks) < k:
        # argmax returns the first maximum, i.e. the earliest candidate position.
        j = int(np.argmax(min_d2))
        picks.append(j)
        np.minimum(min_d2, _exact_sq_dists(xc, xc[j]), out=min_d2)
        # -1 < any distance: a picked row is never the maximum again, even when every
        # remaining candidate duplicates a centre (all distances 0).
        min_d2[j] = -1.0
    return avail[np.asarray(picks, dtype=np.int64)]


# --------------------------------------------------------------------------------------
# BADGE
# --------------------------------------------------------------------------------------


def gradient_embedding(logits: np.ndarray, features: np.ndarray) -> np.ndarray:
    """BADGE gradient embeddings: last-layer gradient of the loss at the predicted label.

    For a linear last layer ``logits = W @ f`` (W of shape (C, D)), the gradient of
    ``cross_entropy(logits, y_hat)`` with respect to W, with ``y_hat = argmax(logits)``,
    is ``outer(p - onehot(y_hat), f)`` where ``p = softmax(logits)``. The BADGE reference
    code stores its negation, which has the same norms and pairwise distances.

    Parameters
    ----------
    logits : ndarray of shape (M, C), real, finite, C >= 2
    features : ndarray of shape (M, D), real, finite
        Input of the last linear layer (penultimate features) for the same M images.

    Returns
    -------
    ndarray of shape (M, C * D), float32
        Row i is the (C, D) gradient flattened row-major: D columns for class 0, then D
        for class 1, ... Equal top logits take the smallest class as ``y_hat``. Memory is
        ``4 * M * C * D`` bytes (1 GiB for M = 50,000, C * D = 5,120).
    """
    z = check_logits("logits", logits)
    f = check_matrix("features", features, "(M, D)")
    m, c = z.shape
    if f.shape[0] != m:
        raise ParameterError("features", f"{{name}} must have one row per row of logits ({m}), got shape {f.shape}")
    d = f.shape[1]
    coef = np.exp(log_softmax(z))
    coef[np.arange(m), np.argmax(z, axis=1)] -= 1.0
    out = np.empty((m, c, d), dtype=np.float32)
    # Row blocks: the float64 product of all rows at once would be twice the output.
    rows = max(1, _BLAS_BLOCK // (c * d))
    for start in range(0, m, rows):
        stop = start + rows
        out[start:stop] = coef[start:stop, :, None] * f[start:stop, None, :].astype(np.float64)
    return out.reshape(m, c * d)


def kmeanspp_seeding(
    embeddings: np.ndarray,
    k: int,
    rng: np.random.Generator | int | None,
) -> np.ndarray:
    """BADGE's selection: k-means++ seeding over the rows of ``embeddings``.

    Parameters
    ----------
    embeddings : ndarray of shape (M, W), real, finite
        float32 input stays float32 (no float64 copy of the whole array is made).
    k : int
        ``1 <= k <= M``.
    rng : numpy.random.Generator or int
        Source of the draws (an int is a seed). Required: ``None`` is refused.

    Returns
    -------
    ndarray of shape (k,), int64
        Distinct row positions in pick order. The first is the row of largest L2 norm
        (smallest position on ties), as in the BADGE reference code; each next one is
        drawn with probability proportional to ``D(x)^2``, the squared Euclidean
        distance to the nearest row picked so far. Picked rows have ``D = 0``; if every
        remaining ``D`` is 0 (duplicates of picked rows), the pick is uniform over the
        unpicked rows. Only an (M,) vector of distances is kept, updated per pick.
    """
    x = check_matrix("embeddings", embeddings, "(M, W)")
    m = x.shape[0]
    k = check_k(k, m, "rows of embeddings")
    generator = as_generator(rng, "kmeanspp_seeding")
    norms2 = _row_sq_norms(x)
    return _kmeanspp(norms2, lambda i: _sq_dists_to_row(x, norms2, i), k, generator)


def _kmeanspp(norms2: np.ndarray, sq_dists_to: Callable[[int], np.ndarray], k: int,
              generator: np.random.Generator) -> np.ndarray:
    """k-means++ seeding given row norms and a function giving every row's squared distance to row i."""
    m = norms2.shape[0]
    first = int(np.argmax(norms2))
    picked = np.zeros(m, dtype=bool)
    picked[first] = True
    picks = [first]
    min_d2 = sq_dists_to(first)
    min_d2[first] = 0.0
    while len(picks) < k:
        cdf = np.cumsum(min_d2)
        if cdf[-1] > 0.0:
            # side="right" returns the first row whose cumulative weight exceeds u, so a
            # row of weight 0 (picked, or a duplicate) can never be returned.
            i = int(np.searchsorted(cdf, generator.random() * cdf[-1], side="right"))
            if i == m:  # u rounded up to the total
                i = int(np.flatnonzero(min_d2)[-1])
        else:
            unpicked = np.flatnonzero(~picked)
            i = int(unpicked[generator.integers(unpicked.size)])
        picked[i] = True
        picks.append(i)
        np.minimum(min_d2, sq_dists_to(i), out=min_d2)
        min_d2[i] = 0.0
    return np.asarray(picks, dtype=np.int64)


def badge_select(
    logits: np.ndarray,
    features: np.ndarray,
    k: int,
    rng: np.random.Generator | int | None,
) -> np.ndarray:
    """BADGE: ``kmeanspp_seeding(gradient_embedding(logits, features), k, rng)``.

    Parameters are those of :func:`gradient_embedding` and :func:`kmeanspp_seeding`.

    Returns
    -------
    ndarray of shape (k,), int64
        Distinct row positions of ``logits``, in pick order.

    Notes
    -----
    Up to :data:`_BADGE_DENSE_LIMIT` embedding values (M x C x D) the embeddings are
    built as :func:`gradient_embedding` does. Beyond, they are never built: an embedding is
    the outer product ``a ⊗ f`` of ``a = p - onehot(y_hat)`` (C values) and the features
    (D values), so ``|g_i|^2 = |a_i|^2 |f_i|^2`` and ``g_i . g_j = (a_i . a_j)(f_i . f_j)``,
    and k-means++ runs on those in O(M (C + D)) memory; a million candidates of C = 10,
    D = 512 then need 100 MB, not 20 GB. The two paths differ only in float rounding.
    """
    z = check_logits("logits", logits)
    f = check_matrix("features", features, "(M, D)")
    if f.shape[0] != z.shape[0]:
        raise ParameterError("features", f"{{name}} must have one row per row of logits ({z.shape[0]}), got shape "
                                         f"{f.shape}")
    if z.shape[0] * z.shape[1] * f.shape[1] <= _BADGE_DENSE_LIMIT:
        return kmeanspp_seeding(gradient_embedding(z, f), k, rng)
    k = check_k(k, z.shape[0], "rows of embeddings")
    a = np.exp(log_softmax(z))
    a[np.arange(z.shape[0]), np.argmax(z, axis=1)] -= 1.0
    f = f.astype(np.float64, copy=False)
    an2, fn2 = np.einsum("ij,ij->i", a, a), _row_sq_norms(f)
    norms2 = an2 * fn2

    def sq_dists_to(i: int) -> np.ndarray:
        d2 = norms2 - 2.0 * (a @ a[i]) * (f @ f[i]) + norms2[i]
        np.maximum(d2, 0.0, out=d2)
        suspect = np.flatnonzero(d2 <= _EXPANSION_RECHECK * (norms2 + norms2[i]))
        if suspect.size:  # recomputed from explicit outer products, few rows
            gi = np.outer(a[i], f[i]).ravel()
            for j in suspect:
                diff = np.outer(a[j], f[j]).ravel() - gi
                d2[j] = diff @ diff
        return d2

    return _kmeanspp(norms2, sq_dists_to, k, as_generator(rng, "kmeanspp_seeding"))


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
