"""S4-specific checks (reference/README.md §HiPPO, §S4; §Identities 11-14): the Cauchy + Woodbury kernel and
the resolvent kernel against dense matrix powers of scipy-discretized systems, the C-tilde identity of
the truncated generating function, the HiPPO-LegS identities behind the initialization, the stored half
against the full conjugate-paired system (and the O(N) linear step), and bad options. The generic LTI
checks (modes agree, responses vs scipy, ...) are in the common LTI test file."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.signal
from hypothesis import given
from hypothesis import strategies as st

from equivalence_tests.strategies import lengths, seeds, sequences, step_sizes
from equivalence_tests.tolerances import assert_close
from reference.init import hippo_legs, nplr_legs
from reference.models.lti import S4
from reference.models.lti.s4 import cauchy_conjugate_pairs

widths = st.integers(1, 3)
even_states = st.integers(1, 6).map(lambda k: 2 * k)  # full state size N = 2..12
discretizations = st.sampled_from(S4.discretizations)


@st.composite
def s4_models(draw, discretization=discretizations):
    """An S4 model with drawn sizes and per-channel steps around a drawn dt; half of the time its
    (Lambda, P, B, C) are replaced by random DPLR parameters (any P keeps A = Lambda - P P^* stable:
    its Hermitian part is Re Lambda - P P^* < 0)."""
    H, N = draw(widths), draw(even_states)
    model = S4(H, N, discretization=draw(discretization), seed=draw(seeds))
    rng = np.random.default_rng(draw(seeds))
    model.params.log_dt = np.log(draw(step_sizes())) + rng.uniform(-0.5, 0.5, H)  # (H,)
    if draw(st.booleans()):
        shape = (H, N // 2)
        model.params.log_A_real = np.log(rng.uniform(0.05, 2.0, shape))
        model.params.A_imag = rng.uniform(0.0, 10.0, shape)
        for name in ("P", "B", "C"):
            setattr(model.params, name, rng.normal(size=shape) + 1j * rng.normal(size=shape))
    return model


def scipy_discretized(model: S4):
    """(A_bar, B_bar) of each channel's full paired system, from scipy.signal.cont2discrete (zoh, bilinear)
    or scipy.linalg.expm (dirac: A_bar = expm(dt A), B_bar = B)."""
    A = model.state_matrix()  # (H, N, N)
    B_f = np.concatenate([model.params.B, model.params.B.conj()], axis=1)  # (H, N)
    dt = np.exp(model.params.log_dt)  # (H,)
    out = []
    for h in range(model.d_model):
        if model.discretization == "dirac":
            out.append((scipy.linalg.expm(dt[h] * A[h]), B_f[h]))
        else:
            no_output = (np.zeros((1, model.d_state)), np.zeros((1, 1)))
            A_bar, B_bar, *_ = scipy.signal.cont2discrete((A[h], B_f[h][:, None], *no_output), dt[h],
                                                          method=model.discretization)
            out.append((A_bar, B_bar[:, 0]))
    return out


@given(s4_models(), lengths)
def test_s4_cauchy_woodbury_kernel_matches_dense_matrix_powers(model, L):
    # bilinear: Cauchy + Woodbury; zoh, dirac: resolvent solves. Oracle: powers of matrices discretized by
    # scipy, channel by channel, read through C_f = [C, conj C].
    K = model.kernel(L)
    H = model.d_model
    assert K.shape == (L, H, H)
    C_f = np.concatenate([model.params.C, model.params.C.conj()], axis=1)  # (H, N)
    expected = np.zeros((L, H, H))
    for h, (A_bar, B_bar) in enumerate(scipy_discretized(model)):
        x = B_bar
        for ell in range(L):
            expected[ell, h, h] = (C_f[h] @ x).real
            x = A_bar @ x
    assert_close(K, expected, "float64", f"S4 {model.discretization} kernel vs scipy-discretized powers")
    assert_close(model.kernel_brute_force(L), expected, "float64", "kernel_brute_force vs scipy powers")


@given(s4_models(), lengths)
def test_s4_fft_of_kernel_matches_c_tilde_resolvent_identity(model, L):
    # fft(K)[m] = C (I - A_bar^L)(I - omega_m A_bar)^{-1} B_bar for every m = 0..L-1 (not only the rfft half)
    k = np.diagonal(model.kernel_brute_force(L), axis1=1, axis2=2)  # (L, H)
    spectrum = np.fft.fft(k, axis=0)  # (L, H)
    A_bar, B_bar = model.discretized()  # (H, N, N), (H, N)
    C_f = np.concatenate([model.params.C, model.params.C.conj()], axis=1)  # (H, N)
    eye = np.eye(model.d_state)
    expected = np.empty((L, model.d_model), dtype=complex)
    for h in range(model.d_model):
        C_tilde = C_f[h] @ (eye - np.linalg.matrix_power(A_bar[h], L))
        for m in range(L):
            omega = np.exp(-2j * np.pi * m / L)
            expected[m, h] = C_tilde @ np.linalg.solve(eye - omega * A_bar[h], B_bar[h])
    assert_close(spectrum, expected, "float64", "fft(K) vs C (I - A^L)(I - omega A)^{-1} B")
    assert_close(model.c_tilde(L), C_f - np.einsum("hm,hmn->hn", C_f, np.linalg.matrix_power(A_bar, L)),
                 "float64", "c_tilde")


@given(st.integers(1, 16))
def test_hippo_legs_normal_plus_low_rank_identities(N):
    A, B, P = hippo_legs(N)
    S = A + np.outer(P, P)
    assert_close(S + S.T, -np.eye(N), "float64", "S + S^T = -I")
    Lambda, V, B_tilde, P_tilde = nplr_legs(N)
    assert_close(Lambda.real, -0.5 * np.ones(N), "float64", "Re Lambda = -1/2")
    assert_close(V @ V.conj().T, np.eye(N), "float64", "V unitary")
    assert_close(V @ (np.diag(Lambda) - np.outer(P_tilde, P_tilde.conj())) @ V.conj().T, A, "float64",
                 "V (Lambda - P P^*) V^* = A_legs")
    assert_close(V @ B_tilde, B, "float64", "V B_tilde = B_legs")


@given(widths, even_states, seeds)
def test_s4_init_is_the_conjugate_paired_diagonalized_hippo_legs(H, N, seed):
    # With B_clip=None the full paired system of every channel is HiPPO-LegS in the basis
    # V_f = [V_half, conj(V_half)]: V_f A_f V_f^* = A_legs and V_f B_f = B_legs.
    A_legs, B_legs, _ = hippo_legs(N)
    Lambda, V, B_tilde, _ = nplr_legs(N)
    V_f = np.concatenate([V[:, : N // 2], V[:, : N // 2].conj()], axis=1)  # (N, N)
    assert_close(V_f @ V_f.conj().T, np.eye(N), "float64", "V_f unitary")
    model = S4(H, N, seed=seed, B_clip=None)
    assert_close(model.eigenvalues(), np.tile(Lambda[: N // 2], (H, 1)), "float64", "stored Lambda (Im <= 0)")
    assert np.all(model.eigenvalues().imag <= 0)
    B_f = np.concatenate([model.params.B, model.params.B.conj()], axis=1)  # (H, N)
    for h, A_f in enumerate(model.state_matrix()):
        assert_close(V_f @ A_f @ V_f.conj().T, A_legs, "float64", f"channel {h}: V_f A_f V_f^* = A_legs")
        assert_close(V_f @ B_f[h], B_legs, "float64", f"channel {h}: V_f B_f = B_legs")
    clipped = S4(H, N, seed=seed)  # default B_clip = 2.0 (reference/README.md §S4)
    half = B_tilde[: N // 2]
    assert_close(clipped.params.B, np.tile(half.real + 1j * np.clip(half.imag, -2, 2), (H, 1)), "float64",
                 "B = Re B_tilde + i clip(Im B_tilde, -2, 2)")


@given(s4_models(), sequences(batch=2, width=1))
def test_s4_full_paired_system_is_real_and_its_state_stays_paired(model, u1):
    H, N = model.d_model, model.d_state
    u = np.repeat(u1, H, axis=2) * np.arange(1, H + 1)  # (B, L, H)
    sys = model.ssm()
    x = np.zeros((u.shape[0], sys.state_size), complex)
    for k in range(u.shape[1]):
        x = x @ sys.A_bar.T + u[:, k] @ sys.B_bar.T  # (B, S)
        y = x @ sys.C.T  # (B, H): plain complex readout of the full paired system
        assert_close(y.imag, np.zeros(y.shape), "float64", "imaginary part of the paired output")
        blocks = x.reshape(-1, H, N)  # (B, H, N)
        assert_close(blocks[..., N // 2 :], blocks[..., : N // 2].conj(), "float64", "x_f = [x, conj x]")


def test_s4_cauchy_pair_sum_matches_the_sum_over_all_modes():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(2, 3)) + 1j * rng.normal(size=(2, 3))
    w = -rng.uniform(0.1, 1, size=(2, 3)) + 1j * rng.normal(size=(2, 3))
    z = rng.normal(size=5) + 1j * rng.normal(size=5)
    v_f, w_f = np.concatenate([v, v.conj()], -1), np.concatenate([w, w.conj()], -1)
    expected = np.array([[sum(v_f[h, n] / (zj - w_f[h, n]) for n in range(6)) for zj in z] for h in range(2)])
    assert_close(cauchy_conjugate_pairs(v, z, w), expected, "float64", "Cauchy sum over the conjugate pairs")


@given(s4_models(discretization=st.just("bilinear")), sequences(batch=2, width=1))
def test_s4_linear_step_on_stored_half_matches_dense_recurrence(model, u1):
    H, N = model.d_model, model.d_state
    u = np.repeat(u1, H, axis=2) * np.arange(1, H + 1)  # (B, L, H)
    y_dense, x_dense = model.forward(u, mode="recurrence", return_state=True)
    state = model.initial_state_linear(u.shape[0])
    ys = []
    for k in range(u.shape[1]):
        y_k, state = model.step_linear(u[:, k], state)
        ys.append(y_k)
    assert_close(np.stack(ys, axis=1), y_dense, "float64", "O(N) step (2 Re of half) vs dense recurrence")
    assert_close(state, x_dense.reshape(-1, H, N)[..., : N // 2], "float64", "half state vs dense state")


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(d_state=7), "d_state"),
        (dict(d_state=1), "d_state"),
        (dict(discretization="async"), "S4"),
        (dict(discretization="mamba"), "S4"),
        (dict(discretization="trapezoid"), "S4"),
        (dict(dt_min=0.1, dt_max=0.01), "dt_min"),
        (dict(dt_max=-1.0), "dt_max"),
        (dict(B_clip=0.0), "B_clip"),
        (dict(d_model=0), "d_model"),
    ],
)
def test_s4_bad_options_raise_value_error_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        S4(**(dict(d_model=2, d_state=4) | kwargs))


def test_s4_bad_calls_raise_value_error():
    with pytest.raises(ValueError, match="L"):
        S4(2, 4).kernel(0)
    with pytest.raises(ValueError, match="discretization"):
        S4(2, 4, discretization="zoh").step_linear(np.zeros((1, 2)), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="state"):
        S4(2, 4).step_linear(np.zeros((1, 2)), np.zeros((1, 2, 4)))
    model = S4(2, 4)
    model.params.P = np.zeros((2, 3))
    with pytest.raises(ValueError, match="params.P"):
        model.ssm()


@given(st.integers(1, 3), st.sampled_from([2, 4, 6]), st.sampled_from(S4.discretizations), seeds)
def test_s4_to_dlti_is_a_minimal_real_realization(H, N, method, seed):
    model = S4(H, N, discretization=method, seed=seed)
    dlti = model.to_dlti()
    assert dlti.A.shape == (H * N, H * N)  # N real states per channel, not 2N
    assert np.isrealobj(dlti.A) and np.isrealobj(dlti.B) and np.isrealobj(dlti.C)
    # its poles are those of the paired system, each once
    paired_poles = np.sort_complex(np.linalg.eigvals(model.ssm().A_bar))
    assert_close(np.sort_complex(np.linalg.eigvals(dlti.A)), paired_poles, "float64", "poles", rtol=1e-8)
