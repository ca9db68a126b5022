"""The reference S7 (official-code definition, reference/README.md §S7): forward == step == chunked forward,
causality, the official discretize_zoh / discretize_dirac / discretize_async written out, the LTI S5-style
system it reduces to when the selection is switched off, the event identities (§1.4, §11 items 7, 25)
and the HiPPO-N init, for every discretization."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from equivalence_tests.strategies import gaps, seeds
from equivalence_tests.tolerances import assert_close
from reference import DiscreteSSM, discretize
from reference.init import nplr_legs
from reference.models import S7

METHODS = list(S7.discretizations)
all_methods = st.sampled_from(METHODS)
model_lengths = st.integers(1, 17)


@st.composite
def s7_setups(draw, methods=all_methods, length=model_lengths):
    """(model, u, tau): a small S7, an input (B, L, H) and event gaps (always for async)."""
    method = draw(methods)
    conj_sym = draw(st.booleans())
    block = draw(st.integers(1, 3)) * (2 if conj_sym else 1)
    d_state = block * draw(st.integers(1, 2))
    model = S7(draw(st.integers(1, 3)), d_state, discretization=method, seed=draw(seeds), block_size=block,
        conj_sym=conj_sym)
    Bsz, L = draw(st.integers(1, 3)), draw(length)
    u = np.random.default_rng(draw(seeds)).normal(size=(Bsz, L, model.d_model))
    tau = None
    if method == "async" or draw(st.booleans()):
        tau = draw(gaps(L, batch=Bsz, allow_zero=method in ("async", "dirac")))
    return model, u, tau


def cut(a, s):
    """a[:, s], or None for a missing argument."""
    return None if a is None else a[:, s]


def run_steps(model, u, tau, state=None):
    state = model.initial_state(u.shape[0]) if state is None else state
    ys = []
    for t in range(u.shape[1]):
        y_t, state = model.step(u[:, t], state, integration_timesteps=None if tau is None else tau[:, t])
        ys.append(y_t)
    return np.stack(ys, axis=1), state


@given(s7_setups())
def test_s7_step_equals_forward(setup):
    model, u, tau = setup
    y, state = model.forward(u, integration_timesteps=tau, return_state=True)
    y_steps, state_steps = run_steps(model, u, tau)
    assert_close(y_steps, y, "float64", f"{model.discretization} outputs")
    assert_close(state_steps, state, "complex128", "final state")


@given(s7_setups(length=st.integers(2, 17)), st.data())
def test_s7_chunked_forward_equals_one_shot(setup, data):
    model, u, tau = setup
    k = data.draw(st.integers(1, u.shape[1] - 1), label="split")
    y, state = model.forward(u, integration_timesteps=tau, return_state=True)
    y1, s1 = model.forward(u[:, :k], integration_timesteps=cut(tau, slice(None, k)), return_state=True)
    y2, s2 = model.forward(
        u[:, k:], integration_timesteps=cut(tau, slice(k, None)), initial_state=s1, return_state=True
    )
    assert_close(np.concatenate([y1, y2], axis=1), y, "float64", "outputs")
    assert_close(s2, state, "complex128", "final state")


@given(s7_setups(length=st.integers(2, 17)), st.data())
def test_s7_forward_is_causal(setup, data):
    model, u, tau = setup
    t0 = data.draw(st.integers(1, u.shape[1] - 1), label="perturbed step")
    y = model.forward(u, integration_timesteps=tau)
    u_p = u.copy()
    u_p[:, t0:] += 1.0
    y_p = model.forward(u_p, integration_timesteps=tau)
    np.testing.assert_array_equal(y_p[:, :t0], y[:, :t0])
    assert not np.allclose(y_p[:, t0], y[:, t0])


def official_s7(model: S7, u, tau):
    """S7SSM.__call__ of TaylanSoydan/S7 (input_dependent, one sequence at a time) with its three
    discretize_* functions, as loops over the tokens."""
    p, H, P, R = model.params, model.d_model, model.local_P, model.dt_rank
    Lambda = p.Lambda_re + 1j * p.Lambda_im

    def discretize_fn(step, time_delta):
        if model.discretization == "zoh":
            Lambda_bar = np.exp(Lambda * step * time_delta)
            return Lambda_bar, (Lambda_bar - 1) / Lambda
        if model.discretization == "dirac":
            return np.exp(Lambda * step * time_delta), 1.0
        if model.discretization == "async":
            return np.exp(Lambda * step * time_delta), (np.exp(Lambda * step) - 1) / Lambda
        raise AssertionError(model.discretization)

    Bsz, L, _ = u.shape
    out = np.zeros((Bsz, L, H))
    for b in range(Bsz):
        x = np.zeros(P, dtype=complex)
        for t in range(L):
            x_dbl = u[b, t] @ p.x_proj_kernel + p.x_proj_bias
            step, B_projected, C_projected = np.split(x_dbl, [R, 2 * H * P + R])
            step = np.log1p(np.exp(step @ p.step_proj_kernel + p.step_proj_bias))
            B_r = B_projected.reshape(P, H, 2)
            C_r = C_projected.reshape(H, P, 2)
            B_t, C_t = B_r[..., 0] + 1j * B_r[..., 1], C_r[..., 0] + 1j * C_r[..., 1]
            Lambda_bar, gamma_bar = discretize_fn(model.step_rescale * step, 1.0 if tau is None else tau[b, t])
            x = Lambda_bar * x + gamma_bar * (B_t @ u[b, t])
            scale = 2 if model.conj_sym else 1
            out[b, t] = scale * (C_t @ x).real + p.D * u[b, t]
    return out


@given(s7_setups(methods=st.sampled_from(["zoh", "dirac", "async"])))
def test_s7_forward_matches_official_discretizations(setup):
    model, u, tau = setup
    assert_close(model.forward(u, integration_timesteps=tau), official_s7(model, u, tau), "float64", "S7")


@given(s7_setups(methods=st.sampled_from(["zoh", "bilinear", "dirac"])), seeds)
def test_s7_without_selection_matches_lti_system_oracle(setup, seed):
    # With a zero x_proj kernel, dt, B and C come from the biases alone: S7 is the LTI MIMO system
    # (discretize(Lambda, B, dt per state), C, diag(D)) read out as 2 Re / Re. Oracle: its impulse response
    # (powers of A_bar) convolved with u by a direct sum.
    model, u, _ = setup
    p, H, P, R = model.params, model.d_model, model.local_P, model.dt_rank
    p.x_proj_kernel[:] = 0.0
    p.x_proj_bias[:] = np.random.default_rng(seed).normal(size=p.x_proj_bias.shape)
    dt = np.log1p(np.exp(p.x_proj_bias[:R] @ p.step_proj_kernel + p.step_proj_bias))  # (P,)
    B_r = p.x_proj_bias[R : R + 2 * P * H].reshape(P, H, 2)
    C_r = p.x_proj_bias[R + 2 * P * H :].reshape(H, P, 2)
    A_bar, B_bar = discretize(p.Lambda_re + 1j * p.Lambda_im, B_r[..., 0] + 1j * B_r[..., 1], dt, model.discretization)
    lti = DiscreteSSM(A_bar, B_bar, C_r[..., 0] + 1j * C_r[..., 1], np.diag(p.D), "2re" if model.conj_sym else "re")
    Bsz, L, _ = u.shape
    h = lti.impulse_response(L)  # (L, H, H)
    expected = np.stack([sum(u[:, t - j] @ h[j].T for j in range(t + 1)) for t in range(L)], axis=1)
    assert_close(model.forward(u), expected, "float64", f"{model.discretization} S7 vs LTI oracle")


@given(s7_setups(methods=st.just("zoh")))
def test_s7_async_with_unit_gaps_equals_zoh(setup):
    zoh, u, _ = setup
    asy = S7(zoh.d_model, zoh.d_state, discretization="async", block_size=zoh.block_size, conj_sym=zoh.conj_sym)
    asy.params = zoh.params
    assert_close(asy.forward(u, integration_timesteps=np.ones(u.shape[:2])), zoh.forward(u), "float64", "outputs")


@given(s7_setups(methods=st.just("dirac")))
def test_s7_dirac_with_unit_gaps_equals_plain_dirac(setup):
    model, u, _ = setup
    assert_close(model.forward(u, integration_timesteps=np.ones(u.shape[1])), model.forward(u), "float64", "outputs")


@given(s7_setups(methods=st.sampled_from(["async", "zoh", "dirac"])), gaps(2, batch=1), seeds)
def test_s7_two_gaps_with_zero_input_equal_one_gap(setup, tau, seed):
    # Zero input: dt = softplus(bias) is the same at every token and nothing is injected, so the state only
    # decays, exp(Lambda dt tau1) exp(Lambda dt tau2) = exp(Lambda dt (tau1 + tau2)).
    model, u, _ = setup
    Bsz, H = u.shape[0], model.d_model
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=(Bsz, model.local_P)) + 1j * rng.normal(size=(Bsz, model.local_P))
    tau1, tau2 = tau[0]
    _, two = model.forward(
        np.zeros((Bsz, 2, H)), integration_timesteps=[tau1, tau2], initial_state=x0, return_state=True
    )
    _, one = model.forward(
        np.zeros((Bsz, 1, H)), integration_timesteps=[tau1 + tau2], initial_state=x0, return_state=True
    )
    assert_close(two, one, "complex128", f"{model.discretization} state")


@given(st.integers(1, 4), st.integers(1, 4), st.booleans(), seeds)
def test_s7_init_is_hippo_n_tiled_per_block(half_block, blocks, conj_sym, seed):
    block = 2 * half_block
    model = S7(3, block * blocks, seed=seed, block_size=block, conj_sym=conj_sym)
    p = model.params
    Lambda_block = nplr_legs(block)[0]
    kept = Lambda_block[:half_block] if conj_sym else Lambda_block
    assert_close(p.Lambda_re + 1j * p.Lambda_im, np.tile(kept, blocks), "complex128", "Lambda")
    assert_close(p.Lambda_re, np.full(model.local_P, -0.5), "float64", "Re Lambda = -1/2 (HiPPO-N)")
    if conj_sym:
        assert np.all(p.Lambda_im <= 0) and model.local_P == block * blocks // 2
    dt0 = np.log1p(np.exp(p.step_proj_bias))
    assert np.all((dt0 >= 1e-3 * (1 - 1e-12)) & (dt0 <= 1e-1 * (1 + 1e-12)))
    H, P, R = 3, model.local_P, model.dt_rank
    assert p.x_proj_kernel.shape == (H, R + 4 * P * H) and p.step_proj_kernel.shape == (R, P)
    assert np.all(np.abs(p.x_proj_kernel) <= 2 / np.sqrt(H) / 0.87962566103423978)  # truncated at 2 std


def test_s7_clip_eigs_keeps_the_real_part_below_minus_1e_4():
    model = S7(2, 4, clip_eigs=True)
    model.params.Lambda_re[:] = 0.3
    assert np.all(model.Lambda().real == -1e-4)


def test_s7_declares_its_discretizations_and_refuses_others():
    assert S7.default_discretization == "zoh" and S7(2, 4).discretization == "zoh"
    assert set(S7.discretizations) == {"zoh", "bilinear", "dirac", "async"}
    with pytest.raises(ValueError, match=r"S7.*'mamba'.*supported.*zoh"):
        S7(2, 4, discretization="mamba")


def _forward(method="zoh", **kwargs):
    return lambda: S7(2, 4, discretization=method).forward(np.ones((2, 3, 2)), **kwargs)


BAD_CALLS = {
    "d_state odd with conj_sym": (lambda: S7(2, 3), "d_state"),
    "d_state zero": (lambda: S7(2, 0), "d_state"),
    "block_size not dividing": (lambda: S7(2, 8, block_size=3), "block_size"),
    "dt_min above dt_max": (lambda: S7(2, 4, dt_min=0.5, dt_max=0.1), "dt_min"),
    "u wrong width": (lambda: S7(2, 4).forward(np.ones((2, 3, 3))), "u"),
    "gaps wrong shape": (_forward(integration_timesteps=np.ones((3, 3))), "integration_timesteps"),
    "gaps negative": (_forward(integration_timesteps=-np.ones(3)), "integration_timesteps"),
    "gaps NaN": (_forward(integration_timesteps=np.full(3, np.nan)), "integration_timesteps"),
    "zero gap with zoh": (_forward(integration_timesteps=np.array([1.0, 0.0, 1.0])), "integration_timesteps"),
    "zero gap with bilinear": (_forward("bilinear", integration_timesteps=np.zeros(3)), "integration_timesteps"),
    "async without gaps": (_forward("async"), "integration_timesteps"),
    "async step without gaps": (
        lambda: S7(2, 4, discretization="async").step(np.ones((2, 2)), S7(2, 4).initial_state(2)),
        "integration_timesteps",
    ),
    "step gaps wrong shape": (
        lambda: S7(2, 4).step(np.ones((2, 2)), S7(2, 4).initial_state(2), integration_timesteps=np.ones(3)),
        "integration_timesteps",
    ),
    "initial state wrong shape": (_forward(initial_state=np.zeros((2, 4))), "initial_state"),
    "step state wrong shape": (lambda: S7(2, 4).step(np.ones((2, 2)), np.zeros((2, 3))), "state"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS), ids=list(BAD_CALLS))
def test_s7_bad_input_raises_value_error_naming_the_argument(case):
    call, needle = BAD_CALLS[case]
    with pytest.raises(ValueError, match=needle):
        call()
