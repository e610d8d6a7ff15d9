"""Batched augmentation on uint8 tensors: random crop with zero padding, flip, normalise.

Equivalent, image for image, to torchvision's
``RandomCrop(size, padding=p)`` + ``RandomHorizontalFlip()`` + ``ToTensor()`` +
``Normalize(mean, std)``, but done for a whole batch with one gather, on whatever
device the batch lives on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["BatchAugment", "crop_flip"]


class BatchAugment:
    """Batched train/eval transform on uint8 NHWC tensors -> normalised float NCHW.

    Parameters
    ----------
    mean, std : sequence of 3 floats
        Per-channel normalisation on the 0..1 scale: ``(x / 255 - mean) / std``.
    crop_padding : int, default 4
        Zero padding added on every side of the raw image before a random crop of
        the original size is taken (the padding is black before normalisation,
        as with torchvision's ``RandomCrop(padding=p)``). 0 disables cropping.
    hflip : bool, default True
        Flip each image horizontally with probability 0.5 in training mode.

    Notes
    -----
    Random numbers are drawn on the CPU from ``generator`` (which must be a CPU
    generator, or None for torch's global one) and then moved to the batch's device,
    so a seed gives the same augmentation on CPU and GPU. Per call the draws are:
    ``randint(0, 2p+1, (B, 2))`` for (top, left) offsets when ``crop_padding > 0``,
    then ``randint(0, 2, (B,))`` for flips when ``hflip``.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        crop_padding: int = 4,
        hflip: bool = True,
    ):
        mean_t = torch.as_tensor([float(m) for m in mean], dtype=torch.float32)
        std_t = torch.as_tensor([float(s) for s in std], dtype=torch.float32)
        if mean_t.shape != (3,) or std_t.shape != (3,):
            raise ValueError(f"mean and std need 3 values (RGB), got {len(mean_t)} and {len(std_t)}")
        if not bool((std_t > 0).all()):
            raise ValueError(f"std must be positive, got {std_t.tolist()}")
        if int(crop_padding) != crop_padding or crop_padding < 0:
            raise ValueError(f"crop_padding must be a non-negative integer, got {crop_padding!r}")
        self.mean = tuple(mean_t.tolist())
        self.std = tuple(std_t.tolist())
        self.crop_padding = int(crop_padding)
        self.hflip = bool(hflip)
        self._mean = mean_t.view(1, 3, 1, 1)
        self._std = std_t.view(1, 3, 1, 1)
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __repr__(self) -> str:
        return (
            f"BatchAugment(mean={list(self.mean)}, std={list(self.std)}, "
            f"crop_padding={self.crop_padding}, hflip={self.hflip})"
        )

    def state(self) -> dict:
        """The settings as plain values (stored in model files, so normalisation travels with the model)."""
        return {"mean": list(self.mean), "std": list(self.std), "crop_padding": self.crop_padding,
                "hflip": self.hflip}

    @classmethod
    def from_state(cls, state: dict) -> "BatchAugment":
        """The transform :meth:`state` describes."""
        return cls(state["mean"], state["std"], crop_padding=state["crop_padding"], hflip=state["hflip"])

    def _stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._on_device:
            self._on_device[device] = (self._mean.to(device), self._std.to(device))
        return self._on_device[device]

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> float32 (B, 3, H, W), ``(x / 255 - mean) / std``."""
        mean, std = self._stats(batch.device)
        # Reorder while still uint8: a quarter of the bytes to move compared with float.
        x = batch.permute(0, 3, 1, 2).contiguous().to(torch.float32)
        return x.div_(255.0).sub_(mean).div_(std)

    def __call__(
        self,
        batch: torch.Tensor,
        train: bool,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Transform one batch.

        Parameters
        ----------
        batch : uint8 tensor of shape (B, H, W, 3), on any device
        train : bool
            True: random crop and flip, then normalise. False: only normalise.
        generator : torch.Generator on the CPU, optional

        Returns
        -------
        float32 tensor of shape (B, 3, H, W) on ``batch.device``.
        """
        if not isinstance(batch, torch.Tensor) or batch.dtype != torch.uint8:
            raise TypeError(f"batch must be a uint8 tensor, got {getattr(batch, 'dtype', type(batch))}")
        if batch.dim() != 4 or batch.shape[-1] != 3:
            raise ValueError(f"batch must have shape (B, H, W, 3), got {tuple(batch.shape)}")
        if train and (self.crop_padding > 0 or self.hflip):
            batch = self._crop_flip(batch, generator)
        return self.normalize(batch)

    def _crop_flip(self, batch: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        b, h, w, _ = batch.shape
        p = self.crop_padding
        device = batch.device
        if p > 0:
            offsets = torch.randint(0, 2 * p + 1, (b, 2), generator=generator)
        else:
            offsets = torch.zeros((b, 2), dtype=torch.int64)
        if self.hflip:
            flips = torch.randint(0, 2, (b,), generator=generator).bool()
        else:
            flips = torch.zeros((b,), dtype=torch.bool)
        return crop_flip(batch, offsets.to(device), flips.to(device), p)


def crop_flip(batch: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, padding: int) -> torch.Tensor:
    """Crop each zero-padded image at given offsets and flip the chosen ones.

    Parameters
    ----------
    batch : tensor (B, H, W, C), any dtype
    offsets : int64 tensor (B, 2)
        (top, left) of each crop in the padded image, each in ``0 .. 2 * padding``.
    flips : bool tensor (B,)
        Mirror the crop left-right where True.
    padding : int
        Zeros added on every side before cropping.

    Returns
    -------
    tensor (B, H, W, C), same dtype and device as ``batch``.
    Image k equals ``pad(batch[k])[top:top+H, left:left+W]``, then mirrored if flipped.
    """
    b, h, w, c = batch.shape
    device = batch.device
    if padding > 0:
        # (C, W, H) padding order for an NHWC tensor: channels untouched.
        padded = torch.nn.functional.pad(batch, (0, 0, padding, padding, padding, padding))
    else:
        padded = batch
    hp, wp = h + 2 * padding, w + 2 * padding
    rows = offsets[:, 0:1] + torch.arange(h, device=device)  # (B, H)
    cols_fwd = torch.arange(w, device=device)
    cols = offsets[:, 1:2] + torch.where(flips[:, None], cols_fwd.flip(0), cols_fwd)  # (B, W)
    rows = rows + (torch.arange(b, device=device) * hp)[:, None]
    # One index_select of whole pixels (C values each) over the flattened batch is
    # several times faster than 3-D advanced indexing.
    pixel = (rows[:, :, None] * wp + cols[:, None, :]).reshape(-1)
    return padded.reshape(-1, c).index_select(0, pixel).view(b, h, w, c)
