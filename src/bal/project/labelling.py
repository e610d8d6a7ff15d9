"""A labelling project as active learning: a pool whose oracle is a person.

The project folder holds::

    DIR/project.db            images, labels, cycles, selections (see db.py); settings in meta
    (the pool decoded once lives in bal's image cache, $BAL_CACHE_DIR or ~/.cache/bal, keyed by
    the files' content, where `bal cache list` shows it with every other)
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
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from bal.data.imageset import ImageSet
from bal.embedding import EmbeddingChoice
from bal.engine.head import HeadConfig
from bal.engine.runtime import derive_seed
from bal.engine.trainer import TrainConfig
from bal.errors import BalError, DataError
from bal.files import write_lines
from bal.loop.cycles import TASK_MODELS
from bal.loop.pool import LabelledPool
from bal.pretext.rotation import ROTATION_DEFAULTS
from bal.project.db import ImageRow, Project
from bal.project.scan import check_pool_files
from bal.selection.strategies import RECOMMENDED
from bal.validation import check_real

__all__ = [
    "FINETUNE_DEFAULTS", "FIT_DEFAULTS", "PRETEXT_EPOCHS", "FitReport", "QueryReport", "TaskModel", "fit",
    "holdout_split", "load_task_model", "planned_cycles", "predict_pool", "query",
]

log = logging.getLogger("bal")

#: The pretext batch of a project before the memory cap (the authors').
ROTATION_BATCH = ROTATION_DEFAULTS.batch_size
#: A project's task model: 30 epochs of batch 32 at lr 0.05 (a practitioner's few hundred labels),
#: the lr divided by 10 at 30/60/90 % of the epochs.
FIT_DEFAULTS = TrainConfig(epochs=30, batch_size=32, lr=0.05, milestones=(0.3, 0.6, 0.9))
#: A fine-tuned pretrained network (``--task_model finetune``): 10 epochs of batch 32 at lr 0.001, its
#: head starting from the linear probe. At lr 0.01 the pretrained features were wrecked (validation
#: split, CIFAR-10, 60 labels: 10 % against the probe's 56 %; at 0.001, 58 %; bal.embedding.finetune).
FINETUNE_DEFAULTS = TrainConfig(epochs=10, batch_size=32, lr=0.001, weight_decay=1e-4, milestones=(0.6, 0.9))
#: Held-out fraction of each class's labels when fitting.
HOLDOUT = 0.2
#: Below this many held-out images an accuracy is reported with a warning: with 20 images one
#: error moves it by 5 points, and a 95 % interval spans about +-20 points.
MIN_HELD_OUT = 20
#: The strategy of ``bal query`` when neither the flags nor the project's last query name one.
QUERY_STRATEGY = RECOMMENDED
#: Rotation pretext epochs of a project (PT4AL's authors: 15 is what they meant).
PRETEXT_EPOCHS = 15
#: Pixels of one training batch, rotations included: the authors' 256 images x 4 rotations at
#: 32 px. A larger image size gets a smaller batch, so the memory a step needs stays that of
#: CIFAR's (157 photos at 128 px in one batch of four rotations needed 9.6 GB).
BATCH_PIXELS = 256 * 4 * 32 * 32


def batch_for(batch_size: int, image_size: int, copies: int = 1) -> int:
    """``batch_size``, lowered so that ``copies`` (4 for rotations) x batch x S x S stays within BATCH_PIXELS."""
    return max(1, min(int(batch_size), BATCH_PIXELS // (copies * image_size * image_size)))


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
    """The square side from the settings; chosen (and stored) from the pool when init had no images."""
    settings = project.settings()
    if settings.get("image_size"):
        return int(settings["image_size"])
    from bal.data import choose_image_size, generic_preset

    size, why = choose_image_size([str(project.absolute_path(r)) for r in rows], preset=generic_preset("project"),
                                  net=settings["net"])
    log.info("image size %d px: %s; change it with bal project init --image-size", size, why)
    project.write_settings({**settings, "image_size": size})
    return size


def pool_split(project: Project, rows: Sequence[ImageRow]):
    """The pool as bal.data sees a folder split (labels all 0: the project's live in its database)."""
    from bal.data.folders import FolderSplit

    root = project.images_root
    return FolderSplit(str(root), [str(root / r.path) for r in rows], np.zeros(len(rows), dtype=np.int64),
                       project.classes)


def cached_pool(project: Project, rows: Sequence[ImageRow], size: int) -> np.ndarray | None:
    """The pool's decoded images if they are cached already (memory-mapped), else None: never decodes."""
    from bal.data.cache import cached_split

    found = cached_split(pool_split(project, rows), size)
    return None if found is None else found.images


def load_pool(project: Project, rows: Sequence[ImageRow], size: int, *, progress: bool = False) -> ImageSet:
    """The pool decoded (bal.data's cache, under ``$BAL_CACHE_DIR``), as an ImageSet whose paths are the project's.

    Labels are all 0 here: the project's labels live in the database, and a cache keyed
    by them would be rebuilt at every label.
    """
    from bal.data.cache import load_split

    try:
        decoded = load_split(pool_split(project, rows), size, progress=progress,
                             desc="decode")
    except DataError as e:
        raise BalError(f"{e}\nfix or remove them and run `bal project scan {project.folder}`") from None
    return ImageSet(decoded.images, decoded.labels, [r.path for r in rows], project.classes)


def pool_augment(project: Project, images: np.ndarray, normalisation: tuple | None = None):
    """The batch transform for a project: mean and std measured on the pool (one streaming pass), or
    ``normalisation`` (mean, std) when the network brings its own; crop padding size/8, horizontal flips
    unless the project was made with ``--no-flip``."""
    from bal.data import augment_for, generic_preset

    mean, std = normalisation or (None, None)
    preset = replace(generic_preset("project"), hflip=bool(project.settings().get("flip", True)), mean=mean, std=std)
    return augment_for(preset.resolve(images))


def labelled_pool(project: Project, rows: Sequence[ImageRow]) -> LabelledPool:
    """The pool's labels as a :class:`LabelledPool` (the cycle each came from is not needed to select)."""
    pool = LabelledPool(len(rows))
    pool.label([i for i, r in enumerate(rows) if r.label is not None])
    return pool


# -- pretext -----------------------------------------------------------------------------
def pretext(project: Project, pool: ImageSet, rows: Sequence[ImageRow], augment, *, epochs: int, batch_size: int,
            device, needs: frozenset[str], embedding: dict | None = None, progress: bool = False):
    """What the strategy ``needs`` of the rotation pretext and the CDD order of the pool, built once
    per pool in ``DIR/pretext/<digest>``.

    The digest covers the pool (paths and hashes) and the pretext settings (net, size,
    seed, epochs), so adding images or changing ``--pretext-epochs`` trains a new pretext
    in a new sub-folder; a killed run resumes from its last epoch. ``embedding`` chooses
    the features (``view``, ``feature_norm``, or ``features``: a .npy file with one row
    per line of ``DIR/pool.txt``, or ``backbone`` and ``weights``).
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
                      int(settings["seed"]), int(epochs), int(batch_size)])[:16]
    config = replace(ROTATION_DEFAULTS, epochs=int(epochs), batch_size=int(batch_size))
    embedding = dict(embedding or {})
    features = project_features(project, rows, EmbeddingChoice.from_settings(embedding), device=device,
                                progress=progress, decoded=pool)
    return build_pretext(pool, augment, net=settings["net"], config=config, seed=int(settings["seed"]),
                         device=device, save=project.folder / "pretext" / digest, progress=progress, needs=needs,
                         view=embedding.get("view") or "upright", feature_norm=embedding.get("feature_norm") or "none",
                         features=features)


def project_features(project: Project, rows: Sequence[ImageRow], choice, *, device, progress: bool = False,
                     decoded: ImageSet | None = None) -> np.ndarray | None:
    """The pool's rows under ``choice`` (None for rotation): a pretrained network sees the photos decoded
    at its own input size (cached like every decoded pool), not at the project's working size."""
    images = None
    if choice.kind == "pretrained":
        size = choice.input_size()
        images = (decoded.images if decoded is not None and int(decoded.images.shape[1]) == size
                  else load_pool(project, rows, size, progress=progress).images)
    return choice.features(images, n_rows=len(rows), device=device, progress=progress,
                           what=f"the pool of {project.folder} (listed in {project.folder / 'pool.txt'})")


# -- models ------------------------------------------------------------------------------
def latest_fitted_cycle(project: Project) -> dict | None:
    """The newest cycle with a model, or None."""
    fitted = [c for c in project.cycles() if c["model_path"]]
    return fitted[-1] if fitted else None


@dataclass
class TaskModel:
    """A fitted cycle's model: a network on the images (with its ``augment``) or a head on an embedding."""

    model: object
    augment: object | None = None  # BatchAugment of a network on the images
    size: int | None = None  # the side a fine-tuned network's images are decoded at (None: the project's)
    embedding: object | None = None  # EmbeddingChoice of a head

    def outputs(self, project: Project, rows: Sequence[ImageRow], size: int, *, device, progress: bool = False):
        """``outputs(indices) -> (logits, features)`` over the pool ``rows`` (see bal.loop.Outputs)."""
        from bal.engine.head import head_outputs
        from bal.engine.trainer import predict

        if self.embedding is not None:
            features = project_features(project, rows, self.embedding, device=device, progress=progress)
            return lambda indices: head_outputs(self.model, features, indices)
        images = load_pool(project, rows, self.size or size, progress=progress).images
        return lambda indices: predict(self.model, images, indices, self.augment, device=device, features=True,
                                       progress=progress, desc="score")


def load_task_model(project: Project, cycle: dict) -> TaskModel:
    """The model of a fitted cycle: a network with the normalisation it was trained with, or a head."""
    from bal.data import BatchAugment
    from bal.embedding.finetune import finetuned_from_file_content, is_finetuned_file
    from bal.files import load_torch
    from bal.models.head import head_from_file_content, is_head_file
    from bal.models.registry import model_from_file_content

    path = Path(cycle["model_path"])
    path = path if path.is_absolute() else project.folder / path
    redo = f"run `bal fit {project.folder}` to train the model again"
    if not path.is_file():
        raise BalError(f"the model of cycle {cycle['id']}, {path}, is missing; {redo}")
    saved = load_torch(path, "a task model of bal", f"delete it and {redo}", kind="model file")  # read once
    if is_head_file(saved):
        head, meta = head_from_file_content(saved, path, f"delete it and {redo}")
        return TaskModel(head, embedding=EmbeddingChoice.from_settings(meta["embedding"]))
    if is_finetuned_file(saved):
        choice = EmbeddingChoice.from_settings(saved.get("embedding") or {})
        model, meta = finetuned_from_file_content(saved, path, f"delete it and {redo}", choice.embedder())
        return TaskModel(model, augment=BatchAugment.from_state(meta["normalisation"]), size=int(meta["image_size"]))
    model, state = model_from_file_content(saved, path, f"delete it and {redo}")
    return TaskModel(model, augment=BatchAugment.from_state(state["normalisation"]))


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
    pretext_epochs: int | None = None,
    pretext_batch_size: int | None = None,
    retrain_pretext: bool = False,
    embedding: dict | None = None,
    device="cpu",
    progress: bool = False,
) -> QueryReport:
    """Select the next ``budget`` images with ``strategy`` (a :class:`bal.selection.Strategy`) and record them.

    The pretext's epochs and batch size are the project's (stored at its first query);
    a value given here that differs from them would train a new pretext, and is refused
    unless ``retrain_pretext``, with the cost of the last one said. Every stage is logged.
    """
    import torch

    from bal.loop.cycles import last_linear, select_cycle
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
    size = image_size(project, rows)
    stored = settings.get("pretext") or {}
    wanted = {"epochs": pretext_epochs or stored.get("epochs", PRETEXT_EPOCHS),
              "batch_size": pretext_batch_size or stored.get("batch_size",
                                                             batch_for(ROTATION_BATCH, size, copies=4))}
    changed = [f"--pretext-{k.replace('_', '-')} {wanted[k]} (the project's is {stored[k]})"
               for k in ("epochs", "batch_size") if k in stored and wanted[k] != stored[k]]
    if changed and strategy.needs and not retrain_pretext:
        cost = (f"; the last one took {settings['pretext_seconds'] / 60:.1f} min"
                if settings.get("pretext_seconds") else "")
        raise BalError(f"{' and '.join(changed)} would train a new pretext{cost}. Leave the flag out to keep the "
                       f"project's, or add --retrain-pretext to train a new one")
    from bal.data import default_cache_dir

    log.info("query: pool of %d images at %d px (cache in %s)", len(rows), size, default_cache_dir())
    pool = load_pool(project, rows, size, progress=progress)
    write_lines(project.folder / "pool.txt", [r.path for r in rows])  # the row order of a --features file
    pre = Pretext()
    if strategy.needs:
        batch = batch_for(wanted["batch_size"], size, copies=4)
        if batch < wanted["batch_size"]:
            log.info("query: pretext batch %d instead of %d at %d px, so a step's memory stays that of CIFAR's",
                     batch, wanted["batch_size"], size)
        log.info("query: rotation pretext (%s, %d epochs, batch %d) and CDD order, reused once trained",
                 settings["net"], wanted["epochs"], batch)
        t0 = time.perf_counter()
        embedding = {"view": strategy.view, "feature_norm": strategy.feature_norm,
                     **{k: v for k, v in (embedding or {}).items() if v is not None}}
        pre = pretext(project, pool, rows, pool_augment(project, pool.images), epochs=wanted["epochs"],
                      batch_size=batch, device=device, needs=strategy.needs, embedding=embedding, progress=progress)
        seconds = time.perf_counter() - t0
        new = {**settings, "pretext": wanted}
        if seconds > 5:  # a pretext trained now, not one read back
            new["pretext_seconds"] = round(seconds, 1)
        if new != settings:
            project.write_settings(new)

    q = sum(1 for c in project.cycles() if c["budget"] > 0)
    n_planned = planned_cycles(q, len(rows), budget)
    fitted = latest_fitted_cycle(project)
    outputs = classifier = None
    if fitted is not None:
        log.info("query: scoring with the model of cycle %d", fitted["id"])
        task = load_task_model(project, fitted)
        classifier = last_linear(task.model)
        outputs = task.outputs(project, rows, size, device=device, progress=progress)

    log.info("query: selecting %d of %d unlabelled images with %s", budget, n_unlabelled, strategy.name)
    picked, info = select_cycle(strategy, labelled, q, [budget] * n_planned, pretext=pre, outputs=outputs,
                                seed=int(settings["seed"]), n_classes=len(project.classes), classifier=classifier)
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
    task_model: str = "scratch",
    embedding: dict | None = None,
    head: HeadConfig | None = None,
    device="cpu",
    progress: bool = False,
) -> FitReport:
    """Train the task model on every label so far, evaluate on the held-out labels, save, record.

    ``task_model="scratch"`` trains the project's network on the images (``train``);
    ``"linear"`` fits a head (``head``, :mod:`bal.engine.head`) on the frozen pretrained
    ``embedding`` (settings as :meth:`bal.embedding.EmbeddingChoice.from_settings` reads them), seconds
    on a CPU once the embedding is cached; ``"finetune"`` trains that embedding's network on the images,
    its head starting from that linear probe (``train``, e.g. :data:`FINETUNE_DEFAULTS`;
    :mod:`bal.embedding.finetune`).
    """
    import torch

    from bal.embedding.finetune import finetune_net, save_finetuned
    from bal.engine.head import HeadConfig
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
    if task_model not in TASK_MODELS:
        raise BalError(f"--task_model must be one of {', '.join(TASK_MODELS)}, got {task_model!r}")
    choice = EmbeddingChoice.from_settings(embedding or {}) if task_model != "scratch" else None
    if choice is not None and choice.kind != "pretrained":
        what = "fits a head on" if task_model == "linear" else "trains"
        raise BalError(f"--task_model {task_model} {what} a pretrained embedding; give --embedding "
                       f"(efficientnet_lite0, timm:NAME, torchvision:NAME), not {choice.name}")
    if task_model == "finetune":  # decoded at the network's input side, as its embedding is
        size = choice.input_size()
    images = load_pool(project, rows, size, progress=progress).images if task_model != "linear" else None
    network = choice.embedder() if task_model == "finetune" else None  # it sees what it was pretrained on
    augment = (pool_augment(project, images, network and (network.mean, network.std))
               if task_model != "linear" else None)
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
    if task_model == "linear":
        return _fit_head(project, rows, labelled, labels, train_idx, held_idx, cycle_id, created, choice,
                         head, holdout, seed, device, progress)
    probe_config = head or HeadConfig()
    probe = None
    if task_model == "finetune":  # its head starts from the head `bal fit --task_model linear` would fit
        features = project_features(project, rows, choice, device=device, progress=progress)
        probe = _probe(features, labels, train_idx, len(classes), probe_config, seed, cycle_id)
    config = replace(train, batch_size=batch_for(train.batch_size, size))
    models = project.folder / "models"
    models.mkdir(parents=True, exist_ok=True)
    key = _digest(["fit", settings, [(rows[i].path, rows[i].sha256, int(labels[i])) for i in train_idx],
                   [config.epochs, config.batch_size, config.lr], list(augment.mean), list(augment.std),
                   choice.settings() if choice is not None else None,
                   None if probe is None else ["probe", asdict(probe_config)]])[:16]
    checkpoint = models / f".fit-cycle-{cycle_id}-{key}.ckpt"
    for stale in models.glob(f".fit-cycle-{cycle_id}-*.ckpt"):
        if stale != checkpoint:
            stale.unlink(missing_ok=True)
    t0 = time.perf_counter()
    torch.manual_seed(derive_seed(seed, "fit-init", cycle_id))
    if choice is not None:  # finetune: the pretrained network, the probe as its head
        model = finetune_net(network, len(classes), probe)
    else:
        model = create_model(settings["net"], num_classes=len(classes), image_size=size)
    train_model(model, images, torch.from_numpy(labels), train_idx, config, augment, device=device, seed=seed,
                stream=("fit", cycle_id), checkpoint=checkpoint, progress=progress, desc="fit")
    accuracy, per_class_acc = None, None
    if len(held_idx):
        acc, per_class = evaluate(model, images[held_idx], labels[held_idx], augment,
                                  len(classes), device=device)
        accuracy = float(acc)
        per_class_acc = per_class
    rel = f"models/cycle-{cycle_id}.pth"
    if choice is not None:
        save_finetuned(project.folder / rel, model.cpu(), classes=list(classes), embedding=choice.settings(),
                       normalisation=augment.state(), image_size=size)
    else:
        save_model_file(project.folder / rel, model.cpu(), net=settings["net"], image_size=size,
                        classes=list(classes), normalisation=augment.state())
    metrics = {**_fit_metrics(project, labelled, labels, train_idx, held_idx, holdout, accuracy, per_class_acc),
               "task_model": task_model, **({"embedding": choice.describe()} if choice is not None else {}),
               "epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
               "seconds": round(time.perf_counter() - t0, 2)}
    project.finish_cycle(cycle_id, rel, metrics)
    checkpoint.unlink(missing_ok=True)
    return FitReport(cycle_id, rel, metrics, created)


