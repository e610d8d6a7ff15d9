"""Run folders: each is bound to the settings it was started with.

A folder is bound to the settings of the run that created it (``config.json``-like
files). Running a command again with the same settings resumes it; with different
settings it stops with a message naming every setting that changed, rather than
mixing two experiments in one folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bal.engine import runtime
from bal.errors import BalError
from bal.files import atomic_write_json, read_json


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
