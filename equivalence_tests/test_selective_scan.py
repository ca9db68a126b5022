"""reference.selective_scan (Mamba's selective SSM) against an explicit loop, the LTI S4D-real system it
reduces to when dt, B and C do not depend on the token, and the limits and identities of reference/README.md
§async, §Identities 6, 7, 17, 22, 19, 21."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st

from equivalence_tests.strategies import gaps, lengths, seeds
from equivalence_tests.tolerances import assert_close
from reference import DiscreteSSM, discretize, selective_scan

METHODS = ["mamba", "zoh", "bilinear", "dirac", "async"]
sizes = st.integers(1, 4)


def s4d_real(D: int, N: int) -> np.ndarray:
    """A = -(n + 1) for every channel: Mamba's S4D-real initialization."""
    return -np.tile(np.arange(1.0, N + 1), (D, 1))  # (D, N)


def random_problem(seed, Bsz, L, D, N, method, *, with_gaps=False):
    """Arguments of selective_scan drawn from a seed; gaps when the method needs them (or on request)."""
    rng = np.random.default_rng(seed)
    args = dict(
        u=rng.normal(size=(Bsz, L, D)),
        dt=np.exp(rng.uniform(np.log(1e-2), np.log(1.0), size=(Bsz, L, D))),
        A=s4d_real(D, N) * rng.uniform(0.5, 2.0, size=(D, N)),
        B=rng.normal(size=(Bsz, L, N)),
        C=rng.normal(size=(Bsz, L, N)),
        D=rng.normal(size=D),
        z=rng.normal(size=(Bsz, L, D)),
    )
    tau = rng.uniform(0.05, 3.0, size=(Bsz, L)) if (with_gaps or method == "async") else None
    if tau is not None and method in ("async", "dirac") and rng.uniform() < 0.5:
        tau[:, rng.integers(L)] = 0.0  # simultaneous events: only rules that keep the input accept them
    return args, tau, rng.normal(size=(Bsz, D, N))


def rule(method, lam, dt, tau):
    """(a_bar, gamma) for one eigenvalue, step and gap, written out from reference/README.md §zoh to §async
    (not the library)."""
    step = dt * tau
    if method == "mamba":
        return np.exp(step * lam), step
    if method == "zoh":
        return np.exp(step * lam), np.expm1(step * lam) / lam
    if method == "bilinear":
        return (1 + step * lam / 2) / (1 - step * lam / 2), step / (1 - step * lam / 2)
    if method == "dirac":
        return np.exp(step * lam), 1.0
    if method == "async":
        return np.exp(step * lam), np.expm1(dt * lam) / lam
    raise AssertionError(method)


@given(seeds, sizes, lengths, sizes, sizes, st.sampled_from(METHODS), st.booleans(), st.booleans())
def test_selective_scan_matches_explicit_loop(seed, Bsz, L, D, N, method, with_gaps, with_state):
    args, tau, x0 = random_problem(seed, Bsz, L, D, N, method, with_gaps=with_gaps)
    x0 = x0 if with_state else None
    y, state = selective_scan(**args, method=method, integration_timesteps=tau, initial_state=x0, return_state=True)
    u, dt, A, B, C = args["u"], args["dt"], args["A"], args["B"], args["C"]
    y_loop = np.zeros((Bsz, L, D))
    state_loop = np.zeros((Bsz, D, N)) if x0 is None else x0.copy()
    for b in range(Bsz):
        for d in range(D):
            for n in range(N):
                x = state_loop[b, d, n]
                for t in range(L):
                    a_bar, gamma = rule(method, A[d, n], dt[b, t, d], 1.0 if tau is None else tau[b, t])
                    x = a_bar * x + gamma * B[b, t, n] * u[b, t, d]
                    y_loop[b, t, d] += C[b, t, n] * x
                state_loop[b, d, n] = x
    y_loop = (y_loop + args["D"] * u) * args["z"] / (1 + np.exp(-args["z"]))
    assert_close(y, y_loop, "float64", f"{method} output")
    assert_close(state, state_loop, "float64", f"{method} final state")


