"""Operation counting and an energy proxy for spiking networks, from the spikes a network actually emits.

``energy_report(model, loader)`` runs the model on a data split with hooks on every synaptic module and neuron,
counts accumulate (AC) and multiply-accumulate (MAC) operations per layer, and converts them to energy with
per-operation constants (default 0.9 pJ per AC and 4.6 pJ per MAC: 32-bit floating-point add and
multiply+add at 45 nm, Horowitz 2014 — the constants most SNN papers use). Counted energy is a *proxy*: memory
traffic, control and data movement, which dominate real hardware, are not counted.

Counting rules (all per sample; ``[T, B]`` sequences are counted natively, every step):

* Synapses (``nn.Linear``, ``nn.Conv1d/2d/3d``, also inside ``SpikingLinear`` and recurrent wrappers): an input
  that holds integers (binary spikes, or SSF's integer spikes in [-U, U]) drives ``|s| × fan-out`` ACs, where
  fan-out is ``out_features`` (Linear) or the exact number of output positions × output channels that an input
  element reaches (Conv, computed by convolving with a kernel of ones, so borders and strides are exact). A
  real-valued input (analogue data into the first layer, membrane/current read-outs) costs dense MACs:
  ``elements × fan-out``. A bias costs one AC per output element and step.
* Neuron dynamics: ``elements of the output × m`` MACs, where ``m`` is the per-neuron per-step cost of the
  model's recurrent update (table :data:`DYNAMICS_MACS`, formulas in ``docs/evaluation.md``); an unknown neuron
  is counted as 2 MACs (the LIF update) and flagged ``assumed`` in the report.
* DLIF: ``|s| × out`` ACs for ``W s`` plus one AC per *active kept pair* (s_i = s_j = 1, (i, j) kept in K_o),
  counted exactly from the recorded spikes and the layer's pair mask; LIF soma dynamics.
* DGN: with a time constant shared by all synapses, ``Σ_i W_oi D_i[t]`` and ``Σ_i C_oi D_i[t]`` are leaky
  filters of the input spikes at the postsynaptic side, so they cost ``2 |s| × out`` ACs (1 for S-DGN, whose
  current is ``E_o`` times the conductance sum) plus 5 MACs per neuron and step (two filters, gate, membrane).
  Per-synapse time constants force the literal form: ``in`` MACs for the traces and ``2 in × out`` MACs.
* D-RF, MMDEND/PMSN, PSN: branch/compartment/kernel updates as MACs per neuron and step (see the table).

Baseline: the same network with ReLU in place of every neuron, run on the same ``T`` steps in the same 32-bit
arithmetic ("bit-matched"): every synaptic weight applied as dense MACs (``in × out`` per step for Linear; the
``W`` of DLIF/DGN), biases as ACs, ReLU, dendritic extras and dynamics free. The *break-even spike rate* is the
uniform input spike rate r of the spike-driven synapses at which the spiking network's energy
``E_fixed + E_AC (r D_1 + r² D_2)`` equals the baseline's (``D_1``: spike-driven synaptic operations at rate 1,
``D_2``: DLIF kept pairs × steps, whose active count scales with r² for independent spikes).

Models that need a custom rule can define ``operation_counts(inputs, output) -> {"ac": float, "mac": float}``
(totals for that call, all samples); it replaces the rules above for that module and its children.
"""

from __future__ import annotations

import json
import math
import weakref
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..contract import Neuron
from ..validation import check_nonnegative

__all__ = [
    "E_AC_PJ", "E_MAC_PJ", "DYNAMICS_MACS", "LayerEnergy", "EnergyReport", "count_operations", "energy_report",
]

E_AC_PJ = 0.9    # pJ per 32-bit float accumulate (add), 45 nm
E_MAC_PJ = 4.6   # pJ per 32-bit float multiply-accumulate, 45 nm

