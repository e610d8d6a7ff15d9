"""Decoding image folders once into a uint8 array, cached on disk (decoding rules: :mod:`.decode`).

The cache is one ``{key}.npy`` (images) plus one ``{key}.json`` (paths, labels,
skipped files) per split, where the key hashes the file list with sizes and
modification times, so any change in the folder gives a new key.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from bal.data.decode import ImageDecodeError, decode_image, infer_image_size, short_reason
from bal.data.folders import FolderSplit, scan_dataset
from bal.data.imageset import ImageSet
from bal.errors import DataError
from bal.files import atomic_save_npy, atomic_write_json

__all__ = ["default_cache_dir", "load_dataset", "load_split"]

# Bump when decoding changes in a way that changes pixels, so old caches are not reused.
CACHE_FORMAT_VERSION = 1

# Decoding a small image costs ~50 us, a good part of it in C code that releases the
# GIL, so a few threads help; chunks amortise the executor's per-task overhead.
_CHUNK = 256


def default_cache_dir() -> Path:
    """``$BAL_CACHE_DIR`` if set (and not empty), else ``~/.cache/bal``."""
    env = os.environ.get("BAL_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "bal"


def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)  # decoding will report the file; the key still changes when it returns
    return (st.st_size, st.st_mtime_ns)


def _fingerprint(split: FolderSplit) -> list:
    files = sorted([*split.paths, *(p for p, _ in split.bad)])
    return [
        os.path.abspath(split.root),  # relative paths mean different files from another cwd
        split.classes,
        hashlib.sha256(np.ascontiguousarray(split.labels, dtype=np.int64).tobytes()).hexdigest(),
        [(p, *_stat(p)) for p in files],
    ]


def _key(parts: object) -> str:
    text = json.dumps(parts, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _load_cached(npy: Path, meta_path: Path, size: int) -> ImageSet | None:
    """The cached set, or None when it is missing or unusable (then it is rebuilt)."""
    if not (npy.is_file() and meta_path.is_file()):
        return None
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        images = np.load(npy, allow_pickle=False)
        labels = np.asarray(meta["labels"], dtype=np.int64)
        paths = list(meta["paths"])
        if images.dtype != np.uint8 or images.shape != (len(paths), size, size, 3) or len(labels) != len(paths):
            return None
        return ImageSet(
            images=images,
            labels=labels,
            paths=paths,
            classes=list(meta["classes"]),
            skipped=[(str(p), str(r)) for p, r in meta["skipped"]],
        )
    except Exception:
        return None


def _save_cached(npy: Path, meta_path: Path, data: ImageSet) -> None:
    try:
        npy.parent.mkdir(parents=True, exist_ok=True)
        # Images first, metadata last: a reader needs both, so a kill in between
        # leaves only an orphan .npy that is overwritten next time.
        atomic_save_npy(npy, data.images)
        atomic_write_json(
            meta_path,
            {
                "format": CACHE_FORMAT_VERSION,
                "paths": data.paths,
                "labels": data.labels.tolist(),
                "classes": data.classes,
                "skipped": [list(x) for x in data.skipped],
            },
        )
    except OSError as e:
        warnings.warn(
            f"cannot write the image cache in {str(npy.parent)!r} ({e.strerror or e}); "
            f"continuing without a cache (set BAL_CACHE_DIR to a writable folder)",
            stacklevel=3,
        )


def _decode_chunk(paths: list[str], size: int, out: np.ndarray, start: int) -> list[tuple[int, str]]:
    failures = []
    for i, p in enumerate(paths):
        try:
            out[start + i] = decode_image(p, size)
        except ImageDecodeError as e:
            failures.append((start + i, e.reason))
        except MemoryError:
            raise
        except Exception as e:  # a replaced decode_image may raise anything
            failures.append((start + i, f"truncated/corrupt: {short_reason(e)}"))
    return failures


def _chunks(n: int) -> Iterator[tuple[int, int]]:
    for s in range(0, n, _CHUNK):
        yield s, min(s + _CHUNK, n)


def _decode_all(paths: list[str], size: int, progress: bool, desc: str) -> tuple[np.ndarray, dict[int, str]]:
    """Decode every path into row i of one preallocated array; failures by index."""
    n = len(paths)
    out = np.zeros((n, size, size, 3), dtype=np.uint8)
    failures: dict[int, str] = {}
    workers = min(4, os.cpu_count() or 1, max(1, n // _CHUNK))
    with tqdm(total=n, desc=desc, disable=not progress, unit="img") as bar:
        if workers <= 1:
            for s, e in _chunks(n):
                failures.update(_decode_chunk(paths[s:e], size, out, s))
                bar.update(e - s)
        else:
            # Every chunk writes its own rows of `out`, so the result does not depend on
            # thread timing.
            pool = ThreadPoolExecutor(max_workers=workers)
            try:
                jobs = [(s, e, pool.submit(_decode_chunk, paths[s:e], size, out, s)) for s, e in _chunks(n)]
                for s, e, job in jobs:
                    failures.update(job.result())
                    bar.update(e - s)
            finally:
                # On Ctrl-C or an error, do not wait for the queued chunks to finish.
                pool.shutdown(wait=True, cancel_futures=True)
    return out, failures


def _bad_files_error(root: str, bad: list[tuple[str, str]], none_left: bool = False) -> DataError:
    lines = "\n".join(f"  {p}: {r}" for p, r in bad)
    if none_left:
        head = f"all {len(bad)} file(s) under {root!r} are bad image files; there is nothing to train on"
    else:
        head = (
            f"{len(bad)} bad image file(s) under {root!r}; fix or remove them, "
            f"or pass --skip-bad-images to leave them out"
        )
    return DataError(f"{head}:\n{lines}")


def load_split(
    split: FolderSplit,
    image_size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    desc: str = "decode",
) -> ImageSet:
    """Decode every image of ``split`` into an :class:`ImageSet`, using the disk cache.

    Parameters
    ----------
    split : FolderSplit
        From :func:`~bal.data.folders.scan_split`.
    image_size : int, optional
        Square side S of the output; ``None`` infers it with :func:`infer_image_size`.
    cache_dir : path, optional
        Where ``{key}.npy`` / ``{key}.json`` live; ``None`` means :func:`default_cache_dir`.
        An unwritable folder only gives a warning.
    skip_bad : bool
        Leave bad files out (listed in ``ImageSet.skipped``) instead of raising.
    progress : bool
        Show a tqdm bar labelled ``desc`` while decoding.

    Raises
    ------
    DataError
        Listing every bad file (``path: reason``) unless ``skip_bad``; also when no
        image is left at all.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    fingerprint = _fingerprint(split)

    if image_size is None:
        # Reading 60k headers takes seconds, so the inferred size is cached as well.
        size_file = cache / f"size-{_key(['size', CACHE_FORMAT_VERSION, fingerprint])}.json"
        try:
            image_size = int(json.loads(size_file.read_text(encoding="utf-8"))["image_size"])
        except Exception:
            try:
                image_size = infer_image_size(split.paths)
            except DataError:
                # No header is readable: decode at a dummy size only to learn why each
                # file fails, and report them all.
                _, failures = _decode_all(split.paths, 1, progress, desc)
                bad = sorted([*split.bad, *((split.paths[i], r) for i, r in failures.items())])
                raise _bad_files_error(split.root, bad, none_left=True) from None
            try:
                atomic_write_json(size_file, {"image_size": image_size})
            except OSError:
                pass  # the image cache write below warns about an unwritable folder
    image_size = int(image_size)
    if image_size <= 0:
        raise ValueError(f"image_size must be a positive integer, got {image_size}")

    key = _key(["images", CACHE_FORMAT_VERSION, image_size, bool(skip_bad), fingerprint])
    npy, meta_path = cache / f"{key}.npy", cache / f"{key}.json"
    cached = _load_cached(npy, meta_path, image_size)
    if cached is not None:
        return cached

    images, failures = _decode_all(split.paths, image_size, progress, desc)
    bad = sorted([*split.bad, *((split.paths[i], r) for i, r in failures.items())])

    if bad and not skip_bad:
        raise _bad_files_error(split.root, bad)

    if failures:
        keep = np.array([i not in failures for i in range(len(split.paths))], dtype=bool)
        images = images[keep]
        labels = split.labels[keep]
        paths = [p for p, k in zip(split.paths, keep) if k]
    else:
        labels = np.asarray(split.labels, dtype=np.int64)
        paths = list(split.paths)
    if not paths:
        raise _bad_files_error(split.root, bad, none_left=True)

    present = set(labels.tolist())
    lost = [c for i, c in enumerate(split.classes) if i not in present and i in set(split.labels.tolist())]
    if failures and lost:
        warnings.warn(
            f"after skipping bad files, no images are left for class(es) {', '.join(lost)} under {split.root!r}",
            stacklevel=2,
        )

    data = ImageSet(images=images, labels=labels, paths=paths, classes=list(split.classes), skipped=bad)
    _save_cached(npy, meta_path, data)
    return data


def load_dataset(
    datapath: str | os.PathLike,
    dataset: str,
    image_size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    skip_bad: bool = False,
    progress: bool = True,
) -> tuple[ImageSet, ImageSet]:
    """Scan and decode ``datapath/dataset/{train,test}``; returns ``(train, test)``.

    The image size is inferred from the train split when ``image_size`` is None and
    then used for the test split too. Bad files of both splits are checked before
    anything is raised, so the error lists them all in one go.
    """
    train_split, test_split = scan_dataset(datapath, dataset)
    errors: list[str] = []
    train = test = None
    try:
        train = load_split(train_split, image_size, cache_dir, skip_bad, progress, desc="decode train")
        image_size = train.images.shape[1]
    except DataError as e:
        # Keep going so that the bad files of the test split are reported as well;
        # with no train size known, the test split infers its own.
        errors.append(str(e))
    try:
        test = load_split(test_split, image_size, cache_dir, skip_bad, progress, desc="decode test")
    except DataError as e:
        errors.append(str(e))
    if errors:
        raise DataError("\n".join(errors))
    assert train is not None and test is not None
    return train, test
