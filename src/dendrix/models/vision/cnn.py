"""A small spiking CNN for small images (the 8×8 or 16×16 scikit-learn digits, N-MNIST frames downsampled).

``conv(C→c1) norm neuron  pool | conv(c1→c2) norm neuron  pool`` (3×3 convolutions, 2×2 max-pooling), then
global average pooling and a Linear to the classes: the VGG pattern of :mod:`.vgg` at a size that trains in
seconds on two cores. With ``kind="dlif"`` the second convolution (its input is spikes) is DLIF's bilinear
convolution (stage 2; dense K by default).
"""

from __future__ import annotations

from typing import Sequence

from ...validation import check_int
from .vgg import SpikingVGG

__all__ = ["SpikingCNN"]


class SpikingCNN(SpikingVGG):
    """Small spiking CNN ``x [T, B, C, H, W] -> logits [B, classes]``; ``channels`` lists one conv per stage.

    Other arguments as :class:`~dendrix.models.vision.vgg.SpikingVGG` (``conv_bias`` defaults to False here: a
    norm follows every convolution).
    """

    def __init__(self, in_channels: int, num_classes: int, kind: str = "lif", neuron_kw: dict | None = None,
                 channels: Sequence[int] = (16, 32), norm: str = "tdbn", pool: str = "max", conv_bias: bool = False,
                 bilinear_stages: Sequence[int] | None = None, bilinear_sparsity: float | None = None,
                 per_channel: bool = False, readout: str = "mean", time_steps: int | None = None):
        if isinstance(channels, int) or not channels:
            raise ValueError(f"channels must list one channel count per stage, got {channels!r}")
        layers: list = []
        for c in channels:
            layers += [check_int("channels", c, minimum=1), "M"]
        super().__init__(in_channels, num_classes, kind=kind, neuron_kw=neuron_kw, layers=layers, norm=norm,
                         pool=pool, conv_bias=conv_bias, bilinear_stages=bilinear_stages,
                         bilinear_sparsity=bilinear_sparsity, per_channel=per_channel, readout=readout,
                         time_steps=time_steps)
        self.channels = tuple(channels)
