"""Reference architectures. Every model maps ``x [T, B, C] -> logits [B, classes]`` (readout inside).

``build_model(model_config, info)`` builds one from a config section such as::

    {"arch": "mlp", "kind": "lif", "hidden": [128], "recurrent": False, "readout": "mean", "neuron": {"tau": 2.0}}

``arch``: ``"mlp"`` (:class:`SpikingMLP`), ``"seqimage"`` (:class:`SeqImageNet`), ``"sequence"``
(``dendrix.models.sequence.SequenceModel``, the residual D-RF sequence model, imported lazily), or one of the
vision networks on ``[T, B, C, H, W]`` (``dendrix.models.vision``: ``vgg11``, ``resnet18``, ``resnet19``, ``cnn``,
``sdt``; docs/vision.md).
``kind``: any registered neuron kind. ``neuron``: neuron constructor keywords, merged over the kind's registry
defaults (``dendrix.describe(kind).defaults``). Other keys are the architecture's own options (``ARCH_OPTIONS``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..registry import describe
from .mlp import RecurrentSpikingLayer, SpikingMLP
from .readout import READOUTS, apply_readout, per_step_loss
from .seqimage import CausalConv1d, SeqImageNet
from .vision import VISION_ARCHS, VISION_OPTIONS

__all__ = ["build_model", "ARCH_OPTIONS", "SpikingMLP", "RecurrentSpikingLayer", "SeqImageNet", "CausalConv1d",
           "READOUTS", "apply_readout", "per_step_loss", "count_parameters", "neuron_kwargs"]

# Options each architecture accepts besides arch/kind/neuron (validated by dendrix.train.config as well).
ARCH_OPTIONS: dict[str, tuple[str, ...]] = {
    "mlp": ("hidden", "recurrent", "readout", "dropout", "weight_gain", "output"),
    "seqimage": ("conv_channels", "kernel_size", "hidden", "readout", "dropout", "weight_gain"),
    "sequence": ("d_model", "depth", "bidirectional", "dropout"),
    **VISION_OPTIONS,
}


def neuron_kwargs(kind: str, overrides: dict | None = None) -> dict:
    """The kind's registry defaults updated by ``overrides`` (the config's ``model.neuron``)."""
    return {**describe(kind).defaults, **dict(overrides or {})}


def build_model(model_config: dict[str, Any], info) -> nn.Module:
    """Build the model described by ``model_config`` for a data set described by ``info`` (a DatasetInfo)."""
    cfg = dict(model_config)
    arch = cfg.pop("arch", "mlp")
    if arch not in ARCH_OPTIONS:
        raise ValueError(f"model.arch must be one of {sorted(ARCH_OPTIONS)}, got {arch!r}")
    kind = cfg.pop("kind", "lif")
    neuron_kw = neuron_kwargs(kind, cfg.pop("neuron", None))
    unknown = sorted(set(cfg) - set(ARCH_OPTIONS[arch]))
    if unknown:
        raise ValueError(f"model.{unknown[0]} is not an option of arch {arch!r} "
                         f"(options: {', '.join(ARCH_OPTIONS[arch])})")
    common = dict(num_inputs=int(info.num_inputs), num_classes=int(info.num_classes), kind=kind,
                  neuron_kw=neuron_kw, time_steps=getattr(info, "time_steps", None))
    if arch == "mlp":
        return SpikingMLP(**common, **cfg)
    if arch == "seqimage":
        return SeqImageNet(**common, **cfg)
    if arch in VISION_ARCHS:
        from .vision import build_vision_model
        shape = getattr(info, "input_shape", None)
        if shape is None or len(shape) != 3:
            raise ValueError(f"model.arch={arch!r} needs image or frame data (info.input_shape (C, H, W)); data set "
                             f"{getattr(info, 'name', '?')!r} gives [T, C] sequences")
        return build_vision_model(arch, cfg, in_channels=common["num_inputs"], num_classes=common["num_classes"],
                                  kind=kind, neuron_kw=neuron_kw, time_steps=common["time_steps"])
    from .sequence import SequenceModel  # owned by the D-RF engineer; imported only when asked for
    return SequenceModel(**common, **cfg)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars (complex parameters count twice: real and imaginary part)."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters() if p.requires_grad)
