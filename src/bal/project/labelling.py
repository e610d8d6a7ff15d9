"""A labelling project as active learning: a pool whose oracle is a person.

The project folder holds::

    DIR/project.db            images, labels, cycles, selections (see db.py); settings in meta
    DIR/cache/                the pool decoded once (bal.data's cache, keyed by files, sizes, mtimes)
    DIR/pretext/<digest>/     a pretext folder (bal.pretext.store), one per pool and pretext
                              settings: added images -> a new folder
    DIR/models/cycle-<id>.pth the task model fitted at that cycle (a model file, normalisation included)
    DIR/export.json           default Label Studio export

Nothing here decodes, trains or selects by itself: the pool is decoded by
:mod:`bal.data`, the pretext built by :mod:`bal.pretext`, a query is one
:func:`bal.loop.select_cycle` with any strategy of :mod:`bal.selection`, and a fit
is :func:`bal.engine.train_model`.

* **Query.** The pool is every image with status ``ok``. Cycle index ``q`` = the
  number of cycles that made a selection so far (cycles recorded by ``bal fit`` before
  any query select nothing and do not move the window). Sub-pool strategies need a
  planned number of cycles; with a budget ``K`` per query and ``N`` pool images it is
  ``n_planned = max(q + 1, ceil(N / K))``, so the windows slide along the whole order
  and later queries stay on the last window. The sub-pool unit A is ``K``. The first
  query (no fitted model yet) uses the strategy's cycle-0 rule; later ones score with
  the newest fitted model.
* **Fit.** Held-out split (``holdout`` = h): inside each class with n labels,
  ``m = min(n - 1, floor(h * n + 1/2))`` images are held out, those with the smallest
  ``derive_seed(seed, "holdout", path)``. So a class needs at least 2 labels (3 with the
  default h = 0.2) to contribute, every class keeps a training image, and the held-out
  images stay (mostly) the same from one fit to the next as labels grow. Held-out
  images are never trained on. No held-out image at all -> accuracy is null. Each fit
  trains a new model from a seeded initialisation (no warm start); the lr is divided by
  10 at 30/60/90 % of the epochs (the authors' 30/60/90 of 100).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bal.data.imageset import ImageSet
from bal.engine.trainer import TrainConfig
from bal.errors import BalError, DataError
from bal.engine.runtime import derive_seed
from bal.loop.pool import LabelledPool
from bal.project.db import ImageRow, Project
from bal.project.scan import check_pool_files
from bal.validation import check_real

__all__ = [
    "FIT_DEFAULTS", "PRETEXT_EPOCHS", "FitReport", "QueryReport", "fit", "holdout_split", "load_task_model",
    "planned_cycles", "query",
]

log = logging.getLogger("bal")

#: A project's task model: 30 epochs of batch 32 at lr 0.05 (a practitioner's few hundred labels),
#: the lr divided by 10 at 30/60/90 % of the epochs.
FIT_DEFAULTS = TrainConfig(epochs=30, batch_size=32, lr=0.05, milestones=(0.3, 0.6, 0.9))
#: Held-out fraction of each class's labels when fitting.
HOLDOUT = 0.2
#: Rotation pretext epochs of a project (PT4AL's authors: 15 is what they meant).
PRETEXT_EPOCHS = 15


def _digest(obj: object) -> str:
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- the pool, decoded -------------------------------------------------------------------
def pool_rows(project: Project) -> list[ImageRow]:
    """The images that can be selected and trained on: status ``ok``, in path order."""
    return project.images("ok")


def no_images_error(project: Project) -> BalError:
    counts = project.status_counts()
    extra = ""
    if counts:
        extra = f" ({counts.get('changed', 0)} changed, {counts.get('missing', 0)} missing)"
    return BalError(
        f"project {project.folder} holds no images to work on{extra}; add image files under "
        f"{project.images_root} and run `bal project scan {project.folder}`"
    )


def image_size(project: Project, rows: Sequence[ImageRow]) -> int:
    """The square side from the settings; inferred from the pool (and stored) when init had no images."""
    settings = project.settings()
    if settings.get("image_size"):
        return int(settings["image_size"])
    from bal.data import infer_image_size

    size = infer_image_size([str(project.absolute_path(r)) for r in rows])
    project.write_settings({**settings, "image_size": size})
    return size


def load_pool(project: Project, rows: Sequence[ImageRow], size: int, *, progress: bool = False) -> ImageSet:
    """The pool decoded (bal.data's cache, in ``DIR/cache``), as an ImageSet whose paths are the project's.

    Labels are all 0 here: the project's labels live in the database, and a cache keyed
    by them would be rebuilt at every label.
    """
    from bal.data.cache import load_split
    from bal.data.folders import FolderSplit

    root = project.images_root
    split = FolderSplit(str(root), [str(root / r.path) for r in rows], np.zeros(len(rows), dtype=np.int64),
                        project.classes)
    try:
        decoded = load_split(split, size, cache_dir=project.folder / "cache", progress=progress, desc="decode")
    except DataError as e:
        raise BalError(f"{e}\nfix or remove them and run `bal project scan {project.folder}`") from None
    return ImageSet(decoded.images, decoded.labels, [r.path for r in rows], project.classes)


def pool_augment(images: np.ndarray):
    """The batch transform for a project: mean and std measured on the pool, crop size/8, flips."""
    from bal.data import augment_for, generic_preset

    return augment_for(generic_preset("project").resolve(images))


def labelled_pool(project: Project, rows: Sequence[ImageRow]) -> LabelledPool:
    """The pool's labels as a :class:`LabelledPool` (the cycle each came from is not needed to select)."""
    pool = LabelledPool(len(rows))
    pool.label([i for i, r in enumerate(rows) if r.label is not None])
    return pool


# -- pretext -----------------------------------------------------------------------------
def pretext(project: Project, pool: ImageSet, rows: Sequence[ImageRow], augment, *, epochs: int, device,
            progress: bool = False):
    """Rotation features, losses and CDD order of the pool, built once per pool in ``DIR/pretext/<digest>``.

    The digest covers the pool (paths and hashes) and the pretext settings (net, size,
    seed, epochs), so adding images or changing ``--pretext-epochs`` trains a new pretext
    in a new sub-folder; a killed run resumes from its last epoch.
    """
    from bal.pretext import ROTATION_DEFAULTS, build_pretext

    settings = project.settings()
    classes = project.classes
    if len(rows) < len(classes):
        raise BalError(
            f"the pool holds {len(rows)} images, fewer than the {len(classes)} classes that k-means needs "
            f"as clusters; add images and run `bal project scan {project.folder}`"
        )
    size = int(pool.images.shape[1])
    digest = _digest(["pretext", [(r.path, r.sha256) for r in rows], settings["net"], size,
                      int(settings["seed"]), int(epochs)])[:16]
    config = replace(ROTATION_DEFAULTS, epochs=int(epochs))
    return build_pretext(pool, augment, net=settings["net"], config=config, seed=int(settings["seed"]),
                         device=device, save=project.folder / "pretext" / digest, progress=progress)


# -- models ------------------------------------------------------------------------------
def latest_fitted_cycle(project: Project) -> dict | None:
    """The newest cycle with a model, or None."""
    fitted = [c for c in project.cycles() if c["model_path"]]
    return fitted[-1] if fitted else None


def load_task_model(project: Project, cycle: dict):
    """(model, augment) of a fitted cycle, with the normalisation it was trained with."""
    from bal.data import BatchAugment
    from bal.models import load_model_file

    path = Path(cycle["model_path"])
    path = path if path.is_absolute() else project.folder / path
    if not path.is_file():
        raise BalError(f"the model of cycle {cycle['id']}, {path}, is missing; run `bal fit {project.folder}` again")
    model, state = load_model_file(path)
    return model, BatchAugment.from_state(state["normalisation"])


# -- query -------------------------------------------------------------------------------
@dataclass
class QueryReport:
    cycle_id: int
    q: int  # cycle index used for the window
    n_planned: int
    pool_size: int
    selected: list[ImageRow]
    info: dict  # the strategy's: rule, window, beta, addendum, ...
    model_cycle: int | None  # the fitted cycle whose model scored the pool
    unlabelled_before: int  # images of the previous selection still unlabelled


def planned_cycles(q: int, pool_size: int, budget: int) -> int:
    """``max(q + 1, ceil(N / K))``: windows cover the whole order, later queries use the last one."""
    return max(q + 1, -(-pool_size // budget))


def query(
    project: Project,
    budget: int,
    *,
    strategy,
    pretext_epochs: int = PRETEXT_EPOCHS,
    device="cpu",
    progress: bool = False,
) -> QueryReport:
    """Select the next ``budget`` images with ``strategy`` (a :class:`bal.selection.Strategy`) and record them."""
    import torch

    from bal.engine.trainer import predict
    from bal.loop.cycles import select_cycle
    from bal.selection import Pretext

    rows = pool_rows(project)
    if not rows:
        raise no_images_error(project)
    if budget < 1:
        raise BalError(f"--budget must be at least 1, got {budget}")
    labelled = labelled_pool(project, rows)
    n_unlabelled = len(rows) - labelled.n_labelled
    if n_unlabelled == 0:
        raise BalError(f"every one of the {len(rows)} images of the pool is labelled; nothing left to select "
                       f"(add images and run `bal project scan {project.folder}`)")
    if budget > n_unlabelled:
        raise BalError(f"--budget {budget} is more than the {n_unlabelled} unlabelled images of the pool")
    check_pool_files(project)
    device = torch.device(device)
    settings = project.settings()
    pool = load_pool(project, rows, image_size(project, rows), progress=progress)
    pre = Pretext()
    if strategy.needs:
        pre = pretext(project, pool, rows, pool_augment(pool.images), epochs=pretext_epochs, device=device,
                      progress=progress)

    q = sum(1 for c in project.cycles() if c["budget"] > 0)
    n_planned = planned_cycles(q, len(rows), budget)
    fitted = latest_fitted_cycle(project)
    outputs = None
    if fitted is not None:
        model, augment = load_task_model(project, fitted)
        images_t = torch.from_numpy(pool.images)

        def outputs(indices: np.ndarray):
            return predict(model, images_t, indices, augment, device=device, features=True, progress=progress,
                           desc="score")

    picked, info = select_cycle(strategy, labelled, q, [budget] * n_planned, pretext=pre, outputs=outputs,
                                seed=int(settings["seed"]), n_classes=len(project.classes))
    _, previous = project.current_selection()
    unlabelled_before = sum(1 for r in previous if r.label is None and r.status == "ok")
    selected = [rows[i] for i in picked]
    cycle_id = project.start_cycle(strategy.name, [r.id for r in selected])
    return QueryReport(cycle_id, q, n_planned, len(rows), selected, info,
                       None if fitted is None else fitted["id"], unlabelled_before)


# -- fit ---------------------------------------------------------------------------------
def holdout_split(items: Sequence[tuple[str, int]], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Positions (train, held out) of ``(path, class index)`` items; see the module docstring."""
    fraction = check_real("holdout", fraction, low=0, high=1, high_open=True)
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, (_, c) in enumerate(items):
        by_class[c].append(i)
    held: set[int] = set()
    for members in by_class.values():
        n = len(members)
        m = min(n - 1, math.floor(fraction * n + 0.5))
        if m > 0:
            ranked = sorted(members, key=lambda i: (derive_seed(seed, "holdout", items[i][0]), items[i][0]))
            held.update(ranked[:m])
    return [i for i in range(len(items)) if i not in held], sorted(held)


@dataclass
class FitReport:
    cycle_id: int
    model_path: str  # relative to the project folder
    metrics: dict
    created_cycle: bool


def fit(
    project: Project,
    *,
    train: TrainConfig = FIT_DEFAULTS,
    holdout: float = HOLDOUT,
    device="cpu",
    progress: bool = False,
) -> FitReport:
    """Train the task model on every label so far, evaluate on the held-out labels, save, record."""
    import torch

    from bal.engine.trainer import evaluate, train_model
    from bal.models import create_model, save_model_file

    holdout = check_real("holdout", holdout, low=0, high=1, high_open=True)
    rows = pool_rows(project)
    if not rows:
        raise no_images_error(project)
    classes = project.classes
    labelled = [(i, r) for i, r in enumerate(rows) if r.label is not None]
    if not labelled:
        raise BalError(f"project {project.folder} has no labels yet; label the images of the current selection "
                       f"(bal export / bal serve, then bal import) before `bal fit`")
    present = sorted({r.label for _, r in labelled})
    if len(present) < 2:
        log.warning("all %d labels are %r: the model can only learn one class; label other classes too",
                    len(labelled), present[0])
    check_pool_files(project)
    device = torch.device(device)
    settings = project.settings()
    seed = int(settings["seed"])
    size = image_size(project, rows)
    images = load_pool(project, rows, size, progress=progress).images
    augment = pool_augment(images)
    class_index = {c: k for k, c in enumerate(classes)}
    items = [(r.path, class_index[r.label]) for _, r in labelled]
    train_pos, held_pos = holdout_split(items, holdout, seed)
    labels = np.zeros(len(rows), dtype=np.int64)
    for i, r in labelled:
        labels[i] = class_index[r.label]
    train_idx = np.array([labelled[p][0] for p in train_pos], dtype=np.int64)
    held_idx = np.array([labelled[p][0] for p in held_pos], dtype=np.int64)

    cycle_id = max((c["id"] for c in project.cycles()), default=None)
    created = cycle_id is None
    if created:
        cycle_id = project.start_cycle("fit", [])
    config = train
    models = project.folder / "models"
    models.mkdir(parents=True, exist_ok=True)
    key = _digest(["fit", settings, [(rows[i].path, rows[i].sha256, int(labels[i])) for i in train_idx],
                   [config.epochs, config.batch_size, config.lr], list(augment.mean), list(augment.std)])[:16]
    checkpoint = models / f".fit-cycle-{cycle_id}-{key}.ckpt"
    for stale in models.glob(f".fit-cycle-{cycle_id}-*.ckpt"):
        if stale != checkpoint:
            stale.unlink(missing_ok=True)
    t0 = time.perf_counter()
    torch.manual_seed(derive_seed(seed, "fit-init", cycle_id))
    model = create_model(settings["net"], num_classes=len(classes), image_size=size)
    images_t = torch.from_numpy(images)
    train_model(model, images_t, torch.from_numpy(labels), train_idx, config, augment, device=device, seed=seed,
                stream=("fit", cycle_id), checkpoint=checkpoint, progress=progress, desc="fit")
    accuracy, per_class_acc = None, None
    if len(held_idx):
        acc, per_class = evaluate(model, torch.from_numpy(images[held_idx]), labels[held_idx], augment,
                                  len(classes), device=device)
        accuracy = float(acc)
        per_class_acc = {c: (None if np.isnan(v) else float(v)) for c, v in zip(classes, per_class)}
    rel = f"models/cycle-{cycle_id}.pth"
    save_model_file(project.folder / rel, model.cpu(), net=settings["net"], image_size=size, classes=list(classes),
                    normalisation=augment.state())
    counts = Counter(r.label for _, r in labelled)
    metrics = {
        "labelled": len(labelled), "trained_on": len(train_idx), "held_out": len(held_idx), "holdout": holdout,
        "accuracy": accuracy, "per_class_accuracy": per_class_acc,
        "per_class": {c: counts.get(c, 0) for c in classes},
        "epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    project.finish_cycle(cycle_id, rel, metrics)
    checkpoint.unlink(missing_ok=True)
    return FitReport(cycle_id, rel, metrics, created)
