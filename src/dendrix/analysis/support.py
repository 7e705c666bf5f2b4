"""The support matrix: for every registered kind, what runs it on CPU and GPU and how it compiles and exports.

Generated from the registry's traits (:class:`dendrix.registry.Registration`), so a new kind appears without
editing this module. ``docs/support-matrix.md`` is this table (``python -m dendrix.analysis.support`` prints it;
``tests/test_support_matrix.py`` keeps the two equal and checks the traits against the exporters).
"""

from __future__ import annotations

from ..registry import available, describe

__all__ = ["support_rows", "support_matrix_markdown"]

_ONNX = {"step": "per step (state in/out)", "window": "whole window (does not stream)"}


def support_rows() -> list[dict[str, str]]:
    """One row per registered kind: kind, family, CPU engine, GPU engine, compile, ONNX, NIR."""
    rows = []
    for kind in available():
        reg = describe(kind)
        rows.append({"kind": kind, "family": reg.family, "cpu": reg.cpu_engine or "—",
                     "gpu": reg.gpu_engine or "—", "compile": "fullgraph", "onnx": _ONNX[reg.onnx],
                     "nir": "yes (hard reset)" if reg.nir else "no (typed refusal)"})
    return rows


def support_matrix_markdown() -> str:
    """The support matrix as the Markdown page ``docs/support-matrix.md``."""
    lines = ["# Support matrix", "",
             "Generated from the registry (`python -m dendrix.analysis.support`); do not edit by hand.",
             "`torch.compile(fullgraph=True)` is tested for every kind on CPU (`tests/test_compile.py`), per-step",
             "ONNX round trips through onnxruntime for every kind (`tests/test_export_onnx.py`), and NIR round",
             "trips where the table says yes (`tests/test_export_nir.py`); every other kind gets a typed refusal",
             "that points to ONNX (`docs/export.md`).", "",
             "| kind | family | CPU engine (`backend=\"auto\"`) | GPU engine (CUDA) | torch.compile | ONNX | NIR |",
             "|---|---|---|---|---|---|---|"]
    for r in support_rows():
        lines.append(f"| `{r['kind']}` | {r['family']} | {r['cpu']} | {r['gpu']} | {r['compile']} | {r['onnx']} "
                     f"| {r['nir']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - the docs generator
    import sys

    sys.stdout.write(support_matrix_markdown())
