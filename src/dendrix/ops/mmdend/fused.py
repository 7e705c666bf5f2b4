"""MMDEND's chunked kernel: dendrites, branch nonlinearity, soma and SSF in one pass over time blocks.

The input current is ``[T, batch·channels]``; per block of L steps the dendrites are one ``[L+K, L+K]`` block
operator per branch (built by :meth:`dendrix.neurons.MMDEND.block_operator`), the soma one ``[L, L+1]`` matrix,
and only the K compartment states and the soma state are carried between blocks. The backward is written by
hand (the blocks in reverse with the transposed matrices). Derivation and measurements: ``docs/mmdend.md``.
The plain autograd version of the same computation is :func:`~dendrix.ops.mmdend.reference.reference_chunked_mmdend`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..threads import serial_on_cpu

__all__ = ["BLOCK", "ChunkLayout", "chunked_mmdend", "serial_graph"]

# Time block length of the chunked kernel: per block a [L+K, L+K] dendrite and a [L, L+1] soma matrix multiply
# (about L + 2K and L multiply-adds per element); between blocks only the K compartment and the soma states
# are carried. Measured on the shared 2-core CPU (channels 128, B 32, T 1024, fwd+bwd): see docs/mmdend.md.
BLOCK = 32
# On a CPU the kernel runs its small per-block operators on one intra-op thread (ops/threads.py).


class _SerialGraph(torch.autograd.Function):
    """``fn(*params)`` on one intra-op thread in both directions (CPU): forward builds the small parameter graph
    (eig, exp, sin, cos on [J, K]-sized tensors) on detached leaves, backward differentiates it there too.
    MKL's vector maths splits even tiny inputs across threads, and on a loaded machine those hand-offs cost more
    than the whole chunked kernel (``docs/benchmarks.md``, "Measurements behind the kernels")."""

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


class ChunkLayout(NamedTuple):
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


def _window_starts(lay: ChunkLayout) -> list[int]:
    """First channel of every branch window: the windows are contiguous runs ``[j·S, j·S + D')`` with
    ``S = (D − D')/(J − 1)`` (:func:`dendrix.neurons.mmdend.channel_windows`), so a window is a slice of the
    channel axis. Slices replace ``index_select``/``index_add_`` over the last axis, which CPU kernels walk one
    element at a time (measured: about a third of the kernel's time at channels 128, B 32, T 1024)."""
    J, D, Dp = lay.branches, lay.channels, lay.window
    stride = (D - Dp) // (J - 1) if J > 1 else 0
    return [j * stride for j in range(J)]


def _gather_block(x_b: Tensor, lay: ChunkLayout, out: Tensor, scale: Tensor | None = None) -> None:
    """``x_b`` ``[L, B·D]`` → ``out`` ``[J, L, B·D']`` (branch j's window), times ``scale[j]`` if given."""
    L = x_b.shape[0]
    B, D, Dp, J = lay.batch, lay.channels, lay.window, lay.branches
    if lay.disjoint:
        src = x_b.view(L, B, J, Dp).permute(2, 0, 1, 3)
        if scale is None:
            out.view(J, L, B, Dp).copy_(src)
        else:
            torch.mul(src, scale.view(J, 1, 1, 1), out=out.view(J, L, B, Dp))
        return
    x3 = x_b.view(L, B, D)
    for j, start in enumerate(_window_starts(lay)):
        src, dst = x3[:, :, start:start + Dp], out[j].view(L, B, Dp)
        if scale is None:
            dst.copy_(src)
        else:
            torch.mul(src, scale[j], out=dst)


def _scatter_add_block(src: Tensor, lay: ChunkLayout, out: Tensor) -> None:
    """``out`` ``[L, B·D]`` += ``src`` ``[J, L, B·D']`` summed over the branches that see each channel (in branch
    order, as ``index_add_`` would)."""
    J, L = src.shape[0], src.shape[1]
    B, D, Dp = lay.batch, lay.channels, lay.window
    if lay.disjoint:
        out.view(L, B, J, Dp).add_(src.view(J, L, B, Dp).permute(1, 2, 0, 3))
        return
    out3 = out.view(L, B, D)
    for j, start in enumerate(_window_starts(lay)):
        out3[:, :, start:start + Dp].add_(src[j].view(L, B, Dp))


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
    def forward(ctx, x, M, M_tail, beta, w, g_in, gain, offset, vd0, vs0, lay: ChunkLayout):  # type: ignore[override]
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
                                   _soma_matrices(beta_f, Lb, dtype, device)[0], Mb,
                                   None if lay.disjoint else torch.empty(J, Lb, Np, dtype=dtype, device=device))
                    state_in_next = False
                pair, Zs, Ms, Mb, weighted = buffers[Lb]
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
                    _scatter_add_block(torch.mul(dend, w.detach().view(J, 1, 1), out=weighted), lay, u)
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



def serial_graph(fn, step_numel: int, *params: Tensor) -> tuple[Tensor, ...]:
    """``fn(*params)`` evaluated, and differentiated, on one intra-op thread on a CPU (:class:`_SerialGraph`);
    ``step_numel`` is the per-step size that :func:`~dendrix.ops.threads.serial_on_cpu` judges by. While
    ``torch.compile`` traces, ``fn`` is called directly (the graph is differentiated by AOTAutograd, and a traced
    graph cannot switch threads)."""
    if torch.compiler.is_compiling():
        return tuple(fn(*params))
    return _SerialGraph.apply(fn, step_numel, *params)


def chunked_mmdend(x: Tensor, M: Tensor, M_tail: Tensor | None, beta: Tensor, w: Tensor, g_in: Tensor, gain: Tensor,
                   offset: Tensor, vd0: Tensor, vs0: Tensor, lay: ChunkLayout
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """MMDEND from input current ``x [T, batch·channels]`` to SSF spikes, block by block (:class:`_ChunkedMMDEND`).

    ``M [J, L+K, L+K]`` and ``M_tail`` (the last, shorter block, or None) are the dendrite block operators, ``beta``
    the soma decay, ``w [J]`` the soma weights α/τ^s_j, ``g_in`` α γ^s, ``gain``/``offset`` the SSF affine terms
    (all 0-dim except M and w); ``vd0 [J, K, batch·window]`` and ``vs0 [batch·channels]`` the initial states.
    Returns ``(spikes [T, ·], v [T, ·], f [J, T, batch·window], vd_T, vs_T)``: the soma potential and the branch
    outputs (gelu: pre-activation) are not differentiable; without ``lay.traces`` they are block-sized scratch.
    """
    return _ChunkedMMDEND.apply(x, M, M_tail, beta, w, g_in, gain, offset, vd0, vs0, lay)
