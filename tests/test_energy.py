"""Operation counting and the energy proxy: counts equal hand computations on small networks with known spikes."""

import json
import math
from typing import NamedTuple

import pytest
import torch
from torch import nn

from dendrix.analysis.energy import E_AC_PJ, E_MAC_PJ, _active_pairs, count_operations, energy_report
from dendrix.layers.spiking import SpikingLinear
from dendrix.neurons import LIF
from dendrix.contract import Neuron

# Hand-set input spikes [T=2, B=2, C=3]: 5 spikes in sample 0, 1 in sample 1.
X = torch.tensor([[[1, 0, 1], [0, 0, 0]],
                  [[1, 1, 1], [0, 1, 0]]], dtype=torch.float32)


def _relay_layer(n: int, bias: bool = True) -> SpikingLinear:
    """Linear(2·I) + LIF(tau=2): from rest an input spike gives H = 1 (a spike, reset to 0), no input keeps V = 0,
    so the layer's output spikes are exactly its input spikes (hand-set hidden spikes)."""
    layer = SpikingLinear(n, n, LIF(), bias=bias)
    with torch.no_grad():
        layer.linear.weight.copy_(2 * torch.eye(n))
        if bias:
            layer.linear.bias.zero_()
    return layer


def test_spiking_mlp_counts_equal_hand_computation():
    model = nn.Sequential(_relay_layer(3), nn.Linear(3, 2))
    with torch.no_grad():
        assert torch.equal(model[0](X), X), "relay layer must reproduce its input spikes"
    report = count_operations(model, X)
    T, B, spikes = 2, 2, float(X.sum())
    hidden, out = report.layers
    # Layer 0: input spikes × fan-out 3; bias: one add per neuron and step; LIF: 2 MACs per neuron and step.
    assert hidden.breakdown == {"synaptic_ac": spikes * 3 / B, "bias_ac": T * 3, "dynamics_mac": 2 * T * 3}
    assert hidden.ac == spikes * 3 / B + T * 3 and hidden.mac == 2 * T * 3
    assert hidden.in_rate == spikes / X.numel() and hidden.out_rate == spikes / X.numel()
    assert hidden.neurons == 3 and not hidden.assumed
    # Readout on the hidden spikes (= X): spikes × fan-out 2, bias T·2.
    assert out.breakdown == {"synaptic_ac": spikes * 2 / B, "bias_ac": T * 2}
    # Baseline: dense MACs for every weight on every step, biases as adds.
    assert hidden.ann_mac == T * 3 * 3 and out.ann_mac == T * 3 * 2
    assert hidden.ann_ac == T * 3 and out.ann_ac == T * 2
    total_ac = spikes * 5 / B + T * 5
    total_mac = 2 * T * 3
    assert report.ac == total_ac and report.mac == total_mac
    assert math.isclose(report.energy_pj, E_AC_PJ * total_ac + E_MAC_PJ * total_mac)
    assert math.isclose(report.energy_uj, report.energy_pj * 1e-6)
    ann = E_MAC_PJ * T * 15 + E_AC_PJ * T * 5
    assert math.isclose(report.ann_energy_pj, ann)
    # Break-even: fixed (biases + dynamics) + E_AC · r · (dense spike-driven ops) = baseline.
    fixed = E_AC_PJ * T * 5 + E_MAC_PJ * total_mac
    assert math.isclose(report.break_even_rate, (ann - fixed) / (E_AC_PJ * T * 15))
    assert math.isclose(report.mean_input_rate, (spikes * 5 / B) / (T * 15))
    assert report.samples == B and report.time_steps == T


def test_constants_are_configurable_and_checked():
    model = nn.Sequential(_relay_layer(3, bias=False))
    report = count_operations(model, X, e_ac=1.0, e_mac=0.0)
    assert report.energy_pj == report.ac == float(X.sum()) * 3 / 2
    with pytest.raises(ValueError, match="e_mac"):
        count_operations(model, X, e_mac=-1.0)


def test_analog_input_costs_dense_macs():
    x = torch.rand(4, 2, 3) + 0.1  # real-valued
    model = nn.Sequential(nn.Linear(3, 5, bias=False), LIF())
    report = count_operations(model, x)
    linear, neuron = report.layers
    assert linear.breakdown == {"synaptic_mac": 4 * 3 * 5} and linear.in_rate is None
    assert neuron.breakdown == {"dynamics_mac": 2 * 4 * 5}
    assert report.break_even_rate is None  # nothing scales with a spike rate


class _CountEmitter(Neuron):
    """Test neuron emitting the integer part of its input (like SSF's integer spikes)."""

    class State(NamedTuple):
        pass

    emits = "integer"

    def init_state(self, x_t):
        return self.State()

    def run(self, x, state=None):
        return torch.trunc(x), self.State()


