"""Seeds, RNG states (saved in checkpoints as plain data) and CPU threads of a training process."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from .distributed import DistContext

__all__ = ["seed_everything", "rng_state", "set_rng_state", "set_threads"]


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch with ``seed``; with ``deterministic`` also ask torch for deterministic
    algorithms (warning only where none exists)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = False


def set_threads(threads: int | None, ctx: DistContext) -> None:
    """Small spiking models gain little from intra-op threads and lose a lot when cores are oversubscribed,
    so processes that share the CPU (DDP on CPU) split the cores between them unless ``threads`` is set."""
    if threads is None and ctx.distributed and ctx.device.type == "cpu":
        threads = max(1, (os.cpu_count() or 1) // ctx.world_size)
    if threads is not None:
        torch.set_num_threads(int(threads))


def rng_state() -> dict:
    """The Python, NumPy, torch (and CUDA) RNG states of this process, as plain data and tensors."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the states returned by :func:`rng_state` (Python's and NumPy's as tuples, as they were saved)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
