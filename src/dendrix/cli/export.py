"""``dendrix export RUN_DIR --format onnx|nir --out FILE``: a trained run folder as ONNX (one time step with
explicit state, ``docs/export.md``) or NIR (networks of LIF/PLIF and linear/convolution layers).

What a format cannot carry (a window-only kind as an ONNX step without ``--window``, a neuron without a NIR form)
is refused in one line naming the module and why.
"""

from __future__ import annotations

from pathlib import Path

from . import UserError

FORMATS = ("onnx", "nir")


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `dendrix train`")
    parser.add_argument("--format", required=True, choices=FORMATS, help="onnx (any kind) or nir (LIF/PLIF nets)")
    parser.add_argument("--out", required=True, metavar="FILE", help="the file to write (.onnx / .nir)")
    parser.add_argument("--weights", default="best", choices=("best", "last"), help="checkpoint to export")
    parser.add_argument("--batch-size", type=int, default=1, help="ONNX: the batch size of the graph (default 1)")
    parser.add_argument("--window", action="store_true",
                        help="ONNX: export the whole window instead of one step (kinds that do not stream)")
    parser.add_argument("--dt", type=float, default=1e-4, help="NIR: the time step in seconds (default 1e-4)")


def main(args) -> int:
    import numpy as np
    import torch

    from .._optional import require
    from ..export import ExportError, to_nir, to_onnx
    from ..files import atomic_write
    from ..train import load_run

    run_dir, out = Path(args.run_dir), Path(args.out)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a folder")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.dt <= 0:
        raise UserError(f"--dt must be > 0, got {args.dt}")
    try:
        run = load_run(run_dir, device="cpu", weights=args.weights)
    except FileNotFoundError as err:
        raise UserError(str(err)) from None
    step_shape = tuple(getattr(run.info, "input_shape", None) or (run.info.num_inputs,))
    window = torch.zeros(run.info.time_steps, args.batch_size, *step_shape)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if args.format == "onnx":
            info = to_onnx(run.model, window if args.window else window[0], out, window=args.window)
            if info.state_names:  # the resting state that starts the streaming loop
                state = dict(zip(info.state_names, info.initial_state))
                atomic_write(out.with_suffix(".state.npz"), lambda tmp: np.savez(tmp, **state))
            what = "the whole window" if info.window else f"one step, {len(info.state_names)} state tensors"
        else:
            nir = require("nir", needed_by="dendrix export --format nir")
            graph = to_nir(run.model, window, dt=args.dt)
            atomic_write(out, lambda tmp: nir.write(tmp, graph))
            what = f"dt={args.dt:g} s"
    except ExportError as err:
        raise UserError(f"{args.format.upper()} cannot carry this run: {err}") from None
    print(f"wrote {out} ({args.format}, {what})")
    return 0
