"""Spiking VGG-11 for CIFAR-sized inputs (32×32), time-first ``[T, B, C, H, W]``, any registered neuron kind.

Layers (VGG "A" of Simonyan & Zisserman 2015, the CIFAR form with one classifier layer)::

    64 M | 128 M | 256 256 M | 512 512 M | 512 512 M  -> global average pool -> Linear(512, classes)

each number a 3×3 convolution (padding 1) + norm + neuron, ``M`` a 2×2 pooling (max by default). A stage is the
group of convolutions before a pooling (stage 1 = [64], stage 2 = [128], ...). With ``bilinear_stages`` the
convolutions of those stages are DLIF's bilinear convolutions (conv + Σ K s s, then norm and neuron, the
authors' VGG-BN block); the first convolution never is, since its input is the analog image (direct encoding).
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from ...validation import check_choice
from .blocks import ClassifierHead, NeuronFactory, TimeDistributed, check_stages, make_conv, make_norm
from .net import VisionNet

__all__ = ["SpikingVGG", "VGG11_LAYERS"]

VGG11_LAYERS = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
POOLS = ("max", "avg")


class SpikingVGG(VisionNet):
    """Spiking VGG ``x [T, B, C, 32, 32] -> logits [B, classes]`` (see the module docstring).

    Args:
        in_channels, num_classes: input channels (3 for CIFAR, 2 for event frames) and classes.
        kind: registered neuron kind; ``neuron_kw`` its keywords (DLIF's synapse keywords go to the bilinear
            convolutions), ``per_channel`` one parameter per channel for kinds that have the option.
        layers: the layer list (default VGG-11); ``width`` scales every channel count (tests, small runs).
        norm: ``"tdbn"`` | ``"bn"`` | ``"none"``. ``pool``: ``"max"`` | ``"avg"``. ``conv_bias``: bias in the
            convolutions (default True, as the reference count in docs/vision.md).
        bilinear_stages: stages whose convolutions get DLIF's bilinear term (default (1, 2) for ``kind="dlif"``,
            none otherwise); ``bilinear_sparsity`` the fraction of absent pairs (default 0: dense K; the OTTT
            VGG-11 path of the paper uses 0.9).
        readout: ``"mean"`` or ``"tet"``. ``time_steps``: T for static ``[B, C, H, W]`` input.
    """

    def __init__(self, in_channels: int, num_classes: int, kind: str = "lif", neuron_kw: dict | None = None,
                 layers: Sequence = VGG11_LAYERS, width: float = 1.0, norm: str = "tdbn", pool: str = "max",
                 conv_bias: bool = True, bilinear_stages: Sequence[int] | None = None,
                 bilinear_sparsity: float | None = None, per_channel: bool = False, readout: str = "mean",
                 time_steps: int | None = None):
        super().__init__()
        self._setup(in_channels, num_classes, kind, readout, time_steps)
        check_choice("pool", pool, POOLS)
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width!r}")
        stages = sum(1 for v in layers if v == "M") or 1
        if bilinear_stages is None:
            bilinear_stages = (1, 2) if kind == "dlif" else ()
        self.bilinear_stages = check_stages("bilinear_stages", bilinear_stages, stages)
        if pool == "avg" and any(s > 1 for s in self.bilinear_stages):
            raise ValueError(f"pool='avg' averages spikes into non-binary values, which DLIF's bilinear term after a "
                             f"pooling cannot take (bilinear_stages={list(self.bilinear_stages)}); use pool='max'")
        factory = NeuronFactory(kind, neuron_kw, time_steps, per_channel, bilinear_sparsity)
        modules: list[nn.Module] = []
        channels, stage = in_channels, 1
        for i, v in enumerate(layers):
            if v == "M":
                pooling = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)
                modules.append(TimeDistributed(pooling))
                stage += 1
                continue
            out = max(1, int(round(int(v) * width)))
            bilinear = factory.bilinear() if (i > 0 and stage in self.bilinear_stages) else None
            modules += [make_conv(channels, out, 3, bias=conv_bias, bilinear=bilinear),
                        make_norm(norm, out, v_threshold=factory.v_threshold), factory.neuron(out)]
            channels = out
        self.features = nn.Sequential(*modules)
        self.head = ClassifierHead(channels, num_classes)
