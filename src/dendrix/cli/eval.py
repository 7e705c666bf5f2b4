"""``dendrix eval RUN_DIR [--split test] [--energy] [--robustness] [--quick]``: evaluate a trained run folder.

Accuracy is always computed. ``--energy`` adds the operation count / energy report, ``--robustness`` the
noise and attack report (``--quick``: the small grid of ``quick_evaluation`` and the first batches only).
Reports go into the run folder: ``eval_<split>.{json,md}`` (summary), ``energy_<split>.{json,md}``,
``robustness_<split>.{json,md,png}``.
"""

from __future__ import annotations

import time
from pathlib import Path

from . import UserError

SPLITS = ("train", "val", "test")
QUICK_BATCHES = 4


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{name} must be comma-separated numbers, got {text!r}") from None
    if not values or any(not (0 <= v < float("inf")) for v in values):
        raise UserError(f"{name} must list finite numbers >= 0, got {text!r}")
    return values


def _save(report, folder: Path, stem: str) -> list[Path]:
    """Write an energy or robustness report (JSON, Markdown and, when it can plot, a PNG) atomically."""
    import json
    import os

    from ..train.checkpoint import atomic_write, write_text

    paths = [folder / f"{stem}.json", folder / f"{stem}.md"]
    write_text(paths[0], json.dumps(report.to_dict(), indent=2))
    write_text(paths[1], report.to_markdown())
    if callable(getattr(report, "plot", None)):
        png = folder / f"{stem}.png"

        def plot(tmp: str) -> None:  # matplotlib picks the format from the suffix: plot to .png, then move
            report.plot(tmp + ".png")
            os.replace(tmp + ".png", tmp)
        atomic_write(png, plot)
        paths.append(png)
    return paths


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `dendrix train`")
    parser.add_argument("--split", default="test", choices=SPLITS, help="data split (default: test)")
    parser.add_argument("--energy", action="store_true", help="operation counts and energy per layer/sample")
    parser.add_argument("--robustness", action="store_true", help="accuracy under spike/Gaussian noise and attacks")
    parser.add_argument("--quick", action="store_true",
                        help=f"small robustness grid on the first {QUICK_BATCHES} batches (a smoke run)")
    parser.add_argument("--batch-size", type=int, help="evaluation batch size (default: the run's)")
    parser.add_argument("--max-batches", type=int, help="evaluate only the first N batches")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise and PGD starts (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--weights", default="best", choices=("best", "last"), help="checkpoint to evaluate")
    parser.add_argument("--e-ac", type=float, default=None, help="pJ per accumulate (default 0.9)")
    parser.add_argument("--e-mac", type=float, default=None, help="pJ per multiply-accumulate (default 4.6)")
    parser.add_argument("--spike-p", help="spike-noise probabilities, comma-separated (default 0,0.01,0.02,0.05,0.1)")
    parser.add_argument("--sigma", help="Gaussian input-noise std, comma-separated (default 0,0.1,0.2,0.5)")
    parser.add_argument("--eps", help="attack strengths, comma-separated (default depends on the input kind)")
    parser.add_argument("--attack-steps", type=int, default=10, help="BIM/PGD iterations (default 10)")


def main(args) -> int:
    from ..analysis.energy import E_AC_PJ, E_MAC_PJ, energy_report
    from ..analysis.robustness import evaluate_accuracy, robustness_report
    from ..analysis.summary import QUICK_FGSM_EPS_ANALOG, QUICK_FGSM_EPS_SPIKES, QUICK_SIGMA, QUICK_SPIKE_P
    from ..train import load_run
    from ..train.checkpoint import CheckpointError, write_json, write_text
    from ..train.distributed import resolve_device

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a folder")
    for name in ("e_ac", "e_mac"):
        value = getattr(args, name)
        if value is not None and not (value >= 0 and value != float("inf")):
            raise UserError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
    for name in ("batch_size", "max_batches", "attack_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    grids = {name: _floats(text, flag) for name, text, flag in (
        ("spike_p", args.spike_p, "--spike-p"), ("gaussian_sigma", args.sigma, "--sigma"),
        ("epsilons", args.eps, "--eps")) if text}
    if args.device == "auto":
        raise UserError("--device must be cpu, cuda or cuda:N, got 'auto'")
    try:
        device = resolve_device(args.device)
    except RuntimeError as err:
        raise UserError(f"--device: {err}") from None
    try:
        run = load_run(run_dir, device=device, weights=args.weights)
    except (FileNotFoundError, CheckpointError) as err:
        raise UserError(str(err)) from None
    try:
        loader = run.loader(args.split, batch_size=args.batch_size)
    except (ValueError, FileNotFoundError, KeyError) as err:
        raise UserError(f"cannot open the {args.split!r} split of {run_dir}: {err}") from None
    max_batches = args.max_batches
    if args.quick and max_batches is None:
        max_batches = QUICK_BATCHES

    started = time.perf_counter()
    summary: dict = {"run_dir": str(run_dir), "split": args.split, "weights": str(run.weights),
                     "max_batches": max_batches, "seed": args.seed}
    summary["accuracy"] = evaluate_accuracy(run.model, loader, max_batches=max_batches, device=device)
    print(f"accuracy ({args.split}): {summary['accuracy']:.4f}")
    reports = []  # (report, stem): every file is written at the end, so a failure leaves the folder unchanged

    if args.energy:
        e_ac = E_AC_PJ if args.e_ac is None else args.e_ac
        e_mac = E_MAC_PJ if args.e_mac is None else args.e_mac
        try:
            energy = energy_report(run.model, loader, e_ac=e_ac, e_mac=e_mac, max_batches=max_batches, device=device)
        except ValueError as err:
            raise UserError(str(err)) from None
        reports.append((energy, f"energy_{args.split}"))
        summary.update(energy_uj=energy.energy_uj, ann_energy_uj=energy.ann_energy_uj,
                       break_even_rate=energy.break_even_rate, mean_input_rate=energy.mean_input_rate)
        print(f"energy: {energy.energy_uj:.6g} μJ per sample (ReLU baseline {energy.ann_energy_uj:.6g} μJ)")

    if args.robustness:
        kind = getattr(run.info, "input_kind", "auto") or "auto"
        grid: dict = {}
        if args.quick:
            if kind == "analog":
                grid = dict(spike_p=(), gaussian_sigma=(0.0, *QUICK_SIGMA), epsilons=(0.0, QUICK_FGSM_EPS_ANALOG))
            else:
                grid = dict(spike_p=(0.0, *QUICK_SPIKE_P), gaussian_sigma=(0.0, *QUICK_SIGMA),
                            epsilons=(0.0, QUICK_FGSM_EPS_SPIKES))
            grid["attack_steps"] = min(args.attack_steps, 3)
        else:
            grid["attack_steps"] = args.attack_steps
        grid.update(grids)
        try:
            robust = robustness_report(run.model, loader, seed=args.seed, max_batches=max_batches, device=device,
                                       input_kind=kind if kind in ("spikes", "analog") else "auto", **grid)
        except ValueError as err:
            raise UserError(str(err)) from None
        reports.append((robust, f"robustness_{args.split}"))
        summary.update(overall_robustness=robust.overall_robustness, overall_robustness_std=robust.overall_std)
        print(f"overall robustness: {robust.overall_robustness:.4f} ± {robust.overall_std:.4f} "
              f"over {robust.settings} settings")

    summary["seconds"] = round(time.perf_counter() - started, 3)
    json_path = run_dir / f"eval_{args.split}.json"
    md_path = run_dir / f"eval_{args.split}.md"
    written = [path for report, stem in reports for path in _save(report, run_dir, stem)]
    write_json(json_path, summary)
    md_lines = [f"# Evaluation of {run_dir.name} ({args.split} split)", "",
                "| metric | value |", "|---|---:|"]
    for key in ("accuracy", "energy_uj", "ann_energy_uj", "break_even_rate", "overall_robustness",
                "overall_robustness_std"):
        if summary.get(key) is not None:
            md_lines.append(f"| {key} | {summary[key]:.6g} |")
    if args.energy:
        md_lines += ["", "Energy is a proxy (operation counts × 45 nm energies); see "
                     f"`energy_{args.split}.md`."]
    write_text(md_path, "\n".join(md_lines) + "\n")
    written = [json_path, md_path, *written]
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
