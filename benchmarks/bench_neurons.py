"""LIF-family neuron cost: dendrix fused engines against SpikingJelly 2.0, snnTorch and a per-step loop (issue 2).

For each shape (T, B, N) the neuron alone is timed on an input current ``[T, B, N]`` that requires grad:
forward (no grad) and forward+backward median times, memory saved for backward (harness), and the peak
resident memory of one forward+backward measured in a fresh subprocess (Linux; ``--no-peak`` skips it). Every case
is measured in each round, rounds interleaved, and the median over rounds is reported, so the ratios come from
one run on one machine state. Ratios are against SpikingJelly's multi-step ``LIFNode`` (its default torch
backend on CPU). Target (issue 2): our LIF forward+backward at least 2× faster than that at (1024, 32, 128),
with no more memory.

``--device cuda`` runs every case on the GPU: times are taken after ``torch.cuda.synchronize()`` (harness), the
peak-RSS subprocess is replaced by the CUDA allocator's peak (``torch.cuda.max_memory_allocated``, shown as
"peak" in the memory column), and SpikingJelly's ``LIFNode`` uses the CUDA implementation that SpikingJelly
selects automatically (its fastest available one: native CUDA if built, else Triton); the line
"SpikingJelly LIF CUDA implementation" names it. dendrix's ``LIF()`` (``backend="auto"``) may select its Triton
engine there (the "device:" line names the engine), so a ``backend='fused'`` row is added on GPUs.

    .venv/bin/python benchmarks/bench_neurons.py            # full: (250,32,256) and (1024,32,128)
    .venv/bin/python benchmarks/bench_neurons.py --quick    # smoke run (small shape, one round, no peak)
    python benchmarks/bench_neurons.py --device cuda --shape 1024,64,1024   # GPU, the default shapes + one more
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Measurement, format_table, machine_line, measure  # noqa: E402

REFERENCE = "SpikingJelly LIFNode (multi-step)"
OURS = "dendrix LIF (auto)"  # fused engine on CPU; on CUDA the "device:" line names the engine (Triton)


def _spikingjelly():
    try:
        from spikingjelly.activation_based import neuron, surrogate
    except ImportError:
        return None
    return neuron, surrogate


def _snntorch():
    try:
        import snntorch
    except ImportError:
        return None
    return snntorch


def build_cases(n: int, device: torch.device | str = "cpu"
                ) -> dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], list[torch.Tensor]]]:
    """name -> (forward(x) -> spikes, parameters). Every neuron uses tau = 2 (decay 0.5) and an atan surrogate
    where the library offers it. Modules are built on the CPU and moved to ``device``."""
    from dendrix.neurons import ALIF, DALIF, LIF, PLIF

    torch.manual_seed(0)
    cases: dict[str, tuple[Callable, list]] = {}
    lif = LIF(tau=2.0).to(device)
    cases[OURS] = (lif, [])
    plif = PLIF(init_tau=2.0).to(device)
    cases["dendrix PLIF (auto)"] = (plif, list(plif.parameters()))
    alif = ALIF(channels=n).to(device)
    cases["dendrix ALIF (auto)"] = (alif, list(alif.parameters()))
    dalif = DALIF().to(device)
    cases["dendrix DA-LIF (auto)"] = (dalif, list(dalif.parameters()))
    if torch.device(device).type != "cpu":  # on a GPU "auto" may pick another engine (Triton): time the fused too
        fused = LIF(tau=2.0, backend="fused").to(device)
        cases["dendrix LIF (backend='fused')"] = (fused, [])
    loop = LIF(tau=2.0, backend="reference").to(device)
    cases["LIF per-step autograd loop"] = (loop, [])

    sj = _spikingjelly()
    if sj is not None:
        neuron, surrogate = sj
        node = neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m").to(device)

        def sj_forward(x, node=node):
            node.reset()
            return node(x)

        if _works_on(sj_forward, n, device, "SpikingJelly LIFNode"):
            cases[REFERENCE] = (sj_forward, [])

    snn = _snntorch()
    if snn is not None:
        # snnTorch's Leaky: mem = beta mem + x, subtract reset; beta = 1 - 1/tau. Its multi-step use is a loop.
        leaky = snn.Leaky(beta=0.5, spike_grad=snn.surrogate.atan()).to(device)

        def snn_forward(x, leaky=leaky):
            mem = leaky.init_leaky()
            out = []
            for x_t in x.unbind(0):  # unbind, not x[t]: one backward node instead of T full-size gradients
                spk, mem = leaky(x_t, mem)
                out.append(spk)
            return torch.stack(out)

        cases["snnTorch Leaky (step loop)"] = (snn_forward, list(leaky.parameters()))
    return cases


def _works_on(fn: Callable[[torch.Tensor], torch.Tensor], n: int, device: torch.device | str, what: str) -> bool:
    """On a GPU, one small forward+backward of a peer library's neuron (it may compile kernels at the first call
    and fail there); a failure leaves that row out with a message instead of ending the benchmark."""
    if torch.device(device).type == "cpu":
        return True
    try:
        fn(torch.randn(4, 2, n, device=device, requires_grad=True)).sum().backward()
        return True
    except Exception as err:  # noqa: BLE001 - any failure of the peer library's GPU path
        print(f"{what} fails on {device} ({type(err).__name__}: {err}); its row is left out", file=sys.stderr)
        return False


def _input(t: int, b: int, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return (torch.randn(t, b, n, generator=g) + 0.5).to(device).requires_grad_()


def dendrix_lif_engine(device: torch.device) -> str:
    """The engine dendrix's ``LIF()`` (``backend="auto"``) runs on ``device`` for the benchmark's float32 input."""
    try:
        from dendrix.ops.lif import resolve_backend
        from dendrix.surrogate import get_surrogate
        x = torch.zeros(2, 2, 3, device=device)
        return resolve_backend("auto", x, x[0], get_surrogate("atan"))
    except Exception as err:  # noqa: BLE001 - the engine query is informative only
        return f"unknown ({type(err).__name__}: {err})"


def spikingjelly_cuda_implementation(device: torch.device) -> str:
    """The LIF implementation SpikingJelly binds on ``device`` (e.g. "triton"), with the rejected candidates."""
    try:
        from spikingjelly.activation_based.functional import neuron_implementation
        found = neuron_implementation("lif", device)
    except Exception as err:  # older/newer SpikingJelly without this query, or no implementation at all
        return f"unknown ({type(err).__name__}: {err})"
    skipped = "; ".join(f"{k}: {v}" for k, v in found.get("unavailable", {}).items())
    return str(found.get("implementation")) + (f" (unavailable: {skipped})" if skipped else "")


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def peak_child(name: str, t: int, b: int, n: int) -> None:
    """Subprocess body: peak resident-memory growth (MB) during one forward+backward of case ``name``.

    Linux: the high-water mark VmHWM is reset (``/proc/self/clear_refs`` = 5) after the input exists, so the
    number is the peak above the resident memory before the call (input included in neither)."""
    fn, _ = build_cases(n)[name]
    x = _input(t, b, n)
    fn(_input(4, b, n)).sum().backward()  # lazy initialisation outside the measured call
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    before = _rss_kb("VmRSS")
    fn(x).float().sum().backward()
    print(json.dumps({"peak_mb": (_rss_kb("VmHWM") - before) / 1024}))


def peak_rss_mb(name: str, t: int, b: int, n: int) -> float | None:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, __file__, "--peak-child", name, str(t), str(b), str(n)],
                          capture_output=True, text=True, env=env, timeout=600)
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("{"):
            return json.loads(line)["peak_mb"]
    return None


def run_shape(t: int, b: int, n: int, rounds: int, repeat: int, peak: bool,
              device: torch.device | str = "cpu") -> tuple[str, list[Measurement]]:
    cases = build_cases(n, device)
    x = _input(t, b, n, device)
    runs: dict[str, list[Measurement]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (fn, params) in cases.items():
            runs[name].append(measure(name, lambda fn=fn: fn(x), [x, *params], repeat=repeat, warmup=1,
                                      device=device))
    rows = []
    for name, ms in runs.items():
        row = Measurement(name, statistics.median(m.fwd_ms for m in ms), statistics.median(m.fwd_bwd_ms for m in ms),
                          ms[0].saved_mb, ms[0].peak_mb)  # peak_mb: CUDA allocator peak (None on CPU)
        if peak:
            row.extra = {"peak_rss_mb": peak_rss_mb(name, t, b, n)}
        rows.append(row)
    reference = REFERENCE if REFERENCE in runs else OURS
    table = format_table(rows, reference)
    if peak:
        lines = table.splitlines()
        lines[0] += " peak RSS MB (fwd+bwd, subprocess) |"
        lines[1] += "---|"
        for i, row in enumerate(rows):
            value = row.extra["peak_rss_mb"]
            lines[2 + i] += f" {value:.0f} |" if value is not None else " – |"
        table = "\n".join(lines)
    return table, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shape, one round, no peak measure")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-peak", action="store_true", help="skip the peak-RSS subprocess measure")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--shape", action="append", default=[], metavar="T,B,N",
                        help="an extra (T, B, N) shape after the default ones (repeatable)")
    parser.add_argument("--peak-child", nargs=4, metavar=("CASE", "T", "B", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_child:
        name, t, b, n = args.peak_child
        peak_child(name, int(t), int(b), int(n))
        return 0

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available")
    shapes = [(64, 8, 32)] if args.quick else [(250, 32, 256), (1024, 32, 128)]
    for text in args.shape:
        try:
            t, b, n = (int(v) for v in text.split(","))
        except ValueError:
            parser.error(f"--shape must be T,B,N (three integers), got {text!r}")
        shapes.append((t, b, n))
    rounds, repeat = (1, 1) if args.quick else (args.rounds, args.repeat)
    # peak RSS is a CPU measure (a subprocess's resident memory); on CUDA the allocator's peak is reported instead
    peak = not (args.quick or args.no_peak) and device.type == "cpu"
    print(machine_line())
    if device.type != "cpu":
        print(f"device: {device}; dendrix LIF backend='auto' runs the {dendrix_lif_engine(device)!r} engine")
        if _spikingjelly() is not None:
            print(f"SpikingJelly LIF CUDA implementation: {spikingjelly_cuda_implementation(device)}")
    for t, b, n in shapes:
        table, rows = run_shape(t, b, n, rounds, repeat, peak, device)
        print(f"\n### (T, B, N) = ({t}, {b}, {n})\n")
        print(table)
        by_name = {r.name: r for r in rows}
        if REFERENCE in by_name:
            ref, ours = by_name[REFERENCE], by_name[OURS]
            line = (f"\ndendrix LIF vs SpikingJelly LIFNode: forward {ref.fwd_ms / ours.fwd_ms:.2f}× faster, "
                    f"forward+backward {ref.fwd_bwd_ms / ours.fwd_bwd_ms:.2f}× faster, saved-for-backward "
                    f"{ours.saved_mb:.1f} vs {ref.saved_mb:.1f} MB")
            if ours.peak_mb is not None and ref.peak_mb is not None:
                line += f", CUDA peak {ours.peak_mb:.0f} vs {ref.peak_mb:.0f} MB"
            if peak and ours.extra["peak_rss_mb"] is not None and ref.extra["peak_rss_mb"] is not None:
                line += f", peak RSS {ours.extra['peak_rss_mb']:.0f} vs {ref.extra['peak_rss_mb']:.0f} MB"
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
