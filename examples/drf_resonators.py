"""D-RF resonators: each dendritic branch's frequency response, and spike rasters with and without the
adaptive threshold.

    .venv/bin/python examples/drf_resonators.py --out runs/examples/

Writes ``drf_frequency_response.png`` (per-branch and total gain of one neuron against input frequency),
``drf_raster.png`` (spike rasters of 16 D-RF neurons driven by a chirp, adaptive threshold on and off, and
one neuron's potential and threshold) and ``drf_rates.json`` (the measured spike rates).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import dendrix  # noqa: E402
from dendrix.neurons import DRF  # noqa: E402
from dendrix.ops.linear import modal_kernel  # noqa: E402


def branch_responses(model: DRF, channel: int, T: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """|FFT| of every branch's kernel c_k Re(B̄_k e^{dtλ_k l}) of one channel: ([n, T//2+1], frequencies)."""
    with torch.no_grad():
        lam = model.eigenvalues()[channel].to(torch.complex128)
        dt = model.step_size()[channel].double()
        gamma, c = model.gamma[channel].double(), model.weight[channel].double()
        kernels = torch.stack([modal_kernel(lam[k:k + 1], dt, T, b=gamma[k:k + 1], c=c[k:k + 1], real=True)
                               for k in range(model.branches)])
    gain = torch.fft.rfft(kernels, dim=-1).abs()
    freq = torch.fft.rfftfreq(T)  # cycles per step
    return gain, freq


def chirp(T: int, batch: int, channels: int, f0: float = 0.002, f1: float = 0.2, amplitude: float = 1.5) -> torch.Tensor:
    """A sine sweeping from f0 to f1 cycles per step, the same on every channel: [T, batch, channels]."""
    t = torch.arange(T, dtype=torch.float64)
    phase = 2 * math.pi * (f0 * t + 0.5 * (f1 - f0) * t ** 2 / T)
    return (amplitude * torch.sin(phase)).float().view(T, 1, 1).expand(T, batch, channels).contiguous()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/examples/")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(args.seed)
    channels = 16
    model = DRF(channels, branches=4, dt_min=0.05, dt_max=0.2)
    with torch.no_grad():  # positive branch weights so every branch's resonance adds to the soma
        model.weight.abs_()
    plain = DRF(channels, branches=4, adaptive_threshold=False, dt_min=0.05, dt_max=0.2)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if k != "alpha_logits"})

    # 1. Frequency response of each branch of one neuron
    ch = int(torch.argmax(model.step_size()))
    gain, freq = branch_responses(model, ch)
    fig, ax = plt.subplots(figsize=(7, 4))
    for k in range(model.branches):
        f_res = model.omega[ch, k].item() * model.step_size()[ch].item() / (2 * math.pi)
        ax.plot(freq, gain[k], label=f"branch {k}: ω={model.omega[ch, k].item():.2f}, resonance {f_res:.3f}/step")
    total = torch.fft.rfft(model.kernel(4096, torch.float64)[ch].detach(), dim=-1).abs()
    ax.plot(freq, total, "k--", lw=1, label="soma (sum of branches)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("input frequency (cycles per step)")
    ax.set_ylabel("|gain| from I to c_k Re z_k")
    ax.set_title(f"D-RF neuron {ch}: dt = {model.step_size()[ch].item():.3f}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "drf_frequency_response.png", dpi=120)
    plt.close(fig)

    # 2. Spike rasters under a chirp, adaptive threshold on and off
    x = chirp(args.steps, 1, channels)
    with torch.no_grad(), dendrix.record(model) as rec:
        s_adapt = model(x)
    with torch.no_grad():
        s_plain = plain(x)
    h = rec.states["DRF"]["v"][:, 0, ch]
    th = rec.states["DRF"]["threshold"][:, 0, ch]
    rates = {"adaptive_threshold": s_adapt.mean().item(), "fixed_threshold": s_plain.mean().item(),
             "steps": args.steps, "channels": channels, "threshold_window": model.threshold_window}
    (out / "drf_rates.json").write_text(json.dumps(rates, indent=2))

    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    for ax, spikes, name in ((axes[0], s_plain, "fixed threshold V_th = 1"),
                             (axes[1], s_adapt, "adaptive threshold V_th = 1 + Σ α_m P[t-m]")):
        t_idx, n_idx = torch.nonzero(spikes[:, 0, :], as_tuple=True)
        ax.scatter(t_idx, n_idx, s=1, c="k")
        ax.set_ylabel("neuron")
        ax.set_title(f"{name}: rate {spikes.mean().item():.3f} spikes/step")
    axes[2].plot(h, lw=0.6, label=f"H (neuron {ch})")
    axes[2].plot(th, lw=0.6, label="V_th")
    axes[2].set_xlabel("step (chirp 0.002 → 0.2 cycles/step)")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "drf_raster.png", dpi=120)
    plt.close(fig)
    print(json.dumps(rates, indent=2))
    print(f"wrote {out / 'drf_frequency_response.png'}, {out / 'drf_raster.png'}, {out / 'drf_rates.json'}")


if __name__ == "__main__":
    main()
