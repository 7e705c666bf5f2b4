"""DGN / S-DGN (dynamic-conductance gated neuron): the membrane-variance theory and robustness over LIF.

Robustness protocol (short, seeded): the demo MLP (64-128-10, :mod:`.fsdd`) of each kind trained on clean
FSDD for a few epochs with the library's defaults, then evaluated by :func:`dendrix.analysis.robustness_report`
on the official test split under mixed spike noise (p = 0.05, 0.1) and FGSM (0.2, 0.5, 1 and 2 % of the input
bits flipped). Reported: clean accuracy, overall robustness (mean accuracy over those settings) and relative
robustness (overall / clean: a model that is simply more accurate is not thereby more robust), each over seeds,
and the paired DGN − LIF differences on the same seeds. ``sweep`` repeats DGN and LIF with one setting changed
at a time (gate φ, τ_s, reversal initialisation, training length) to find where the claim holds.
"""

from __future__ import annotations

import logging

import torch

from ..dgn_theory import NoiseInputs, dgn_variance_exact, dgn_variance_lna, lif_variance, simulate_variance
from ..robustness import robustness_report
from .base import ClaimResult, claim, verdict
from .fsdd import fsdd_arrays, train_fsdd_mlp
from .stats import paired, summarize

log = logging.getLogger(__name__)
PAPER = "DGN (dynamic conductance gating)"

NOISE_P = (0.05, 0.1)
FGSM_EPS = (0.002, 0.005, 0.01, 0.02)


@claim("dgn_variance", PAPER)
def variance_claim(seeds: int = 5, quick: bool = False) -> ClaimResult:
    """Random input sets (8 inputs, W ~ U(0, 1), C ~ U(0, 1) as the layer's initialisation, μ ~ U(0, 1),
    σ ~ U(0, 0.5), g_l = 0.2 the default leak): the simulated DGN variance against the exact formula, and the
    fraction of sets where the DGN's variance is below the LIF's."""
    sets, paths, dt = (4, 100, 5e-3) if quick else (16, 400, 2e-3)
    errors, below, ratio = [], [], []
    for s in range(seeds):
        g = torch.Generator().manual_seed(s)
        n = 8
        p = NoiseInputs(weight=torch.rand(sets, n, generator=g), conductance=torch.rand(sets, n, generator=g),
                        mu=torch.rand(sets, n, generator=g), sigma=0.5 * torch.rand(sets, n, generator=g),
                        g_leak=0.2)
        _, var = simulate_variance(p, dt=dt, paths=paths, seed=s, burn_in=4.0, duration=10.0 if quick else 20.0)
        exact, lif = dgn_variance_exact(p), lif_variance(p)
        errors.append(float(((var - exact).abs() / exact).median()))
        below.append(float((exact < lif).double().mean()))
        ratio.append(float((exact / lif).median()))
        lna_gap = float(((dgn_variance_lna(p) - exact).abs() / exact).median())
    e, b, r = summarize(errors), summarize(below), summarize(ratio)
    holds = verdict(e.mean <= 0.1, b.mean >= 0.9)
    return ClaimResult(
        "dgn_variance", PAPER, "conductance gating lowers the membrane variance under input noise (closed form)",
        f"median |sim − exact| / exact {e.text('.3f')}; fraction of sets with Var_DGN < Var_LIF {b.text('.2f')}; "
        f"median Var_DGN / Var_LIF {r.text('.3f')}", holds, seeds,
        settings={"sets_per_seed": sets, "paths": paths, "dt": dt},
        values={"relative_error": e.to_dict(), "fraction_below": b.to_dict(), "ratio": r.to_dict(),
                "lna_gap_last_seed": lna_gap})


def robustness_trial(kind: str, seed: int, *, epochs: int = 3, neuron: dict | None = None, data=None,
                     max_train: int | None = None, max_test: int | None = None,
                     noise_p=NOISE_P, fgsm_eps=FGSM_EPS) -> dict:
    """Train one kind on one seed and measure clean accuracy and robustness (module docstring)."""
    run = train_fsdd_mlp(kind, seed, epochs=epochs, neuron=neuron, data=data, max_train=max_train)
    xte, yte = data[2], data[3]
    if max_test is not None:
        xte, yte = xte[:, :max_test], yte[:max_test]
    batches = [(xte[:, i:i + 300], yte[i:i + 300]) for i in range(0, len(yte), 300)]
    rep = robustness_report(run.model, batches, spike_p=noise_p, noise_modes=("mixed",), gaussian_sigma=(),
                            attacks=("fgsm",), epsilons=fgsm_eps, input_kind="spikes", seed=seed)
    rows = {f"{r['perturbation']}@{r['severity']:g}": r["accuracy"] for r in rep.rows if r["severity"] > 0}
    noise = [v for k, v in rows.items() if k.startswith("spike noise")]
    fgsm = [v for k, v in rows.items() if k.startswith("FGSM")]
    return {"clean": rep.clean_accuracy, "overall": rep.overall_robustness,
            "relative": rep.overall_robustness / max(rep.clean_accuracy, 1e-9),
            "noise": sum(noise) / len(noise), "fgsm": sum(fgsm) / len(fgsm), "rows": rows}


