"""A project's images folder, and the database kept up to date with it: ``init`` and ``scan``.

* **Images.** Every file under the images folder whose extension is one of
  :data:`bal.data.IMAGE_EXTENSIONS` (any case), in any sub-folder; hidden files and
  hidden folders (name starting with ".") are ignored, and so is the project folder
  itself when it lies inside the images folder (:func:`bal.data.walk_images`). Paths are
  stored relative to the images folder, '/'-separated. A file whose first path
  component is a class name (``FOLDER/cat/x.jpg``; a folder that differs only by case or
  surrounding spaces counts, and is reported) is labelled with that class, source
  ``folder``, when it is first seen (by ``init`` or by ``scan``).
* **Scan.** Every image is hashed again (a file replaced by another of the same size and
  time is a change too): the same sha256 only refreshes size and mtime; another sha256
  marks it ``changed`` (its
  row, hash and labels stay, it leaves the pool). A vanished file becomes ``missing``
  (labels stay). A changed or missing image whose original content is back returns to
  ``ok``. ``accept_changed`` takes the new content of every changed image as the image
  (keeps its labels).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bal.errors import BalError
from bal.files import file_digests
from bal.project.db import DB_NAME, DEFAULT_SETTINGS, Project, file_sha256, is_empty_database

__all__ = ["InitReport", "ScanReport", "check_pool_files", "folder_label", "inexact_class_folders", "init_project",
           "list_image_files", "scan_project"]

log = logging.getLogger("bal")


def progress_bar(iterable, progress: bool, desc: str, total: int | None = None):
    """``iterable`` with a tqdm bar when ``progress``."""
    if not progress:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit="img", leave=False)


def list_image_files(root: str | os.PathLike, skip: str | os.PathLike | None = None
                     ) -> tuple[list[str], list[tuple[str, str]]]:
    """Relative, '/'-separated paths of every image file under ``root``, sorted, each real file once
    (symlinks resolved); and ``(path, reason)`` of what cannot be used. ``skip`` is not entered."""
    from bal.data.folders import walk_images  # bal.data imports torch: only when scanning

    walk = walk_images(root, skip=skip)
    problems = [("/".join(parts), why) for parts, why in walk.problems]
    paths, seen = [], {}
    for rel in sorted("/".join(parts) for parts in walk.images):
        real = os.path.realpath(os.path.join(root, rel))
        if real in seen:
            problems.append((rel, f"the same file as {seen[real]} (a symbolic link): listed once, as {seen[real]}"))
        else:
            seen[real] = rel
            paths.append(rel)
    return paths, problems


def folder_label(path: str, classes: Sequence[str]) -> str | None:
    """The class of an image sorted into a class folder (first path component), else None.

    A folder named like a class but for case or surrounding spaces (``Cat/``, ``ship /``)
    is that class, when exactly one class matches so; :func:`inexact_class_folders` lists
    such folders so that the user is told.
    """
    parts = path.split("/")
    if len(parts) < 2:
        return None
    return _class_of_folder(parts[0], tuple(classes))


def _class_of_folder(folder: str, classes: tuple[str, ...]) -> str | None:
    if folder in classes:
        return folder
    loose = [c for c in classes if c.strip().casefold() == folder.strip().casefold()]
    return loose[0] if len(loose) == 1 else None


def inexact_class_folders(paths: Sequence[str], classes: Sequence[str]) -> dict[str, str]:
    """``{folder: class}`` for the class folders among ``paths`` that match a class only loosely."""
    folders = {p.split("/")[0] for p in paths if "/" in p}
    found = {f: _class_of_folder(f, tuple(classes)) for f in sorted(folders) if f not in classes}
    return {f: c for f, c in found.items() if c is not None}


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


def _records(root: Path, paths: Sequence[str], progress: bool) -> tuple[list[FileRecord], list[tuple[str, str]]]:
    """Records of the readable files, and (path, reason) of the others."""
    records: list[FileRecord] = []
    unreadable: list[tuple[str, str]] = []
    for rel in progress_bar(paths, progress, "hash"):
        rec = _record(root, rel)
        (records.append(rec) if isinstance(rec, FileRecord) else unreadable.append((rel, rec)))
    return records, unreadable


def _add(project: Project, records: Sequence[FileRecord]) -> Counter:
    """Insert new images and their class-folder labels in one transaction; labels per class."""
    classes = project.classes
    with project.transaction():
        ids = project.add_images((r.path, r.sha256, r.size, r.mtime_ns) for r in records)
        labels = [(image_id, folder_label(r.path, classes)) for image_id, r in zip(ids, records)]
        labels = [(i, c) for i, c in labels if c is not None]
        project.add_labels(labels, "folder")
    return Counter(c for _, c in labels)


# -- init --------------------------------------------------------------------------------
@dataclass
class InitReport:
    n_images: int
    labelled: Counter  # class -> images labelled from class folders
    image_size: int | None
    size_reason: str = ""  # why that size (bal.data.choose_image_size)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    loose_folders: dict[str, str] = field(default_factory=dict)  # class folder -> the class it was taken as


def check_net(net: str) -> None:
    from bal.models import list_models

    if net not in list_models():
        raise BalError(f"--net {net!r} is not a network bal knows; choose one of {', '.join(list_models())}")


def init_project(
    folder: str | os.PathLike,
    images: str | os.PathLike,
    classes: Sequence[str],
    *,
    net: str = DEFAULT_SETTINGS["net"],
    image_size: int | None = None,
    seed: int = DEFAULT_SETTINGS["seed"],
    flip: bool = DEFAULT_SETTINGS["flip"],
    progress: bool = False,
) -> tuple[Project, InitReport]:
    """Create the project in ``folder`` over the images folder ``images``; scan and hash every image."""
    folder, images = Path(folder), Path(images)
    if (folder / DB_NAME).is_file() and is_empty_database(folder / DB_NAME):
        # an init of an older bal, interrupted before it wrote a table: nothing in it to keep
        log.warning("%s is an empty database (an interrupted init): creating the project anew", folder / DB_NAME)
        (folder / DB_NAME).unlink()
    if (folder / DB_NAME).exists():
        raise BalError(f"{folder} already holds a project ({DB_NAME}); use `bal project scan {folder}`")
    if folder.exists() and not folder.is_dir():
        raise BalError(f"project folder {folder} exists and is not a folder")
    if not images.exists():
        raise BalError(f"--images {images}: no such folder")
    if not images.is_dir():
        raise BalError(f"--images {images} is not a folder")
    check_net(net)
    from bal.data import choose_image_size, generic_preset

    paths, problems = list_image_files(images, skip=folder)
    records, unreadable = _records(images, paths, progress)
    unreadable += problems
    why = ""
    if image_size is not None or records:
        image_size, why = choose_image_size([str(images / r.path) for r in records], preset=generic_preset("project"),
                                            net=net, given=image_size)
    settings = {"net": net, "image_size": image_size, "seed": int(seed), "flip": bool(flip)}
    project = Project.create(folder, images, classes, settings=settings, fill=lambda p: _add(p, records))
    return project, InitReport(len(records), project.filled, image_size, why, unreadable,
                               inexact_class_folders([r.path for r in records], classes))


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
    loose_folders: dict[str, str] = field(default_factory=dict)  # class folder -> the class it was taken as


def scan_project(project: Project, *, accept_changed: bool = False, progress: bool = False) -> ScanReport:
    """Bring the database up to date with the images folder (see the module docstring)."""
    root = project.images_root
    if not root.is_dir():
        raise BalError(f"the images folder {root} of project {project.folder} does not exist (moved or unmounted?)")
    listed, problems = list_image_files(root, skip=project.folder)
    on_disk = set(listed)
    known = {r["path"]: r for r in project.image_files()}
    report = ScanReport()
    updates: list[tuple[str, str, int, int, int]] = []  # (status, sha256, size, mtime_ns, id)
    # every known file's content, hashed: a file replaced by another of the same size and time is a change
    present = sorted(p for p in known if p in on_disk)
    digests = dict(zip(present, file_digests([root / p for p in present])))
    for path, row in progress_bar(sorted(known.items()), progress, "scan"):
        old = (row["status"], row["sha256"], row["size"], row["mtime_ns"])
        st = _stat(root / path) if path in on_disk else None
        digest = digests.get(path)
        if st is None or digest is None:
            new = ("missing", *old[1:])
        elif digest == row["sha256"]:
            new = ("ok", digest, *st)
        elif accept_changed:
            new = ("ok", digest, *st)
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
    records, report.unreadable = _records(root, sorted(on_disk - set(known)), progress)
    report.unreadable += [(p, why) for p, why in problems if p not in known]
    with project.transaction():
        project.update_images(updates)
        report.added_labelled = _add(project, records)
    report.added = [r.path for r in records]
    report.loose_folders = inexact_class_folders(report.added, project.classes)
    report.labels_kept = sum(1 for r in project.images(None) if r.status != "ok" and r.label is not None)
    return report


def check_pool_files(project: Project) -> None:
    """Refuse to decode when pool files changed (content, size or time) or vanished since the last scan."""
    root = project.images_root
    rows = project.image_files("ok")
    digests = file_digests([root / r["path"] for r in rows])  # the content, not only size and time
    stale = [r["path"] for r, d in zip(rows, digests)
             if d != r["sha256"] or _stat(root / r["path"]) != (r["size"], r["mtime_ns"])]
    if stale:
        shown = "\n".join(f"  {p}" for p in stale[:20])
        if len(stale) > 20:
            shown += f"\n  ... and {len(stale) - 20} more"
        raise BalError(
            f"{len(stale)} image file(s) under {root} changed or vanished since the last scan; "
            f"run `bal project scan {project.folder}` first:\n{shown}"
        )
