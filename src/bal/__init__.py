"""bal: deep active learning for images, built around BAL (Li et al., TPAMI 2023) and PT4AL.

The public API, imported lazily so that ``bal --help`` does not wait for torch::

    bal.cluster_distance_difference(features, n_clusters, seed=0) -> (N,) CDD
    bal.subpool_window(cycle, n_cycles, pool_size, addendum, beta, mode="centred") -> (start, stop)
    bal.images_from_arrays(images, labels) -> ImageSet
    bal.active_learning(pool, test, percentages=..., strategy=bal.RECOMMENDED, ...) -> per-cycle metrics
"""

from __future__ import annotations

import importlib

__version__ = "0.3.1"

_EXPORTS = {
    "BalError": "bal.errors",
    "DataError": "bal.errors",
    "ParameterError": "bal.errors",
    "cluster_distance_difference": "bal.selection",
    "sort_by_cdd": "bal.selection",
    "subpool_window": "bal.selection",
    "build_subpool": "bal.selection",
    "select_first": "bal.selection",
    "select_uncertain": "bal.selection",
    "uncertainty_scores": "bal.selection",
    "create_strategy": "bal.selection",
    "RECOMMENDED": "bal.selection",
    "list_strategies": "bal.selection",
    "register_strategy": "bal.selection",
    "ImageSet": "bal.data",
    "load_dataset": "bal.data",
    "images_from_arrays": "bal.data",
    "open_dataset": "bal.data",
    "active_learning": "bal.api",
    "LabelledPool": "bal.loop",
    "run_cycles": "bal.loop",
    "select_cycle": "bal.loop",
    "TrainConfig": "bal.engine",
    "train_rotation": "bal.pretext",
    "build_pretext": "bal.pretext",
    "create_model": "bal.models",
    "list_models": "bal.models",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'bal' has no attribute {name!r}")
