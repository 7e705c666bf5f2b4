"""Building blocks of the spiking convolutional networks: time-distributed layers, tdBN, neurons on feature maps,
DLIF's bilinear convolution, direct encoding and the classifier head.

Every block maps time-first maps ``[T, B, C, H, W]`` to ``[T, B, C', H', W']``. Layers without memory (Conv2d,
BatchNorm, pooling) run once on the ``T·B`` frames folded into the batch; only the neurons run over time (their
whole-sequence kernels, no per-step graph).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ...layers.dlif import DLIFConv2d, DLIFLinear
from ...registry import describe, spiking_neuron
from ...validation import check_choice, check_int, check_positive, check_range

__all__ = ["NORMS", "DLIF_SYNAPSE_KEYS", "TimeDistributed", "SeqBatchNorm", "FeatureMapNeuron", "BilinearConv2d",
           "BilinearLinear", "NeuronFactory", "check_maps", "direct_encode", "make_norm", "make_conv", "ClassifierHead",
           "check_stages"]

#: ``"tdbn"``: threshold-dependent BN (Zheng et al. 2021, AAAI): statistics over T·B·H·W per channel, affine
#: weight initialised to ``alpha · v_threshold``; ``"bn"``: the same statistics with the weight initialised to 1
#: (BN over T·B, as SpikingJelly's multi-step BatchNorm2d); ``"none"``: no normalisation.
NORMS = ("tdbn", "bn", "none")

#: DLIF keywords that belong to the bilinear synapses, not to its soma (``spiking_neuron("dlif", n)`` refuses them).
DLIF_SYNAPSE_KEYS = ("sparsity", "rank", "bias", "backend", "check_input", "k_init", "seed")


def check_maps(x: Tensor, name: str, channels: int | None = None) -> None:
    """One clear error unless ``x`` is ``[T, B, C, H, W]`` (with ``C == channels`` when given)."""
    if not isinstance(x, Tensor) or x.dim() != 5 or (channels is not None and x.shape[2] != channels):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        want = "C" if channels is None else str(channels)
        raise ValueError(f"{name}: input must be time-first maps [T, B, {want}, H, W], got {shape}")


def direct_encode(x: Tensor, time_steps: int | None, name: str) -> Tensor:
    """Direct (repeated) encoding: a static batch ``[B, C, H, W]`` becomes ``[T, B, C, H, W]`` (the first conv is
    the encoder); an input that is already ``[T, B, C, H, W]`` is returned as it is."""
    if isinstance(x, Tensor) and x.dim() == 4:
        if time_steps is None:
            raise ValueError(f"{name}: a static image batch [B, C, H, W] needs time_steps= (direct encoding over "
                             f"T steps); got time_steps=None")
        return x.unsqueeze(0).expand(time_steps, *x.shape)
    check_maps(x, name)
    return x


class TimeDistributed(nn.Module):
    """Apply a memoryless module to ``[T, B, *]`` by folding time into the batch: ``[T·B, *] -> [T, B, *']``."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        T, B = x.shape[:2]
        y = self.module(x.reshape(T * B, *x.shape[2:]))
        return y.view(T, B, *y.shape[1:])


class SeqBatchNorm(nn.BatchNorm2d):
    """Batch norm of ``[T, B, C, H, W]`` over T·B·H·W per channel (tdBN's statistics; running stats for eval).

    ``alpha · v_threshold`` initialises the affine weight (tdBN: α = 1 in a plain layer, 1/√2 on both branches
    before a residual addition); ``alpha = 1, v_threshold = 1`` is ordinary BN over T·B.
    """

    def __init__(self, channels: int, alpha: float = 1.0, v_threshold: float = 1.0, eps: float = 1e-5,
                 momentum: float = 0.1):
        super().__init__(check_int("channels", channels, minimum=1), eps=eps, momentum=momentum)
        self.alpha = check_positive("alpha", alpha)
        self.v_threshold = check_positive("v_threshold", v_threshold)
        with torch.no_grad():
            self.weight.fill_(self.alpha * self.v_threshold)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        check_maps(x, "SeqBatchNorm", self.num_features)
        T, B = x.shape[:2]
        return super().forward(x.reshape(T * B, *x.shape[2:])).view(x.shape)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", alpha={self.alpha:g}, v_threshold={self.v_threshold:g}"


def make_norm(norm: str, channels: int, alpha: float = 1.0, v_threshold: float = 1.0) -> nn.Module:
    """The normalisation after a convolution: ``"tdbn"``, ``"bn"`` (BN over T·B) or ``"none"``."""
    check_choice("norm", norm, NORMS)
    if norm == "none":
        return nn.Identity()
    return SeqBatchNorm(channels, alpha=alpha if norm == "tdbn" else 1.0,
                        v_threshold=v_threshold if norm == "tdbn" else 1.0)


class FeatureMapNeuron(nn.Module):
    """A neuron on feature maps ``[T, B, C, H, W]``: the neuron's width is C, its parameters broadcast over H, W.

    Shape-agnostic neurons (LIF, PLIF/DA-LIF with one parameter per layer) run on the maps directly. Neurons with
    one parameter per channel (``per_channel=True``, or kinds whose width is always set) index the last input
    dimension, so the maps are moved channel-last around the call (one copy each way).
    """

    def __init__(self, neuron: nn.Module, channels: int, channel_last: bool | None = None):
        super().__init__()
        self.neuron, self.channels = neuron, channels
        if channel_last is None:
            channel_last = getattr(neuron, "input_width", None) is not None
        self.channel_last = bool(channel_last)

    def forward(self, x: Tensor) -> Tensor:
        if not self.channel_last:
            return self.neuron(x)
        y = self.neuron(x.permute(0, 1, 3, 4, 2))
        return y.permute(0, 1, 4, 2, 3)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, channel_last={self.channel_last}"


class BilinearConv2d(nn.Module):
    """DLIF's convolutional current without its soma: ``I = W * s + Σ_cd K_o,cd s_c s_d`` per pixel, on frames
    ``[N, C, H, W]`` (the authors' ``Conv2d_bilinear``, with dendrix's sparse pair engine; ``sparsity=0`` is a
    dense K). A norm and any kind's neuron follow it, as in the authors' VGG-BN and PreAct blocks.

    Energy: :meth:`operation_counts` is DLIFConv2d's (convolution ACs by the measured input spikes, one AC per
    active kept channel pair) without the soma, which the following neuron counts itself.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 sparsity: float = 0.0, bias: bool = False, **dlif_kw):
        super().__init__()
        self.layer = DLIFConv2d(in_channels, out_channels, kernel_size, stride=stride, sparsity=sparsity,
                                bias=bias, **dlif_kw)
        self.in_channels, self.out_channels = in_channels, out_channels

    @property
    def conv(self) -> nn.Conv2d:
        return self.layer.conv

    def forward(self, x: Tensor) -> Tensor:
        return self.layer.input_current(x)

    def operation_counts(self, inputs: Tensor, output: Tensor) -> dict[str, float]:
        counts = self.layer.operation_counts(inputs, output)
        counts.pop("dynamics_mac", None)  # the soma is the next module's neuron
        return counts


class BilinearLinear(nn.Module):
    """DLIF's fully connected current ``W s + b + sᵀ K_o s`` without its soma (the Transformer's fusion head):
    ``[..., in] -> [..., out]``; energy as :class:`BilinearConv2d`."""

    def __init__(self, in_features: int, out_features: int, sparsity: float = 0.0, **dlif_kw):
        super().__init__()
        self.layer = DLIFLinear(in_features, out_features, sparsity=sparsity, **dlif_kw)
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: Tensor) -> Tensor:
        return self.layer.input_current(x)

    def operation_counts(self, inputs: Tensor, output: Tensor) -> dict[str, float]:
        counts = self.layer.operation_counts(inputs, output)
        counts.pop("dynamics_mac", None)
        return counts


def make_conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, bias: bool = False,
              bilinear: dict | None = None) -> nn.Module:
    """A time-distributed convolution ``[T, B, C, H, W] -> [T, B, C', H', W']`` (padding ``k // 2``); with
    ``bilinear`` (DLIF synapse keywords) DLIF's bilinear convolution instead."""
    if bilinear is not None:
        return TimeDistributed(BilinearConv2d(in_channels, out_channels, kernel_size, stride, bias=bias, **bilinear))
    return TimeDistributed(nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                                     padding=kernel_size // 2, bias=bias))


def check_stages(name: str, stages: Sequence[int], count: int) -> tuple[int, ...]:
    """Stage numbers 1..count (the stages that get DLIF's bilinear term)."""
    if isinstance(stages, int) or not isinstance(stages, (list, tuple)):
        raise TypeError(f"{name} must be a list of stage numbers, got {stages!r}")
    for s in stages:
        if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= count:
            raise ValueError(f"{name} holds stage numbers 1..{count}, got {list(stages)!r}")
    return tuple(stages)


class NeuronFactory:
    """Builds the neuron of ``kind`` for a feature map of C channels, and DLIF's synapse keywords.

    * Activation-style kinds: ``dendrix.spiking_neuron(kind, C, per_channel=..., **neuron_kw)``.
    * Kinds that own their synapses use their neuron without synapses (``spiking_neuron(kind, C)``): DLIF its
      soft-reset LIF soma (its synapse keywords, ``sparsity`` etc., go to the bilinear convolutions); DGN/S-DGN
      the gated membrane with one synapse per channel (DGN has no convolutional synapses: the convolution is
      an ordinary Conv2d and the gate runs per channel on its output).
    * Kinds whose parameters depend on T (PSN) get ``time_steps``.
    """

    def __init__(self, kind: str, neuron_kw: dict | None = None, time_steps: int | None = None,
                 per_channel: bool = False, bilinear_sparsity: float | None = None):
        self.reg = describe(kind)
        self.kind, self.time_steps, self.per_channel = kind, time_steps, bool(per_channel)
        kw = dict(neuron_kw or {})
        self.synapse_kw = {k: kw.pop(k) for k in DLIF_SYNAPSE_KEYS if k in kw} if kind == "dlif" else {}
        self.synapse_kw.pop("bias", None)  # the models choose the conv bias themselves
        self.neuron_kw = kw
        if bilinear_sparsity is not None:
            self.synapse_kw["sparsity"] = check_range("bilinear_sparsity", bilinear_sparsity, 0.0, 1.0)
        self.synapse_kw.setdefault("sparsity", 0.0)
        if self.per_channel and not self.reg.per_channel:
            raise ValueError(f"per_channel=True: neuron kind {kind!r} has no per-channel option "
                             f"(kinds with one: {', '.join(k for k in _per_channel_kinds())})")
        self.v_threshold = float(kw.get("v_threshold", 1.0))
        self._seed = self.synapse_kw.pop("seed", None)
        self._count = 0

    def neuron(self, channels: int) -> FeatureMapNeuron:
        kw = dict(self.neuron_kw)
        extra = {"time_steps": self.time_steps} if self.reg.needs_time_steps else {}
        if self.reg.owns_layer:
            module = spiking_neuron(self.kind, channels, **extra, **kw)
            return FeatureMapNeuron(module, channels)
        module = spiking_neuron(self.kind, channels, per_channel=self.per_channel, **extra, **kw)
        # the width argument is filled (one parameter per channel): the channel must be the last dimension
        width_set = self.reg.width is not None and (self.per_channel or not self.reg.per_channel)
        return FeatureMapNeuron(module, channels, channel_last=width_set or None)

    def token_neuron(self, features: int) -> nn.Module:
        """The neuron for token features ``[T, B, N, features]`` (the channel is already the last dimension)."""
        return self.neuron(features).neuron

    def bilinear(self) -> dict:
        """Keywords of one bilinear convolution (each gets its own mask seed when a seed was given)."""
        kw = dict(self.synapse_kw)
        if self._seed is not None:
            kw["seed"] = int(self._seed) + self._count
        self._count += 1
        return kw


def _per_channel_kinds() -> list[str]:
    from ...registry import available
    return [k for k in available() if describe(k).per_channel]


class ClassifierHead(nn.Module):
    """Global average pooling of the last maps, then a Linear per step: ``[T, B, C, H, W] -> [T, B, classes]``
    (the output current; the model's readout averages it over T, or TET scores every step)."""

    def __init__(self, channels: int, num_classes: int, hidden: int | None = None,
                 neuron: Callable[[int], nn.Module] | None = None):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        if hidden is None:
            self.hidden, self.hidden_neuron = None, None
            self.fc = nn.Linear(channels, num_classes)
        else:  # ResNet-19: FC 256 + neuron, then FC to the classes
            self.hidden = nn.Linear(channels, hidden)
            self.hidden_neuron = neuron(hidden) if neuron is not None else None
            self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        T, B = x.shape[:2]
        h = self.pool(x.reshape(T * B, *x.shape[2:])).view(T, B, -1)
        if self.hidden is not None:
            h = self.hidden(h)
            if self.hidden_neuron is not None:
                h = self.hidden_neuron.neuron(h) if isinstance(self.hidden_neuron, FeatureMapNeuron) \
                    else self.hidden_neuron(h)
        return self.fc(h)


def tdbn_residual_alpha() -> float:
    """tdBN's α on the two branches that meet at a residual addition (Zheng et al. 2021): 1/√2."""
    return 1.0 / math.sqrt(2.0)