def _fit_metrics(project: Project, labelled, labels, train_idx, held_idx, holdout, accuracy, per_class_acc) -> dict:
    """What a fit reports, whatever its task model: counts, the held-out accuracy (and per class, an
    array with NaN for a class without held-out images) and its warnings."""
    classes = project.classes
    if per_class_acc is not None:
        per_class_acc = {c: (None if np.isnan(v) else float(v)) for c, v in zip(classes, per_class_acc)}
    counts = Counter(r.label for _, r in labelled)
    held_counts = Counter(classes[int(labels[i])] for i in held_idx)
    warnings = []
    if len(held_idx) and len(held_idx) < MIN_HELD_OUT:
        warnings.append(f"only {len(held_idx)} held-out images (fewer than {MIN_HELD_OUT}): one error moves the "
                        f"accuracy by {100 / len(held_idx):.0f} points; label more, or raise --holdout")
    if len(held_idx) and len(held_counts) < len(classes):
        missing = [c for c in classes if not held_counts.get(c)]
        warnings.append(f"no held-out image of {', '.join(missing)}: the accuracy says nothing about "
                        f"{'that class' if len(missing) == 1 else 'those classes'}")
    return {
        "labelled": len(labelled), "trained_on": len(train_idx), "held_out": len(held_idx), "holdout": holdout,
        "held_out_per_class": {c: held_counts.get(c, 0) for c in classes}, "warnings": warnings,
        "accuracy": accuracy, "per_class_accuracy": per_class_acc,
        "per_class": {c: counts.get(c, 0) for c in classes},
    }


