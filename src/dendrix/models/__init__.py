"""Reference architectures. Every model maps ``x [T, B, C] -> logits [B, classes]`` (readout inside).

``build_model(model_config, info)`` builds one from a config section such as::

    {"arch": "mlp", "kind": "lif", "hidden": [128], "recurrent": False, "readout": "mean", "neuron": {"tau": 2.0}}

``arch``: ``"mlp"`` (:class:`SpikingMLP`), ``"seqimage"`` (:class:`SeqImageNet`), ``"sequence"``
(``dendrix.models.sequence.SequenceModel``, the residual D-RF sequence model, imported lazily), or one of the
vision networks on ``[T, B, C, H, W]`` (``dendrix.models.vision``: ``vgg11``, ``resnet17``, ``resnet18``,
``resnet19``, ``cnn``, ``sdt``; docs/vision.md).
``kind``: any registered neuron kind. ``neuron``: neuron constructor keywords, merged over the kind's registry
defaults (``dendrix.describe(kind).defaults``). Other keys are the architecture's own options (``ARCH_OPTIONS``).

Your own network: ``register_architecture("mynet", builder)``; then ``model.arch: mynet`` works in configs and
the CLI (a config's ``plugins:`` list names the module that registers it). See docs/training.md.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import nn

from ..registry import describe
from ..validation import check_registration
from .mlp import RecurrentSpikingLayer, SpikingMLP
from .readout import READOUTS, apply_readout, per_step_loss
from .seqimage import CausalConv1d, SeqImageNet
from .vision import VISION_ARCHS, VISION_OPTIONS

__all__ = ["build_model", "ARCH_OPTIONS", "SpikingMLP", "RecurrentSpikingLayer", "SeqImageNet", "CausalConv1d",
           "READOUTS", "apply_readout", "per_step_loss", "count_parameters", "neuron_kwargs", "register_architecture",
           "unregister_architecture", "user_architectures"]

# Options each architecture accepts besides arch/kind/neuron (validated by dendrix.train.config as well).
ARCH_OPTIONS: dict[str, tuple[str, ...]] = {
    "mlp": ("hidden", "recurrent", "readout", "dropout", "weight_gain", "output"),
    "seqimage": ("conv_channels", "kernel_size", "hidden", "readout", "dropout", "weight_gain"),
    "sequence": ("d_model", "depth", "bidirectional", "dropout"),
    **VISION_OPTIONS,
}


# What build_model hands every builder; a user builder receives those of them it names (or all with **kwargs).
BUILDER_ARGUMENTS = ("num_inputs", "num_classes", "kind", "neuron_kw", "time_steps", "input_shape")
_BUILTIN_ARCHS = frozenset(ARCH_OPTIONS)
_USER_ARCHS: dict[str, Callable[..., nn.Module]] = {}


def register_architecture(name: str, builder: Callable[..., nn.Module], options: tuple[str, ...] | None = None,
                          *, overwrite: bool = False) -> None:
    """Make ``builder`` available as ``model.arch: name``.

    ``builder`` is called with keywords: those of ``num_inputs, num_classes, kind, neuron_kw, time_steps,
    input_shape`` that it takes (``kind`` is the config's ``model.kind``, ``neuron_kw`` its registry defaults
    merged with ``model.neuron``; ``input_shape`` is ``(C, H, W)`` for image data, else None), plus the
    architecture's own options from the config's ``model`` section. ``options``: their names; default: the
    builder's other keyword parameters. It must return an ``nn.Module`` mapping ``x [T, B, ...]`` to logits
    ``[B, num_classes]``.
    """
    check_registration("register_architecture", name, "architecture", builtin=_BUILTIN_ARCHS,
                       registered=_USER_ARCHS, overwrite=overwrite)
    if not callable(builder):
        raise TypeError(f"register_architecture: builder must be callable, got {type(builder).__name__}")
    params = inspect.signature(builder).parameters
    if options is None:
        options = tuple(k for k, p in params.items() if k not in BUILDER_ARGUMENTS
                        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    options = tuple(options)
    reserved = sorted(set(options) & (set(BUILDER_ARGUMENTS) | {"arch", "neuron"}))
    if reserved or not all(isinstance(o, str) and o.isidentifier() for o in options):
        raise ValueError(f"register_architecture: options must be identifiers other than arch, kind, neuron and "
                         f"{', '.join(BUILDER_ARGUMENTS)}; got {list(options)}")
    _USER_ARCHS[name] = builder
    ARCH_OPTIONS[name] = options


def unregister_architecture(name: str) -> None:
    """Remove an architecture added by :func:`register_architecture` (no error if it is not registered)."""
    if _USER_ARCHS.pop(name, None) is not None:
        ARCH_OPTIONS.pop(name, None)


def user_architectures() -> list[str]:
    """Names added by :func:`register_architecture`."""
    return list(_USER_ARCHS)


def _build_user(arch: str, cfg: dict, common: dict, info) -> nn.Module:
    builder = _USER_ARCHS[arch]
    params = inspect.signature(builder).parameters
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    given = {**common, "input_shape": getattr(info, "input_shape", None)}
    model = builder(**{k: v for k, v in given.items() if takes_all or k in params}, **cfg)
    if not isinstance(model, nn.Module):
        raise TypeError(f"architecture {arch!r}: the builder returned {type(model).__name__}, not an nn.Module")
    return model


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
    if arch in _USER_ARCHS:
        return _build_user(arch, cfg, common, info)
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
