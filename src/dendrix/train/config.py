"""Run configuration: a YAML file plus ``key=value`` overrides, merged over defaults and validated.

A config has four sections (all optional; see ``DEFAULTS``)::

    seed: 0
    device: auto            # auto | cpu | cuda | cuda:N
    deterministic: true
    data:  {name: fsdd, root: null, batch_size: 64, eval_batch_size: 256, options: {}, split: official,
            augment: {}, num_workers: 0, pin_memory: false}
    model: {arch: mlp, kind: lif, hidden: [128], readout: mean, neuron: {}}
    train: {epochs: 10, optimizer: adamw, lr: 0.002, neuron_lr: null, ...}

``plugins: [mypkg.dendrix_plugin]`` names modules imported before anything else is read, so data sets and
architectures they register (``dendrix.data.register_dataset``, ``dendrix.models.register_architecture``) can be
named in ``data.name`` / ``model.arch``. ``paper:`` is free text naming what a config reproduces.

A config may also hold ``per_kind: {KIND: {section: {...}}}``: settings applied on top of the file when
``model.kind`` is KIND (e.g. a learning rate or neuron keywords that suit that neuron); compare and demo use it.

Overrides use dotted keys and YAML values: ``train.lr=1e-3 model.hidden=[256,128] model.neuron.tau=4``.
Every problem raises :class:`ConfigError` with one line naming the key, the value and what is allowed.
Free-form dictionaries (``data.options``, ``model.neuron``) are passed to the data set / neuron constructors,
which validate them when the run is built.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import json
import math
import re
from pathlib import Path
from typing import Any

from .._optional import require
from .runfolder import RunFolderError, check_run_name

yaml = require("yaml", needed_by="dendrix.train (YAML configs)")

MAX_CONFIG_BYTES = 1 << 20   # a config is a few hundred bytes; anything this large is not one
MAX_CONFIG_VALUES = 10_000   # guards against YAML alias expansion ("billion laughs") in a small file


class _Loader(yaml.SafeLoader):
    """Safe YAML that also reads ``1e-3`` / ``5E4`` as numbers (YAML 1.1 wants a dot: ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def yaml_value(text: str) -> Any:
    """Parse one YAML value (or document) with the config loader; raises ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader

__all__ = ["ConfigError", "DEFAULTS", "import_plugins", "load_config", "parse_overrides", "apply_overrides",
           "validate_config",
           "resolve_config", "deep_merge", "packaged_config", "packaged_configs"]


class ConfigError(ValueError):
    """A bad config key or value (one line, no traceback in the CLI)."""


DEFAULTS: dict[str, Any] = {
    "name": None,             # a label for reports (defaults to the config file name)
    "seed": 0,
    "device": "auto",
    "deterministic": True,
    "threads": None,          # CPU threads of this process (torch.set_num_threads); null = PyTorch's choice
    "paper": None,            # free text: the paper, table and setup a config reproduces
    "plugins": [],            # modules to import first (they register user data sets / architectures)
    "data": {
        "name": "fsdd",
        "root": None,
        "batch_size": 64,
        "eval_batch_size": 256,
        "options": {},        # extra keywords for dendrix.data.get_dataset (e.g. split_mode: speaker)
        "in_memory": "auto",  # keep a split as one tensor on the device: auto | true | false
        "split": "official",  # official | speaker (FSDD: test on a held-out speaker, data.options.test_speaker)
        "augment": {},        # training-batch augmentation (dendrix.data.augment): time_shift, channel_jitter, ...
        "num_workers": 0,     # DataLoader worker processes for splits not held in memory
        "pin_memory": False,  # DataLoader pinned host memory (faster copies to a GPU)
    },
    "model": {
        "arch": "mlp",
        "kind": "lif",
        "neuron": {},
        "hidden": [128],
        "recurrent": False,
        "readout": "mean",
        "dropout": 0.0,
        "weight_gain": 1.0,
    },
    "train": {
        "epochs": 10,
        "optimizer": "adamw",   # adamw | sgd
        "lr": 2e-3,
        "neuron_lr": None,      # learning rate of neuron parameters (time constants, thresholds...); null = lr
        "weight_decay": 1e-4,
        "neuron_weight_decay": 0.0,
        "momentum": 0.9,        # SGD only
        "schedule": "cosine",   # cosine | constant
        "warmup_epochs": 0,
        "min_lr_ratio": 0.0,    # cosine floor as a fraction of the peak learning rate
        "grad_clip": 1.0,       # max gradient norm; 0 disables
        "label_smoothing": 0.0,
        "progress": True,       # tqdm progress bar
        "tensorboard": False,
        "select": "val",        # split for model selection: val | none (keep the last epoch)
        "compile": False,       # torch.compile the training forward: false | true | a mode ("max-autotune", ...)
        "precision": "fp32",    # fp32 | bf16 (autocast of the forward; neurons integrate in float32)
        "nan_policy": "stop",   # a non-finite loss or gradient: stop (one line) | skip (drop that step)
        "keep_checkpoints": 2,  # newest checkpoints kept in RUN/checkpoints
    },
}

# Architecture-specific model options beyond DEFAULTS["model"] (their defaults live in the model classes).
_EXTRA_MODEL_KEYS = {"conv_channels", "kernel_size", "d_model", "depth", "bidirectional",
                     # the vision networks (dendrix.models.vision.VISION_OPTIONS)
                     "norm", "bilinear_sparsity", "bilinear_stages", "per_channel", "width", "pool", "conv_bias",
                     "block", "channels", "dim", "mlp_ratio", "patch_stages", "bilinear_head",
                     "output"}  # SpikingMLP: linear or spiking output layer
_FREE_FORM = {("data", "options"), ("model", "neuron"), ("data", "augment")}
_PLUGIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")

_CHOICES = {
    ("train", "optimizer"): ("adamw", "sgd"),
    ("train", "schedule"): ("cosine", "constant"),
    ("train", "select"): ("val", "none"),
    ("train", "compile"): (False, True, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
    ("train", "precision"): ("fp32", "bf16"),
    ("model", "readout"): ("mean", "ce_sum", "tet", "max"),
    ("model", "output"): ("linear", "spiking"),
    ("data", "in_memory"): ("auto", True, False),
    ("data", "split"): ("official", "speaker"),
    ("train", "nan_policy"): ("stop", "skip"),
}
_POSITIVE_INT = {("train", "epochs"), ("train", "keep_checkpoints"),
                 ("data", "batch_size"), ("data", "eval_batch_size"), ("model", "kernel_size"),
                 ("model", "d_model"), ("model", "depth")}
_NONNEG_FLOAT = {("train", "weight_decay"), ("train", "neuron_weight_decay"), ("train", "grad_clip"),
                 ("train", "warmup_epochs"), ("train", "momentum")}
_POSITIVE_FLOAT = {("train", "lr"), ("model", "weight_gain")}
_UNIT_FLOAT = {("train", "label_smoothing"), ("train", "min_lr_ratio"), ("model", "dropout")}
_BOOL = {("deterministic",), ("model", "recurrent"), ("train", "progress"), ("train", "tensorboard"),
         ("model", "bidirectional"), ("data", "pin_memory")}


def _extra_model_keys() -> set[str]:
    """Model keys beyond DEFAULTS: the built-in architectures' options and those of registered ones."""
    from ..models import ARCH_OPTIONS

    return _EXTRA_MODEL_KEYS | {k for options in ARCH_OPTIONS.values() for k in options}


def import_plugins(plugins: Any) -> list[str]:
    """Import the modules a config names in ``plugins`` (a list of dotted module names); returns their names.
    Raises :class:`ConfigError` for a bad name or a module that cannot be imported."""
    if plugins is None:
        return []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        _fail("plugins", plugins, "a list of module names (e.g. [mypkg.dendrix_plugin])")
    for name in plugins:
        if not _PLUGIN_NAME.match(name):
            _fail("plugins", name, "a dotted Python module name (letters, digits, _ and dots; no paths or .py)")
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(f"cannot import plugin module {name!r} (config key plugins): {err}; is it installed "
                              f"or on PYTHONPATH?") from None
    return list(plugins)


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"config key {key} must be {allowed}, got {value!r}")


