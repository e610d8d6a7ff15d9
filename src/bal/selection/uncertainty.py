"""Selection in cycles c > 0 by the previous model's uncertainty, docs/method.md ``--sampling``.

Every score is oriented so that HIGHER = MORE UNCERTAIN; selection is always "the k
highest scores", whatever the rule.
"""

from __future__ import annotations

import numpy as np

from bal.errors import ParameterError
from bal.validation import as_generator, check_choice, check_k, check_logits

__all__ = ["SAMPLING_RULES", "log_softmax", "select_uncertain", "uncertainty_scores"]

SAMPLING_RULES = ("confidence", "entropy", "margin", "rand", "confidence-normalized")


def uncertainty_scores(logits: np.ndarray, rule: str) -> np.ndarray:
    """Uncertainty of each row of logits; higher = more uncertain.

    Parameters
    ----------
    logits : ndarray of shape (M, C), real, finite, C >= 2
        Raw (pre-softmax) outputs of the task model for M candidate images.
    rule : {"confidence", "entropy", "margin", "confidence-normalized"}
        ``"confidence"``: ``1 - max softmax`` (least confidence, the default).
        ``"entropy"``: ``-sum p log p`` (``0 log 0 = 0``).
        ``"margin"``: ``-(p1 - p2)`` with ``p1 >= p2`` the two largest probabilities.
        ``"confidence-normalized"``: ``1 - max softmax(z / ||z||_2)`` per row, the
        authors' released code (a zero row stays zero). ``"rand"`` has no score: use
        :func:`select_uncertain`.

    Returns
    -------
    ndarray of shape (M,), float64
    """
    if rule == "rand":
        raise ParameterError("rule", "{name} 'rand' has no uncertainty score: use "
                                     "select_uncertain(logits, k, 'rand', rng)")
    check_choice("rule", rule, SAMPLING_RULES)
    z = check_logits("logits", logits)
    if rule == "confidence":
        return _least_confidence(z)
    if rule == "confidence-normalized":
        norms = np.linalg.norm(z, axis=1, keepdims=True)
        # Dividing by max(norm, tiny) keeps a zero row at zero, as torch F.normalize does.
        return _least_confidence(z / np.maximum(norms, np.finfo(np.float64).tiny))
    log_p = log_softmax(z)
    p = np.exp(log_p)
    if rule == "entropy":
        # log_p is finite for finite logits, so an underflowed p = 0 contributes 0 * finite = 0.
        return -np.sum(p * log_p, axis=1)
    # margin
    top_two = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
    return top_two[:, 0] - top_two[:, 1]


def select_uncertain(
    logits: np.ndarray,
    k: int,
    rule: str,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Positions of the ``k`` most uncertain rows of ``logits``.

    Parameters
    ----------
    logits : ndarray of shape (M, C), real, finite, C >= 2
    k : int
        ``1 <= k <= M``.
    rule : {"confidence", "entropy", "margin", "rand", "confidence-normalized"}
        See :func:`uncertainty_scores`. ``"rand"`` ignores the logits' values.
    rng : numpy.random.Generator or int, optional
        Required for ``"rand"`` (an int is a seed); ignored otherwise.

    Returns
    -------
    ndarray of shape (k,), int64
        Row positions, most uncertain first; equal scores are taken in row order. For
        ``"rand"``: k distinct rows uniformly at random, in increasing order.
    """
    check_choice("rule", rule, SAMPLING_RULES)
    z = check_logits("logits", logits)
    m = z.shape[0]
    k = check_k(k, m, "rows of logits")
    if rule == "rand":
        generator = as_generator(rng, "select_uncertain(rule='rand')")
        return np.sort(generator.choice(m, size=k, replace=False)).astype(np.int64)
    scores = uncertainty_scores(z, rule)
    # Stable sort of the negated scores: descending score, ties by smaller position.
    return np.argsort(-scores, kind="stable")[:k].astype(np.int64, copy=False)


def log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


def _least_confidence(z: np.ndarray) -> np.ndarray:
    """``1 - max softmax``, computed as ``r / (1 + r)`` with r = sum of the other exp terms.

    ``1 - p_max`` in floating point rounds to 0 for every confident row, turning them all
    into ties; ``r / (1 + r)`` keeps their order.
    """
    top = np.argmax(z, axis=1)
    rows = np.arange(z.shape[0])
    e = np.exp(z - z[rows, top][:, None])
    e[rows, top] = 0.0
    r = e.sum(axis=1)
    return r / (1.0 + r)
