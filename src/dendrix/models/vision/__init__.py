"""Spiking convolutional networks and a spike-driven Transformer, time-first ``[T, B, C, H, W]``, any neuron kind.

See ``docs/vision.md``. ``build_vision_model(arch, options, info)`` is what :func:`dendrix.models.build_model`
calls for ``arch`` in :data:`VISION_ARCHS`.
"""

from __future__ import annotations

from torch import nn

from .blocks import BilinearConv2d, BilinearLinear, FeatureMapNeuron, SeqBatchNorm, TimeDistributed
from .cnn import SpikingCNN
from .net import VISION_READOUTS, VisionNet
from .resnet import SpikingResNet
from .transformer import SpikeDrivenTransformer
from .vgg import SpikingVGG

__all__ = ["VISION_ARCHS", "VISION_OPTIONS", "build_vision_model", "SpikingVGG", "SpikingResNet", "SpikingCNN",
           "SpikeDrivenTransformer", "VisionNet", "VISION_READOUTS", "SeqBatchNorm", "TimeDistributed",
           "FeatureMapNeuron", "BilinearConv2d", "BilinearLinear"]

_COMMON = ("norm", "bilinear_sparsity", "per_channel", "readout")
#: the model options each vision architecture takes besides arch/kind/neuron
VISION_OPTIONS: dict[str, tuple[str, ...]] = {
    "vgg11": _COMMON + ("width", "pool", "conv_bias", "bilinear_stages"),
    "resnet17": _COMMON + ("width", "block", "bilinear_stages"),
    "resnet18": _COMMON + ("width", "block", "bilinear_stages"),
    "resnet19": _COMMON + ("width", "block", "bilinear_stages"),
    "cnn": _COMMON + ("channels", "pool", "conv_bias", "bilinear_stages"),
    "sdt": _COMMON + ("dim", "depth", "mlp_ratio", "patch_stages", "bilinear_head"),
}
VISION_ARCHS = tuple(VISION_OPTIONS)


def build_vision_model(arch: str, options: dict, *, in_channels: int, num_classes: int, kind: str,
                       neuron_kw: dict, time_steps: int | None) -> nn.Module:
    """The vision model ``arch`` with ``options`` (its keys from :data:`VISION_OPTIONS`)."""
    if arch not in VISION_OPTIONS:
        raise ValueError(f"vision arch must be one of {', '.join(VISION_ARCHS)}, got {arch!r}")
    common = dict(in_channels=in_channels, num_classes=num_classes, kind=kind, neuron_kw=neuron_kw,
                  time_steps=time_steps, **options)
    if arch == "vgg11":
        return SpikingVGG(**common)
    if arch in ("resnet17", "resnet18", "resnet19"):
        return SpikingResNet(depth=int(arch[-2:]), **common)
    if arch == "cnn":
        return SpikingCNN(**common)
    return SpikeDrivenTransformer(**common)
