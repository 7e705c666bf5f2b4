"""Each paper's checkable claims, measured over seeds and reported honestly (``docs/claims.md``).

``run_claim(name, seeds=5)`` measures one claim and returns a :class:`ClaimResult` (headline text with
mean ± std and a 95 % t-interval, a holds-here verdict, the raw per-seed values). ``quick=True`` runs tiny
settings (the harness's own tests); its numbers are not the claim's. The command line is
``python benchmarks/claims.py --claim NAME --seeds 5 --out DIR``.
"""

from __future__ import annotations

from ...validation import check_int
from . import dgn, dlif, others  # noqa: F401  (register the claims)
from .base import CLAIMS, ClaimResult, verdict
from .stats import Paired, Summary, paired, summarize

__all__ = ["CLAIMS", "ClaimResult", "run_claim", "claim_names", "summarize", "paired", "Summary", "Paired",
           "verdict"]


def claim_names() -> list[str]:
    """Names of the registered claims, in registration order."""
    return list(CLAIMS)


def run_claim(name: str, seeds: int = 5, quick: bool = False) -> ClaimResult:
    """Measure claim ``name`` (one of :func:`claim_names`) over ``seeds`` seeds (0 .. seeds-1)."""
    if name not in CLAIMS:
        raise ValueError(f"claim must be one of {claim_names()}, got {name!r}")
    seeds = check_int("seeds", seeds, minimum=1)
    return CLAIMS[name][1](seeds=seeds, quick=bool(quick))
