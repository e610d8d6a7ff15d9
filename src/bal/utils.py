"""Small helpers shared by every stage: atomic files, seeds and devices."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np


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

    atomic_write(path, lambda f: torch.save(obj, f))


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line and flush it to disk (used for ``metrics.jsonl``)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_lines(path: str | os.PathLike, lines: list[str]) -> None:
    atomic_write_text(path, "".join(f"{x}\n" for x in lines))


def read_lines(path: str | os.PathLike) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed derived from ``seed`` and a purpose, e.g. ``derive_seed(0, "train", 3, 17)``.

    Every random stream (shuffling of one epoch, augmentation, first-cycle picks) gets
    its own seed this way, so a run resumed at any epoch draws exactly the numbers an
    uninterrupted run would have drawn, without saving generator states.
    """
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def resolve_device(device: str = "auto") -> "torch.device":  # noqa: F821
    """``"auto"`` picks CUDA when present, else the CPU; anything else is passed to torch."""
    import torch

    from bal.errors import BalError

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise BalError(f"--device {device!r} is not a device torch knows ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BalError(f"--device {device!r} asks for CUDA, but torch sees no CUDA device here")
    return dev
