"""Statistics for comparisons over seeds, in numpy only (scipy is an optional extra).

* :func:`summarize`: mean, sample standard deviation and a Student-t confidence interval of the mean.
* :func:`paired_t_test`: two-sided paired t-test (e.g. two neuron kinds trained with the same seeds).
* :func:`holm`: Holm's step-down correction of a family of p-values (controls the family-wise error rate).
* :func:`pairwise_tests`: every pair of kinds, paired over the seeds both have, Holm-corrected.
* :func:`welch_difference`: the difference of two independent means (Welch's t interval and test), e.g. one
  kind's accuracy on the official split minus its accuracy on unseen speakers (separately trained models).
* :func:`paired_bootstrap`: a paired bootstrap over test samples of the accuracy difference of two kinds
  (resampling the same test samples for both, averaged over the seeds both have).

The Student-t distribution is computed from the regularised incomplete beta function
(``P(|T| > t) = I_{ν/(ν+t²)}(ν/2, 1/2)``), evaluated with a continued fraction; the quantile is found by
bisection on that distribution function. Both agree with ``scipy.stats.t`` to about 1e-10 (tests/test_statistics.py).
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Mapping, Sequence

import numpy as np

__all__ = ["t_sf", "t_cdf", "t_quantile", "summarize", "paired_t_test", "holm", "pairwise_tests",
           "paired_bootstrap", "welch_difference", "PAIRED_T_METHOD", "BOOTSTRAP_METHOD", "WELCH_METHOD"]

PAIRED_T_METHOD = "two-sided paired t-test over seeds, Holm-corrected over all pairs of kinds"
BOOTSTRAP_METHOD = ("two-sided paired bootstrap over test samples (10,000 resamples of the test set, the same "
                    "samples for both kinds, accuracy difference averaged over seeds), Holm-corrected over all pairs")

WELCH_METHOD = ("difference of the means of two independently trained sets of seeds: Welch's t interval and "
                "two-sided Welch t-test (Welch-Satterthwaite degrees of freedom)")


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), for x < (a + 1) / (a + b + 2)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((a + m2 - 1) * (a + m2)),
                          -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < eps:
            break
    return result


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b) for a, b > 0, 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b  # the symmetry I_x(a,b) = 1 - I_{1-x}(b,a)


def _check_df(df: float) -> float:
    if not (isinstance(df, (int, float, np.integer, np.floating)) and math.isfinite(df) and df > 0):
        raise ValueError(f"df (degrees of freedom) must be a finite number > 0, got {df!r}")
    return float(df)


def t_sf(t: float, df: float) -> float:
    """Upper tail ``P(T > t)`` of Student's t distribution with ``df`` degrees of freedom."""
    df = _check_df(df)
    t = float(t)
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def t_cdf(t: float, df: float) -> float:
    """``P(T <= t)`` of Student's t distribution with ``df`` degrees of freedom."""
    return 1.0 - t_sf(t, df)


def t_quantile(p: float, df: float) -> float:
    """The ``t`` with ``P(T <= t) = p`` (0 < p < 1), by bisection on :func:`t_cdf`."""
    df = _check_df(df)
    if not (0.0 < p < 1.0):
        raise ValueError(f"p must be a probability strictly between 0 and 1, got {p!r}")
    if p == 0.5:
        return 0.0
    upper_tail = min(p, 1.0 - p)
    lo, hi = 0.0, 1.0
    while t_sf(hi, df) > upper_tail:  # bracket the positive quantile
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_sf(mid, df) > upper_tail:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    q = 0.5 * (lo + hi)
    return q if p > 0.5 else -q


def _values(name: str, values: Sequence[float]) -> np.ndarray:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of numbers, got shape {arr.shape}")
    return arr[np.isfinite(arr)]


def summarize(values: Sequence[float], confidence: float = 0.95) -> dict:
    """``{"n", "mean", "std", "ci_low", "ci_high", "half_width"}`` of ``values`` (None and NaN are skipped).

    ``std`` is the sample standard deviation (ddof=1); the interval is ``mean ± t_{(1+c)/2, n-1} · std / √n``.
    With one value the std and interval are NaN (nothing to estimate them from); with none, everything is NaN.
    """
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    arr = _values("values", values)
    n = int(arr.size)
    nan = math.nan
    if n == 0:
        return {"n": 0, "mean": nan, "std": nan, "ci_low": nan, "ci_high": nan, "half_width": nan}
    mean = float(arr.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "std": nan, "ci_low": nan, "ci_high": nan, "half_width": nan}
    std = float(arr.std(ddof=1))
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "half_width": half}


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> dict:
    """Two-sided paired t-test of ``mean(a - b) = 0``: ``{"n", "mean_diff", "t", "df", "p"}``.

    ``a[i]`` and ``b[i]`` belong together (same seed). Identical pairs give t = 0, p = 1; a constant non-zero
    difference gives t = ±inf, p = 0; fewer than two pairs give NaN.
    """
    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_arr.shape != b_arr.shape or a_arr.ndim != 1:
        raise ValueError(f"a and b must be flat sequences of the same length, got shapes {a_arr.shape} "
                         f"and {b_arr.shape}")
    diff = a_arr - b_arr
    diff = diff[np.isfinite(diff)]
    n = int(diff.size)
    if n < 2:
        return {"n": n, "mean_diff": float(diff.mean()) if n else math.nan, "t": math.nan, "df": n - 1,
                "p": math.nan}
    mean, sd = float(diff.mean()), float(diff.std(ddof=1))
    if sd == 0.0:
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
    else:
        t = mean / (sd / math.sqrt(n))
    p = 1.0 if t == 0.0 else 2.0 * t_sf(abs(t), n - 1)
    return {"n": n, "mean_diff": mean, "t": t, "df": n - 1, "p": min(1.0, p)}


