"""Step 1: rotation prediction on the unlabelled pool (docs/method.md, step 1).

A network with a 4-way head learns which of 0°, 90°, 180°, 270° an image was turned
by. Every image contributes all four rotations; the loss is the mean cross-entropy
over them. Afterwards each pool image gets its mean rotation loss (PT4AL sorts by it)
and the penultimate-layer features of its upright version (BAL clusters them).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bal.data import BatchAugment, ImageSet
from bal.engine import runtime
from bal.engine.runfolder import bind_config, bind_content
from bal.engine.runtime import autocast, derive_seed, images_on, scoring_batch_size, to_device
from bal.engine.trainer import TrainConfig, batch_indices, gather, prepare, train_model
from bal.files import held_lock
from bal.models import create_model
from bal.pretext.features import VIEWS
from bal.pretext.store import RotationResult, is_complete, read_rotation, write_rotation

log = logging.getLogger("bal")

N_ROTATIONS = 4

#: The authors' pretext schedule (docs/method.md): 120 epochs, batch 256, milestones 30/60/90
#: (a quarter, half and three quarters of the epochs, so the decay follows --epochs).
ROTATION_DEFAULTS = TrainConfig(epochs=120, batch_size=256, lr=0.1, milestones=(0.25, 0.5, 0.75))


def rotate_batch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,3,S,S) -> the four rotations stacked (4B,3,S,S) and their labels (4B,) in 0..3."""
    rotated = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(N_ROTATIONS)])
    targets = torch.arange(N_ROTATIONS, device=x.device).repeat_interleave(len(x))
    return rotated, targets


def rotation_loss(model: nn.Module, x: torch.Tensor, _targets: torch.Tensor) -> torch.Tensor:
    rotated, targets = rotate_batch(x)
    rotated = rotated.contiguous(memory_format=torch.channels_last)
    return F.cross_entropy(model(rotated), targets)


@dataclass
class RotationScores:
    """What scoring the pool in its four rotations gives, in pool order."""

    losses: np.ndarray  # float32 (N,), mean cross-entropy over the four rotations
    views: dict[str, np.ndarray]  # view name -> float32 (N, D) penultimate features
    accuracy: float  # % of the 4N rotated images whose rotation is predicted right


