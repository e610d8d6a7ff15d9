"""The labelling workflow on a project folder: init, scan, query, export, import, fit, status.

Everything here works on a :class:`~bal.project.db.Project` and returns plain data;
:mod:`bal.project.commands` parses the flags and prints. The project folder holds::

    DIR/project.db            images, labels, cycles, selections (see db.py); settings in meta
    DIR/cache/<key>.npy       the pool decoded once (uint8, N x S x S x 3), keyed by paths and hashes
    DIR/pretext/<digest>/     rotation pretext (bal rotation's files) and order.npy (CDD ascending),
                              one folder per pool (and pretext settings): added images -> new folder
    DIR/models/cycle-<id>.pth the task model fitted at that cycle (bal's run-folder layout, plus
                              the normalisation it was trained with)
    DIR/export.json           default Label Studio export

Rules the commands follow (all of them documented in ``bal COMMAND --help`` as well):

* **Images.** Every file under the images folder whose extension is one of
  :data:`bal.data.IMAGE_EXTENSIONS` (any case), in any sub-folder; hidden files and hidden
  folders (name starting with ".") are ignored, and so is the project folder itself when it
  lies inside the images folder. Paths are stored relative to the images folder,
  '/'-separated. A file whose first path component is a class name (``FOLDER/cat/x.jpg``,
  exact spelling) is labelled with that class, source ``folder``, when it is first seen
  (by ``init`` or by ``scan``).
* **Scan.** An image whose size or mtime differ from the database is hashed again: the
  same sha256 only refreshes size and mtime; another sha256 marks it ``changed`` (its row,
  hash and labels stay, it leaves the pool). A vanished file becomes ``missing`` (labels
  stay). A changed or missing image whose original content is back returns to ``ok``.
  ``accept_changed`` takes the new content of every changed image as the image (keeps
  its labels).
* **Query.** The pool is every image with status ``ok``. Cycle index ``q`` = the number of
  cycles that made a selection so far (cycles recorded by ``bal fit`` before any query
  select nothing and do not move the window). BAL's windows need a planned number of
  cycles; with a budget ``K`` per query and ``N`` pool images it is
  ``n_planned = max(q + 1, ceil(N / K))``, so the windows slide along the whole CDD order
  and later queries stay on the last window. The sub-pool unit A is ``K``. The first
  query (no fitted model yet) takes ``high1st`` over the window; later ones the least
  confident images of the window under the newest fitted model.
* **Fit.** Held-out split (``holdout`` = h): inside each class with n labels,
  ``m = min(n - 1, floor(h * n + 1/2))`` images are held out, those with the smallest
  ``derive_seed(seed, "holdout", path)``. So a class needs at least 2 labels (3 with the
  default h = 0.2) to contribute, every class keeps a training image, and the held-out
  images stay (mostly) the same from one fit to the next as labels grow. Held-out images
  are never trained on. No held-out image at all -> accuracy is null. Each fit trains a
  new model from a seeded initialisation (no warm start); the lr is divided by 10 at
  30/60/90 % of the epochs (the authors' 30/60/90 of 100).
* **Label Studio.** Tasks point at ``/data/local-files/?d=<absolute path, URL-quoted>``:
  start Label Studio with ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and
  ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` set to the images folder or one of its
  parents, and add a "Local files" storage for the images folder to the Label Studio
  project (no sync needed). Use a labelling config with one ``<Choices>`` over the
  project's classes. Import reads each task's ``data.bal_path`` (or, failing that,
  recovers the path from ``data.image``) and the first choice of the last annotation
  that was not cancelled.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import posixpath
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import numpy as np

from bal.errors import BalError
from bal.project.db import DB_NAME, ImageRow, Project, file_sha256, now
from bal.utils import atomic_save_npy, atomic_write_text, derive_seed

log = logging.getLogger("bal")

SETTINGS_KEY = "settings"
DEFAULT_SETTINGS = {"net": "cnn", "image_size": None, "seed": 0}
LABEL_STUDIO_PREFIX = "/data/local-files/?d="
#: Bump when the pool cache's content changes for the same key.
POOL_CACHE_VERSION = 1


def _digest(obj: object) -> str:
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _progress(iterable, progress: bool, desc: str, total: int | None = None):
    if not progress:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit="img", leave=False)


# -- settings ----------------------------------------------------------------------------
def read_settings(project: Project) -> dict:
    row = project.conn.execute("SELECT value FROM meta WHERE key = ?", (SETTINGS_KEY,)).fetchone()
    return {**DEFAULT_SETTINGS, **(json.loads(row[0]) if row else {})}


def _write_settings(cur, settings: dict) -> None:
    cur.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (SETTINGS_KEY, json.dumps(settings, sort_keys=True)))


def check_net(net: str) -> None:
    from bal.models import list_models

    if net not in list_models():
        raise BalError(f"--net {net!r} is not a network bal knows; choose one of {', '.join(list_models())}")


# -- files -------------------------------------------------------------------------------
def list_image_files(root: str | os.PathLike, skip: str | os.PathLike | None = None) -> list[str]:
    """Relative, '/'-separated paths of every image file under ``root``, sorted.

    Hidden files and folders are ignored; ``skip`` (a folder, e.g. the project folder when
    it lies inside the images folder) is not entered. Symlinked folders are followed once.
    """
    from bal.data.folders import IMAGE_EXTENSIONS  # bal.data imports torch: only when scanning

    root = os.fspath(root)
    skip_real = os.path.realpath(skip) if skip is not None else None
    seen: set[str] = set()
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen or real == skip_real:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            rel = name if rel_dir == os.curdir else os.path.join(rel_dir, name)
            out.append(rel.replace(os.sep, "/"))
    return sorted(out)


def folder_label(path: str, classes: Sequence[str]) -> str | None:
    """The class of an image sorted into a class folder (first path component), else None."""
    parts = path.split("/")
    return parts[0] if len(parts) > 1 and parts[0] in classes else None


@dataclass(frozen=True)
class FileRecord:
    path: str
    sha256: str
    size: int
    mtime_ns: int


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _record(root: Path, rel: str) -> FileRecord | str:
    """The file's record, or the reason it cannot be read."""
    path = root / rel
    try:
        st = os.stat(path)
        sha = file_sha256(path)
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    return FileRecord(rel, sha, st.st_size, st.st_mtime_ns)


