"""Shared benchmark helpers: median wall time, memory kept for backward, peak memory, and a ratio table.

Memory on CPU has no allocator counter like CUDA's, so two measures are reported:

* ``saved_mb``: bytes of the distinct tensor storages autograd keeps for backward after the forward pass
  (``torch.autograd.graph.saved_tensors_hooks``). This is the training memory that grows with T·B·N and the
  one our fused kernels are designed to reduce. It is exact and repeatable.
* ``peak_mb`` (CUDA only): ``torch.cuda.max_memory_allocated`` over forward+backward.
"""

from __future__ import annotations

import datetime
import gc
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["Measurement", "measure", "saved_tensor_bytes", "machine_line", "format_table"]


@dataclass
class Measurement:
    name: str
    fwd_ms: float
    fwd_bwd_ms: float
    saved_mb: float
    peak_mb: float | None = None
    extra: dict | None = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn: Callable[[], object], repeat: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def saved_tensor_bytes(forward: Callable[[], torch.Tensor]) -> int:
    """Bytes of distinct storages saved for backward while running ``forward()`` (result kept alive)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        try:
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. some views of subclasses)
            seen[id(t)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
    del out
    return sum(seen.values())


def measure(name: str, forward: Callable[[], torch.Tensor], params: list[torch.Tensor] | None = None, *,
            repeat: int = 5, warmup: int = 1, device: torch.device | str = "cpu", extra: dict | None = None) -> Measurement:
    """Time ``forward()`` and ``forward().sum().backward()``; ``forward`` must build its graph from leaves with
    ``requires_grad`` (inputs or parameters) so the backward has work to do."""
    device = torch.device(device)
    params = params or []

    def fwd():
        with torch.no_grad():
            return forward()

    def fwd_bwd():
        for p in params:
            p.grad = None
        out = forward()
        out.float().sum().backward()

    gc.collect()
    fwd_ms = _median_ms(fwd, repeat, warmup, device)
    fwd_bwd_ms = _median_ms(fwd_bwd, repeat, warmup, device)
    saved = saved_tensor_bytes(forward) / 2**20
    peak = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        fwd_bwd()
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    return Measurement(name, fwd_ms, fwd_bwd_ms, saved, peak, extra)


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{datetime.date.today().isoformat()} · {cpu} · {torch.get_num_threads()} torch threads{gpu} · "
            f"torch {torch.__version__} · Python {platform.python_version()}")


def format_table(rows: list[Measurement], reference: str) -> str:
    """A Markdown table with times, memory, and ratios against the row named ``reference``."""
    ref = next((r for r in rows if r.name == reference), None)
    head = "| case | fwd ms | fwd+bwd ms | saved-for-backward MB | fwd+bwd vs " + reference + " | memory vs " + reference + " |"
    out = [head, "|" + "---|" * 6]
    for r in rows:
        tr = f"{r.fwd_bwd_ms / ref.fwd_bwd_ms:.2f}×" if ref else "–"
        mr = f"{r.saved_mb / ref.saved_mb:.2f}×" if ref and ref.saved_mb > 0 else "–"
        peak = f" (peak {r.peak_mb:.0f} MB)" if r.peak_mb is not None else ""
        out.append(f"| {r.name} | {r.fwd_ms:.2f} | {r.fwd_bwd_ms:.2f} | {r.saved_mb:.1f}{peak} | {tr} | {mr} |")
    return "\n".join(out)
