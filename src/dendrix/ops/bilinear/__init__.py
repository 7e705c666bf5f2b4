"""Dendritic bilinear integration ``sᵀ K_o s`` (DLIF, ICLR 2026) for every output neuron o.

``bilinear_form(s, values, layout, backend="auto")`` with ``s`` ``[R, n]`` returns ``[R, out]``:

* ``"numba"``: compiled CPU loops over active pairs (needs the ``numba`` package); ``"auto"`` on CPU.
* ``"triton"``: Triton kernels over active pairs (``triton.py``), CUDA tensors (CPU ones under
  ``TRITON_INTERPRET=1``); ``"auto"`` on GPU when Triton imports. Imported on first use, never at import.
* ``"torch"``: tensor index arithmetic over active pairs, any device; ``"auto"`` on GPU without Triton, or on
  CPU without numba.
* ``"reference"``: dense K ``[out, n, n]`` and einsum (``reference.py``); real-valued ``s`` allowed.

The sparse paths compute s_i·s_j as a logical AND and refuse non-binary input with a ``ValueError``
(``check_input=False`` skips that scan when the caller guarantees spikes). A forced backend never falls back
(``dendrix.ops.dispatch.resolve``). Half-precision input is computed in float32 (``compute_dtype``).
Layouts: :class:`PairLayout` (cyclic windows, ``layout.py``) and :class:`IndependentLayout` (independent
per-neuron masks, ``independent.py``; engines numba, torch and reference). ``low_rank_form`` is the low-rank
ablation ``K_o = Σ_q (u_q v_qᵀ + v_q u_qᵀ) - diag``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...validation import check_choice
from ..custom_ops import compiling
from ..dispatch import LazyEngine, resolve
from .autograd import BilinearForm
from .compiled import sparse_bilinear
from .independent import IndependentLayout, build_independent_layout
from .layout import PairLayout, build_layout, num_pairs, pair_index, triu_pairs
from .reference import bilinear_reference, dense_matrix, dlif_current_reference
from .sparse import HAVE_NUMBA, active_pairs, check_binary

__all__ = ["bilinear_form", "low_rank_form", "low_rank_dense", "BACKENDS", "PairLayout", "build_layout",
           "dense_matrix", "bilinear_reference", "dlif_current_reference", "num_pairs", "pair_index",
           "triu_pairs", "active_pairs", "HAVE_NUMBA", "resolve_backend", "IndependentLayout",
           "build_independent_layout", "MASKS", "build_mask", "BilinearForm"]

MASKS = ("independent", "cyclic")


def build_mask(in_features: int, out_features: int, density: float, mask: str = "independent",
               generator: torch.Generator | None = None) -> PairLayout | IndependentLayout:
    """A random mask keeping a fraction ``density`` of each neuron's pairs: ``"independent"`` (every entry
    independently) or ``"cyclic"`` (windows on the output ring, :func:`build_layout`)."""
    check_choice("mask", mask, MASKS)
    if mask == "cyclic":
        return build_layout(in_features, out_features, density, generator=generator)
    return build_independent_layout(in_features, out_features, density, generator=generator)

BACKENDS = ("auto", "numba", "torch", "triton", "reference")

TRITON_ENGINE = LazyEngine("dendrix.ops.bilinear.triton")  # imported on first use only


def resolve_backend(backend: str, device: torch.device, independent: bool = False) -> str:
    """The engine that runs: ``"auto"`` -> numba (CPU with numba), triton (CUDA with Triton; window layouts
    only), else torch. A forced engine that cannot run here raises (never a silent fallback)."""
    check_choice("backend", backend, BACKENDS)
    if device.type == "cpu":
        auto = ("numba", "torch")
    elif device.type == "cuda" and not independent:
        auto = ("triton", "torch")
    else:
        auto = ("torch",)
    triton_check = TRITON_ENGINE.check(device)
    if independent:
        triton_check = lambda: "its kernels work on cyclic-window masks only (mask='cyclic')"  # noqa: E731
    return resolve(backend, BACKENDS, auto=auto, checks={"numba": lambda: _numba_unsupported_reason(device),
                                                         "triton": triton_check})


def _numba_unsupported_reason(device: torch.device) -> str | None:
    if not HAVE_NUMBA:
        return "it needs the numba package (pip install numba)"
    if device.type != "cpu":
        return f"it runs on CPU tensors only, got device {device}"
    return None


def bilinear_form(s: Tensor, values: Tensor, layout: PairLayout | IndependentLayout, backend: str = "auto",
                  check_input: bool = True) -> Tensor:
    """``y[r, o] = s_rᵀ K_o s_r`` for ``s`` ``[R, n]`` and the kept entries ``values`` of ``layout``."""
    if s.dim() != 2 or s.shape[1] != layout.in_features:
        raise ValueError(f"bilinear_form: s must be [rows, {layout.in_features}], got shape {tuple(s.shape)}")
    if values.shape != (layout.nnz,):
        raise ValueError(f"bilinear_form: values must have shape ({layout.nnz},), got {tuple(values.shape)}")
    independent = isinstance(layout, IndependentLayout)
    engine = resolve_backend(backend, s.device, independent)
    if engine == "reference":
        return bilinear_reference(s, values, layout)
    if compiling():  # Dynamo cannot trace numba, and the active-pair lists have data-dependent sizes
        return sparse_bilinear(s, values, layout, engine, check_input)
    if layout.nnz == 0 or s.shape[0] == 0:
        if check_input:
            check_binary(s)
        return s.new_zeros(s.shape[0], layout.out_features) + 0 * values.sum().to(s.dtype)
    return BilinearForm.apply(s, values, layout, engine, check_input)


def low_rank_form(s: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """``sᵀ K_o s`` with ``K_o = Σ_q (u_oq v_oqᵀ + v_oq u_oqᵀ)`` minus its diagonal; ``u, v`` ``[out, rank, n]``.

    ``= 2 Σ_q (u_oq·s)(v_oq·s) - 2 Σ_i s_i² Σ_q u_oqi v_oqi``: two matmuls, exact for any real ``s``.
    """
    out, rank, n = u.shape
    pu = (s @ u.reshape(out * rank, n).t()).view(*s.shape[:-1], out, rank)
    pv = (s @ v.reshape(out * rank, n).t()).view(*s.shape[:-1], out, rank)
    diag = (u * v).sum(1)  # [out, n]
    return 2 * (pu * pv).sum(-1) - 2 * (s * s) @ diag.t()


def low_rank_dense(u: Tensor, v: Tensor) -> Tensor:
    """The dense ``[out, n, n]`` K of :func:`low_rank_form`."""
    K = torch.einsum("oqi,oqj->oij", u, v)
    K = K + K.transpose(1, 2)
    return K - torch.diag_embed(torch.diagonal(K, dim1=1, dim2=2))
