"""Causal convolution along time by FFT, and the time-invariant linear recurrence as such a convolution.

A causal convolution of a length-T signal with a length-Tk kernel equals the first T samples of their linear
convolution, which the FFT computes exactly (up to rounding) once both are zero-padded to n >= T + Tk - 1
(here the next power of two, at most 2T for Tk <= T) so the circular wrap-around never reaches them.

Time is moved to the last dimension before transforming: FFTs over contiguous memory are faster than
strided ones, and the kernel ``[*C, Tk]`` already has time last. Real operands use ``rfft``/``irfft``;
if either is complex the full complex FFT is used.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["fft_causal_conv", "fft_recurrence", "fft_length", "mode_powers"]


def fft_length(T: int, Tk: int) -> int:
    """The FFT size: the smallest power of two that holds the linear convolution (>= T + Tk - 1)."""
    need = T + Tk - 1
    return 1 << max(0, (need - 1).bit_length())


def fft_causal_conv(u: Tensor, kernel: Tensor) -> Tensor:
    """``y[t, ...] = sum_{l<=t} kernel[..., l] * u[t-l, ...]``; ``kernel`` broadcasts against ``u.shape[1:]``
    with its lag dimension last. Real or complex; the result has the promoted dtype."""
    T, Tk = u.shape[0], kernel.shape[-1]
    if Tk > T:  # lags beyond T never reach an output sample
        kernel, Tk = kernel[..., :T], T
    n = fft_length(T, Tk)
    u_last = u.movedim(0, -1)  # [..., T]
    if u.is_complex() or kernel.is_complex():
        spec = torch.fft.fft(u_last, n=n) * torch.fft.fft(kernel, n=n)
        y = torch.fft.ifft(spec, n=n)[..., :T]
    else:
        spec = torch.fft.rfft(u_last, n=n) * torch.fft.rfft(kernel, n=n)
        y = torch.fft.irfft(spec, n=n)[..., :T]
    return y.movedim(-1, 0)


def mode_powers(a: Tensor, T: int, offset: int = 0) -> Tensor:
    """``a ** (l + offset)`` for l = 0..T-1, stacked on a new last dimension, as exp of a product.

    Complex ``a`` is handled in polar form, ``|a|**l * exp(i*l*angle(a))``: for |a| < 1 the magnitude stays
    in [0, 1] and the phase error grows only like l·eps, so T of 16,384 and more stay accurate. Real ``a``
    may be negative (``torch.pow`` with integral exponents).
    """
    real_dtype = a.real.dtype if a.is_complex() else a.dtype
    lags = torch.arange(offset, offset + T, dtype=real_dtype, device=a.device)
    if a.is_complex():
        mag = torch.pow(a.abs().unsqueeze(-1), lags)
        phase = a.angle().unsqueeze(-1) * lags
        return torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))
    return torch.pow(a.unsqueeze(-1), lags)


def fft_recurrence(a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """``h[t] = a * h[t-1] + b[t]`` for a time-invariant ``a`` (broadcastable to ``b.shape[1:]``):
    ``h[t] = sum_{l<=t} a**l b[t-l] + a**(t+1) h0``."""
    T = b.shape[0]
    h = fft_causal_conv(b, mode_powers(a, T))
    if h0 is not None:
        powers = mode_powers(a, T, offset=1).movedim(-1, 0)  # [T, *a.shape]
        missing = b.dim() - 1 - a.dim()  # align a's dims with b's step dims before h0 broadcasts
        h = h + powers.reshape(T, *([1] * missing), *a.shape) * h0
    return h
