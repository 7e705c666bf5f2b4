"""The shared modal / zero-order-hold helper (ops/linear/modal.py) against matrix exponentials and sequential
loops in float64, and the three neurons that use it against the formulas they computed inline before."""

import pytest
import torch

from dendrix.neurons import DRF, MMDEND, PMSN
from dendrix.dtypes import to_compute
from dendrix.ops.linear import (complex_expm1, diagonalise, final_modes, free_response, real_system,
                                zoh)


def _stable_system(K, gen, channels=3):
    """Real ``A [C, K, K]`` with eigenvalues in the left half-plane (a shifted random matrix), ``Γ [C, K]``."""
    A = torch.randn(channels, K, K, generator=gen, dtype=torch.float64)
    shift = torch.linalg.eigvals(A).real.amax(-1) + 0.3
    A = A - shift[:, None, None] * torch.eye(K, dtype=torch.float64)
    return A, torch.randn(channels, K, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("expm1", [False, True])
def test_zoh_real_system_matches_the_augmented_matrix_exponential(expm1):
    """Exact ZOH: ``exp([[A, Γ], [0, 0]] dt) = [[Ā, B̄], [0, 1]]`` (no inverse of A needed)."""
    gen = torch.Generator().manual_seed(0)
    K = 4
    A, gamma = _stable_system(K, gen)
    dt = torch.tensor([0.05, 0.4, 1.3], dtype=torch.float64)
    lam, P, Pinv = diagonalise(A)
    b_modal = torch.einsum("cmk,ck->cm", Pinv, gamma.to(P.dtype))
    modes = zoh(lam, dt.unsqueeze(-1), b_modal, expm1=expm1)
    Abar, Bbar = real_system(P, Pinv, modes.decay, modes.bbar)
    aug = torch.zeros(3, K + 1, K + 1, dtype=torch.float64)
    aug[:, :K, :K], aug[:, :K, K] = A, gamma
    ref = torch.linalg.matrix_exp(aug * dt[:, None, None])
    torch.testing.assert_close(Abar, ref[:, :K, :K], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(Bbar, ref[:, :K, K], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(modes.dtlam, lam * dt.unsqueeze(-1), rtol=0, atol=0)


def test_diagonalise_reconstructs_and_holds_the_real_part():
    gen = torch.Generator().manual_seed(1)
    A = torch.randn(2, 5, 5, generator=gen, dtype=torch.float64)
    lam, P, Pinv = diagonalise(A)
    torch.testing.assert_close(torch.einsum("...km,...m,...ml->...kl", P, lam, Pinv).real, A, rtol=1e-10, atol=1e-10)
    held, P2, _ = diagonalise(A, max_real=-0.25)
    assert torch.equal(P2, P)
    assert bool((held.real <= -0.25).all())
    torch.testing.assert_close(held.real, lam.real.clamp(max=-0.25), rtol=0, atol=0)


def test_zoh_small_steps_expm1_avoids_the_cancellation_of_decay_minus_one():
    lam = torch.tensor([-0.5 + 3.0j, -2.0 + 0.1j], dtype=torch.complex64)
    dt = 1e-4
    exact = zoh(lam.to(torch.complex128), dt).bbar
    err_expm1 = (zoh(lam, dt, expm1=True).bbar.to(torch.complex128) - exact).abs().max()
    err_plain = (zoh(lam, dt).bbar.to(torch.complex128) - exact).abs().max()
    assert err_expm1 < 1e-6 * dt
    assert err_expm1 < err_plain


def test_free_response_and_final_modes_match_a_sequential_loop():
    """A chunk continued from a modal state z0: outputs ``Re Σ c z[t]`` and the last state, against the loop
    ``z[t] = decay z[t−1] + B̄ u[t]`` (float64)."""
    gen = torch.Generator().manual_seed(2)
    C, M, B, T = 3, 4, 2, 40
    lam = torch.complex(-0.05 - torch.rand(C, M, generator=gen, dtype=torch.float64),
                        3 * torch.randn(C, M, generator=gen, dtype=torch.float64))
    b = torch.randn(C, M, generator=gen, dtype=torch.complex128)
    c = torch.randn(C, M, generator=gen, dtype=torch.complex128)
    modes = zoh(lam, 0.3, b, expm1=True)
    u = torch.randn(T, B, C, generator=gen, dtype=torch.float64)
    z0 = torch.randn(B, C, M, generator=gen, dtype=torch.complex128)
    def loop(z, inputs):
        ys = []
        for t in range(T):
            z = modes.decay * z + modes.bbar * inputs[t].unsqueeze(-1)
            ys.append((c * z).sum(-1).real)
        return torch.stack(ys), z

    free, _ = loop(z0, torch.zeros_like(u))
    forced, z_fresh = loop(torch.zeros_like(z0), u)
    total, z_last = loop(z0, u)
    torch.testing.assert_close(free_response(z0, modes.decay, c, T), free, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(final_modes(u, modes.decay, modes.bbar, z0), z_last, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(final_modes(u, modes.decay, modes.bbar, None), z_fresh, rtol=1e-10, atol=1e-12)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="A must be square"):
        diagonalise(torch.zeros(3, 4))
    with pytest.raises(TypeError, match="A must be a torch.Tensor"):
        diagonalise([[1.0]])
    with pytest.raises(TypeError, match="lam must be a complex tensor"):
        zoh(torch.zeros(3), 0.1)
    assert to_compute(torch.zeros(2, dtype=torch.bfloat16)).dtype == torch.float32
    assert to_compute(None) is None


# -- the neurons reproduce the formulas they used before the shared helper, bit for bit -----------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_drf_modes_are_the_previous_inline_formula(dtype):
    torch.manual_seed(0)
    m = DRF(6, 3)
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    lam = m.eigenvalues().to(cdtype)
    dtlam = m.step_size().to(lam.real.dtype).unsqueeze(-1) * lam
    bbar = m.gamma.to(lam.real.dtype) * complex_expm1(dtlam) / lam
    got = m._modes(dtype)
    assert torch.equal(got[0], dtlam) and torch.equal(got[1], torch.exp(dtlam)) and torch.equal(got[2], bbar)


@pytest.mark.parametrize("cdtype", [torch.complex64, torch.complex128])
def test_pmsn_modes_are_the_previous_inline_formula(cdtype):
    torch.manual_seed(0)
    m = PMSN(5, 3)
    lam = torch.complex(-m.log_A_real.exp(), m.A_imag).to(cdtype)
    dt = m.log_dt.exp().to(lam.real.dtype)
    a = torch.exp(lam * dt.unsqueeze(-1))
    B = torch.complex(m.B_real, m.B_imag).to(cdtype)
    got = m._modes(cdtype)
    assert torch.equal(got[2], a) and torch.equal(got[5], B * (a - 1) / lam)


def test_mmdend_modes_and_discrete_system_are_the_previous_inline_formulas():
    torch.manual_seed(0)
    m = MMDEND(12, branches=3, compartments=4)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    lam, P = torch.linalg.eig(m.compartment_matrix().double())
    Pinv = torch.linalg.inv(P)
    lam = torch.complex(lam.real.clamp(max=-m.min_decay), lam.imag)
    a = torch.exp(lam * m.log_dt.double().exp().unsqueeze(-1))
    b_modal = torch.einsum("jmk,jk->jm", Pinv, m.input_gain.double().to(P.dtype))
    bbar = b_modal * (a - 1) / lam
    got = m._modes()
    assert torch.equal(got[0], lam) and torch.equal(got[4], a) and torch.equal(got[7], bbar)
    Abar, Bbar = m.discrete_system(torch.float64)
    assert torch.equal(Abar, torch.einsum("jkm,jm,jml->jkl", P, a, Pinv).real)
    assert torch.equal(Bbar, torch.einsum("jkm,jm->jk", P, bbar).real)
