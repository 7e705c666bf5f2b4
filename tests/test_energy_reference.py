"""The full energy report of every registered kind in a small MLP equals the values measured before the energy
analysis moved into per-class ``operation_counts`` (tests/data/energy_reference.json, exact floats).

The reference file was written by this module's ``__main__`` with the pre-split code on the path
(``PYTHONPATH=<old checkout>/src python tests/test_energy_reference.py > tests/data/energy_reference.json``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import dendrix
from dendrix.analysis.energy import count_operations
from dendrix.models.mlp import SpikingMLP

T, B, C = 6, 3, 7
REFERENCE = Path(__file__).parent / "data" / "energy_reference.json"


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"spikes": (torch.rand(T, B, C, generator=g) < 0.4).float(), "analog": torch.rand(T, B, C, generator=g)}


# Defaults changed after the reference was measured (issue 14): the old options, passed explicitly.
OLD_DEFAULTS = {"dgn": {"gate": "clamp"}, "sdgn": {"gate": "clamp"}, "mmdend": {"overlap": 0},
                "dlif": {"mask": "cyclic"}}


def _model(kind: str, recurrent: bool) -> SpikingMLP:
    torch.manual_seed(0)
    return SpikingMLP(C, 3, hidden=(8, 6), kind=kind, recurrent=recurrent, time_steps=T, weight_gain=3.0,
                      neuron_kw=OLD_DEFAULTS.get(kind))


def _cases() -> list[tuple[str, str, bool, str]]:
    cases = []
    for kind in dendrix.available():
        cases.append((f"{kind}/spikes", kind, False, "spikes"))
        if kind != "dlif":  # the sparse DLIF engines take binary spikes only
            cases.append((f"{kind}/analog", kind, False, "analog"))
        cases.append((f"{kind}/recurrent", kind, True, "spikes"))
    return cases


def _report(kind: str, recurrent: bool, x: str) -> dict | None:
    try:
        model = _model(kind, recurrent)
    except ValueError:  # a kind that cannot stream has no recurrent form
        return None
    out = count_operations(model, _inputs()[x]).to_dict()
    out.pop("note")
    return out


def _reference() -> dict:
    return json.loads(REFERENCE.read_text())


@pytest.mark.parametrize("name, kind, recurrent, x", _cases(), ids=[c[0] for c in _cases()])
def test_energy_report_is_unchanged(name, kind, recurrent, x):
    reference = _reference()
    got = _report(kind, recurrent, x)
    if got is None:
        assert name not in reference
        return
    assert name in reference, f"no reference for {name}: a new kind needs its measured report added"
    assert got == reference[name]


if __name__ == "__main__":
    out = {}
    for name, kind, recurrent, x in _cases():
        report = _report(kind, recurrent, x)
        if report is not None:
            out[name] = report
    sys.stdout.write("{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}"
                                          for k, v in out.items()) + "\n}\n")
