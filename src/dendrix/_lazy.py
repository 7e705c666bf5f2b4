"""Lazy re-exports for package ``__init__`` modules, so ``import dendrix`` does not load every model."""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, table: dict[str, str], eager: list[str] | tuple = ()
                 ) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``: ``table`` maps a public name to the submodule
    (relative to ``package``) that defines it; ``eager`` names are already defined in the package."""
    names = sorted({*eager, *table})

    def __getattr__(name: str):
        if name in table:
            return getattr(importlib.import_module(f"{package}.{table[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__, names
