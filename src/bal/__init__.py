"""bal: deep active learning for images, built around BAL (Li et al., TPAMI 2023) and PT4AL.

The public API, imported lazily so that ``bal --help`` does not wait for torch::

    bal.cluster_distance_difference(features, n_clusters, seed=0) -> (N,) CDD
    bal.subpool_window(cycle, n_cycles, pool_size, addendum, beta, mode="centred") -> (start, stop)
    bal.images_from_arrays(images, labels) -> ImageSet
    bal.active_learning(pool, test, percentages=..., strategy="bal", ...) -> per-cycle metrics
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "BalError": "bal.errors",
    "DataError": "bal.errors",
    "cluster_distance_difference": "bal.selection",
    "sort_by_cdd": "bal.selection",
    "subpool_window": "bal.selection",
    "build_subpool": "bal.selection",
    "select_first": "bal.selection",
    "select_uncertain": "bal.selection",
    "uncertainty_scores": "bal.selection",
    "ImageSet": "bal.data",
    "load_dataset": "bal.data",
    "images_from_arrays": "bal.pipeline",
    "active_learning": "bal.pipeline",
    "open_dataset": "bal.pipeline",
    "run_cycles": "bal.loop.cycles",
    "CycleConfig": "bal.loop.cycles",
    "TrainConfig": "bal.loop.trainer",
    "train_rotation": "bal.pretext.rotation",
    "create_model": "bal.models",
    "list_models": "bal.models",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'bal' has no attribute {name!r}")
