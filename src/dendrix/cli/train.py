"""``dendrix train --config X [key=value ...] [--out DIR] [--resume DIR]``: train one model.

Launch with ``torchrun --nproc_per_node=2 -m dendrix train ...`` for data-parallel training (DDP).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from . import UserError


def add_arguments(parser) -> None:
    parser.add_argument("--config", "-c", help="YAML config file, or the name of a packaged config "
                        "(fsdd_mlp, shd_mlp, smnist_seqimage, demo); default: built-in defaults (FSDD, LIF MLP)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides with dotted keys, e.g. train.lr=1e-3 model.kind=alif")
    parser.add_argument("--out", "-o", help="run folder (default: runs/NAME-KIND-TIMESTAMP)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar or epoch lines")


def _load_resume_config(run_dir: Path) -> dict:
    path = run_dir / "config.json"
    if not path.exists():
        raise UserError(f"{run_dir} is not a run folder to resume (no config.json)")
    if not (run_dir / "checkpoints" / "last.json").exists():
        raise UserError(f"{run_dir} has no checkpoint yet (no epoch finished); start it again instead")
    return json.loads(path.read_text())


def main(args) -> int:
    from ..train.config import ConfigError, resolve_config
    from ..train.distributed import setup, teardown
    from ..train.trainer import Trainer, TrainingDiverged, default_run_dir

    if args.resume:
        if args.config or args.overrides or args.out:
            raise UserError("--resume continues a run with its saved config; do not combine it with "
                            "--config, --out or key=value overrides")
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
    except RuntimeError as err:
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
            trainer = Trainer(cfg, run_dir, resume=bool(args.resume), ctx=ctx)  # epoch lines: logging
        except (ValueError, TypeError, FileNotFoundError, KeyError) as err:
            raise UserError(f"cannot set up the run: {err}") from None
        if ctx.is_main and not args.quiet:
            what = f"resuming {run_dir} at epoch {trainer.epoch}" if args.resume else f"training into {run_dir}"
            print(f"{what}: {cfg['data']['name']} / {cfg['model']['arch']} / {cfg['model']['kind']}, "
                  f"{trainer.params:,} parameters, {ctx.world_size} process(es) on {ctx.device}")
        result = trainer.fit()
        if ctx.is_main:
            print(f"test accuracy {100 * result['test_accuracy']:.2f}% (best val epoch {result['best_epoch']}), "
                  f"spike rate {result['spike_rate']:.4f}, {result['sec_per_epoch']:.1f} s/epoch -> {run_dir}")
        return 0
    except TrainingDiverged as err:
        if ctx.is_main:
            print(f"dendrix train: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if ctx.is_main and trainer is not None:
            print(f"\ndendrix train: interrupted during epoch {trainer.epoch + 1}; the last finished epoch is "
                  f"saved. Resume with: dendrix train --resume {run_dir}", file=sys.stderr)
            return 130
        raise
    finally:
        teardown(ctx)
