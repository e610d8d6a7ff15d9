"""Decoding image folders once into a uint8 array on disk, read through a memory map.

The cache of one split is ``{key}.npy`` (uint8, N x S x S x 3) plus ``{key}.json``
(paths, labels, classes, skipped files), where the key hashes the file list with a SHA-256
of each file's bytes, the size S and the decoding format, so any change in the folder's
content gives a new key, and a file replaced by another of the same size and modification
time is decoded again (decoding rules: :mod:`.decode`).

Memory. The array is never built whole in memory: decoded chunks of 256 images are
written straight into the file, and readers open it with ``mmap_mode="r"``. Training
and scoring gather their batches through the map and hand the pages back once a batch
is copied out (:func:`release`), so the resident memory of a run follows its batch, not
its pool. A pool larger than RAM works; it must fit on disk, and
:func:`check_cache_room` refuses a size whose cache would not, before any decoding.

Resuming. While a cache is built, ``{key}.partial.npy`` holds the rows decoded so far and
``{key}.progress.json`` which chunks they are (written after the rows are on disk). A
killed build started again decodes only the chunks that are missing. The metadata file
is written last: a cache without it is not a cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import shutil
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bal.data.decode import ImageDecodeError, decode_image, infer_image_size, short_reason
from bal.data.folders import FolderSplit, scan_dataset
from bal.data.imageset import ImageSet
from bal.errors import DataError, ParameterError
from bal.files import atomic_write_json, file_digests, held_lock

log = logging.getLogger("bal")

__all__ = ["CacheEntry", "cached_split", "check_cache_room", "default_cache_dir", "list_caches", "load_dataset",
           "load_split", "release"]

# Bump when decoding changes in a way that changes pixels, so old caches are not reused.
# 2: aspect ratio kept (centre crop / pad), EXIF orientation applied, draft decoding of large JPEGs.
# 3: keyed on the files' content (SHA-256), not their sizes and modification times.
CACHE_FORMAT_VERSION = 3

# Decoding a small image costs ~50 us, a good part of it in C code that releases the
# GIL, so a few threads help; chunks amortise the executor's per-task overhead and are
# the unit a killed build resumes from.
_CHUNK = 256
# Write the progress file at most this often (seconds): each write syncs the data first.
_PROGRESS_EVERY = 2.0


def default_cache_dir() -> Path:
    """``$BAL_CACHE_DIR`` if set (and not empty), else ``~/.cache/bal``."""
    env = os.environ.get("BAL_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "bal"


def _fingerprint(split: FolderSplit) -> list:
    # Keyed on each file's bytes, not its size and modification time: a file replaced by
    # another of the same size and time (`cp -p`, `rsync -a`, a fixed-size BMP) must not
    # train on its old pixels. Hashing reads each file once, a fraction of what decoding
    # costs (docs/performance.md has the figures); an unreadable file hashes to None and
    # decoding reports it.
    files = sorted([*split.paths, *(p for p, _ in split.bad)])
    return [
        os.path.abspath(split.root),  # relative paths mean different files from another cwd
        split.classes,
        hashlib.sha256(np.ascontiguousarray(split.labels, dtype=np.int64).tobytes()).hexdigest(),
        [(p, d) for p, d in zip(files, file_digests(files))],
    ]


def _key(parts: object) -> str:
    text = json.dumps(parts, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _open_cached(npy: Path, meta_path: Path, size: int) -> ImageSet | None:
    """The cached set read through a memory map, or None when it is missing or unusable (then rebuilt)."""
    if not (npy.is_file() and meta_path.is_file()):
        return None
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("format") != CACHE_FORMAT_VERSION:
            return None
        images = np.load(npy, mmap_mode="r", allow_pickle=False)
        labels = np.asarray(meta["labels"], dtype=np.int64)
        paths = list(meta["paths"])
        if images.dtype != np.uint8 or images.shape != (len(paths), size, size, 3) or len(labels) != len(paths):
            return None
        return ImageSet(images=images, labels=labels, paths=paths, classes=list(meta["classes"]),
                        skipped=[(str(p), str(r)) for p, r in meta["skipped"]])
    except Exception:
        return None


def release(images: np.ndarray, rows: np.ndarray | None = None) -> None:
    """Hand the memory pages of ``rows`` (all rows by default) of a memory-mapped array back to the OS.

    The data stay in the page cache and on disk; the process's resident memory drops.
    A no-op for arrays in memory. Contiguous rows are released in one call.
    """
    mm = getattr(images, "_mmap", None)
    if not isinstance(mm, mmap.mmap) or images.ndim == 0 or len(images) == 0:
        return
    row_bytes = int(np.prod(images.shape[1:], dtype=np.int64)) * images.itemsize
    base = getattr(images, "offset", 0)
    page = mmap.PAGESIZE
    if rows is None:
        spans = [(0, len(images))]
    else:
        r = np.unique(np.asarray(rows, dtype=np.int64))
        breaks = np.flatnonzero(np.diff(r) != 1) + 1
        spans = [(int(run[0]), int(run[-1]) + 1) for run in np.split(r, breaks) if run.size]
    for start, stop in spans:
        lo = (base + start * row_bytes) // page * page
        hi = base + stop * row_bytes
        try:
            mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
        except (OSError, ValueError, AttributeError):  # not every platform; harmless to skip
            return


class _Writer:
    """Decoded chunks written into a .npy file at their rows' offsets; progress kept for a resume."""

    def __init__(self, partial: Path, progress_file: Path, shape: tuple[int, ...], fingerprint: str):
        self.partial, self.progress_file, self.shape = partial, progress_file, shape
        self.row_bytes = int(np.prod(shape[1:]))
        done: set[int] = set()
        failures: dict[int, str] = {}
        try:
            state = json.loads(progress_file.read_text(encoding="utf-8"))
            if state["fingerprint"] == fingerprint and partial.is_file():
                done, failures = set(state["done"]), {int(k): v for k, v in state["failures"].items()}
        except Exception:
            done, failures = set(), {}
        if not done:
            partial.parent.mkdir(parents=True, exist_ok=True)
            header = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
            del header  # the file now has its header and its full (sparse) length
        self.offset = _header_length(partial)
        self.fd = os.open(partial, os.O_RDWR)
        self.fingerprint, self.done, self.failures = fingerprint, done, failures
        self.lock = threading.Lock()
        self.last = time.monotonic()

    def write(self, start: int, rows: np.ndarray) -> None:
        os.pwrite(self.fd, np.ascontiguousarray(rows).tobytes(), self.offset + start * self.row_bytes)

    def chunk_done(self, chunk: int, failures: list[tuple[int, str]], force: bool = False) -> None:
        with self.lock:
            self.done.add(chunk)
            self.failures.update(failures)
            if force or time.monotonic() - self.last >= _PROGRESS_EVERY:
                os.fsync(self.fd)  # the rows first, then the claim that they are there
                atomic_write_json(self.progress_file, {"fingerprint": self.fingerprint, "done": sorted(self.done),
                                                       "failures": {str(k): v for k, v in self.failures.items()}})
                self.last = time.monotonic()

    def close(self) -> None:
        os.fsync(self.fd)
        os.close(self.fd)


