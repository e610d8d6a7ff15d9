"""Checks of values at the public boundary, each error naming the parameter.

As scikit-learn's ``utils/validation.py``: every public function of bal checks its
arguments once, with these helpers, and a bad value raises
:class:`~bal.errors.ParameterError` naming the parameter (``beta``, ``features``),
never a command-line flag; the command line renames parameters to flags in one place
(:mod:`bal.cli.flags`). Array helpers return the array in the dtype the caller can
compute with (integers become float64), and never copy more than they must.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from bal.errors import ParameterError

__all__ = [
    "as_generator", "check_choice", "check_finite_array", "check_indices", "check_int", "check_k",
    "check_labelled_mask", "check_logits", "check_matrix", "check_real", "check_seed",
]

# Row blocks for the finiteness check of a large array: np.isfinite of a whole 1 GiB
# array would allocate another 256 MiB.
_CHECK_BLOCK = 1 << 22


def check_int(name: str, value: object, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int, refusing bools, floats and anything outside ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterError(name, f"{{name}} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ParameterError(name, f"{{name}} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ParameterError(name, f"{{name}} must be <= {maximum}, got {value}")
    return int(value)


def check_real(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float inside the given bounds (open or closed)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ParameterError(name, f"{{name}} must be a finite number, got {value!r}")
    v = float(value)
    if low is not None and (v <= low if low_open else v < low):
        raise ParameterError(name, f"{{name}} must be {'>' if low_open else '>='} {low:g}, got {value!r}")
    if high is not None and (v >= high if high_open else v > high):
        raise ParameterError(name, f"{{name}} must be {'<' if high_open else '<='} {high:g}, got {value!r}")
    return v


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ParameterError(name, f"{{name}} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def check_seed(name: str, value: object) -> int:
    """A seed NumPy and scikit-learn accept: an integer in ``[0, 2**32 - 1]``."""
    return check_int(name, value, 0, 2**32 - 1)


def as_generator(rng: np.random.Generator | int | None, what: str) -> np.random.Generator:
    """A Generator from ``rng`` (an int is a seed); refuses ``None`` so a random rule is never unseeded."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    if rng is None:
        raise ParameterError("rng", f"{what} is random: pass {{name}} (a numpy.random.Generator or an int seed)")
    raise ParameterError("rng", f"{{name}} must be a numpy.random.Generator or an int seed, got {rng!r}")


def check_finite_array(name: str, x: np.ndarray) -> None:
    """Refuse NaN and infinity, checking in row blocks so no full-size temporary is made."""
    rows = max(1, _CHECK_BLOCK // max(1, int(np.prod(x.shape[1:], dtype=np.int64))))
    for start in range(0, x.shape[0], rows):
        if not np.isfinite(x[start : start + rows]).all():
            raise ParameterError(name, "{name} contains NaN or infinite values")


def _real_dtype(name: str, x: np.ndarray) -> np.ndarray:
    if np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        return x.astype(np.float64)
    if not np.issubdtype(x.dtype, np.floating):
        raise ParameterError(name, f"{{name}} must be a real numeric array, got dtype {x.dtype}")
    return x


def check_matrix(name: str, value: object, shape: str = "(N, D)") -> np.ndarray:
    """A finite 2-D real array with at least one row and column; integers become float64."""
    x = np.asarray(value)
    if x.ndim != 2:
        raise ParameterError(name, f"{{name}} must be a 2-D array {shape}, got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ParameterError(name, f"{{name}} must have at least one row and one column, got shape {x.shape}")
    x = _real_dtype(name, x)
    check_finite_array(name, x)
    return x


def check_logits(name: str, value: object) -> np.ndarray:
    """Logits (M, C): finite, real, at least one row and two columns, as float64."""
    z = np.asarray(value)
    if z.ndim != 2:
        raise ParameterError(name, f"{{name}} must be a 2-D array (M, C), got shape {z.shape}")
    if z.shape[0] == 0:
        raise ParameterError(name, "{name} has no rows: there is nothing to score")
    if z.shape[1] < 2:
        raise ParameterError(name, f"{{name}} must have at least 2 columns (classes), got shape {z.shape}")
    z = _real_dtype(name, z).astype(np.float64, copy=False)
    check_finite_array(name, z)
    return z


def check_labelled_mask(name: str, value: object, n: int) -> np.ndarray:
    lab = np.asarray(value)
    if lab.dtype != np.bool_:
        raise ParameterError(name, f"{{name}} must be a boolean mask, got dtype {lab.dtype}")
    if lab.shape != (n,):
        raise ParameterError(name, f"{{name}} must have shape ({n},), one entry per pool image, got {lab.shape}")
    return lab


def check_indices(name: str, value: object, n: int, *, unique: bool = True) -> np.ndarray:
    """A 1-D int64 array of indices in ``[0, n)``, without repeats when ``unique``."""
    idx = np.asarray(value)
    if idx.ndim != 1:
        raise ParameterError(name, f"{{name}} must be a 1-D array of pool indices, got shape {idx.shape}")
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise ParameterError(name, f"{{name}} must be an integer array, got dtype {idx.dtype}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ParameterError(
            name, f"{{name}} must hold pool indices in [0, {n}), got values from {idx.min()} to {idx.max()}"
        )
    if unique and np.unique(idx).size != idx.size:
        raise ParameterError(name, "{name} must not repeat an index")
    return idx


def check_k(k: object, available: int, what: str, name: str = "k") -> int:
    """A number of images to pick, ``1 <= k <= available`` (``what`` says what is available)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ParameterError(name, f"{{name}} must be an integer, got {k!r}")
    if not 1 <= k <= available:
        raise ParameterError(name, f"{{name}} must satisfy 1 <= {{name}} <= {available} ({what}), got {k}")
    return int(k)
