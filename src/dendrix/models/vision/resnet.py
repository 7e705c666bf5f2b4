"""Spiking ResNet-17, ResNet-18 and ResNet-19 with CIFAR stems, time-first ``[T, B, C, H, W]``, any registered neuron kind.

* ResNet-18 (He et al. 2016, CIFAR form): 3×3 stem conv (64, stride 1, no max-pool), four stages of two basic
  blocks with 64/128/256/512 channels (strides 1, 2, 2, 2), global average pool, Linear(512, classes).
* ResNet-19 (Zheng et al. 2021, tdBN): 3×3 stem conv (128), three stages of 3/3/2 basic blocks with 128/256/512
  channels (strides 1, 2, 2), global average pool, FC 256 + neuron, FC to the classes.
* ResNet-17 (the STBP-tdBN network of DVS-Gesture, used by the DLIF paper there): a reconstruction, since the
  layer table was not found (docs/vision.md): tdBN's counting of ResNet-19 (stem + 2 per block + 2 FC) with
  7 blocks: 3×3 stem conv (64), stages of 1/2/2/2 basic blocks with 64/128/256/512 channels (strides 1, 2, 2,
  2), global average pool, FC 256 + neuron, FC. 11.23 M parameters for 2 input channels and 11 classes, against
  the 11.18 M quoted for tdBN's ResNet-17 in SEW ResNet's DVS-Gesture table.

Blocks (``block=``):

* ``"basic"``: ``sn(bn(conv(sn(bn(conv(x))))) + shortcut(x))``, the spiking ResNet of tdBN (the two norms that
  meet at the addition get tdBN's α = 1/√2).
* ``"preact"``: ``conv(sn(bn(conv(sn(bn(x)))))) + shortcut(x)`` (He et al. 2016b; the PreAct ResNet-18 of SLTT,
  where the DLIF authors put the bilinear term). Both convolutions of a block take spikes.

With ``bilinear_stages`` the 3×3 convolutions of those stages are DLIF's bilinear convolutions (default stages
1–2 for ``kind="dlif"``, dense K); the stem and the 1×1 shortcuts are ordinary convolutions.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from ...validation import check_choice
from .blocks import (ClassifierHead, NeuronFactory, check_stages, make_conv, make_norm, tdbn_residual_alpha)
from .net import VisionNet

__all__ = ["SpikingResNet", "RESNETS", "BasicBlock", "PreActBlock"]

# depth -> (stem channels, ((channels, blocks, stride) per stage), hidden FC of the head)
RESNETS = {
    18: (64, ((64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)), None),
    19: (128, ((128, 3, 1), (256, 3, 2), (512, 2, 2)), 256),
    17: (64, ((64, 1, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)), 256),
}
BLOCKS = ("basic", "preact")


def _shortcut(c_in: int, c_out: int, stride: int, norm: str, alpha: float, v_th: float) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(make_conv(c_in, c_out, 1, stride), make_norm(norm, c_out, alpha, v_th))


class BasicBlock(nn.Module):
    """Spiking basic block: conv-norm-neuron-conv-norm, plus the shortcut, then the neuron (spikes out)."""

    def __init__(self, c_in: int, c_out: int, stride: int, factory: NeuronFactory, norm: str, bilinear: bool):
        super().__init__()
        v_th, alpha = factory.v_threshold, tdbn_residual_alpha()
        self.conv1 = make_conv(c_in, c_out, 3, stride, bilinear=factory.bilinear() if bilinear else None)
        self.norm1 = make_norm(norm, c_out, 1.0, v_th)
        self.neuron1 = factory.neuron(c_out)
        self.conv2 = make_conv(c_out, c_out, 3, 1, bilinear=factory.bilinear() if bilinear else None)
        self.norm2 = make_norm(norm, c_out, alpha, v_th)
        self.shortcut = _shortcut(c_in, c_out, stride, norm, alpha, v_th)
        self.neuron2 = factory.neuron(c_out)

    def forward(self, x: Tensor) -> Tensor:
        h = self.neuron1(self.norm1(self.conv1(x)))
        return self.neuron2(self.norm2(self.conv2(h)) + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation block: norm-neuron-conv-norm-neuron-conv, plus the shortcut (real-valued out)."""

    def __init__(self, c_in: int, c_out: int, stride: int, factory: NeuronFactory, norm: str, bilinear: bool):
        super().__init__()
        v_th = factory.v_threshold
        self.norm1 = make_norm(norm, c_in, 1.0, v_th)
        self.neuron1 = factory.neuron(c_in)
        self.conv1 = make_conv(c_in, c_out, 3, stride, bilinear=factory.bilinear() if bilinear else None)
        self.norm2 = make_norm(norm, c_out, 1.0, v_th)
        self.neuron2 = factory.neuron(c_out)
        self.conv2 = make_conv(c_out, c_out, 3, 1, bilinear=factory.bilinear() if bilinear else None)
        # the shortcut of a downsampling block sees the pre-activated spikes, as in PreAct ResNet
        self.shortcut = None if (stride == 1 and c_in == c_out) else make_conv(c_in, c_out, 1, stride)

    def forward(self, x: Tensor) -> Tensor:
        s = self.neuron1(self.norm1(x))
        skip = x if self.shortcut is None else self.shortcut(s)
        return self.conv2(self.neuron2(self.norm2(self.conv1(s)))) + skip