def welch_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict:
    """``mean(a) - mean(b)`` of two independent samples with Welch's interval and two-sided test:
    ``{"n_a", "n_b", "mean_diff", "ci_low", "ci_high", "half_width", "t", "df", "p"}`` (None/NaN skipped).

    Independent, not paired: the two values of one seed come from two separately trained models. Fewer than
    two values on either side give NaN for everything but the difference; two constant samples give a zero-width
    interval (t = ±inf, p = 0, or t = 0, p = 1 when they are equal).
    """
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    x, y = _values("a", a), _values("b", b)
    nan = math.nan
    out = {"n_a": int(x.size), "n_b": int(y.size), "mean_diff": float(x.mean() - y.mean()) if x.size and y.size
           else nan, "ci_low": nan, "ci_high": nan, "half_width": nan, "t": nan, "df": nan, "p": nan}
    if x.size < 2 or y.size < 2:
        return out
    va, vb = float(x.var(ddof=1)) / x.size, float(y.var(ddof=1)) / y.size
    diff, se = out["mean_diff"], math.sqrt(va + vb)
    if se == 0.0:
        t = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
        out.update(ci_low=diff, ci_high=diff, half_width=0.0, t=t, df=float(x.size + y.size - 2),
                   p=1.0 if t == 0.0 else 0.0)
        return out
    df = (va + vb) ** 2 / (va ** 2 / (x.size - 1) + vb ** 2 / (y.size - 1))
    half = t_quantile(0.5 + confidence / 2.0, df) * se
    t = diff / se
    out.update(ci_low=diff - half, ci_high=diff + half, half_width=half, t=t, df=df,
               p=min(1.0, 2.0 * t_sf(abs(t), df)))
    return out


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order (NaN stays NaN and does not count towards the family)."""
    p = np.asarray(pvalues, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    m = valid.size
    running = 0.0
    for rank, idx in enumerate(valid[np.argsort(p[valid], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[idx]))  # step-down: adjusted values never decrease
        adjusted[idx] = running
    return adjusted.tolist()


def pairwise_tests(per_seed: Mapping[str, Mapping[int, float]], alpha: float = 0.05) -> list[dict]:
    """Paired t-tests between every pair of kinds over the seeds both have, Holm-corrected over the pairs.

    ``per_seed``: ``{kind: {seed: value}}``. Returns one dict per pair ``{"a", "b", "n", "mean_diff"
    (a - b), "t", "df", "p", "p_holm", "significant"}`` (``significant``: ``p_holm < alpha``).
    """
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    results = []
    for a, b in combinations(list(per_seed), 2):
        seeds = sorted(set(per_seed[a]) & set(per_seed[b]))
        test = paired_t_test([per_seed[a][s] for s in seeds], [per_seed[b][s] for s in seeds])
        results.append({"a": a, "b": b, **test})
    for res, adj in zip(results, holm([r["p"] for r in results])):
        res["p_holm"] = adj
        res["significant"] = bool(math.isfinite(adj) and adj < alpha)
    return results


def paired_bootstrap(correct_a: Sequence[Sequence[int]], correct_b: Sequence[Sequence[int]], *,
                     resamples: int = 10_000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Paired bootstrap over test samples of ``accuracy(a) - accuracy(b)``.

    ``correct_a[s][i]`` is 1 when kind a classified test sample ``i`` correctly with seed ``s`` (same for b; one
    list per seed both kinds have, every list over the same test samples). Each resample draws the test samples
    with replacement once and applies them to both kinds and every seed, so the pairing by sample is kept.
    Returns ``{"n_samples", "n_seeds", "mean_diff", "ci_low", "ci_high", "p"}``: the observed difference (averaged
    over seeds), its percentile interval and the two-sided p-value ``2 · min(P(d* <= 0), P(d* >= 0))`` (at least
    ``1 / (resamples + 1)``).
    """
    a = np.asarray(correct_a, dtype=np.float64)
    b = np.asarray(correct_b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape or a.shape[1] == 0:
        raise ValueError(f"correct_a and correct_b must be [seeds, samples] lists of the same shape, got "
                         f"{a.shape} and {b.shape}")
    if not (isinstance(resamples, int) and resamples >= 100):
        raise ValueError(f"resamples must be an integer >= 100, got {resamples!r}")
    diff = (a - b).mean(axis=0)  # per test sample, averaged over seeds
    n = diff.size
    rng = np.random.default_rng(seed)
    boot = np.empty(resamples)
    for start in range(0, resamples, 1000):  # chunks bound the memory of the index matrix
        stop = min(resamples, start + 1000)
        boot[start:stop] = diff[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    observed = float(diff.mean())
    low, high = np.quantile(boot, [0.5 - confidence / 2, 0.5 + confidence / 2])
    tail = min(float(np.mean(boot <= 0.0)), float(np.mean(boot >= 0.0)))
    p = min(1.0, max(2.0 * tail, 1.0 / (resamples + 1)))
    if np.all(diff == 0):
        p = 1.0
    return {"n_samples": int(n), "n_seeds": int(a.shape[0]), "mean_diff": observed, "ci_low": float(low),
            "ci_high": float(high), "p": p}