# MACs per neuron and time step of each activation-style neuron's recurrent update (by class name; subclasses
# inherit through the MRO). Callables receive the module and return the number. Formulas: docs/evaluation.md.
DYNAMICS_MACS: dict[str, float | Callable[[nn.Module], float]] = {
    # H = V(1 - 1/τ) + X/τ: 2 MACs (1 without input decay); threshold compare and reset are selects.
    "LIF": lambda m: 2.0 if getattr(m, "decay_input", True) else 1.0,
    "PLIF": lambda m: 2.0 if getattr(m, "decay_input", True) else 1.0,
    # membrane αU + (1-α)X (2), reset -B·S (1), adaptation a = ρa + (1-ρ)S (1), threshold b0 + βa (1).
    "ALIF": 5.0,
    # V = βH + αX.
    "DALIF": 2.0,
    # u' = u + dt(b u - ω v + x): 3; v' = v + dt(ω u + b v): 2.
    "RF": 5.0,
    # RF (5) + refractory q = 0.9 q + z (1) + b = p(ω) - b_offset - q (1).
    "BRF": 7.0,
    # per branch: complex z = e^{dtλ} z (4) + B̄ I (2) + c Re z (1); + M threshold taps.
    # (complex output weights: Re(c z) needs one more MAC per branch.)
    "DRF": lambda m: (7.0 + (1.0 if getattr(m, "complex_weights", False) else 0.0)) * _branches(m)
    + (_threshold_taps(m) if getattr(m, "adaptive_threshold", True) else 0.0),
    # MMDEND Table 4 per channel: dendrites (3K+1)c, soma 2c + 3, c = mean branches covering a channel.
    "MMDEND": lambda m: (3.0 * _compartments(m) + 1.0) * _coverage(m) + 2.0 * _coverage(m) + 3.0,
    "PMSN": lambda m: (3.0 * _compartments(m) + 1.0) + 2.0 + 3.0,
    # SSF firing alone: (V - φ_p)/φ_s; clip and floor are selects. Inside MMDEND it is part of Table 4's count.
    "SSF": 1.0,
    # H = W X + B: one kernel row per step (T taps for full PSN, k for masked/sliding).
    "PSN": lambda m: float(_time_taps(m)),
    "MaskedPSN": lambda m: float(_kernel_taps(m)),
    "SlidingPSN": lambda m: float(_kernel_taps(m)),
}
_DEFAULT_DYNAMICS_MACS = 2.0


def _first_attr(m: nn.Module, names: tuple[str, ...], default: Any = None) -> Any:
    for name in names:
        value = getattr(m, name, None)
        if value is None:
            continue
        if isinstance(value, Tensor):
            if value.numel() == 1:
                return value.item()
            continue
        return value
    return default


def _branches(m: nn.Module) -> float:
    return float(_first_attr(m, ("branches", "num_branches", "n_branches"), 4))


def _threshold_taps(m: nn.Module) -> float:
    return float(_first_attr(m, ("threshold_window", "threshold_taps", "taps", "M"), 4))


def _compartments(m: nn.Module) -> float:
    return float(_first_attr(m, ("compartments", "num_compartments", "n_compartments"), 4))


def _coverage(m: nn.Module) -> float:
    """Σ_i f_i·i: the mean number of branches that cover one channel (J·D'/D when windows fit)."""
    proportions = getattr(m, "branch_proportions", None)
    if callable(proportions):  # MMDEND: {i: f_i}, fraction of channels feeding exactly i branches
        return float(sum(i * f for i, f in proportions().items()))
    branches = _first_attr(m, ("branches", "num_branches", "n_branches"), None)
    width = _first_attr(m, ("branch_width", "window", "group_size"), None)
    channels = _first_attr(m, ("channels", "num_channels", "features"), None)
    if branches is not None and width is not None and channels:
        return float(branches) * float(width) / float(channels)
    return float(branches) if branches is not None else 1.0


def _time_taps(m: nn.Module) -> int:
    return int(_first_attr(m, ("time_steps", "T"), 1))


def _kernel_taps(m: nn.Module) -> int:
    return int(_first_attr(m, ("k", "order", "kernel_size", "window"), 1))


def _class_names(m: nn.Module) -> list[str]:
    return [c.__name__ for c in type(m).__mro__]


def is_known_neuron(m: nn.Module) -> bool:
    """Whether ``m`` is an activation-style neuron listed in :data:`DYNAMICS_MACS` (PSN owns a T×T ``weight``
    over time, not a synaptic weight, so the table decides before any weight-based guess)."""
    return any(name in DYNAMICS_MACS for name in _class_names(m))


def is_synaptic_layer(m: nn.Module) -> bool:
    """Whether ``m`` is a layer-type neuron (its input is presynaptic spikes, e.g. DLIF, DGN)."""
    if not isinstance(m, Neuron) or is_known_neuron(m):
        return False
    return _layer_rule(m) is not None or _is_unknown_weight_layer(m)


def dynamics_macs(m: nn.Module) -> tuple[float, bool]:
    """(MACs per neuron per step, assumed?) for an activation-style neuron, looked up along its class MRO."""
    for name in _class_names(m):
        if name in DYNAMICS_MACS:
            rule = DYNAMICS_MACS[name]
            return (float(rule(m)) if callable(rule) else float(rule)), False
    return _DEFAULT_DYNAMICS_MACS, True


# ---------------------------------------------------------------------------------------------------------------
# Report structures