@given(seeds, sizes, lengths, sizes, sizes, st.sampled_from(["mamba", "zoh", "bilinear", "dirac"]), st.booleans())
def test_selective_scan_with_fixed_dt_B_C_matches_lti_s4d_real_oracle(seed, Bsz, L, D, N, method, gate):
    # dt, B, C that do not change with the token: every channel is the LTI system (A_bar, B_bar, C, D)
    # of S4D-real under the same rule. Oracle: its impulse response (powers of A_bar) convolved with u.
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(Bsz, L, D))
    dt_channel = np.exp(rng.uniform(np.log(1e-2), np.log(1.0), size=D))  # (D,)
    B_vec, C_vec, D_skip = rng.normal(size=N), rng.normal(size=N), rng.normal(size=D)
    z = rng.normal(size=(Bsz, L, D)) if gate else None
    A = s4d_real(D, N)
    y = selective_scan(
        u,
        np.broadcast_to(dt_channel, (Bsz, L, D)),
        A,
        np.broadcast_to(B_vec, (Bsz, L, N)),
        np.broadcast_to(C_vec, (Bsz, L, N)),
        D_skip,
        z,
        method=method,
    )
    expected = np.zeros((Bsz, L, D))
    for d in range(D):
        A_bar, B_bar = discretize(A[d], B_vec[:, None], dt_channel[d], method)  # (N,), (N, 1)
        lti = DiscreteSSM(A_bar, B_bar, C_vec[None, :], np.array([[D_skip[d]]]), "plain")
        h = lti.impulse_response(L)[:, 0, 0]  # (L,)
        for b in range(Bsz):
            expected[b, :, d] = np.convolve(u[b, :, d], h)[:L]
    if gate:
        expected = expected * z * scipy.special.expit(z)
    assert_close(y, expected, "float64", f"{method} selective scan vs LTI S4D-real")


@given(seeds, sizes, lengths, sizes, sizes, st.sampled_from(METHODS))
def test_selective_scan_with_dt_to_zero_keeps_the_state(seed, Bsz, L, D, N, method):
    # a_bar -> 1 and B_bar -> 0 as dt -> 0 (reference/README.md §Identities 6). Dirac injects B whatever dt (gamma = 1),
    # so for dirac the claim is made with zero input.
    args, tau, x0 = random_problem(seed, Bsz, L, D, N, method)
    args["dt"] = np.full((Bsz, L, D), 1e-14)
    if method == "dirac":
        args["u"] = np.zeros_like(args["u"])
    _, state = selective_scan(**args, method=method, integration_timesteps=tau, initial_state=x0, return_state=True)
    assert_close(state, x0, "float64", f"{method} state after dt -> 0")


@given(seeds, sizes, lengths, sizes, sizes, st.sampled_from(["mamba", "zoh", "dirac", "async"]))
def test_selective_scan_with_large_dt_forgets_the_state(seed, Bsz, L, D, N, method):
    # a_bar = exp(dt A) underflows to 0 for dt = 1e4: outputs and the final state no longer depend on the
    # initial state. (Bilinear does not forget: a_bar -> -1, see the next test.)
    args, tau, x0 = random_problem(seed, Bsz, L, D, N, method)
    args["dt"] = np.full((Bsz, L, D), 1e4)
    if tau is not None:
        tau = np.maximum(tau, 0.05)  # a zero gap means "no time passes": nothing to forget
    y_a, s_a = selective_scan(**args, method=method, integration_timesteps=tau, initial_state=x0, return_state=True)
    y_b, s_b = selective_scan(
        **args, method=method, integration_timesteps=tau, initial_state=-3 * x0, return_state=True
    )
    assert_close(s_a, s_b, "float64", f"{method} final state")
    assert_close(y_a, y_b, "float64", f"{method} outputs")


@given(seeds, sizes, lengths, sizes, sizes)
def test_selective_scan_bilinear_with_large_dt_flips_the_state_instead_of_forgetting(seed, Bsz, L, D, N):
    # Tustin maps lambda * dt -> -inf to a_bar -> -1: the initial state survives with alternating sign.
    args, _, x0 = random_problem(seed, Bsz, L, D, N, "bilinear")
    args["dt"] = np.full((Bsz, L, D), 1e14)
    _, s_a = selective_scan(**args, method="bilinear", initial_state=x0, return_state=True)
    _, s_0 = selective_scan(**args, method="bilinear", return_state=True)
    assert_close(s_a - s_0, (-1.0) ** L * x0, "float64", "surviving initial state")