def test_integer_spikes_count_their_magnitude_and_unknown_neurons_are_flagged():
    x = torch.tensor([[[2.0, -3.0]], [[0.0, 1.0]]])  # T=2, B=1
    model = nn.Sequential(_CountEmitter(), nn.Linear(2, 4, bias=False))
    report = count_operations(model, x)
    emitter, linear = report.layers
    assert emitter.assumed and emitter.breakdown == {"dynamics_mac": 2.0 * 2 * 2}
    assert linear.breakdown == {"synaptic_ac": (2 + 3 + 1) * 4}
    assert "assumed" in report.to_markdown() or "Unknown neuron" in report.to_markdown()


def test_conv_fanout_is_exact_at_borders_and_strides():
    torch.manual_seed(0)
    conv = nn.Conv1d(2, 3, kernel_size=3, stride=2, padding=1, bias=False)
    x = (torch.rand(5, 2, 7) < 0.5).float()  # [N, C, L]: spikes
    report = count_operations(nn.Sequential(conv), x)  # counts are totals / samples, whatever "samples" means here
    # Brute force: each output position reads kernel taps; count the non-zero inputs it reads, × out channels.
    padded = torch.nn.functional.pad(x, (1, 1))
    reads = sum(float(padded[:, :, 2 * o:2 * o + 3].sum()) for o in range((7 + 2 - 3) // 2 + 1))
    assert report.layers[0].breakdown["synaptic_ac"] * report.samples == reads * 3


def test_step_loop_through_run_is_counted():
    """Recurrent wrappers step an inner neuron with .step (no __call__): its dynamics still count, once."""

    class Stepper(Neuron):
        def __init__(self):
            super().__init__()
            self.inner = SpikingLinear(3, 4, LIF())

        def init_state(self, x_t):
            return self.inner.init_state(x_t)

        def run(self, x, state=None):
            state = self.inner.init_state(x[0]) if state is None else state
            out = []
            for x_t in x.unbind(0):
                y, state = self.inner.neuron.step(self.inner.linear(x_t), state)
                out.append(y)
            return torch.stack(out), state

    report = count_operations(nn.Sequential(Stepper()), X)
    (row,) = report.layers
    assert row.breakdown["dynamics_mac"] == 2 * 2 * 4  # 2 MACs × T × neurons, per sample
    assert row.breakdown["synaptic_ac"] == float(X.sum()) * 4 / 2


def test_dgn_counts_follow_the_documented_formula():
    from dendrix.layers.dgn import DGNLinear

    torch.manual_seed(0)
    x = (torch.rand(6, 3, 5) < 0.4).float()
    for shared, sums in ((False, 2), (True, 1)):
        layer = DGNLinear(5, 4, shared_reversal=shared)
        report = count_operations(nn.Sequential(layer), x)
        (row,) = report.layers
        assert row.breakdown["synaptic_ac"] == pytest.approx(sums * float(x.sum()) * 4 / 3)
        assert row.breakdown["dynamics_mac"] == 5 * 6 * 4
        assert row.ann_mac == 6 * 5 * 4


def test_active_pairs_match_brute_force():
    torch.manual_seed(1)
    s = (torch.rand(7, 6) < 0.5).float()
    upper = torch.rand(3, 6, 6) < 0.3
    mask = torch.triu(upper, diagonal=1)
    mask = mask | mask.transpose(-1, -2)
    brute = sum(float(s[n, i] * s[n, j]) for n in range(7) for o in range(3)
                for i in range(6) for j in range(i + 1, 6) if mask[o, i, j])
    assert float(_active_pairs(s, mask.double().sum(dim=0))) == brute


def test_dlif_pairs_weights_and_soma_equal_hand_computation():
    from dendrix.layers.dlif import DLIFLinear

    torch.manual_seed(2)
    layer = DLIFLinear(6, 4, sparsity=0.5, seed=0)
    x = (torch.rand(5, 3, 6) < 0.5).float()
    report = count_operations(nn.Sequential(layer), x)
    (row,) = report.layers
    with torch.no_grad():  # every kept entry non-zero, so the dense K (fine at this size) shows the mask
        layer.bilinear_values.fill_(1.0)
        kept = layer.bilinear_matrix() != 0
    s = x.reshape(-1, 6)
    active = sum(float(s[n, i] * s[n, j]) for n in range(s.shape[0]) for o in range(4)
                 for i in range(6) for j in range(i + 1, 6) if kept[o, i, j])
    B = 3
    assert row.breakdown["pair_ac"] == active / B
    assert row.breakdown["synaptic_ac"] == float(x.sum()) * 4 / B
    assert row.breakdown["bias_ac"] == 5 * 4 and row.breakdown["dynamics_mac"] == 2 * 5 * 4
    assert row.ann_mac == 5 * 6 * 4  # the baseline keeps W only


def test_energy_report_over_a_loader_and_saved_files(tmp_path):
    model = nn.Sequential(_relay_layer(3), nn.Linear(3, 2))
    loader = [(X, torch.zeros(2, dtype=torch.long)), (X, torch.zeros(2, dtype=torch.long))]
    report = energy_report(model, loader)
    single = count_operations(model, X)
    assert report.samples == 4 and math.isclose(report.energy_pj, single.energy_pj)  # per-sample average
    paths = report.save(tmp_path)
    data = json.loads(paths["json"].read_text())
    assert math.isclose(data["energy_uj"], report.energy_uj)
    text = paths["md"].read_text()
    assert "proxy" in text and "Break-even" in text
    assert report.note in text


def test_mmdend_dynamics_match_the_paper_table4_formula():
    """The measured count of an MMDEND layer + the spike-driven layer after it equals the paper's formula."""
    from dendrix.analysis.paper_energy import mmdend_paper_energy_of
    from dendrix.neurons import MMDEND

    torch.manual_seed(3)
    neuron = MMDEND(9, window=5, stride=2)  # channels covered by 1, 2 or 3 branches
    readout = nn.Linear(9, 4, bias=False)
    model = nn.Sequential(nn.Linear(6, 9, bias=False), neuron, readout)
    x = (torch.rand(7, 2, 6) < 0.5).float()
    report = count_operations(model, x)
    dynamics = report.layers[1].breakdown["dynamics_mac"]
    rate = report.layers[1].out_rate
    paper = mmdend_paper_energy_of(neuron, time_steps=7, layer_flops=9 * 4, firing_rate=rate)
    assert dynamics == pytest.approx(paper.flops_neuron)
    assert report.layers[2].breakdown["synaptic_ac"] == pytest.approx(paper.flops_layer)
    assert report.layers[1].energy_pj + report.layers[2].energy_pj == pytest.approx(paper.energy_pj)


class _ThresholdNeuron(Neuron):
    """A neuron unknown to dendrix.analysis: it declares its own cost (3 MACs per neuron and step, and one AC per
    input element for a made-up comparison term), so it is counted without any edit to the energy analysis."""

    class State(NamedTuple):
        pass

    def init_state(self, x_t):
        return self.State()

    def run(self, x, state=None):
        return (x > 0.5).to(x.dtype), self.State()

    def operation_counts(self, inputs, output):
        return {"dynamics_mac": 3.0 * output.numel(), "compare_ac": float(inputs.numel())}


class _StepLoop(Neuron):
    """Steps an inner neuron with .step (no __call__), like a recurrent wrapper."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def init_state(self, x_t):
        return self.inner.init_state(x_t)

    def run(self, x, state=None):
        out = []
        for x_t in x.unbind(0):
            y, state = self.inner.step(x_t, state)
            out.append(y)
        return torch.stack(out), state


def test_a_new_neuron_declaring_operation_counts_is_counted():
    x = torch.rand(4, 2, 3)
    for wrap in (lambda n: n, _StepLoop):  # called directly, and stepped by a wrapper (counted once per step)
        neuron = _ThresholdNeuron()
        report = count_operations(nn.Sequential(nn.Linear(3, 5, bias=False), wrap(neuron)), x)
        linear, row = report.layers
        assert not row.assumed and row.type == type(wrap(neuron)).__name__
        assert row.breakdown == {"dynamics_mac": 3.0 * 4 * 5, "compare_ac": 4 * 5}  # per sample (B = 2)
        assert row.mac == 3.0 * 4 * 5 and row.ac == 4 * 5 and row.neurons == 5
        assert not neuron.__dict__.get("_run_hooks"), "the counter's run hooks must be removed afterwards"


def test_the_older_operation_counts_form_is_still_read():
    class Custom(nn.Linear):
        def operation_counts(self, inputs, output):
            return {"ac": 10.0, "mac": 4.0}

    report = count_operations(nn.Sequential(Custom(3, 2)), X)
    (row,) = report.layers
    assert row.breakdown == {"synaptic_ac": 10.0 / 2, "synaptic_mac": 4.0 / 2}
    assert row.ann_mac == 4.0 / 2  # the baseline's MACs default to "mac"


def test_run_hooks_see_step_and_run_calls_and_detach():
    neuron = LIF()
    seen = []
    handle = neuron.register_run_hooks(lambda m, x: seen.append(("pre", x.shape[0])),
                                       lambda m, x, result: seen.append(("post", result[0].shape[0])))
    neuron.step(torch.zeros(2, 3))
    neuron(torch.zeros(4, 2, 3))
    assert seen == [("pre", 1), ("post", 1), ("pre", 4), ("post", 4)]
    handle.remove()
    neuron(torch.zeros(4, 2, 3))
    assert len(seen) == 4