def _is_number(v: Any) -> bool:
    """A finite int or float (not a bool): NaN and infinity make no sense for any numeric config key."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _count_values(data: Any, limit: int = MAX_CONFIG_VALUES) -> int:
    """Number of values in ``data`` counting shared (aliased) parts each time; stops just past ``limit``."""
    count, stack = 0, [data]
    while stack and count <= limit:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
    return count


def _suggest(key: str, options) -> str:
    close = difflib.get_close_matches(key, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(map(str, options)))})"


def _merge(base: dict, update: dict, prefix: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        path = f"{prefix}{key}"
        if key not in out and not (prefix == "model." and key in _extra_model_keys()):
            raise ConfigError(f"unknown config key {path!r}{_suggest(key, out)}")
        if isinstance(out.get(key), dict) and tuple(path.split(".")) not in _FREE_FORM:
            if not isinstance(value, dict):
                raise ConfigError(f"config key {path} must be a mapping, got {value!r}")
            out[key] = _merge(out[key], value, path + ".")
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate_config(cfg: dict) -> dict:
    """Check types and ranges; returns ``cfg``. Raises :class:`ConfigError` (one line)."""
    def get(path):
        node = cfg
        for p in path:
            node = node.get(p) if isinstance(node, dict) else None
        return node

    for path, choices in _CHOICES.items():
        v = get(path)
        if v is not None and v not in choices:
            _fail(".".join(path), v, f"one of {', '.join(map(str, choices))}")
    for path in _POSITIVE_INT:
        v = get(path)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            _fail(".".join(path), v, "a positive integer")
    for path in _NONNEG_FLOAT:
        v = get(path)
        if v is not None and (not _is_number(v) or v < 0):
            _fail(".".join(path), v, "a number >= 0")
    for path in _POSITIVE_FLOAT:
        v = get(path)
        if v is not None and (not _is_number(v) or v <= 0):
            _fail(".".join(path), v, "a number > 0")
    nlr = get(("train", "neuron_lr"))
    if nlr is not None and (not _is_number(nlr) or nlr < 0):
        _fail("train.neuron_lr", nlr, "null or a number >= 0")
    for path in _UNIT_FLOAT:
        v = get(path)
        if v is not None and (not _is_number(v) or not 0 <= v < 1):
            _fail(".".join(path), v, "a number in [0, 1)")
    for path in _BOOL:
        v = get(path)
        if v is not None and not isinstance(v, bool):
            _fail(".".join(path), v, "true or false")
    name = cfg.get("name")
    if name is not None:
        try:
            check_run_name(name, "config key name")
        except RunFolderError as err:
            raise ConfigError(str(err)) from None
    seed = cfg.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        _fail("seed", seed, "an integer >= 0")
    threads = cfg.get("threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        _fail("threads", threads, "null or a positive integer")
    device = cfg.get("device")
    if not isinstance(device, str) or not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
        _fail("device", device, "auto, cpu, cuda or cuda:N")
    for path in (("model", "hidden"), ("model", "conv_channels")):
        v = get(path)
        if v is None:
            continue
        if isinstance(v, int) and not isinstance(v, bool):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in v):
            _fail(".".join(path), get(path), "a list of positive integers")
    for path in _FREE_FORM:
        v = get(path)
        if not isinstance(v, dict):
            _fail(".".join(path), v, "a mapping")
    if not isinstance(get(("data", "name")), str):
        _fail("data.name", get(("data", "name")), "a data set name")
    _check_data_hooks(cfg)
    if not isinstance(get(("model", "kind")), str):
        _fail("model.kind", get(("model", "kind")), "a neuron kind name")
    _check_kind(get(("model", "kind")))
    return cfg


def _check_data_hooks(cfg: dict) -> None:
    from ..data.augment import check_augment
    from ..data.base import DatasetError
    from ..models import ARCH_OPTIONS

    data = cfg.get("data") or {}
    try:
        check_augment(data.get("augment"))
    except DatasetError as err:
        raise ConfigError(str(err)) from None
    workers = data.get("num_workers")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        _fail("data.num_workers", workers, "an integer >= 0")
    paper = cfg.get("paper")
    if paper is not None and not isinstance(paper, str):
        _fail("paper", paper, "null or a text naming the paper, table and setup")
    arch = (cfg.get("model") or {}).get("arch")
    if arch not in ARCH_OPTIONS:
        _fail("model.arch", arch, f"one of {', '.join(ARCH_OPTIONS)} (or an architecture registered with "
              f"dendrix.models.register_architecture by a module in plugins)")


def _check_kind(kind: str) -> None:
    from ..registry import available

    try:
        kinds = available()
    except ImportError as err:  # a neuron module failed to import: say so instead of a traceback
        raise ConfigError(f"cannot list neuron kinds: {err}") from err
    if kind.lower() not in kinds:
        raise ConfigError(f"unknown neuron kind {kind!r} (model.kind); available: {', '.join(kinds)}")


def _model_section_for_arch(cfg: dict) -> dict:
    """Drop the MLP-only defaults an architecture does not take (e.g. ``recurrent`` for ``seqimage``)."""
    from ..models import ARCH_OPTIONS

    model = cfg["model"]
    allowed = set(ARCH_OPTIONS[model["arch"]]) | {"arch", "kind", "neuron"}
    extra = {k for k in model if k not in allowed}
    explicit = cfg.get("_explicit_model_keys", set())
    bad = sorted(extra & explicit)
    if bad:
        raise ConfigError(f"config key model.{bad[0]} is not an option of arch {model['arch']!r} "
                          f"(options: {', '.join(ARCH_OPTIONS[model['arch']])})")
    for k in extra:
        model.pop(k)
    return cfg


def parse_overrides(items: list[str]) -> dict:
    """``["train.lr=1e-3", "model.hidden=[64,64]"]`` -> nested dict; values are parsed as YAML."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. train.lr=0.001)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml_value(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if _count_values(value) > MAX_CONFIG_VALUES:
            raise ConfigError(f"override {key} holds more than {MAX_CONFIG_VALUES} values")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override of {part!r}")
        node[parts[-1]] = value
    return out