@dataclass
class LayerEnergy:
    """Operation counts of one layer (row), per sample."""

    name: str
    type: str
    neurons: int = 0                    # output neurons per step (0 for a plain synaptic layer)
    out_rate: float | None = None       # mean |spikes| per neuron per step (None: not a spiking layer)
    in_rate: float | None = None        # mean |input| per element per step when the input is spikes
    ac: float = 0.0
    mac: float = 0.0
    ann_ac: float = 0.0
    ann_mac: float = 0.0
    energy_pj: float = 0.0
    ann_energy_pj: float = 0.0
    assumed: bool = False               # a fallback rule was used (unknown neuron)
    breakdown: dict[str, float] = field(default_factory=dict)  # per sample, by term


@dataclass
class EnergyReport:
    """Per-layer and per-sample operation counts, energies (pJ) and the non-spiking baseline."""

    layers: list[LayerEnergy]
    samples: int
    time_steps: int
    e_ac_pj: float
    e_mac_pj: float
    ac: float
    mac: float
    energy_pj: float
    ann_ac: float
    ann_mac: float
    ann_energy_pj: float
    mean_input_rate: float | None       # rate of the spike-driven synapses' inputs (weighted by their fan-out)
    break_even_rate: float | None       # uniform input spike rate where the SNN costs what the baseline costs
    note: str = ("Counted energy is a proxy: AC/MAC counts × per-operation energy (45 nm, 32-bit float). "
                 "Memory access, data movement and control are not counted.")

    @property
    def energy_uj(self) -> float:
        """Energy per sample in μJ."""
        return self.energy_pj * 1e-6

    @property
    def ann_energy_uj(self) -> float:
        return self.ann_energy_pj * 1e-6

    def to_dict(self) -> dict:
        out = asdict(self)
        out["energy_uj"] = self.energy_uj
        out["ann_energy_uj"] = self.ann_energy_uj
        out["ratio_to_ann"] = self.energy_pj / self.ann_energy_pj if self.ann_energy_pj > 0 else None
        return out

    def to_markdown(self) -> str:
        def fmt_rate(r):
            return "–" if r is None else f"{r:.4f}"

        lines = [
            "# Energy report",
            "",
            f"> {self.note}",
            "",
            f"Per sample, averaged over {self.samples} samples of {self.time_steps} steps; "
            f"E_AC = {self.e_ac_pj:g} pJ, E_MAC = {self.e_mac_pj:g} pJ.",
            "",
            "| layer | type | neurons | in rate | out rate | #AC | #MAC | energy (nJ) | ReLU baseline (nJ) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in self.layers:
            flag = " (assumed)" if row.assumed else ""
            lines.append(f"| {row.name} | {row.type}{flag} | {row.neurons or '–'} | {fmt_rate(row.in_rate)} | "
                         f"{fmt_rate(row.out_rate)} | {row.ac:,.0f} | {row.mac:,.0f} | {row.energy_pj / 1e3:,.3f} | "
                         f"{row.ann_energy_pj / 1e3:,.3f} |")
        lines.append(f"| **total** | | | {fmt_rate(self.mean_input_rate)} | | {self.ac:,.0f} | {self.mac:,.0f} | "
                     f"**{self.energy_pj / 1e3:,.3f}** | **{self.ann_energy_pj / 1e3:,.3f}** |")
        lines += ["", f"- Energy per sample: **{self.energy_uj:.6g} μJ** (spiking) vs {self.ann_energy_uj:.6g} μJ "
                      f"(same network with ReLU, all weights as MACs)."]
        if self.ann_energy_pj > 0:
            lines.append(f"- Ratio spiking / ReLU baseline: {self.energy_pj / self.ann_energy_pj:.3f}.")
        if self.break_even_rate is None:
            lines.append("- Break-even spike rate: not defined (no spike-driven synapses).")
        elif self.break_even_rate <= 0:
            lines.append("- Break-even spike rate: 0 — the fixed costs (analogue-input MACs, neuron dynamics, "
                         "biases) already exceed the ReLU baseline, so the spiking network is never cheaper.")
        else:
            lines.append(f"- Break-even spike rate: the spiking network stops being cheaper above a uniform input "
                         f"spike rate of **{self.break_even_rate:.4f}** spikes per synapse input per step "
                         f"(measured: {fmt_rate(self.mean_input_rate)}).")
            if self.break_even_rate > 1:
                lines.append("  Binary spikes cannot exceed rate 1, so for binary spikes it is cheaper at any rate "
                             "(integer spikes, e.g. SSF, can exceed 1).")
        assumed = [r.name for r in self.layers if r.assumed]
        if assumed:
            lines.append(f"- Unknown neuron types counted with the default {_DEFAULT_DYNAMICS_MACS:g} MACs per "
                         f"neuron per step: {', '.join(assumed)}.")
        return "\n".join(lines) + "\n"

    def save(self, folder: str | Path, stem: str = "energy") -> dict[str, Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"json": folder / f"{stem}.json", "md": folder / f"{stem}.md"}
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2))
        paths["md"].write_text(self.to_markdown())
        return paths


# ---------------------------------------------------------------------------------------------------------------
# Counting