def _insert_images(cur, records: Sequence[FileRecord], classes: Sequence[str]) -> Counter:
    """Insert new images and their class-folder labels (inside a transaction); labels per class."""
    stamp = now()
    cur.executemany("INSERT INTO images (path, sha256, size, mtime_ns, added_at) VALUES (?, ?, ?, ?, ?)",
                    [(r.path, r.sha256, r.size, r.mtime_ns, stamp) for r in records])
    labelled: Counter = Counter()
    class_ids = {name: cid for cid, name in cur.execute("SELECT id, name FROM classes").fetchall()}
    rows = []
    for r in records:
        label = folder_label(r.path, classes)
        if label is not None:
            image_id = cur.execute("SELECT id FROM images WHERE path = ?", (r.path,)).fetchone()[0]
            rows.append((image_id, class_ids[label], "folder", stamp))
            labelled[label] += 1
    cur.executemany("INSERT INTO labels (image_id, class_id, source, created_at) VALUES (?, ?, ?, ?)", rows)
    return labelled


# -- init --------------------------------------------------------------------------------
@dataclass
class InitReport:
    n_images: int
    labelled: Counter  # class -> images labelled from class folders
    image_size: int | None
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def init_project(
    folder: str | os.PathLike,
    images: str | os.PathLike,
    classes: Sequence[str],
    *,
    net: str = "cnn",
    image_size: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[Project, InitReport]:
    """Create the project in ``folder`` over the images folder ``images``; scan and hash every image."""
    folder, images = Path(folder), Path(images)
    if (folder / DB_NAME).exists():
        raise BalError(f"{folder} already holds a project ({DB_NAME}); use `bal project scan {folder}`")
    if folder.exists() and not folder.is_dir():
        raise BalError(f"project folder {folder} exists and is not a folder")
    if not images.exists():
        raise BalError(f"--images {images}: no such folder")
    if not images.is_dir():
        raise BalError(f"--images {images} is not a folder")
    check_net(net)
    if image_size is not None and image_size < 8:
        raise BalError(f"--image-size must be at least 8 pixels, got {image_size}")
    names = [c.strip() for c in classes]
    paths = list_image_files(images, skip=folder)
    records: list[FileRecord] = []
    unreadable: list[tuple[str, str]] = []
    for rel in _progress(paths, progress, "hash"):
        rec = _record(images, rel)
        (records.append(rec) if isinstance(rec, FileRecord) else unreadable.append((rel, rec)))
    if image_size is None and records:
        from bal.data import infer_image_size

        image_size = infer_image_size([str(images / r.path) for r in records])
    project = Project.create(folder, images, names)
    with project.transaction() as cur:
        _write_settings(cur, {"net": net, "image_size": image_size, "seed": int(seed)})
        labelled = _insert_images(cur, records, project.classes)
    return project, InitReport(len(records), labelled, image_size, unreadable)


# -- scan --------------------------------------------------------------------------------
@dataclass
class ScanReport:
    added: list[str] = field(default_factory=list)
    added_labelled: Counter = field(default_factory=Counter)
    changed: list[str] = field(default_factory=list)  # now changed (newly or still)
    missing: list[str] = field(default_factory=list)  # now missing (newly or still)
    returned: list[str] = field(default_factory=list)  # changed/missing before, ok again
    accepted: list[str] = field(default_factory=list)  # changed images taken as they are now
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # new files that could not be read
    labels_kept: int = 0  # current labels on changed or missing images


def scan_project(project: Project, *, accept_changed: bool = False, progress: bool = False) -> ScanReport:
    """Bring the database up to date with the images folder (see the module docstring)."""
    root = project.images_root
    if not root.is_dir():
        raise BalError(f"the images folder {root} of project {project.folder} does not exist (moved or unmounted?)")
    on_disk = set(list_image_files(root, skip=project.folder))
    known = {r["path"]: r for r in project.conn.execute("SELECT id, path, sha256, size, mtime_ns, status FROM images")}
    report = ScanReport()
    updates: list[tuple[str, str, int, int, int]] = []  # (status, sha256, size, mtime_ns, id)
    for path, row in _progress(sorted(known.items()), progress, "scan"):
        old = (row["status"], row["sha256"], row["size"], row["mtime_ns"])
        st = _stat(root / path) if path in on_disk else None
        if st is None:
            new = ("missing", *old[1:])
        elif st == (row["size"], row["mtime_ns"]):
            new = ("ok", *old[1:])
        else:
            rec = _record(root, path)
            if isinstance(rec, str):
                new = ("missing", *old[1:])
            elif rec.sha256 == row["sha256"]:
                new = ("ok", rec.sha256, rec.size, rec.mtime_ns)
            elif accept_changed:
                new = ("ok", rec.sha256, rec.size, rec.mtime_ns)
                report.accepted.append(path)
            else:
                new = ("changed", *old[1:])
        if new[0] == "ok" and old[0] != "ok" and path not in report.accepted:
            report.returned.append(path)
        elif new[0] == "changed":
            report.changed.append(path)
        elif new[0] == "missing":
            report.missing.append(path)
        if new != old:
            updates.append((*new, row["id"]))
    records = []
    for rel in _progress(sorted(on_disk - set(known)), progress, "hash"):
        rec = _record(root, rel)
        (records.append(rec) if isinstance(rec, FileRecord) else report.unreadable.append((rel, rec)))
    with project.transaction() as cur:
        cur.executemany("UPDATE images SET status = ?, sha256 = ?, size = ?, mtime_ns = ? WHERE id = ?", updates)
        report.added_labelled = _insert_images(cur, records, project.classes)
    report.added = [r.path for r in records]
    report.labels_kept = sum(1 for r in project.images(None) if r.status != "ok" and r.label is not None)
    return report


# -- the pool, decoded -------------------------------------------------------------------
def pool_rows(project: Project) -> list[ImageRow]:
    """The images that can be selected and trained on: status ``ok``, in path order."""
    return project.images("ok")


def _no_images_error(project: Project) -> BalError:
    counts = dict(project.conn.execute("SELECT status, COUNT(*) FROM images GROUP BY status").fetchall())
    extra = ""
    if counts:
        extra = f" ({counts.get('changed', 0)} changed, {counts.get('missing', 0)} missing)"
    return BalError(
        f"project {project.folder} holds no images to work on{extra}; add image files under "
        f"{project.images_root} and run `bal project scan {project.folder}`"
    )


def check_pool_files(project: Project) -> None:
    """Refuse to decode when pool files changed or vanished since the last scan."""
    root = project.images_root
    stale = [r["path"] for r in project.conn.execute("SELECT path, size, mtime_ns FROM images WHERE status = 'ok'")
             if _stat(root / r["path"]) != (r["size"], r["mtime_ns"])]
    if stale:
        shown = "\n".join(f"  {p}" for p in stale[:20])
        if len(stale) > 20:
            shown += f"\n  ... and {len(stale) - 20} more"
        raise BalError(
            f"{len(stale)} image file(s) under {root} changed or vanished since the last scan; "
            f"run `bal project scan {project.folder}` first:\n{shown}"
        )


def image_size(project: Project, rows: Sequence[ImageRow]) -> int:
    """The square side from the settings; inferred from the pool (and stored) when init had no images."""
    settings = read_settings(project)
    if settings.get("image_size"):
        return int(settings["image_size"])
    from bal.data import infer_image_size

    size = infer_image_size([str(project.absolute_path(r)) for r in rows])
    with project.transaction() as cur:
        _write_settings(cur, {**settings, "image_size": size})
    return size


def load_pool(project: Project, rows: Sequence[ImageRow], size: int, *, progress: bool = False) -> np.ndarray:
    """Every pool image as uint8 (N, S, S, 3), decoded once and cached in ``DIR/cache``.

    The cache key hashes the size and each image's path and sha256, so new, accepted or
    removed images give a new file; older cache files are deleted.
    """
    from bal.data import decode_image
    from bal.data.cache import ImageDecodeError

    key = _digest(["pool", POOL_CACHE_VERSION, int(size), [(r.path, r.sha256) for r in rows]])[:24]
    cache = project.folder / "cache"
    npy = cache / f"{key}.npy"
    if npy.is_file():
        try:
            arr = np.load(npy, allow_pickle=False)
            if arr.dtype == np.uint8 and arr.shape == (len(rows), size, size, 3):
                return arr
        except Exception:  # unreadable or removed meanwhile: decode again
            pass
    out = np.zeros((len(rows), size, size, 3), dtype=np.uint8)
    bad: list[tuple[str, str]] = []
    for i, r in enumerate(_progress(rows, progress, "decode")):
        try:
            out[i] = decode_image(str(project.absolute_path(r)), size)
        except ImageDecodeError as e:
            bad.append((r.path, e.reason))
    if bad:
        lines = "\n".join(f"  {p}: {why}" for p, why in bad)
        raise BalError(
            f"{len(bad)} image file(s) under {project.images_root} cannot be decoded; fix or remove them "
            f"and run `bal project scan {project.folder}`:\n{lines}"
        )
    atomic_save_npy(npy, out)
    for old in cache.glob("*.npy"):
        if old != npy:
            old.unlink(missing_ok=True)
    return out


def pool_augment(images: np.ndarray):
    """The batch transform for a project: mean and std measured on the pool, crop size/8, flips."""
    from bal.pipeline import augment_for
    from bal.presets import Preset

    return augment_for(Preset("project", None, None, None, None, True).resolve(images))


def _scaled_milestones(epochs: int, fractions: Sequence[float]) -> tuple[int, ...]:
    return tuple(sorted({m for m in (math.floor(f * epochs + 0.5) for f in fractions) if 1 <= m < epochs}))


# -- pretext and CDD ---------------------------------------------------------------------
def pretext_order(
    project: Project,
    rows: Sequence[ImageRow],
    images: np.ndarray,
    augment,
    *,
    epochs: int,
    device,
    progress: bool = False,
) -> np.ndarray:
    """Pool indices sorted by CDD ascending, computed once per pool in ``DIR/pretext/<digest>``.

    The digest covers the pool (paths and hashes) and the pretext settings (net, size,
    seed, epochs), so adding images or changing ``--pretext-epochs`` trains a new pretext
    in a new sub-folder; a killed run resumes from its last epoch (``train_rotation``).
    """
    from bal.data import ImageSet
    from bal.loop.trainer import TrainConfig
    from bal.pretext.rotation import ROTATION_DEFAULTS, train_rotation
    from bal.selection import cluster_distance_difference, sort_by_cdd

    settings = read_settings(project)
    classes = project.classes
    if len(rows) < len(classes):
        raise BalError(
            f"the pool holds {len(rows)} images, fewer than the {len(classes)} classes that k-means needs "
            f"as clusters; add images and run `bal project scan {project.folder}`"
        )
    size = int(images.shape[1])
    digest = _digest(["pretext", [(r.path, r.sha256) for r in rows], settings["net"], size,
                      int(settings["seed"]), int(epochs)])[:16]
    folder = project.folder / "pretext" / digest
    order_file = folder / "order.npy"
    if order_file.is_file():
        try:
            order = np.load(order_file, allow_pickle=False)
            if order.shape == (len(rows),):
                return order
        except Exception:
            pass
    config = TrainConfig(epochs=int(epochs), batch_size=ROTATION_DEFAULTS.batch_size, lr=ROTATION_DEFAULTS.lr,
                         milestones=_scaled_milestones(int(epochs), (0.25, 0.5, 0.75)))
    pool = ImageSet(images, np.zeros(len(rows), dtype=np.int64), [r.path for r in rows], list(classes))
    result = train_rotation(pool, augment, net=settings["net"], config=config, seed=int(settings["seed"]),
                            device=device, save=folder, progress=progress)
    cdd = cluster_distance_difference(result.features, len(classes), seed=int(settings["seed"]))
    order = sort_by_cdd(cdd)
    atomic_save_npy(folder / "cdd.npy", cdd)
    atomic_save_npy(order_file, order)  # last: its presence means the folder is complete
    return order


# -- models ------------------------------------------------------------------------------
def latest_fitted_cycle(project: Project) -> dict | None:
    """The newest cycle with a model, or None."""
    fitted = [c for c in project.cycles() if c["model_path"]]
    return fitted[-1] if fitted else None


def _model_file(project: Project, model_path: str) -> Path:
    p = Path(model_path)
    return p if p.is_absolute() else project.folder / p


def load_task_model(project: Project, cycle: dict):
    """(model, augment) of a fitted cycle, with the normalisation it was trained with."""
    from bal.data import BatchAugment
    from bal.models import load_model_file

    path = _model_file(project, cycle["model_path"])
    if not path.is_file():
        raise BalError(f"the model of cycle {cycle['id']}, {path}, is missing; run `bal fit {project.folder}` again")
    model, state = load_model_file(path)
    norm = state["normalisation"]
    augment = BatchAugment(norm["mean"], norm["std"], crop_padding=norm["crop_padding"], hflip=norm["hflip"])
    return model, augment


# -- query -------------------------------------------------------------------------------
@dataclass
class QueryReport:
    cycle_id: int
    q: int  # cycle index used for the window
    n_planned: int
    pool_size: int
    selected: list[ImageRow]
    info: dict  # the strategy's: rule, window, beta, addendum, ...
    model_cycle: int | None  # the fitted cycle whose model scored the window
    unlabelled_before: int  # images of the previous selection still unlabelled


def planned_cycles(q: int, pool_size: int, budget: int) -> int:
    """``max(q + 1, ceil(N / K))``: windows cover the whole CDD order, later queries use the last one."""
    return max(q + 1, -(-pool_size // budget))


def query(
    project: Project,
    budget: int,
    *,
    beta: float = 1.2,
    pretext_epochs: int = 15,
    device="cpu",
    progress: bool = False,
) -> QueryReport:
    """Select the next ``budget`` images with BAL and record them as a new cycle."""
    import torch

    from bal.loop.trainer import predict
    from bal.selection import Pretext, SelectionContext, make_strategy

    rows = pool_rows(project)
    if not rows:
        raise _no_images_error(project)
    if budget < 1:
        raise BalError(f"--budget must be at least 1, got {budget}")
    labeled = np.array([r.label is not None for r in rows], dtype=bool)
    n_unlabelled = int((~labeled).sum())
    if n_unlabelled == 0:
        raise BalError(f"every one of the {len(rows)} images of the pool is labelled; nothing left to select "
                       f"(add images and run `bal project scan {project.folder}`)")
    if budget > n_unlabelled:
        raise BalError(f"--budget {budget} is more than the {n_unlabelled} unlabelled images of the pool")
    check_pool_files(project)
    device = torch.device(device)
    settings = read_settings(project)
    size = image_size(project, rows)
    images = load_pool(project, rows, size, progress=progress)
    order = pretext_order(project, rows, images, pool_augment(images), epochs=pretext_epochs, device=device,
                          progress=progress)

    cycles = project.cycles()
    q = sum(1 for c in cycles if c["budget"] > 0)
    n_planned = planned_cycles(q, len(rows), budget)
    fitted = latest_fitted_cycle(project)
    outputs: Callable | None = None
    if fitted is not None:
        model, augment = load_task_model(project, fitted)
        images_t = torch.from_numpy(images)

        def outputs(indices: np.ndarray):
            return predict(model, images_t, indices, augment, device=device, features=True, progress=progress,
                           desc="score")

    ctx = SelectionContext(
        cycle=q, budgets=[budget] * n_planned, labeled=labeled,
        rng=np.random.default_rng(derive_seed(int(settings["seed"]), "select", q)),
        pretext=Pretext(order=order), outputs=outputs,
    )
    strategy = make_strategy("bal", beta=beta, first="high1st", sampling="confidence")
    picked, info = strategy.select(ctx)
    picked = np.asarray(picked, dtype=np.int64)
    if len(picked) != budget or labeled[picked].any() or len(np.unique(picked)) != len(picked):
        raise AssertionError("bal returned an invalid selection")  # a bug, never bad input

    _, previous = project.current_selection()
    unlabelled_before = sum(1 for r in previous if r.label is None and r.status == "ok")
    selected = [rows[i] for i in picked]
    cycle_id = project.start_cycle("bal", [r.id for r in selected])
    return QueryReport(cycle_id, q, n_planned, len(rows), selected, info,
                       None if fitted is None else fitted["id"], unlabelled_before)


# -- export ------------------------------------------------------------------------------
def current_selection(project: Project) -> tuple[int, list[ImageRow], list[ImageRow]]:
    """(cycle id, images to export (status ok), images left out (changed or missing))."""
    cycle_id, rows = project.current_selection()
    if cycle_id is None:
        raise BalError(f"project {project.folder} has no selection yet; run `bal query {project.folder} --budget K`")
    return cycle_id, [r for r in rows if r.status == "ok"], [r for r in rows if r.status != "ok"]


def export_csv(project: Project, rows: Sequence[ImageRow]) -> str:
    """``path,label,absolute_path``; label empty unless already labelled."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "label", "absolute_path"])
    for r in rows:
        w.writerow([r.path, r.label or "", str(project.absolute_path(r))])
    return buf.getvalue()


def label_studio_url(absolute: str | os.PathLike) -> str:
    return LABEL_STUDIO_PREFIX + quote(os.fspath(absolute), safe="/")


def export_label_studio(project: Project, rows: Sequence[ImageRow]) -> list[dict]:
    return [{"id": r.id, "data": {"image": label_studio_url(project.absolute_path(r)), "bal_path": r.path}}
            for r in rows]


def write_export(path: str | os.PathLike, text: str) -> None:
    atomic_write_text(path, text)


# -- import ------------------------------------------------------------------------------
@dataclass
class ImportRow:
    number: int  # CSV line (the header is line 1) or Label Studio task (from 1)
    path: str | None
    label: str | None
    problem: str | None = None  # set when the row cannot be read at all


@dataclass
class ImportReport:
    unit: str  # "line" or "task"
    applied: int = 0  # new labels recorded
    unchanged: int = 0  # rows giving an image the label it already has
    no_label: int = 0  # rows without a label (left for later)
    bad: list[tuple[int, str | None, str]] = field(default_factory=list)  # (number, path, reason)

    def bad_lines(self) -> str:
        return "\n".join(f"  {self.unit} {n}: {p + ': ' if p else ''}{why}" for n, p, why in self.bad)


def detect_format(file: str | os.PathLike, fmt: str | None) -> str:
    if fmt:
        return fmt
    ext = Path(file).suffix.lower()
    if ext == ".csv":
        return "csv"
    if ext == ".json":
        return "labelstudio"
    raise BalError(f"{file}: cannot tell the format from the extension {ext or '(none)'!r}; "
                   f"name it .csv or .json, or pass --format csv|labelstudio")


def read_csv_rows(file: str | os.PathLike) -> list[ImportRow]:
    """Rows of a ``path,label`` CSV (header required, other columns ignored, `,` `;` or tab separated)."""
    try:
        with open(file, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except FileNotFoundError:
        raise BalError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BalError(f"{file}: cannot read it as UTF-8 text ({e})") from None
    if not text.strip():
        raise BalError(f"{file} is empty; expected a header line `path,label` and one line per image")
    first = text.splitlines()[0]
    delimiter = "," if "," in first else ";" if ";" in first else "\t" if "\t" in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader)]
    if "path" not in header or "label" not in header:
        raise BalError(f"{file}, line 1: the header must name the columns path and label "
                       f"(found: {', '.join(header) or 'nothing'})")
    ip, il = header.index("path"), header.index("label")
    rows = []
    start = reader.line_num + 1
    for fields in reader:
        number, start = start, reader.line_num + 1
        if not any(x.strip() for x in fields):
            continue
        path = fields[ip].strip() if ip < len(fields) else ""
        label = fields[il].strip() if il < len(fields) else ""
        rows.append(ImportRow(number, path or None, label or None,
                              None if path or not label else "no path given"))
    return rows


def _path_from_image_url(value: str) -> str:
    """The file a Label Studio ``data.image`` points at: ``/data/local-files/?d=...``, ``file://...`` or a path."""
    parts = urlsplit(value)
    if "local-files" in parts.path:
        d = parse_qs(parts.query).get("d")
        if d:
            return d[0]  # parse_qs has unquoted it
    if parts.scheme == "file":
        return unquote(parts.path)
    return value


def read_label_studio_rows(file: str | os.PathLike) -> list[ImportRow]:
    """One row per task of a Label Studio JSON export (see the module docstring)."""
    try:
        with open(file, encoding="utf-8") as f:
            tasks = json.load(f)
    except FileNotFoundError:
        raise BalError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BalError(f"{file} is not a valid JSON file ({e})") from None
    if not isinstance(tasks, list):
        raise BalError(f"{file}: a Label Studio export is a JSON list of tasks, got a {type(tasks).__name__}")
    rows = []
    for number, task in enumerate(tasks, start=1):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            rows.append(ImportRow(number, None, None, "not a Label Studio task (no \"data\" object)"))
            continue
        data = task["data"]
        path = data.get("bal_path")
        if not path and isinstance(data.get("image"), str):
            path = _path_from_image_url(data["image"])
        label, problem = None, None
        annotations = task.get("annotations", task.get("completions")) or []
        if not isinstance(annotations, list):
            problem = "\"annotations\" is not a list"
            annotations = []
        for ann in reversed(annotations):
            if not isinstance(ann, dict) or ann.get("was_cancelled"):
                continue
            for result in ann.get("result") or []:
                choices = result.get("value", {}).get("choices") if isinstance(result, dict) else None
                if (result.get("type") in (None, "choices")) and isinstance(choices, list) and choices:
                    label = str(choices[0]).strip()
                    break
            break  # the last annotation that was not cancelled decides, even without a choice
        if not path and label is not None:
            problem = problem or "no data.bal_path and no data.image to tell which image it is"
        rows.append(ImportRow(number, path or None, label or None, problem))
    return rows


def _relative(project: Project, path: str) -> str:
    """A path as the project stores it: relative to the images folder, '/'-separated."""
    p = path.strip().replace("\\", "/")
    if p.startswith("/") or (len(p) > 2 and p[1] == ":"):
        root = project.images_root
        for base in (str(root), os.path.realpath(root)):
            base = base.replace("\\", "/").rstrip("/") + "/"
            if p.startswith(base):
                p = p[len(base):]
                break
    p = posixpath.normpath(p) if p else p
    return p[2:] if p.startswith("./") else p


def import_labels(
    project: Project,
    file: str | os.PathLike,
    *,
    fmt: str | None = None,
    partial: bool = False,
    source: str = "import",
) -> ImportReport:
    """Validate every row of ``file`` and record its labels in one transaction.

    Without ``partial`` nothing is recorded unless every row is valid (a BalError lists
    the bad rows); with it the valid rows are recorded and the bad ones returned in the
    report. Rows without a label are skipped (not errors); a row repeating an image's
    current label records nothing.
    """
    fmt = detect_format(file, fmt)
    rows = read_csv_rows(file) if fmt == "csv" else read_label_studio_rows(file)
    report = ImportReport("line" if fmt == "csv" else "task")
    classes = project.classes
    # Reads and writes in one IMMEDIATE transaction: nobody can label in between, and a
    # kill at any moment leaves the import either fully recorded or not at all.
    with project.transaction() as cur:
        images = {r.path: r for r in project.images(None)}
        candidates: list[tuple[ImportRow, ImageRow]] = []
        bad: dict[int, tuple[str | None, str]] = {}
        for row in rows:
            if row.problem:
                bad[row.number] = (row.path, row.problem)
                continue
            if row.label is None:
                report.no_label += 1
                continue
            rel = _relative(project, row.path)
            image = images.get(rel)
            if image is None:
                bad[row.number] = (row.path, "unknown image: not in this project "
                                             f"(new files are added by `bal project scan {project.folder}`)")
            elif row.label not in classes:
                bad[row.number] = (rel, f"unknown class {row.label!r}; the project's classes are {', '.join(classes)}")
            else:
                candidates.append((row, image))
        by_image: dict[int, list[tuple[ImportRow, ImageRow]]] = defaultdict(list)
        for row, image in candidates:
            by_image[image.id].append((row, image))
        to_add: list[tuple[int, str]] = []
        for image_id, group in by_image.items():
            image = group[0][1]
            given = {row.label for row, _ in group}
            if len(given) > 1:
                listing = ", ".join(f"{row.label!r} ({report.unit} {row.number})" for row, _ in group)
                for row, _ in group:
                    bad[row.number] = (image.path, f"the file gives this image different classes: {listing}")
            elif image.label is not None and image.label != group[0][0].label:
                for row, _ in group:
                    bad[row.number] = (image.path, f"{row.label!r} conflicts with its current label {image.label!r}; "
                                                   f"undo that label first to change it")
            elif image.label is not None:
                report.unchanged += len(group)
            else:
                to_add.append((image_id, group[0][0].label))
                report.unchanged += len(group) - 1
        report.bad = [(n, *bad[n]) for n in sorted(bad)]
        if report.bad and not partial:
            raise BalError(
                f"{file}: {len(report.bad)} of {len(rows)} {report.unit}s cannot be imported, so nothing was "
                f"(fix them, or pass --partial to import the valid ones):\n{report.bad_lines()}"
            )
        class_ids = {name: cid for cid, name in cur.execute("SELECT id, name FROM classes").fetchall()}
        stamp = now()
        cur.executemany("INSERT INTO labels (image_id, class_id, source, created_at) VALUES (?, ?, ?, ?)",
                        [(i, class_ids[c], source, stamp) for i, c in to_add])
        report.applied = len(to_add)
    return report


# -- fit ---------------------------------------------------------------------------------
def holdout_split(items: Sequence[tuple[str, int]], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Positions (train, held out) of ``(path, class index)`` items; see the module docstring."""
    if not 0 <= fraction < 1:
        raise BalError(f"--holdout must be at least 0 and below 1, got {fraction}")
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
    epochs: int = 30,
    batch_size: int = 32,
    lr: float = 0.05,
    holdout: float = 0.2,
    device="cpu",
    progress: bool = False,
) -> FitReport:
    """Train the task model on every label so far, evaluate on the held-out labels, save, record."""
    import torch

    from bal.loop.trainer import TrainConfig, evaluate, train_model
    from bal.models import create_model, save_model_file

    for name, value, ok in (("--epochs", epochs, epochs >= 1), ("--batch-size", batch_size, batch_size >= 1),
                            ("--lr", lr, lr > 0)):
        if not ok:
            raise BalError(f"{name} must be positive, got {value}")
    if not 0 <= holdout < 1:
        raise BalError(f"--holdout must be at least 0 and below 1, got {holdout}")
    rows = pool_rows(project)
    if not rows:
        raise _no_images_error(project)
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
    settings = read_settings(project)
    seed = int(settings["seed"])
    size = image_size(project, rows)
    images = load_pool(project, rows, size, progress=progress)
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
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr,
                         milestones=_scaled_milestones(epochs, (0.3, 0.6, 0.9)))
    models = project.folder / "models"
    models.mkdir(parents=True, exist_ok=True)
    key = _digest(["fit", settings, [(rows[i].path, rows[i].sha256, int(labels[i])) for i in train_idx],
                   [epochs, batch_size, lr], list(augment.mean), list(augment.std)])[:16]
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
    save_model_file(
        project.folder / rel, model.cpu(), net=settings["net"], image_size=size, classes=list(classes),
        normalisation={"mean": list(augment.mean), "std": list(augment.std),
                       "crop_padding": augment.crop_padding, "hflip": augment.hflip},
    )
    counts = Counter(r.label for _, r in labelled)
    metrics = {
        "labelled": len(labelled), "trained_on": len(train_idx), "held_out": len(held_idx), "holdout": holdout,
        "accuracy": accuracy, "per_class_accuracy": per_class_acc,
        "per_class": {c: counts.get(c, 0) for c in classes},
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "seconds": round(time.perf_counter() - t0, 2),
    }
    project.finish_cycle(cycle_id, rel, metrics)
    checkpoint.unlink(missing_ok=True)
    return FitReport(cycle_id, rel, metrics, created)


# -- status ------------------------------------------------------------------------------
@dataclass
class Status:
    counts: dict[str, int]  # ok, changed, missing
    labelled: int  # images of the pool with a current label
    unlabelled: int
    labels_on_absent: int  # current labels of changed or missing images (kept)
    per_class: dict[str, int]  # labels per class, pool images
    cycles: list[dict]  # id, created_at, strategy, budget, labelled_now, accuracy, fitted
    next_steps: list[str]


def status(project: Project) -> Status:
    every = project.images(None)
    counts = Counter(r.status for r in every)
    pool = [r for r in every if r.status == "ok"]
    labelled = [r for r in pool if r.label is not None]
    per_class = Counter(r.label for r in labelled)
    labelled_now = dict(project.conn.execute(
        """SELECT s.cycle_id, COUNT(*) FROM selections s WHERE EXISTS
           (SELECT 1 FROM labels l WHERE l.image_id = s.image_id AND l.retracted_at IS NULL)
           GROUP BY s.cycle_id""").fetchall())
    cycles = []
    for c in project.cycles():
        m = c["metrics"] or {}
        cycles.append({"id": c["id"], "created_at": c["created_at"], "strategy": c["strategy"],
                       "budget": c["budget"], "labelled_now": labelled_now.get(c["id"], 0),
                       "accuracy": m.get("accuracy"), "held_out": m.get("held_out"),
                       "fitted": c["model_path"] is not None, "trained_labels": m.get("labelled")})
    d = project.folder
    steps: list[str] = []
    if counts.get("changed") or counts.get("missing"):
        absent = " and ".join(f"{counts[s]} {s}" for s in ("changed", "missing") if counts.get(s))
        steps.append(f"{absent} image(s) are out of the pool (labels kept); `bal project scan {d}` lists them "
                     f"and says what to do")
    if not pool:
        steps.append(f"add images under {project.images_root} and run `bal project scan {d}`")
    else:
        _, selection = project.current_selection()
        todo = [r for r in selection if r.status == "ok" and r.label is None]
        last_fit = next((c for c in reversed(cycles) if c["fitted"]), None)
        if todo:
            steps.append(f"label the {len(todo)} image(s) of cycle {cycles[-1]['id']}: `bal serve {d}` "
                         f"or `bal export {d}`, then `bal import {d} FILE`")
        elif not cycles and len(labelled) < len(pool):
            steps.append(f"run `bal query {d} --budget K` for the first images to label (K = how many)")
        elif labelled and (last_fit is None or (last_fit["trained_labels"] or 0) != len(labelled)):
            steps.append(f"run `bal fit {d}` to train on the {len(labelled)} labels")
        elif len(labelled) < len(pool):
            k = next((c["budget"] for c in reversed(cycles) if c["budget"] > 0), None)
            steps.append(f"run `bal query {d} --budget {k if k else 'K'}` for the next images to label")
        else:
            steps.append("every image is labelled; add images and run `bal project scan` for more")
    return Status(
        counts={s: counts.get(s, 0) for s in ("ok", "changed", "missing")},
        labelled=len(labelled), unlabelled=len(pool) - len(labelled),
        labels_on_absent=sum(1 for r in every if r.status != "ok" and r.label is not None),
        per_class={c: per_class.get(c, 0) for c in project.classes},
        cycles=cycles, next_steps=steps,
    )
