"""docs/adding-a-neuron.md: its worked example runs as written and passes the registry-wide contract checks."""

import re
from pathlib import Path

import pytest
import torch

import dendrix
import test_contract as contract

DOC = Path(__file__).resolve().parents[1] / "docs" / "adding-a-neuron.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
KIND = "threshold_lif"


@pytest.fixture
def example_kind():
    """The page's neuron, registered for one test and removed afterwards (other tests see the built-ins only)."""
    assert len(BLOCKS) == 2, "the page has one block defining the neuron and one using it"
    namespace: dict = {"__name__": "threshold_lif_example"}
    exec(compile(BLOCKS[0], f"{DOC.name} block 0", "exec"), namespace)
    assert KIND in dendrix.available()
    try:
        yield namespace
    finally:
        dendrix.registry.unregister(KIND)
    assert KIND not in dendrix.available()


def test_usage_block_runs(example_kind):
    exec(compile("import torch, dendrix\n" + BLOCKS[1], f"{DOC.name} block 1", "exec"), dict(example_kind))


def test_example_is_registered_with_its_traits(example_kind):
    reg = dendrix.describe(KIND)
    assert reg.cls is example_kind["ThresholdLIF"] and reg.width == "channels" and not reg.owns_layer
    assert dendrix.spiking_layer(KIND, 3, 5).neuron.channels == 5
    with pytest.raises(ValueError, match="ThresholdLIF input"):
        dendrix.spiking_neuron(KIND, 5)(torch.zeros(4, 2, 6))  # the template checks input_width


@pytest.mark.parametrize("check", [
    contract.test_step_loop_and_chunked_run_equal_forward,
    contract.test_forward_is_stateless_between_calls,
    contract.test_gradients_reach_every_parameter,
    contract.test_record_captures_spikes_and_a_trace,
    contract.test_spiking_neuron_keeps_the_contract,
    contract.test_spiking_neuron_is_the_neuron_of_spiking_layer,
    contract.test_registered_traits_agree_with_the_modules,
], ids=lambda f: f.__name__)
def test_example_passes_the_contract_checks(example_kind, check):
    takes_device = "device" in check.__code__.co_varnames[:check.__code__.co_argcount]
    check(KIND, "cpu") if takes_device else check(KIND)


@pytest.mark.parametrize("bad", [torch.zeros(contract.B, contract.IN),
                                 torch.zeros(contract.T, contract.B, contract.IN + 1)])
def test_example_refuses_bad_inputs(example_kind, bad):
    contract.test_bad_input_shape_is_a_clear_error(KIND, bad, "cpu")