@given(seeds, sizes, lengths, sizes, sizes, st.booleans())
def test_selective_scan_async_with_unit_gaps_equals_zoh(seed, Bsz, L, D, N, shared_gaps):
    args, _, x0 = random_problem(seed, Bsz, L, D, N, "zoh")
    ones = np.ones(L) if shared_gaps else np.ones((Bsz, L))
    y_async, s_async = selective_scan(
        **args, method="async", integration_timesteps=ones, initial_state=x0, return_state=True
    )
    y_zoh, s_zoh = selective_scan(**args, method="zoh", initial_state=x0, return_state=True)
    assert_close(y_async, y_zoh, "float64", "outputs")
    assert_close(s_async, s_zoh, "float64", "final state")


@given(seeds, sizes, lengths, sizes, sizes)
def test_selective_scan_dirac_with_unit_gaps_equals_plain_dirac(seed, Bsz, L, D, N):
    args, _, x0 = random_problem(seed, Bsz, L, D, N, "dirac")
    y_gaps, s_gaps = selective_scan(
        **args, method="dirac", integration_timesteps=np.ones((Bsz, L)), initial_state=x0, return_state=True
    )
    y_plain, s_plain = selective_scan(**args, method="dirac", initial_state=x0, return_state=True)
    assert_close(y_gaps, y_plain, "float64", "outputs")
    assert_close(s_gaps, s_plain, "float64", "final state")


@given(seeds, sizes, sizes, sizes, st.sampled_from(["async", "zoh", "dirac", "mamba"]), gaps(2, batch=1))
def test_selective_scan_two_gaps_with_zero_input_equal_one_gap(seed, Bsz, D, N, method, tau):
    # With no input the state only decays: exp(lambda dt tau1) exp(lambda dt tau2) = exp(lambda dt (tau1 + tau2)).
    rng = np.random.default_rng(seed)
    A, x0 = s4d_real(D, N), rng.normal(size=(Bsz, D, N))
    dt = np.exp(rng.uniform(np.log(1e-2), np.log(1.0), size=(Bsz, 1, D)))
    tau1, tau2 = tau[0]

    def final_state(gap_list):
        L = len(gap_list)
        common = dict(
            u=np.zeros((Bsz, L, D)),
            dt=np.broadcast_to(dt, (Bsz, L, D)),
            A=A,
            B=np.broadcast_to(rng.normal(size=N), (Bsz, L, N)),
            C=np.ones((Bsz, L, N)),
        )
        return selective_scan(
            **common, method=method, integration_timesteps=np.array(gap_list), initial_state=x0, return_state=True
        )[1]

    assert_close(final_state([tau1, tau2]), final_state([tau1 + tau2]), "float64", f"{method} state")


@given(seeds, sizes, st.integers(2, 33), sizes, sizes, st.sampled_from(METHODS), st.data())
def test_selective_scan_chunked_with_state_carried_equals_one_shot(seed, Bsz, L, D, N, method, data):
    args, tau, x0 = random_problem(seed, Bsz, L, D, N, method)
    k = data.draw(st.integers(1, L - 1), label="split")
    y, state = selective_scan(**args, method=method, integration_timesteps=tau, initial_state=x0, return_state=True)
    first = {name: (v if name in ("A", "D") else v[:, :k]) for name, v in args.items()}
    second = {name: (v if name in ("A", "D") else v[:, k:]) for name, v in args.items()}
    y1, s1 = selective_scan(
        **first,
        method=method,
        integration_timesteps=None if tau is None else tau[:, :k],
        initial_state=x0,
        return_state=True,
    )
    y2, s2 = selective_scan(
        **second,
        method=method,
        integration_timesteps=None if tau is None else tau[:, k:],
        initial_state=s1,
        return_state=True,
    )
    assert_close(np.concatenate([y1, y2], axis=1), y, "float64", "outputs")
    assert_close(s2, state, "float64", "final state")


