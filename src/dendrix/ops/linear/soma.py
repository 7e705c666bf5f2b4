"""The cumulative-sum soma of PMSN: a non-leaky integrate-and-fire with subtractive reset, in closed form.

On ``drive [T, *]`` (>= 0, PMSN's ``ReLU(y)``), from the residual ``r0`` of a previous chunk (None = 0):

    Z[t] = r0 + Σ_{τ<=t} drive[τ]  (in float64),      δ[t] = Z[t] − V_th·floor(Z[t−1]/V_th)   (Z[−1] = r0),
    count[t] = clamp(floor(δ[t]/V_th), 0, 1)  (``burst``: lower clamp only),   last = δ[T−1] mod V_th.

Two engines give the same numbers bit for bit on CPU (``tests/test_peers.py``):

* ``"torch"``: the plain tensor form (:func:`cumulative_soma_reference`): the running sum row by row in a
  float64 copy of the drive (on a GPU ``torch.cumsum``, a parallel scan: equal to float64 rounding), then a
  pass per operation. Runs everywhere, also under ``torch.compile``.
* ``"numba"``: the time loop compiled (``numba_soma.py``, optional ``numba`` package, CPU tensors): blocks of
  columns in parallel, the float64 sum in registers, one read of the drive and one write of each output, so no
  float64 tensor of size ``[T, *]`` is ever formed.

``"auto"`` takes numba for CPU tensors when it imports (and not while ``torch.compile`` traces), the torch form
otherwise. Outputs are detached (the soma's surrogate gradient is the caller's; PMSN's uses ``δ``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..dispatch import LazyEngine, cuda_first, resolve

__all__ = ["cumulative_soma", "cumulative_soma_reference", "SOMA_BACKENDS"]

SOMA_BACKENDS = ("auto", "torch", "numba")
NUMBA_ENGINE = LazyEngine("dendrix.ops.linear.numba_soma", package="numba", install="pip install numba, or dendrix[fast]")


def cumulative_soma_reference(drive: Tensor, residual0: Tensor | None, th: float,
                              burst: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The torch form: ``(count, δ, last)``, count and δ ``[T, *]`` and last ``[*]`` in the drive's dtype."""
    total = drive.detach().to(torch.float64, copy=True)
    if residual0 is not None:
        start = residual0.detach().to(torch.float64)
        total[0] += start
    if total.device.type == "cpu":
        # the running sum row by row, in place: the same additions in the same order as torch.cumsum(0), whose
        # CPU kernel is several times slower along a leading dimension (docs/benchmarks.md)
        for t in range(1, total.shape[0]):
            total[t] += total[t - 1]
    else:
        # on a GPU the row loop is T kernel launches (23 ms at T = 1024 on an H200, against 1.2 ms for the
        # authors' whole float32 neuron); the parallel scan sums in another order: float64 rounding apart
        total = torch.cumsum(total, 0)
    scaled = total if th == 1.0 else total / th  # x / 1 == x exactly: skip the pass
    fired = torch.floor(scaled)
    delta = torch.empty_like(total)
    if th == 1.0:
        torch.sub(total[1:], fired[:-1], out=delta[1:])
    else:
        torch.sub(total[1:], fired[:-1] * th, out=delta[1:])
    delta[0] = total[0] if residual0 is None else total[0] - torch.floor(start / th) * th
    ratio = delta if th == 1.0 else delta / th
    count = torch.floor(ratio)  # clamped in place; a NaN drive stays a NaN count (docs/reliability.md)
    count = (count.clamp_min_(0) if burst else count.clamp_(0, 1)).to(drive.dtype)
    # + 0·drive: an infinite drive makes a NaN count at its own step too, not only after it (docs/reliability.md)
    count.addcmul_(drive.detach(), drive.new_zeros(()))
    last = delta[-1] - th * torch.floor(delta[-1] / th)
    return count, delta.to(drive.dtype), last.to(drive.dtype)


def cumulative_soma(drive: Tensor, residual0: Tensor | None, th: float, burst: bool,
                    backend: str = "auto") -> tuple[Tensor, Tensor, Tensor]:
    """``(count, δ, last)`` of the cumulative-sum soma (module docstring) on ``drive [T, *]`` (float32 or
    float64) from ``residual0 [*]`` (or None); ``backend`` one of ``SOMA_BACKENDS``."""
    engine = resolve(backend, SOMA_BACKENDS, auto=cuda_first(drive.device, ("torch",), ("numba", "torch")),
                     checks={"numba": NUMBA_ENGINE.check(drive, residual0)})
    if engine == "torch":
        return cumulative_soma_reference(drive, residual0, th, burst)
    return NUMBA_ENGINE.load().cumulative_numba_soma(drive, residual0, th, burst)
