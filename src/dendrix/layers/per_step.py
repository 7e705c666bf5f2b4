"""A memoryless module applied to every time step of a time-first sequence (convolutions, pooling)."""

from __future__ import annotations

from torch import Tensor, nn

from ..validation import check_sequence

__all__ = ["PerStep"]


class PerStep(nn.Module):
    """``[T, B, *] -> [T, B, *']``: ``module`` applied to the ``T·B`` steps as one batch.

    For modules that take a batch ``[N, C, ...]`` and have no memory (``nn.Conv1d``/``nn.Conv2d``, pooling,
    ``nn.Flatten``): the time-first form that networks of dendrix neurons need, and the form
    :func:`dendrix.export.from_nir` builds for NIR's convolution and pooling nodes.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"PerStep: module must be an nn.Module, got {type(module).__name__}")
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        check_sequence(x, f"PerStep({type(self.module).__name__}) input", min_rank=3)
        y = self.module(x.flatten(0, 1))
        return y.unflatten(0, x.shape[:2])
