"""S4D-specific checks (reference/README.md §S4D; §Identities 11, 13, 15): the initialization formulas,
the Vandermonde kernel against brute-force powers, and the stored half with its 2 Re readout against
the full conjugate-paired system. The generic LTI checks (modes agree, responses vs scipy, ...) are in
the common LTI test file."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from equivalence_tests.strategies import lengths, seeds, sequences
from equivalence_tests.tolerances import assert_close
from reference import DiscreteSSM, discretize_diagonal, linear_scan
from reference.init import hippo_legs, nplr_legs
from reference.models.lti import S4D

widths = st.integers(1, 4)
even_states = st.integers(1, 8).map(lambda k: 2 * k)  # full state size N = 2..16
discretizations = st.sampled_from(S4D.discretizations)
inits = st.sampled_from(["legs", "lin", "inv", "real"])


def run_system(sys: DiscreteSSM, u: np.ndarray) -> np.ndarray:
    """y = C x + D u of a diagonal DiscreteSSM with readout 'plain', by the step-by-step recurrence."""
    Bu = u @ sys.B_bar.T  # (B, L, S)
    x, _ = linear_scan(np.broadcast_to(sys.A_bar, Bu.shape), Bu)  # (B, L, S)
    return x @ sys.C.T + u @ sys.D.T  # (B, L, H)


@given(widths, even_states, st.sampled_from(["lin", "inv", "real"]), seeds)
def test_s4d_lin_inv_real_inits_match_their_formulas(H, N, init, seed):
    model = S4D(H, N, init=init, seed=seed)
    n = np.arange(N // 2)
    if init == "lin":
        expected = -0.5 - 1j * np.pi * n
    elif init == "inv":
        expected = -0.5 - 1j * (N / np.pi) * (N / (2 * n + 1) - 1)
    else:
        expected = -(n + 1.0) + 0j
    assert_close(model.eigenvalues(), np.tile(expected, (H, 1)), "float64", f"S4D-{init} eigenvalues")
    assert_close(model.params.B, np.ones((H, N // 2)), "float64", f"S4D-{init} B = 1")


@given(widths, even_states, seeds)
def test_s4d_legs_init_matches_the_stored_half_of_hippo_legs(H, N, seed):
    model = S4D(H, N, seed=seed)
    # Independent of nplr_legs' eigh: the eigenvalues of the normal part A + P P^T by a general solver,
    # sorted by imaginary part; the stored half is the one with Im <= 0.
    A, _, P = hippo_legs(N)
    eig = np.linalg.eigvals(A + np.outer(P, P))
    half = eig[np.argsort(eig.imag)][: N // 2]
    assert_close(model.eigenvalues(), np.tile(half, (H, 1)), "float64", "S4D-LegS eigenvalues vs eigvals")
    Lambda, _, B_tilde, _ = nplr_legs(N)
    assert_close(model.eigenvalues(), np.tile(Lambda[: N // 2], (H, 1)), "float64", "vs nplr_legs half")
    clipped = B_tilde[: N // 2].real + 1j * np.clip(B_tilde[: N // 2].imag, -2.0, 2.0)
    assert_close(model.params.B, np.tile(clipped, (H, 1)), "float64", "S4D-LegS B = clip(V^* B_legs)")
    unclipped = S4D(H, N, seed=seed, B_clip=None)
    assert_close(unclipped.params.B, np.tile(B_tilde[: N // 2], (H, 1)), "float64", "B without clip")


@given(widths, even_states, seeds, st.floats(1e-4, 1e-2), st.floats(1.0, 100.0))
def test_s4d_steps_are_one_per_channel_within_the_range(H, N, seed, dt_min, ratio):
    model = S4D(H, N, seed=seed, dt_min=dt_min, dt_max=dt_min * ratio)
    dt = np.exp(model.params.log_dt)
    assert dt.shape == (H,)
    # exp(log(dt)) may round one ulp outside the interval
    assert np.all(dt >= dt_min * (1 - 1e-14)) and np.all(dt <= dt_min * ratio * (1 + 1e-14))


@given(widths, even_states, discretizations, inits, seeds, lengths)
def test_s4d_vandermonde_kernel_matches_brute_force_powers(H, N, method, init, seed, L):
    model = S4D(H, N, discretization=method, init=init, seed=seed)
    K = model.kernel(L)
    assert K.shape == (L, H, H)
    assert_close(K, model.ssm().kernel(L), "float64", "Vandermonde kernel vs C A_bar^l B_bar")
    realified = model.ssm().realified()  # real 2x2 blocks, dense powers: no complex arithmetic shared
    powers = np.stack([realified.C @ np.linalg.matrix_power(realified.A_matrix, l) @ realified.B_bar
                       for l in range(L)])
    assert_close(K, powers, "float64", "Vandermonde kernel vs dense real matrix powers")


@given(widths, even_states, discretizations, inits, seeds, sequences(batch=2, width=1))
def test_s4d_stored_half_with_2re_matches_full_conjugate_paired_system(H, N, method, init, seed, u1):
    model = S4D(H, N, discretization=method, init=init, seed=seed)
    u = np.repeat(u1, H, axis=2) * np.arange(1, H + 1)  # (B, L, H), distinct channels
    p = model.params
    # The full system of each channel: all N modes (lambda, conj lambda), (B, conj B), (C, conj C),
    # discretized from scratch; its plain readout C x must be real and equal 2 Re of the stored half.
    Lambda = model.eigenvalues()
    Lambda_full = np.concatenate([Lambda, Lambda.conj()], axis=1)  # (H, N)
    B_full = np.concatenate([p.B, p.B.conj()], axis=1)  # (H, N)
    C_full = np.concatenate([p.C, p.C.conj()], axis=1)  # (H, N)
    a_bar, b_bar = discretize_diagonal(Lambda_full, B_full, np.exp(p.log_dt), method)  # (H, N)
    eye = np.eye(H)
    full = DiscreteSSM(
        a_bar.reshape(-1),
        (b_bar[:, :, None] * eye[:, None, :]).reshape(H * N, H),
        (eye[:, :, None] * C_full[None]).reshape(H, H * N),
        np.diag(p.D),
        readout="plain",
    )
    y_full = run_system(full, u)
    assert_close(y_full.imag, np.zeros(y_full.shape), "float64", "imaginary part of the full system")
    for mode in S4D.modes:
        assert_close(model.forward(u, mode=mode), y_full.real, "float64", f"2 Re(half) vs full ({mode})")
    assert_close(model.kernel(u.shape[1]), full.kernel(u.shape[1]).real, "float64", "kernel vs full")


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(d_state=7), "d_state"),
        (dict(d_state=1), "d_state"),
        (dict(init="hippo"), "init"),
        (dict(init="diag-lin"), "init"),
        (dict(dt_min=0.1, dt_max=0.01), "dt_min"),
        (dict(dt_min=-1e-3), "dt_min"),
        (dict(dt_max=float("nan")), "dt_max"),
        (dict(B_clip=0.0), "B_clip"),
        (dict(discretization="async"), "S4D"),
        (dict(discretization="mamba"), "S4D"),
        (dict(discretization="native"), "S4D"),
        (dict(d_model=0), "d_model"),
    ],
)
def test_s4d_bad_options_raise_value_error_naming_the_argument(kwargs, name):
    args = dict(d_model=2, d_state=4) | kwargs
    with pytest.raises(ValueError, match=name):
        S4D(**args)


def test_s4d_kernel_rejects_a_bad_length():
    with pytest.raises(ValueError, match="L"):
        S4D(2, 4).kernel(0)
