"""reference.discretize / discretize_diagonal against scipy, matrix exponentials and identities
(reference/README.md §zoh to §async, and §Identities 1-8)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.signal
from hypothesis import given
from hypothesis import strategies as st

import reference
from equivalence_tests.strategies import dense_stable_systems, seeds, stable_diagonal_spectra, step_sizes
from equivalence_tests.tolerances import assert_close
from reference import discretize, discretize_diagonal

LTI_METHODS = ["zoh", "bilinear", "dirac", "mamba"]


@given(dense_stable_systems(), step_sizes(), st.sampled_from(["zoh", "bilinear"]))
def test_dense_discretize_matches_scipy_cont2discrete(system, dt, method):
    A, B, C, D = system
    A_bar, B_bar = discretize(A, B, dt, method)
    # scipy's bilinear also rewrites C and D (control convention): compare A_bar and B_bar only.
    A_sp, B_sp, _, _, _ = scipy.signal.cont2discrete((A, B, C, D), dt, method=method)
    assert_close(A_bar, A_sp, "float64", f"{method} A_bar")
    assert_close(B_bar, B_sp, "float64", f"{method} B_bar")


@given(dense_stable_systems(), step_sizes())
def test_dense_zoh_matches_integral_formula(system, dt):
    # B_bar = A^{-1} (expm(dt A) - I) B, valid for an invertible A (ours are stable, hence invertible).
    A, B, _, _ = system
    A_bar, B_bar = discretize(A, B, dt, "zoh")
    expected_A = scipy.linalg.expm(dt * A)
    assert_close(A_bar, expected_A, "float64", "A_bar")
    assert_close(B_bar, np.linalg.solve(A, (expected_A - np.eye(len(A))) @ B), "float64", "B_bar")


@given(stable_diagonal_spectra(), step_sizes(), seeds)
def test_diagonal_zoh_matches_expm_of_block_matrix(Lambda, dt, seed):
    rng = np.random.default_rng(seed)
    N, H = len(Lambda), 2
    B = rng.normal(size=(N, H)) + 1j * rng.normal(size=(N, H))
    a_bar, B_bar = discretize(Lambda, B, dt, "zoh")
    block = np.zeros((N + H, N + H), dtype=complex)
    block[:N, :N] = np.diag(Lambda) * dt
    block[:N, N:] = B * dt
    E = scipy.linalg.expm(block)
    assert_close(np.diag(a_bar), E[:N, :N], "float64", "A_bar")
    assert_close(B_bar, E[:N, N:], "float64", "B_bar")


def test_diagonal_zoh_is_finite_and_exact_at_zero_eigenvalue():
    # lambda = 0 is an integrator: x_k = x_{k-1} + dt u_k exactly.
    a_bar, B_bar = discretize(np.array([0.0, -1e-12]), np.ones((2, 1)), 0.5, "zoh")
    assert_close(a_bar, np.array([1.0, np.exp(-0.5e-12)]), "float64", "a_bar")
    assert_close(B_bar[:, 0], np.array([0.5, 0.5]), "float64", "B_bar", rtol=1e-12)


@given(stable_diagonal_spectra(complex_=True), step_sizes(), seeds, st.sampled_from(LTI_METHODS))
def test_diagonal_equals_dense_after_change_of_basis(Lambda, dt, seed, method):
    rng = np.random.default_rng(seed)
    N, H = len(Lambda), 3
    V = rng.normal(size=(N, N)) + 1j * rng.normal(size=(N, N)) + 3 * np.eye(N)  # well conditioned
    V_inv = np.linalg.inv(V)
    B = rng.normal(size=(N, H))
    A_dense = V @ np.diag(Lambda) @ V_inv
    A_bar, B_bar = discretize(A_dense, B, dt, method)
    a_bar, B_bar_diag = discretize(Lambda, V_inv @ B, dt, method)
    assert_close(A_bar, V @ np.diag(a_bar) @ V_inv, "float64", "A_bar", rtol=1e-9)
    assert_close(B_bar, V @ B_bar_diag, "float64", "B_bar", rtol=1e-9)


@given(st.floats(-50, -1e-3), st.floats(-50, 50), step_sizes(high=10.0))
def test_bilinear_maps_left_half_plane_into_unit_disk(re, im, dt):
    a_bar, _ = discretize(np.array([re + 1j * im]), np.ones(1), dt, "bilinear")
    assert abs(a_bar[0]) < 1.0


@given(st.floats(-50, 50), step_sizes(high=10.0))
def test_bilinear_maps_imaginary_axis_onto_unit_circle(im, dt):
    a_bar, _ = discretize(np.array([1j * im]), np.ones(1), dt, "bilinear")
    assert abs(abs(a_bar[0]) - 1.0) < 1e-14


@given(stable_diagonal_spectra(), step_sizes(), step_sizes())
def test_zoh_semigroup(Lambda, dt1, dt2):
    a1, _ = discretize(Lambda, np.ones_like(Lambda), dt1, "zoh")
    a2, _ = discretize(Lambda, np.ones_like(Lambda), dt2, "zoh")
    a12, _ = discretize(Lambda, np.ones_like(Lambda), dt1 + dt2, "zoh")
    assert_close(a1 * a2, a12, "float64", "a(dt1) a(dt2)")


@given(dense_stable_systems(), step_sizes(), st.sampled_from(["zoh", "bilinear"]))
def test_zoh_and_bilinear_keep_the_dc_gain(system, dt, method):
    # sum_l C A_bar^l B_bar = C (I - A_bar)^{-1} B_bar must equal the continuous DC gain -C A^{-1} B.
    A, B, C, _ = system
    A_bar, B_bar = discretize(A, B, dt, method)
    discrete_gain = C @ np.linalg.solve(np.eye(len(A)) - A_bar, B_bar)
    assert_close(discrete_gain, -C @ np.linalg.solve(A, B), "float64", "DC gain", rtol=1e-8, atol=1e-10)


@given(stable_diagonal_spectra())
def test_dirac_approaches_zoh_over_dt_as_dt_goes_to_zero(Lambda):
    # gamma_zoh / dt = (e^z - 1)/z = 1 + z/2 + ..., so |gamma_zoh/dt - gamma_dirac| <= |z| for |z| <= 1/10.
    for dt in (1e-2, 1e-4, 1e-6):
        dt = dt / max(1.0, np.abs(Lambda).max())
        _, b_zoh = discretize(Lambda, np.ones_like(Lambda), dt, "zoh")
        _, b_dirac = discretize(Lambda, np.ones_like(Lambda), dt, "dirac")
        assert np.all(np.abs(b_zoh / dt - b_dirac) <= np.abs(Lambda) * dt)


@given(stable_diagonal_spectra(), step_sizes(), seeds)
def test_mamba_rule_is_exact_A_and_euler_B(Lambda, dt, seed):
    B = np.random.default_rng(seed).normal(size=(len(Lambda), 2))
    a_bar, B_bar = discretize(Lambda, B, dt, "mamba")
    assert_close(a_bar, np.exp(dt * Lambda), "float64", "a_bar")
    assert_close(B_bar, dt * B, "float64", "B_bar")


@given(stable_diagonal_spectra(), step_sizes(), st.integers(1, 9), st.integers(1, 3))
def test_async_with_unit_gaps_equals_zoh(Lambda, dt, L, batch):
    B = np.ones((len(Lambda), 2))
    a_async, B_async = discretize(Lambda, B, dt, "async", integration_timesteps=np.ones((batch, L)))
    a_zoh, B_zoh = discretize(Lambda, B, dt, "zoh")
    assert a_async.shape == (batch, L, len(Lambda)) and B_async.shape == (batch, L, len(Lambda), 2)
    assert_close(a_async, np.broadcast_to(a_zoh, a_async.shape), "float64", "a_bar")
    assert_close(B_async, np.broadcast_to(B_zoh, B_async.shape), "float64", "B_bar")


@given(stable_diagonal_spectra(), step_sizes(), st.floats(0.0, 5.0), st.floats(0.0, 5.0))
def test_async_two_gaps_with_zero_input_equal_one_gap(Lambda, dt, tau1, tau2):
    a, _ = discretize(Lambda, np.ones_like(Lambda), dt, "async", integration_timesteps=[tau1, tau2])
    a_one, _ = discretize(Lambda, np.ones_like(Lambda), dt, "async", integration_timesteps=[tau1 + tau2])
    assert_close(a[1] * a[0], a_one[0], "float64", "decay over tau1 then tau2")


@given(stable_diagonal_spectra(), step_sizes(), st.sampled_from(["zoh", "bilinear", "dirac", "mamba"]))
def test_integration_timesteps_scale_the_step(Lambda, dt, method):
    tau = np.array([0.5, 1.0, 2.5])
    a, B_bar = discretize(Lambda, np.ones_like(Lambda), dt, method, integration_timesteps=tau)
    for k, t in enumerate(tau):
        a_k, B_k = discretize(Lambda, np.ones_like(Lambda), dt * t, method)
        assert_close(a[k], a_k, "float64", f"a_bar at event {k}")
        assert_close(B_bar[k], B_k, "float64", f"B_bar at event {k}")


@given(stable_diagonal_spectra(), seeds, st.sampled_from(LTI_METHODS))
def test_per_state_dt_equals_separate_scalar_systems(Lambda, seed, method):
    rng = np.random.default_rng(seed)
    N = len(Lambda)
    dt = np.exp(rng.uniform(np.log(1e-3), 0.0, size=N))
    B = rng.normal(size=(N, 2))
    a_bar, B_bar = discretize(Lambda, B, dt, method)
    for n in range(N):
        a_n, B_n = discretize(Lambda[n : n + 1], B[n : n + 1], dt[n], method)
        assert_close(a_bar[n : n + 1], a_n, "float64", f"a_bar[{n}]")
        assert_close(B_bar[n : n + 1], B_n, "float64", f"B_bar[{n}]")


@given(dense_stable_systems(), seeds, st.sampled_from(LTI_METHODS))
def test_dense_per_state_dt_is_a_row_rescaled_system_with_unit_step(system, seed, method):
    A, B, _, _ = system
    dt = np.exp(np.random.default_rng(seed).uniform(np.log(1e-3), 0.0, size=len(A)))
    A_bar, B_bar = discretize(A, B, dt, method)
    A_ref, B_ref = discretize(dt[:, None] * A, dt[:, None] * B, 1.0, method)
    if method == "dirac":  # dirac keeps B itself: the clock only acts on the state
        B_ref = B
    assert_close(A_bar, A_ref, "float64", "A_bar")
    assert_close(B_bar, B_ref, "float64", "B_bar")


def test_discretize_diagonal_broadcasts_over_systems_and_matches_discretize():
    rng = np.random.default_rng(0)
    Lambda = -rng.uniform(0.1, 2, size=(3, 4)) + 1j * rng.normal(size=(3, 4))  # (H, N)
    B = rng.normal(size=(3, 4))  # (H, N)
    dt = np.array([0.1, 0.2, 0.3])  # (H,)
    a_bar, B_bar = discretize_diagonal(Lambda, B, dt, "zoh")
    assert a_bar.shape == (3, 4) and B_bar.shape == (3, 4)
    for h in range(3):
        a_h, B_h = discretize(Lambda[h], B[h], dt[h], "zoh")
        assert_close(a_bar[h], a_h, "float64", "a_bar")
        assert_close(B_bar[h], B_h, "float64", "B_bar")


def test_registered_discretization_is_used_and_listed():
    name = "test_forward_euler"

    def forward_euler(A, B, dt, *, integration_timesteps=None):
        A = np.asarray(A)
        return (1 + dt * A if A.ndim == 1 else np.eye(len(A)) + dt * A), dt * np.asarray(B)

    reference.register_discretization(name, forward_euler)
    try:
        assert name in reference.DISCRETIZATIONS
        a_bar, B_bar = discretize(np.array([-2.0]), np.ones((1, 1)), 0.1, name)
        assert_close(a_bar, np.array([0.8]), "float64", "a_bar")
        with pytest.raises(ValueError, match="already exists"):
            reference.register_discretization(name, forward_euler)
        with pytest.raises(ValueError, match="fn"):
            reference.register_discretization("another_name", "not callable")
    finally:  # a registration is global: leave the registry as the other tests expect it
        reference.unregister_discretization(name)
    assert name not in reference.DISCRETIZATIONS


BAD_CALLS = {
    "unknown method": (lambda: discretize([-1.0], [1.0], 0.1, "euler"), "method"),
    "A not square": (lambda: discretize(np.ones((2, 3)), np.ones((2, 1)), 0.1), "A"),
    "A has NaN": (lambda: discretize([np.nan, -1.0], [1.0, 1.0], 0.1), "A"),
    "B rows mismatch dense": (lambda: discretize(-np.eye(3), np.ones((2, 1)), 0.1), "B"),
    "B rows mismatch diagonal": (lambda: discretize([-1.0, -2.0], np.ones((3, 1)), 0.1), "B"),
    "dt zero": (lambda: discretize([-1.0], [1.0], 0.0), "dt"),
    "dt negative": (lambda: discretize([-1.0], [1.0], -0.1), "dt"),
    "dt NaN": (lambda: discretize([-1.0], [1.0], np.nan), "dt"),
    "dt inf": (lambda: discretize([-1.0], [1.0], np.inf), "dt"),
    "dt wrong shape": (lambda: discretize([-1.0, -2.0], [1.0, 1.0], [0.1, 0.2, 0.3]), "dt"),
    "dense dt wrong shape": (lambda: discretize(-np.eye(2), np.ones((2, 1)), [0.1, 0.2, 0.3]), "dt"),
    "async without timesteps": (lambda: discretize([-1.0], [1.0], 0.1, "async"), "integration_timesteps"),
    "negative gap": (
        lambda: discretize([-1.0], [1.0], 0.1, "async", integration_timesteps=[1.0, -1.0]),
        "integration_timesteps",
    ),
    "NaN gap": (
        lambda: discretize([-1.0], [1.0], 0.1, "async", integration_timesteps=[1.0, np.nan]),
        "integration_timesteps",
    ),
    "gap wrong ndim": (
        lambda: discretize([-1.0], [1.0], 0.1, "async", integration_timesteps=np.ones((1, 2, 3))),
        "integration_timesteps",
    ),
    "zero gap with zoh": (
        lambda: discretize([-1.0], [1.0], 0.1, "zoh", integration_timesteps=[1.0, 0.0]),
        "integration_timesteps",
    ),
    "async with dense A": (
        lambda: discretize(-np.eye(2), np.ones((2, 1)), 0.1, "async", integration_timesteps=[1.0]),
        "method",
    ),
    "bilinear singular": (lambda: discretize([2.0], [1.0], 1.0, "bilinear"), "bilinear"),
    "diagonal B wrong ndim": (lambda: discretize_diagonal(np.ones((2, 3)) * -1, np.ones(3), 0.1), "B"),
    "systems do not broadcast": (
        lambda: discretize_diagonal(-np.ones((2, 3)), np.ones((2, 3)), np.ones((4, 3)) * 0.1),
        "do not broadcast",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS), ids=list(BAD_CALLS))
def test_bad_input_raises_value_error_naming_the_argument(case):
    call, needle = BAD_CALLS[case]
    with pytest.raises(ValueError, match=needle):
        call()


def test_zero_gap_is_accepted_by_async_and_dirac():
    for method in ("async", "dirac"):
        a_bar, B_bar = discretize([-1.0], [1.0], 0.1, method, integration_timesteps=[0.0, 1.0])
        assert a_bar[0, 0] == 1.0 and B_bar[0, 0] != 0.0
