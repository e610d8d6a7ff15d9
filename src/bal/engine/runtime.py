"""Where and how code runs: the device, mixed precision, seeds, and the ranks of a ``torchrun`` run.

Everything that depends on the machine or on the process's rank lives here, so the
loops that train and select read the same on one CPU, one GPU or several processes.

Devices. ``resolve_device("auto")`` picks CUDA when present. On CUDA, training and
scoring run under float16 autocast (mixed precision); on the CPU in float32. Models and
batches are channels-last on both.

Seeds. Every random stream gets its own seed from :func:`derive_seed` (the run's seed
and a purpose), so a run resumed at any point draws exactly the numbers an
uninterrupted run would have drawn, without saving generator states.

Ranks. ``torchrun --standalone --nproc_per_node=2 -m bal train ...`` starts several
processes. Every rank holds the images and a replica of the model; each epoch's
shuffled order is the same on all ranks and each rank trains on its own share of it,
with gradients averaged by DistributedDataParallel (NCCL on CUDA, gloo on the CPU).
Selection, scoring, evaluation and every file are done once, by rank 0, and what the
others need is broadcast: :func:`on_main` runs a function on rank 0 and hands its
result to every rank, :func:`main_first` lets rank 0 go through a block (filling a
cache, writing files) before the others. Output folders must be on a filesystem all
ranks see, as usual for torchrun checkpoints. A failing rank prints
``bal: rank R failed: ...`` and exits non-zero; torchrun then stops the others.
``BAL_FAULT_INJECT_RANK=R`` makes rank R fail on purpose right after start-up, which
is how the tests check that.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from bal.errors import ParameterError

T = TypeVar("T")

__all__ = [
    "DistInfo", "autocast", "barrier", "broadcast", "derive_seed", "images_on", "info", "is_main",
    "launched_by_torchrun", "main_first", "on_main", "resolve_device", "scoring_batch_size", "setup", "shutdown",
    "to_device",
]


# -- devices -----------------------------------------------------------------------------
def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; anything else is passed to torch."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ParameterError("device", f"{{name}} {device!r} is not a device torch knows ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device", f"{{name}} {device!r} asks for CUDA, but torch sees no CUDA device here")
    return dev


def autocast(device: torch.device):
    """Mixed precision on CUDA; full precision elsewhere (the CPU path is what the tests see)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def to_device(model: nn.Module, device: torch.device) -> nn.Module:
    # Channels-last runs oneDNN's fast convolution kernels on the CPU (measured +30 % training,
    # +65 % inference for `cnn` at 32x32 on 2 cores) and tensor cores on CUDA.
    return model.to(device=device, memory_format=torch.channels_last)


def scoring_batch_size(device: torch.device) -> int:
    """Images per forward pass when scoring: large on a GPU; on the CPU 128 is faster than 512
    (measured for `cnn`, channels-last, 2 cores) and needs a quarter of the activation memory."""
    return 512 if device.type == "cuda" else 128


#: The largest image array moved whole onto a GPU (bytes); larger ones stay where they are
#: (in memory or memory-mapped on disk) and every batch is gathered there and sent.
GPU_IMAGES_LIMIT = 4 * 2**30


def images_on(images, device: torch.device):
    """Where batches will be gathered from: the uint8 images on the GPU when they fit easily, else as given.

    ``images`` is a uint8 array (N, S, S, 3) in memory or memory-mapped (bal's cache), or
    a tensor. A memory-mapped array is copied to the GPU in chunks, each chunk's pages
    handed back at once, so host memory never holds it whole.
    """
    size = images.nbytes if isinstance(images, np.ndarray) else images.numel() * images.element_size()
    if device.type != "cuda" or size >= GPU_IMAGES_LIMIT:
        return images
    if isinstance(images, torch.Tensor):
        return images.to(device)
    from bal.data.cache import release

    out = torch.empty(images.shape, dtype=torch.uint8, device=device)
    step = max(1, (64 * 2**20) // max(1, images[0].nbytes))  # 64 MiB at a time
    for start in range(0, len(images), step):
        out[start : start + step] = torch.from_numpy(np.ascontiguousarray(images[start : start + step])).to(device)
        release(images, np.arange(start, min(start + step, len(images))))
    return out


# -- seeds -------------------------------------------------------------------------------
def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed derived from ``seed`` and a purpose, e.g. ``derive_seed(0, "train", 3, 17)``.

    Every random stream (shuffling of one epoch, augmentation, first-cycle picks) gets
    its own seed this way, so a run resumed at any epoch draws exactly the numbers an
    uninterrupted run would have drawn, without saving generator states.
    """
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


# -- ranks -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_info = DistInfo()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes in the environment; pick this rank's device."""
    global _info
    if not launched_by_torchrun():
        return _info, device
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        # ranks share the machine's cores; oversubscribing them slows every rank down
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    timeout = timedelta(minutes=float(os.environ.get("BAL_DIST_TIMEOUT_MINUTES", "30")))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    _info = DistInfo(rank, world, local_rank)
    if os.environ.get("BAL_FAULT_INJECT_RANK") == str(rank):
        raise RuntimeError(f"failure injected on rank {rank} (BAL_FAULT_INJECT_RANK)")
    return _info, device


def info() -> DistInfo:
    return _info


def is_main() -> bool:
    return _info.is_main


def barrier() -> None:
    if _info.enabled:
        dist.barrier()


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (any picklable object)."""
    if not _info.enabled:
        return obj
    box = [obj if _info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` run by rank 0 only; every rank returns rank 0's result."""
    return broadcast(fn(*args, **kwargs) if _info.is_main else None)


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (filling a cache, writing files); the others then run it after."""
    if not _info.is_main:
        barrier()
    yield
    if _info.is_main:
        barrier()


def shutdown(finished: bool = True) -> None:
    """Leave the process group. After a command that ``finished`` on this rank, wait for the others
    first: a rank that tears its gloo connections down while a peer still uses them can abort
    ("terminate called without an active exception", seen on 2 loaded CPU cores). After a failure,
    leave at once (torchrun stops the other ranks)."""
    global _info
    if _info.enabled and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()
    _info = DistInfo()
