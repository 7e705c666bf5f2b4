"""Residual spiking sequence model for long sequences (sequential images, long-memory synthetic tasks).

Block "RB" (the D-RF paper's residual block), pre-normalised:

    u = LayerNorm(x)
    s = temporal(u)                      the sequence neuron of ``kind`` (D-RF by default), [T, B, d]
    y = x + Dropout(W2 · mixer(W1 · s))  W1, W2: 1×1 convolutions (per-step Linear d -> d); mixer: a spiking
                                         neuron (LIF by default)

Causal by default: every part only looks back in time, so the output at step t depends on inputs up to t.
``bidirectional=True`` adds a second temporal neuron that reads the sequence backwards; the two spike trains
are concatenated before W1 (2d -> d), as in the authors' bidirectional code. The model is

    x [T, B, num_inputs] -> Linear encoder -> depth × RB -> LayerNorm -> mean over time -> Linear -> logits.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..registry import describe, spiking_layer, spiking_neuron
from ..validation import check_int, check_range, check_sequence

__all__ = ["ResidualBlock", "SequenceModel", "sequence_neuron"]


def sequence_neuron(kind: str, features: int, time_steps: int | None = None, **neuron_kw) -> nn.Module:
    """A ``[T, B, features] -> [T, B, features]`` spiking module of ``kind``: the bare neuron for
    activation-style kinds (D-RF, LIF, MMDEND, PSN, ...), the kind's own synaptic layer for DLIF/DGN."""
    if describe(kind).owns_layer:
        return spiking_layer(kind, features, features, time_steps=time_steps, **neuron_kw)
    return spiking_neuron(kind, features, time_steps=time_steps, **neuron_kw)


class ResidualBlock(nn.Module):
    """The residual block "RB": ``x + Dropout(W2 · mixer(W1 · temporal(LayerNorm(x))))`` on ``[T, B, d_model]``.

    Args:
        d_model: channels d.
        kind: registered kind of the temporal neuron (default ``"drf"``).
        neuron_kw: constructor keywords of the temporal neuron.
        mixer: kind of the spiking neuron between the two 1×1 convolutions (default ``"lif"``).
        mixer_kw: its keywords.
        bidirectional: add a backward-in-time temporal neuron (non-causal).
        dropout: dropout on the block's output before the residual sum.
        time_steps: T, for kinds whose parameters depend on it (PSN).
    """

    def __init__(self, d_model: int, kind: str = "drf", neuron_kw: dict | None = None, mixer: str = "lif",
                 mixer_kw: dict | None = None, bidirectional: bool = False, dropout: float = 0.1,
                 time_steps: int | None = None):
        super().__init__()
        self.d_model = check_int("d_model", d_model, minimum=1)
        check_range("dropout", dropout, 0.0, 1.0, high_open=True)
        if not isinstance(bidirectional, bool):
            raise TypeError(f"bidirectional must be a bool, got {type(bidirectional).__name__}")
        self.bidirectional = bidirectional
        self.norm = nn.LayerNorm(d_model)
        self.temporal = sequence_neuron(kind, d_model, time_steps, **dict(neuron_kw or {}))
        self.temporal_backward = (sequence_neuron(kind, d_model, time_steps, **dict(neuron_kw or {}))
                                  if bidirectional else None)
        self.conv_in = nn.Linear(d_model * (2 if bidirectional else 1), d_model)
        self.mixer = sequence_neuron(mixer, d_model, time_steps, **dict(mixer_kw or {}))
        self.conv_out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        u = self.norm(x)
        s = self.temporal(u)
        if self.temporal_backward is not None:
            s = torch.cat([s, self.temporal_backward(u.flip(0)).flip(0)], dim=-1)
        return x + self.dropout(self.conv_out(self.mixer(self.conv_in(s))))


class SequenceModel(nn.Module):
    """Residual spiking sequence classifier ``x [T, B, num_inputs] -> logits [B, num_classes]``.

    Linear encoder to ``d_model`` channels, ``depth`` residual blocks (:class:`ResidualBlock`, pre-LayerNorm),
    a final LayerNorm, the mean over time, and a Linear readout.

    Args:
        num_inputs, num_classes: input channels per step and classes.
        d_model: width (default 128). depth: number of blocks (default 4).
        kind: the temporal spiking neuron of every block (default ``"drf"``; any registered kind, e.g.
            ``"mmdend"``, ``"psn"``, ``"lif"``). neuron_kw: its keywords (merged over nothing: pass the
            registry defaults yourself or use ``dendrix.models.build_model``).
        bidirectional: blocks also read the sequence backwards (default False: causal).
        dropout: block dropout (default 0.1).
        time_steps: T, required by kinds with T-sized parameters (PSN).
        mixer, mixer_kw: the spiking neuron between the 1×1 convolutions (default ``"lif"``).
    """

    def __init__(self, num_inputs: int, num_classes: int, d_model: int = 128, depth: int = 4, kind: str = "drf",
                 neuron_kw: dict | None = None, bidirectional: bool = False, dropout: float = 0.1,
                 time_steps: int | None = None, mixer: str = "lif", mixer_kw: dict | None = None):
        super().__init__()
        self.num_inputs = check_int("num_inputs", num_inputs, minimum=1)
        self.num_classes = check_int("num_classes", num_classes, minimum=1)
        check_int("depth", depth, minimum=1)
        describe(kind), describe(mixer)  # unknown kinds fail here with the list of available ones
        self.kind, self.time_steps = kind, time_steps
        self.encoder = nn.Linear(num_inputs, d_model)
        self.blocks = nn.ModuleList(
            ResidualBlock(d_model, kind, neuron_kw, mixer, mixer_kw, bidirectional, dropout, time_steps)
            for _ in range(depth))
        self.norm = nn.LayerNorm(d_model)
        self.readout = nn.Linear(d_model, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_sequence(x, "SequenceModel input", min_rank=3, features=self.num_inputs)
        if x.dim() != 3:
            raise ValueError(f"SequenceModel input must be [T, B, {self.num_inputs}], got shape {tuple(x.shape)}")
        h = self.encoder(x)
        for block in self.blocks:
            h = block(h)
        return self.readout(self.norm(h).mean(dim=0))
