"""The whole method on images already in memory, for Python users: :func:`active_learning`."""

from __future__ import annotations

import logging
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
from bal.embedding import EmbeddingChoice
from bal.engine.head import HeadConfig
from bal.engine.trainer import TrainConfig
from bal.errors import ParameterError
from bal.loop.cycles import TASK_MODELS, FinetuneTask, HeadTask, ScratchTask, TaskModel, run_cycles
from bal.pretext import ROTATION_DEFAULTS, build_pretext
from bal.selection import Pretext, create_strategy
from bal.validation import check_choice, check_matrix

__all__ = ["active_learning"]

log = logging.getLogger("bal")


def active_learning(
    pool: ImageSet,
    test: ImageSet,
    *,
    percentages: Sequence[float] | None = None,
    regime: str = DEFAULT_REGIME,
    strategy: str | None = None,
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
    embedding: str | None = None,
    features: np.ndarray | None = None,
    backbone: str | None = None,
    weights: str | os.PathLike | None = None,
    embedding_size: int | None = None,
    download: bool = False,
    task_model: str | None = None,
    head: HeadConfig = HeadConfig(),
    n_clusters: int | None = None,
    preset: Preset | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    out_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> list[dict]:
    """Run active learning on images in memory; returns one metrics dict per cycle.

    ``strategy`` defaults to bal's recommendation for this machine (:func:`bal.recommend.recommendation`):
    with the pretrained extra installed and no embedding, features or task model given, a rule on
    EfficientNet-Lite0's embedding with a linear head; otherwise :data:`bal.RECOMMENDED` on the
    rotation pretext with ``net`` trained from scratch (``task_model`` defaults to ``"scratch"``).
    Which one ran is logged. ``"bal"`` is the paper's method as ``bal train`` runs it.

    The pool's labels stand in for the annotator. ``percentages`` (new labels per cycle,
    in % of the pool) default to ``regime``'s; ``beta`` defaults to the preset's value
    for ``regime`` when the strategy has none of its own; ``window``, ``first``, ``sampling``,
    ``addendum`` and ``order_from`` default to the strategy's own (see
    :func:`bal.selection.strategy_options`). The selection rules see
    the rotation network's ``view``, or ``features`` (N, D) you give (one row per pool
    image), or a pretrained ``embedding`` (``efficientnet_lite0``, ``timm:NAME``,
    ``torchvision:NAME`` with ``weights``, at ``embedding_size``; :mod:`bal.embedding`;
    ``backbone`` is the older name of ``torchvision:NAME``); normalised by
    ``feature_norm`` (``view`` and ``feature_norm`` default to the strategy's own, else the
    upright image, not normalised). ``task_model="linear"`` trains a ``head`` on the frozen
    pretrained embedding each cycle instead of ``net`` on the images; ``task_model="finetune"`` trains
    the embedding's network with a new head on the images, with ``train`` (give it a small ``lr``;
    :mod:`bal.embedding.finetune`). Steps 1 and 2 run only for the
    strategies that read them (bal, pt4al, typiclust, probcover); with ``out_dir`` every
    step writes its files there (``out_dir/pretext`` for steps 1 and 2,
    ``out_dir/cycles`` for the cycles) and a second call resumes.
    """
    if strategy is None:
        from bal.recommend import PRETRAINED, SCRATCH, recommendation

        chosen_rec, why = recommendation()
        if features is not None or embedding is not None or backbone is not None or task_model is not None:
            named = EmbeddingChoice.named_kind({"embedding": embedding, "backbone": backbone})
            chosen_rec = PRETRAINED if named == "pretrained" else SCRATCH
            why = "bal's recommendation for the embedding given"
        else:
            embedding, task_model = chosen_rec.embedding, chosen_rec.task_model
            embedding_size = embedding_size or chosen_rec.embedding_size
        strategy = chosen_rec.strategy
        log.info("active_learning: %s (%s)", chosen_rec.describe(), why)
    task_model = task_model or "scratch"
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
    choice = EmbeddingChoice.from_flags(embedding, backbone=backbone, weights=None if weights is None else str(weights),
                                        size=embedding_size, download=download)
    if choice.kind == "file":
        raise ParameterError("embedding", "{name}: give the rows themselves as features=, not a file")
    if features is not None and choice.kind != "rotation":
        raise ParameterError("features", f"give {{name}} or embedding={choice.name!r}, not both")
    if features is None:
        features = choice.features(pool.images, device=device, progress=progress)
    check_choice("task_model", task_model, TASK_MODELS)
    task: TaskModel = ScratchTask(net)
    if task_model == "linear":
        if choice.kind != "pretrained":
            raise ParameterError("task_model", "{name} linear is a head on a pretrained embedding: give embedding=")
        task = HeadTask(features, choice.features(test.images, device=device, progress=progress, what="the test split"),
                        choice.name, head)
    if task_model == "finetune":
        if choice.kind != "pretrained":
            raise ParameterError("task_model", "{name} finetune trains a pretrained network: give embedding=")
        task = FinetuneTask(choice, features, head)
    pretext = Pretext()
    if chosen.needs:
        pretext = build_pretext(pool, augment, net=net, config=rotation, seed=seed, device=device,
                                save=None if out_dir is None else Path(out_dir) / "pretext",
                                n_clusters=n_clusters, progress=progress, needs=chosen.needs,
                                view=view or chosen.view or "upright",
                                feature_norm=feature_norm or chosen.feature_norm or "none", features=features)
    budgets = budgets_from_percentages(list(percentages or regime_percentages(regime)), len(pool))
    return run_cycles(
        pool, test, strategy=chosen, budgets=budgets, pretext=pretext, train=train, augment=augment,
        warm_start=warm_start, seed=seed, out_dir=None if out_dir is None else Path(out_dir) / "cycles",
        device=device, progress=progress, task=task,
    )
