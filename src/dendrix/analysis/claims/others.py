"""D-RF (sparsity, parallel speed-up), MMDEND (SSF equivalence, parameter count) and DA-LIF (few time steps)."""

from __future__ import annotations

import time

import torch

from ...neurons.drf import DRF
from ...neurons.mmdend import MMDEND
from ...neurons.ssf import expand_integer_spikes
from .base import ClaimResult, claim, verdict
from .fsdd import fsdd_arrays, train_fsdd_mlp
from .stats import paired, summarize


# --------------------------------------------------------------------------------------------------------- D-RF
def _drf_input(seed: int, T: int, B: int, C: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, B, C, generator=g)


@claim("drf_sparsity", "D-RF (dendritic resonate-and-fire)")
def drf_sparsity_claim(seeds: int = 5, quick: bool = False) -> ClaimResult:
    """Spike rate of a default D-RF layer (adaptive threshold on) against the same layer without the adaptive
    threshold (S = P, the pre-spikes), on the same unit-variance Gaussian current."""
    T, B, C = (64, 2, 16) if quick else (512, 4, 64)
    adaptive, plain = [], []
    for s in range(seeds):
        torch.manual_seed(s)
        neuron = DRF(C)
        x = _drf_input(s, T, B, C)
        with torch.no_grad():
            adaptive.append(float(neuron(x).mean()))
            state = neuron.state_dict()
            torch.manual_seed(s)
            flat = DRF(C, adaptive_threshold=False)
            flat.load_state_dict({k: v for k, v in state.items() if k != "threshold_logits"}, strict=False)
            plain.append(float(flat(x).mean()))
    a, p = summarize(adaptive), summarize(plain)
    pr = paired(adaptive, plain)
    return ClaimResult(
        "drf_sparsity", "D-RF", "the adaptive threshold makes D-RF spikes sparse (fewer spikes than the pre-spikes)",
        f"spike rate, adaptive threshold {a.text('.4f')} vs without {p.text('.4f')}; {pr.text('.4f')}",
        verdict(pr.difference.high < 0), seeds, settings={"T": T, "B": B, "channels": C, "input": "N(0, 1) current"},
        values={"adaptive": a.to_dict(), "plain": p.to_dict(), "paired": pr.to_dict()})


def _time_fwd_bwd(neurons: dict, x: torch.Tensor, repeats: int) -> dict:
    """Best forward + backward time of each neuron, the neurons interleaved in every repeat (load cancels)."""
    best = {k: float("inf") for k in neurons}
    for _ in range(repeats):
        for name, neuron in neurons.items():
            xi = x.clone().requires_grad_(True)
            start = time.perf_counter()
            neuron(xi).sum().backward()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


@claim("drf_speedup", "D-RF (dendritic resonate-and-fire)")
def drf_speedup_claim(seeds: int = 5, quick: bool = False) -> ClaimResult:
    """Forward + backward time of the sequential recurrence over the parallel (FFT) method of the same D-RF
    layer, measured in one run (best of interleaved repeats), so machine load largely cancels in the ratio. Two
    sequential forms: the step loop with autograd through every step (``backend="reference"``, what BPTT of a
    recurrent neuron costs) and the library's fused recurrence engine (one autograd node)."""
    T, B, C, repeats = (128, 2, 8, 1) if quick else (1024, 4, 32, 5)
    loop, fused = [], []
    for s in range(seeds):
        torch.manual_seed(s)
        fft = DRF(C, method="fft")
        ref = DRF(C, method="sequential", backend="reference")
        eng = DRF(C, method="sequential")
        ref.load_state_dict(fft.state_dict())
        eng.load_state_dict(fft.state_dict())
        t = _time_fwd_bwd({"fft": fft, "loop": ref, "fused": eng}, _drf_input(s, T, B, C), repeats)
        loop.append(t["loop"] / t["fft"])
        fused.append(t["fused"] / t["fft"])
    r, f = summarize(loop), summarize(fused)
    return ClaimResult(
        "drf_speedup", "D-RF", "parallel training is faster than the sequential recurrence",
        f"time of the step loop (autograd per step) / parallel FFT, forward + backward, T = {T}: "
        f"{r.text('.1f', unit=' ×')}; fused sequential engine / FFT {f.text('.2f', unit=' ×')}",
        verdict(r.low > 1.0, f.low > 1.0), seeds, settings={"T": T, "B": B, "channels": C, "repeats": repeats},
        values={"loop_over_fft": r.to_dict(), "fused_over_fft": f.to_dict()},
        notes=["Ratios measured in one process on a loaded CPU; absolute times are not reported."])


