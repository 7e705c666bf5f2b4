"""Distributed data-parallel training: ``torchrun --nproc_per_node=2 -m dendrix train --config X``.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`setup` then starts the process group (``nccl``
on GPUs, ``gloo`` on CPU), picks the device of this process, and the trainer wraps the model in
``DistributedDataParallel``. Each process trains on its own shard of every epoch's shuffled order; metrics are
summed over processes; only rank 0 writes files and prints. Without torchrun everything is a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistContext", "setup", "teardown", "resolve_device"]


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_sum(self, values: list[float]) -> list[float]:
        """Sum a few numbers over processes (identity in a single process)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device for ``name`` (``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``); plain ``"cuda"``
    becomes this process's ``cuda:local_rank``. A clear error if CUDA is asked for but unavailable."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise RuntimeError(f"device {name!r} is not a torch device ({' '.join(str(err).split())})") from None
    if device.type not in ("cpu", "cuda"):
        raise RuntimeError(f"device {name!r} is not supported: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RuntimeError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


def setup(device: str = "auto") -> DistContext:
    """Start the process group when launched by torchrun (``WORLD_SIZE`` > 1); otherwise one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=resolve_device(device))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    dev = resolve_device(device, local_rank)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def teardown(ctx: DistContext) -> None:
    """Wait for every process, then end the process group."""
    if ctx.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
