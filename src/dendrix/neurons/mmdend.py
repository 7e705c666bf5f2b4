"""MMDEND (multi-branch multi-compartment parallel spiking dendritic neuron), its SSF firing, and PMSN.

Three modules, each usable alone:

* :class:`SSF`: shifted-scaled integer firing ``S = floor(clip((V − φ_p)/φ_s, −U, U)/V_th)`` with a
  straight-through gradient inside the clip range, and its exact expansion into Ū binary sub-steps.
* :class:`MMDEND`: channel windows → per-branch tridiagonal compartment chains (cable model, diagonalised,
  zero-order hold, FFT causal convolution) → branch nonlinearity → leaky soma (parallel) → SSF.
* :class:`PMSN` (Chen et al. 2024): the single-branch predecessor, parameterised in the eigenbasis, with the
  cumulative-sum "reset" of the authors' code.

The equations, derivations and design choices are in ``docs/mmdend.md``.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.threads import serial_on_cpu
from ..ops.linear import causal_conv, linear_recurrence, modal_kernel, mode_powers
from ..validation import check_choice, check_int, check_positive, check_range
from .base import Neuron

__all__ = ["SSF", "MMDEND", "PMSN", "SSFState", "MMDENDState", "PMSNState", "channel_windows",
           "expand_integer_spikes"]

_HALF = (torch.float16, torch.bfloat16)


def _compute_dtype(x: Tensor) -> Tensor:
    """Half inputs are computed in float32 (FFTs and complex eigen-decompositions need it) and returned in
    their own dtype; integer spike counts up to 2048 are exact in float16 and bfloat16 holds |S| <= 256."""
    return x.float() if x.dtype in _HALF else x


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


# ---------------------------------------------------------------------------------------------------------------
# SSF: shifted-scaled integer firing
# ---------------------------------------------------------------------------------------------------------------
def expand_integer_spikes(s: Tensor, levels: int) -> Tensor:
    """Integer spikes ``s`` ``[T, B, *]`` in [−levels, levels] → ``[T, levels, B, *]`` sub-steps in {−1, 0, 1}.

    Sub-step u (1-based) fires +1 where ``s >= u`` and −1 where ``s <= −u``; the sum over sub-steps is ``s``
    exactly, and every sub-step has one sign per neuron (spikes {0, 1} or {−1, 0}).
    """
    levels = check_int("levels", levels, minimum=1)
    u = torch.arange(1, levels + 1, device=s.device, dtype=s.dtype).view(1, levels, *([1] * (s.dim() - 1)))
    s1 = s.unsqueeze(1)
    return (s1 >= u).to(s.dtype) - (s1 <= -u).to(s.dtype)


class SSFState(NamedTuple):
    """SSF is memoryless: its state is empty."""


class SSF(Neuron):
    """Shifted-scaled firing (MMDEND paper): integer spikes from a membrane potential.

    ``S[t] = clamp(floor(clip((V[t] − φ_p)/φ_s, −U, U) / V_th), −Ū, Ū)``, ``Ū = floor(U / V_th)``.

    The shift φ_p (init 0) and scale φ_s (init 1, used as ``max(φ_s, 1e-4)``) are learnable scalars. The
    gradient is straight-through inside the clip range: ``∂S/∂V = 1/(φ_s·V_th)`` for ``−U < (V−φ_p)/φ_s < U``
    and 0 outside; φ_p and φ_s get the gradients of that expression. (The final clamp to ±Ū only matters
    when U is not a multiple of V_th, where ``floor(−U/V_th)`` would reach −Ū − 1.)

    Training and inference emit the same integers (``emits = "integer"``). :meth:`binary_spikes` returns the
    inference form, Ū binary sub-steps per time step whose sum is the integer spike, so a synapse computes
    ``W·S[t] = Σ_u W·S[t, u]`` with accumulates only.

    Args:
        ssf_range: U, an integer >= 1 (default 4; the paper's ablation found [−3, 3] best; U = 1 is ternary
            firing in {−1, 0, 1}).
        v_threshold: V_th > 0 (default 1). ``U / V_th`` must be >= 1.
        scale_shift: learn φ_p and φ_s (default True). False is the "no scaling/shifting" ablation
            (φ_p = 0, φ_s = 1 fixed).
        firing: ``"integer"`` (default) or ``"binary"``, the ablation with ordinary spikes: the same formula
            with the clip range [0, V_th], i.e. ``S = Θ((V − φ_p)/φ_s − V_th)`` in {0, 1} with a
            straight-through (rectangular) gradient on [0, V_th].
    """

    emits = "integer"

    def __init__(self, ssf_range: int = 4, v_threshold: float = 1.0, scale_shift: bool = True,
                 firing: str = "integer"):
        super().__init__()
        self.ssf_range = check_int("ssf_range", ssf_range, minimum=1)
        self.v_threshold = check_positive("v_threshold", v_threshold)
        self.firing = check_choice("firing", firing, ("integer", "binary"))
        self.levels = int(math.floor(self.ssf_range / self.v_threshold + 1e-9))
        if self.levels < 1:
            raise ValueError(f"ssf_range / v_threshold must be >= 1 (at least one spike level), got "
                             f"{self.ssf_range} / {self.v_threshold:g}")
        if self.firing == "binary":
            self.emits = "binary"
            self.levels = 1
        self.scale_shift = bool(scale_shift)
        if self.scale_shift:
            self.shift = nn.Parameter(torch.tensor(0.0))
            self.scale = nn.Parameter(torch.tensor(1.0))
        else:
            self.register_buffer("shift", torch.tensor(0.0))
            self.register_buffer("scale", torch.tensor(1.0))

    def normalised(self, v: Tensor) -> Tensor:
        """``(V − φ_p)/φ_s`` (φ_s floored at 1e-4)."""
        return (v - self.shift.to(v.dtype)) / self.scale.to(v.dtype).clamp_min(1e-4)

    def affine(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """``(gain, offset)`` with ``(V − φ_p)/(φ_s V_th) = gain·V + offset`` (differentiable 0-dim tensors)."""
        gain = 1.0 / (self.scale.to(dtype).clamp_min(1e-4) * self.v_threshold)
        return gain, -self.shift.to(dtype) * gain

    def clip_bounds(self) -> tuple[float, float]:
        """The clip range of ``gain·V + offset``: ``[−U/V_th, U/V_th]`` (integer) or ``[0, 1]`` (binary)."""
        if self.firing == "integer":
            bound = self.ssf_range / self.v_threshold
            return -bound, bound
        return 0.0, 1.0

    def fire(self, v: Tensor) -> Tensor:
        """Integer (or binary) spikes of potential ``v`` (any shape) with the straight-through gradient.

        The value is exactly the integer level (``levels + (clipped − clipped)``), the gradient that of the clip.
        """
        gain, offset = self.affine(v.dtype)
        x = v * gain + offset  # the same two roundings as MMDEND's chunked kernel (bit-identical spikes)
        clipped = x.clamp(*self.clip_bounds())
        levels = torch.floor(clipped.detach()).clamp_(-self.levels, self.levels)
        return levels + (clipped - clipped.detach())

    def binary_spikes(self, v: Tensor) -> Tensor:
        """Sub-step spikes ``[T, Ū, B, *]`` in {−1, 0, 1} of potentials ``v`` ``[T, B, *]``; sums to :meth:`fire`."""
        return expand_integer_spikes(self.fire(v).detach(), self.levels)

    # Neuron contract (memoryless)
    def init_state(self, x_t: Tensor) -> SSFState:
        return SSFState()

    def run(self, x: Tensor, state: SSFState | None = None) -> tuple[Tensor, SSFState]:
        self.check_input(x)
        xc = _compute_dtype(x)
        self.record_state("v", xc)
        return self.fire(xc).to(x.dtype), SSFState()

    def operation_counts(self, inputs: Tensor, output: Tensor) -> dict[str, float]:
        """Energy counting (:mod:`dendrix.analysis.energy`): firing alone (V - φ_p)/φ_s is 1 MAC per neuron and
        step; clip and floor are selects. Inside MMDEND it is part of MMDEND's count."""
        return {"dynamics_mac": 1.0 * float(output.numel())}

    def extra_repr(self) -> str:
        return (f"ssf_range={self.ssf_range}, v_threshold={self.v_threshold:g}, levels={self.levels}, "
                f"firing={self.firing!r}, scale_shift={self.scale_shift}")


