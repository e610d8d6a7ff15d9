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

__all__ = ["IMAGE_EXTENSIONS", "FolderSplit", "Walk", "name_problem", "scan_dataset", "scan_split", "walk_images"]

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


def name_problem(name: str) -> str | None:
    """Why a file or folder name cannot be listed one per line in bal's run files, or None.

    ``paths.txt``, ``labeled_C.txt`` and ``unlabeled_pool.txt`` hold one path per line,
    as the authors' files do, so a name with a line break would be read back as two; and
    they are UTF-8, so a name whose bytes are not cannot be written at all.
    """
    if "\n" in name:
        return "its name holds a line break (newline)"
    if "\r" in name:
        return "its name holds a carriage return"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "its name holds bytes that are not UTF-8"
    return None


@dataclass
class Walk:
    """What :func:`walk_images` found, as relative paths (tuples of parts), each list sorted."""

    images: list[tuple[str, ...]] = field(default_factory=list)
    others: list[tuple[str, ...]] = field(default_factory=list)  # files without an image extension
    problems: list[tuple[tuple[str, ...], str]] = field(default_factory=list)  # (path, why it cannot be used)


def walk_images(root: str | os.PathLike, skip: str | os.PathLike | None = None,
                inside: str | os.PathLike | None = None) -> Walk:
    """Every file under ``root``: images, other files, and what cannot be used, with the reason.

    The one walk of an image tree in bal (dataset splits and labelling projects). Hidden
    files and folders (names starting with ``"."``) are ignored; ``skip`` (a folder, e.g.
    a project folder inside its own images folder) is not entered. Symlinked folders are
    followed (datasets are often assembled from links), except one that leads back into
    ``inside`` (default ``root``) or above it: that folder is listed already, or the link
    is a loop (``ln -s .. train/cat/loop`` would otherwise list the dog images as cats).
    A folder that cannot be read, and a name with a line break or bytes that are not
    UTF-8 (:func:`name_problem`), are problems, never silently left out.
    """
    walk = Walk()
    root = os.fspath(root)
    boundary = os.path.realpath(inside if inside is not None else root)
    skip_real = os.path.realpath(skip) if skip is not None else None
    seen: set[str] = set()
    unreadable: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=unreadable.append):
        real = os.path.realpath(dirpath)
        if real in seen or real == skip_real:
            dirnames[:] = []
            continue
        seen.add(real)
        rel = os.path.relpath(dirpath, root)
        prefix: tuple[str, ...] = () if rel == os.curdir else tuple(rel.split(os.sep))
        keep = []
        for d in sorted(dirnames):
            full = os.path.join(dirpath, d)
            target = os.path.realpath(full)
            if _is_hidden(d):
                continue
            if os.path.islink(full) and (target == boundary or target.startswith(boundary + os.sep)
                                         or boundary.startswith(target + os.sep)):
                continue  # listed already from where it really is, or a loop
            if (why := name_problem(d)) is not None:
                walk.problems.append((prefix + (d,), f"a folder that {why.replace('its', 'whose', 1)}"))
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            if _is_hidden(name):
                continue
            if (why := name_problem(name)) is not None:
                walk.problems.append((prefix + (name,), why))
            else:
                (walk.images if _is_image_name(name) else walk.others).append(prefix + (name,))
    for e in unreadable:
        rel = os.path.relpath(e.filename, root) if e.filename else root
        walk.problems.append((tuple(rel.split(os.sep)) if rel != os.curdir else (), f"cannot read this folder: "
                              f"{e.strerror or e}"))
    walk.images.sort()
    walk.others.sort()
    walk.problems.sort()
    return walk


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
    problems: list[tuple[str, str]] = []
    for index, name in enumerate(classes):
        class_dir = os.path.join(root, name)
        walk = walk_images(class_dir, inside=root)
        if not walk.images:
            empty.append(class_dir)
        paths.extend(os.path.join(class_dir, *parts) for parts in walk.images)
        labels.extend([index] * len(walk.images))
        bad.extend((os.path.join(class_dir, *parts), _not_image_reason(parts[-1])) for parts in walk.others)
        problems.extend((os.path.join(class_dir, *parts), why) for parts, why in walk.problems)
    if problems:
        lines = "\n".join(f"  {p!r}: {why}" for p, why in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise DataError(f"{len(problems)} file(s) or folder(s) under {root!r} cannot be used; rename or fix them "
                        f"(bal lists paths one per line, in UTF-8):\n{lines}{more}")
    paths, labels = _each_real_file_once(root, classes, paths, labels)

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


def _each_real_file_once(root: str, classes: list[str], paths: list[str], labels: list[int]
                         ) -> tuple[list[str], list[int]]:
    """Paths with each real file (symlinks resolved) once: the first of a class; one file under
    two classes is an error naming both, since its label would be a guess."""
    first: dict[str, int] = {}
    keep: list[int] = []
    clashes: list[str] = []
    for i, path in enumerate(paths):
        real = os.path.realpath(path)
        if real not in first:
            first[real] = i
            keep.append(i)
        elif labels[first[real]] != labels[i]:
            clashes.append(f"  {paths[first[real]]} ({classes[labels[first[real]]]}) and {path} "
                           f"({classes[labels[i]]}) are the same file, {real}")
    if clashes:
        raise DataError(f"{len(clashes)} image file(s) under {root!r} are in two classes at once (through "
                        f"symbolic links); keep each in one class folder:\n" + "\n".join(clashes[:50]))
    return [paths[i] for i in keep], [labels[i] for i in keep]


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
        hint = ""
        if len(missing) == 2 and walk_images(base).images:
            hint = (f". {base!r} holds images without the train/test split: to label a folder of your own "
                    f"images, make a project: bal project init DIR --images {base} --classes A,B,...")
        raise DataError(f"missing split folder(s) {names}; {LAYOUT_HINT}{hint}")

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