def _probe(features, labels, train_idx, n_classes, config, seed, cycle_id):
    """The head on the embedding rows of ``train_idx``, from the fit's stream: ``bal fit --task_model linear``'s
    model, and the probe ``finetune`` starts from (the same head, for the same labels and cycle)."""
    from bal.engine.head import fit_head

    return fit_head(features, labels, train_idx, classes=n_classes, config=config, seed=seed, stream=("fit", cycle_id))


def _fit_head(project, rows, labelled, labels, train_idx, held_idx, cycle_id, created, choice, head, holdout, seed,
              device, progress) -> FitReport:
    """``bal fit --task_model linear``: a head on the cached embedding, saved with the embedding's settings."""
    from bal.engine.head import HeadConfig, head_outputs
    from bal.engine.trainer import accuracy_of
    from bal.models.head import save_head

    classes = project.classes
    features = project_features(project, rows, choice, device=device, progress=progress)
    t0 = time.perf_counter()
    config = head or HeadConfig()
    model = _probe(features, labels, train_idx, len(classes), config, seed, cycle_id)
    accuracy, per_class_acc = None, None
    if len(held_idx):
        logits, _ = head_outputs(model, features, held_idx)
        acc, per_class = accuracy_of(logits, labels[held_idx], len(classes))
        accuracy = float(acc)
        per_class_acc = per_class
    rel = f"models/cycle-{cycle_id}.pth"
    (project.folder / "models").mkdir(parents=True, exist_ok=True)
    save_head(project.folder / rel, model, classes=list(classes),
              embedding=choice.settings())
    metrics = {**_fit_metrics(project, labelled, labels, train_idx, held_idx, holdout, accuracy, per_class_acc),
               "task_model": "linear", "embedding": choice.describe(), "C": config.C, "hidden": config.hidden,
               "seconds": round(time.perf_counter() - t0, 2)}
    project.finish_cycle(cycle_id, rel, metrics)
    return FitReport(cycle_id, rel, metrics, created)


