"""Run folders: each is bound to the settings it was started with, and to the images it saw.

A folder is bound to the settings of the run that created it (``config.json``-like
files). Running a command again with the same settings resumes it; with different
settings it stops with a message naming every setting that changed, rather than
mixing two experiments in one folder. It is also bound to the content of its images
(:func:`bind_content`): a resumed run whose pool or test images changed on disk stops
and lists them, rather than finishing on other data than it started with.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bal.engine import runtime
from bal.errors import BalError
from bal.files import atomic_save_npy, atomic_write_json, read_json


def _normalised(obj: Any) -> Any:
    # Tuples and lists, ints and floats, compare as they read back from JSON.
    return json.loads(json.dumps(obj, sort_keys=True))


def bind_config(path: str | os.PathLike, config: dict, what: str) -> None:
    """Write ``config`` to ``path``, or check that the one already there is the same.

    Raises :class:`BalError` listing each setting whose value differs.
    """
    path = Path(path)
    config = _normalised(config)
    if path.exists():
        old = read_json(path)
        changed = [
            f"{key}: was {old.get(key)!r}, now {config.get(key)!r}"
            for key in sorted(set(old) | set(config))
            if old.get(key) != config.get(key)
        ]
        if changed:
            raise BalError(
                f"{path.parent} already holds a {what} started with other settings ("
                + "; ".join(changed)
                + "). Use another output folder, or delete this one to start over."
            )
        return
    if runtime.is_main():  # under torchrun only rank 0 writes files
        atomic_write_json(path, config)


def bind_content(folder: str | os.PathLike, sets: dict[str, tuple[Sequence[str], np.ndarray]]) -> None:
    """Record the pixels' checksums of each named image set (``name -> (paths, images)``) in
    ``folder/content_NAME.npy``, or check them against the ones recorded at the start.

    Raises :class:`BalError` listing the images whose content changed (up to 50).
    """
    from bal.data.imageset import row_digests

    folder = Path(folder)
    for name, (paths, images) in sets.items():
        path = folder / f"content_{name}.npy"
        digests = row_digests(images)
        if not path.exists():
            if runtime.is_main():
                atomic_save_npy(path, digests)
            continue
        try:
            before = np.load(path, allow_pickle=False)
        except (ValueError, OSError):
            raise BalError(f"{path} is damaged; delete it to record the images' content again") from None
        if before.shape != digests.shape:
            raise BalError(f"{folder} was started on {len(before)} {name} images, now there are {len(digests)}; "
                           f"use another output folder, or delete this one to start over")
        changed = np.flatnonzero(before != digests)
        if changed.size:
            listing = "\n".join(f"  {paths[i]}" for i in changed[:50])
            more = f"\n  ... and {changed.size - 50} more" if changed.size > 50 else ""
            raise BalError(f"{changed.size} {name} image(s) changed since the run in {folder} started; put the "
                           f"original files back, or start a new run in another folder:\n{listing}{more}")
