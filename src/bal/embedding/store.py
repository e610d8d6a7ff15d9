"""Embeddings computed once and kept: a memory-mapped ``.npy`` per (images, model, weights, preprocessing).

The key is a digest of the embedder's identity (:meth:`Embedder.identity`: name, weights
digest, input size, interpolation, mean and std, precision) and of the images' pixels
(:func:`bal.data.imageset.row_digests`, 0.3 s for 50,000 CIFAR images), so a changed
image, other weights or another size is another file, and every later query, bench pair
and fit of the same pool reads the same one. Files live in ``CACHE/embeddings/`` beside
the decoded images (``$BAL_CACHE_DIR``, else ``~/.cache/bal``).

A computation is resumable: rows are written batch by batch into ``NAME.partial.npy``
and ``NAME.partial.json`` records how many are done (and the batch size, so a resumed
run cuts the same batches); the finished array is renamed into place, its commit point.
Two processes that need the same embedding do not compute it twice: the second waits
on a lock and then reads the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bal.data import default_cache_dir
from bal.data.imageset import row_digests
from bal.embedding.embedder import Embedder
from bal.errors import BalError
from bal.files import atomic_write_json, held_lock, read_json

__all__ = ["embed_images", "embedding_key", "record_identity", "recorded_identity"]

log = logging.getLogger("bal")

#: Seconds between two records of progress (each one an atomic file write).
_SAVE_EVERY = 5.0


def embedding_key(identity: dict, images: np.ndarray, precision: str) -> str:
    """The cache key of ``images`` under an embedder of this :meth:`~Embedder.identity`, in ``precision``
    ("fp32" or "amp")."""
    h = hashlib.sha256(json.dumps({**identity, "precision": precision}, sort_keys=True).encode())
    h.update(json.dumps(list(images.shape)).encode())
    h.update(row_digests(images).tobytes())
    return h.hexdigest()[:20]


def embed_images(
    embedder: Embedder | Callable[[], Embedder],
    images: np.ndarray,
    *,
    identity: dict | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    progress: bool = False,
    what: str = "images",
) -> np.ndarray:
    """Features (N, D) float32 of uint8 ``images`` (N, S, S, 3) under ``embedder``, read-only, memory-mapped.

    Computed on ``device`` (in mixed precision on a GPU) the first time, resumed where an
    interrupted computation stopped, and read from the cache afterwards. ``embedder`` may be
    a function that builds it, with its ``identity`` given: then a cached embedding is read
    without building the network (which costs seconds of imports and weights).
    """
    device = torch.device(device)
    precision = "amp" if device.type == "cuda" else "fp32"
    if identity is None:
        embedder = embedder if isinstance(embedder, Embedder) else embedder()
        identity = embedder.identity()
    key = embedding_key(identity, images, precision)
    slug = str(identity["name"]).replace(":", "-").replace("/", "-")
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = folder / "embeddings" / f"{slug}-{key}.npy"
    if final.exists():
        return np.load(final, mmap_mode="r")
    final.parent.mkdir(parents=True, exist_ok=True)
    with held_lock(final.with_suffix(".lock"), waiting=lambda: log.info(
            "embedding %s: waiting for another process that computes it", what)):
        if final.exists():
            return np.load(final, mmap_mode="r")
        embedder = embedder if isinstance(embedder, Embedder) else embedder()
        if embedder.identity() != identity:  # a recorded identity that no longer holds: never mix features
            raise BalError(f"the embedding {identity['name']} is not what was recorded for it; delete "
                           f"{final.parent / 'identities.json'} and run again")
        _compute(embedder, images, final, device, batch_size, progress, what)
    return np.load(final, mmap_mode="r")


def _compute(embedder: Embedder, images: np.ndarray, final: Path, device: torch.device, batch_size: int | None,
             progress: bool, what: str) -> None:
    partial = final.with_name(final.stem + ".partial.npy")
    record = final.with_name(final.stem + ".partial.json")
    n, dim = len(images), embedder.dim
    state = read_json(record) if record.exists() and partial.exists() else None
    if state is not None and state.get("rows") == n and state.get("dim") == dim:
        out = np.lib.format.open_memmap(partial, mode="r+")
        done, batch_size = int(state["done"]), int(state["batch_size"])
        log.info("embedding %s with %s: resuming after %d of %d images", what, embedder.name, done, n)
    else:
        batch_size = batch_size or (256 if device.type == "cuda" else 64)
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(n, dim))
        done = 0
        log.info("embedding %s with %s (%d px, %d features) on %s", what, embedder.name, embedder.input_size, dim,
                 device)
    bar = tqdm(total=n, initial=done, desc=f"embed {what} ({embedder.name})", unit="img", disable=not progress,
               leave=False)
    last = time.monotonic()

    def save(rows_done: int) -> None:
        out.flush()
        atomic_write_json(record, {"rows": n, "dim": dim, "done": rows_done, "batch_size": batch_size})

    def write(first: int, rows: np.ndarray) -> None:
        nonlocal last
        if not np.isfinite(rows).all():
            raise BalError(f"{embedder.name} gave NaN or infinity for {what} {first}..{first + len(rows) - 1}; "
                           f"nothing was recorded for them")
        out[first : first + len(rows)] = rows
        bar.update(len(rows))
        if time.monotonic() - last > _SAVE_EVERY:
            save(first + len(rows))
            last = time.monotonic()

    try:
        embedder.embed_batches(images, done, device=device, batch_size=batch_size, write=write)
    finally:
        bar.close()
    out.flush()
    os.replace(partial, final)  # the commit point
    record.unlink(missing_ok=True)


def recorded_identity(cache_dir: str | os.PathLike | None, spec: dict) -> dict | None:
    """The identity an embedder of ``spec`` (name, weights digest, size) had when it was last built here."""
    path = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "embeddings" / "identities.json"
    known = read_json(path) if path.exists() else {}
    return known.get(json.dumps(spec, sort_keys=True)) if isinstance(known, dict) else None


def record_identity(cache_dir: str | os.PathLike | None, spec: dict, identity: dict) -> None:
    """Remember ``identity`` for ``spec``, so later runs find a cached embedding without building the network."""
    path = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "embeddings" / "identities.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with held_lock(path.with_suffix(".lock")):
        known = read_json(path) if path.exists() else {}
        known = known if isinstance(known, dict) else {}
        known[json.dumps(spec, sort_keys=True)] = identity
        atomic_write_json(path, known)