def _header_length(npy: Path) -> int:
    with open(npy, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        read(f)
        return f.tell()


def _decode_chunk(paths: list[str], size: int, start: int, writer: _Writer | None,
                  out: np.ndarray | None) -> list[tuple[int, str]]:
    rows = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    failures = []
    for i, p in enumerate(paths):
        try:
            rows[i] = decode_image(p, size)
        except ImageDecodeError as e:
            failures.append((start + i, e.reason))
        except MemoryError:
            raise
        except Exception as e:  # a replaced decode_image may raise anything
            failures.append((start + i, f"truncated/corrupt: {short_reason(e)}"))
    if writer is not None:
        writer.write(start, rows)
    else:
        out[start : start + len(paths)] = rows
    return failures


def _decode_all(paths: list[str], size: int, progress: bool, desc: str, writer: _Writer | None = None
                ) -> tuple[np.ndarray | None, dict[int, str]]:
    """Decode every path into its row: of the writer's file, or (no writer) of an array in memory."""
    n = len(paths)
    out = None if writer is not None else np.zeros((n, size, size, 3), dtype=np.uint8)
    done = writer.done if writer is not None else set()
    failures: dict[int, str] = dict(writer.failures) if writer is not None else {}
    todo = [c for c in range((n + _CHUNK - 1) // _CHUNK) if c not in done]
    workers = min(4, os.cpu_count() or 1, max(1, len(todo)))
    with tqdm(total=n, initial=n - sum(min(_CHUNK, n - c * _CHUNK) for c in todo), desc=desc,
              disable=not progress, unit="img") as bar:
        # Every chunk writes its own rows, so the result does not depend on thread timing.
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            jobs = {pool.submit(_decode_chunk, paths[c * _CHUNK : (c + 1) * _CHUNK], size, c * _CHUNK, writer,
                                out): c for c in todo}
            for job in as_completed(jobs):
                chunk_failures = job.result()
                failures.update(chunk_failures)
                if writer is not None:
                    writer.chunk_done(jobs[job], chunk_failures)
                bar.update(min(_CHUNK, n - jobs[job] * _CHUNK))
        finally:
            # On Ctrl-C or an error, do not wait for the queued chunks to finish.
            pool.shutdown(wait=True, cancel_futures=True)
    return out, failures


def _finish(writer: _Writer, npy: Path, keep: np.ndarray | None) -> np.ndarray:
    """Turn the partial file into the cache file (only the ``keep`` rows, when given), memory-mapped."""
    writer.close()
    if keep is None:
        os.replace(writer.partial, npy)
    else:
        full = np.load(writer.partial, mmap_mode="r")
        tmp = npy.with_name(npy.name + ".compact.tmp")
        compact = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(int(keep.sum()), *full.shape[1:]))
        kept = np.flatnonzero(keep)
        for s in range(0, len(kept), _CHUNK):
            compact[s : s + _CHUNK] = full[kept[s : s + _CHUNK]]
            release(compact, np.arange(s, min(s + _CHUNK, len(kept))))
        compact.flush()
        del compact, full
        os.replace(tmp, npy)
        writer.partial.unlink(missing_ok=True)
    writer.progress_file.unlink(missing_ok=True)
    return np.load(npy, mmap_mode="r")


def check_cache_room(n_images: int, image_size: int, cache_dir: str | os.PathLike | None = None,
                     what: str = "the images") -> int:
    """The bytes a cache of ``n_images`` at ``image_size`` needs; refuses (naming ``image_size``) when
    the disk of ``cache_dir`` has not that much free."""
    need = int(n_images) * int(image_size) ** 2 * 3
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return need
    if need > free:
        raise ParameterError(
            "image_size", f"{{name}} {image_size} needs a cache of {_gb(need)} for {n_images} {what} "
                          f"({image_size} x {image_size} x 3 bytes each), but only {_gb(free)} are free on the disk "
                          f"of {folder}; choose a smaller size, or another cache folder (--cache_dir or BAL_CACHE_DIR)")
    return need


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


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


def cached_split(split: FolderSplit, image_size: int, cache_dir: str | os.PathLike | None = None,
                 skip_bad: bool = False) -> ImageSet | None:
    """The split's finished cache, memory-mapped, or None: never decodes (for readers such as a web page)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = _key(["images", CACHE_FORMAT_VERSION, int(image_size), bool(skip_bad), _fingerprint(split)])
    return _open_cached(cache / f"{key}.npy", cache / f"{key}.json", int(image_size))


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
        An unwritable folder only gives a warning (the images are then held in memory).
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
    cached = _open_cached(npy, meta_path, image_size)
    if cached is not None:
        return cached
    # Another process (a second bench on the same cache) may be building this very cache: wait
    # for it, then read what it wrote, instead of decoding into the same partial file.
    with held_lock(cache / f"{key}.lock", waiting=lambda: log.info(
            "waiting for another process that is caching the images under %s (%s)", split.root, cache)):
        cached = _open_cached(npy, meta_path, image_size)
        if cached is not None:
            return cached
        return _build(split, image_size, cache, key, skip_bad, progress, desc)


def _build(split: FolderSplit, image_size: int, cache: Path, key: str, skip_bad: bool, progress: bool,
           desc: str) -> ImageSet:
    """Decode ``split`` into the cache ``cache/{key}.npy`` (resuming a partial one) or, unwritable, into memory."""
    npy, meta_path = cache / f"{key}.npy", cache / f"{key}.json"
    shape = (len(split.paths), image_size, image_size, 3)
    writer = None
    try:
        check_cache_room(len(split.paths), image_size, cache, f"images under {split.root!r}")
        writer = _Writer(cache / f"{key}.partial.npy", cache / f"{key}.progress.json", shape, key)
    except OSError as e:
        warnings.warn(
            f"cannot write the image cache in {str(cache)!r} ({e.strerror or e}); "
            f"continuing without a cache, in memory (set BAL_CACHE_DIR to a writable folder)",
            stacklevel=2,
        )
    images, failures = _decode_all(split.paths, image_size, progress, desc, writer)
    bad = sorted([*split.bad, *((split.paths[i], r) for i, r in failures.items())])

    none_left = len(failures) == len(split.paths)
    if (bad and not skip_bad) or none_left:
        if writer is not None:  # nothing to resume once the files are fixed: their keys change
            writer.close()
            writer.partial.unlink(missing_ok=True)
            writer.progress_file.unlink(missing_ok=True)
        raise _bad_files_error(split.root, bad, none_left=none_left and skip_bad)

    keep = None
    if failures:
        keep = np.array([i not in failures for i in range(len(split.paths))], dtype=bool)
        labels = split.labels[keep]
        paths = [p for p, k in zip(split.paths, keep) if k]
    else:
        labels = np.asarray(split.labels, dtype=np.int64)
        paths = list(split.paths)
    if writer is not None:
        images = _finish(writer, npy, keep)
    elif keep is not None:
        images = images[keep]

    present = set(labels.tolist())
    lost = [c for i, c in enumerate(split.classes) if i not in present and i in set(split.labels.tolist())]
    if failures and lost:
        warnings.warn(
            f"after skipping bad files, no images are left for class(es) {', '.join(lost)} under {split.root!r}",
            stacklevel=2,
        )

    data = ImageSet(images=images, labels=labels, paths=paths, classes=list(split.classes), skipped=bad)
    if writer is not None:
        # the commit point: written last, so a cache without it is never read
        atomic_write_json(meta_path, {"format": CACHE_FORMAT_VERSION, "paths": paths, "labels": labels.tolist(),
                                      "classes": list(split.classes), "skipped": [list(x) for x in bad],
                                      "root": os.path.abspath(split.root), "image_size": image_size,
                                      "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return data


def load_dataset(
    datapath: str | os.PathLike,
    dataset: str,
    image_size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    splits: tuple[FolderSplit, FolderSplit] | None = None,
) -> tuple[ImageSet, ImageSet]:
    """Scan and decode ``datapath/dataset/{train,test}``; returns ``(train, test)``.

    The image size is inferred from the train split when ``image_size`` is None and
    then used for the test split too. Bad files of both splits are checked before
    anything is raised, so the error lists them all in one go. ``splits`` are the two
    scanned splits when the caller has them already.
    """
    train_split, test_split = splits if splits is not None else scan_dataset(datapath, dataset)
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


# -- managing caches (bal cache) -----------------------------------------------------------
@dataclass(frozen=True)
class CacheEntry:
    """One decoded split in a cache folder (``partial``: a build that has not finished)."""

    key: str
    files: tuple[Path, ...]
    bytes: int
    images: int | None
    image_size: int | None
    root: str | None
    modified: float  # seconds since the epoch
    partial: bool


def list_caches(cache_dir: str | os.PathLike | None = None) -> list[CacheEntry]:
    """Every cache (finished or partial) in ``cache_dir``, newest first."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not folder.is_dir():
        return []
    groups: dict[str, list[Path]] = {}
    for f in folder.iterdir():
        key = f.name.split(".")[0]
        if len(key) == 64 and all(c in "0123456789abcdef" for c in key):
            groups.setdefault(key, []).append(f)
    entries = []
    for key, files in groups.items():
        if all(f.name.endswith(".lock") for f in files):
            continue  # the lock of a build that failed (bad files): no cache
        meta: dict = {}
        meta_file = folder / f"{key}.json"
        if meta_file.exists():
            try:
                meta = json.loads(meta_file.read_text(encoding="utf-8"))
            except Exception:
                meta = {}
        stats = [f.stat() for f in files if f.exists()]
        entries.append(CacheEntry(
            key=key, files=tuple(sorted(files)), bytes=sum(st.st_size for st in stats),
            images=len(meta["paths"]) if "paths" in meta else None, image_size=meta.get("image_size"),
            root=meta.get("root"), modified=max((st.st_mtime for st in stats), default=0.0),
            partial=not (folder / f"{key}.npy").exists() or not meta_file.exists()))
    return sorted(entries, key=lambda e: -e.modified)
