"""The whole method on images already in memory, for Python users: :func:`active_learning`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bal.data import (
    DEFAULT_REGIME,
    ImageSet,
    Preset,
    augment_for,
    budgets_from_percentages,
    generic_preset,
    regime_percentages,
)
from bal.engine.trainer import TrainConfig
from bal.errors import ParameterError
from bal.loop.cycles import run_cycles
from bal.pretext import ROTATION_DEFAULTS, build_pretext
from bal.selection import RECOMMENDED, Pretext, create_strategy
from bal.validation import check_matrix

__all__ = ["active_learning"]


def active_learning(
    pool: ImageSet,
    test: ImageSet,
    *,
    percentages: Sequence[float] | None = None,
    regime: str = DEFAULT_REGIME,
    strategy: str = RECOMMENDED,
    net: str = "cnn",
    train: TrainConfig = TrainConfig(),
    rotation: TrainConfig = ROTATION_DEFAULTS,
    beta: float | None = None,
    addendum: int | None = None,
    window: str | None = None,
    first: str | None = None,
    sampling: str | None = None,
    order_from: str | None = None,
    warm_start: bool = True,
    view: str | None = None,
    feature_norm: str | None = None,
    features: np.ndarray | None = None,
    backbone: str | None = None,
    weights: str | os.PathLike | None = None,
    n_clusters: int | None = None,
    preset: Preset | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    out_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> list[dict]:
    """Run active learning on images in memory; returns one metrics dict per cycle.

    ``strategy`` defaults to bal's recommendation (:data:`bal.RECOMMENDED`); ``"bal"`` is the
    paper's method as ``bal train`` runs it.

    The pool's labels stand in for the annotator. ``percentages`` (new labels per cycle,
    in % of the pool) default to ``regime``'s; ``beta`` defaults to the preset's value
    for ``regime`` when the strategy has none of its own; ``window``, ``first``, ``sampling``,
    ``addendum`` and ``order_from`` default to the strategy's own (see
    :func:`bal.selection.strategy_options`). The selection rules see
    the rotation network's ``view``, or ``features`` (N, D) you give (one row per pool
    image), or the embedding of a pretrained torchvision ``backbone`` whose ``weights``
    file you have; normalised by ``feature_norm`` (``view`` and ``feature_norm`` default to
    the strategy's own, else the upright image, not normalised). Steps 1 and 2 run only for the
    strategies that read them (bal, pt4al, typiclust, probcover); with ``out_dir`` every
    step writes its files there (``out_dir/pretext`` for steps 1 and 2,
    ``out_dir/cycles`` for the cycles) and a second call resumes.
    """
    preset = (preset or generic_preset("arrays")).resolve(pool.images)
    augment = augment_for(preset)
    device = torch.device(device)
    options = {"beta": beta, "addendum": addendum, "window": window, "first": first, "sampling": sampling,
               "order_from": order_from}
    chosen = create_strategy(strategy, ignore_unknown=True, default_beta=preset.beta_for(regime),
                             **{k: v for k, v in options.items() if v is not None})
    if features is not None:
        features = check_matrix("features", features)
        if len(features) != len(pool):
            raise ParameterError("features", f"{{name}} has {len(features)} rows, one per pool image is {len(pool)}")
    elif backbone is not None or weights is not None:
        from bal.embedding.torchvision import embed_with_backbone

        if backbone is None or weights is None:
            raise ParameterError("backbone", "{name} and weights go together")
        features = embed_with_backbone(pool.images, backbone, weights, device=device, progress=progress)
    pretext = Pretext()
    if chosen.needs:
        pretext = build_pretext(pool, augment, net=net, config=rotation, seed=seed, device=device,
                                save=None if out_dir is None else Path(out_dir) / "pretext",
                                n_clusters=n_clusters, progress=progress, needs=chosen.needs,
                                view=view or chosen.view or "upright",
                                feature_norm=feature_norm or chosen.feature_norm or "none", features=features)
    budgets = budgets_from_percentages(list(percentages or regime_percentages(regime)), len(pool))
    return run_cycles(
        pool, test, strategy=chosen, budgets=budgets, pretext=pretext, train=train, augment=augment, net=net,
        warm_start=warm_start, seed=seed, out_dir=None if out_dir is None else Path(out_dir) / "cycles",
        device=device, progress=progress,
    )