def packaged_configs() -> list[str]:
    """Names of the configs shipped in ``dendrix/configs/`` (usable as ``--config NAME``)."""
    folder = Path(__file__).resolve().parent.parent / "configs"
    return sorted(p.stem for p in folder.glob("*.yaml"))


def packaged_config(name: str) -> Path:
    """Path of the packaged config ``name`` (e.g. ``"fsdd_mlp"``) inside ``dendrix/configs``."""
    return Path(__file__).resolve().parent.parent / "configs" / f"{name}.yaml"


def load_config(source: str | Path | dict | None) -> dict:
    """Read a YAML config (a path, or the name of a packaged config such as ``fsdd_mlp``) into a dict."""
    if source is None:
        return {}
    if isinstance(source, dict):
        return copy.deepcopy(source)
    path = Path(source)
    if not path.exists() and not path.suffix and packaged_config(str(source)).exists():
        path = packaged_config(str(source))
    if not path.exists():
        raise ConfigError(f"config file {str(source)!r} not found (packaged configs: {', '.join(packaged_configs())})")
    text = _read_config_text(path)
    try:
        data = yaml_value(text) if path.suffix != ".json" else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError, RecursionError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level, got {type(data).__name__}")
    if _count_values(data) > MAX_CONFIG_VALUES:
        raise ConfigError(f"config file {str(path)!r} expands to more than {MAX_CONFIG_VALUES} values "
                          "(YAML aliases?); write the values out")
    if data.get("name") is None:
        data["name"] = re.sub(r"[^A-Za-z0-9._-]", "_", path.stem).strip("._-")[:100] or "run"
    return data


