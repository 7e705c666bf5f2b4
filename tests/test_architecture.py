"""The package's import arrows (docs/architecture.md, DESIGN.md §1), read with ``ast`` from the source tree.

contract ← neurons ← layers ← models ← train/analysis/export ← cli; ops/ and the small utility modules sit below
everything; layers/ use neurons/ only for a concrete soma; model code never imports train/ or cli/; data/ never
imports models/. Every import counts, including imports inside functions, except the registry's documented
lazy loads.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import dendrix
from dendrix.contract import Neuron

PACKAGE = Path(dendrix.__file__).parent

# What each part of the package must never import (top-level names under ``dendrix``).
_ABOVE_MODELS = {"train", "analysis", "export", "cli"}
FORBIDDEN = {
    "validation": {"*"}, "dtypes": {"*"}, "_lazy": {"*"}, "surrogate": {"*"}, "files": {"*"},
    "ops": {"contract", "registry", "recording", "neurons", "layers", "models", "data", *_ABOVE_MODELS},
    "contract": {"registry", "recording", "neurons", "layers", "models", "data", *_ABOVE_MODELS},
    "recording": {"registry", "neurons", "layers", "models", "data", *_ABOVE_MODELS},
    "registry": {"recording", "neurons", "models", "data", *_ABOVE_MODELS},  # layers: see REGISTRY_LAZY
    "neurons": {"layers", "models", "data", "recording", *_ABOVE_MODELS},
    "layers": {"models", "data", "recording", *_ABOVE_MODELS},  # neurons: somas only, see below
    "models": {"data", *_ABOVE_MODELS},
    "data": {"models", "neurons", "layers", "registry", "contract", *_ABOVE_MODELS},
    "train": {"cli"}, "analysis": {"cli"}, "export": {"cli"},
}
# The registry builds SpikingLinear (layers/spiking.py) inside spiking_layer, on use: the one import from below
# layers/ into it, kept inside a function so that neuron modules can import the registry at load time.
REGISTRY_LAZY = {"dendrix.layers.spiking"}
UTILITIES = {"validation", "dtypes", "_lazy", "surrogate", "files"}  # usable from everywhere


def _module_name(path: Path) -> str:
    parts = ("dendrix", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str | None = None) -> list[tuple[str, list[str], bool]]:
    """``(absolute module, imported names, at module level)`` for every dendrix import in ``path`` (a file of
    module ``module``, by default the package module at that path)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = module or _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    top_level = {id(node) for node in tree.body}
    for node in tree.body:  # imports inside module-level if/try blocks also run at import time
        if isinstance(node, (ast.If, ast.Try)):
            top_level |= {id(n) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "dendrix":
                    found.append((alias.name, [], id(node) in top_level))
            continue
        else:
            continue
        if target.split(".")[0] == "dendrix":
            found.append((target, names, id(node) in top_level))
    return found


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_the_source_tree_is_found():
    names = {_module_name(p) for p in SOURCES}
    assert {"dendrix.contract", "dendrix.registry", "dendrix.neurons.lif", "dendrix.layers.dlif",
            "dendrix.models.mlp"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_arrows_point_down(path):
    source = _module_name(path)
    part = _part(source)
    forbidden = FORBIDDEN.get(part, set())
    for target, names, _ in _imports(path):
        target_part = _part(target)
        if target_part is None or target_part == part:
            continue
        if forbidden == {"*"}:
            assert target_part in UTILITIES, f"{source} (a utility) imports {target}"
            continue
        for name in names:  # ``from dendrix import models`` names the part in the imported names
            full = f"{target}.{name}"
            if target == "dendrix" and _part(full) in forbidden:
                pytest.fail(f"{source} imports {full}, which it must not")
        assert target_part not in forbidden, f"{source} imports {target}: {part}/ must not import {target_part}/"


def test_registry_imports_layers_only_on_use():
    for target, _, top in _imports(PACKAGE / "registry.py"):
        if _part(target) == "layers":
            assert target in REGISTRY_LAZY and not top, f"registry.py imports {target} at load time"


def test_no_neuron_file_imports_layers():
    for path in sorted((PACKAGE / "neurons").glob("*.py")):
        for target, _, _ in _imports(path):
            assert _part(target) != "layers", f"{path.name} imports {target}"


def test_layers_import_neurons_only_for_a_concrete_soma():
    for path in sorted((PACKAGE / "layers").glob("*.py")):
        for target, names, _ in _imports(path):
            if _part(target) != "neurons":
                continue
            assert target != "dendrix.neurons" and names, f"layers/{path.name}: import a soma class from its module"
            module = importlib.import_module(target)
            for name in names:
                obj = getattr(module, name)
                assert isinstance(obj, type) and issubclass(obj, Neuron) and obj is not Neuron, (
                    f"layers/{path.name} imports {target}.{name}, which is not a concrete neuron (a soma)")


def test_the_contract_sits_below_neurons_and_layers():
    assert not (PACKAGE / "neurons" / "base.py").exists()
    targets = {t for t, _, _ in _imports(PACKAGE / "contract.py")}
    assert targets <= {"dendrix.validation", "dendrix.dtypes"}, targets


def test_no_source_file_is_over_600_lines():
    long = [str(p.relative_to(PACKAGE)) for p in SOURCES if len(p.read_text(encoding="utf-8").splitlines()) > 600]
    assert not long, f"over 600 lines: {long}"


def test_the_checker_sees_forbidden_imports(tmp_path):
    """The rules are not vacuous: relative, absolute and function-level imports of layers/ are all seen."""
    path = tmp_path / "lif.py"
    path.write_text("from ..layers.spiking import SpikingLinear\nimport dendrix.models\n"
                    "def f():\n    from ..layers import dlif\n", encoding="utf-8")
    found = {(t, top) for t, _, top in _imports(path, "dendrix.neurons.lif")}
    assert found == {("dendrix.layers.spiking", True), ("dendrix.models", True), ("dendrix.layers", False)}
