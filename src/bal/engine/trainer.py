"""The training loop shared by the pretext task, the active-learning cycles and project fits.

Images stay in memory as one uint8 tensor (N, S, S, 3); each step gathers a batch by
index, augments it on the device (:class:`bal.data.BatchAugment`) and takes an SGD
step. Every epoch draws its shuffling and augmentation from a generator seeded by
``derive_seed(seed, *stream, epoch)``, and a checkpoint is written atomically after
every epoch, so a run killed at any moment and started again finishes with exactly
the weights of an uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bal.data.augment import BatchAugment
from bal.data.cache import release
from bal.engine import runtime
from bal.engine.runtime import autocast, derive_seed, images_on, scoring_batch_size, to_device
from bal.errors import BalError, ParameterError
from bal.files import atomic_torch_save, load_torch
from bal.validation import check_int, check_real

log = logging.getLogger("bal")

#: uint8 images (N, S, S, 3): an array in memory, one memory-mapped on disk (bal's cache), or a tensor
Images = np.ndarray | torch.Tensor

#: loss_fn(model, inputs (B,3,S,S) float, targets (B,) int64) -> scalar loss
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """SGD with step decay, as in the authors' code (the lr is multiplied by ``gamma`` at each milestone).

    ``milestones`` are epochs (whole numbers ``1 <= m < epochs``) or fractions of
    ``epochs`` (``0 < f < 1``, placed at ``floor(f * epochs + 1/2)``; those that land
    outside ``[1, epochs)`` are dropped). The default, 0.3/0.6/0.9, is the authors'
    30/60/90 of 100 epochs and keeps the decay inside any other number of epochs. A whole
    milestone at or past the last epoch is refused: the lr would never decay and the
    final-epoch accuracy would be as noisy as the undecayed lr makes it.
    """

    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: Sequence[float] = field(default=(0.3, 0.6, 0.9))
    gamma: float = 0.1

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, 1)
        check_int("batch_size", self.batch_size, 1)
        check_real("lr", self.lr, low=0, low_open=True)
        check_real("momentum", self.momentum, low=0, high=1, high_open=True)
        check_real("weight_decay", self.weight_decay, low=0)
        check_real("gamma", self.gamma, low=0, low_open=True, high=1)
        for m in self.milestones:
            if isinstance(m, bool) or not isinstance(m, numbers.Real) or not math.isfinite(m) or m <= 0:
                raise ParameterError("milestones", f"{{name}} must be epochs (whole numbers >= 1) or fractions "
                                                   f"of the epochs (0 < f < 1), got {m!r}")
            if m >= 1 and m != int(m):
                raise ParameterError("milestones", f"{{name}}: {m!r} is neither a whole epoch nor a fraction below 1")
            if m >= 1 and int(m) >= self.epochs:
                raise ParameterError(
                    "milestones", f"{{name}}: epoch {int(m)} is at or past the last epoch ({self.epochs} epochs), so "
                                  f"the learning rate would never decay there; give milestones below {self.epochs} "
                                  f"or as fractions of the epochs (e.g. 0.5 0.75)")

    def resolved_milestones(self) -> list[int]:
        """The milestones as sorted epoch numbers in ``[1, epochs)``."""
        out = set()
        for m in self.milestones:
            epoch = int(m) if m >= 1 else math.floor(m * self.epochs + 0.5)
            if 1 <= epoch < self.epochs:
                out.add(epoch)
        return sorted(out)


def classification_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def batch_indices(indices: np.ndarray, batch_size: int, generator: torch.Generator | None,
                  fold_tail: bool = False) -> list[np.ndarray]:
    """Split ``indices`` into batches, shuffled by ``generator`` when given (no image dropped).

    With ``fold_tail`` (training), a last batch smaller than half a batch joins the one
    before it: 64k + 2 labelled images at batch 64 would otherwise end every epoch with a
    2-image SGD step, whose BatchNorm statistics and gradient are noise (measured: 5.8
    AUBC points lost at batch 64 on a 3,000-image pool). Batches then hold between half and
    one and a half ``batch_size`` images; every image is still seen once an epoch.
    """
    if generator is not None:
        perm = torch.randperm(len(indices), generator=generator).numpy()
        indices = indices[perm]
    batches = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    if fold_tail and len(batches) > 1 and 2 * len(batches[-1]) < batch_size:
        batches[-2:] = [np.concatenate(batches[-2:])]
    return batches


def epoch_batches(
    indices: np.ndarray, batch_size: int, seed: int, stream: tuple, epoch: int
) -> tuple[list[np.ndarray], torch.Generator]:
    """This rank's batches of one epoch, and the generator for their augmentation.

    One process: ``indices`` shuffled and cut into batches of ``batch_size``. Under
    torchrun: the same shuffled order on every rank, padded by wrapping around to a
    multiple of the world size (as DistributedSampler does), and rank r takes every
    r-th image, in batches of ``ceil(batch_size / world)`` so that the global batch
    stays ``batch_size``; every rank gets the same number of batches. A last batch under half
    a batch joins the one before it (:func:`batch_indices`).
    """
    d = runtime.info()
    gen = torch.Generator().manual_seed(derive_seed(seed, *stream, epoch))
    if not d.enabled:
        return batch_indices(indices, batch_size, gen, fold_tail=True), gen
    order = indices[torch.randperm(len(indices), generator=gen).numpy()]
    padded = np.resize(order, -(-len(order) // d.world_size) * d.world_size)
    share = padded[d.rank :: d.world_size]
    aug = torch.Generator().manual_seed(derive_seed(seed, *stream, epoch, "rank", d.rank))
    return batch_indices(share, -(-batch_size // d.world_size), None, fold_tail=True), aug


def gather(images: "Images", idx: np.ndarray, device: torch.device) -> torch.Tensor:
    """The uint8 batch ``images[idx]`` (B, S, S, 3) on ``device``.

    From an array (in memory or memory-mapped) the rows are copied out and their pages
    handed back (:func:`bal.data.cache.release`), so a run's resident memory follows its
    batch, not its pool.
    """
    if isinstance(images, torch.Tensor):
        batch = images[torch.tensor(idx, dtype=torch.int64, device=images.device)]
    else:
        batch = torch.from_numpy(np.take(images, idx, axis=0))
        release(images, idx)
    return batch.to(device, non_blocking=True)


def prepare(augment: BatchAugment, batch: torch.Tensor, train: bool, generator=None) -> torch.Tensor:
    """Augmented (or plain) float batch (B,3,S,S), channels-last like the model."""
    return augment(batch, train=train, generator=generator).contiguous(memory_format=torch.channels_last)


def train_model(
    model: nn.Module,
    images: Images,
    labels: torch.Tensor,
    indices: np.ndarray,
    config: TrainConfig,
    augment: BatchAugment,
    *,
    device: torch.device,
    seed: int,
    stream: tuple = ("train",),
    loss_fn: LossFn = classification_loss,
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
    desc: str = "train",
    log_epochs: bool = False,
) -> nn.Module:
    """Train ``model`` in place on ``images[indices]`` for ``config.epochs`` epochs.

    Parameters
    ----------
    images : uint8 tensor (N, S, S, 3), the whole image set (only ``indices`` are used).
    labels : int64 tensor (N,), targets passed to ``loss_fn``.
    indices : int64 array (M,), the training images.
    stream : names this training's random streams; two trainings with different
        streams never share random numbers.
    checkpoint : file for the per-epoch checkpoint. If it exists, training resumes
        after the epoch it records; it is left in place for the caller to remove.
    log_epochs : log each finished epoch (mean loss, seconds): the sign of life of a long
        training (a pretext: 20 minutes and more on a CPU) when there is no progress bar.
    """
    to_device(model, device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=config.resolved_milestones(), gamma=config.gamma
    )
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    start_epoch = 0
    dist_info = runtime.info()
    if checkpoint is not None and Path(checkpoint).exists():
        redo = f"delete {checkpoint} to train this step again from its first epoch"
        state = load_torch(checkpoint, "a training checkpoint of bal", redo, map_location=device)
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            start_epoch = state["epoch"] + 1
        except Exception as e:  # truncated, or another run's
            raise BalError(f"the checkpoint {checkpoint} is damaged ({type(e).__name__}); {redo}") from None

    net = model
    if dist_info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    images = images_on(images, device)
    labels = labels.to(device)
    indices = np.asarray(indices, dtype=np.int64)
    n_batches = len(epoch_batches(indices, config.batch_size, seed, stream, 0)[0])
    bar = tqdm(
        total=config.epochs * n_batches,
        initial=start_epoch * n_batches,
        desc=desc,
        unit="batch",
        disable=not progress or not dist_info.is_main,
        dynamic_ncols=True,
        leave=False,
    )
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        model.train()
        batches, gen = epoch_batches(indices, config.batch_size, seed, stream, epoch)
        total, count = 0.0, 0
        for b, idx in enumerate(batches):
            x = prepare(augment, gather(images, idx, device), True, gen)
            y = labels[torch.tensor(idx, dtype=torch.int64, device=labels.device)]
            with autocast(device):
                loss = loss_fn(net, x, y)
            value = float(loss.detach())
            if not math.isfinite(value):
                # stop before the step: a NaN would spread into every weight and every later result
                raise BalError(
                    f"{desc}: the training loss became {value} at epoch {epoch + 1} of {config.epochs} (batch "
                    f"{b + 1}); the learning rate {config.lr:g} (--lr) is the likely cause, lower it. Nothing of "
                    f"this epoch was saved; the folder still holds the last finished one")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += value * len(idx)
            count += len(idx)
            bar.update(1)
        scheduler.step()
        bar.set_postfix(epoch=f"{epoch + 1}/{config.epochs}", loss=f"{total / max(count, 1):.3f}")
        if log_epochs and dist_info.is_main:
            log.info("%s: epoch %d/%d, loss %.3f (%.0f s)", desc, epoch + 1, config.epochs, total / max(count, 1),
                     time.perf_counter() - t0)
        if checkpoint is not None and dist_info.is_main:
            atomic_torch_save(
                checkpoint,
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                },
            )
    bar.close()
    return model


@torch.inference_mode()
def predict(
    model: nn.Module,
    images: Images,
    indices: np.ndarray,
    augment: BatchAugment,
    *,
    device: torch.device,
    batch_size: int | None = None,
    features: bool = False,
    progress: bool = False,
    desc: str = "score",
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Logits (M, classes) float32; with ``features=True``, ``(logits, features (M, D))``.

    Eval mode, no augmentation, large batches: this is the pool-scoring path that the
    authors ran one image at a time.
    """
    to_device(model, device).eval()
    images = images_on(images, device)
    logits, feats = [], []
    for idx in tqdm(
        batch_indices(np.asarray(indices, dtype=np.int64), batch_size or scoring_batch_size(device), None),
        desc=desc,
        unit="batch",
        disable=not progress,
        leave=False,
    ):
        x = prepare(augment, gather(images, idx, device), False)
        with autocast(device):
            f = model.forward_features(x)
            logits.append(model.head(f).float().cpu())
        if features:
            feats.append(f.float().cpu())
    n_out = model.head.out_features
    out = torch.cat(logits).numpy() if logits else np.zeros((0, n_out), dtype=np.float32)
    if not features:
        return out
    return out, (torch.cat(feats).numpy() if feats else np.zeros((0, model.feature_dim), dtype=np.float32))


def evaluate(
    model: nn.Module,
    images: Images,
    labels: np.ndarray,
    augment: BatchAugment,
    n_classes: int,
    *,
    device: torch.device,
    batch_size: int | None = None,
) -> tuple[float, np.ndarray]:
    """Top-1 accuracy in percent, and per-class accuracy in percent (n_classes,), NaN for absent classes."""
    logits = predict(model, images, np.arange(len(labels)), augment, device=device, batch_size=batch_size)
    return accuracy_of(logits, labels, n_classes)


def accuracy_of(logits: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[float, np.ndarray]:
    """Top-1 accuracy in percent of ``logits`` (N, C), and per class (NaN for classes absent from ``labels``)."""
    labels = np.asarray(labels)
    correct = logits.argmax(1) == labels
    per_class = np.full(n_classes, np.nan)
    for c in range(n_classes):
        mask = labels == c
        if mask.any():
            per_class[c] = 100.0 * correct[mask].mean()
    return 100.0 * float(correct.mean()), per_class
