"""Sliding sub-pools over the CDD-sorted pool, docs/method.md step 3.

Each cycle looks only at a window of the sorted list, of width ``beta * A``, that slides
along the list from cycle to cycle. :func:`subpool_window` gives the window in sorted
positions; :func:`build_subpool` removes labelled images from it and, if it then holds
fewer than ``k`` images, tops it up from the nearest unlabelled images outside it.

Rounding rule (one rule for every window end): each end is computed exactly and rounded
half up, ``floor(x + 1/2)``. ``beta`` is read as the decimal it prints as (``repr``), so
``beta=1.2`` means exactly 6/5 and float noise such as ``0.7 * 5 == 3.4999...`` cannot move
an end by one. The first and last windows both have width ``w = floor(beta*A + 1/2)``
before clipping: ``[0, w)`` and ``[N - w, N)``. Middle windows round each end on its own,
so their width may differ from ``w`` by one when ``(beta - 1) * A / 2`` has a fractional
part of exactly 1/2. Everything is then clipped to ``[0, N)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from bal.errors import ParameterError
from bal.validation import check_choice, check_int, check_labelled_mask, check_real

__all__ = ["WINDOW_MODES", "SubPool", "build_subpool", "check_order", "subpool_window"]

WINDOW_MODES = ("centred", "released")


def subpool_window(
    cycle: int,
    n_cycles: int,
    pool_size: int,
    addendum: int,
    beta: float,
    mode: str = "centred",
) -> tuple[int, int]:
    """The sub-pool window of one cycle, in positions of the CDD-sorted list.

    Parameters
    ----------
    cycle : int
        Cycle index c, ``0 <= c < n_cycles``.
    n_cycles : int
        Number of cycles C, ``>= 1``.
    pool_size : int
        Pool size N, ``>= 1``.
    addendum : int
        Sub-pool unit A, ``>= 1``.
    beta : float
        Width factor β, ``> 0``. ``> 1``: consecutive windows overlap;
        ``< 1``: they leave gaps.
    mode : {"centred", "released"}, default "centred"
        Rule for the cycles strictly between the first and the last.
        ``"centred"`` (intended): ``[c*A - (beta-1)/2*A, (c+1)*A + (beta-1)/2*A)``.
        ``"released"`` (the authors' code): ``[(c+1)*A - (beta-1)/2*A, (c+2)*A +
        (beta-1)/2*A)``, which never visits ``[A, 2A)`` and, with ``beta=1`` and
        ``N = C*A``, makes the last two windows coincide.

    Returns
    -------
    (start, stop) : tuple of int
        Half-open window ``[start, stop)`` with ``0 <= start <= stop <= N``. Cycle 0 is
        ``[0, beta*A)`` and cycle C-1 is ``[N - beta*A, N)`` (with ``n_cycles == 1`` the
        cycle-0 rule wins). The window may be empty after clipping (``start == stop``);
        :func:`build_subpool` then tops it up. See the module docstring for rounding.
    """
    check_int("cycle", cycle, 0)
    check_int("n_cycles", n_cycles, 1)
    if cycle >= n_cycles:
        raise ParameterError("cycle", f"{{name}} must satisfy 0 <= {{name}} < n_cycles={n_cycles}, got {cycle}")
    check_int("pool_size", pool_size, 1)
    check_int("addendum", addendum, 1)
    check_real("beta", beta, low=0, low_open=True)
    check_choice("mode", mode, WINDOW_MODES)

    n, a = int(pool_size), int(addendum)
    # Exact rational arithmetic: see the module docstring.
    b = Fraction(repr(float(beta)))
    width = _round_half_up(b * a)
    if cycle == 0:
        start, stop = 0, width
    elif cycle == n_cycles - 1:
        start, stop = n - width, n
    else:
        block = cycle if mode == "centred" else cycle + 1
        half_extra = (b - 1) / 2 * a
        start = _round_half_up(block * a - half_extra)
        stop = _round_half_up((block + 1) * a + half_extra)
    start = min(max(start, 0), n)
    stop = min(max(stop, start), n)
    return start, stop


@dataclass(frozen=True)
class SubPool:
    """The images one cycle may choose from.

    Attributes
    ----------
    candidates : ndarray of shape (M,), int64, read-only
        Pool indices (indices into the pool arrays, not sorted positions), in sorted
        (CDD ascending) order: first the unlabelled images inside the window, then the
        top-up images in order of increasing distance to the window.
    window : (int, int)
        ``[start, stop)`` in sorted positions.
    n_in_window : int
        Unlabelled images inside the window (all of them, even if more than k).
    n_topped_up : int
        Images added from outside the window because it held fewer than k unlabelled
        images (0 when it held enough). Worth logging when > 0.
    """

    candidates: np.ndarray
    window: tuple[int, int]
    n_in_window: int
    n_topped_up: int


def build_subpool(
    order: np.ndarray,
    window: tuple[int, int],
    labelled: np.ndarray,
    k: int,
) -> SubPool:
    """Window of the sorted list minus labelled images, topped up to at least ``k``.

    Parameters
    ----------
    order : ndarray of shape (N,), integer
        The CDD-sorted list, a permutation of ``0..N-1``: ``order[pos]`` = pool index.
    window : (int, int)
        ``[start, stop)`` in sorted positions, ``0 <= start <= stop <= N`` (from
        :func:`subpool_window`).
    labelled : ndarray of shape (N,), bool
        ``labelled[i]`` is True if pool index ``i`` is already labelled.
    k : int
        Number of images the cycle will label, ``>= 1``.

    Returns
    -------
    SubPool
        If the window holds fewer than ``k`` unlabelled images, the nearest unlabelled
        images outside it are appended until there are exactly ``k``. Distance in sorted
        positions: ``start - pos`` before the window, ``pos - (stop - 1)`` after it; on a
        tie the smaller position comes first. Never contains a labelled image.

    Raises
    ------
    ParameterError
        If the whole pool holds fewer than ``k`` unlabelled images, or on bad input.
    """
    o = check_order(order)
    n = o.shape[0]
    lab = check_labelled_mask("labelled", labelled, n)

    if not (isinstance(window, tuple | list) and len(window) == 2):
        raise ParameterError("window", f"{{name}} must be a (start, stop) pair, got {window!r}")
    start = check_int("window start", window[0])
    stop = check_int("window stop", window[1])
    if not 0 <= start <= stop <= n:
        raise ParameterError("window", f"{{name}} must satisfy 0 <= start <= stop <= N={n}, got ({start}, {stop})")
    check_int("k", k, 1)

    n_unlabelled = n - int(np.count_nonzero(lab))
    if n_unlabelled < k:
        raise ParameterError(
            "k", f"asked for {{name}}={k} new labels but only {n_unlabelled} unlabelled images remain in the pool "
                 f"of {n}"
        )

    free = ~lab[o]  # free[pos]: the image at sorted position pos is unlabelled
    inside = start + np.flatnonzero(free[start:stop])
    need = k - inside.shape[0]
    if need > 0:
        before = np.flatnonzero(free[:start])
        after = stop + np.flatnonzero(free[stop:])
        outside = np.concatenate([before, after])
        distance = np.concatenate([start - before, after - (stop - 1)])
        # lexsort: last key is primary -> by distance, then by position.
        nearest = np.lexsort((outside, distance))[:need]
        extra = outside[nearest]
    else:
        extra = np.empty(0, dtype=np.int64)

    candidates = o[np.concatenate([inside, extra])].astype(np.int64, copy=False)
    candidates.setflags(write=False)
    return SubPool(
        candidates=candidates,
        window=(start, stop),
        n_in_window=int(inside.shape[0]),
        n_topped_up=int(extra.shape[0]),
    )


def check_order(order: object) -> np.ndarray:
    """A sorted pool list as int64 (N,): a permutation of ``0..N-1``, N >= 1."""
    o = np.asarray(order)
    if o.ndim != 1:
        raise ParameterError("order", f"{{name}} must be a 1-D array (N,), got shape {o.shape}")
    if not np.issubdtype(o.dtype, np.integer):
        raise ParameterError("order", f"{{name}} must be an integer array, got dtype {o.dtype}")
    n = o.shape[0]
    if n == 0:
        raise ParameterError("order", "{name} is empty: the pool has no images")
    o = o.astype(np.int64, copy=False)
    if not ((o >= 0) & (o < n)).all():
        raise ParameterError("order", f"{{name}} must be a permutation of 0..{n - 1}, found value(s) outside it")
    seen = np.zeros(n, dtype=bool)
    seen[o] = True
    if not seen.all():
        raise ParameterError("order", f"{{name}} must be a permutation of 0..{n - 1}, found repeated values")
    return o


def _round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))
