"""The registry: declared traits, the two builders, and the folders as the only list of neuron modules."""

from pathlib import Path

import pytest
import torch

import dendrix
import dendrix.layers
import dendrix.neurons
from dendrix.contract import Neuron
from dendrix.registry import builtin_modules, register


def test_builtin_modules_are_the_files_of_the_two_folders():
    package = Path(dendrix.__file__).parent
    files = {f"dendrix.{folder}.{p.stem}" for folder in ("neurons", "layers")
             for p in (package / folder).glob("*.py") if not p.name.startswith("_")}
    assert set(builtin_modules()) == files


def test_lazy_exports_come_from_each_module_all():
    import dendrix.neurons.lif as lif
    import dendrix.layers.dlif as dlif
    assert set(lif.__all__) <= set(dendrix.neurons.__all__) and "Neuron" in dendrix.neurons.__all__
    assert set(dlif.__all__) <= set(dendrix.layers.__all__) and "SpikingLinear" in dendrix.layers.__all__
    assert dendrix.neurons.LIF is lif.LIF and dendrix.layers.DLIFLinear is dlif.DLIFLinear
    with pytest.raises(AttributeError, match="no attribute 'NoSuchNeuron'"):
        dendrix.neurons.NoSuchNeuron  # noqa: B018


def test_every_registered_class_is_a_neuron_and_traits_are_consistent():
    for kind in dendrix.available():
        reg = dendrix.describe(kind)
        assert issubclass(reg.cls, Neuron), kind
        assert (reg.neuron is not None) == reg.owns_layer, f"{kind}: a layer kind needs its neuron alone"
        assert not (reg.per_channel and reg.width is None), kind


def test_weight_gain_scales_the_linear_after_the_neuron_is_built():
    torch.manual_seed(0)
    plain = dendrix.spiking_layer("lif", 5, 7)
    torch.manual_seed(0)
    scaled = dendrix.spiking_layer("lif", 5, 7, weight_gain=3.0)
    assert torch.equal(scaled.linear.weight, 3.0 * plain.linear.weight)
    assert torch.equal(scaled.linear.bias, 3.0 * plain.linear.bias)
    torch.manual_seed(0)
    rf = dendrix.spiking_layer("rf", 5, 7)  # the registered default 1/(10 dt) for the resonators
    torch.manual_seed(0)
    rf_plain = dendrix.spiking_layer("rf", 5, 7, weight_gain=1.0)
    assert torch.equal(rf.linear.weight, rf_plain.linear.weight * (1.0 / (10 * rf.neuron.dt)))
    with pytest.raises(ValueError, match="weight_gain"):
        dendrix.spiking_layer("lif", 5, 7, weight_gain=-1.0)
    with pytest.raises(TypeError, match="own synaptic layer"):
        dendrix.spiking_layer("dlif", 5, 7, weight_gain=2.0)


def test_width_and_per_channel():
    assert dendrix.spiking_layer("alif", 3, 4).neuron.channels == 4
    assert dendrix.spiking_layer("plif", 3, 4).neuron.channels is None
    assert dendrix.spiking_layer("plif", 3, 4, per_channel=True).neuron.channels == 4
    assert dendrix.spiking_neuron("dalif", 6, per_channel=True).channels == 6
    with pytest.raises(TypeError, match="per_channel"):
        dendrix.spiking_layer("alif", 3, 4, per_channel=True)


def test_layer_kinds_pass_bias_only_when_given():
    assert dendrix.spiking_layer("dgn", 3, 4).bias is None            # DGN's own default: no bias
    assert dendrix.spiking_layer("dgn", 3, 4, bias=True).bias is not None
    assert dendrix.spiking_layer("lif", 3, 4).linear.bias is not None  # Linear + neuron: bias by default
    assert dendrix.spiking_layer("lif", 3, 4, bias=False).linear.bias is None


def test_psn_kinds_take_time_steps():
    assert dendrix.spiking_neuron("psn", 4, time_steps=9).T == 9
    assert dendrix.spiking_neuron("masked_psn", 4, time_steps=3).k == 3   # band clamped to the window
    assert dendrix.spiking_neuron("sliding_psn", 4).k == 4


@pytest.mark.parametrize("bad, match", [
    (dict(cls=object), "nn.Module class"),
    (dict(layer="yes"), "layer must be"),
    (dict(neuron=lambda n: None), "only for kinds that build their own layer"),
    (dict(per_channel=True), "needs width"),
    (dict(weight_gain=0.0), "weight_gain"),
])
def test_register_refuses_inconsistent_traits(bad, match):
    args = dict(cls=dendrix.neurons.LIF, family="lif", description="test")
    args.update(bad)
    cls = args.pop("cls")
    with pytest.raises((TypeError, ValueError), match=match):
        register("bad_kind", cls, **args)
    assert "bad_kind" not in dendrix.available()


def test_a_kind_cannot_be_registered_twice_to_another_class():
    with pytest.raises(ValueError, match="already registered"):
        register("lif", dendrix.neurons.PLIF, family="lif", description="another class")
    with pytest.raises(ValueError, match="unknown neuron kind"):
        dendrix.registry.unregister("no_such_kind")
