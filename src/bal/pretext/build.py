"""Steps 1 and 2 for a pool in memory: rotation features and losses, then the CDD order."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from bal.data import BatchAugment, ImageSet
from bal.engine.trainer import TrainConfig
from bal.files import read_json
from bal.pretext.rotation import train_rotation
from bal.pretext.store import read_sorted_pool, write_cdd
from bal.selection.cdd import cluster_distance_difference, sort_by_cdd
from bal.selection.strategies import Pretext

__all__ = ["build_pretext"]


def build_pretext(
    pool: ImageSet,
    augment: BatchAugment,
    *,
    net: str,
    config: TrainConfig,
    seed: int,
    device: torch.device,
    save: str | os.PathLike | None,
    n_clusters: int | None = None,
    progress: bool = False,
) -> Pretext:
    """Rotation features and losses of ``pool`` and its CDD order (k-means with K = ``n_clusters``,
    default the number of classes, seeded with ``seed``).

    With ``save`` both steps write their files there (:mod:`bal.pretext.store`) and a
    later call reuses them, or resumes an unfinished rotation run.
    """
    result = train_rotation(pool, augment, net=net, config=config, seed=seed, device=device, save=save,
                            progress=progress)
    k = n_clusters if n_clusters is not None else len(pool.classes)
    settings = {"clusters": k, "algorithm": "kmeans", "seed": seed}
    folder = Path(save) if save is not None else None
    if folder is not None and (folder / "kmeans.json").exists() and read_json(folder / "kmeans.json") == settings:
        order = read_sorted_pool(folder / "unlabeled_pool.txt", pool.paths)
    else:
        cdd = cluster_distance_difference(result.features, k, seed=seed)
        order = sort_by_cdd(cdd)
        if folder is not None:
            write_cdd(folder, pool.paths, cdd, order, settings)
    return Pretext(features=result.features, losses=result.losses, order=np.asarray(order, dtype=np.int64))
