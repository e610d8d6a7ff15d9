"""The pool and what is labelled in it: one object for run folders, benchmarks, the API and projects.

As baal's ``ActiveLearningDataset``: a :class:`LabelledPool` of N images knows which
are labelled, in what order and in which cycle each label came, and turns into a
plain ``state_dict`` and back. Who gives the labels does not matter here: in a run
folder the pool's own labels play the oracle, in a labelling project a person does.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from bal.errors import ParameterError
from bal.validation import check_indices, check_int

__all__ = ["LabelledPool"]

#: ``cycle_of`` of an image labelled before any cycle (class folders, imports).
NO_CYCLE = -1


class LabelledPool:
    """Which of ``size`` pool images are labelled, in what order, and in which cycle.

    Attributes
    ----------
    size : int
        N, the number of pool images (indices ``0 .. N-1``).
    labelled : ndarray of bool, shape (N,), read-only
    order : ndarray of int64, shape (n_labelled,)
        Pool indices in the order they were labelled.
    cycle_of : ndarray of int64, shape (N,)
        The cycle each image was labelled in; ``-2`` for unlabelled images, ``-1``
        for images labelled before any cycle.
    """

    def __init__(self, size: int):
        self.size = check_int("size", size, 0)
        self._mask = np.zeros(self.size, dtype=bool)
        self._cycle = np.full(self.size, -2, dtype=np.int64)
        self._order: list[int] = []

    # -- reading -------------------------------------------------------------------------
    @property
    def labelled(self) -> np.ndarray:
        view = self._mask.view()
        view.setflags(write=False)
        return view

    @property
    def order(self) -> np.ndarray:
        return np.asarray(self._order, dtype=np.int64)

    @property
    def cycle_of(self) -> np.ndarray:
        return self._cycle.copy()

    @property
    def n_labelled(self) -> int:
        return len(self._order)

    def unlabelled(self) -> np.ndarray:
        """Indices of the unlabelled images, ascending."""
        return np.flatnonzero(~self._mask)

    def labelled_in(self, cycle: int) -> np.ndarray:
        """Indices labelled in ``cycle``, in the order they were labelled."""
        order = self.order
        return order[self._cycle[order] == cycle]

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"LabelledPool(size={self.size}, labelled={self.n_labelled})"

    # -- writing -------------------------------------------------------------------------
    def label(self, indices: Iterable[int], cycle: int = NO_CYCLE) -> None:
        """Mark ``indices`` (in this order) as labelled in ``cycle``; all or nothing.

        Raises ParameterError when an index is out of range, repeated, or already labelled.
        """
        idx = check_indices("indices", np.asarray(list(indices), dtype=np.int64), self.size)
        cycle = check_int("cycle", cycle, NO_CYCLE)
        if self._mask[idx].any():
            twice = [int(i) for i in idx[self._mask[idx]]][:5]
            raise ParameterError("indices", f"{{name}} names images that are already labelled: {twice}")
        self._mask[idx] = True
        self._cycle[idx] = cycle
        self._order.extend(int(i) for i in idx)

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"size", "order", "cycles"}``: plain lists, JSON-ready."""
        order = self.order
        return {"size": self.size, "order": order.tolist(), "cycles": self._cycle[order].tolist()}

    def load_state_dict(self, state: dict) -> None:
        """Replace the labels by those of ``state`` (from :meth:`state_dict`)."""
        if int(state["size"]) != self.size:
            raise ParameterError("state", f"{{name}} describes a pool of {state['size']} images, not {self.size}")
        order = check_indices("state", np.asarray(state["order"], dtype=np.int64), self.size)
        cycles = np.asarray(state["cycles"], dtype=np.int64)
        if cycles.shape != order.shape or (cycles < NO_CYCLE).any():
            raise ParameterError("state", "{name} needs one cycle >= -1 per labelled image")
        self._mask = np.zeros(self.size, dtype=bool)
        self._mask[order] = True
        self._cycle = np.full(self.size, -2, dtype=np.int64)
        self._cycle[order] = cycles
        self._order = order.tolist()

    @classmethod
    def from_state_dict(cls, state: dict) -> "LabelledPool":
        pool = cls(int(state["size"]))
        pool.load_state_dict(state)
        return pool