_SYNAPSES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_FN = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}


def _is_integer_valued(x: Tensor) -> bool:
    if not x.is_floating_point():
        return True
    return bool(torch.equal(x, torch.round(x)))


def _conv_fanout_sum(mod: nn.Module, x: Tensor) -> float:
    """Σ over input elements of |x| × (number of output elements it reaches), exact for stride/padding/groups."""
    fn = next(f for cls, f in _CONV_FN.items() if isinstance(mod, cls))
    ones = torch.ones_like(mod.weight)
    if mod.padding_mode != "zeros":
        raise NotImplementedError(f"energy counting of {type(mod).__name__} with padding_mode={mod.padding_mode!r}")
    y = fn(x.abs().to(ones.dtype), ones, None, mod.stride, mod.padding, mod.dilation, mod.groups)
    return float(y.sum(dtype=torch.float64))


def _synapse_terms(mod: nn.Module, x: Tensor, y: Tensor) -> tuple[dict[str, float], dict[str, float], float, float]:
    """(snn terms, baseline terms, input |x| sum, input elements) for one call of a Linear/Conv."""
    if isinstance(mod, nn.Linear):
        dense = float(x.numel()) * mod.out_features
        active = float(x.abs().sum(dtype=torch.float64)) * mod.out_features
    else:
        dense = _conv_fanout_sum(mod, torch.ones_like(x))
        active = _conv_fanout_sum(mod, x)
    snn: dict[str, float] = {}
    spikes = _is_integer_valued(x)
    if spikes:
        snn["synaptic_ac"] = active
        snn["dense_spike_ops"] = dense  # not an operation count: the rate-1 capacity (break-even rate)
    else:
        snn["synaptic_mac"] = dense
    ann = {"synaptic_mac": dense}
    if getattr(mod, "bias", None) is not None:
        snn["bias_ac"] = float(y.numel())
        ann["bias_ac"] = float(y.numel())
    return snn, ann, float(x.abs().sum(dtype=torch.float64)) if spikes else math.nan, float(x.numel())


def _neuron_elements(y: Tensor) -> float:
    return float(y.numel())


def _dlif_multiplicity_uncached(mod: nn.Module) -> Tensor:
    """[in, in] symmetric: for each pair (i, j), the number of output neurons whose K_o keeps it.

    Read from the sparse pair layout (``layout.entries()`` -> (output, i, j) of every kept value) without a dense
    ``[out, in, in]`` tensor; falls back to a boolean ``pair_mask`` or to ``bilinear_matrix() != 0``.
    """
    layout = None
    try:
        layout = getattr(mod, "layout", None)
    except AttributeError:  # e.g. low rank: no layout
        layout = None
    if layout is not None and hasattr(layout, "entries"):
        _, i, j = layout.entries()
        n = int(layout.in_features)
        counts = torch.zeros(n * n, dtype=torch.float64, device=i.device)
        ones = torch.ones(i.numel(), dtype=torch.float64, device=i.device)
        counts.index_add_(0, i * n + j, ones)
        counts.index_add_(0, j * n + i, ones)
        return counts.view(n, n)
    mask = getattr(mod, "pair_mask", None)
    if not (isinstance(mask, Tensor) and mask.dim() == 3):
        if not hasattr(mod, "bilinear_matrix"):
            raise TypeError(f"{type(mod).__name__}: cannot find its kept pairs "
                            "(layout, pair_mask or bilinear_matrix())")
        with torch.no_grad():
            mask = mod.bilinear_matrix() != 0
    mask = mask.bool()
    return (mask | mask.transpose(-1, -2)).to(torch.float64).sum(dim=0)


def _active_pairs(s: Tensor, multiplicity: Tensor) -> Tensor:
    """Σ over rows n of s [N, in] and outputs o of Σ_{i<j, (i,j) kept in o} |s_ni| |s_nj|.

    Computed without an [N, out, in] intermediate: with the co-activation A = |s|ᵀ|s| (summed over rows) and the
    pair multiplicity m_ij = #{o : (i,j) kept in K_o} (symmetric, zero diagonal), the count is ½ Σ_ij A_ij m_ij.
    """
    a = s.abs().to(torch.float64)
    coactive = a.T @ a
    return (coactive * multiplicity.to(coactive.device)).sum() / 2


_MULTIPLICITY_CACHE: "weakref.WeakKeyDictionary[nn.Module, Tensor]" = weakref.WeakKeyDictionary()


def _dlif_multiplicity(mod: nn.Module) -> Tensor:
    """Pair multiplicity of a DLIF layer, cached for the duration of one count (the mask is fixed)."""
    if mod not in _MULTIPLICITY_CACHE:
        _MULTIPLICITY_CACHE[mod] = _dlif_multiplicity_uncached(mod)
    return _MULTIPLICITY_CACHE[mod]


