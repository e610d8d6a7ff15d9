"""Cycle-0 selection (no model yet), METHOD.md ``--first``.

The candidate list is the sub-pool in CDD-ascending order (``SubPool.candidates``), so
position 0 is the image closest to a cluster boundary.
"""

from __future__ import annotations

import numpy as np

from bal.errors import ParameterError
from bal.validation import as_generator, check_choice, check_int

__all__ = ["FIRST_RULES", "select_first"]

FIRST_RULES = ("high1st", "low1st", "uni", "rand")


def select_first(
    n_candidates: int,
    k: int,
    rule: str,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Pick ``k`` of ``n_candidates`` positions of the CDD-sorted candidate list.

    Parameters
    ----------
    n_candidates : int
        Length n of the candidate list, ``>= 0``.
    k : int
        Number of positions to pick, ``1 <= k <= n``.
    rule : {"high1st", "low1st", "uni", "rand"}
        ``"high1st"``: the first k (smallest CDD). ``"low1st"``: the last k.
        ``"uni"``: evenly spaced from position 0, ``floor(i * n / k)`` for
        ``i = 0..k-1``. ``"rand"``: k distinct positions uniformly at random.
    rng : numpy.random.Generator or int, optional
        Source of randomness for ``"rand"`` (an int is a seed for
        ``numpy.random.default_rng``). Required for ``"rand"`` so runs are reproducible;
        ignored by the other rules.

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
    return np.sort(generator.choice(n, size=k, replace=False)).astype(np.int64)