# ---------------------------------------------------------------------------------------------------------------
# channel grouping
# ---------------------------------------------------------------------------------------------------------------
def channel_windows(channels: int, branches: int | None = None, window: int | None = None,
                    stride: int | None = None) -> tuple[int, int, int]:
    """Resolve ``(J, D', S)``: J windows of length D' and stride S that cover channels 0..D−1 exactly.

    Window j covers channels ``[j·S, j·S + D')``. Full coverage needs ``S <= D'`` (no gap between windows)
    and ``(J − 1)·S + D' = D`` (the last window ends at the last channel).

    * neither window nor stride: ``S = floor(D/J)``, ``D' = D − (J − 1)·S`` (J = branches, default 2);
      disjoint windows when J divides D, otherwise neighbours overlap by ``D' − S`` channels.
    * window only: ``S = (D − D')/(J − 1)``, which must be an integer (any S for J = 1, which needs D' = D).
    * stride only: ``D' = D − (J − 1)·S``, which must be >= S.
    * both: ``J = (D − D')/S + 1`` (``branches``, if given, must agree).
    """
    D = check_int("channels", channels, minimum=1)
    if window is not None:
        window = check_int("window", window, minimum=1)
        if window > D:
            raise ValueError(f"window must be <= channels ({D}), got {window}")
    if stride is not None:
        stride = check_int("stride", stride, minimum=1)
    if window is not None and stride is not None:
        if (D - window) % stride:
            raise ValueError(f"window={window} and stride={stride} leave channels uncovered: (channels - window) = "
                             f"{D - window} must be a multiple of stride so the last window ends at channel {D - 1}")
        if stride > window:
            raise ValueError(f"stride ({stride}) > window ({window}) leaves gaps between windows; need stride <= window")
        J = (D - window) // stride + 1
        if branches is not None and check_int("branches", branches, minimum=1) != J:
            raise ValueError(f"window={window}, stride={stride} over {D} channels give {J} branches, but branches="
                             f"{branches}; pass branches={J} or branches=None")
        return J, window, stride
    J = check_int("branches", 2 if branches is None else branches, minimum=1)
    if J > D:
        raise ValueError(f"branches must be <= channels ({D}), got {J}")
    if window is not None:
        if J == 1:
            if window != D:
                raise ValueError(f"with 1 branch the window must span all {D} channels, got window={window}")
            return 1, D, 1
        if (D - window) % (J - 1):
            raise ValueError(f"window={window} with {J} branches over {D} channels needs stride (channels - window)/"
                             f"(branches - 1) = {(D - window) / (J - 1):g}, not an integer; give stride= too")
        S = (D - window) // (J - 1)
        if S < 1 or S > window:
            raise ValueError(f"window={window} with {J} branches over {D} channels gives stride {S}, outside "
                             f"[1, window]; choose another window")
        return J, window, S
    if stride is not None:
        Dp = D - (J - 1) * stride
        if Dp < stride:
            raise ValueError(f"stride={stride} with {J} branches over {D} channels needs window {Dp} >= stride; "
                             f"use a smaller stride")
        return J, Dp, stride
    if J == 1:
        return 1, D, 1
    S = D // J
    return J, D - (J - 1) * S, S


def _tanh(v: Tensor) -> Tensor:
    """tanh as ``2σ(2v) − 1``: equal to tanh up to rounding (absolute error of order eps), and measured 1.8× faster
    than ``torch.tanh`` on this CPU (float32, 65k elements, one thread: 347 µs against 625 µs). Every MMDEND path
    (step, chunked, FFT) uses this same sequence of operations, so their spikes stay bit-identical."""
    return torch.sigmoid(v * 2.0) * 2.0 - 1.0


_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": _tanh, "relu": F.relu, "sigmoid": torch.sigmoid, "gelu": F.gelu, "identity": lambda v: v,
}


def _initial_response(z0: Tensor, a: Tensor, c: Tensor, T: int) -> Tensor:
    """``Re Σ_m c_m a_m^{t+1} z0_m`` for t = 0..T−1: the output of a free modal state. ``z0 [B, *C, M]``,
    ``a, c [*C, M]``; returns ``[T, B, *C]``."""
    pw = mode_powers(a, T, offset=1)                                    # [*C, M, T]
    return torch.einsum("...mt,b...m->tb...", pw * c.unsqueeze(-1), z0).real


def _final_modes(u: Tensor, a: Tensor, bbar: Tensor, z0: Tensor | None) -> Tensor:
    """Modal state after a chunk: ``z[T−1] = a^T z0 + Σ_t a^{T−1−t} b̄ u[t]``. ``u [T, B, *C]`` (real),
    ``a, bbar [*C, M]``, ``z0 [B, *C, M]`` or None; returns ``[B, *C, M]`` complex."""
    T = u.shape[0]
    pw_rev = mode_powers(a, T).flip(-1) * bbar.unsqueeze(-1)           # [*C, M, T]
    z = torch.einsum("...mt,tb...->b...m", pw_rev, u.to(a.dtype))
    if z0 is not None:
        z = z + a.pow(T) * z0
    return z


# ---------------------------------------------------------------------------------------------------------------
# MMDEND's chunked kernel: dendrites, branch nonlinearity, soma and SSF in one pass over time blocks
# ---------------------------------------------------------------------------------------------------------------
# Time block length of the chunked kernel: per block a [L+K, L+K] dendrite and a [L, L+1] soma matrix multiply
# (about L + 2K and L multiply-adds per element); between blocks only the K compartment and the soma states
# are carried. Measured on the shared 2-core CPU (channels 128, B 32, T 1024, fwd+bwd): see docs/mmdend.md.
_BLOCK = 32
# On a CPU the kernel runs its small per-block operators on one intra-op thread (ops/threads.py).


class _SerialGraph(torch.autograd.Function):
    """``fn(*params)`` on one intra-op thread in both directions (CPU): forward builds the small parameter graph
    (eig, exp, sin, cos on [J, K]-sized tensors) on detached leaves, backward differentiates it there too.
    Measured on the loaded 2-core machine: one ``sin`` of 136 float64 elements took 28 ms with two threads
    (MKL's vector maths splits even tiny inputs) against 2-4 µs with one; autograd's backward of these
    operators ran with two threads and cost more than the whole chunked kernel."""

    @staticmethod
    def forward(ctx, fn, step_numel, *params):  # type: ignore[override]
        ctx.device, ctx.step_numel = params[0].device, step_numel
        leaves = [p.detach().requires_grad_(p.requires_grad) for p in params]
        with torch.enable_grad(), serial_on_cpu(ctx.device, step_numel):
            outs = fn(*leaves)
        ctx.leaves, ctx.outs = leaves, outs
        return tuple(o.detach() for o in outs)

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        pairs = [(o, g) for o, g in zip(ctx.outs, grads) if g is not None and o.requires_grad]
        wanted = [i for i, p in enumerate(ctx.leaves) if p.requires_grad]
        result: list[Tensor | None] = [None] * len(ctx.leaves)
        if pairs and wanted:
            with serial_on_cpu(ctx.device, ctx.step_numel):
                got = torch.autograd.grad([o for o, _ in pairs], [ctx.leaves[i] for i in wanted],
                                          [g for _, g in pairs], allow_unused=True)
            for i, g in zip(wanted, got):
                result[i] = g
        ctx.leaves = ctx.outs = None
        return (None, None, *result)


def _activation_grad(name: str, saved: Tensor, grad: Tensor, out: Tensor) -> Tensor:
    """``grad · f'(d)`` into ``out``; ``saved`` is f(d) (d itself for gelu). No temporaries for tanh and sigmoid:
    a fresh block-sized buffer costs page faults."""
    if name == "tanh":                                                             # g − g f²
        return torch.addcmul(grad, grad, torch.mul(saved, saved, out=out), value=-1.0, out=out)
    if name == "sigmoid":
        return torch.mul(saved, saved, out=out).sub_(saved).mul_(grad).neg_()    # g f (1 − f)
    if name == "relu":
        return torch.mul(grad, saved > 0, out=out)
    if name == "gelu":                                                             # Φ(d) + d φ(d)
        cdf = torch.special.ndtr(saved)
        pdf = torch.exp(saved * saved * -0.5).mul_(1.0 / math.sqrt(2.0 * math.pi))
        return torch.mul(grad, torch.addcmul(cdf, saved, pdf), out=out)
    return out.copy_(grad)                                                         # identity


class _Layout(NamedTuple):
    """Shapes of the chunked kernel: ``x`` is ``[T, batch·channels]``; branch data ``[J, L, batch·window]``."""
    batch: int
    channels: int
    window: int
    branches: int
    compartments: int
    block: int
    disjoint: bool
    index: Tensor          # [J·D'] channel of (branch j, position i) at j·D' + i
    activation: str
    clip: tuple[float, float]
    levels: int            # clamp the floor to ±levels (0: not needed)
    traces: bool = True    # keep v [T+1, ·] and f [J, T, ·] (for backward or recording); False: block-sized scratch


