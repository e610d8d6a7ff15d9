"""DropQuery (Gupte, Dixit, Sagawa & Yeung, TMLR 2024): disagreement under feature dropout, then clusters.

For each unlabelled image the previous model's prediction is compared with its
predictions on ``m`` copies of the image's features with dropout (each feature kept with
probability ``1 - p`` and scaled by ``1 / (1 - p)``); an image whose prediction changes
in more than half of the copies is a candidate: the model's decision there hangs on a
few features. The candidates are clustered (k-means, k = the budget) in the embedding,
and the candidate nearest each centre is picked, so the picks are uncertain and spread
out. Before any model exists, and when there are fewer candidates than the budget, the
same clustering runs on the unlabelled images (for the missing picks only).

Pure NumPy: the model is handed in as its last linear layer ``(W, b)`` and its
penultimate features, as every task model of bal ends in one.
"""

from __future__ import annotations

import numpy as np

from bal.selection.geometry import _exact_sq_dists, kmeans_labels
from bal.validation import as_generator, check_int, check_k, check_labelled_mask, check_matrix, check_real

__all__ = ["dropout_disagreement", "dropquery_select", "nearest_to_centres"]


def dropout_disagreement(features: np.ndarray, weight: np.ndarray, bias: np.ndarray, rng, *, p: float = 0.75,
                         m: int = 3) -> np.ndarray:
    """Fraction of ``m`` dropout copies of each row whose predicted class differs from the row's own, (N,)."""
    x = check_matrix("features", features)
    p = check_real("p", p, low=0, high=1, high_open=True)
    m = check_int("m", m, 1)
    rng = as_generator(rng, "dropout_disagreement")
    w, b = np.asarray(weight, dtype=np.float64), np.asarray(bias, dtype=np.float64)
    own = (x @ w.T + b).argmax(1)
    changed = np.zeros(len(x))
    for _ in range(m):
        keep = rng.random(x.shape) >= p
        changed += ((x * keep / (1.0 - p)) @ w.T + b).argmax(1) != own
    return changed / m


def nearest_to_centres(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Row indices of ``x``: in each of ``k`` k-means clusters (seeded), the member nearest its centre.

    One row per cluster, in cluster order; ties go to the lower row. k-means leaves no
    cluster empty, so there are ``min(k, len(x))`` rows.
    """
    k = min(int(k), len(x))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    x = np.asarray(x, dtype=np.float64)
    labels = kmeans_labels(x, k, seed)
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        picked.append(members[int(np.argmin(_exact_sq_dists(x[members], x[members].mean(0))))])
    return np.asarray(picked, dtype=np.int64)


def dropquery_select(embedding: np.ndarray, labelled: np.ndarray, k: int, rng, *,
                     disagreement: np.ndarray | None = None) -> np.ndarray:
    """``k`` unlabelled pool indices: the candidates' (disagreement > 1/2) nearest-to-centre rows, topped up
    from the other unlabelled images the same way. ``disagreement`` None (no model yet): all are candidates."""
    x = check_matrix("embedding", embedding)
    labelled = check_labelled_mask("labelled", labelled, len(x))
    unlabelled = np.flatnonzero(~labelled)
    k = check_k(k, len(unlabelled), "unlabelled images")
    rng = as_generator(rng, "dropquery_select")
    if disagreement is None:
        candidates = unlabelled
    else:
        candidates = unlabelled[np.asarray(disagreement, dtype=np.float64)[unlabelled] > 0.5]
    picked = candidates[nearest_to_centres(x[candidates], min(k, len(candidates)), int(rng.integers(2**31)))]
    if len(picked) < k:
        rest = np.setdiff1d(unlabelled, picked)
        more = rest[nearest_to_centres(x[rest], k - len(picked), int(rng.integers(2**31)))]
        picked = np.concatenate([picked, more])
    if len(picked) < k:  # duplicate rows can leave k-means with fewer clusters: the rest at random
        rest = np.setdiff1d(unlabelled, picked)
        picked = np.concatenate([picked, np.sort(rng.choice(rest, size=k - len(picked), replace=False))])
    return picked.astype(np.int64)