@given(seeds, sizes, st.integers(2, 33), sizes, sizes, st.sampled_from(METHODS), st.data())
def test_selective_scan_is_causal(seed, Bsz, L, D, N, method, data):
    args, tau, _ = random_problem(seed, Bsz, L, D, N, method)
    t0 = data.draw(st.integers(1, L - 1), label="perturbed step")
    y = selective_scan(**args, method=method, integration_timesteps=tau)
    perturbed = {k: v.copy() for k, v in args.items()}
    for name in ("u", "dt", "B", "C", "z"):
        perturbed[name][:, t0:] += 1.0
    y_p = selective_scan(**perturbed, method=method, integration_timesteps=tau)
    np.testing.assert_array_equal(y_p[:, :t0], y[:, :t0])
    assert not np.allclose(y_p[:, t0:], y[:, t0:])


def test_selective_scan_without_D_and_z_returns_the_plain_readout():
    args, _, _ = random_problem(0, 2, 1, 3, 2, "mamba")  # L = 1
    y, state = selective_scan(args["u"], args["dt"], args["A"], args["B"], args["C"], return_state=True)
    expected_state = args["dt"][:, 0, :, None] * args["B"][:, 0, None, :] * args["u"][:, 0, :, None]  # (B, D, N)
    assert state.shape == (2, 3, 2)
    assert_close(state, expected_state, "float64", "state after one token from zero")
    assert_close(y[:, 0], np.einsum("bdn,bn->bd", expected_state, args["C"][:, 0]), "float64", "output")


def _bad(**changes):
    args, _, _ = random_problem(0, 2, 3, 2, 2, "mamba")
    kwargs = dict(method="mamba")
    for key, value in changes.items():
        (args if key in args else kwargs)[key] = value
    return lambda: selective_scan(**args, **kwargs)


BAD_CALLS = {
    "u 2-D": (_bad(u=np.ones((3, 2))), "u"),
    "u empty L": (_bad(u=np.ones((2, 0, 2))), "u"),
    "u NaN": (_bad(u=np.full((2, 3, 2), np.nan)), "u"),
    "dt wrong shape": (_bad(dt=np.ones((2, 3))), "dt"),
    "dt zero": (_bad(dt=np.zeros((2, 3, 2))), "dt"),
    "dt negative": (_bad(dt=-np.ones((2, 3, 2))), "dt"),
    "A wrong channels": (_bad(A=-np.ones((3, 2))), "A"),
    "A complex": (_bad(A=-np.ones((2, 2)) + 1j), "A"),
    "B wrong N": (_bad(B=np.ones((2, 3, 3))), "B"),
    "C wrong L": (_bad(C=np.ones((2, 4, 2))), "C"),
    "D wrong shape": (_bad(D=np.ones(3)), "D"),
    "z wrong shape": (_bad(z=np.ones((2, 3, 1))), "z"),
    "unknown method": (_bad(method="euler"), "method"),
    "gaps wrong shape": (_bad(integration_timesteps=np.ones((2, 4))), "integration_timesteps"),
    "gaps 3-D": (_bad(integration_timesteps=np.ones((2, 3, 1))), "integration_timesteps"),
    "gaps negative": (_bad(integration_timesteps=np.array([1.0, -1.0, 1.0])), "integration_timesteps"),
    "gaps NaN": (_bad(integration_timesteps=np.array([1.0, np.nan, 1.0])), "integration_timesteps"),
    "gaps inf": (_bad(integration_timesteps=np.array([1.0, np.inf, 1.0])), "integration_timesteps"),
    "zero gap with mamba": (_bad(integration_timesteps=np.array([1.0, 0.0, 1.0])), "integration_timesteps"),
    "zero gap with zoh": (_bad(method="zoh", integration_timesteps=np.zeros(3)), "integration_timesteps"),
    "zero gap with bilinear": (_bad(method="bilinear", integration_timesteps=np.zeros(3)), "integration_timesteps"),
    "async without gaps": (_bad(method="async"), "integration_timesteps"),
    "initial state wrong shape": (_bad(initial_state=np.zeros((2, 2))), "initial_state"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS), ids=list(BAD_CALLS))
def test_selective_scan_bad_input_raises_value_error_naming_the_argument(case):
    call, needle = BAD_CALLS[case]
    with pytest.raises(ValueError, match=needle):
        call()
