"""The one reader and writer of a pretext folder: what steps 1 and 2 leave behind.

A pretext folder (``bal rotation --save DIR``, ``SAVE/pretext`` of ``bal run``, a
benchmark's or a labelling project's pretext) holds, in the authors' names::

    rotation_config.json  the settings the folder is bound to (bal's)
    rotation_ckpt.pth     the last finished epoch, while training (bal's)
    rotation.pth          the rotation network (a model file, normalisation included)
    paths.txt             the pool, one image per line: the row order of the arrays below
    rotation_loss.npy     float32 (N,), mean cross-entropy over the four rotations
    features.npy          float32 (N, D), penultimate layer of the upright image
    features_mean.npy     float32 (N, D), the same averaged over the four rotations (bal's)
    features_random.npy   float32 (N, D), the same for one rotation per image, seeded (bal's)
    rotation.json         the settings and the rotation accuracy; written last, so it marks
                          step 1 finished
    cdd.npy               float64 (N,), CDD per line of paths.txt (step 2)
    unlabeled_pool.txt    every pool image once, CDD ascending (step 2)
    kmeans.json           step 2's settings; written last, so it marks step 2 finished

Every file is written atomically; readers check that the files agree with each other
and with the pool they are used for.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from bal.errors import BalError, ParameterError
from bal.files import atomic_save_npy, atomic_write_json, load_npy, read_json, read_lines, write_lines
from bal.models import load_model_file, save_model_file
from bal.selection.strategies import Pretext

__all__ = [
    "RotationResult", "kmeans_step", "load_pretext", "read_rotation", "read_sorted_pool", "write_cdd",
    "write_rotation",
]

log = logging.getLogger("bal")

ROTATION_FILES = ("rotation.json", "paths.txt", "features.npy", "rotation_loss.npy", "rotation.pth")


#: File of each embedded view (bal.pretext.features.VIEWS); ``features.npy`` is the authors'.
VIEW_FILES = {"upright": "features.npy", "mean": "features_mean.npy", "random": "features_random.npy"}


@dataclass
class RotationResult:
    """What step 1 leaves behind, in pool order (the order of ``paths``)."""

    paths: list[str]
    losses: np.ndarray  # float32 (N,), mean cross-entropy over the four rotations
    features: np.ndarray  # float32 (N, D), upright image, penultimate layer
    model: nn.Module
    views: dict[str, np.ndarray] = field(default_factory=dict)  # every view, "upright" included
    accuracy: float | None = None  # % of rotated pool images whose rotation is predicted right


def is_finished(folder: str | os.PathLike) -> bool:
    """Whether step 1 finished in ``folder`` (its marker file is there)."""
    return (Path(folder) / "rotation.json").exists()


def is_complete(folder: str | os.PathLike) -> bool:
    """Whether step 1 finished in ``folder`` and every file it wrote is still there.

    ``bal rotation`` trains again (seeded, so to the same network) when one was deleted:
    deleting a damaged ``rotation.pth`` and running the same command again repairs it.
    """
    return is_finished(folder) and all((Path(folder) / name).exists() for name in ROTATION_FILES)


def write_rotation(folder: Path, result: RotationResult, *, settings: dict, net: str, image_size: int,
                   normalisation: dict) -> None:
    """Write step 1's files; ``rotation.json`` last, so its presence means they are all complete."""
    write_lines(folder / "paths.txt", result.paths)
    _save_array(folder / "rotation_loss.npy", result.losses)
    views = {"upright": result.features, **result.views}
    for view, array in views.items():
        _save_array(folder / VIEW_FILES[view], array)
    save_model_file(folder / "rotation.pth", result.model, net=net, image_size=image_size,
                    normalisation=normalisation)
    atomic_write_json(folder / "rotation.json", {**settings, "rotation_accuracy": result.accuracy})


def _save_array(path: Path, array: np.ndarray) -> None:
    """Save ``array`` atomically; one streamed into a memory-mapped file of the same folder is flushed and renamed."""
    filename = getattr(array, "filename", None)
    # memmap filenames are absolute, `path` may be relative (bal bench's runs/pretexts): compare resolved
    if isinstance(array, np.memmap) and filename and Path(filename).resolve().parent == path.resolve().parent:
        array.flush()
        os.replace(filename, path)
    else:
        atomic_save_npy(path, array)


