"""The base of the vision models: input checks, direct encoding, readout and the TET loss."""

from __future__ import annotations

from torch import Tensor, nn

from ...validation import check_choice, check_int
from ..readout import apply_readout
from .blocks import direct_encode

__all__ = ["VisionNet", "VISION_READOUTS"]

#: ``"mean"``: cross-entropy of the time-averaged output; ``"tet"`` (alias ``"ce_sum"``): the TET loss (Deng et
#: al. 2022, ICLR), the cross-entropy of every step's output averaged over T (prediction: the time average).
VISION_READOUTS = ("mean", "tet", "ce_sum")


class VisionNet(nn.Module):
    """Common part of the spiking vision models: ``x [T, B, C, H, W]`` (or a static ``[B, C, H, W]`` batch, repeated
    over ``time_steps``: direct encoding) -> logits ``[B, classes]``; ``per_step=True`` gives ``[T, B, classes]``.

    Subclasses build ``self.features`` (maps -> maps) and ``self.head`` (maps -> ``[T, B, classes]``).
    """

    def _setup(self, in_channels: int, num_classes: int, kind: str, readout: str, time_steps: int | None) -> None:
        self.in_channels = check_int("in_channels", in_channels, minimum=1)
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.readout = check_choice("readout", readout, VISION_READOUTS)
        self.kind, self.time_steps = kind, time_steps
        self.per_step_loss = readout in ("tet", "ce_sum")  # the trainer then applies the per-step CE (TET)

    def encode(self, x: Tensor) -> Tensor:
        x = direct_encode(x, self.time_steps, type(self).__name__)
        if x.shape[2] != self.in_channels:
            raise ValueError(f"{type(self).__name__}: input has {x.shape[2]} channels, the model takes "
                             f"{self.in_channels} (shape {tuple(x.shape)})")
        return x

    def forward(self, x: Tensor, per_step: bool = False) -> Tensor:
        out = self.head(self.features(self.encode(x)))
        return out if per_step else apply_readout(out, "mean")