def _read_config_text(path: Path) -> str:
    """The UTF-8 text of a config file; one-line :class:`ConfigError` for folders, binaries, huge or unreadable
    files."""
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a folder, not a YAML file")
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {str(path)!r} is {size} bytes; a config must be under "
                              f"{MAX_CONFIG_BYTES} bytes")
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read config file {str(path)!r}: {err.strerror or err}") from None
    if b"\0" in raw:
        raise ConfigError(f"config file {str(path)!r} is a binary file, not YAML")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text") from None


def apply_overrides(cfg: dict, overrides: dict) -> dict:
    """``cfg`` with the nested ``overrides`` merged in (a new dict; see :func:`parse_overrides`)."""
    return _merge(cfg, overrides)


def deep_merge(base: dict, update: dict) -> dict:
    """``base`` updated by ``update`` recursively, without validation (validation happens in resolve_config)."""
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_config(source: str | Path | dict | None = None, overrides: list[str] | dict | None = None) -> dict:
    """Defaults <- config file <- overrides, validated. The result is plain JSON-able data."""
    user = load_config(source)
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    import_plugins(user.get("plugins"))
    import_plugins((overrides or {}).get("plugins"))
    per_kind = user.pop("per_kind", None) or {}
    if not isinstance(per_kind, dict):
        raise ConfigError(f"config key per_kind must be a mapping of kind -> settings, got {per_kind!r}")
    kind = ((overrides or {}).get("model") or {}).get("kind") or (user.get("model") or {}).get("kind") \
        or DEFAULTS["model"]["kind"]
    if isinstance(kind, str) and isinstance(per_kind.get(kind.lower()), dict):
        user = deep_merge(user, per_kind[kind.lower()])
    cfg = _merge(DEFAULTS, user)
    if overrides:
        cfg = _merge(cfg, overrides)
    explicit = set((user.get("model") or {}).keys()) | set(((overrides or {}).get("model") or {}).keys())
    cfg["_explicit_model_keys"] = explicit
    validate_config(cfg)
    _model_section_for_arch(cfg)
    cfg.pop("_explicit_model_keys", None)
    if isinstance(cfg["model"].get("hidden"), int):
        cfg["model"]["hidden"] = [cfg["model"]["hidden"]]
    return cfg
