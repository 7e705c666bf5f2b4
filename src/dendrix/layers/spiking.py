"""Synaptic wrappers: a weight layer followed by an activation-style neuron, under the neuron contract."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..contract import Neuron, State

__all__ = ["SpikingLinear"]


class SpikingLinear(Neuron):
    """``[T, B, in] -> [T, B, out]``: ``Linear`` applied to every step at once (one matmul), then ``neuron``.

    The synaptic current has no memory, so only the neuron carries state.
    """

    def __init__(self, in_features: int, out_features: int, neuron: Neuron, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.neuron = neuron
        self.in_features, self.out_features = in_features, out_features

    @property
    def streaming(self) -> bool:  # type: ignore[override]
        return self.neuron.streaming

    @property
    def input_width(self) -> int:  # type: ignore[override]
        return self.in_features

    def check_run_input(self, x: Tensor) -> None:
        """The Linear's width, then the neuron's own rules on the current's shape (e.g. a PSN's window of T
        steps), before the Linear runs."""
        self.check_input(x, self.in_features)
        self.neuron.check_run_input(torch.empty((*x.shape[:-1], self.out_features), dtype=x.dtype, device="meta"))

    def init_state(self, x_t: Tensor) -> State:
        return self.neuron.init_state(x_t.new_zeros(*x_t.shape[:-1], self.out_features))

    def run(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        self.check_input(x, self.in_features)
        return self.neuron.run(self.linear(x), state)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x, self.in_features)
        return self.neuron(self.linear(x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"