def _dlif_pair_terms(mod: nn.Module, rows: Tensor, out_f: int, spikes: bool) -> dict[str, float]:
    """Bilinear-term operations for presynaptic rows [R, n] (one row per step, sample and pixel)."""
    rank = getattr(mod, "rank", None)
    n_rows = float(rows.shape[0])
    if rank is not None:
        # Low rank: s^T K_o s = 2 Σ_q (u_q·s)(v_q·s) - diagonal: 2·rank dot products per output (ACs on spikes)
        # and rank products of the two sums.
        if spikes:
            return {"pair_ac": 2.0 * rank * float(rows.abs().sum(dtype=torch.float64)) * out_f,
                    "dense_pair_linear_ops": 2.0 * rank * float(rows.numel()) * out_f,
                    "pair_mac": float(rank) * n_rows * out_f}
        return {"pair_mac": 2.0 * rank * float(rows.numel()) * out_f + float(rank) * n_rows * out_f}
    multiplicity = _dlif_multiplicity(mod).to(rows.device)
    kept = float(multiplicity.sum()) / 2
    if spikes:  # one AND + one add of K_o,ij per active kept pair
        return {"pair_ac": float(_active_pairs(rows, multiplicity)), "dense_pair_ops": kept * n_rows}
    return {"pair_mac": 2.0 * kept * n_rows}  # real inputs: s_i·s_j and ×K_o,ij


def _dlif_terms(mod: nn.Module, x: Tensor, y: Tensor) -> tuple[dict, dict, float, float]:
    spikes = _is_integer_valued(x)
    conv = getattr(mod, "conv", None)
    snn: dict[str, float] = {}
    ann: dict[str, float] = {}
    if isinstance(conv, nn.Conv2d):  # DLIFConv2d: x [..., C, H, W]; convolution + per-pixel channel pairs
        out_f = conv.out_channels
        flat = x.reshape(-1, *x.shape[-3:])
        dense = _conv_fanout_sum(conv, torch.ones_like(flat))
        if spikes:
            snn["synaptic_ac"] = _conv_fanout_sum(conv, flat)
            snn["dense_spike_ops"] = dense
        else:
            snn["synaptic_mac"] = dense
        stride = int(getattr(mod, "stride", 1))
        pix = flat[:, :, ::stride, ::stride] if stride > 1 else flat  # the pixel grid of the bilinear term
        rows = pix.permute(0, 2, 3, 1).reshape(-1, pix.shape[1])
        ann["synaptic_mac"] = dense
        if conv.bias is not None:
            snn["bias_ac"] = ann["bias_ac"] = float(y.numel())
    else:  # DLIFLinear: x [..., in]
        out_f = mod.weight.shape[0]
        rows = x.reshape(-1, x.shape[-1])
        dense = float(rows.numel()) * out_f
        if spikes:
            snn["synaptic_ac"] = float(rows.abs().sum(dtype=torch.float64)) * out_f
            snn["dense_spike_ops"] = dense
        else:
            snn["synaptic_mac"] = dense
        ann["synaptic_mac"] = dense
        if getattr(mod, "bias", None) is not None:
            snn["bias_ac"] = ann["bias_ac"] = float(y.numel())
    snn.update(_dlif_pair_terms(mod, rows, out_f, spikes))
    snn["dynamics_mac"] = (2.0 if getattr(mod, "decay_input", True) else 1.0) * _neuron_elements(y)  # LIF soma
    return snn, ann, float(x.abs().sum(dtype=torch.float64)) if spikes else math.nan, float(x.numel())


def _dgn_terms(mod: nn.Module, x: Tensor, y: Tensor) -> tuple[dict, dict, float, float]:
    in_f = x.shape[-1]
    out_f = y.shape[-1]
    shared = bool(getattr(mod, "shared_reversal", False))
    recurrent = bool(getattr(mod, "recurrent", False))
    tau_s = getattr(mod, "tau_s", None)
    per_synapse_tau = isinstance(tau_s, Tensor) and tau_s.numel() > 1
    snn: dict[str, float] = {}
    steps_rows = float(x.numel()) / in_f  # T·B
    spikes_in = float(x.abs().sum(dtype=torch.float64))
    # The recurrent trace is driven by the layer's own spikes of the previous step.
    spikes_rec = float(y[:-1].abs().sum(dtype=torch.float64)) if recurrent and y.dim() >= 3 else 0.0
    fan_in_rec = out_f if recurrent else 0
    sums = 1.0 if shared else 2.0  # S-DGN: current = E_o × conductance sum
    if per_synapse_tau:
        snn["trace_mac"] = steps_rows * (in_f + fan_in_rec)
        snn["synaptic_mac"] = sums * steps_rows * (in_f + fan_in_rec) * out_f
        snn["dynamics_mac"] = 3.0 * _neuron_elements(y)  # gate + membrane
    else:
        if _is_integer_valued(x):
            snn["synaptic_ac"] = sums * (spikes_in + spikes_rec) * out_f
            snn["dense_spike_ops"] = sums * steps_rows * (in_f + fan_in_rec) * out_f
        else:  # analogue input (a first layer): the filtered sums need MACs for the input, ACs for own spikes
            snn["synaptic_mac"] = sums * steps_rows * in_f * out_f
            if spikes_rec:
                snn["synaptic_ac"] = sums * spikes_rec * out_f
                snn["dense_spike_ops"] = sums * steps_rows * fan_in_rec * out_f
            spikes_in = math.nan
        snn["dynamics_mac"] = 5.0 * _neuron_elements(y)  # two output filters, gate, membrane (2)
    ann = {"synaptic_mac": steps_rows * (in_f + fan_in_rec) * out_f}
    if getattr(mod, "bias", None) is not None:
        snn["bias_ac"] = ann["bias_ac"] = float(y.numel())
    return snn, ann, spikes_in, float(x.numel())


