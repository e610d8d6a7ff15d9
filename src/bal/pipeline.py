"""The three BAL steps wired together, for the command line and for Python.

``bal rotation``, ``bal kmeans`` and ``bal train`` each call one function here, and
:func:`active_learning` runs all three on arrays already in memory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bal.data import BatchAugment, ImageSet, load_dataset
from bal.errors import BalError
from bal.loop.cycles import CycleConfig, run_cycles
from bal.loop.state import read_json
from bal.loop.trainer import TrainConfig
from bal.presets import Preset, budgets_from_percentages, get_preset
from bal.pretext.rotation import ROTATION_DEFAULTS, train_rotation
from bal.selection import cluster_distance_difference, sort_by_cdd
from bal.selection.strategies import Pretext, make_strategy
from bal.utils import atomic_save_npy, atomic_write_json, read_lines, write_lines

log = logging.getLogger("bal")


@dataclass
class Dataset:
    """A dataset ready for training: decoded pool and test split, and its resolved preset."""

    pool: ImageSet
    test: ImageSet
    preset: Preset

    @property
    def augment(self) -> BatchAugment:
        return augment_for(self.preset)


def augment_for(preset: Preset) -> BatchAugment:
    return BatchAugment(preset.mean, preset.std, crop_padding=preset.crop_padding, hflip=preset.hflip)


def open_dataset(
    datapath: str | os.PathLike,
    dataset: str,
    *,
    image_size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    report_dir: str | os.PathLike | None = None,
) -> Dataset:
    """Decode ``DATAPATH/DATASET/{train,test}`` (cached) and resolve the dataset's preset.

    With ``skip_bad`` the images left out are listed in ``report_dir/skipped_images.txt``.
    """
    preset = get_preset(dataset)
    size = image_size or preset.image_size
    pool, test = load_dataset(
        datapath, dataset, image_size=size, cache_dir=cache_dir, skip_bad=skip_bad, progress=progress
    )
    skipped = list(pool.skipped) + list(test.skipped)
    if skipped:
        log.warning("left out %d unreadable files (--skip-bad-images)", len(skipped))
        if report_dir is not None:
            write_lines(Path(report_dir) / "skipped_images.txt", [f"{p}\t{why}" for p, why in skipped])
    if len(pool) == 0 or len(test) == 0:
        raise BalError(f"{Path(datapath) / dataset}: no readable images left in the train or test split")
    return Dataset(pool, test, preset.resolve(pool.images))


def images_from_arrays(
    images: np.ndarray,
    labels: Sequence[int],
    classes: Sequence[str] | None = None,
    paths: Sequence[str] | None = None,
) -> ImageSet:
    """Wrap in-memory images as an :class:`ImageSet`.

    images : uint8 (N, S, S, 3) or (N, S, S) grayscale, or float in [0, 1] of those shapes.
    labels : (N,) class indices in ``0 .. len(classes)-1``.
    paths : names used in the run files; default ``"0", "1", ...``.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.floating):
            raise BalError(f"images must be uint8 or float in [0, 1], got dtype {images.dtype}")
        images = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
        raise BalError(f"images must have shape (N, S, S, 3) or (N, S, S), got {images.shape}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(images),):
        raise BalError(f"labels must have shape ({len(images)},), got {labels.shape}")
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    classes = list(classes) if classes is not None else [str(i) for i in range(n_classes)]
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise BalError(f"labels must lie in 0..{len(classes) - 1} (one per class), got {labels.min()}..{labels.max()}")
    paths = [str(p) for p in paths] if paths is not None else [str(i) for i in range(len(images))]
    return ImageSet(np.ascontiguousarray(images), labels, paths, classes, [])


# -- step 2 ------------------------------------------------------------------------------
def kmeans_step(
    load: str | os.PathLike, *, n_clusters: int | None = None, algorithm: str = "kmeans", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster the features of a finished ``bal rotation`` run in ``load``; write the CDD order.

    Writes ``unlabeled_pool.txt`` (every pool image once, CDD ascending) and ``cdd.npy``
    (CDD per line of ``paths.txt``) into ``load``; returns ``(cdd (N,), order (N,))``.
    """
    load = Path(load)
    done = load / "rotation.json"
    if not done.exists():
        raise BalError(
            f"--load {load}: no finished rotation run there (no rotation.json); run `bal rotation --save {load}` first"
        )
    settings = read_json(done)
    k = n_clusters if n_clusters is not None else len(settings["classes"])
    features = np.load(load / "features.npy")
    paths = read_lines(load / "paths.txt")
    if len(paths) != len(features):
        raise BalError(f"{load}: paths.txt has {len(paths)} lines but features.npy {len(features)} rows")
    if not 2 <= k <= len(features):
        raise BalError(f"--clusters must be between 2 and the pool size {len(features)}, got {k}")
    cdd = cluster_distance_difference(features, k, seed=seed, algorithm=algorithm)
    order = sort_by_cdd(cdd)
    atomic_save_npy(load / "cdd.npy", cdd)
    write_lines(load / "unlabeled_pool.txt", [paths[i] for i in order])
    atomic_write_json(load / "kmeans.json", {"clusters": k, "algorithm": algorithm, "seed": seed})
    return cdd, order


def read_sorted_pool(path: str | os.PathLike, pool_paths: Sequence[str]) -> np.ndarray:
    """Pool indices in the order of a sorted list such as ``unlabeled_pool.txt``.

    Every pool image must appear exactly once; anything else is an error naming the
    line (``--sorted_dataset_path``).
    """
    path = Path(path)
    if not path.exists():
        raise BalError(
            f"--sorted_dataset_path {path} does not exist; run `bal kmeans --load DIR` "
            f"and pass DIR/unlabeled_pool.txt"
        )
    index_of = {p: i for i, p in enumerate(pool_paths)}
    order, seen = [], set()
    for number, line in enumerate(read_lines(path), start=1):
        if line not in index_of:
            raise BalError(f"--sorted_dataset_path {path}, line {number}: {line!r} is not an image of the pool")
        if line in seen:
            raise BalError(f"--sorted_dataset_path {path}, line {number}: {line!r} is listed twice")
        seen.add(line)
        order.append(index_of[line])
    if len(order) != len(pool_paths):
        missing = [p for p in pool_paths if p not in seen]
        raise BalError(
            f"--sorted_dataset_path {path} lists {len(order)} images, but the pool holds {len(pool_paths)}; "
            f"missing e.g. {missing[:3]}"
        )
    return np.asarray(order, dtype=np.int64)


def load_pretext(folder: str | os.PathLike, pool_paths: Sequence[str], needs: frozenset[str],
                 sorted_path: str | os.PathLike | None = None) -> Pretext:
    """The step-1/2 artifacts a strategy ``needs``, read from a ``bal rotation``/``bal kmeans`` folder.

    Rows are put into pool order by path, so the folder may list the pool in any order.
    """
    folder = Path(folder)
    pretext = Pretext()
    if "order" in needs:
        pretext.order = read_sorted_pool(sorted_path or folder / "unlabeled_pool.txt", pool_paths)
    if needs & {"losses", "features"}:
        paths_file = folder / "paths.txt"
        if not (folder / "rotation.json").exists():
            raise BalError(f"{folder}: no finished `bal rotation` there (it holds the features and losses "
                           f"this strategy needs); run `bal rotation --save {folder}`")
        rows = read_sorted_pool(paths_file, pool_paths)  # row r of the arrays is pool image rows[r]
        where = np.empty_like(rows)
        where[rows] = np.arange(len(rows))
        if "losses" in needs:
            pretext.losses = np.load(folder / "rotation_loss.npy")[where]
        if "features" in needs:
            pretext.features = np.load(folder / "features.npy")[where]
    return pretext


def subset(images: ImageSet, indices: Sequence[int]) -> ImageSet:
    """The images at ``indices`` (sorted), as a new :class:`ImageSet` with the same classes."""
    idx = np.sort(np.asarray(indices, dtype=np.int64))
    return ImageSet(images.images[idx], images.labels[idx], [images.paths[i] for i in idx],
                    list(images.classes), list(images.skipped))


def stratified_subset(images: ImageSet, size: int | None, seed: int = 0, what: str = "pool") -> ImageSet:
    """A class-stratified subset of ``size`` images fixed by ``seed`` (all images when ``size`` is None)."""
    if size is None or size == len(images):
        return images
    if not 0 < size < len(images):
        raise BalError(f"{what}_size must be between 1 and the {len(images)} images available, got {size}")
    from sklearn.model_selection import train_test_split

    idx, _ = train_test_split(np.arange(len(images)), train_size=size, stratify=images.labels, random_state=seed)
    return subset(images, idx)


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
    """Steps 1 and 2 in memory: rotation features and losses, and the CDD order of the pool.

    With ``save`` the rotation run is written there and reused (or resumed) next time;
    the k-means (K = ``n_clusters``, default the number of classes) takes seconds and is
    recomputed.
    """
    result = train_rotation(pool, augment, net=net, config=config, seed=seed, device=device, save=save,
                            progress=progress)
    k = n_clusters if n_clusters is not None else len(pool.classes)
    order = sort_by_cdd(cluster_distance_difference(result.features, k, seed=seed))
    return Pretext(features=result.features, losses=result.losses, order=order)


# -- everything, in memory -------------------------------------------------------------
def active_learning(
    pool: ImageSet,
    test: ImageSet,
    *,
    percentages: Sequence[float] = (10, 5, 5, 5, 5, 5, 5),
    strategy: str = "bal",
    net: str = "cnn",
    train: TrainConfig = TrainConfig(),
    rotation: TrainConfig = ROTATION_DEFAULTS,
    beta: float = 1.2,
    addendum: int | None = None,
    window: str = "centred",
    first: str = "high1st",
    sampling: str = "confidence",
    warm_start: bool = True,
    n_clusters: int | None = None,
    preset: Preset | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    out_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> list[dict]:
    """Run BAL (or another strategy) on images in memory; returns one metrics dict per cycle.

    The pool's labels stand in for the annotator. Steps 1 and 2 run only for the
    strategies that read them (bal, pt4al, typiclust); with ``out_dir`` every step writes its files there
    (``out_dir/pretext`` for step 1 and 2) and a second call resumes.
    """
    preset = (preset or Preset("arrays", None, None, None, None, True)).resolve(pool.images)
    augment = augment_for(preset)
    device = torch.device(device)
    pretext = Pretext()
    if make_strategy(strategy).needs:
        pretext = build_pretext(pool, augment, net=net, config=rotation, seed=seed, device=device,
                                save=None if out_dir is None else Path(out_dir) / "pretext",
                                n_clusters=n_clusters, progress=progress)
    cycle = CycleConfig(
        budgets=budgets_from_percentages(list(percentages), len(pool)),
        strategy=strategy, addendum=addendum, beta=beta, window=window, first=first,
        sampling=sampling, warm_start=warm_start, seed=seed,
    )
    cycles_dir = None if out_dir is None else Path(out_dir) / "cycles"
    return run_cycles(
        pool, test, pretext=pretext, cycle=cycle, train=train, augment=augment, net=net,
        out_dir=cycles_dir, device=device, progress=progress,
    )