def _load(quick: bool):
    xtr, ytr = fsdd_arrays("train")
    xte, yte = fsdd_arrays("test")
    return xtr, ytr, xte, yte


def compare_robustness(kinds, seeds: int, *, epochs: int, neuron: dict | None = None, quick: bool = False,
                       data=None) -> dict:
    """``{kind: [trial per seed]}`` (``neuron`` applies to the non-LIF kinds)."""
    data = data if data is not None else _load(quick)
    small = dict(max_train=256, max_test=100) if quick else {}
    out = {}
    for kind in kinds:
        out[kind] = []
        for s in range(seeds):
            out[kind].append(robustness_trial(kind, s, epochs=epochs, data=data,
                                              neuron=None if kind == "lif" else neuron, **small))
            log.info("%s seed %d: %s", kind, s, out[kind][-1])
    return out


def _summaries(trials: list[dict]) -> dict:
    return {k: summarize([t[k] for t in trials]) for k in ("clean", "overall", "relative", "noise", "fgsm")}


@claim("dgn_robustness", PAPER)
def robustness_claim(seeds: int = 5, quick: bool = False) -> ClaimResult:
    """LIF, DGN and S-DGN trained on the same seeds; the paired robustness differences (module docstring)."""
    epochs = 1 if quick else 3
    res = compare_robustness(("lif", "dgn", "sdgn"), seeds, epochs=epochs, quick=quick)
    S = {k: _summaries(v) for k, v in res.items()}
    pairs = {k: {m: paired([t[m] for t in res[k]], [t[m] for t in res["lif"]]) for m in ("overall", "relative")}
             for k in ("dgn", "sdgn")}
    text = "; ".join(f"{k}: clean {S[k]['clean'].text()}, overall {S[k]['overall'].text()} (noise "
                     f"{S[k]['noise'].mean:.3f}, FGSM {S[k]['fgsm'].mean:.3f}), relative {S[k]['relative'].text()}"
                     for k in res)
    text += "; DGN − LIF overall " + pairs["dgn"]["overall"].text() + "; S-DGN − LIF overall " + \
        pairs["sdgn"]["overall"].text()
    better = [pairs[k]["overall"].difference.low > 0 for k in ("dgn", "sdgn")]
    return ClaimResult(
        "dgn_robustness", PAPER, "DGN / S-DGN are more robust than LIF under noise and FGSM", text,
        verdict(*better), seeds, settings={"epochs": epochs, "noise_p": NOISE_P, "fgsm_eps": FGSM_EPS,
                                           "model": "SpikingMLP 64-128-10, library defaults"},
        values={"per_seed": res, "summaries": {k: {m: s.to_dict() for m, s in v.items()} for k, v in S.items()},
                "paired": {k: {m: p.to_dict() for m, p in v.items()} for k, v in pairs.items()}})


SWEEP = {
    "defaults": {},
    "gate=sigmoid": {"neuron": {"gate": "sigmoid"}},
    "gate=clamp": {"neuron": {"gate": "clamp"}},
    "tau_s=2": {"neuron": {"tau_s": 2.0}},
    "tau_s=10": {"neuron": {"tau_s": 10.0}},
    "reversal_init=2 (S-DGN C scale)": {"neuron": {"reversal_init": 2.0}, "kind": "sdgn"},
    "epochs=8": {"epochs": 8},
    "gate=sigmoid, epochs=8": {"neuron": {"gate": "sigmoid"}, "epochs": 8},
    "sdgn, epochs=8": {"kind": "sdgn", "epochs": 8},
}


def sweep(settings=None, seeds: int = 5, quick: bool = False, base_epochs: int = 3,
          lif_runs: dict[int, list[dict]] | None = None) -> dict:
    """DGN (or the setting's kind) against LIF, one setting changed at a time; the LIF runs are shared between
    settings of the same training length (``lif_runs``: ``{epochs: [trial per seed]}`` of an earlier sweep, the
    same seeds and protocol, reused instead of retrained)."""
    data = _load(quick)
    epochs0 = 1 if quick else base_epochs
    lif_cache: dict[int, list[dict]] = {int(k): v[:seeds] for k, v in (lif_runs or {}).items() if len(v) >= seeds}
    out = {}
    for name in settings or SWEEP:
        spec = SWEEP[name]
        epochs = spec.get("epochs", epochs0)
        kind = spec.get("kind", "dgn")
        if epochs not in lif_cache:
            lif_cache[epochs] = compare_robustness(("lif",), seeds, epochs=epochs, quick=quick, data=data)["lif"]
        other = compare_robustness((kind,), seeds, epochs=epochs, neuron=spec.get("neuron"), quick=quick,
                                   data=data)[kind]
        lif = lif_cache[epochs]
        out[name] = {"kind": kind, "epochs": epochs, "neuron": spec.get("neuron", {}),
                     "lif": {m: s.to_dict() for m, s in _summaries(lif).items()},
                     kind: {m: s.to_dict() for m, s in _summaries(other).items()},
                     "paired_overall": paired([t["overall"] for t in other], [t["overall"] for t in lif]).to_dict(),
                     "paired_relative": paired([t["relative"] for t in other],
                                               [t["relative"] for t in lif]).to_dict(),
                     "per_seed": {"lif": lif, kind: other}}
    return out
