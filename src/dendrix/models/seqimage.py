"""Sequential-image network: causal 1-D convolutions over time with spiking neurons, then spiking layers.

For sequential images (S-MNIST pixel by pixel: T = 784, C = 1; column by column: T = 28, C = 28; S-CIFAR:
C = 3 or 96) the input ``x [T, B, C]`` passes through blocks

    u = BatchNorm(CausalConv1d(h, kernel_size, dilation = 2^i))      (over the time axis, channels C -> c_i)
    h = spiking(u)                                                    (the kind's neuron, on [T, B, c_i])

with dilations 1, 2, 4, ... so the receptive field grows geometrically, then the spiking MLP hidden layers
(``dendrix.spiking_layer``) and a non-spiking Linear readout (:mod:`dendrix.models.readout`).
The convolution is causal (left padding only): in eval mode (BatchNorm with running statistics) the output at
step t never sees inputs after t, so the trained network is usable for streaming. In training mode BatchNorm's
batch statistics pool over all steps, as in temporal convolutional networks.

The spiking nonlinearity of a conv block is the kind's neuron alone for activation-style kinds; kinds that are
synaptic layers (DLIF, DGN) bring their own c_i -> c_i synapses there.
"""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import spiking_layer
from ..validation import check_choice, check_int, check_range, check_sequence
from .mlp import scale_synaptic_weights
from .readout import READOUTS, apply_readout
from .sequence import sequence_neuron

__all__ = ["SeqImageNet", "CausalConv1d"]


class CausalConv1d(nn.Module):
    """``[T, B, C_in] -> [T, B, C_out]``: a 1-D convolution over time that only looks back (left padding)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, bias: bool = True):
        super().__init__()
        check_int("kernel_size", kernel_size, 1)
        check_int("dilation", dilation, 1)
        self.pad = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        u = x.permute(1, 2, 0)                      # [B, C, T]
        u = self.conv(F.pad(u, (self.pad, 0)))
        return u.permute(2, 0, 1)                   # [T, B, C_out]


class SeqImageNet(nn.Module):
    """Sequential-image classifier ``x [T, B, num_inputs] -> logits [B, num_classes]``.

    Args:
        num_inputs: input channels per step (1 pixel by pixel, 28/32/96 column by column).
        num_classes: output classes.
        kind: registry neuron kind (default ``"lif"``).
        neuron_kw: neuron constructor keywords.
        conv_channels: output channels of the causal conv blocks (default ``(64, 64)``); dilation doubles per block.
        kernel_size: temporal kernel size of every conv block (default 3).
        hidden: spiking hidden layer sizes after the conv blocks (default ``(128,)``; may be empty).
        readout: ``"mean"`` | ``"ce_sum"`` | ``"max"``.
        dropout: dropout on hidden spikes.
        time_steps: sequence length (for kinds with T-dependent weights).
        weight_gain: factor on the initial weight matrices of the spiking hidden layers (see SpikingMLP) and on
            the initial BatchNorm scale of the conv blocks (BatchNorm's unit variance alone rarely reaches
            threshold).
    """

    def __init__(self, num_inputs: int, num_classes: int, kind: str = "lif", neuron_kw: dict | None = None,
                 conv_channels: Sequence[int] = (64, 64), kernel_size: int = 3, hidden: Sequence[int] = (128,),
                 readout: str = "mean", dropout: float = 0.0, time_steps: int | None = None,
                 weight_gain: float = 1.0):
        super().__init__()
        check_int("num_inputs", num_inputs, 1)
        check_int("num_classes", num_classes, 2)
        if isinstance(conv_channels, int):
            conv_channels = (conv_channels,)
        if isinstance(hidden, int):
            hidden = (hidden,)
        if len(conv_channels) == 0:
            raise ValueError("conv_channels must list at least one block, got []")
        for c in (*conv_channels, *hidden):
            check_int("layer size", c, 1)
        check_choice("readout", readout, READOUTS)
        check_range("dropout", dropout, 0.0, 1.0, high_open=True)
        neuron_kw = dict(neuron_kw or {})
        self.kind, self.readout, self.num_inputs = kind, readout, num_inputs
        self.per_step_loss = readout == "ce_sum"
        blocks, channels = [], num_inputs
        for i, out_channels in enumerate(conv_channels):
            blocks.append(nn.ModuleDict({
                "conv": CausalConv1d(channels, out_channels, kernel_size, dilation=2 ** i, bias=False),
                "norm": nn.BatchNorm1d(out_channels),
                "spike": sequence_neuron(kind, out_channels, time_steps, **neuron_kw),
            }))
            channels = out_channels
        self.blocks = nn.ModuleList(blocks)
        sizes = [channels, *hidden]
        self.layers = nn.ModuleList(spiking_layer(kind, a, b, time_steps=time_steps, **neuron_kw)
                                    for a, b in zip(sizes[:-1], sizes[1:]))
        if weight_gain != 1.0:
            scale_synaptic_weights(self.layers, weight_gain)
            for block in self.blocks:  # the conv output is normalised: its scale is BatchNorm's weight
                block["norm"].weight.data.mul_(weight_gain)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.output = nn.Linear(sizes[-1], num_classes)

    def forward(self, x: Tensor, per_step: bool = False) -> Tensor:
        check_sequence(x, "SeqImageNet input", min_rank=3, features=self.num_inputs)
        h = x
        for block in self.blocks:
            u = block["conv"](h)
            u = block["norm"](u.permute(1, 2, 0)).permute(2, 0, 1)
            h = self.dropout(block["spike"](u.contiguous()))
        for layer in self.layers:
            h = self.dropout(layer(h))
        out = self.output(h)
        return out if per_step else apply_readout(out, self.readout)
