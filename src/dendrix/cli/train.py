"""``dendrix train --config X [key=value ...] [--out DIR [--overwrite]] [--resume DIR [--allow-config-change]]``.

Launch with ``torchrun --nproc_per_node=2 -m dendrix train ...`` for data-parallel training (DDP).
``--out`` at a folder that already holds a run is refused unless ``--overwrite``; a folder another process
trains into is refused (lock file). SIGTERM is handled like Ctrl-C: the last finished epoch stays saved and the
resume command is printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..files import read_json_mapping
from . import UserError, interrupt_exit_code, interrupt_name, sigterm_as_interrupt


def add_arguments(parser) -> None:
    parser.add_argument("--config", "-c", help="YAML config file, or the name of a packaged config "
                        "(fsdd_mlp, shd_mlp, smnist_seqimage, demo); default: built-in defaults (FSDD, LIF MLP)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides with dotted keys, e.g. train.lr=1e-3 model.kind=alif")
    parser.add_argument("--out", "-o", help="run folder (default: runs/NAME-KIND-TIMESTAMP)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in --out (its checkpoints, weights, metrics, reports)")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="with --resume: apply edited optimisation keys of RUN_DIR/config.json (train.lr, "
                             "train.epochs, ...; see docs/training.md) instead of refusing them")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar or epoch lines")


def _load_resume_config(run_dir: Path) -> dict:
    from ..train.checkpoint import checkpoint_folders

    path = run_dir / "config.json"
    if not run_dir.is_dir() or not path.is_file():
        raise UserError(f"{run_dir} is not a run folder to resume (no config.json)")
    if not checkpoint_folders(run_dir):
        raise UserError(f"{run_dir} has no checkpoint yet (no epoch finished); start it again instead")
    return read_json_mapping(path, UserError, "restore it to resume")


def main(args) -> int:
    with sigterm_as_interrupt():
        return _main(args)


def _main(args) -> int:
    from ..train.checkpoint import CheckpointError
    from ..train.config import ConfigError, resolve_config
    from ..train.distributed import setup, teardown
    from ..train.runfolder import RunFolderError
    from ..train.trainer import Trainer, TrainingDiverged, default_run_dir

    if args.resume:
        if args.config or args.overrides or args.out or args.overwrite:
            raise UserError("--resume continues a run with its saved config; do not combine it with "
                            "--config, --out, --overwrite or key=value overrides (edit RUN_DIR/config.json and "
                            "add --allow-config-change instead)")
    elif args.allow_config_change:
        raise UserError("--allow-config-change only applies to --resume")
    if args.overwrite and not args.out:
        raise UserError("--overwrite needs --out RUN_DIR (the run to replace)")
    if args.resume:
        run_dir = Path(args.resume)
        source = _load_resume_config(run_dir)
    else:
        run_dir = Path(args.out) if args.out else None
        source = args.config
    try:
        cfg = resolve_config(source, list(args.overrides) if not args.resume else None)
    except ConfigError as err:
        raise UserError(str(err)) from None
    if args.quiet:
        cfg["train"]["progress"] = False
    try:
        ctx = setup(cfg["device"])
    except (RuntimeError, ValueError) as err:
        raise UserError(str(err)) from None
    trainer = None
    try:
        if run_dir is None:
            run_dir = default_run_dir(cfg)
            if ctx.distributed:
                import torch.distributed as dist

                shared = [str(run_dir)]
                dist.broadcast_object_list(shared, src=0)
                run_dir = Path(shared[0])
        try:
            trainer = Trainer(cfg, run_dir, resume=bool(args.resume), ctx=ctx, overwrite=args.overwrite,
                              allow_config_change=args.allow_config_change)  # epoch lines: logging
        except (RunFolderError, CheckpointError) as err:
            raise UserError(str(err)) from None
        except (ValueError, TypeError, FileNotFoundError, KeyError) as err:
            raise UserError(f"cannot set up the run: {err}") from None
        if ctx.is_main and not args.quiet:
            what = f"resuming {run_dir} at epoch {trainer.epoch}" if args.resume else f"training into {run_dir}"
            print(f"{what}: {cfg['data']['name']} / {cfg['model']['arch']} / {cfg['model']['kind']}, "
                  f"{trainer.params:,} parameters, {ctx.world_size} process(es) on {ctx.device}")
        try:
            result = trainer.fit()
        except RunFolderError as err:
            raise UserError(str(err)) from None
        if ctx.is_main:
            print(f"test accuracy {100 * result['test_accuracy']:.2f}% (best val epoch {result['best_epoch']}), "
                  f"spike rate {result['spike_rate']:.4f}, {result['sec_per_epoch']:.1f} s/epoch -> {run_dir}")
        return 0
    except TrainingDiverged as err:
        if ctx.is_main:
            print(f"dendrix train: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        if ctx.is_main and trainer is not None:
            print(f"dendrix train: {interrupt_name(err)} during epoch {trainer.epoch + 1}; the last finished epoch "
                  f"is saved. Resume with: dendrix train --resume {run_dir}", file=sys.stderr)
            return interrupt_exit_code(err)
        raise
    finally:
        teardown(ctx)
