"""Matched budgets for a comparison: size each kind's hidden width so that it costs what a reference kind costs.

* ``match="params"``: the width whose model has the parameter count closest to the reference's (an exact
  integer search: the count grows with the width).
* ``match="time"``: the width whose training step (forward, backward, optimiser step on one training batch,
  the median of a few repeats after a warm-up) takes about as long as the reference's, found by bisection on
  the width with that timing probe. Time per epoch is batches × time per step, so matching the step matches the
  epoch up to the data loading, which is the same for every kind. A probe is noisy on a loaded machine.

Models are built after ``torch.manual_seed(config seed)``, as the trainer builds them: kinds that draw a random
connectivity (DLIF's dendritic branches) have a parameter count that varies slightly with the seed, and the budget
is matched at the config's seed. Several hidden layers keep their proportions: the first layer gets the searched width, the others are scaled
by the same factor.
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any, Sequence

import torch

from ..models import build_model, count_parameters
from .batches import Batches, open_dataset

__all__ = ["scaled_hidden", "match_budget", "parameter_count", "step_seconds", "MATCH_MODES"]

logger = logging.getLogger(__name__)

MATCH_MODES = ("params", "time")


def scaled_hidden(base: Sequence[int], width: int) -> list[int]:
    """``base`` with its first layer set to ``width`` and the others scaled by ``width / base[0]`` (>= 1)."""
    factor = width / base[0]
    return [int(width)] + [max(1, round(h * factor)) for h in base[1:]]


def _model(cfg: dict, info, hidden: Sequence[int]) -> torch.nn.Module:
    return build_model({**cfg["model"], "hidden": list(hidden)}, info)


def parameter_count(cfg: dict, info, hidden: Sequence[int]) -> int:
    """Trainable parameters of ``cfg``'s model with hidden sizes ``hidden`` on data described by ``info``, built
    after ``torch.manual_seed(cfg["seed"])`` as the trainer builds it (some kinds draw their connectivity)."""
    torch.manual_seed(cfg["seed"])
    return count_parameters(_model(cfg, info, hidden))


def step_seconds(cfg: dict, info, hidden: Sequence[int], batch, repeats: int = 5) -> float:
    """Median wall time of one training step (forward, cross-entropy, backward, Adam step) on ``batch``."""
    torch.manual_seed(cfg["seed"])
    model = _model(cfg, info, hidden).to(batch[0].device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = batch
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i:  # the first step warms up allocations and caches
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _search(measure, target: float, low: int, high: int, exact: bool) -> tuple[int, float]:
    """The width in [low, high] whose (increasing) ``measure`` is closest to ``target``."""
    seen: dict[int, float] = {}

    def m(w: int) -> float:
        if w not in seen:
            seen[w] = measure(w)
        return seen[w]

    while m(high) < target and high < 64 * low + 4096:
        low, high = high, high * 2
    lo, hi = low, high
    while hi - lo > 1 and (exact or hi - lo > max(1, lo // 32)):  # a probe cannot resolve 3 % width steps
        mid = (lo + hi) // 2
        if m(mid) < target:
            lo = mid
        else:
            hi = mid
    best = min(seen, key=lambda w: (abs(seen[w] - target), w))
    return best, seen[best]


def match_budget(kind_configs: dict[str, dict], reference: str, match: str, repeats: int = 5) -> dict[str, Any]:
    """Hidden sizes per kind that match the reference kind's ``match`` budget (``"params"`` or ``"time"``).

    ``kind_configs``: ``{kind: resolved config}`` (the reference's config gives the reference width; its
    ``model.hidden`` is the base every kind's sizes are scaled from). Returns ``{"match", "reference",
    "reference_hidden", "target", "widths": {kind: hidden list}, "values": {kind: measured params or seconds
    per step}}``.
    """
    if match not in MATCH_MODES:
        raise ValueError(f"match must be one of {', '.join(MATCH_MODES)}, got {match!r}")
    if reference not in kind_configs:
        raise ValueError(f"reference kind {reference!r} is not among the configs ({', '.join(kind_configs)})")
    ref_cfg = kind_configs[reference]
    base = list(ref_cfg["model"]["hidden"])
    data = open_dataset(ref_cfg["data"], "train", seed=ref_cfg["seed"])
    info = data.info
    batch = None
    if match == "time":
        torch.set_num_threads(int(ref_cfg.get("threads") or torch.get_num_threads()))
        loader = Batches(data, ref_cfg["data"]["batch_size"], torch.device("cpu"), ref_cfg["data"]["in_memory"])
        batch = next(iter(loader.iterate()))

    def measure(cfg: dict, hidden: Sequence[int]) -> float:
        if match == "params":
            return float(parameter_count(cfg, info, hidden))
        return step_seconds(cfg, info, hidden, batch, repeats)

    target = measure(ref_cfg, base)
    widths, values = {reference: base}, {reference: target}
    for kind, cfg in kind_configs.items():
        if kind == reference:
            continue
        width, value = _search(lambda w: measure(cfg, scaled_hidden(base, w)), target, 1, max(2, base[0]),
                               exact=match == "params")
        widths[kind], values[kind] = scaled_hidden(base, width), value
        logger.info("  budget %s: %s hidden %s (%s %.6g, target %.6g)", match, kind, widths[kind], match, value,
                    target)
    order = list(kind_configs)
    return {"match": match, "reference": reference, "reference_hidden": base, "target": target,
            "widths": {k: widths[k] for k in order}, "values": {k: values[k] for k in order}}
