"""Rules that read the previous task model: Core-set and BADGE (diversity in the model's own space).

* Core-set (Sener & Savarese, ICLR 2018): :func:`kcenter_greedy`, farthest-first
  traversal of the task model's penultimate features.
* BADGE (Ash et al., ICLR 2020): :func:`gradient_embedding` then
  :func:`kmeanspp_seeding`, together :func:`badge_select`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bal.errors import ParameterError
from bal.selection.geometry import (
    _BLAS_BLOCK,
    _EXPANSION_RECHECK,
    _exact_sq_dists,
    _min_sq_dist_to_set,
    _row_sq_norms,
    _sq_dists_to_row,
)
from bal.selection.uncertainty import log_softmax
from bal.validation import (
    as_generator,
    check_indices,
    check_k,
    check_labelled_mask,
    check_logits,
    check_matrix,
)

__all__ = ["badge_select", "gradient_embedding", "kcenter_greedy", "kmeanspp_seeding"]

# BADGE builds its gradient embeddings up to this many values (512 MiB of float32); beyond,
# it works on their factors (see badge_select).
_BADGE_DENSE_LIMIT = 1 << 27


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
