"""The energy report: per-layer rows, totals, the ReLU baseline and the break-even spike rate."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...files import write_text
from .rules import DEFAULT_DYNAMICS_MACS

__all__ = ["LayerEnergy", "EnergyReport", "break_even"]


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
            lines.append(f"- Unknown neuron types counted with the default {DEFAULT_DYNAMICS_MACS:g} MACs per "
                         f"neuron per step: {', '.join(assumed)}.")
        return "\n".join(lines) + "\n"

    def save(self, folder: str | Path, stem: str = "energy") -> dict[str, Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"json": folder / f"{stem}.json", "md": folder / f"{stem}.md"}
        write_text(paths["json"], json.dumps(self.to_dict(), indent=2))
        write_text(paths["md"], self.to_markdown())
        return paths


def break_even(budget: float, linear: float, quadratic: float) -> float | None:
    """Smallest r >= 0 with linear·r + quadratic·r² = budget (0 if budget <= 0; None if nothing scales with r)."""
    if linear <= 0 and quadratic <= 0:
        return None
    if budget <= 0:
        return 0.0
    if quadratic <= 0:
        return budget / linear
    return (-linear + math.sqrt(linear * linear + 4 * quadratic * budget)) / (2 * quadratic)
