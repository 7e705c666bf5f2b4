"""DLIF: LIF neurons with dendritic bilinear integration (ICLR 2026).

The input current of postsynaptic neuron o from presynaptic spikes s ∈ {0, 1}^n is

    I_o[t] = Σ_i W_oi s_i[t] + b_o + s[t]ᵀ K_o s[t] = Σ_i W_oi s_i + b_o + 2 Σ_{i<j} K_o,ij s_i s_j

with K_o symmetric, zero on the diagonal, and sparse: each pair (i < j) is present in K_o with probability
``1 - sparsity`` under a random mask fixed at construction and different for every neuron. The current drives
a LIF soma with soft reset by default (SpikingJelly ``LIFNode`` conventions, ``v_reset=None``; SPEC.md):

    H[t] = V[t-1] + (I[t] - V[t-1]) / tau,   S[t] = Θ(H[t] - v_threshold),   V[t] = H[t] - v_threshold S[t],

or, with ``reset="hard"`` (the authors' spike-driven Transformer path), V[t] = H[t] (1 - S[t]).

The current has no memory, so it is computed for all T·B rows at once; only the soma runs over time (the
fused engine :func:`dendrix.ops.lif.lif_sequence`). K is stored as its kept entries only
(:mod:`dendrix.ops.bilinear`), and s_i s_j is a logical AND evaluated only for pairs of active inputs, so the
cost grows with the active pairs, not with n². See ``docs/dlif.md``.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..contract import Neuron
from ..neurons.lif import LIF
from ..ops.bilinear import (BACKENDS, MASKS, IndependentLayout, PairLayout, bilinear_form, build_mask,
                            dense_matrix, low_rank_dense, low_rank_form, num_pairs, resolve_backend)
from ..ops.bilinear.conv import block_index, channel_bilinear, uses_channel_engine
from ..ops.lif import BACKENDS as LIF_BACKENDS
from ..ops.lif import lif_sequence
from ..registry import register
from ..surrogate import SurrogateLike, get_surrogate
from ..validation import check_choice, check_greater, check_int, check_positive, check_range

__all__ = ["DLIFLinear", "DLIFConv2d", "DLIFState"]

RESETS = ("soft", "hard")


class DLIFState(NamedTuple):
    v: Tensor  # post-reset membrane potential after the last step, [B, out] (or [B, out, H, W])


class _Bilinear(Neuron):
    """Shared parameters and soma of the DLIF layers: the masked (or low-rank) K over ``n`` inputs."""

    def __init__(self, n: int, out: int, sparsity: float, rank: int | None, tau: float, v_threshold: float,
                 decay_input: bool, detach_reset: bool, surrogate: SurrogateLike, backend: str, lif_backend: str,
                 check_input: bool, k_init: float | None, seed: int | None, reset: str = "soft",
                 mask: str = "independent"):
        super().__init__()
        self.reset = check_choice("reset", reset, RESETS)
        self.mask = check_choice("mask", mask, MASKS)
        self.sparsity = check_range("sparsity", sparsity, 0.0, 1.0)
        if rank is not None:
            rank = check_int("rank", rank, minimum=1)
        self.rank = rank
        self.tau = check_greater("tau", tau, 1.0, "the decay 1/tau must be below 1")
        self.v_threshold = check_positive("v_threshold", v_threshold)
        for name, flag in (("decay_input", decay_input), ("detach_reset", detach_reset), ("check_input", check_input)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        self.decay_input, self.detach_reset, self.check_input_spikes = decay_input, detach_reset, check_input
        self.surrogate = get_surrogate(surrogate)
        self.backend = check_choice("backend", backend, BACKENDS)
        self.lif_backend = check_choice("lif_backend", lif_backend, LIF_BACKENDS)
        bound = 1.0 / n if k_init is None else float(k_init)
        if not math.isfinite(bound) or bound < 0:
            raise ValueError(f"k_init must be a finite number >= 0, got {k_init!r}")
        self._k_init = bound
        if rank is not None:
            # Low-rank ablation: K_o = Σ_q (u v^T + v u^T) - diag; the sparsity mask is not used.
            scale = math.sqrt(bound / rank) if bound > 0 else 0.0
            self.bilinear_u = nn.Parameter(torch.empty(out, rank, n).uniform_(-scale, scale))
            self.bilinear_v = nn.Parameter(torch.empty(out, rank, n).uniform_(-scale, scale))
            self.register_parameter("bilinear_values", None)
            return
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        gen = torch.Generator().manual_seed(int(seed))
        layout = build_mask(n, out, 1.0 - self.sparsity, self.mask, generator=gen)
        if self.mask == "cyclic":
            self.register_buffer("window_start", layout.start)
            self.register_buffer("extra_pairs", layout.extra_pair)
            self._m = layout.m
        else:
            self.register_buffer("mask_ptr", layout.ptr)
            self.register_buffer("mask_outputs", layout.outputs)
        self.bilinear_values = nn.Parameter(torch.empty(layout.nnz).uniform_(-bound, bound, generator=gen))
        if self.sparsity < 1.0:
            self._warn_empty_neurons(layout)

    def _describe(self) -> str:
        return f"{type(self).__name__}({self._n}, {self._out}, sparsity={self.sparsity:g})"

    def _warn_empty_neurons(self, layout: PairLayout) -> None:
        """A neuron whose mask keeps no pair has no bilinear term: in small layers the default sparsity can
        silently turn DLIF into LIF, so say so."""
        kept = torch.bincount(layout.entries()[0], minlength=self._out)
        empty = int((kept == 0).sum())
        if empty:
            warnings.warn(f"{self._describe()}: {empty} of {self._out} neurons keep no pair of K (each keeps "
                          f"{num_pairs(self._n)} pairs x {1 - self.sparsity:g} = "
                          f"{num_pairs(self._n) * (1 - self.sparsity):.3g} on average), so their current has no "
                          f"bilinear term; lower sparsity, widen the input, or pass another seed",
                          UserWarning, stacklevel=4)

    # -- K ------------------------------------------------------------------------------------------------
    @property
    def layout(self) -> PairLayout | IndependentLayout:
        if self.rank is not None:
            raise AttributeError("a low-rank DLIF layer has no sparse pair layout")
        if self.mask == "independent":
            return IndependentLayout(self._n, self._out, self.mask_ptr, self.mask_outputs)
        return PairLayout(self._n, self._out, self._m, self.window_start, self.extra_pairs)

    def bilinear_matrix(self) -> Tensor:
        """The dense symmetric, zero-diagonal K ``[out, n, n]`` (``n`` = inputs or input channels)."""
        if self.rank is not None:
            return low_rank_dense(self.bilinear_u, self.bilinear_v)
        return dense_matrix(self.bilinear_values, self.layout)

    @torch.no_grad()
    def set_bilinear_matrix(self, K: Tensor, strict: bool = True) -> None:
        """Write the kept entries of a dense symmetric zero-diagonal ``K`` ``[out, n, n]``.

        Entries outside the layer's mask cannot be stored: with ``strict=True`` (default) a ``K`` that has any
        non-zero masked entry raises a ``ValueError`` saying how many; ``strict=False`` drops them with a
        warning."""
        n, out = self._n, self._out
        if not isinstance(K, Tensor):
            raise TypeError(f"K must be a tensor [out, n, n], got {type(K).__name__}")
        if tuple(K.shape) != (out, n, n):
            raise ValueError(f"K must have shape {(out, n, n)}, got {tuple(K.shape)}")
        if self.rank is not None:
            raise NotImplementedError("set_bilinear_matrix is not available for low-rank K (rank=...); "
                                      "set bilinear_u / bilinear_v instead")
        K = K.to(self.bilinear_values)
        scale = float(K.abs().max()) if K.numel() else 0.0
        asym = float((K - K.transpose(1, 2)).abs().max()) if K.numel() else 0.0
        if asym > 1e-6 * max(1.0, scale):
            raise ValueError(f"K must be symmetric (K[o] == K[o].T); max |K - K^T| = {asym:.3g}")
        diag = float(torch.diagonal(K, dim1=1, dim2=2).abs().max()) if K.numel() else 0.0
        if diag != 0.0:
            raise ValueError(f"K must have a zero diagonal (s_i·s_i is not a pair); max |K_ii| = {diag:.3g}")
        o, i, j = self.layout.entries()
        dev = K.device
        o, i, j = o.to(dev), i.to(dev), j.to(dev)
        kept = torch.zeros(K.shape, dtype=torch.bool, device=dev)
        kept[o, i, j] = True
        masked = int(((K != 0) & ~kept).triu(1).sum())  # pairs i < j (K is symmetric)
        if masked:
            message = (f"{self._describe()}.set_bilinear_matrix: K has {masked} non-zero entries (pairs i < j) "
                       f"outside the layer's mask, which cannot be stored")
            if strict:
                raise ValueError(message + "; zero them, or pass strict=False to drop them")
            warnings.warn(message + "; they were dropped", UserWarning, stacklevel=3)
        self.bilinear_values.copy_(K[o, i, j])

    def mask_density(self) -> float:
        """Fraction of the pairs (i < j) of each K_o that are present, over all neurons (1.0 for low rank)."""
        if self.rank is not None:
            return 1.0
        return self.layout.density

    def _bilinear(self, s: Tensor) -> Tensor:
        """``sᵀ K_o s`` for rows ``s`` ``[R, n]`` -> ``[R, out]``."""
        if self.rank is not None:
            return low_rank_form(s, self.bilinear_u.to(s.dtype), self.bilinear_v.to(s.dtype))
        return bilinear_form(s, self.bilinear_values, self.layout, self.backend, self.check_input_spikes)

    # -- soma ---------------------------------------------------------------------------------------------
    def _soma(self, current: Tensor, v0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return lif_sequence(current, v0, 1.0 / self.tau, self.v_threshold, None if self.reset == "soft" else 0.0,
                            self.decay_input, self.detach_reset, self.surrogate, self.lif_backend)

    def _check_dtype(self, x: Tensor, weight: Tensor) -> None:
        if x.dtype != weight.dtype:
            raise TypeError(f"{type(self).__name__}: input dtype {x.dtype} differs from the parameters' dtype "
                            f"{weight.dtype}; convert one of them (e.g. layer.to({x.dtype}))")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The number of kept entries is random: adopt the saved mask's sizes.
        for name in ("extra_pairs", "mask_outputs"):
            key = prefix + name
            if key in state_dict and name in self._buffers and self._buffers[name].shape != state_dict[key].shape:
                self._buffers[name] = torch.empty_like(state_dict[key], device=self._buffers[name].device)
        if self.rank is None and prefix + "pair_outputs" not in state_dict:
            saved = ("cyclic" if prefix + "window_start" in state_dict else
                     "independent" if prefix + "mask_ptr" in state_dict else None)
            if saved is not None and saved != self.mask:
                raise RuntimeError(f"{self._describe()}: this state dict holds a {saved!r} mask "
                                   f"({'window_start' if saved == 'cyclic' else 'mask_ptr, mask_outputs'}) but the "
                                   f"layer was built with mask={self.mask!r}; build it with mask={saved!r} to load "
                                   f"it (dendrix before issue 14 built cyclic masks by default)")
        key = prefix + "bilinear_values"
        if key in state_dict and self.bilinear_values is not None and self.bilinear_values.shape != state_dict[key].shape:
            self.bilinear_values = nn.Parameter(torch.empty_like(state_dict[key], device=self.bilinear_values.device))
        if prefix + "pair_outputs" in state_dict:
            raise RuntimeError(f"{type(self).__name__}: this state dict stores the mask as per-value output indices "
                               "(dendrix 0.1.0, independent masks); dendrix >= 0.2 stores cyclic-window masks "
                               "(`window_start`) and cannot load it. Retrain, or load it with dendrix 0.1.0.")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    owns_synapses = True  # its input is presynaptic spikes (energy counting, noise injection)

    def operation_counts(self, inputs: Tensor, output: Tensor) -> dict[str, float]:
        """Energy counting (:mod:`dendrix.analysis.energy`): ``W s`` as for a Linear/Conv2d, one AC per active
        kept pair (s_i = s_j = 1, (i, j) kept in K_o; 2·rank dot products and rank products when low-rank), and
        the LIF soma (2 MACs per neuron and step, 1 without input decay)."""
        from ..ops.counting import abs_sum, active_pairs, conv_fanout_sum, is_integer_valued, pair_multiplicity

        spikes = is_integer_valued(inputs)
        conv = getattr(self, "conv", None)  # DLIFConv2d: convolution + channel pairs on its pixel grid
        if conv is not None:
            out_f, bias = conv.out_channels, conv.bias
            flat = inputs.reshape(-1, *inputs.shape[-3:])
            dense = conv_fanout_sum(conv, torch.ones_like(flat))
            active = conv_fanout_sum(conv, flat) if spikes else 0.0
            pix = flat[:, :, ::self.stride, ::self.stride] if self.stride > 1 else flat
            rows = pix.permute(0, 2, 3, 1).reshape(-1, pix.shape[1])
        else:
            out_f, bias = self.weight.shape[0], self.bias
            rows = inputs.reshape(-1, inputs.shape[-1])
            dense = float(rows.numel()) * out_f
            active = abs_sum(rows) * out_f if spikes else 0.0
        counts = {"synaptic_ac": active, "dense_spike_ops": dense} if spikes else {"synaptic_mac": dense}
        if bias is not None:
            counts["bias_ac"] = float(output.numel())
        n_rows = float(rows.shape[0])
        if self.rank is not None:  # s^T K_o s = 2 Σ_q (u_q·s)(v_q·s) - diagonal
            if spikes:
                counts.update(pair_ac=2.0 * self.rank * abs_sum(rows) * out_f,
                              dense_pair_linear_ops=2.0 * self.rank * float(rows.numel()) * out_f,
                              pair_mac=float(self.rank) * n_rows * out_f)
            else:
                counts["pair_mac"] = 2.0 * self.rank * float(rows.numel()) * out_f + float(self.rank) * n_rows * out_f
        else:
            multiplicity = pair_multiplicity(*self.layout.entries(), self._n).to(rows.device)
            kept = float(multiplicity.sum()) / 2
            if spikes:  # one AND + one add of K_o,ij per active kept pair
                counts.update(pair_ac=float(active_pairs(rows, multiplicity)), dense_pair_ops=kept * n_rows)
            else:  # real inputs: s_i·s_j and ×K_o,ij
                counts["pair_mac"] = 2.0 * kept * n_rows
        counts["dynamics_mac"] = (2.0 if self.decay_input else 1.0) * float(output.numel())
        counts["ann_synaptic_mac"] = dense
        if bias is not None:
            counts["ann_bias_ac"] = float(output.numel())
        if spikes:
            counts.update(input_spikes=abs_sum(inputs), input_elements=float(inputs.numel()))
        return counts

    def _extra(self) -> str:
        kind = f"rank={self.rank}" if self.rank is not None else f"sparsity={self.sparsity:g}, mask={self.mask!r}"
        return (f"{kind}, tau={self.tau:g}, v_threshold={self.v_threshold:g}, {self.reset} reset, "
                f"surrogate={self.surrogate!r}, backend={self.backend!r}")


_ARGS_DOC = """
    Args:
        sparsity: fraction of the pairs (i < j) of each K_o that are absent, in [0, 1]. 0 = full K, 1 = no K
            (the layer is then Linear + LIF). Default 0.9 (the paper's best accuracy per FLOP).
        rank: None (default) for the masked sparse K; an integer r for the low-rank ablation
            ``K_o = Σ_q (u_oq v_oqᵀ + v_oq u_oqᵀ) - diag`` (dense, no mask; ``sparsity`` is then unused).
        bias: add a learnable bias to the current. Default True.
        tau: membrane time constant (> 1). Default 2.0.  v_threshold: firing threshold (> 0). Default 1.0.
        decay_input: scale the input by 1/tau (SpikingJelly). Default True.
        reset: ``"soft"`` (default, SPEC.md: V = H − v_threshold·S) or ``"hard"`` (V = H·(1 − S), to 0; the
            authors' spike-driven Transformer path).
        detach_reset: no gradient through the reset. Default False.
        surrogate: surrogate gradient name or instance. Default ``"atan"``.
        backend: bilinear engine, ``"auto"`` | ``"numba"`` | ``"torch"`` | ``"triton"`` | ``"reference"`` (dense,
            also takes real-valued input). Default ``"auto"`` (numba on CPU when installed, triton on CUDA when
            Triton imports, else torch).
        lif_backend: soma engine, ``"auto"`` | ``"fused"`` | ``"reference"``.
        check_input: refuse non-binary input on the sparse paths (one scan of the input). Default True.
        k_init: K entries are initialised uniform in [-k_init, k_init]; default 1/n.
        seed: seed of the random mask (and of the K initial values); default drawn from torch's global RNG.
        mask: ``"independent"`` (default: every neuron keeps each pair independently with probability
            1 − sparsity, the paper's per-neuron random masks) or ``"cyclic"`` (windows on the output ring: the
            same law per neuron, but neighbouring neurons share most kept pairs; contiguous, faster kernels and
            the only layout of the Triton engine). See ``docs/dlif.md``.
"""


class DLIFLinear(_Bilinear):
    __doc__ = r"""Fully connected DLIF layer ``[T, B, in_features] -> [T, B, out_features]`` (spikes).

    DLIF, the dendritic bilinear integration neuron (ICLR 2026; equations as in ``docs/SPEC.md``)::

        I_o[t] = Σ_i W_oi s_i[t] + b_o + s[t]ᵀ K_o s[t]      (K_o symmetric, zero diagonal, masked)
        H[t] = V[t-1] + (I[t] - V[t-1]) / tau;  S[t] = Θ(H[t] - v_threshold);  V[t] = H[t] - v_threshold S[t]

    Input must be binary spikes for the sparse engines. Parameters: ``weight`` [out, in], ``bias`` [out],
    ``bilinear_values`` (the kept K entries only, about ``(1 - sparsity)·out·in(in-1)/2`` of them).
    Recorded traces: ``"v"`` (pre-reset potential H) and ``"current"`` (I).
    """ + _ARGS_DOC

    def __init__(self, in_features: int, out_features: int, sparsity: float = 0.9, *, rank: int | None = None,
                 bias: bool = True, tau: float = 2.0, v_threshold: float = 1.0, decay_input: bool = True,
                 detach_reset: bool = False, surrogate: SurrogateLike = "atan", backend: str = "auto",
                 lif_backend: str = "auto", check_input: bool = True, k_init: float | None = None,
                 seed: int | None = None, reset: str = "soft", mask: str = "independent"):
        n = check_int("in_features", in_features, minimum=2)
        out = check_int("out_features", out_features, minimum=1)
        self._n, self._out = n, out
        super().__init__(n, out, sparsity, rank, tau, v_threshold, decay_input, detach_reset, surrogate, backend,
                         lif_backend, check_input, k_init, seed, reset, mask)
        self.in_features, self.out_features = n, out
        lin = nn.Linear(n, out, bias=bias)  # PyTorch's default initialisation of W and b
        self.weight = lin.weight
        self.bias = lin.bias

    def input_current(self, s_t: Tensor) -> Tensor:
        """I[t] for one step of presynaptic spikes ``s_t`` ``[B, in]`` (any leading dims) -> ``[B, out]``."""
        if not isinstance(s_t, Tensor) or s_t.dim() < 1 or s_t.shape[-1] != self.in_features:
            shape = tuple(s_t.shape) if isinstance(s_t, Tensor) else type(s_t).__name__
            raise ValueError(f"DLIFLinear.input_current: s_t must be [..., {self.in_features}], got {shape}")
        self._check_dtype(s_t, self.weight)
        flat = s_t.reshape(-1, self.in_features)
        cur = F.linear(flat, self.weight, self.bias) + self._bilinear(flat)
        return cur.view(*s_t.shape[:-1], self.out_features)

    def init_state(self, x_t: Tensor) -> DLIFState:
        dtype = self.state_dtype(x_t)
        return DLIFState(torch.zeros(*x_t.shape[:-1], self.out_features, dtype=dtype, device=x_t.device))

    @property
    def input_width(self) -> int:  # type: ignore[override]
        return self.in_features

    def _run_sequence(self, x: Tensor, state: DLIFState) -> tuple[Tensor, DLIFState]:
        current = self.input_current(x)
        spikes, h, v_last = self._soma(current, state.v)
        self.record_state("current", current)
        self.record_state("v", h)
        return spikes, DLIFState(v_last)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " + self._extra()


class DLIFConv2d(_Bilinear):
    __doc__ = r"""Convolutional DLIF layer ``[T, B, C_in, H, W] -> [T, B, C_out, H', W']`` (spikes).

    An ordinary ``Conv2d`` plus a per-pixel bilinear term over the input channels (as in the authors' code,
    applied 1×1 at every pixel, K of shape [out_ch, in_ch, in_ch])::

        I_o[p] = (W * s)_o[p] + b_o + Σ_{c,d} K_o,cd s_c[p] s_d[p]

    followed by the LIF soma (soft reset by default). With ``stride > 1`` the bilinear term is taken at the pixels
    the convolution centres on (every ``stride``-th); the default padding ``kernel_size // 2`` keeps both grids
    equal for odd kernels. DLIF (ICLR 2026), conv form of the authors' code.
    """ + _ARGS_DOC

    in_rank = 5

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int | None = None, sparsity: float = 0.9, *, rank: int | None = None, bias: bool = True,
                 tau: float = 2.0, v_threshold: float = 1.0, decay_input: bool = True, detach_reset: bool = False,
                 surrogate: SurrogateLike = "atan", backend: str = "auto", lif_backend: str = "auto",
                 check_input: bool = True, k_init: float | None = None, seed: int | None = None,
                 reset: str = "soft", mask: str = "independent"):
        n = check_int("in_channels", in_channels, minimum=2)
        out = check_int("out_channels", out_channels, minimum=1)
        k = check_int("kernel_size", kernel_size, minimum=1)
        self.stride = check_int("stride", stride, minimum=1)
        self.padding = k // 2 if padding is None else check_int("padding", padding, minimum=0)
        self._n, self._out = n, out
        super().__init__(n, out, sparsity, rank, tau, v_threshold, decay_input, detach_reset, surrogate, backend,
                         lif_backend, check_input, k_init, seed, reset, mask)
        self.in_channels, self.out_channels, self.kernel_size = n, out, k
        self.conv = nn.Conv2d(n, out, k, stride=self.stride, padding=self.padding, bias=bias)

    @property
    def weight(self) -> Tensor:
        return self.conv.weight

    def _current(self, x: Tensor) -> Tensor:
        """Input current for ``x`` ``[N, C, H, W]`` -> ``[N, out, H', W']``."""
        self._check_dtype(x, self.conv.weight)
        conv = self.conv(x)
        pix = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        if pix.shape[-2:] != conv.shape[-2:]:
            raise ValueError(f"DLIFConv2d: the convolution output {tuple(conv.shape[-2:])} and the bilinear pixel "
                             f"grid {tuple(pix.shape[-2:])} differ; use an odd kernel_size with the default padding")
        N, C, H, W = pix.shape
        rows = pix.permute(0, 2, 3, 1).reshape(-1, C)
        bil = self._pixel_bilinear(rows).view(N, H, W, self.out_channels).permute(0, 3, 1, 2)
        return conv + bil

    def _pixel_bilinear(self, rows: Tensor) -> Tensor:
        """``sᵀ K_o s`` at every pixel row ``[R, C]``: on CPU (numba) the dense channel-block engine
        (:mod:`dendrix.ops.bilinear.conv`, input gradient one matrix product per active channel), else the
        generic sparse engines."""
        if self.rank is None:
            layout = self.layout
            engine = resolve_backend(self.backend, rows.device, isinstance(layout, IndependentLayout))
            if uses_channel_engine(rows, layout, engine):
                return channel_bilinear(rows, self.bilinear_values, layout, self.check_input_spikes,
                                        self._channel_index(layout))
        return self._bilinear(rows)

    def _channel_index(self, layout: PairLayout | IndependentLayout) -> tuple[Tensor, Tensor]:
        """:func:`~dendrix.ops.bilinear.conv.block_index` of the mask, cached until a mask buffer changes
        (``load_state_dict`` replaces or rewrites them)."""
        buffers = [b for b in self.buffers(recurse=False)]
        key = tuple((b.data_ptr(), b._version, b.shape) for b in buffers)
        cached = getattr(self, "_block_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, block_index(layout))
            self._block_cache = cached
        return cached[1]

    def input_current(self, s_t: Tensor) -> Tensor:
        """I[t] for one step ``s_t`` ``[B, C_in, H, W]`` -> ``[B, C_out, H', W']``."""
        if not isinstance(s_t, Tensor) or s_t.dim() != 4 or s_t.shape[1] != self.in_channels:
            shape = tuple(s_t.shape) if isinstance(s_t, Tensor) else type(s_t).__name__
            raise ValueError(f"DLIFConv2d.input_current: s_t must be [B, {self.in_channels}, H, W], got {shape}")
        return self._current(s_t)

    def _check_x(self, x: Tensor) -> None:
        self.check_input(x)
        if x.dim() != 5 or x.shape[2] != self.in_channels:
            raise ValueError(f"DLIFConv2d input must be [T, B, {self.in_channels}, H, W], got {tuple(x.shape)}")

    def init_state(self, x_t: Tensor) -> DLIFState:
        if x_t.dim() != 4:
            raise ValueError(f"DLIFConv2d.init_state: x_t must be [B, C, H, W], got {tuple(x_t.shape)}")
        B, _, H, W = x_t.shape
        k, p, s = self.kernel_size, self.padding, self.stride
        Ho, Wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
        dtype = self.state_dtype(x_t)
        return DLIFState(torch.zeros(B, self.out_channels, Ho, Wo, dtype=dtype, device=x_t.device))

    def check_run_input(self, x: Tensor) -> None:
        self._check_x(x)

    def output_step_shape(self, step_shape: torch.Size) -> tuple[int, ...]:
        """``[B, out_channels, H', W']``: the shape of the soma's state (one output step)."""
        return tuple(self.init_state(torch.empty(step_shape, device="meta")).v.shape)

    def _run_sequence(self, x: Tensor, state: DLIFState) -> tuple[Tensor, DLIFState]:
        T, B = x.shape[:2]
        current = self._current(x.reshape(T * B, *x.shape[2:]))
        current = current.view(T, B, *current.shape[1:])
        spikes, h, v_last = self._soma(current, state.v)
        self.record_state("current", current)
        self.record_state("v", h)
        return spikes, DLIFState(v_last)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, " + self._extra())


# Keywords of DLIF's synapses (the bilinear current), refused by spiking_neuron("dlif", n), which is the soma alone.
_SYNAPSE_ARGUMENTS = ("sparsity", "rank", "bias", "backend", "check_input", "k_init", "seed", "mask")


def dlif_soma(n: int, *, tau: float = 2.0, v_threshold: float = 1.0, decay_input: bool = True,
              detach_reset: bool = False, surrogate: SurrogateLike = "atan", lif_backend: str = "auto",
              reset: str = "soft", **synapse_kw) -> LIF:
    """``spiking_neuron("dlif", n)``: DLIF's soma without its synapses, a :class:`~dendrix.neurons.lif.LIF` (soft reset)
    with DLIF's arguments (``lif_backend`` is its ``backend``). ``n`` is not needed (LIF is shape-agnostic)."""
    if synapse_kw:
        name = sorted(synapse_kw)[0]
        allowed = "a synaptic argument of DLIFLinear" if name in _SYNAPSE_ARGUMENTS else "not a DLIF argument"
        raise TypeError(f"spiking_neuron('dlif', n) is DLIF's soma alone: {name}= is {allowed}; use "
                        f"dendrix.spiking_layer('dlif', in_features, out_features, {name}=...) for the whole layer")
    check_choice("reset", reset, RESETS)
    return LIF(tau=tau, v_threshold=v_threshold, v_reset=None if reset == "soft" else 0.0, decay_input=decay_input,
               detach_reset=detach_reset, surrogate=surrogate, backend=lif_backend)


register("dlif", DLIFLinear, family="dendritic", layer=True, neuron=dlif_soma,
         description="LIF with dendritic bilinear integration I = Ws + sᵀKs, sparse symmetric K (ICLR 2026)",
         defaults={"sparsity": 0.9},
         cpu_engine="numba AND-pair kernels (ops.bilinear) + fused LIF soma", gpu_engine="Triton bilinear + LIF kernels")
