"""A pretrained network that maps each image to one feature vector, with the preprocessing it expects.

An :class:`Embedder` carries, as timm's ``pretrained_cfg`` does, what its network was
trained with: the input size, the interpolation, the mean and standard deviation. bal
decodes images as squares (uint8, N x S x S x 3), so preprocessing is a resize of the
whole square to ``input_size`` and the model's normalisation; no crop, since at 32 px
a centre crop would cut away an eighth of a small image's subject.

Features are computed in batches (memory grows with the batch, not with the pool), in
mixed precision on a GPU, and written into a memory-mapped array by the cache of
:mod:`bal.embedding.store`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bal.engine.runtime import autocast

__all__ = ["Embedder"]


@dataclass
class Embedder:
    """``model`` maps normalised float images (B, 3, S, S) to features (B, D); the rest is its configuration."""

    name: str  # the embedding's name as the user gave it, e.g. "efficientnet_lite0", "timm:resnet18"
    model: nn.Module
    dim: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"  # "bilinear" or "bicubic", as the model was trained
    weights: str = ""  # a digest of the weights: features of other weights are other features
    extra: dict = field(default_factory=dict)  # anything else the features depend on

    def identity(self) -> dict:
        """What the features depend on, besides the images: the key of cached embeddings."""
        return {"name": self.name, "weights": self.weights, "dim": self.dim, "input_size": self.input_size,
                "mean": list(self.mean), "std": list(self.std), "interpolation": self.interpolation, **self.extra}

    def preprocess(self, batch: np.ndarray, device: torch.device) -> torch.Tensor:
        """uint8 (B, S, S, 3) -> normalised float (B, 3, input_size, input_size) on ``device``."""
        x = torch.from_numpy(np.array(batch, dtype=np.uint8)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode=self.interpolation,
                              align_corners=False, antialias=x.shape[-1] > self.input_size).clamp_(0.0, 1.0)
        mean = torch.tensor(self.mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def embed_batches(self, images: np.ndarray, start: int, *, device: torch.device | str = "cpu",
                      batch_size: int = 64, write: Callable[[int, np.ndarray], None]) -> None:
        """Embed ``images[start:]`` batch by batch, handing each ``(first row, features float32)`` to ``write``."""
        device = torch.device(device)
        model = self.model.to(device=device, memory_format=torch.channels_last).eval()
        for first in range(start, len(images), batch_size):
            x = self.preprocess(images[first : first + batch_size], device)
            with autocast(device):
                out = model(x)
            write(first, out.float().cpu().numpy())

    def embed(self, images: np.ndarray, *, device: torch.device | str = "cpu", batch_size: int = 64) -> np.ndarray:
        """Features (N, D) float32 of uint8 images (N, S, S, 3), in memory (the cache writes to disk instead)."""
        out = np.zeros((len(images), self.dim), dtype=np.float32)

        def write(first: int, rows: np.ndarray) -> None:
            out[first : first + len(rows)] = rows

        self.embed_batches(images, 0, device=device, batch_size=batch_size, write=write)
        return out
