"""Steps 1 and 2 for a pool in memory: rotation features and losses, then the CDD order."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from bal.data import BatchAugment, ImageSet
from bal.engine.trainer import TrainConfig
from bal.errors import BalError
from bal.files import read_json
from bal.pretext.features import cdd_order, normalise_features
from bal.pretext.rotation import train_rotation
from bal.pretext.store import read_sorted_pool, write_cdd
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
    needs: frozenset[str] = frozenset({"features", "losses", "order"}),
    view: str = "upright",
    feature_norm: str = "none",
    features: np.ndarray | None = None,
) -> Pretext:
    """What a strategy ``needs`` of steps 1 and 2 for ``pool``: features, rotation losses, CDD order.

    The features are the rotation network's ``view``, or ``features`` when given (the
    user's own embedding or a backbone's, one row per pool image), normalised by
    ``feature_norm``; the order is their CDD (k-means with K = ``n_clusters``, default the
    number of classes, seeded with ``seed``). The rotation pretext is trained only when
    something needs it. With ``save`` the rotation run and the CDD order are written there
    (:mod:`bal.pretext.store`); a later call reuses them, or resumes an unfinished run.
    """
    pretext = Pretext()
    wants_rotation = "losses" in needs or (features is None and bool(needs & {"features", "order"}))
    result = None
    if wants_rotation:
        result = train_rotation(pool, augment, net=net, config=config, seed=seed, device=device, save=save,
                                progress=progress)
        pretext.losses = result.losses
    if not needs & {"features", "order"}:
        return pretext
    raw = features if features is not None else result.views.get(view, result.features if view == "upright" else None)
    if raw is None:
        raise BalError(f"the pretext in {save} has no {view!r} view; train it again in a new folder")
    pretext.features = normalise_features(raw, feature_norm)
    k = n_clusters if n_clusters is not None else len(pool.classes)
    settings = {"clusters": k, "algorithm": "auto", "seed": seed, "features": "given" if features is not None else view,
                "feature_norm": feature_norm}
    folder = Path(save) if save is not None and wants_rotation else None
    if folder is not None and (folder / "kmeans.json").exists() and read_json(folder / "kmeans.json") == settings:
        order = read_sorted_pool(folder / "unlabeled_pool.txt", pool.paths)
    else:
        cdd, order = cdd_order(pretext.features, k, seed=seed)
        if folder is not None:
            write_cdd(folder, pool.paths, cdd, order, settings)
    pretext.order = np.asarray(order, dtype=np.int64)
    return pretext
