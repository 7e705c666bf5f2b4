"""Pieces shared by the ALIF and RF/BRF Triton kernels (imports Triton; loaded only when those kernels run).

Both engines follow the layout of ``dendrix.ops.lif.triton``: one program per block of ``BLOCK`` neurons walks
the whole sequence in registers; per-neuron coefficients (time constants, frequencies) are either a dense
``[M]`` vector or one value in the kernel's scalar table, a small tensor of the compute dtype holding every
scalar (Triton passes Python floats as float32, which would round float64 runs) followed by the surrogate
constants of ``dendrix.ops.triton_common``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..surrogate import Surrogate
from .triton_common import interpreting, libdevice, surrogate_constants, surrogate_unsupported_reason

__all__ = ["BLOCK", "NUM_WARPS", "load_coefficient", "per_neuron", "scalar_table", "cached_table", "grid",
           "exact_exp_flag", "unsupported_reason", "pointer_or"]

BLOCK = 128      # neurons per program: one per thread with 4 warps; many programs keep all SMs busy
NUM_WARPS = 4
_DTYPES = (torch.float32, torch.float64)


@triton.jit
def load_coefficient(ptr, scalar_ptr, offs, mask, PER_NEURON: tl.constexpr):
    """One value per neuron from ``ptr[offs]``, or the single value at ``scalar_ptr`` (a table slot)."""
    if PER_NEURON:
        return tl.load(ptr + offs, mask=mask, other=0.0)
    else:
        return tl.load(scalar_ptr)


def unsupported_reason(x: Tensor, others: dict[str, Tensor], surrogate: Surrogate) -> str | None:
    """Why the kernels cannot run (None when they can). ``x`` in the compute dtype; ``others`` are the other
    tensor arguments by name (they must be on ``x``'s device)."""
    if (reason := surrogate_unsupported_reason(surrogate)) is not None:
        return reason
    if x.dtype not in _DTYPES:
        return f"dtype {x.dtype} is not supported (float32/float64, or half precision computed in float32)"
    if x.device.type != "cuda" and not interpreting():
        return f"tensors must be on a CUDA device, got {x.device} (TRITON_INTERPRET=1 runs CPU tensors)"
    for name, t in others.items():
        if t.device != x.device:
            return f"{name} is on {t.device} but x is on {x.device}"
    return None


def per_neuron(value: Tensor, step_shape: torch.Size) -> Tensor | None:
    """A coefficient with more than one element as a dense ``[M]`` vector (None for one-element tensors)."""
    if value.numel() > 1:
        return value.detach().expand(step_shape).contiguous().view(-1)
    return None


def scalar_table(entries: list[float | Tensor], surrogate: Surrogate, like: Tensor) -> Tensor:
    """``[entries..., surrogate constants...]`` in the dtype and on the device of ``like``.

    A one-element tensor entry is copied in on the device; a larger tensor (a per-neuron coefficient, read from its
    own vector) leaves its slot at 0. The float part is built once per (values, dtype, device) and cached: a host
    to device copy from pageable memory would wait for the GPU on every call.
    """
    values = [float(e) if not isinstance(e, Tensor) else 0.0 for e in entries] + surrogate_constants(surrogate)
    table = cached_table(values, like)
    scalar_tensors = [(slot, e) for slot, e in enumerate(entries) if isinstance(e, Tensor) and e.numel() == 1]
    if scalar_tensors:  # cached tables are shared and read-only: fill a device-side copy
        table = table.clone()
        for slot, entry in scalar_tensors:
            table[slot:slot + 1].copy_(entry.detach().reshape(1))
    return table


def cached_table(values: list[float], like: Tensor) -> Tensor:
    """``values`` as a tensor in the dtype and on the device of ``like``, built once per (values, dtype, device):
    kernels only read it, and a host-to-device copy from pageable memory would wait for the GPU on every call."""
    key = (tuple(values), like.dtype, like.device)
    table = _TABLE_CACHE.get(key)
    if table is None:
        if len(_TABLE_CACHE) >= 256:
            _TABLE_CACHE.clear()
        table = _TABLE_CACHE[key] = torch.tensor(values, dtype=like.dtype).to(like.device)
    return table


_TABLE_CACHE: dict[tuple, Tensor] = {}  # float scalar tables, per (values, dtype, device)


def grid(m: int) -> tuple[int]:
    """The launch grid for ``m`` independent neurons: one program per ``BLOCK`` of them (at least one)."""
    return (max(1, triton.cdiv(m, BLOCK)),)


def exact_exp_flag(t: Tensor) -> bool:
    """Whether the kernel should use libdevice's float64 ``exp`` (float64 on a GPU)."""
    return t.dtype == torch.float64 and t.device.type == "cuda" and libdevice is not None


def pointer_or(t: Tensor | None, fallback: Tensor) -> Tensor:
    """``t``, or any valid tensor for a pointer argument the kernel does not read (its flag is off)."""
    return fallback if t is None else t