# Layer-type neurons (own weights, spikes in -> spikes out) with dedicated rules, by class name in the MRO.
_LAYER_RULES = {
    "DLIFLinear": _dlif_terms,
    "DLIFConv2d": _dlif_terms,
    "DGNLinear": _dgn_terms,
}


def _layer_rule(m: nn.Module):
    for name in _class_names(m):
        if name in _LAYER_RULES:
            return _LAYER_RULES[name]
    return None


def _has_synapse_child(m: nn.Module) -> bool:
    return any(isinstance(c, (_SYNAPSES, Neuron)) for c in m.modules() if c is not m)


def _is_unknown_weight_layer(m: nn.Module) -> bool:
    """A Neuron that owns a 2-D ``weight`` (a synaptic layer we have no rule for) and no synaptic children."""
    w = getattr(m, "weight", None)
    return isinstance(w, nn.Parameter) and w.dim() == 2 and not _has_synapse_child(m)


def _generic_layer_terms(mod: nn.Module, x: Tensor, y: Tensor) -> tuple[dict, dict, float, float]:
    out_f, in_f = mod.weight.shape
    rows = float(x.numel()) / in_f
    snn: dict[str, float] = {}
    if _is_integer_valued(x):
        snn["synaptic_ac"] = float(x.abs().sum(dtype=torch.float64)) * out_f
        snn["dense_spike_ops"] = rows * in_f * out_f
    else:
        snn["synaptic_mac"] = rows * in_f * out_f
    snn["dynamics_mac"] = _DEFAULT_DYNAMICS_MACS * _neuron_elements(y)
    ann = {"synaptic_mac": rows * in_f * out_f}
    return snn, ann, float(x.abs().sum(dtype=torch.float64)) if "synaptic_ac" in snn else math.nan, float(x.numel())


class _Row:
    def __init__(self, name: str, type_name: str):
        self.name, self.type = name, type_name
        self.snn: dict[str, float] = {}
        self.ann: dict[str, float] = {}
        self.out_abs = 0.0
        self.out_elements = 0.0
        self.neurons = 0
        self.in_abs = 0.0
        self.in_elements = 0.0
        self.assumed = False

    def add(self, terms: dict[str, float], into: dict[str, float]) -> None:
        for k, v in terms.items():
            into[k] = into.get(k, 0.0) + float(v)


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], Tensor):
        return value[0]
    return None