class SpikingResNet(VisionNet):
    """Spiking ResNet-17/18/19 ``x [T, B, C, H, W] -> logits [B, classes]`` (see the module docstring).

    Args:
        in_channels, num_classes: input channels and classes.
        depth: 17, 18 or 19. ``block``: ``"basic"`` | ``"preact"``. ``width``: scales every channel count.
        kind, neuron_kw, per_channel: the neuron (as :class:`~dendrix.models.vision.vgg.SpikingVGG`).
        norm: ``"tdbn"`` | ``"bn"`` | ``"none"``.
        bilinear_stages, bilinear_sparsity: DLIF's bilinear term (default stages (1, 2) for DLIF, dense K).
        readout: ``"mean"`` or ``"tet"``. ``time_steps``: T for static ``[B, C, H, W]`` input.
    """

    def __init__(self, in_channels: int, num_classes: int, depth: int = 18, kind: str = "lif",
                 neuron_kw: dict | None = None, block: str = "basic", width: float = 1.0, norm: str = "tdbn",
                 bilinear_stages: Sequence[int] | None = None, bilinear_sparsity: float | None = None,
                 per_channel: bool = False, readout: str = "mean", time_steps: int | None = None):
        super().__init__()
        self._setup(in_channels, num_classes, kind, readout, time_steps)
        if depth not in RESNETS:
            raise ValueError(f"depth must be one of {sorted(RESNETS)}, got {depth!r}")
        self.block = check_choice("block", block, BLOCKS)
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width!r}")
        stem, stages, hidden = RESNETS[depth]
        if bilinear_stages is None:
            bilinear_stages = (1, 2) if kind == "dlif" else ()
        self.bilinear_stages = check_stages("bilinear_stages", bilinear_stages, len(stages))
        self.depth = depth
        factory = NeuronFactory(kind, neuron_kw, time_steps, per_channel, bilinear_sparsity)
        scale = lambda c: max(1, int(round(c * width)))  # noqa: E731
        channels = scale(stem)
        modules: list[nn.Module] = [make_conv(in_channels, channels, 3, 1)]
        if block == "basic":
            modules += [make_norm(norm, channels, 1.0, factory.v_threshold), factory.neuron(channels)]
        cls = BasicBlock if block == "basic" else PreActBlock
        for number, (c, blocks, stride) in enumerate(stages, start=1):
            for b in range(blocks):
                modules.append(cls(channels, scale(c), stride if b == 0 else 1, factory, norm,
                                   number in self.bilinear_stages))
                channels = scale(c)
        if block == "preact":  # the last block's sum is normalised and turned into spikes before the head
            modules += [make_norm(norm, channels, 1.0, factory.v_threshold), factory.neuron(channels)]
        self.features = nn.Sequential(*modules)
        self.head = ClassifierHead(channels, num_classes, hidden=hidden,
                                   neuron=factory.neuron if hidden is not None else None)