def read_rotation(folder: str | os.PathLike, *, pool_paths: Sequence[str] | None = None,
                  device="cpu") -> RotationResult:
    """Read a finished step 1 from ``folder``; with ``pool_paths``, check it is that pool's."""
    folder = Path(folder)
    missing = [n for n in ROTATION_FILES if not (folder / n).exists()]
    if missing:
        raise BalError(
            f"{folder} holds no finished rotation run (missing {', '.join(missing)}); "
            f"run `bal rotation --save {folder}` first"
        )
    paths = read_lines(folder / "paths.txt")
    if pool_paths is not None and paths != list(pool_paths):
        raise BalError(f"{folder / 'paths.txt'} lists other images than the dataset now holds; run `bal rotation` "
                       f"again")
    model, _ = load_model_file(folder / "rotation.pth", "delete it and run the same command again: the rotation "
                                                        "network is then trained again, with the same seed")
    # memory-mapped: a view is read when used (a million images x 512 features is 2 GiB a view)
    views = {v: load_npy(folder / f, f"rotation features ({v})", mmap=True) for v, f in VIEW_FILES.items()
             if v == "upright" or (folder / f).exists()}
    losses = load_npy(folder / "rotation_loss.npy", "rotation losses")
    for name, array in (("rotation_loss.npy", losses), ("features.npy", views["upright"])):
        if len(array) != len(paths):
            raise BalError(f"{folder / name} has {len(array)} rows but paths.txt {len(paths)} lines; the folder is "
                           f"damaged: run `bal rotation --save {folder}` into a new folder")
    return RotationResult(paths, losses, views["upright"], model.to(device),
                          views=views, accuracy=read_json(folder / "rotation.json").get("rotation_accuracy"))


def write_cdd(folder: Path, paths: Sequence[str], cdd: np.ndarray, order: np.ndarray, settings: dict) -> None:
    """Write step 2's files; ``kmeans.json`` last."""
    atomic_save_npy(folder / "cdd.npy", cdd)
    write_lines(folder / "unlabeled_pool.txt", [paths[i] for i in order])
    atomic_write_json(folder / "kmeans.json", settings)


def read_features(folder: str | os.PathLike, view: str = "upright") -> np.ndarray:
    """The pretext folder's features of ``view`` (rows in ``paths.txt`` order)."""
    from bal.pretext.features import check_view

    path = Path(folder) / VIEW_FILES[check_view(view)]
    if not path.exists() and view != "upright":
        raise BalError(f"{path} is missing: this pretext folder was written before bal kept the {view!r} view; "
                       f"run `bal rotation` into a new folder, or use --view upright")
    return load_npy(path, f"rotation features ({view})")


