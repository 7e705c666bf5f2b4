"""Static checks of every Triton kernel's source (no Triton needed: runs in CI).

Triton's CPU interpreter (used by the ``*_triton`` tests off-GPU) accepts code that the GPU compiler refuses.
One such case is caught here without a GPU: a kernel may read a module-level global only if it is a
``tl.constexpr`` (or a function/module); a plain ``_SLOT = 5`` compiles in the interpreter and fails on the GPU.
"""

import ast
from pathlib import Path

import pytest

import dendrix

OPS = Path(dendrix.__file__).parent / "ops"
SOURCES = sorted(p for p in OPS.rglob("*.py") if "triton" in p.read_text(encoding="utf-8"))


def _jit_functions(tree: ast.Module):
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any("jit" in ast.unparse(d) for d in node.decorator_list):
            yield node


def _plain_globals(tree: ast.Module) -> set[str]:
    """Module-level names bound by assignments whose value is not a ``tl.constexpr(...)`` call."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            if "constexpr(" in ast.unparse(node.value):
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def test_there_are_triton_kernels_to_check():
    assert any(p.name == "triton.py" for p in SOURCES)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(OPS)))
def test_kernels_read_only_constexpr_globals(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    plain = _plain_globals(tree)
    bad = []
    for fn in _jit_functions(tree):
        local = {a.arg for a in fn.args.args} | {n.id for n in ast.walk(fn)
                                                 if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        used = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        bad += [f"{fn.name}: {name}" for name in sorted((used & plain) - local)]
    assert not bad, f"Triton kernels reading non-constexpr module globals (wrap them in tl.constexpr): {bad}"


def test_running_every_model_with_a_triton_path_on_cpu_does_not_import_triton():
    """Triton is optional and slow to import: only a Triton run imports it (one subprocess for all engines)."""
    import os
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "import dendrix.ops.lif, dendrix.ops.alif, dendrix.ops.rf, dendrix.ops.dgn, dendrix.ops.bilinear\n"
            "from dendrix.neurons import ALIF, BRF, LIF\n"
            "from dendrix.layers import DGNLinear, DLIFLinear\n"
            "x = torch.randn(3, 2, 4)\n"
            "LIF()(x); ALIF()(x); BRF(4)(x); DGNLinear(4, 3, recurrent=True)(torch.rand(3, 2, 4))\n"
            "DLIFLinear(6, 3)((torch.rand(2, 2, 6) < 0.5).float())\n"
            "ops = [dendrix.ops.lif, dendrix.ops.alif, dendrix.ops.rf, dendrix.ops.dgn, dendrix.ops.bilinear]\n"
            "print('triton' in sys.modules, *(m.TRITON_ENGINE.loaded for m in ops))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "TRITON_INTERPRET": "0"})
    assert out.stdout.split() == ["False"] * 6, out.stdout + out.stderr
