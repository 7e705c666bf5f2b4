"""The support matrix (docs/support-matrix.md) is generated from the registry, and its traits tell the truth."""

from pathlib import Path

import pytest
import torch

import dendrix
from dendrix.analysis.support import support_matrix_markdown, support_rows
from dendrix.export import NIRUnsupported, ONNXUnsupported, to_nir, to_onnx

DOC = Path(__file__).resolve().parents[1] / "docs" / "support-matrix.md"


def test_the_docs_page_is_the_generated_table():
    assert DOC.read_text(encoding="utf-8") == support_matrix_markdown(), \
        "docs/support-matrix.md is stale: python -m dendrix.analysis.support > docs/support-matrix.md"
    assert [r["kind"] for r in support_rows()] == dendrix.available()


def test_every_kind_declares_its_engines():
    for kind in dendrix.available():
        reg = dendrix.describe(kind)
        assert reg.cpu_engine and reg.gpu_engine, kind
        assert reg.onnx == ("step" if reg.streams else "window"), kind


@pytest.mark.parametrize("kind", dendrix.available())
def test_nir_trait_matches_the_exporter(kind):
    layer = dendrix.spiking_layer(kind, 4, 3, time_steps=5)
    sample = torch.zeros(5, 2, 4)
    if dendrix.describe(kind).nir:
        graph = to_nir(layer, sample)
        assert len(graph.nodes) >= 3  # input, affine, neuron, output
    else:
        with pytest.raises(NIRUnsupported):
            to_nir(layer, sample)


@pytest.mark.parametrize("kind", [k for k in dendrix.available() if dendrix.describe(k).onnx == "window"])
def test_window_kinds_refuse_a_per_step_export(kind, tmp_path):
    layer = dendrix.spiking_layer(kind, 4, 3, time_steps=5)
    with pytest.raises(ONNXUnsupported, match="window"):
        to_onnx(layer, torch.zeros(2, 4), tmp_path / "step.onnx")
