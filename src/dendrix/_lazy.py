"""Lazy re-exports for package ``__init__`` modules, so ``import dendrix`` does not load every model."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
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


def package_exports(package: str, folder: str) -> dict[str, str]:
    """``{public name: submodule}`` for every module of a package folder, read from each module's literal
    ``__all__`` without importing it (so the folder is the only list of the package's modules)."""
    table: dict[str, str] = {}
    for path in sorted(Path(folder).glob("*.py")):
        if path.name.startswith("_"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in tree.body:
            if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                                     for t in node.targets)):
                for name in ast.literal_eval(node.value):
                    if name in table:
                        raise ImportError(f"{package}: {name!r} is exported by both {table[name]!r} and "
                                          f"{path.stem!r}")
                    table[name] = path.stem
    return table


def lazy_package(package: str, folder: str, eager: list[str] | tuple = ()
                 ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a package whose public names are its modules' ``__all__``
    (:func:`package_exports`), each module imported on first use. ``__all__`` is computed when first asked."""
    cache: dict[str, dict[str, str]] = {}

    def table() -> dict[str, str]:
        if "table" not in cache:
            cache["table"] = package_exports(package, folder)
        return cache["table"]

    def __getattr__(name: str):
        if name == "__all__":
            return sorted({*eager, *table()})
        if name in table():
            return getattr(importlib.import_module(f"{package}.{table()[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*eager, *table()})

    return __getattr__, __dir__