# -- predict -----------------------------------------------------------------------------
@dataclass
class Prediction:
    row: ImageRow
    label: str  # the class the model gives
    confidence: float  # its softmax probability


def predict_pool(project: Project, *, device="cpu", progress: bool = False) -> tuple[int, list[Prediction]]:
    """The newest fitted model's class and confidence for every unlabelled image of the pool (status ok).

    Returns the fitted cycle's id and the predictions, in pool order.
    """
    import torch

    rows = pool_rows(project)
    if not rows:
        raise no_images_error(project)
    fitted = latest_fitted_cycle(project)
    if fitted is None:
        raise BalError(f"project {project.folder} has no fitted model yet; run `bal fit {project.folder}` first")
    check_pool_files(project)
    task = load_task_model(project, fitted)
    outputs = task.outputs(project, rows, image_size(project, rows), device=torch.device(device), progress=progress)
    todo = np.array([i for i, r in enumerate(rows) if r.label is None], dtype=np.int64)
    if not len(todo):
        return fitted["id"], []
    logits = np.asarray(outputs(todo)[0], dtype=np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    best = p.argmax(1)
    return fitted["id"], [Prediction(rows[i], project.classes[int(k)], float(p[j, k]))
                          for j, (i, k) in enumerate(zip(todo, best))]
