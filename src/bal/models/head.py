"""A head on a frozen embedding: the task model of ``--task_model linear``.

The embedding's rows are L2-normalised (the geometry the selection rules read), then
standardised with the pool's own per-feature mean and deviation (no label is involved,
so using the whole pool is fair), then mapped to class logits by one linear layer, or by
a small MLP when ``hidden`` > 0. The statistics are buffers, so a saved head is whole:
``head(features)`` needs nothing else.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from bal.errors import BalError
from bal.files import atomic_torch_save, load_torch

__all__ = ["Head", "head_from_file_content", "head_statistics", "is_head_file", "load_head", "save_head", "standardise"]


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def standardise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Embedding rows as a head reads them: L2-normalised, then standardised per feature with the pool's
    ``mean`` and ``std`` of the normalised rows (:func:`head_statistics`)."""
    return (_unit(x.float()) - mean) / std


def head_statistics(features: np.ndarray, rows: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation of the L2-normalised rows, read in blocks (memory-mapped pools)."""
    n, d = features.shape
    total, total2 = np.zeros(d), np.zeros(d)
    for start in range(0, n, rows):
        block = _unit(torch.from_numpy(np.asarray(features[start : start + rows], dtype=np.float64))).numpy()
        total += block.sum(0)
        total2 += (block**2).sum(0)
    mean = total / max(1, n)
    std = np.sqrt(np.maximum(total2 / max(1, n) - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


class Head(nn.Module):
    """Logits (B, classes) of embedding rows (B, dim)."""

    def __init__(self, dim: int, classes: int, hidden: int = 0, mean: np.ndarray | None = None,
                 std: np.ndarray | None = None):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean if mean is not None else np.zeros(dim), dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std if std is not None else np.ones(dim), dtype=torch.float32))
        self.hidden = int(hidden)
        # body: the standardised rows to the features the last layer reads (nothing for a linear head)
        self.body = nn.Identity() if not hidden else nn.Sequential(nn.Linear(dim, hidden), nn.ReLU())
        self.last = nn.Linear(hidden or dim, classes)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The standardised rows the layers read."""
        return standardise(x, self.mean, self.std)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What the last linear layer reads (what uncertainty rules, BADGE and DropQuery see as the model's
        features): the standardised rows for a linear head, the hidden activations for an MLP."""
        return self.body(self.inputs(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.features(x))


def save_head(path: str | os.PathLike, head: Head, *, classes: list[str], embedding: dict) -> None:
    """A head and what it reads: its classes and the embedding's settings (to compute its input again)."""
    atomic_torch_save(path, {"format": "bal-head", "dim": int(head.mean.shape[0]), "classes": list(classes),
                             "hidden": head.hidden, "embedding": dict(embedding),
                             "state_dict": {k: v.detach().cpu() for k, v in head.state_dict().items()}})


def load_head(path: str | os.PathLike, redo: str) -> tuple[Head, dict]:
    """A head saved by :func:`save_head` (loaded as data only), and the rest of the file (classes, embedding)."""
    return head_from_file_content(load_torch(path, "a head of bal (--task_model linear)", redo, kind="model file"),
                                  path, redo)


def head_from_file_content(saved: object, path: str | os.PathLike, redo: str) -> tuple[Head, dict]:
    """:func:`load_head` for a file already loaded (``saved``, from ``path``)."""
    if not is_head_file(saved):
        raise BalError(f"{path} is not a head saved by bal; {redo}")
    try:
        head = Head(int(saved["dim"]), len(saved["classes"]), int(saved["hidden"]))
        head.load_state_dict(saved["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise BalError(f"{path} is a damaged head file ({type(e).__name__}); {redo}") from None
    return head.eval(), {k: v for k, v in saved.items() if k != "state_dict"}


def is_head_file(saved: object) -> bool:
    return isinstance(saved, dict) and saved.get("format") == "bal-head"