def _gather_block(x_b: Tensor, lay: _Layout, out: Tensor, scale: Tensor | None = None) -> None:
    """``x_b`` ``[L, B·D]`` → ``out`` ``[J, L, B·D']`` (branch j's window), times ``scale[j]`` if given."""
    L = x_b.shape[0]
    B, D, Dp, J = lay.batch, lay.channels, lay.window, lay.branches
    if lay.disjoint:
        src = x_b.view(L, B, J, Dp)
    else:
        src = x_b.view(L, B, D).index_select(-1, lay.index).view(L, B, J, Dp)
    if scale is None:
        out.view(J, L, B, Dp).copy_(src.permute(2, 0, 1, 3))
    else:
        torch.mul(src.permute(2, 0, 1, 3), scale.view(J, 1, 1, 1), out=out.view(J, L, B, Dp))


def _scatter_add_block(src: Tensor, lay: _Layout, out: Tensor) -> None:
    """``out`` ``[L, B·D]`` += ``src`` ``[J, L, B·D']`` summed over the branches that see each channel."""
    J, L = src.shape[0], src.shape[1]
    B, D, Dp = lay.batch, lay.channels, lay.window
    s = src.view(J, L, B, Dp).permute(1, 2, 0, 3)
    if lay.disjoint:
        out.view(L, B, J, Dp).add_(s)
    else:
        out.view(L, B, D).index_add_(-1, lay.index, s.reshape(L, B, J * Dp))