# ------------------------------------------------------------------------------------------------------ MMDEND
@claim("mmdend_ssf", "MMDEND")
def mmdend_ssf_claim(seeds: int = 5, quick: bool = False) -> ClaimResult:
    """Integer SSF spikes of a default MMDEND layer driving a Linear layer against the same layer driven by the
    Ū binary sub-steps (accumulates only): sub-steps sum to the integer spike exactly and the outputs agree."""
    T, B, D = (16, 2, 16) if quick else (64, 4, 64)
    exact, max_rel, nonbinary = [], [], []
    for s in range(seeds):
        torch.manual_seed(s)
        neuron, linear = MMDEND(D), torch.nn.Linear(D, 10)
        x = 2.0 * torch.randn(T, B, D, generator=torch.Generator().manual_seed(s))
        with torch.no_grad():
            spikes = neuron(x)
            sub = expand_integer_spikes(spikes, neuron.ssf.levels)  # [T, U, B, D]
            y_int = linear(spikes)
            y_bin = torch.nn.functional.linear(sub, linear.weight).sum(1) + linear.bias
        exact.append(float(torch.equal(sub.sum(1), spikes)))
        nonbinary.append(float((sub.abs() > 1).any()))
        max_rel.append(float((y_int - y_bin).abs().max() / y_int.abs().max().clamp_min(1e-12)))
    e, m = summarize(exact), summarize(max_rel)
    return ClaimResult(
        "mmdend_ssf", "MMDEND", "integer SSF spikes equal Ū binary sub-steps (the same synaptic input, ACs only)",
        f"sub-steps sum exactly to the integer spike in {int(sum(exact))}/{seeds} seeds; max relative output "
        f"difference {m.text('.1e')}", verdict(e.mean == 1.0 and m.high < 1e-5, not any(nonbinary)), seeds,
        settings={"T": T, "B": B, "D": D}, values={"exact": e.to_dict(), "max_relative": m.to_dict()})


@claim("mmdend_params", "MMDEND")
def mmdend_params_claim(seeds: int = 5, quick: bool = False) -> ClaimResult:
    """Parameter count of the default MMDEND for several D, and its output shape for several T (the same
    module runs every T)."""
    dims = (8, 32) if quick else (16, 64, 256, 1024)
    counts = {D: sum(p.numel() for p in MMDEND(D).parameters()) for D in dims}
    neuron = MMDEND(dims[0])
    runs_any_t = all(neuron(torch.randn(T, 1, dims[0])).shape == (T, 1, dims[0]) for T in (8, 32, 100))
    same = len(set(counts.values())) == 1
    return ClaimResult(
        "mmdend_params", "MMDEND", "the parameter count is independent of D and T",
        "parameters for D = " + ", ".join(f"{D}: {c}" for D, c in counts.items()) + "; one module runs T = 8, 32, 100",
        verdict(same, runs_any_t), 1, settings={"dims": dims}, values={"counts": counts},
        notes=["Deterministic: no seeds needed."])


# ------------------------------------------------------------------------------------------------------ DA-LIF
@claim("dalif_few_steps", "DA-LIF (ICASSP 2025)")
def dalif_few_steps_claim(seeds: int = 5, quick: bool = False) -> ClaimResult:
    """DA-LIF against LIF on FSDD seen with few time steps (the 100 bins pooled into T), same seeds."""
    steps = (4,) if quick else (4, 8)
    epochs = 1 if quick else 3
    data = (*fsdd_arrays("train"), *fsdd_arrays("test"))
    small = dict(max_train=256) if quick else {}
    values, parts, conds = {}, [], []
    for T in steps:
        acc = {k: [train_fsdd_mlp(k, s, epochs=epochs, time_steps=T, data=data, **small).test_accuracy
                   for s in range(seeds)] for k in ("dalif", "lif")}
        pr = paired(acc["dalif"], acc["lif"])
        d, l = summarize(acc["dalif"]), summarize(acc["lif"])
        values[f"T={T}"] = {"dalif": d.to_dict(), "lif": l.to_dict(), "paired": pr.to_dict()}
        parts.append(f"T = {T}: DA-LIF {d.text()}, LIF {l.text()}, {pr.text()}")
        conds.append(pr.difference.low > 0)
    return ClaimResult(
        "dalif_few_steps", "DA-LIF", "DA-LIF is more accurate than LIF at few time steps",
        "; ".join(parts), verdict(*conds), seeds, settings={"epochs": epochs, "time_steps": steps,
                                                           "model": "SpikingMLP 64-128-10, library defaults"},
        values=values)