class _Counter:
    """Attaches hooks to a model for the duration of a ``with`` block and accumulates operation counts."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.rows: "OrderedDict[str, _Row]" = OrderedDict()
        self.samples = 0
        self.time_steps = 0
        self._handles: list = []
        self._patched: list[nn.Module] = []
        self._active: dict[int, int] = {}
        self._plan: list[tuple[str, nn.Module, str, str]] = []  # (name, module, role, row)
        self._classify()

    # -- planning ---------------------------------------------------------------------------------------------
    def _classify(self) -> None:
        claimed: list[str] = []  # prefixes whose children are counted by their owner's rule
        outer_neurons: list[str] = []
        for name, mod in self.model.named_modules():
            if any(name.startswith(p + ".") for p in claimed):
                continue
            outer = next((o for o in outer_neurons if name.startswith(o + ".")), None)
            if outer is None and isinstance(mod, Neuron):
                outer_neurons.append(name)
                outer = name
            row_name = outer if outer is not None else name
            roles = []
            if callable(getattr(mod, "operation_counts", None)):
                roles.append("custom")
                claimed.append(name)
            elif isinstance(mod, Neuron) and _layer_rule(mod) is not None:
                roles.append("layer")
                claimed.append(name)
            elif isinstance(mod, _SYNAPSES):
                roles.append("synapse")
            elif isinstance(mod, Neuron) and is_known_neuron(mod):
                roles.append("neuron")
                claimed.append(name)  # e.g. MMDEND's SSF: part of the neuron's own count
            elif isinstance(mod, Neuron) and _is_unknown_weight_layer(mod):
                roles.append("generic_layer")
                claimed.append(name)
            elif isinstance(mod, Neuron) and not _has_synapse_child(mod):
                roles.append("neuron")
            if isinstance(mod, Neuron) and outer == name:
                roles.append("row")
            for role in roles:
                self._plan.append((name, mod, role, row_name))
            if roles and row_name not in self.rows:
                row_mod = self.model.get_submodule(row_name) if row_name else self.model
                self.rows[row_name] = _Row(row_name or type(row_mod).__name__, type(row_mod).__name__)

    # -- hooks --------------------------------------------------------------------------------------------------
    def _on_call(self, mod: nn.Module, role: str, row_name: str, x: Tensor | None, y: Tensor | None) -> None:
        if x is None or y is None:
            return
        row = self.rows[row_name]
        x, y = x.detach(), y.detach()
        if role == "row":
            row.out_abs += float(y.abs().sum(dtype=torch.float64))
            row.out_elements += float(y.numel())
            row.neurons = int(y.shape[-1]) if y.dim() >= 1 else 1
            return
        if role == "neuron":
            per_step, assumed = dynamics_macs(mod)
            row.add({"dynamics_mac": per_step * _neuron_elements(y)}, row.snn)
            row.assumed = row.assumed or assumed
            if assumed:
                row.type = f"{row.type}/{type(mod).__name__}"
            return
        if role == "custom":
            counts = mod.operation_counts(x, y)
            row.add({"synaptic_ac": float(counts.get("ac", 0.0)), "synaptic_mac": float(counts.get("mac", 0.0))},
                    row.snn)
            row.add({"synaptic_mac": float(counts.get("ann_mac", counts.get("mac", 0.0)))}, row.ann)
            return
        if role == "synapse":
            snn, ann, in_abs, in_el = _synapse_terms(mod, x, y)
        elif role == "layer":
            snn, ann, in_abs, in_el = _layer_rule(mod)(mod, x, y)
        else:  # generic_layer
            snn, ann, in_abs, in_el = _generic_layer_terms(mod, x, y)
            row.assumed = True
        row.add(snn, row.snn)
        row.add(ann, row.ann)
        if not math.isnan(in_abs):
            row.in_abs += in_abs
            row.in_elements += in_el

    def _attach(self, name: str, mod: nn.Module, role: str, row: str) -> None:
        key = (id(mod), role)

        def pre_hook(m, args):
            self._active[key] = self._active.get(key, 0) + 1

        def post_hook(m, args, output):
            self._active[key] -= 1
            if self._active[key] == 0:
                self._on_call(m, role, row, _first_tensor(args), _first_tensor(output))

        self._handles.append(mod.register_forward_pre_hook(pre_hook))
        self._handles.append(mod.register_forward_hook(post_hook))
        if isinstance(mod, Neuron):
            # step() and run() bypass __call__ (e.g. recurrent wrappers step an inner neuron): count them too.
            original = type(mod).run.__get__(mod) if "run" not in mod.__dict__ else mod.__dict__["run"]

            def patched_run(x, state=None, *a, _orig=original, **kw):
                if self._active.get(key, 0) > 0:
                    return _orig(x, state, *a, **kw)
                self._active[key] = 1
                try:
                    result = _orig(x, state, *a, **kw)
                finally:
                    self._active[key] = 0
                self._on_call(mod, role, row, x, _first_tensor(result))
                return result

            if "run" not in mod.__dict__:
                mod.run = patched_run
                self._patched.append(mod)
            else:  # already patched for another role of this module: chain
                mod.__dict__["run"] = patched_run

    def __enter__(self) -> "_Counter":
        _MULTIPLICITY_CACHE.clear()
        def top_pre_hook(m, args):
            x = _first_tensor(args)
            if x is not None and x.dim() >= 2:
                self.samples += int(x.shape[1])
                self.time_steps = int(x.shape[0])

        self._handles.append(self.model.register_forward_pre_hook(top_pre_hook))
        for name, mod, role, row in self._plan:
            self._attach(name, mod, role, row)
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        for mod in self._patched:
            mod.__dict__.pop("run", None)
        self._handles.clear()
        self._patched.clear()
        _MULTIPLICITY_CACHE.clear()

    # -- results ------------------------------------------------------------------------------------------------
    def report(self, e_ac: float, e_mac: float) -> EnergyReport:
        n = max(self.samples, 1)
        layers: list[LayerEnergy] = []
        fixed_pj = 0.0
        dense1 = dense2 = 0.0
        spike_ac = 0.0
        for row in self.rows.values():
            if not row.snn and not row.ann and row.out_elements == 0:
                continue
            s = {k: v / n for k, v in row.snn.items()}
            a = {k: v / n for k, v in row.ann.items()}
            ac = sum(v for k, v in s.items() if k.endswith("_ac"))
            mac = sum(v for k, v in s.items() if k.endswith("_mac"))
            ann_ac = sum(v for k, v in a.items() if k.endswith("_ac"))
            ann_mac = sum(v for k, v in a.items() if k.endswith("_mac"))
            rate_driven = s.get("synaptic_ac", 0.0) + s.get("pair_ac", 0.0)
            fixed_pj += e_ac * (ac - rate_driven) + e_mac * mac
            dense1 += s.get("dense_spike_ops", 0.0) + s.get("dense_pair_linear_ops", 0.0)
            dense2 += s.get("dense_pair_ops", 0.0)
            spike_ac += s.get("synaptic_ac", 0.0) if "dense_spike_ops" in s else 0.0
            layers.append(LayerEnergy(
                name=row.name, type=row.type, neurons=row.neurons,
                out_rate=row.out_abs / row.out_elements if row.out_elements else None,
                in_rate=row.in_abs / row.in_elements if row.in_elements else None,
                ac=ac, mac=mac, ann_ac=ann_ac, ann_mac=ann_mac,
                energy_pj=e_ac * ac + e_mac * mac, ann_energy_pj=e_ac * ann_ac + e_mac * ann_mac,
                assumed=row.assumed,
                breakdown={k: v for k, v in s.items() if not k.startswith("dense_")},
            ))
        total_ac = sum(r.ac for r in layers)
        total_mac = sum(r.mac for r in layers)
        ann_ac = sum(r.ann_ac for r in layers)
        ann_mac = sum(r.ann_mac for r in layers)
        energy = e_ac * total_ac + e_mac * total_mac
        ann_energy = e_ac * ann_ac + e_mac * ann_mac
        return EnergyReport(
            layers=layers, samples=self.samples, time_steps=self.time_steps, e_ac_pj=e_ac, e_mac_pj=e_mac,
            ac=total_ac, mac=total_mac, energy_pj=energy, ann_ac=ann_ac, ann_mac=ann_mac, ann_energy_pj=ann_energy,
            mean_input_rate=spike_ac / dense1 if dense1 > 0 else None,
            break_even_rate=_break_even(ann_energy - fixed_pj, e_ac * dense1, e_ac * dense2),
        )


def _break_even(budget: float, linear: float, quadratic: float) -> float | None:
    """Smallest r >= 0 with linear·r + quadratic·r² = budget (0 if budget <= 0; None if nothing scales with r)."""
    if linear <= 0 and quadratic <= 0:
        return None
    if budget <= 0:
        return 0.0
    if quadratic <= 0:
        return budget / linear
    return (-linear + math.sqrt(linear * linear + 4 * quadratic * budget)) / (2 * quadratic)


def _check_constants(e_ac: float, e_mac: float) -> tuple[float, float]:
    return check_nonnegative("e_ac", e_ac), check_nonnegative("e_mac", e_mac)


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def count_operations(model: nn.Module, inputs: Tensor | Iterable[Tensor], *, e_ac: float = E_AC_PJ,
                     e_mac: float = E_MAC_PJ) -> EnergyReport:
    """Run ``model`` on one input ``[T, B, ...]`` (or several) without gradients and count its operations.

    The model is put in eval mode for the count and restored afterwards.
    """
    e_ac, e_mac = _check_constants(e_ac, e_mac)
    batches = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    was_training = model.training
    model.eval()
    try:
        with _Counter(model) as counter, torch.no_grad():
            for x in batches:
                model(x)
    finally:
        model.train(was_training)
    return counter.report(e_ac, e_mac)


def energy_report(model: nn.Module, loader: Iterable, *, e_ac: float = E_AC_PJ, e_mac: float = E_MAC_PJ,
                  max_batches: int | None = None, device: str | torch.device | None = None) -> EnergyReport:
    """Operation counts and energy per layer and per sample of ``model`` over a time-first ``loader``.

    Args:
        model: maps ``x [T, B, C]`` to logits (any module built from dendrix layers and ``torch.nn``).
        loader: yields ``(x [T, B, C], y)`` batches (``dendrix.data.make_loader``) or bare ``x``.
        e_ac, e_mac: energy per accumulate / multiply-accumulate in pJ (defaults 0.9 and 4.6, 45 nm FP32).
        max_batches: stop after this many batches (None: the whole loader).
        device: where to run (default: the model's device).
    """
    e_ac, e_mac = _check_constants(e_ac, e_mac)
    device = torch.device(device) if device is not None else _model_device(model)

    def batches():
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            yield x.to(device)

    return count_operations(model, batches(), e_ac=e_ac, e_mac=e_mac)