def _soma_matrices(beta: float, L: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """Forward ``[L, L+1]``: v_blk = [Toeplitz β^(i−k) | β^(i+1)] · [u; v_prev]; adjoint ``[L, L+1]``:
    λ_blk = [Toeplitz β^(k−i) | β^(L−i)] · [g; λ_next]."""
    i = torch.arange(L, dtype=torch.float64, device=device)
    lag = i.unsqueeze(1) - i.unsqueeze(0)
    toeplitz = torch.where(lag >= 0, torch.tensor(beta, dtype=torch.float64, device=device).pow(lag.clamp_min(0)),
                           torch.zeros((), dtype=torch.float64, device=device))
    fwd = torch.cat([toeplitz, (beta ** (i + 1)).unsqueeze(1)], 1)
    adj = torch.cat([toeplitz.T, (beta ** (L - i)).unsqueeze(1)], 1)
    return fwd.to(dtype), adj.to(dtype)


class _ChunkedMMDEND(torch.autograd.Function):
    """MMDEND from input current to spikes, block by block over time, with a hand-written backward.

    Per block of L steps (``docs/mmdend.md``): branch data ``Z = [G; v_prev]`` ``[J, L+K, B·D']`` (inputs of the
    window and the compartment state) → ``W = M Z`` gives the dendrite outputs ``[J, L, ·]`` and the state after
    the block ``[J, K, ·]``; f → soma input ``u = Σ_j w_j f_j + g_in I`` → ``v = [T_β | β^(i+1)] [u; v_prev]``
    → SSF. Backward runs the blocks in reverse with the transposed matrices; parameter gradients are returned
    for the block operators ``M`` (autograd takes them on to the compartment parameters), β, w, g_in and the
    SSF affine terms. Saved: the soma potential ``[T+1, B·D]`` (with v[−1]), the branch outputs
    ``[J, T, B·D']`` and the compartment state at each block start (K/L of the data).
    """

    @staticmethod
    def forward(ctx, x, M, M_tail, beta, w, g_in, gain, offset, vd0, vs0, lay: _Layout):  # type: ignore[override]
        T, N = x.shape
        J, K, L = lay.branches, lay.compartments, lay.block
        Np = lay.batch * lay.window
        dtype, device = x.dtype, x.device
        beta_f, g_in_f = float(beta), float(g_in)
        w_view = w.detach().view(1, 1, J, 1)
        gain_f, offset_f = float(gain), float(offset)
        lo, hi = lay.clip
        n_full, tail = divmod(T, L)
        blocks = [(b * L, L) for b in range(n_full)] + ([(n_full * L, tail)] if tail else [])
        spikes = torch.empty_like(x)
        # without traces (inference, not recording) v and f live in block-sized scratch: T-sized buffers that are
        # never read again would only cost first-touch page faults
        rows = T if lay.traces else L
        v_ext = torch.empty(rows + 1, N, dtype=dtype, device=device)  # v_ext[t + 1] = v[t]; v_ext[0] = v[−1]
        f_all = torch.empty(J, rows, Np, dtype=dtype, device=device)  # branch outputs (gelu: pre-activation)
        starts = torch.empty(len(blocks), J, K, Np, dtype=dtype, device=device)
        with torch.no_grad(), serial_on_cpu(device, N):
            v_ext[0].copy_(vs0)
            state, state_in_next = vd0, False   # state_in_next: the last product left it in the next Z's rows
            buffers = {}
            for n, (s, Lb) in enumerate(blocks):
                if Lb not in buffers:
                    Mb = M if Lb == L else M_tail
                    if lay.activation == "tanh":  # tanh(d) = 2σ(2d) − 1: the exact factor 2 goes into M's output rows
                        Mb = torch.cat([Mb[:, :Lb] * 2.0, Mb[:, Lb:]], 1)
                    buffers[Lb] = ([torch.empty(J, Lb + K, Np, dtype=dtype, device=device),
                                    torch.empty(J, Lb + K, Np, dtype=dtype, device=device)],
                                   torch.empty(Lb + 1, N, dtype=dtype, device=device),
                                   _soma_matrices(beta_f, Lb, dtype, device)[0], Mb)
                    state_in_next = False
                pair, Zs, Ms, Mb = buffers[Lb]
                Z, W = pair  # ping-pong: W's state rows [Lb:] are the next block's Z rows, no copy between blocks
                pair.reverse()
                e = s + Lb
                x_b = x[s:e]
                _gather_block(x_b, lay, Z[:, :Lb])
                if not state_in_next:
                    Z[:, Lb:].copy_(state)
                starts[n].copy_(Z[:, Lb:])
                torch.bmm(Mb, Z, out=W)
                state, state_in_next = W[:, Lb:], True
                r = s if lay.traces else 0                              # row of this block in v_ext, f_all
                dend, f_b = W[:, :Lb], f_all[:, r:r + Lb]
                if lay.activation == "tanh":  # _tanh's operations (2·d is already in W), in place
                    dend = torch.sigmoid(dend, out=f_b).mul_(2.0).sub_(1.0)
                elif lay.activation == "sigmoid":
                    dend = torch.sigmoid(dend, out=f_b)
                elif lay.activation == "relu":
                    dend = torch.clamp_min(dend, 0.0, out=f_b)
                else:  # gelu keeps the pre-activation for its derivative; identity: f = d
                    f_b.copy_(dend)
                    if lay.activation == "gelu":
                        dend = F.gelu(dend)
                # soma input u = Σ_j w_j f_j + g_in I (channels of every window), then the block's soma matrix
                u = Zs[:Lb]
                if lay.disjoint:
                    torch.mul(dend.view(J, Lb, lay.batch, lay.window).permute(1, 2, 0, 3), w_view,
                              out=u.view(Lb, lay.batch, J, lay.window))
                    u.add_(x_b, alpha=g_in_f)
                else:
                    torch.mul(x_b, g_in_f, out=u)
                    _scatter_add_block(dend * w.detach().view(J, 1, 1), lay, u)
                Zs[Lb].copy_(v_ext[s] if lay.traces else v_ext[0] if n == 0 else v_ext[Lb_prev])
                v_b = v_ext[r + 1:r + Lb + 1]
                torch.mm(Ms, Zs, out=v_b)
                Lb_prev = Lb
                sp = spikes[s:e]
                torch.mul(v_b, gain_f, out=sp).add_(offset_f).clamp_(lo, hi).floor_()
                if lay.levels:
                    sp.clamp_(-lay.levels, lay.levels)
            vdT = state.clone()
        vsT = (v_ext[T] if lay.traces else v_ext[blocks[-1][1]]).clone()
        ctx.lay, ctx.blocks, ctx.beta, ctx.g_in = lay, blocks, beta_f, g_in_f
        ctx.set_materialize_grads(False)
        ctx.has_tail = M_tail is not None
        ctx.save_for_backward(x, M, M_tail if M_tail is not None else M.new_empty(0), w, gain, offset,
                              v_ext, f_all, starts)
        v = v_ext[1:]
        ctx.mark_non_differentiable(v, f_all)
        ctx.traces = lay.traces
        return spikes, v, f_all, vdT, vsT

    @staticmethod
    def backward(ctx, g_spikes, g_v, g_f, g_vdT, g_vsT):  # type: ignore[override]
        if not ctx.traces:
            raise RuntimeError("MMDEND's chunked kernel ran without traces (grad mode was off); it has no backward")
        x, M, M_tail, w, gain, offset, v_ext, f_all, starts = ctx.saved_tensors
        lay, blocks, beta_f, g_in_f = ctx.lay, ctx.blocks, ctx.beta, ctx.g_in
        T, N = x.shape
        J, K, L = lay.branches, lay.compartments, lay.block
        Np = lay.batch * lay.window
        dtype, device = x.dtype, x.device
        lo, hi = lay.clip
        gain_f, offset_f = float(gain), float(offset)
        w_d = w.detach()
        if g_spikes is None:
            g_spikes = torch.zeros_like(x)
        grad_x = torch.empty_like(x)
        gM, gM_tail = torch.zeros_like(M), torch.zeros_like(M_tail) if ctx.has_tail else None
        acc: list[list[Tensor]] = [[], [], [], []]                     # β, g_in, gain, offset: per-block terms
        with torch.no_grad(), serial_on_cpu(device, N):
            # Σ_t (g f_j) f_j elementwise over one block: one addcmul per block (a [1, N]·[N, 1] bmm took 100-150 µs).
            # Block-sized fills and sums stay inside the one-thread region (a thread hand-off costs milliseconds)
            gw_acc = torch.zeros(J, L, Np, dtype=dtype, device=device)
            g_state = g_vdT if g_vdT is not None else torch.zeros(J, K, Np, dtype=dtype, device=device)
            g_state_in_next = False  # the last product left g_state in the next gW's rows
            lam_next = None                                            # λ at the first step of the next block
            buffers = {}
            for n in range(len(blocks) - 1, -1, -1):
                s, Lb = blocks[n]
                e = s + Lb
                if Lb not in buffers:
                    buffers[Lb] = (torch.empty(J, Lb + K, Np, dtype=dtype, device=device),   # Z
                                   [torch.empty(J, Lb + K, Np, dtype=dtype, device=device),  # gW, gZ
                                    torch.empty(J, Lb + K, Np, dtype=dtype, device=device)],
                                   torch.empty(Lb + 1, N, dtype=dtype, device=device),       # [gv; λ_next]
                                   torch.empty(Lb, N, dtype=dtype, device=device),           # λ
                                   torch.empty(Lb, N, dtype=dtype, device=device),           # scratch
                                   torch.empty(J, Lb, Np, dtype=dtype, device=device),       # g f
                                   _soma_matrices(beta_f, Lb, dtype, device)[1],
                                   (M, gM) if Lb == L else (M_tail, gM_tail))
                    g_state_in_next = False
                Z, pair, Zg, lam, tmp, gf, Ma, (Mb, gMb) = buffers[Lb]
                gW, gZ = pair  # ping-pong: gZ's state rows [Lb:] are the next (earlier) block's gW rows
                pair.reverse()
                v_b, x_b = v_ext[s + 1:e + 1], x[s:e]
                # SSF: straight-through inside the clip range (clamp's inclusive mask)
                xs = torch.mul(v_b, gain_f, out=tmp).add_(offset_f)
                mask = xs.abs_().le_(hi) if lo == -hi else torch.logical_and(xs >= lo, xs <= hi)
                gx = torch.mul(g_spikes[s:e], mask, out=Zg[:Lb])
                acc[2].append(torch.vdot(gx.reshape(-1), v_b.reshape(-1)))
                acc[3].append(gx.sum())
                gv = gx.mul_(gain_f)  # in place: measured several times cheaper than a multiply into another buffer
                if n == len(blocks) - 1:
                    if g_vsT is not None:
                        gv[-1].add_(g_vsT)
                    Zg[Lb].zero_()
                else:
                    Zg[Lb].copy_(lam_next)
                torch.mm(Ma, Zg, out=lam)
                lam_next = lam[0]
                acc[0].append(torch.vdot(lam.reshape(-1), v_ext[s:e].reshape(-1)))
                acc[1].append(torch.vdot(lam.reshape(-1), x_b.reshape(-1)))
                torch.mul(lam, g_in_f, out=grad_x[s:e])
                # branch outputs: g f_j = w_j λ at the channels of window j; g w_j = Σ λ f_j = Σ (g f_j) f_j / w_j
                _gather_block(lam, lay, gf, scale=w_d)
                f_b = f_all[:, s:e]
                f_val = F.gelu(f_b) if lay.activation == "gelu" else f_b
                gw_acc[:, :Lb].addcmul_(gf, f_val)
                _activation_grad(lay.activation, f_b, gf, gW[:, :Lb])
                if not g_state_in_next:
                    gW[:, Lb:].copy_(g_state)
                torch.bmm(Mb.transpose(1, 2), gW, out=gZ)
                _gather_block(x_b, lay, Z[:, :Lb])
                Z[:, Lb:].copy_(starts[n])
                gMb.baddbmm_(gW, Z.transpose(1, 2))
                _scatter_add_block(gZ[:, :Lb], lay, grad_x[s:e])
                g_state, g_state_in_next = gZ[:, Lb:], True
            g_vd0 = g_state.clone()
            g_vs0 = lam_next * beta_f
            g_w = gw_acc.sum((1, 2)) / w_d
        g_beta, g_gin, g_gain, g_off = (torch.stack(terms).sum(0) for terms in acc)
        return (grad_x, gM, gM_tail if ctx.has_tail else None, g_beta, g_w, g_gin, g_gain, g_off, g_vd0, g_vs0,
                None)


# ---------------------------------------------------------------------------------------------------------------
# MMDEND
# ---------------------------------------------------------------------------------------------------------------
class _OperatorView(nn.Module):
    """``forward = model.kernel_operators``, so :func:`torch.func.functional_call` can evaluate it with
    detached parameter leaves (see :class:`_SerialGraph`)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, L: int, tail: int, dtype: torch.dtype) -> tuple[Tensor, ...]:
        return self.model.kernel_operators(L, tail, dtype)


class MMDENDState(NamedTuple):
    compartments: Tensor  # [B, *, D', J, K] compartment voltages of every branch at every window position
    soma: Tensor          # [B, *, D] soma potential V^s


class MMDEND(Neuron):
    """Multi-branch multi-compartment parallel spiking dendritic neuron with SSF firing (MMDEND).

    Input: a current ``I`` ``[T, B, *, D]`` (D = ``channels``, the last dim). Per time step t:

    * Grouping: J windows of length D' and stride S over the channel axis; branch j receives channels
      ``[j·S, j·S + D')`` (:func:`channel_windows`). A channel feeds between 1 and J branches
      (:meth:`branch_proportions`).
    * Branch j, for every channel c of its window, a chain of K compartments (cable model), with the SAME
      parameters for every channel:
      ``dv_k/dt = v_{k−1}/τ^f_k − v_k/τ_k + v_{k+1}/τ^p_k + γ_k I_c``  (tridiagonal ``A_j`` [K×K]),
      ``V^dend_{j,c} = Σ_k c_k v_k + γ^o_j I_c`` (``c`` init ``[0 … 0 1]``, the terminal compartment).
      ``A_j = P Λ P⁻¹`` is diagonalised (``torch.linalg.eig``, complex, differentiable) every call, discretised
      by zero-order hold with step dt_j, and the branch is a causal convolution with the kernel
      ``K_j[l] = Re Σ_m (cP)_m (P⁻¹Γ)_m (e^{λ_m dt_j} − 1)/λ_m · e^{λ_m dt_j l}`` (FFT, :mod:`dendrix.ops.linear`).
      Modes with Re λ > −1e-4 are held at −1e-4 (a stability guard; inactive at the initialisation).
    * Branch nonlinearity: ``f(V^dend)`` (``branch_activation``, default tanh).
    * Soma (per channel): ``V^s[t] = β V^s[t−1] + α (Σ_{j∋c} f(V^dend_{j,c}[t]) / τ^s_j + γ^s I_c[t])``,
      ``β = exp(−dt_s/τ^s)``, ``α = τ^s (1 − β)`` (ZOH); linear, so computed by block matrix products.
    * Firing: :class:`SSF`, integer spikes in [−Ū, Ū] (``emits = "integer"``).

    Parameters (independent of D and T): per branch, leak rates 1/τ_k (log), couplings 1/τ^f_k and 1/τ^p_k
    (signed), log dt_j, Γ_j, c_j, γ^o_j, 1/τ^s_j (log); soma log τ^s and γ^s; SSF φ_p, φ_s. That is
    ``J(5K + 1) + 2`` plus 2 for SSF (K = 4, J = 2: 46).

    Args:
        channels: D, the number of input channels (= neurons) per time step.
        branches: J (default 2); derived from ``window`` and ``stride`` when both are given.
        compartments: K >= 1 (default 4).
        window, stride: D' and S (None: derived, see :func:`channel_windows`).
        ssf_range, v_threshold, scale_shift, firing: the :class:`SSF` options (U = 4, V_th = 1).
        branch_activation: ``"tanh"`` (default), ``"relu"``, ``"sigmoid"``, ``"gelu"``, ``"identity"``.
        tau_soma: τ^s initial value (default 2.0; dt_s = ``dt_soma`` = 1).
        leak, coupling: initial 1/τ_k and couplings (0.5 and 0.25: eigenvalues in (−1, 0), a stable chain).
        dt_min, dt_max: the initial dt_j are log-spaced over [dt_min, dt_max] across branches (0.1, 1.0).
        soma_input_gain: initial γ^s (default 1.0).
        method: ``"auto"`` (the default: ``"chunked"`` on CPU, ``"fft"`` on GPUs), ``"chunked"`` (dendrites,
            nonlinearity, soma and SSF in one autograd node over blocks of 32 steps, block matrix products,
            hand-written backward; see ``docs/mmdend.md``), ``"fft"`` (FFT causal convolutions for dendrites and
            soma, plain autograd) or ``"sequential"`` (a ``step`` loop, the reference).
    """

    emits = "integer"

    def __init__(self, channels: int, branches: int | None = None, compartments: int = 4, window: int | None = None,
                 stride: int | None = None, ssf_range: int = 4, branch_activation: str = "tanh", *,
                 v_threshold: float = 1.0, scale_shift: bool = True, firing: str = "integer", tau_soma: float = 2.0,
                 dt_soma: float = 1.0, leak: float = 0.5, coupling: float = 0.25, dt_min: float = 0.1,
                 dt_max: float = 1.0, soma_input_gain: float = 1.0, method: str = "auto"):
        super().__init__()
        self.channels = check_int("channels", channels, minimum=1)
        self.compartments = K = check_int("compartments", compartments, minimum=1)
        self.branches, self.window, self.stride = channel_windows(self.channels, branches, window, stride)
        J = self.branches
        self.branch_activation = check_choice("branch_activation", branch_activation, tuple(_ACTIVATIONS))
        self.method = check_choice("method", method, ("auto", "chunked", "fft", "sequential"))
        tau_soma = check_positive("tau_soma", tau_soma)
        self.dt_soma = check_positive("dt_soma", dt_soma)
        leak, dt_min, dt_max = check_positive("leak", leak), check_positive("dt_min", dt_min), check_positive("dt_max", dt_max)
        if dt_min > dt_max:
            raise ValueError(f"dt_min must be <= dt_max, got {dt_min:g} > {dt_max:g}")
        coupling = check_range("coupling", coupling, -1e6, 1e6)
        if coupling == 0 and K > 1:
            # equal leaks and no coupling give K equal eigenvalues, where the gradient of eig is undefined (NaN)
            raise ValueError("coupling must be non-zero when compartments > 1 (uncoupled compartments with equal "
                             "leaks have repeated eigenvalues, where torch.linalg.eig has no gradient), got 0")

        idx = torch.arange(self.window).unsqueeze(1) + self.stride * torch.arange(J).unsqueeze(0)  # [D', J]
        self.register_buffer("channel_index", idx, persistent=False)
        self._disjoint = self.window == self.stride or J == 1

        self.log_leak = nn.Parameter(torch.full((J, K), math.log(leak)))
        self.coupling_forward = nn.Parameter(torch.full((J, max(K - 1, 0)), float(coupling)))   # A[k, k-1]
        self.coupling_backward = nn.Parameter(torch.full((J, max(K - 1, 0)), float(coupling)))  # A[k, k+1]
        log_dt = torch.linspace(math.log(dt_min), math.log(dt_max), J) if J > 1 else torch.tensor([math.log(dt_min * dt_max) / 2])
        self.log_dt = nn.Parameter(log_dt)
        self.input_gain = nn.Parameter(torch.ones(J, K))                 # Γ
        out = torch.zeros(J, K)
        out[:, -1] = 1.0
        self.output_weight = nn.Parameter(out)                            # c
        self.direct_gain = nn.Parameter(torch.zeros(J))                   # γ^o
        self.log_tau_branch = nn.Parameter(torch.zeros(J))                # τ^s_j = 1
        self.log_tau_soma = nn.Parameter(torch.tensor(math.log(tau_soma)))
        self.soma_input_gain = nn.Parameter(torch.tensor(float(soma_input_gain)))  # γ^s
        self.ssf = SSF(ssf_range, v_threshold, scale_shift=scale_shift, firing=firing)
        self.emits = self.ssf.emits
        self.min_decay = 1e-4

    # -- structure ------------------------------------------------------------------------------------------
    def channel_coverage(self) -> Tensor:
        """Number of branches that see each channel, ``[D]`` (int64)."""
        counts = torch.zeros(self.channels, dtype=torch.int64, device=self.channel_index.device)
        return counts.index_add_(0, self.channel_index.flatten(), torch.ones_like(self.channel_index.flatten()))

    def branch_proportions(self) -> dict[int, float]:
        """Fraction of channels that feed exactly n branches, for n = 1..J (sums to 1)."""
        cov = self.channel_coverage()
        return {n: float((cov == n).float().mean()) for n in range(1, self.branches + 1)}

    def compartment_matrix(self) -> Tensor:
        """The tridiagonal ``A_j`` ``[J, K, K]``: diag −1/τ_k, sub-diagonal 1/τ^f, super-diagonal 1/τ^p."""
        A = torch.diag_embed(-self.log_leak.exp())
        if self.compartments > 1:
            A = A + torch.diag_embed(self.coupling_forward, offset=-1) + torch.diag_embed(self.coupling_backward, offset=1)
        return A

    def _modes(self):
        """Eigen-decomposition and ZOH terms in float64/complex128: λ [J,K], P, P⁻¹, dt [J], a = e^{λdt},
        b̃ = P⁻¹Γ, c̃ = cP, b̄ = b̃ (a − 1)/λ."""
        A = self.compartment_matrix().double()
        lam, P = torch.linalg.eig(A)
        Pinv = torch.linalg.inv(P)
        lam = torch.complex(lam.real.clamp(max=-self.min_decay), lam.imag)
        dt = self.log_dt.double().exp()
        a = torch.exp(lam * dt.unsqueeze(-1))
        b_modal = torch.einsum("jmk,jk->jm", Pinv, self.input_gain.double().to(P.dtype))
        c_modal = torch.einsum("jk,jkm->jm", self.output_weight.double().to(P.dtype), P)
        bbar = b_modal * (a - 1) / lam
        return lam, P, Pinv, dt, a, b_modal, c_modal, bbar

    def discrete_system(self, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """Real ZOH matrices of every branch: ``Ā = P e^{Λdt} P⁻¹`` ``[J,K,K]`` and ``B̄ = P Λ⁻¹(e^{Λdt} − 1) P⁻¹Γ``
        ``[J,K]``, so that ``v[t] = Ā v[t−1] + B̄ I[t]``."""
        lam, P, Pinv, dt, a, b_modal, c_modal, bbar = self._modes()
        Abar = torch.einsum("jkm,jm,jml->jkl", P, a, Pinv).real
        Bbar = torch.einsum("jkm,jm->jk", P, bbar).real
        return Abar.to(dtype), Bbar.to(dtype)

    def branch_kernels(self, T: int, per_compartment: bool = False) -> Tensor:
        """Impulse responses of the branches ``[J, T]`` (``per_compartment``: of every compartment, ``[J, K, T]``)."""
        lam, P, Pinv, dt, a, b_modal, c_modal, bbar = self._modes()
        if per_compartment:
            return modal_kernel(lam.unsqueeze(1), dt[:, None, None], T, b=b_modal.unsqueeze(1), c=P, real=True)
        return modal_kernel(lam, dt.unsqueeze(-1), T, b=b_modal, c=c_modal, real=True)

    def block_operator(self, L: int, modes=None, dtype: torch.dtype = torch.float32) -> Tensor:
        """The chunked kernel's per-block map ``[J, L+K, L+K]``: ``[y; v_end] = M [I; v_start]`` for L steps of
        one branch, where y are the dendrite outputs (with the direct path), v the compartment voltages:
        ``M = [[T, O], [S, Ā^L]]``, ``T[i,k] = K[i−k]`` (lower-triangular Toeplitz of the branch kernel),
        ``O[i] = c Ā^{i+1}``, ``S[:, k] = Ā^{L−1−k} B̄``. Built from the modes in float64 (differentiable)."""
        lam, P, Pinv, dt, a, b_modal, c_modal, bbar = self._modes() if modes is None else modes
        pw = mode_powers(a, L + 1)                                                        # a^0 … a^L, [J, K, L+1]
        kern = torch.einsum("jm,jml->jl", c_modal * bbar, pw[..., :L]).real
        kern = torch.cat([kern[:, :1] + self.direct_gain.double().unsqueeze(-1), kern[:, 1:]], -1)
        i = torch.arange(L, device=kern.device)
        lag = i.unsqueeze(1) - i.unsqueeze(0)
        toeplitz = kern[:, lag.clamp_min(0)] * (lag >= 0)
        out_rows = torch.einsum("jm,jmi,jmk->jik", c_modal, pw[..., 1:], Pinv).real        # c Ā^{i+1}
        in_cols = torch.einsum("jkm,jmc,jm->jkc", P, pw[..., :L].flip(-1), bbar).real     # Ā^{L−1−c} B̄
        carry = torch.einsum("jkm,jm,jml->jkl", P, pw[..., L], Pinv).real                 # Ā^L
        return torch.cat([torch.cat([toeplitz, out_rows], -1), torch.cat([in_cols, carry], -1)], -2).to(dtype)

    def kernel_operators(self, L: int, tail: int, dtype: torch.dtype) -> tuple[Tensor, ...]:
        """Everything the chunked kernel needs from the parameters: ``M`` (block L), β, ``α/τ^s_j``, ``α γ^s``,
        the SSF gain and offset, and ``M`` for the last, shorter block when ``tail > 0``."""
        modes = self._modes()
        beta, alpha = self.soma_decay()
        gain, offset = self.ssf.affine(dtype)
        out = (self.block_operator(L, modes, dtype), beta.to(dtype), (alpha * self.branch_weights()).to(dtype),
               (alpha * self.soma_input_gain).to(dtype), gain, offset)
        return out + ((self.block_operator(tail, modes, dtype),) if tail else ())

    def soma_decay(self) -> tuple[Tensor, Tensor]:
        """``β = exp(−dt_s/τ^s)`` and ``α = τ^s (1 − β)``."""
        tau = self.log_tau_soma.exp()
        beta = torch.exp(-self.dt_soma / tau)
        return beta, tau * (1 - beta)

    def branch_weights(self) -> Tensor:
        """``1/τ^s_j`` ``[J]``."""
        return torch.exp(-self.log_tau_branch)

    # -- contract -------------------------------------------------------------------------------------------
    def init_state(self, x_t: Tensor) -> MMDENDState:
        lead = x_t.shape[:-1]
        dtype = _compute_dtype(x_t).dtype
        return MMDENDState(x_t.new_zeros(*lead, self.window, self.branches, self.compartments, dtype=dtype),
                           x_t.new_zeros(*lead, self.channels, dtype=dtype))

    def _gather(self, x: Tensor) -> Tensor:
        """``[..., D]`` → ``[..., D', J]`` (channel ``j·S + i`` at ``[..., i, j]``)."""
        if self._disjoint:  # windows tile the channels: a view, no copy
            return x.reshape(*x.shape[:-1], self.branches, self.window).transpose(-1, -2)
        g = x.index_select(-1, self.channel_index.flatten())
        return g.view(*x.shape[:-1], self.window, self.branches)

    def _soma_input(self, branch_out: Tensor, x: Tensor, alpha: Tensor) -> Tensor:
        """``α (Σ_{j∋c} f(V^dend_{j,c})/τ^s_j + γ^s I_c)`` ``[..., D]`` (α folded into the weights)."""
        w = branch_out * (alpha * self.branch_weights()).to(branch_out.dtype)
        if self._disjoint:
            acc = w.transpose(-1, -2).reshape(x.shape)
        else:
            acc = torch.zeros_like(x).index_add(-1, self.channel_index.flatten(), w.flatten(-2))
        return acc + (alpha * self.soma_input_gain).to(x.dtype) * x

    def _activation(self, v: Tensor) -> Tensor:
        return _ACTIVATIONS[self.branch_activation](v)

    def forward(self, x: Tensor) -> Tensor:
        if self.method == "sequential":
            return self.run(x, None)[0]
        y, _ = self._parallel(x, None, need_state=False)
        return y

    def run(self, x: Tensor, state: MMDENDState | None = None) -> tuple[Tensor, MMDENDState]:
        self.check_input(x, self.channels)
        if self.method == "sequential":
            state = self.resolve_state(x, state)
            ys, vs = [], []
            for t in range(x.shape[0]):
                y_t, state = self.step(x[t], state)
                ys.append(y_t)
                vs.append(state.soma)
            self.record_state("v", torch.stack(vs))
            return torch.stack(ys), state
        return self._parallel(x, state, need_state=True)

    def _parallel(self, x: Tensor, state: MMDENDState | None, need_state: bool) -> tuple[Tensor, MMDENDState | None]:
        # "auto": the chunked kernel on CPU; FFT convolutions on GPUs, where they measured 1.4-8x faster and flat
        # in T (docs/benchmarks.md, H100) while the chunked kernel's per-block launches grow with T.
        if self.method == "fft" or (self.method == "auto" and x.device.type != "cpu"):
            return self._parallel_fft(x, state, need_state)
        return self._chunked(x, state, need_state)

    def _chunked(self, x: Tensor, state: MMDENDState | None, need_state: bool) -> tuple[Tensor, MMDENDState | None]:
        """The chunked kernel (:class:`_ChunkedMMDEND`): exact, blocks of ``_BLOCK`` steps, no complex tensors
        and no FFT over the data."""
        self.check_input(x, self.channels)
        if state is not None:
            state = self.resolve_state(x, state)
        xc = _compute_dtype(x)
        dtype = xc.dtype
        T, lead = xc.shape[0], xc.shape[1:-1]
        J, K, D, Dp = self.branches, self.compartments, self.channels, self.window
        x2 = xc.reshape(T, -1).contiguous()                               # [T, B'·D]
        Bp = x2.shape[1] // D
        L = min(_BLOCK, T)
        tail = T % L
        names = [n for n, _ in self.named_parameters()]
        view = _OperatorView(self)

        def operators(*params: Tensor) -> tuple[Tensor, ...]:
            return torch.func.functional_call(view, {"model." + n: p for n, p in zip(names, params)}, (L, tail, dtype))

        ops = _SerialGraph.apply(operators, x2.shape[1], *self.parameters())
        M, beta, w, g_in, gain, offset = ops[:6]
        M_tail = ops[6] if tail else None
        if state is None:
            vd0 = x2.new_zeros(J, K, Bp * Dp)
            vs0 = x2.new_zeros(Bp * D)
        else:
            vd0 = state.compartments.to(dtype).reshape(Bp, Dp, J, K).permute(2, 3, 0, 1).reshape(J, K, Bp * Dp)
            vs0 = state.soma.to(dtype).reshape(Bp * D)
        lo, hi = self.ssf.clip_bounds()
        levels = self.ssf.levels if self.ssf.firing == "integer" and hi != self.ssf.levels else 0
        traces = self.recording or (torch.is_grad_enabled() and any(t.requires_grad for t in (x2, vd0, vs0, *ops)))
        lay = _Layout(Bp, D, Dp, J, K, L, self._disjoint, self.channel_index.T.flatten(), self.branch_activation,
                      (lo, hi), levels, traces)
        spikes, v, f_all, vdT, vsT = _ChunkedMMDEND.apply(x2, M, M_tail, beta, w, g_in, gain, offset, vd0, vs0, lay)
        if self.recording:
            self.record_state("v", v.reshape(xc.shape))
            f = F.gelu(f_all) if self.branch_activation == "gelu" else f_all
            self.record_state("branches", f.view(J, T, Bp, Dp).permute(1, 2, 3, 0).reshape(T, *lead, Dp, J))
            lam, P, Pinv, dt, a, b_modal, c_modal, bbar = self._modes()
            z0 = None
            if state is not None:
                cdt = _complex_dtype(dtype)
                v0 = state.compartments.reshape(-1, Dp, J, K).to(cdt)
                z0 = torch.einsum("jmk,bdjk->bdjm", Pinv.to(cdt), v0)
            g = self._gather(xc.reshape(T, -1, D))
            self.record_state("compartments", self._compartment_trace(g, z0, lam, P, dt, b_modal, a).reshape(
                T, *lead, Dp, J, K))
        out = spikes.reshape(x.shape).to(x.dtype)
        if not need_state:
            return out, None
        compartments = vdT.view(J, K, Bp, Dp).permute(2, 3, 0, 1).reshape(*lead, Dp, J, K)
        return out, MMDENDState(compartments, vsT.reshape(*lead, D))

    def _parallel_fft(self, x: Tensor, state: MMDENDState | None, need_state: bool) -> tuple[Tensor, MMDENDState | None]:
        """``method="fft"``: FFT causal convolutions for the dendrites and the soma."""
        self.check_input(x, self.channels)
        if state is not None:
            state = self.resolve_state(x, state)
        xc = _compute_dtype(x)
        T, lead = xc.shape[0], xc.shape[1:-1]
        xf = xc.reshape(T, -1, self.channels)                             # [T, B', D]
        g = self._gather(xf)                                              # [T, B', D', J]
        lam, P, Pinv, dt, a, b_modal, c_modal, bbar = self._modes()
        cdt = _complex_dtype(xc.dtype)
        kernel = modal_kernel(lam, dt.unsqueeze(-1), T, b=b_modal, c=c_modal, real=True).to(xc.dtype)   # [J, T]
        # the direct path γ^o I[t] is lag 0 of the same convolution
        kernel = torch.cat([kernel[:, :1] + self.direct_gain.to(xc.dtype).unsqueeze(-1), kernel[:, 1:]], -1)
        dend = causal_conv(g, kernel, method="fft")
        z0 = None
        if state is not None:
            v0 = state.compartments.reshape(-1, self.window, self.branches, self.compartments).to(cdt)
            z0 = torch.einsum("jmk,bdjk->bdjm", Pinv.to(cdt), v0)
            dend = dend + _initial_response(z0, a.to(cdt), c_modal.to(cdt), T).to(xc.dtype)
        branch_out = self._activation(dend)
        beta, alpha = self.soma_decay()
        soma_in = self._soma_input(branch_out, xf, alpha)
        h0 = None if state is None else state.soma.reshape(-1, self.channels).to(xc.dtype)
        v = linear_recurrence(beta.to(xc.dtype), soma_in, h0, method="fft")
        spikes = self.ssf.fire(v)
        if self.recording:
            self.record_state("v", v.reshape(xc.shape))
            self.record_state("branches", branch_out.reshape(T, *lead, self.window, self.branches))
            self.record_state("compartments", self._compartment_trace(g, z0, lam, P, dt, b_modal, a).reshape(
                T, *lead, self.window, self.branches, self.compartments))
        out = spikes.reshape(x.shape).to(x.dtype)
        if not need_state:
            return out, None
        zT = _final_modes(g, a.to(cdt), bbar.to(cdt), z0)                # [B', D', J, K]
        vT = torch.einsum("jkm,bdjm->bdjk", P.to(cdt), zT).real.to(xc.dtype)
        new_state = MMDENDState(vT.reshape(*lead, self.window, self.branches, self.compartments),
                                v[-1].reshape(*lead, self.channels))
        return out, new_state

    def _compartment_trace(self, g, z0, lam, P, dt, b_modal, a) -> Tensor:
        """Every compartment's voltage ``[T, B', D', J, K]`` (computed only while recording)."""
        T = g.shape[0]
        kern = modal_kernel(lam.unsqueeze(1), dt[:, None, None], T, b=b_modal.unsqueeze(1), c=P, real=True)
        u = g.unsqueeze(-1).expand(*g.shape, self.compartments)
        v = causal_conv(u, kern.to(g.dtype))
        if z0 is not None:
            cdt = z0.dtype
            pw = mode_powers(a.to(cdt), T, offset=1)                         # [J, M, T]
            v = v + torch.einsum("jkm,jmt,bdjm->tbdjk", P.to(cdt), pw, z0).real.to(g.dtype)
        return v

    def step(self, x_t: Tensor, state: MMDENDState | None = None) -> tuple[Tensor, MMDENDState]:
        """One time step by the sequential recurrence ``v = Ā v + B̄ I``, ``V^s = β V^s + α(…)``, SSF."""
        if not isinstance(x_t, Tensor) or x_t.dim() < 2 or x_t.shape[-1] != self.channels:
            shape = tuple(x_t.shape) if isinstance(x_t, Tensor) else type(x_t).__name__
            raise ValueError(f"MMDEND.step: x_t must be [B, ..., {self.channels}], got {shape}")
        state = self.resolve_state(x_t.unsqueeze(0), state)
        xc = _compute_dtype(x_t)
        Abar, Bbar = self.discrete_system(xc.dtype)
        g = self._gather(xc)                                              # [B, *, D', J]
        v = torch.einsum("jkl,...jl->...jk", Abar, state.compartments.to(xc.dtype)) + Bbar * g.unsqueeze(-1)
        dend = (v * self.output_weight.to(xc.dtype)).sum(-1) + self.direct_gain.to(xc.dtype) * g
        beta, alpha = self.soma_decay()
        soma = beta.to(xc.dtype) * state.soma.to(xc.dtype) + self._soma_input(self._activation(dend), xc, alpha)
        return self.ssf.fire(soma).to(x_t.dtype), MMDENDState(v, soma)

    def binary_spikes(self, x: Tensor) -> Tensor:
        """Inference form: ``[T, Ū, B, *, D]`` sub-step spikes in {−1, 0, 1} summing to ``forward(x)``."""
        return expand_integer_spikes(self.forward(x).detach(), self.ssf.levels)

    def operation_counts(self, inputs: Tensor, output: Tensor) -> dict[str, float]:
        """Energy counting (:mod:`dendrix.analysis.energy`), paper Table 4 per channel and step: dendrites
        (3K+1)c and soma 2c + 3 MACs, with c = Σ_i f_i·i the mean number of branches covering a channel."""
        coverage = float(sum(i * f for i, f in self.branch_proportions().items()))
        per_step = (3.0 * float(self.compartments) + 1.0) * coverage + 2.0 * coverage + 3.0
        return {"dynamics_mac": per_step * float(output.numel())}

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, branches={self.branches}, compartments={self.compartments}, "
                f"window={self.window}, stride={self.stride}, branch_activation={self.branch_activation!r}, "
                f"method={self.method!r}")


# ---------------------------------------------------------------------------------------------------------------
# PMSN
# ---------------------------------------------------------------------------------------------------------------
class PMSNState(NamedTuple):
    modes: Tensor     # [B, *, H, N, 2] modal compartment state (real and imaginary parts)
    residual: Tensor  # [B, *, H] soma potential left after the last spike count, in [0, V_th)


class PMSN(Neuron):
    """Parallel multi-compartment spiking neuron (Chen, Wu, Ma, Yan, Wu, Tan 2024, arXiv:2408.14917, IEEE TNNLS).

    What is implemented, following the authors' released code (SHD model) rather than the paper's prose:

    * N hidden compartments per channel h (``compartments``), initialised from the tridiagonal matrix
      ``S[i,i] = −0.5``, ``S[i,i+1] = 5(i+1)``, ``S[i+1,i] = −5(i+1)`` (leak 0.5, antisymmetric couplings ±5k),
      so ``λ_n = −0.5 + iμ_n`` with μ the eigenvalues of the Hermitian ``−i·(S + 0.5 I)``, eigenvectors V.
    * Parameters in the eigenbasis, per channel: ``Re λ = −exp(log_A_real)``, ``Im λ``, ``B = V^H 1``,
      ``C = 1^T V`` (complex), ``log dt`` (uniform in log over [dt_min, dt_max]) and a skip gain ``D`` (randn).
    * ZOH: ``z[t] = e^{λdt} z[t−1] + B (e^{λdt} − 1)/λ · u[t]``, ``y[t] = Re(C·z[t]) + D u[t]``; in parallel
      ``y = K * u + D u`` with ``K[l] = Re Σ_n C_n B_n (e^{λ_n dt} − 1)/λ_n e^{λ_n dt l}`` (FFT).
    * Soma, the cumulative-sum reset (a non-leaky integrate-and-fire with subtractive reset, in closed form):
      ``Z[t] = Σ_{τ≤t} ReLU(y[τ])``, ``δ[t] = Z[t] − V_th·floor(Z[t−1]/V_th)``,
      ``S[t] = clamp(floor(δ[t]/V_th), 0, 1)`` (``burst=True``: no upper clamp, integer bursts).
      Streaming keeps the residual ``δ − V_th·floor(δ/V_th)`` instead of the growing Z.
    * Gradient (as the authors' code): ``∂S[t]/∂ReLU(y[t]) = max(0, γ − |δ[t] − V_th|)/γ²`` (γ = 1; burst:
      ``|δ − V_th| mod V_th``), local in t — the cumulative sum is not differentiated through.

    The authors' per-parameter learning-rate multipliers (×10 for Im λ, B, C) are optimiser settings and are
    not reproduced. Parameter count: ``H(6N + 2)``.

    Args:
        channels: H. compartments: N >= 1 (default 4). dt_min, dt_max: 1e-3, 1e-1.
        v_threshold: V_th (default 1). burst: default False (binary spikes). surrogate_width: γ (default 1).
    """

    def __init__(self, channels: int, compartments: int = 4, *, dt_min: float = 1e-3, dt_max: float = 1e-1,
                 v_threshold: float = 1.0, burst: bool = False, surrogate_width: float = 1.0):
        super().__init__()
        H = self.channels = check_int("channels", channels, minimum=1)
        N = self.compartments = check_int("compartments", compartments, minimum=1)
        dt_min, dt_max = check_positive("dt_min", dt_min), check_positive("dt_max", dt_max)
        if dt_min > dt_max:
            raise ValueError(f"dt_min must be <= dt_max, got {dt_min:g} > {dt_max:g}")
        self.v_threshold = check_positive("v_threshold", v_threshold)
        self.surrogate_width = check_positive("surrogate_width", surrogate_width)
        self.burst = bool(burst)
        self.emits = "integer" if self.burst else "binary"

        k = torch.arange(1, N, dtype=torch.float64)
        coupling = torch.diag_embed(5.0 * k, offset=1) - torch.diag_embed(5.0 * k, offset=-1) if N > 1 \
            else torch.zeros(1, 1, dtype=torch.float64)
        mu, V = torch.linalg.eigh(-1j * coupling.to(torch.complex128))
        B = V.conj().T @ torch.ones(N, dtype=torch.complex128)
        C = torch.ones(N, dtype=torch.complex128) @ V
        self.log_dt = nn.Parameter(torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.log_A_real = nn.Parameter(torch.full((H, N), math.log(0.5)))
        self.A_imag = nn.Parameter(mu.float().unsqueeze(0).repeat(H, 1))
        self.B_real = nn.Parameter(B.real.float().unsqueeze(0).repeat(H, 1))
        self.B_imag = nn.Parameter(B.imag.float().unsqueeze(0).repeat(H, 1))
        self.C_real = nn.Parameter(C.real.float().unsqueeze(0).repeat(H, 1))
        self.C_imag = nn.Parameter(C.imag.float().unsqueeze(0).repeat(H, 1))
        self.D = nn.Parameter(torch.randn(H))

    def _modes(self, cdt: torch.dtype):
        lam = torch.complex(-self.log_A_real.exp(), self.A_imag).to(cdt)
        dt = self.log_dt.exp().to(lam.real.dtype)
        a = torch.exp(lam * dt.unsqueeze(-1))
        B = torch.complex(self.B_real, self.B_imag).to(cdt)
        C = torch.complex(self.C_real, self.C_imag).to(cdt)
        return lam, dt, a, B, C, B * (a - 1) / lam

    def kernel(self, T: int) -> Tensor:
        """``K`` ``[H, T]`` (float32)."""
        lam, dt, a, B, C, bbar = self._modes(torch.complex64)
        return modal_kernel(lam, dt.unsqueeze(-1), T, b=B, c=C, real=True)

    def init_state(self, x_t: Tensor) -> PMSNState:
        lead = x_t.shape[:-1]
        dtype = _compute_dtype(x_t).dtype
        return PMSNState(x_t.new_zeros(*lead, self.channels, self.compartments, 2, dtype=dtype),
                         x_t.new_zeros(*lead, self.channels, dtype=dtype))

    def _fire(self, drive: Tensor, residual0: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Cumulative-sum soma on ``drive = ReLU(y)`` ``[T, ...]``: spikes, pre-spike potentials δ, last residual."""
        th = self.v_threshold
        d64 = drive.detach().double()
        cum = d64.cumsum(0)
        if residual0 is not None:
            cum = cum + residual0.double()
        prev = torch.cat([residual0.double().unsqueeze(0) if residual0 is not None else torch.zeros_like(cum[:1]),
                          cum[:-1]])
        delta = cum - th * torch.floor(prev / th)
        count = torch.floor(delta / th).clamp_min(0)
        if not self.burst:
            count = count.clamp_max(1)
        last = delta[-1] - th * torch.floor(delta[-1] / th)
        gap = (delta - th).abs()
        if self.burst:
            gap = torch.remainder(gap, th)
        w = self.surrogate_width
        grad = ((w - gap).clamp_min(0) / (w * w)).to(drive.dtype)
        spikes = count.to(drive.dtype) + (drive * grad - (drive * grad).detach())
        return spikes, delta.to(drive.dtype), last.to(drive.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self._parallel(x, None, need_state=False)[0]

    def run(self, x: Tensor, state: PMSNState | None = None) -> tuple[Tensor, PMSNState]:
        return self._parallel(x, state, need_state=True)

    def _parallel(self, x: Tensor, state: PMSNState | None, need_state: bool) -> tuple[Tensor, PMSNState | None]:
        self.check_input(x, self.channels)
        if state is not None:
            state = self.resolve_state(x, state)
        xc = _compute_dtype(x)
        T, lead = xc.shape[0], xc.shape[1:-1]
        u = xc.reshape(T, -1, self.channels)
        cdt = _complex_dtype(xc.dtype)
        lam, dt, a, B, C, bbar = self._modes(cdt)
        K = modal_kernel(lam, dt.unsqueeze(-1), T, b=B, c=C, real=True).to(xc.dtype)
        y = causal_conv(u, K) + self.D.to(xc.dtype) * u
        z0 = None if state is None else torch.view_as_complex(
            state.modes.reshape(-1, self.channels, self.compartments, 2).to(xc.dtype).contiguous())
        if z0 is not None:
            y = y + _initial_response(z0, a, C, T).to(xc.dtype)
        r0 = None if state is None else state.residual.reshape(-1, self.channels).to(xc.dtype)
        spikes, delta, last = self._fire(F.relu(y), r0)
        self.record_state("v", delta.reshape(xc.shape))
        if not need_state:
            return spikes.reshape(x.shape).to(x.dtype), None
        zT = _final_modes(u, a, bbar, z0)
        new_state = PMSNState(torch.view_as_real(zT).reshape(*lead, self.channels, self.compartments, 2),
                              last.reshape(*lead, self.channels))
        return spikes.reshape(x.shape).to(x.dtype), new_state

    def step(self, x_t: Tensor, state: PMSNState | None = None) -> tuple[Tensor, PMSNState]:
        """One step of the recurrence ``z = a z + b̄ u``, ``y = Re(C z) + D u`` and the residual soma."""
        if not isinstance(x_t, Tensor) or x_t.dim() < 2 or x_t.shape[-1] != self.channels:
            shape = tuple(x_t.shape) if isinstance(x_t, Tensor) else type(x_t).__name__
            raise ValueError(f"PMSN.step: x_t must be [B, ..., {self.channels}], got {shape}")
        state = self.resolve_state(x_t.unsqueeze(0), state)
        xc = _compute_dtype(x_t)
        lam, dt, a, B, C, bbar = self._modes(_complex_dtype(xc.dtype))
        z = a * torch.view_as_complex(state.modes.to(xc.dtype).contiguous()) + bbar * xc.unsqueeze(-1)
        y = (C * z).sum(-1).real + self.D.to(xc.dtype) * xc
        spikes, delta, last = self._fire(F.relu(y).unsqueeze(0), state.residual.to(xc.dtype))
        return spikes[0].to(x_t.dtype), PMSNState(torch.view_as_real(z), last)

    def operation_counts(self, inputs: Tensor, output: Tensor) -> dict[str, float]:
        """Energy counting (:mod:`dendrix.analysis.energy`): MMDEND's Table 4 count with one branch per channel:
        (3K+1) + 2 + 3 MACs per neuron and step."""
        return {"dynamics_mac": ((3.0 * float(self.compartments) + 1.0) + 2.0 + 3.0) * float(output.numel())}

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, compartments={self.compartments}, v_threshold={self.v_threshold:g}, "
                f"burst={self.burst}")


# -- registry -------------------------------------------------------------------------------------------------
from ..layers.sequential import linear_factory  # noqa: E402
from ..registry import register  # noqa: E402

register("mmdend", linear_factory(MMDEND, channels_arg="channels"), family="dendritic",
         description="MMDEND: channel windows → tridiagonal compartment chains (FFT) → tanh branches → "
                     "leaky soma → SSF integer spikes")
register("pmsn", linear_factory(PMSN, channels_arg="channels"), family="dendritic",
         description="PMSN (Chen et al. 2024): multi-compartment eigenbasis SSM (FFT) with cumulative-sum reset")
