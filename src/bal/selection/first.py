"""Cycle-0 selection (no model yet), docs/method.md ``--first``.

The candidate list is the sub-pool in CDD-ascending order (``SubPool.candidates``), so
position 0 is the image closest to a cluster boundary.
"""

from __future__ import annotations

import numpy as np

from bal.errors import ParameterError
from bal.selection.baselines import kmeans_labels, typicality
from bal.validation import as_generator, check_choice, check_int, check_matrix

__all__ = ["FIRST_RULES", "select_first"]

FIRST_RULES = ("high1st", "low1st", "uni", "rand", "typical")


def select_first(
    n_candidates: int,
    k: int,
    rule: str,
    rng: np.random.Generator | int | None = None,
    features: np.ndarray | None = None,
    knn: int = 20,
) -> np.ndarray:
    """Pick ``k`` of ``n_candidates`` positions of the CDD-sorted candidate list.

    Parameters
    ----------
    n_candidates : int
        Length n of the candidate list, ``>= 0``.
    k : int
        Number of positions to pick, ``1 <= k <= n``.
    rule : {"high1st", "low1st", "uni", "rand", "typical"}
        ``"high1st"``: the first k (smallest CDD). ``"low1st"``: the last k.
        ``"uni"``: evenly spaced from position 0, ``floor(i * n / k)`` for
        ``i = 0..k-1``. ``"rand"``: k distinct positions uniformly at random.
        ``"typical"``: coverage and typicality together (TypiClust's idea inside the
        window): the candidates' ``features`` are clustered into k clusters by k-means
        (:func:`bal.selection.baselines.kmeans_labels`, seeded from ``rng``) and each
        cluster gives its most typical member, typicality being 1 / the mean distance
        to its ``min(knn, size - 1)`` nearest fellow members (smallest position on
        ties). Should k-means leave a cluster empty (fewer than k distinct feature
        rows), the missing picks are the most typical remaining candidates overall.
    rng : numpy.random.Generator or int, optional
        Source of randomness for ``"rand"`` and ``"typical"`` (an int is a seed for
        ``numpy.random.default_rng``). Required for those so runs are reproducible;
        ignored by the other rules.
    features : ndarray of shape (n_candidates, D), for ``"typical"`` only
    knn : int, neighbours of the typicality of ``"typical"``

    Returns
    -------
    ndarray of shape (k,), int64
        Distinct positions into the candidate list, in increasing order.
    """
    check_choice("rule", rule, FIRST_RULES)
    n = check_int("n_candidates", n_candidates, 0)
    k = check_int("k", k, 1)
    if k > n:
        raise ParameterError("k", f"asked for {{name}}={k} images but the candidate list holds only {n}")

    if rule == "high1st":
        return np.arange(k, dtype=np.int64)
    if rule == "low1st":
        return np.arange(n - k, n, dtype=np.int64)
    if rule == "uni":
        # Integer arithmetic: float i*n/k can land just below an integer and floor wrong.
        return (np.arange(k, dtype=np.int64) * n) // k
    generator = as_generator(rng, f"rule {rule!r}")
    if rule == "rand":
        return np.sort(generator.choice(n, size=k, replace=False)).astype(np.int64)
    return _typical(features, n, k, generator, check_int("knn", knn, 1))


def _typical(features: np.ndarray | None, n: int, k: int, generator: np.random.Generator, knn: int) -> np.ndarray:
    if features is None:
        raise ParameterError("features", "rule 'typical' needs {name}: one row per candidate")
    x = check_matrix("features", features, "(n_candidates, D)")
    if x.shape[0] != n:
        raise ParameterError("features", f"{{name}} has {x.shape[0]} rows, one per candidate is {n}")
    labels = kmeans_labels(x, k, int(generator.integers(2**31)))
    picks: list[int] = []
    for cluster in range(k):
        members = np.flatnonzero(labels == cluster)
        if members.size:
            picks.append(int(members[np.argmax(typicality(x[members], knn))]))
    if len(picks) < k:
        overall = typicality(x, knn)
        overall[picks] = -np.inf
        # stable sort of the negated scores: most typical first, smallest position on ties
        picks += [int(i) for i in np.argsort(-overall, kind="stable")[: k - len(picks)]]
    return np.sort(np.asarray(picks, dtype=np.int64))
