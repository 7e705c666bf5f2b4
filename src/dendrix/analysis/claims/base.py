"""The result of one measured claim, and the registry of claims (filled by the per-paper modules)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ...files import write_text

__all__ = ["ClaimResult", "CLAIMS", "claim", "verdict"]

HOLDS = ("yes", "no", "partly")


@dataclass
class ClaimResult:
    """One row of ``docs/claims.md``: what the paper says, what was measured, and whether it holds here."""

    name: str
    paper: str
    claim: str
    measurement: str                     # mean ± std [95 % CI] (n) text of the headline figures
    holds: str                           # "yes" | "no" | "partly"
    seeds: int
    settings: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)   # raw per-seed numbers and summaries (JSON-able)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.holds not in HOLDS:
            raise ValueError(f"holds must be one of {HOLDS}, got {self.holds!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.json"
        write_text(path, json.dumps(self.to_dict(), indent=2, default=float))
        return path


def verdict(*conditions: bool) -> str:
    """"yes" when every condition holds, "no" when none does, "partly" otherwise."""
    if all(conditions):
        return "yes"
    return "no" if not any(conditions) else "partly"


# name -> (paper, function(seeds: int, quick: bool) -> ClaimResult)
CLAIMS: dict[str, tuple[str, Callable[..., ClaimResult]]] = {}


def claim(name: str, paper: str):
    """Register a claim measurement under ``name``."""
    def register(fn):
        CLAIMS[name] = (paper, fn)
        return fn
    return register
