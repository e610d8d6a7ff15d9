"""Several processes on PyTorch's own distributed engine, started by ``torchrun``.

    torchrun --standalone --nproc_per_node=2 -m bal train ...

Every rank holds the images and a replica of the model; each epoch's shuffled order is
the same on all ranks and each rank trains on its own share of it, with gradients
averaged by DistributedDataParallel (NCCL on CUDA, gloo on the CPU). Selection,
scoring, evaluation and every file are done once, by rank 0, and what the others need
(the selected indices, the metrics) is broadcast. Output folders must be on a
filesystem all ranks see, as usual for torchrun checkpoints.

A failing rank prints ``bal: rank R failed: ...`` and exits non-zero; torchrun then
stops the others. ``BAL_FAULT_INJECT_RANK=R`` makes rank R fail on purpose right after
start-up, which is how the tests check that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


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


def shutdown() -> None:
    global _info
    if _info.enabled and dist.is_initialized():
        dist.destroy_process_group()
    _info = DistInfo()
