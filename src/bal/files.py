"""Files every stage writes: atomically (temporary file, then rename), so a kill never leaves half a file.

Text files are UTF-8. A reader of any file written here sees the old content or the
new one, never a mix; that is what makes every run folder resumable.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from bal.errors import BalError


def _file_mode() -> int:
    # mkstemp creates 0600 files; outputs should get the usual rw-r--r-- under the user's umask.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a temporary file and rename it over ``path`` once it is complete.

    A reader (or a run resumed after a kill) sees the old file or the new one, never
    half of one: the temporary file lives in the same folder, is flushed to disk, and
    ``os.replace`` swaps it in atomically. Writers stream into the file, so saving a
    large array needs no second copy of it in memory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.filename is None:  # a failed write says which file it was writing (a full disk, say)
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    import torch

    # Serialised in memory first: torch's own file writer turns a full disk into a RuntimeError
    # ("unexpected pos ..."), while a plain write raises the OSError (ENOSPC) that names the cause.
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, lambda f: f.write(buf.getbuffer()))


class UnsafeFileError(BalError):
    """A torch file that holds more than tensors, numbers, strings and containers: it could run code."""


def load_torch(path: str | os.PathLike, what: str, redo: str, map_location: Any = "cpu", kind: str = "torch file"
               ) -> Any:
    """The content of a torch file, loaded as data only (``weights_only=True``): the one loader of bal.

    Every ``.pth`` bal reads (model files, per-epoch checkpoints, a project's models, a
    backbone's weights) comes through here. A pickle can run any code when it is loaded;
    with ``weights_only`` torch only rebuilds tensors, numbers, strings and the plain
    containers bal writes (dicts, lists, tuples, ``OrderedDict``, ``Counter``), and
    refuses anything else. ``what`` says what the file should hold and ``redo`` how the
    user gets a good one back; both go into the message of a file that is refused.

    Raises
    ------
    BalError
        A missing file; :class:`UnsafeFileError` for one that holds code or objects bal
        never writes; a truncated or foreign one (each names the file).
    """
    import pickle

    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise BalError(f"{path} is missing: it should hold {what}; {redo}") from None
    except IsADirectoryError:
        raise BalError(f"{path} is a folder; it should be a file holding {what}; {redo}") from None
    except pickle.UnpicklingError as e:
        # torch names what it refused: a GLOBAL (a function or class: the way a pickle runs code) is
        # unsafe; an unknown opcode ("Unsupported operand") is garbage or a truncated file
        if "unsupported global" in str(e).lower():
            raise UnsafeFileError(
                f"{path} holds Python objects that bal never writes (loading it could run code), so it was not "
                f"loaded; it should hold {what}. If it is not yours, delete it; then {redo}") from None
        raise BalError(f"{path} is truncated or not a {kind} ({_reason(e)}); it should hold {what}; {redo}"
                       ) from None
    except OSError as e:
        if e.errno is not None:  # permissions, an unreadable disk: say so, the file may be fine
            raise BalError(f"{path} cannot be read: {e.strerror}") from None
        raise BalError(f"{path} is truncated or not a {kind} ({_reason(e)}); it should hold {what}; {redo}"
                       ) from None
    except Exception as e:  # a truncated zip (RuntimeError), EOFError, a ValueError from the unpickler...
        raise BalError(f"{path} is truncated or not a {kind} ({_reason(e)}); it should hold {what}; {redo}"
                       ) from None


def _reason(e: BaseException) -> str:
    """The line of an exception that says what went wrong (torch's unpickler says it after a preamble)."""
    lines = [x.strip() for x in str(e).strip().splitlines() if x.strip()]
    useful = [x for x in lines if "unsupported" in x.lower()] or lines or [type(e).__name__]
    line = useful[0]
    return line if len(line) <= 160 else line[:157] + "..."


@contextlib.contextmanager
def held_lock(path: str | os.PathLike, waiting: Callable[[], None] | None = None, *,
              wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on the file ``path`` across processes for the block; yields True.

    Two benches that share a cache or a pretext folder would otherwise build the same
    file at once and pull it from under each other (seen: ``os.replace`` of a removed
    ``.partial.npy``). The second one waits here, calling ``waiting()`` once if it has
    to, and then finds the finished file; with ``wait=False`` it does not wait, and the
    block gets False (someone else holds the lock; come back later). The lock is the
    operating system's (``fcntl.flock``), released when the process dies, so a killed run
    leaves no stale lock. Where it cannot be taken (no ``fcntl``, as on Windows; a
    read-only folder) the block runs unlocked, as before, and gets True.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield True
        return
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
    except OSError:
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            if waiting is not None:
                waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without locks: run unlocked
            pass
        yield True
    finally:
        os.close(fd)  # releases the lock


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, hex: what identifies an image's content (a project's images, the cache's key)."""
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def array_digest(array: np.ndarray | None) -> str | None:
    """SHA-256 of an array's bytes, the first 16 hex digits (None for None): what a run's settings record of
    the rows it read (a pretext's order or features, an embedding), so a resume on other rows is refused."""
    import hashlib

    if array is None:
        return None
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def file_digests(paths: Sequence[str | os.PathLike], threads: int = 8) -> list[str | None]:
    """:func:`file_digest` of each path, read on a few threads (hashing releases the GIL); None if unreadable."""
    from concurrent.futures import ThreadPoolExecutor

    def one(p):
        try:
            return file_digest(p)
        except OSError:
            return None

    if len(paths) < 64:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, paths, chunksize=256))


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line and flush it to disk (used for ``metrics.jsonl``)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_lines(path: str | os.PathLike, lines: list[str]) -> None:
    atomic_write_text(path, "".join(f"{x}\n" for x in lines))


def read_lines(path: str | os.PathLike) -> list[str]:
    """The non-empty lines of a UTF-8 text file; a folder, a missing file or a binary one is a BalError naming it."""
    if Path(path).is_dir():
        raise BalError(f"{path} is a folder, not a text file of one path per line")
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except FileNotFoundError:
        raise BalError(f"{path} does not exist") from None
    except UnicodeDecodeError as e:
        raise BalError(f"{path} is not a UTF-8 text file (byte {e.start} cannot be read); it must list one "
                       f"path per line") from None


def load_npy(path: str | os.PathLike, what: str, mmap: bool = False) -> np.ndarray:
    """A .npy array bal wrote; a missing, truncated or foreign file is a BalError naming it and ``what`` it held."""
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except FileNotFoundError:
        raise BalError(f"{path} is missing: the {what} are not there") from None
    except (ValueError, OSError, EOFError) as e:
        raise BalError(f"{path} is truncated or not a NumPy file ({e}); it should hold the {what}: "
                       f"produce it again (delete it and run the step that writes it)") from None


def read_json(path: str | os.PathLike) -> Any:
    """The JSON value in ``path``; a file that is not JSON is a BalError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise BalError(f"{path} is not valid JSON ({e}); it was not written by this version of bal") from None


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Write ``rows`` as CSV with a header of ``columns``, atomically.

    Values are written with ``str`` (floats keep full precision); a missing key or
    ``None`` becomes an empty field. Keys not in ``columns`` are ignored. Lines end
    in ``\\n``.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    atomic_write_text(path, buf.getvalue())