def kmeans_step(
    load: str | os.PathLike,
    *,
    n_clusters: int | None = None,
    algorithm: str = "auto",
    seed: int = 0,
    view: str = "upright",
    feature_norm: str = "none",
    features: np.ndarray | None = None,
    paths: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster the features of a finished step 1 in ``load``; write the CDD order there.

    The features are the folder's ``view`` or, when given, ``features`` (one row per line
    of ``paths.txt``: the user's own embedding or a backbone's), normalised by
    ``feature_norm`` (:mod:`bal.pretext.features`). Writes ``unlabeled_pool.txt`` (every
    pool image once, CDD ascending), ``cdd.npy`` (CDD per line of ``paths.txt``) and
    ``kmeans.json``; returns ``(cdd (N,), order (N,))``. ``n_clusters`` defaults to the
    number of classes the pool was read with. Given ``features``, their ``paths`` and
    ``n_clusters``, no step 1 is needed: ``load`` is only where the order is written.
    """
    from bal.pretext.features import cdd_order, normalise_features

    load = Path(load)
    if paths is None or features is None or n_clusters is None:
        if not is_finished(load):
            raise BalError(f"{load}: no finished rotation run there (no rotation.json); "
                           f"run `bal rotation --save {load}` first")
        settings = read_json(load / "rotation.json")
        if n_clusters is None and not isinstance(settings, dict) or not isinstance(settings.get("classes", []), list):
            raise BalError(f"{load / 'rotation.json'} was not written by bal rotation (no list of classes)")
        k = n_clusters if n_clusters is not None else len(settings.get("classes") or []) or 2
        paths = read_lines(load / "paths.txt")
    else:  # the user's or a pretrained network's rows, the paths they belong to: no rotation run needed
        k = n_clusters
        load.mkdir(parents=True, exist_ok=True)
    raw = features if features is not None else read_features(load, view)
    if len(paths) != len(raw):
        raise BalError(f"{load}: paths.txt has {len(paths)} lines but the features {len(raw)} rows")
    cdd, order = cdd_order(normalise_features(raw, feature_norm), k, seed=seed, algorithm=algorithm)
    source = "given" if features is not None else view
    write_cdd(load, paths, cdd, order, {"clusters": k, "algorithm": algorithm, "seed": seed, "features": source,
                                        "feature_norm": feature_norm})
    return cdd, order


def read_sorted_pool(path: str | os.PathLike, pool_paths: Sequence[str]) -> np.ndarray:
    """Pool indices in the order of a sorted list such as ``unlabeled_pool.txt``.

    Every pool image must appear exactly once; anything else is an error naming the
    file and the line.
    """
    path = Path(path)
    if not path.exists():
        raise BalError(f"the sorted pool list {path} does not exist; run `bal kmeans --load DIR` "
                       f"and pass DIR/unlabeled_pool.txt")
    index_of = {p: i for i, p in enumerate(pool_paths)}
    order, seen = [], set()
    for number, line in enumerate(read_lines(path), start=1):
        if line not in index_of:
            raise BalError(f"{path}, line {number}: {line!r} is not an image of the pool")
        if line in seen:
            raise BalError(f"{path}, line {number}: {line!r} is listed twice")
        seen.add(line)
        order.append(index_of[line])
    if len(order) != len(pool_paths):
        missing = [p for p in pool_paths if p not in seen]
        raise BalError(f"{path} lists {len(order)} images, but the pool holds {len(pool_paths)}; "
                       f"missing e.g. {missing[:3]}")
    return np.asarray(order, dtype=np.int64)


def load_pretext(folder: str | os.PathLike, pool_paths: Sequence[str], needs: frozenset[str],
                 sorted_path: str | os.PathLike | None = None, *, view: str = "upright",
                 feature_norm: str = "none", features: np.ndarray | None = None) -> Pretext:
    """The step-1/2 artifacts a strategy ``needs``, read from a pretext folder.

    Rows are put into pool order by path, so the folder may list the pool in any order.
    ``sorted_path`` replaces the folder's ``unlabeled_pool.txt`` (``--sorted_dataset_path``).
    The features are the folder's ``view``, or ``features`` when given (one row per pool
    image, in pool order), normalised by ``feature_norm``.
    """
    from bal.pretext.features import normalise_features

    folder = Path(folder)
    pretext = Pretext()
    if "order" in needs:
        if sorted_path is not None and not Path(sorted_path).exists():
            raise ParameterError("sorted_path", f"{{name}} {sorted_path} does not exist; run `bal kmeans --load DIR` "
                                                f"and pass DIR/unlabeled_pool.txt")
        pretext.order = read_sorted_pool(sorted_path or folder / "unlabeled_pool.txt", pool_paths)
    if "features" in needs and features is not None:
        pretext.features = normalise_features(features, feature_norm)
        needs = needs - {"features"}
    if needs & {"losses", "features"}:
        if not is_finished(folder):
            raise BalError(f"{folder}: no finished `bal rotation` there (it holds the features and losses "
                           f"this strategy needs); run `bal rotation --save {folder}`")
        rows = read_sorted_pool(folder / "paths.txt", pool_paths)  # row r of the arrays is pool image rows[r]
        where = np.empty_like(rows)
        where[rows] = np.arange(len(rows))
        if "losses" in needs:
            losses = load_npy(folder / "rotation_loss.npy", "rotation losses (PT4AL sorts by them)")
            if len(losses) != len(rows):
                raise BalError(f"{folder / 'rotation_loss.npy'} has {len(losses)} rows, paths.txt {len(rows)} lines")
            pretext.losses = losses[where]
        if "features" in needs:
            features = read_features(folder, view)
            if len(features) != len(rows):
                raise BalError(f"{folder / VIEW_FILES[view]} has {len(features)} rows, paths.txt {len(rows)} lines")
            pretext.features = normalise_features(features[where], feature_norm)
    return pretext
