"""Sliding sub-pools over the CDD-sorted pool, METHOD.md step 3.

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
import numbers
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from bal.errors import BalError

__all__ = ["WINDOW_MODES", "SubPool", "build_subpool", "subpool_window"]

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
        Sub-pool unit A (``--addendum``), ``>= 1``.
    beta : float
        Width factor (``--beta``), ``> 0``. ``> 1``: consecutive windows overlap;
        ``< 1``: they leave gaps.
    mode : {"centred", "released"}, default "centred"
        Rule for the cycles strictly between the first and the last (``--window``).
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
    for name, value, minimum in (("cycle", cycle, 0), ("n_cycles", n_cycles, 1)):
        _check_int(name, value, minimum)
    if cycle >= n_cycles:
        raise BalError(f"cycle must satisfy 0 <= cycle < n_cycles={n_cycles}, got {cycle}")
    _check_int("pool_size", pool_size, 1)
    _check_int("addendum (--addendum)", addendum, 1)
    if (
        isinstance(beta, bool)
        or not isinstance(beta, numbers.Real)
        or not math.isfinite(beta)
        or beta <= 0
    ):
        raise BalError(f"beta (--beta) must be a finite number > 0, got {beta!r}")
    if mode not in WINDOW_MODES:
        raise BalError(
            f"mode (--window) must be one of {', '.join(WINDOW_MODES)}, got {mode!r}"
        )

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
    labeled: np.ndarray,
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
    labeled : ndarray of shape (N,), bool
        ``labeled[i]`` is True if pool index ``i`` is already labelled.
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
    BalError
        If the whole pool holds fewer than ``k`` unlabelled images, or on bad input.
    """
    o = np.asarray(order)
    if o.ndim != 1:
        raise BalError(f"order must be a 1-D array (N,), got shape {o.shape}")
    if not np.issubdtype(o.dtype, np.integer):
        raise BalError(f"order must be an integer array, got dtype {o.dtype}")
    n = o.shape[0]
    if n == 0:
        raise BalError("order is empty: the pool has no images")
    o = o.astype(np.int64, copy=False)
    seen = np.zeros(n, dtype=bool)
    in_range = (o >= 0) & (o < n)
    if not in_range.all():
        raise BalError(f"order must be a permutation of 0..{n - 1}, found value(s) outside it")
    seen[o] = True
    if not seen.all():
        raise BalError(f"order must be a permutation of 0..{n - 1}, found repeated values")

    lab = np.asarray(labeled)
    if lab.dtype != np.bool_:
        raise BalError(f"labeled must be a boolean mask, got dtype {lab.dtype}")
    if lab.shape != (n,):
        raise BalError(f"labeled must have shape ({n},) like order, got {lab.shape}")

    if not (isinstance(window, tuple | list) and len(window) == 2):
        raise BalError(f"window must be a (start, stop) pair, got {window!r}")
    start, stop = window
    for name, value in (("window start", start), ("window stop", stop)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise BalError(f"{name} must be an integer, got {value!r}")
    start, stop = int(start), int(stop)
    if not 0 <= start <= stop <= n:
        raise BalError(
            f"window must satisfy 0 <= start <= stop <= N={n}, got ({start}, {stop})"
        )
    _check_int("k", k, 1)

    n_unlabeled = n - int(np.count_nonzero(lab))
    if n_unlabeled < k:
        raise BalError(
            f"asked for k={k} new labels but only {n_unlabeled} unlabelled images remain "
            f"in the pool of {n}"
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


def _round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise BalError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise BalError(f"{name} must be >= {minimum}, got {value}")
