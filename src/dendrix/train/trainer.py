"""The trainer: one run = one config -> one run folder (see :mod:`dendrix.train.checkpoint` for its layout).

* Optimiser AdamW or SGD (momentum), three parameter groups: synaptic weights (weight decay), biases and
  normalisation parameters (no decay), and **neuron parameters** with their own learning rate
  ``train.neuron_lr`` and weight decay ``train.neuron_weight_decay`` (see :func:`neuron_parameters`).
* Learning rate: linear warm-up for ``warmup_epochs``, then cosine decay to ``min_lr_ratio`` x peak, per batch.
* Seeds: ``seed`` fixes the initial weights, the shuffling (a function of seed and epoch) and dropout;
  ``deterministic: true`` also asks PyTorch for deterministic kernels.
* Every epoch: train, evaluate on the validation split, append a row to ``metrics.csv``, keep the best
  validation weights in ``best.safetensors``, write a checkpoint. ``resume=True`` continues from the newest
  checkpoint exactly (weights, optimiser, scheduler, RNG states, epoch counter, history).
* Every step checks the loss, every gradient and every parameter: a non-finite value stops the run with
  :class:`TrainingDiverged` naming the epoch, batch and tensor (``train.nan_policy: skip`` drops steps with a
  non-finite loss or gradient instead). Checkpoints are only written from finite weights, so the newest one on
  disk is the last good epoch. Ctrl-C (KeyboardInterrupt) leaves the last finished epoch's checkpoint.
* The run folder is locked while training (:class:`~dendrix.train.runfolder.RunLock`); a folder that already
  holds a run is refused unless ``overwrite`` or ``resume``. Resuming with a config that differs from the
  checkpoint's is refused with the changed keys (see :data:`RESUME_TUNABLE_KEYS`).
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .._optional import require
from ..contract import Neuron
from ..models import build_model, count_parameters, per_step_loss
from ..recording import record
from .batches import Batches, open_dataset
from .checkpoint import (CheckpointError, intact_checkpoint, latest_checkpoint, load_weights, save_checkpoint,
                         save_weights, write_csv, write_json)
from .config import resolve_config
from .distributed import DistContext, setup, teardown
from .guards import (RESUME_OPERATIONAL_KEYS, RESUME_TUNABLE_KEYS, ResumeConfigError, config_changes,
                     first_nonfinite as _first_nonfinite, jsonable as _jsonable)
from .runfolder import RunFolderError, RunLock, check_run_name, clear_run_folder, is_run_folder
from .seeding import rng_state as _rng_state, seed_everything
from .seeding import set_rng_state as _set_rng_state, set_threads as _set_threads

__all__ = ["Trainer", "TrainingDiverged", "ResumeConfigError", "RESUME_OPERATIONAL_KEYS", "RESUME_TUNABLE_KEYS",
           "config_changes", "neuron_parameters", "parameter_groups", "evaluate", "spike_rate",
           "seed_everything", "default_run_dir", "train"]


_logger = logging.getLogger(__name__)


def _log_info(text: str) -> None:
    _logger.info(text)


class TrainingDiverged(RuntimeError):
    """A loss, gradient or parameter became NaN/inf; the message says where, and which checkpoint is kept."""


# -- parameters -----------------------------------------------------------------------------------------------

def neuron_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The parameters of the neuron dynamics (time constants, thresholds, resonance frequencies, gates...).

    Rule: a parameter owned *directly* by a :class:`~dendrix.contract.Neuron` module (not by a child
    ``nn.Linear``/``nn.Conv``) that is a scalar or a vector (``ndim <= 1``) and is not named ``bias``. Matrices
    owned by a neuron layer (DLIF/DGN synaptic ``weight``, DGN ``conductance``, PSN's T x T weights) are
    synaptic and stay in the weight group. A Neuron class may override the rule by listing names in a class
    attribute ``neuron_parameter_names``.
    """
    found, seen = [], set()
    for mod_name, mod in model.named_modules():
        if not isinstance(mod, Neuron):
            continue
        explicit = getattr(mod, "neuron_parameter_names", None)
        for p_name, p in mod.named_parameters(recurse=False):
            take = p_name in explicit if explicit is not None else (p.dim() <= 1 and p_name != "bias")
            if take and id(p) not in seen and p.requires_grad:
                seen.add(id(p))
                found.append((f"{mod_name}.{p_name}" if mod_name else p_name, p))
    return found


