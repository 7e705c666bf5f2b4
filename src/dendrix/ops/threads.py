"""Run small-tensor sequential kernels on one intra-op thread on CPU.

A per-step loop over small tensors gains nothing from intra-op threads, and on a busy machine each hand-off
between threads can cost more than the step itself (figures in ``docs/benchmarks.md``, "Measurements behind
the kernels"). Sequential kernels therefore switch to one thread while one
time step has at most ``SERIAL_STEP_ELEMENTS`` elements, and restore the previous count afterwards. The switch
is process-wide for its duration, so it is only used around code that does not run concurrently with other
torch work of the same process. While ``torch.compile`` traces the code the switch is skipped (it is a Python
side effect that a graph cannot hold).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

__all__ = ["SERIAL_STEP_ELEMENTS", "serial_on_cpu"]

SERIAL_STEP_ELEMENTS = 1 << 16


@contextmanager
def serial_on_cpu(device: torch.device, step_numel: int) -> Iterator[None]:
    """One intra-op thread inside the block when ``device`` is a CPU and a step is small enough."""
    if torch.compiler.is_compiling():  # a traced graph cannot switch threads; the compiled kernels choose their own
        yield
        return
    threads = torch.get_num_threads()
    if device.type != "cpu" or step_numel > SERIAL_STEP_ELEMENTS or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
