"""Finding the image files of a dataset laid out as ``DATAPATH/DATASET/{train,test}/CLASS/*``.

Scanning only lists files; nothing is decoded here (see :mod:`bal.data.cache`).
Paths are built with :func:`os.path.join` from the strings the caller gives and are
never resolved, because they are written to files such as ``paths.txt`` and must stay
the same from run to run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from bal.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "FolderSplit", "scan_dataset", "scan_split", "walk_images"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

LAYOUT_HINT = "expected layout: DATAPATH/DATASET/{train,test}/CLASS/<image files>"


@dataclass(frozen=True)
class FolderSplit:
    """The image files of one split (``train`` or ``test``), in a fixed order.

    Attributes
    ----------
    root : str
        The split folder, e.g. ``'DATAPATH/DATASET/train'``.
    paths : list of str
        Every image file, ``os.path.join(root, CLASS, *relative parts)``, sorted by
        class and then by relative path (subfolders of a class folder included).
    labels : ndarray of int64, shape (N,)
        Index into ``classes`` for each path.
    classes : list of str
        Sorted class folder names.
    bad : list of (str, str)
        ``(path, reason)`` for files found while scanning that cannot be images
        (wrong extension, or not inside a class folder).
    """

    root: str
    paths: list[str]
    labels: np.ndarray
    classes: list[str]
    bad: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _not_image_reason(name: str) -> str:
    ext = os.path.splitext(name)[1]
    return f"not an image file (extension {ext})" if ext else "not an image file (no extension)"


def walk_images(
    root: str | os.PathLike, skip: str | os.PathLike | None = None
) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """Relative paths (as tuples of parts) of the image and the non-image files under ``root``.

    The one walk of an image tree in bal (dataset splits and labelling projects). Hidden
    files and folders (names starting with ``"."``) are ignored; ``skip`` (a folder, e.g.
    a project folder inside its own images folder) is not entered. Both lists are sorted
    by path parts, which gives the same order on every OS, whatever the separator.
    """
    images: list[tuple[str, ...]] = []
    others: list[tuple[str, ...]] = []
    root = os.fspath(root)
    skip_real = os.path.realpath(skip) if skip is not None else None
    # Symlinked subfolders are followed (datasets are often assembled from links);
    # remembering real paths keeps a link loop from recursing forever.
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen or real == skip_real:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        rel = os.path.relpath(dirpath, root)
        prefix: tuple[str, ...] = () if rel == os.curdir else tuple(rel.split(os.sep))
        for name in filenames:
            if _is_hidden(name):
                continue
            (images if _is_image_name(name) else others).append(prefix + (name,))
    images.sort()
    others.sort()
    return images, others


def scan_split(split_dir: str | os.PathLike) -> FolderSplit:
    """List the image files of one split folder ``split_dir/CLASS/**``.

    Hidden files and folders (names starting with ``"."``) are ignored. Files with
    other extensions than :data:`IMAGE_EXTENSIONS` (case-insensitive), and files lying
    directly in ``split_dir``, are reported in :attr:`FolderSplit.bad`.

    Raises
    ------
    DataError
        If ``split_dir`` is missing or not a folder, has no class folders, or has
        class folders without image files (all of them named in one message).
    """
    root = os.fspath(split_dir)
    if not os.path.isdir(root):
        what = "is not a folder" if os.path.exists(root) else "does not exist"
        raise DataError(f"split folder {root!r} {what}; {LAYOUT_HINT}")

    try:
        entries = sorted(os.listdir(root))
    except OSError as e:
        raise DataError(f"cannot list split folder {root!r}: {e.strerror or e}") from None

    classes: list[str] = []
    bad: list[tuple[str, str]] = []
    for name in entries:
        if _is_hidden(name):
            continue
        full = os.path.join(root, name)
        if os.path.isdir(full):
            classes.append(name)
        else:
            bad.append((full, "not inside a class folder (expected SPLIT/CLASS/<file>)"))

    if not classes:
        raise DataError(f"split folder {root!r} has no class folders; {LAYOUT_HINT}")

    paths: list[str] = []
    labels: list[int] = []
    empty: list[str] = []
    for index, name in enumerate(classes):
        class_dir = os.path.join(root, name)
        images, others = walk_images(class_dir)
        if not images:
            empty.append(class_dir)
        paths.extend(os.path.join(class_dir, *parts) for parts in images)
        labels.extend([index] * len(images))
        bad.extend((os.path.join(class_dir, *parts), _not_image_reason(parts[-1])) for parts in others)

    if empty:
        lines = "\n".join(f"  {d}" for d in empty)
        exts = ", ".join(IMAGE_EXTENSIONS)
        raise DataError(
            f"{len(empty)} class folder(s) under {root!r} contain no image files ({exts}); "
            f"add images or remove the folder(s):\n{lines}"
        )

    return FolderSplit(
        root=root,
        paths=paths,
        labels=np.asarray(labels, dtype=np.int64),
        classes=classes,
        bad=bad,
    )


def scan_dataset(datapath: str | os.PathLike, dataset: str) -> tuple[FolderSplit, FolderSplit]:
    """Scan ``datapath/dataset/train`` and ``datapath/dataset/test``.

    Returns
    -------
    (train, test) : tuple of FolderSplit
        Both with the same ``classes``, so labels mean the same in both.

    Raises
    ------
    DataError
        If the dataset folder or a split folder is missing (naming the exact path
        expected), anything :func:`scan_split` rejects, or the class folders of the
        two splits differ (listing the classes found in only one of them).
    """
    base = os.path.join(os.fspath(datapath), dataset)
    if not os.path.isdir(base):
        where = (
            f"(DATAPATH {os.fspath(datapath)!r} does not exist either)"
            if not os.path.isdir(os.fspath(datapath))
            else f"(DATAPATH {os.fspath(datapath)!r} exists but has no folder {dataset!r})"
        )
        raise DataError(f"dataset folder {base!r} does not exist {where}; {LAYOUT_HINT}")

    split_dirs = [os.path.join(base, s) for s in ("train", "test")]
    missing = [d for d in split_dirs if not os.path.isdir(d)]
    if missing:
        names = ", ".join(repr(d) for d in missing)
        raise DataError(f"missing split folder(s) {names}; {LAYOUT_HINT}")

    train = scan_split(split_dirs[0])
    test = scan_split(split_dirs[1])
    if train.classes != test.classes:
        only_train = sorted(set(train.classes) - set(test.classes))
        only_test = sorted(set(test.classes) - set(train.classes))
        raise DataError(
            f"class folders of {train.root!r} and {test.root!r} differ; both splits need "
            f"the same classes. only in train: {', '.join(only_train) or '(none)'}; "
            f"only in test: {', '.join(only_test) or '(none)'}"
        )
    return train, test