def parameter_groups(model: nn.Module, train_cfg: dict) -> list[dict]:
    """Optimizer parameter groups of ``model``: ``weights`` (ndim >= 2, ``weight_decay``), ``other`` (no decay) and
    ``neuron`` (:func:`neuron_parameters`, with ``neuron_lr`` and ``neuron_weight_decay`` of ``train_cfg``)."""
    neuron_ids = {id(p) for _, p in neuron_parameters(model)}
    weights, other, neuron = [], [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if id(p) in neuron_ids:
            neuron.append(p)
        elif p.dim() >= 2:
            weights.append(p)
        else:
            other.append(p)
    lr = float(train_cfg["lr"])
    neuron_lr = lr if train_cfg.get("neuron_lr") is None else float(train_cfg["neuron_lr"])
    groups = [
        {"name": "weights", "params": weights, "lr": lr, "weight_decay": float(train_cfg["weight_decay"])},
        {"name": "other", "params": other, "lr": lr, "weight_decay": 0.0},
        {"name": "neuron", "params": neuron, "lr": neuron_lr,
         "weight_decay": float(train_cfg["neuron_weight_decay"])},
    ]
    return [g for g in groups if g["params"]]


def make_optimizer(model: nn.Module, train_cfg: dict) -> torch.optim.Optimizer:
    groups = parameter_groups(model, train_cfg)
    if train_cfg["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=float(train_cfg["lr"]), momentum=float(train_cfg["momentum"]))
    return torch.optim.AdamW(groups, lr=float(train_cfg["lr"]))


def make_scheduler(optimizer: torch.optim.Optimizer, train_cfg: dict, steps_per_epoch: int):
    total = max(1, int(train_cfg["epochs"]) * steps_per_epoch)
    warmup = int(round(float(train_cfg["warmup_epochs"]) * steps_per_epoch))
    floor = float(train_cfg["min_lr_ratio"])
    cosine = train_cfg["schedule"] == "cosine"

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if not cosine:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# -- evaluation -----------------------------------------------------------------------------------------------

def _forward_loss(model: nn.Module, base: nn.Module, x, y, label_smoothing: float):
    if getattr(base, "per_step_loss", False):
        out = model(x, per_step=True)
        return per_step_loss(out, y, label_smoothing), out.mean(0)
    logits = model(x)
    return F.cross_entropy(logits, y, label_smoothing=label_smoothing), logits


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches, ctx: DistContext | None = None) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` over a split (summed over processes when distributed)."""
    ctx = ctx or DistContext()
    was_training = model.training
    model.eval()
    loss_sum = correct = count = 0.0
    for x, y in batches.iterate(rank=ctx.rank, world=ctx.world_size, pad=False):
        loss, logits = _forward_loss(model, model, x, y, 0.0)
        loss_sum += float(loss) * len(y)
        correct += float((logits.argmax(-1) == y).sum())
        count += len(y)
    loss_sum, correct, count = ctx.all_sum([loss_sum, correct, count])
    model.train(was_training)
    return {"loss": loss_sum / max(count, 1), "accuracy": correct / max(count, 1)}


@torch.no_grad()
def spike_rate(model: nn.Module, batches: Batches, max_batches: int | None = None) -> float:
    """Mean number of spikes per neuron and time step over all spiking layers (``dendrix.record``)."""
    was_training = model.training
    model.eval()
    total = elements = 0.0
    with record(model, to_cpu=False, states=False) as rec:
        for i, (x, _) in enumerate(batches.iterate()):
            if max_batches is not None and i >= max_batches:
                break
            model(x)
            for calls in rec.calls.values():
                for call in calls:
                    if "spikes" in call:
                        s = call["spikes"]
                        total += float(s.abs().sum())
                        elements += s.numel()
            rec.clear()
    model.train(was_training)
    return total / elements if elements else float("nan")


def default_run_dir(cfg: dict) -> Path:
    """``runs/NAME-KIND-TIMESTAMP`` for a config without an explicit run folder (names checked: no separators)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = check_run_name(cfg.get("name") or cfg["data"]["name"], "the run name (config name or data.name)")
    kind = check_run_name(cfg["model"]["kind"], "model.kind")
    return Path("runs") / f"{name}-{kind}-{stamp}"


# -- the trainer ----------------------------------------------------------------------------------------------

class Trainer:
    """Train one model described by a resolved config, writing everything into ``run_dir``.

    Args:
        config: a config dict (resolved with :func:`dendrix.train.config.resolve_config` if it is not yet).
        run_dir: the run folder (created).
        resume: continue from the newest checkpoint in ``run_dir``.
        ctx: distributed context (default: one process on ``config["device"]``).
        log: a function taking one-line epoch summaries (rank 0 only); default: INFO records of the
            ``dendrix.train.trainer`` logger; None silences them.
        overwrite: replace the run already in ``run_dir`` (its checkpoints, weights, metrics and reports are
            deleted when :meth:`fit` starts); without it such a folder is refused.
        allow_config_change: on resume, apply edited :data:`RESUME_TUNABLE_KEYS` instead of refusing them.
    """

    def __init__(self, config: dict, run_dir: str | Path, *, resume: bool = False, ctx: DistContext | None = None,
                 log: Callable[[str], None] | None = _log_info, overwrite: bool = False,
                 allow_config_change: bool = False):
        self.cfg = config
        self.run_dir = Path(run_dir)
        self.ctx = ctx or setup(config["device"])
        self.log = log if self.ctx.is_main else None
        self.resume = resume
        self.overwrite = overwrite and not resume
        self.allow_config_change = allow_config_change
        self._lock = RunLock(self.run_dir)
        if self.ctx.is_main:  # fail before any work: the folder is busy, or holds a run nobody asked to replace
            RunLock.check_free(self.run_dir)
            self._check_folder_free()
        tcfg = config["train"]
        _set_threads(config.get("threads"), self.ctx)
        seed_everything(config["seed"], config["deterministic"])
        dev = self.ctx.device
        train_set = open_dataset(config["data"], "train", seed=config["seed"])
        self.info = train_set.info
        torch.manual_seed(config["seed"])  # identical initial weights whatever the data loading consumed
        self.model = build_model(config["model"], self.info).to(dev)  # before stacking data: fail fast
        self.train_data = Batches.from_config(train_set, config["data"], dev, config["data"]["batch_size"],
                                              train=True)
        self.val_data = None
        if tcfg["select"] == "val":
            self.val_data = Batches.from_config(open_dataset(config["data"], "val", seed=config["seed"]),
                                                config["data"], dev)
        self._test_data: Batches | None = None
        self.params = count_parameters(self.model)
        torch.manual_seed(config["seed"] + 7919 * (self.ctx.rank + 1))  # dropout streams differ per process
        self.net: nn.Module = self.model
        if self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [dev.index] if dev.type == "cuda" else None
            self.net = DDP(self.model, device_ids=ids)
        if tcfg["compile"] is not False:  # the training forward only; checkpoints and evaluation use self.model
            mode = None if tcfg["compile"] in (True, "default") else tcfg["compile"]
            self.net = torch.compile(self.net, mode=mode)
        self.optimizer = make_optimizer(self.model, tcfg)
        self.steps_per_epoch = self.train_data.num_batches(self.ctx.world_size)
        self.scheduler = make_scheduler(self.optimizer, tcfg, self.steps_per_epoch)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"epoch": None, "val_accuracy": -1.0}
        self._writer = None
        if resume:
            self._load_checkpoint()

    # -- state ------------------------------------------------------------------------------------------------
    def _check_folder_free(self) -> None:
        if self.resume or self.overwrite or getattr(self, "_started", False):
            return  # resuming, replacing, or a second fit() of this trainer continuing its own run
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise RunFolderError(f"run folder {self.run_dir} is a file")
        if is_run_folder(self.run_dir):
            raise RunFolderError(f"{self.run_dir} already holds a run; continue it with --resume {self.run_dir} "
                                 "or replace it with --overwrite")

    def _trainer_state(self) -> dict:
        rng = _rng_state()
        if self.ctx.distributed:
            import torch.distributed as dist

            gathered: list[Any] = [None] * self.ctx.world_size
            dist.all_gather_object(gathered, rng)
            rng = gathered
        else:
            rng = [rng]
        return {"epoch": self.epoch, "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "history": self.history, "best": self.best,
                "rng": rng, "world_size": self.ctx.world_size, "config": _jsonable(self.cfg)}

    def _load_checkpoint(self) -> None:
        found = intact_checkpoint(self.run_dir, warn=_logger.warning if self.ctx.is_main else (lambda _: None))
        if found is None:
            raise FileNotFoundError(f"no intact checkpoint to resume in {self.run_dir} (expected "
                                    "checkpoints/epoch-NNNN/ with state.json)")
        epoch, folder, weights, state = found
        self._check_resume_config(state.get("config"))
        try:
            self.model.load_state_dict({k: v.to(self.ctx.device) for k, v in weights.items()})
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.epoch, self.history, self.best = int(state["epoch"]), list(state["history"]), dict(state["best"])
            rng = state["rng"]
            _set_rng_state(rng[self.ctx.rank] if self.ctx.rank < len(rng) else rng[0])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
            detail = " ".join(str(err).split())[:200]
            raise CheckpointError(f"checkpoint {folder} does not fit this run ({type(err).__name__}: {detail})"
                                  ) from None
        if epoch != self.epoch:
            raise CheckpointError(f"checkpoint {folder} says epoch {self.epoch}, its folder name epoch {epoch}")
        self._apply_tunable()

    def _check_resume_config(self, saved: dict | None) -> None:
        if saved is None:
            return
        changes = config_changes(saved, self.cfg)
        fixed = [c for c in changes if c[0] not in RESUME_OPERATIONAL_KEYS | RESUME_TUNABLE_KEYS]
        tunable = [c for c in changes if c[0] in RESUME_TUNABLE_KEYS]

        def listing(items):
            return ", ".join(f"{k} ({a!r} -> {b!r})" for k, a, b in items)
        if fixed:
            raise ResumeConfigError(f"cannot resume {self.run_dir}: its config changed in {listing(fixed)}, which "
                                    "the checkpoint cannot follow; start a new run")
        if tunable and not self.allow_config_change:
            raise ResumeConfigError(f"the config of {self.run_dir} changed since its checkpoint: {listing(tunable)}; "
                                    "resume with --allow-config-change to apply it, or undo the edit")
        self._changed = [k for k, _, _ in tunable]
        if tunable and self.log:
            self.log(f"resuming with the changed config: {listing(tunable)}")

    def _apply_tunable(self) -> None:
        """After loading the optimiser: learning rates, decays and momentum of the (edited) config."""
        if not getattr(self, "_changed", None):
            return
        tcfg = self.cfg["train"]
        fresh = {g["name"]: g for g in parameter_groups(self.model, tcfg)}
        for i, group in enumerate(self.optimizer.param_groups):
            new = fresh[group["name"]]
            group["initial_lr"] = new["lr"]
            group["weight_decay"] = new["weight_decay"]
            if "momentum" in group:
                group["momentum"] = float(tcfg["momentum"])
            self.scheduler.base_lrs[i] = new["lr"]
        self.scheduler.lr_lambdas = make_scheduler(self.optimizer, tcfg, self.steps_per_epoch).lr_lambdas
        for i, group in enumerate(self.optimizer.param_groups):
            group["lr"] = self.scheduler.base_lrs[i] * self.scheduler.lr_lambdas[i](self.scheduler.last_epoch)

    def _save(self) -> None:
        # never checkpoint non-finite weights (buffers included): the newest checkpoint must stay a good one
        bad = _first_nonfinite(list(self.model.state_dict().items()))
        if bad is not None:
            self._diverged(self.steps_per_epoch - 1, math.nan, what=f"model tensor {bad}", epoch_done=True)
        state = self._trainer_state()  # collective in DDP: every rank calls it
        if self.ctx.is_main:
            save_checkpoint(self.run_dir, self.epoch, self.model, state,
                            keep=int(self.cfg["train"].get("keep_checkpoints", 2)))
            write_csv(self.run_dir / "metrics.csv", self.history)
        self.ctx.barrier()

    def _write_run_files(self) -> None:
        if not self.ctx.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.run_dir / "config.json", self.cfg)
        info = self.info
        fields = getattr(info, "_asdict", None)
        info_dict = fields() if fields else {k: getattr(info, k) for k in
                                              ("name", "num_inputs", "num_classes", "time_steps", "input_kind")}
        write_json(self.run_dir / "info.json", info_dict)

    # -- training ---------------------------------------------------------------------------------------------
    def _train_epoch(self) -> dict[str, float]:
        tqdm = require("tqdm.auto", needed_by="dendrix.train (progress bars)").tqdm

        tcfg = self.cfg["train"]
        self.net.train()
        smoothing, clip = float(tcfg["label_smoothing"]), float(tcfg["grad_clip"])
        bf16 = tcfg["precision"] == "bf16"
        skip = tcfg.get("nan_policy", "stop") == "skip"
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        loss_sum = correct = count = 0.0
        skipped = 0
        bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {self.epoch + 1}/{tcfg['epochs']}", leave=False,
                   disable=not (tcfg["progress"] and self.ctx.is_main), dynamic_ncols=True, mininterval=0.5)
        batches = self.train_data.iterate(shuffle=True, seed=self.cfg["seed"], epoch=self.epoch,
                                          rank=self.ctx.rank, world=self.ctx.world_size)
        try:
            for i, (x, y) in enumerate(batches):
                try:
                    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
                        loss, logits = _forward_loss(self.net, self.model, x, y, smoothing)
                except torch.linalg.LinAlgError as err:  # e.g. an eigendecomposition of diverged dynamics
                    first = (str(err).splitlines() or [""])[0][:120]
                    self._diverged(i, math.nan, what=f"the forward pass ({first})")
                value = loss.detach().item()
                bad = not math.isfinite(value)
                if self.ctx.distributed:
                    bad = self.ctx.all_sum([float(bad)])[0] > 0
                self.optimizer.zero_grad(set_to_none=True)
                if bad:
                    if not skip:
                        self._diverged(i, value)
                    skipped += self._skip(i, "loss", value)
                    continue
                loss.backward()
                bad_grad = _first_nonfinite([(n, p.grad) for n, p in named])
                if bad_grad is None and clip > 0:
                    norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
                    if not torch.isfinite(norm):
                        bad_grad = "the gradient norm"
                if bad_grad is not None:
                    what = f"gradient of {bad_grad}" if bad_grad != "the gradient norm" else "gradient norm"
                    if not skip:
                        self._diverged(i, math.nan, what=what)
                    self.optimizer.zero_grad(set_to_none=True)
                    skipped += self._skip(i, what, math.nan)
                    continue
                self.optimizer.step()
                bad_param = _first_nonfinite(named)
                if bad_param is not None:  # cannot be undone by skipping: always stop
                    self._diverged(i, math.nan, what=f"parameter {bad_param}")
                self.scheduler.step()
                n = len(y)
                loss_sum += value * n
                hard = y.argmax(-1) if y.dim() == 2 else y  # mixup targets: the dominant class
                correct += float((logits.detach().argmax(-1) == hard).sum())
                count += n
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / count:.3f}", acc=f"{correct / count:.3f}", refresh=False)
        finally:
            bar.close()
        loss_sum, correct, count = self.ctx.all_sum([loss_sum, correct, count])
        metrics = {"loss": loss_sum / max(count, 1), "accuracy": correct / max(count, 1)}
        if skip:
            metrics["skipped_steps"] = skipped
        return metrics

    def _skip(self, batch: int, what: str, value: float) -> int:
        """``train.nan_policy: skip``: the step is dropped (no update), the schedule moves on."""
        self.scheduler.step()
        _logger.warning("skipped a step: %s became %s at epoch %d, batch %d (train.nan_policy: skip)",
                        what, value, self.epoch + 1, batch + 1)
        return 1

    def _diverged(self, batch: int, value: float, what: str = "loss", epoch_done: bool = False) -> None:
        last = latest_checkpoint(self.run_dir)
        kept = (f"the last good checkpoint (epoch {last[0]}) is kept in {self.run_dir}" if last
                else "no epoch finished, so there is no checkpoint")
        shown = "nan/inf" if what != "loss" and math.isnan(value) else value
        raise TrainingDiverged(f"{what} became {shown} at epoch {self.epoch + (0 if epoch_done else 1)}, batch "
                               f"{batch + 1} (step {self.scheduler.last_epoch + 1} of the run); training stopped "
                               f"({kept}); try a lower train.lr or train.grad_clip")

    def _tensorboard(self):
        if self._writer is None and self.cfg["train"]["tensorboard"] and self.ctx.is_main:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise RuntimeError("train.tensorboard=true needs the tensorboard package "
                                   "(pip install 'dendrix[tensorboard]')") from err
            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        return self._writer

    def fit(self, on_epoch: Callable[[dict], None] | None = None, stop_after: int | None = None) -> dict[str, Any] | None:
        """Train the remaining epochs, then test the selected weights. Returns the result (also result.json).

        ``stop_after=N`` stops once N epochs are finished and returns None without testing (the run is left
        exactly as an interruption would leave it, ready for ``resume``).
        """
        if not self.ctx.is_main:
            return self._fit(on_epoch, stop_after)
        with self._lock:
            self._check_folder_free()  # again under the lock: another run may have finished in between
            if self.overwrite and not getattr(self, "_started", False):
                clear_run_folder(self.run_dir)
            self._started = True
            return self._fit(on_epoch, stop_after)

    def _fit(self, on_epoch, stop_after) -> dict[str, Any] | None:
        self._write_run_files()
        epochs = int(self.cfg["train"]["epochs"])
        while self.epoch < epochs:
            if stop_after is not None and self.epoch >= stop_after:
                return None
            start = time.perf_counter()
            train_metrics = self._train_epoch()
            seconds = time.perf_counter() - start
            row: dict[str, Any] = {"epoch": self.epoch + 1, "train_loss": train_metrics["loss"],
                                   "train_accuracy": train_metrics["accuracy"],
                                   "lr": self.optimizer.param_groups[0]["lr"], "seconds": seconds}
            if "skipped_steps" in train_metrics:
                row["skipped_steps"] = train_metrics["skipped_steps"]
            if self.val_data is not None:
                val = evaluate(self.model, self.val_data, self.ctx)
                row.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
                if val["accuracy"] > self.best["val_accuracy"]:
                    self.best = {"epoch": self.epoch + 1, "val_accuracy": val["accuracy"]}
                    if self.ctx.is_main:
                        save_weights(self.run_dir / "best.safetensors", self.model, self.best)
            self.epoch += 1
            self.history.append(row)
            self._save()
            writer = self._tensorboard()
            if writer is not None:
                for k, v in row.items():
                    if k != "epoch":
                        writer.add_scalar(k, v, row["epoch"])
            if self.log:
                val_txt = f" val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.4f}" if "val_loss" in row else ""
                self.log(f"epoch {row['epoch']}/{epochs} loss {row['train_loss']:.4f} "
                         f"acc {row['train_accuracy']:.4f}{val_txt} ({seconds:.1f} s)")
            if on_epoch is not None:
                on_epoch(row)
        return self.finish()

    @property
    def test_data(self) -> Batches:
        if self._test_data is None:
            self._test_data = Batches(open_dataset(self.cfg["data"], "test", seed=self.cfg["seed"]),
                                      self.cfg["data"]["eval_batch_size"], self.ctx.device,
                                      self.cfg["data"]["in_memory"])
        return self._test_data

    def finish(self) -> dict[str, Any]:
        """Load the selected weights, measure test accuracy and spike rate, write result.json."""
        best_path = self.run_dir / "best.safetensors"
        if self.val_data is not None and best_path.exists():
            load_weights(best_path, self.model, self.ctx.device)
        test = evaluate(self.model, self.test_data, self.ctx)
        rate = spike_rate(self.model, self.test_data) if self.ctx.is_main else float("nan")
        secs = [r["seconds"] for r in self.history]
        result = {
            "neuron": self.cfg["model"]["kind"], "test_accuracy": test["accuracy"], "test_loss": test["loss"],
            "params": self.params, "spike_rate": rate,
            "sec_per_epoch": sum(secs) / len(secs) if secs else float("nan"),
            "best_epoch": self.best["epoch"], "val_accuracy": self.best["val_accuracy"]
            if self.best["epoch"] is not None else None,
            "epochs": self.epoch, "world_size": self.ctx.world_size, "run_dir": str(self.run_dir),
        }
        if self.ctx.is_main:
            write_json(self.run_dir / "result.json", result)
        if self._writer is not None:
            self._writer.close()
        self.ctx.barrier()
        return result


def train(config: dict | str | Path, run_dir: str | Path | None = None, overrides: list[str] | None = None, *,
          resume: bool = False, log: Callable[[str], None] | None = _log_info, overwrite: bool = False,
          allow_config_change: bool = False) -> dict[str, Any]:
    """Train from a config (path, packaged name or dict) and return the result dict (see ``Trainer.finish``).

    Launched by torchrun, this runs data-parallel and ends the process group when done.
    """
    cfg = resolve_config(config, overrides)
    ctx = setup(cfg["device"])
    try:
        run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
        if ctx.distributed:  # every process must use rank 0's folder (time stamps may differ)
            import torch.distributed as dist

            shared = [str(run_dir)]
            dist.broadcast_object_list(shared, src=0)
            run_dir = Path(shared[0])
        return Trainer(cfg, run_dir, resume=resume, ctx=ctx, log=log, overwrite=overwrite,
                       allow_config_change=allow_config_change).fit()
    finally:
        teardown(ctx)