@torch.inference_mode()
def rotation_scores(
    model: nn.Module,
    images: np.ndarray,
    augment: BatchAugment,
    *,
    device: torch.device,
    batch_size: int | None = None,
    seed: int = 0,
    into: str | os.PathLike | None = None,
) -> RotationScores:
    """Mean rotation loss, features of every :data:`VIEWS` and rotation accuracy of every image.

    Each batch is scored in its four rotations, so it takes a quarter of the usual
    scoring batch (:func:`bal.engine.runtime.scoring_batch_size`). The ``random`` view of
    image i is rotation ``k_i``, with ``k`` drawn from ``derive_seed(seed, "rotation-view")``.
    With ``into`` (a folder), the arrays are written there batch by batch as memory-mapped
    ``.part`` files (:func:`bal.pretext.store.write_rotation` renames them), so scoring a
    million images holds one batch of features in memory, not three views of the pool.
    """
    to_device(model, device).eval()
    images = images_on(images, device)
    n = len(images)
    pick = torch.from_numpy(np.random.default_rng(derive_seed(seed, "rotation-view")).integers(0, N_ROTATIONS, n))
    dim = getattr(model, "feature_dim", None)
    out: dict[str, np.ndarray] = {}
    correct, start = 0, 0
    for idx in batch_indices(np.arange(n), batch_size or scoring_batch_size(device) // 4, None):
        x = prepare(augment, gather(images, idx, device), False)
        rotated, targets = rotate_batch(x)
        rotated = rotated.contiguous(memory_format=torch.channels_last)
        with autocast(device):
            features = model.forward_features(rotated)
            logits = model.head(features)
        per_sample = F.cross_entropy(logits.float(), targets, reduction="none")
        correct += int((logits.argmax(1) == targets).sum())
        blocks = features.float().view(N_ROTATIONS, len(idx), -1).cpu()
        batch = {"losses": per_sample.view(N_ROTATIONS, len(idx)).mean(0).cpu(),
                 "upright": blocks[0],  # the first block is the upright image
                 "mean": blocks.mean(0),
                 "random": blocks[pick[idx], torch.arange(len(idx))]}
        if not out:
            dim = blocks.shape[-1]
            out = {name: _allocate(into, name, (n,) if name == "losses" else (n, dim)) for name in batch}
        for name, values in batch.items():
            out[name][start : start + len(idx)] = values.numpy()
        start += len(idx)
    if not out:
        out = {name: np.zeros((0,) if name == "losses" else (0, dim or 0), np.float32)
               for name in ("losses", *VIEWS)}
    return RotationScores(losses=out["losses"], views={v: out[v] for v in VIEWS},
                          accuracy=100.0 * correct / max(1, N_ROTATIONS * n))


def _allocate(folder: str | os.PathLike | None, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """float32 zeros of ``shape``: in memory, or a memory-mapped ``.{name}.npy.part`` file in ``folder``."""
    if folder is None:
        return np.zeros(shape, dtype=np.float32)
    return np.lib.format.open_memmap(Path(folder) / f".{name}.npy.part", mode="w+", dtype=np.float32, shape=shape)


def train_rotation(
    pool: ImageSet,
    augment: BatchAugment,
    *,
    net: str = "vgg16",
    config: TrainConfig = ROTATION_DEFAULTS,
    seed: int = 0,
    device: torch.device | str = "cpu",
    save: str | os.PathLike | None = None,
    progress: bool = True,
) -> RotationResult:
    """Run step 1 on ``pool`` and, with ``save``, write the authors' files into that folder.

    The files are those of :mod:`bal.pretext.store`. An unfinished run in ``save``
    resumes from its last finished epoch; a finished one is loaded instead of trained again.
    A second process given the same ``save`` (two benches sharing a pretext) waits for the
    first and loads its run; under torchrun the ranks train it together, unlocked.
    """
    kwargs = dict(net=net, config=config, seed=seed, device=device, save=save, progress=progress)
    if save is None or runtime.info().enabled:
        return _train_rotation(pool, augment, **kwargs)
    with held_lock(_lock_file(save), waiting=lambda: log.info(
            "waiting for another process that is training the pretext in %s", save)):
        return _train_rotation(pool, augment, **kwargs)


def _lock_file(save: str | os.PathLike) -> Path:
    return Path(save) / "rotation.lock"


def pretext_busy(save: str | os.PathLike) -> bool:
    """True when another process holds the pretext in ``save`` (it is training it), so that
    :func:`train_rotation` would wait; a bench runs other pairs meanwhile. Under torchrun, never."""
    if runtime.info().enabled:
        return False
    with held_lock(_lock_file(save), wait=False) as free:
        return not free


def _train_rotation(pool: ImageSet, augment: BatchAugment, *, net: str, config: TrainConfig, seed: int,
                    device: torch.device | str, save: str | os.PathLike | None, progress: bool) -> RotationResult:
    device = torch.device(device)
    image_size = int(pool.images.shape[1])
    settings = {
        "net": net,
        "image_size": image_size,
        "n_images": len(pool),
        "pool_digest": _digest(pool.paths),
        "classes": list(pool.classes),
        "seed": seed,
        "train": asdict(config),
        "normalisation": {"mean": list(augment.mean), "std": list(augment.std)},
    }
    out = Path(save) if save is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        bind_config(out / "rotation_config.json", settings, "rotation run")
        bind_content(out, {"pool": (pool.paths, pool.images)})
        if is_complete(out):
            return read_rotation(out, pool_paths=pool.paths, device=device)

    torch.manual_seed(derive_seed(seed, "rotation", "init"))
    model = create_model(net, num_classes=N_ROTATIONS, image_size=image_size)
    images = pool.images
    dummy_targets = torch.zeros(len(pool), dtype=torch.int64)
    train_model(
        model,
        images,
        dummy_targets,
        np.arange(len(pool)),
        config,
        augment,
        device=device,
        seed=seed,
        stream=("rotation",),
        loss_fn=rotation_loss,
        checkpoint=None if out is None else out / "rotation_ckpt.pth",
        progress=progress,
        desc="rotation",
        log_epochs=not progress,
    )
    if out is None:
        return _result(pool, rotation_scores(model, images, augment, device=device, seed=seed), model)
    with runtime.main_first():  # rank 0 scores the pool and writes the files; the others read them
        if runtime.is_main():
            result = _result(pool, rotation_scores(model, images, augment, device=device, seed=seed, into=out), model)
            write_rotation(out, result, settings=settings, net=net, image_size=image_size,
                           normalisation=augment.state())
            (out / "rotation_ckpt.pth").unlink(missing_ok=True)
            return result
    return read_rotation(out, pool_paths=pool.paths, device=device)


def _result(pool: ImageSet, scores: RotationScores, model: nn.Module) -> RotationResult:
    return RotationResult(list(pool.paths), scores.losses, scores.views["upright"], model,
                          views=scores.views, accuracy=scores.accuracy)


def _digest(paths: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(paths).encode()).hexdigest()
