"""Statistics of a claim measured over seeds: mean ± std, a 95 % t-interval, and a paired comparison.

No SciPy: the two-sided 95 % Student-t quantiles for 1..30 degrees of freedom are tabulated (standard values);
beyond 30 the normal quantile 1.96 is within 2 % of the exact one. The paired test is an exact sign-flip
(randomisation) test of the mean difference, distribution-free and exact for the few seeds a claim uses
(all 2^n sign patterns for n <= 16, 20 000 random ones above).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

__all__ = ["Summary", "Paired", "summarize", "paired", "t_quantile_975"]

# two-sided 95 % quantiles t_{0.975, df}, df = 1..30
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t_quantile_975(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` >= 1 degrees of freedom (1.96 above 30)."""
    if int(df) != df or df < 1:
        raise ValueError(f"df must be an integer >= 1, got {df!r}")
    return _T975[int(df) - 1] if df <= 30 else 1.96


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (ddof 1) and the 95 % t-interval of the mean over n values."""

    n: int
    mean: float
    std: float
    low: float
    high: float
    values: tuple[float, ...]

    def text(self, fmt: str = ".3f", scale: float = 1.0, unit: str = "") -> str:
        m, s, lo, hi = (v * scale for v in (self.mean, self.std, self.low, self.high))
        if self.n == 1:
            return f"{m:{fmt}}{unit} (n = 1)"
        return f"{m:{fmt}} ± {s:{fmt}}{unit} [95 % CI {lo:{fmt}}, {hi:{fmt}}] (n = {self.n})"

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(values: Sequence[float]) -> Summary:
    """:class:`Summary` of ``values`` (at least one finite number; one value has std 0 and a point interval)."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0 or not np.isfinite(v).all():
        raise ValueError(f"values must be a non-empty sequence of finite numbers, got {list(values)!r}")
    mean = float(v.mean())
    if v.size == 1:
        return Summary(1, mean, 0.0, mean, mean, (mean,))
    std = float(v.std(ddof=1))
    half = t_quantile_975(v.size - 1) * std / math.sqrt(v.size)
    return Summary(int(v.size), mean, std, mean - half, mean + half, tuple(float(x) for x in v))


@dataclass(frozen=True)
class Paired:
    """Paired comparison of a against b (same seeds): the difference a − b summarised, and the exact
    two-sided sign-flip p-value of its mean."""

    difference: Summary
    p_value: float
    wins: int          # seeds where a > b
    n: int

    def text(self, fmt: str = ".3f", scale: float = 1.0) -> str:
        return f"Δ = {self.difference.text(fmt, scale)}, sign-flip p = {self.p_value:.3g}, a > b in {self.wins}/{self.n}"

    def to_dict(self) -> dict:
        return {"difference": self.difference.to_dict(), "p_value": self.p_value, "wins": self.wins, "n": self.n}


def paired(a: Sequence[float], b: Sequence[float], seed: int = 0) -> Paired:
    """Paired comparison of two equally long sequences measured on the same seeds."""
    a_, b_ = np.asarray(list(a), dtype=np.float64), np.asarray(list(b), dtype=np.float64)
    if a_.shape != b_.shape or a_.ndim != 1 or a_.size == 0:
        raise ValueError(f"a and b must be non-empty sequences of equal length, got {a_.size} and {b_.size}")
    d = a_ - b_
    observed = abs(d.mean())
    if d.size <= 16:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(20_000, d.size))
    means = np.abs((signs * d).mean(axis=1))
    p = float((means >= observed - 1e-12).mean())
    return Paired(summarize(d), p, int((d > 0).sum()), int(d.size))
