"""The counter: hooks on a model's synapses and neurons that accumulate each call's operation counts per row.

Every call is seen once: forward hooks see ``module(x)``, run hooks (:meth:`Neuron.register_run_hooks`) see
``step``/``run`` calls that bypass ``__call__`` (recurrent wrappers stepping an inner neuron); a depth count per
module and role keeps nested calls (``forward`` -> ``run`` -> ``super().run``) from counting twice.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor, nn

from ...contract import Neuron
from . import rules
from .report import EnergyReport, LayerEnergy, break_even

__all__ = ["Counter"]


class _Row:
    """Accumulated counts of one report row (an outermost neuron, or a synapse outside any neuron)."""

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

    @staticmethod
    def add(terms: dict[str, float], into: dict[str, float]) -> None:
        for k, v in terms.items():
            into[k] = into.get(k, 0.0) + float(v)


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], Tensor):
        return value[0]
    return None


class Counter:
    """Attaches hooks to a model for the duration of a ``with`` block and accumulates operation counts."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.rows: "OrderedDict[str, _Row]" = OrderedDict()
        self.samples = 0
        self.time_steps = 0
        self._handles: list = []
        self._active: dict[tuple[int, str], int] = {}
        self._plan: list[tuple[nn.Module, str, str]] = []  # (module, role, row)
        self._classify()

    # -- planning ---------------------------------------------------------------------------------------------
    def _classify(self) -> None:
        claimed: list[str] = []  # prefixes whose children are counted by their owner's declared counts
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
            if rules.declares_counts(mod):
                roles.append("declared")
                claimed.append(name)  # e.g. MMDEND's SSF: part of the neuron's own count
            elif isinstance(mod, rules.SYNAPSES):
                roles.append("synapse")
            elif rules.is_unknown_weight_layer(mod):
                roles.append("generic_layer")
                claimed.append(name)
            elif isinstance(mod, Neuron) and not rules.has_synapse_child(mod):
                roles.append("neuron")
            if isinstance(mod, Neuron) and outer == name:
                roles.append("row")
            for role in roles:
                self._plan.append((mod, role, row_name))
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
        if role == "declared":
            counts = rules.declared_counts(mod, x, y)
        elif role == "synapse":
            counts = rules.synapse_counts(mod, x, y)
        elif role == "generic_layer":
            counts = rules.generic_layer_counts(mod, x, y)
            row.assumed = True
        else:  # an undeclared neuron
            counts = rules.unknown_neuron_counts(y)
            if not row.assumed:
                row.type = f"{row.type}/{type(mod).__name__}"
            row.assumed = True
        snn, ann, rate = rules.split_counts(counts)
        row.add(snn, row.snn)
        row.add(ann, row.ann)
        if rate is not None and not math.isnan(rate[0]):
            row.in_abs += rate[0]
            row.in_elements += rate[1]

    def _attach(self, mod: nn.Module, role: str, row: str) -> None:
        key = (id(mod), role)

        def enter(m, args):
            self._active[key] = self._active.get(key, 0) + 1

        def leave(m, x, result):
            self._active[key] -= 1
            if self._active[key] == 0:
                self._on_call(m, role, row, _first_tensor(x), _first_tensor(result))

        self._handles.append(mod.register_forward_pre_hook(enter))
        self._handles.append(mod.register_forward_hook(leave))
        if isinstance(mod, Neuron):  # step() and run() bypass __call__: count them too
            self._handles.append(mod.register_run_hooks(enter, leave))

    def __enter__(self) -> "Counter":
        def top_pre_hook(m, args):
            x = _first_tensor(args)
            if x is not None and x.dim() >= 2:
                self.samples += int(x.shape[1])
                self.time_steps = int(x.shape[0])

        self._handles.append(self.model.register_forward_pre_hook(top_pre_hook))
        for mod, role, row in self._plan:
            self._attach(mod, role, row)
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

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
            break_even_rate=break_even(ann_energy - fixed_pj, e_ac * dense1, e_ac * dense2),
        )
