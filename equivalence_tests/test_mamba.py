"""The reference Mamba block: forward == step == chunked forward, causality, the official equations written
out as loops (state-spaces/mamba ``mamba_simple.py`` + ``selective_scan_ref``), the official init, and
every discretization, with and without integration_timesteps (reference/README.md §Mamba, §Identities 17, 19, 21)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st

from equivalence_tests.strategies import gaps, seeds
from equivalence_tests.tolerances import assert_close
from reference.models import Mamba

METHODS = list(Mamba.discretizations)
all_methods = st.sampled_from(METHODS)
model_lengths = st.integers(1, 17)
sizes = st.integers(1, 4)


@st.composite
def mamba_setups(draw, methods=all_methods, length=model_lengths):
    """(model, u, tau): a small Mamba, an input (B, L, H) and event gaps (always for async)."""
    method = draw(methods)
    H, N, Bsz, L = draw(sizes), draw(sizes), draw(st.integers(1, 3)), draw(length)
    model = Mamba(H, N, discretization=method, seed=draw(seeds), d_conv=draw(st.integers(1, 4)),
        expand=draw(st.sampled_from([1, 2])), conv_bias=draw(st.booleans()), bias=draw(st.booleans()))
    rng = np.random.default_rng(draw(seeds))
    u = rng.normal(size=(Bsz, L, H))
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


@given(mamba_setups())
def test_mamba_step_equals_forward(setup):
    model, u, tau = setup
    y, state = model.forward(u, integration_timesteps=tau, return_state=True)
    y_steps, state_steps = run_steps(model, u, tau)
    assert_close(y_steps, y, "float64", f"{model.discretization} outputs")
    assert_close(state_steps.conv_state, state.conv_state, "float64", "conv state")
    assert_close(state_steps.ssm_state, state.ssm_state, "float64", "ssm state")


@given(mamba_setups(length=st.integers(2, 17)), st.data())
def test_mamba_chunked_forward_equals_one_shot(setup, data):
    model, u, tau = setup
    k = data.draw(st.integers(1, u.shape[1] - 1), label="split")
    y, state = model.forward(u, integration_timesteps=tau, return_state=True)
    y1, s1 = model.forward(u[:, :k], integration_timesteps=cut(tau, slice(None, k)), return_state=True)
    y2, s2 = model.forward(
        u[:, k:], integration_timesteps=cut(tau, slice(k, None)), initial_state=s1, return_state=True
    )
    assert_close(np.concatenate([y1, y2], axis=1), y, "float64", "outputs")
    assert_close(s2.conv_state, state.conv_state, "float64", "conv state")
    assert_close(s2.ssm_state, state.ssm_state, "float64", "ssm state")
    # a forward continued by steps gives the same as well
    y2_steps, _ = run_steps(model, u[:, k:], None if tau is None else tau[:, k:], s1)
    assert_close(y2_steps, y2, "float64", "steps after a forward")


@given(mamba_setups(length=st.integers(2, 17)), st.data())
def test_mamba_forward_is_causal(setup, data):
    model, u, tau = setup
    t0 = data.draw(st.integers(1, u.shape[1] - 1), label="perturbed step")
    y = model.forward(u, integration_timesteps=tau)
    u_p = u.copy()
    u_p[:, t0:] += 1.0
    y_p = model.forward(u_p, integration_timesteps=tau)
    np.testing.assert_array_equal(y_p[:, :t0], y[:, :t0])
    assert not np.allclose(y_p[:, t0], y[:, t0])


def official_equations(model: Mamba, u):
    """The block as mamba_simple.py + selective_scan_ref compute it, one batch element, channel and step
    at a time (discretization "mamba"), with numpy.convolve for the depthwise convolution."""
    p = model.params
    Bsz, L, _ = u.shape
    D, N, R = model.d_inner, model.d_state, model.dt_rank
    out = np.zeros((Bsz, L, model.d_model))
    for b in range(Bsz):
        xz = u[b] @ p.in_proj_weight.T  # (L, 2D): x first, then z
        if p.in_proj_bias is not None:  # nn.Linear(H, 2D, bias=True)
            xz = xz + p.in_proj_bias
        x, z = xz[:, :D], xz[:, D:]
        conv_bias = np.zeros(D) if p.conv1d_bias is None else p.conv1d_bias  # nn.Conv1d(..., bias=conv_bias)
        conv = np.stack(
            [np.convolve(x[:, d], p.conv1d_weight[d, ::-1])[:L] + conv_bias[d] for d in range(D)], axis=1
        )  # (L, D): torch Conv1d(padding=W-1)[..., :L]
        x = conv * scipy.special.expit(conv)
        x_dbl = x @ p.x_proj_weight.T  # (L, R + 2N): dt, B, C in this order
        dt = np.log1p(np.exp(x_dbl[:, :R] @ p.dt_proj_weight.T + p.dt_proj_bias))  # (L, D)
        Bt, Ct = x_dbl[:, R : R + N], x_dbl[:, R + N :]
        A = -np.exp(p.A_log)
        h = np.zeros((D, N))
        for t in range(L):
            h = np.exp(dt[t][:, None] * A) * h + dt[t][:, None] * Bt[t][None, :] * x[t][:, None]
            y = h @ Ct[t] + p.D * x[t]
            out[b, t] = (y * z[t] * scipy.special.expit(z[t])) @ p.out_proj_weight.T
            if p.out_proj_bias is not None:  # nn.Linear(D, H, bias=True)
                out[b, t] += p.out_proj_bias
    return out


@given(mamba_setups(methods=st.just("mamba")))
def test_mamba_forward_matches_official_equations(setup):
    model, u, _ = setup
    assert_close(model.forward(u), official_equations(model, u), "float64", "Mamba block")


@given(mamba_setups(methods=st.just("zoh")))
def test_mamba_async_with_unit_gaps_equals_zoh(setup):
    zoh, u, _ = setup
    asy = Mamba(zoh.d_model, zoh.d_state, discretization="async", d_conv=zoh.d_conv, expand=zoh.expand)
    asy.params = zoh.params
    ones = np.ones(u.shape[1])
    assert_close(asy.forward(u, integration_timesteps=ones), zoh.forward(u), "float64", "outputs")


@given(mamba_setups(methods=st.just("dirac")))
def test_mamba_dirac_with_unit_gaps_equals_plain_dirac(setup):
    model, u, _ = setup
    ones = np.ones(u.shape[:2])
    assert_close(model.forward(u, integration_timesteps=ones), model.forward(u), "float64", "outputs")


@given(mamba_setups())
def test_mamba_unbatched_input_equals_batch_of_one(setup):
    model, u, tau = setup
    tau0 = None if tau is None else tau[0]
    y, state = model.forward(u[0], integration_timesteps=tau0, return_state=True)
    y_b, state_b = model.forward(u[:1], integration_timesteps=None if tau is None else tau[:1], return_state=True)
    assert_close(y, y_b[0], "float64", "outputs")
    assert_close(state.ssm_state, state_b.ssm_state[0], "float64", "ssm state")


@given(st.integers(1, 40), sizes, seeds, st.sampled_from([1, 2, 3]))
def test_mamba_init_follows_the_official_recipe(H, N, seed, expand):
    model = Mamba(H, N, seed=seed, expand=expand)
    p, D, R = model.params, expand * H, math.ceil(H / 16)
    assert (model.d_inner, model.dt_rank) == (D, R)
    shapes = {
        "in_proj_weight": (2 * D, H),
        "conv1d_weight": (D, 4),
        "conv1d_bias": (D,),
        "x_proj_weight": (R + 2 * N, D),
        "dt_proj_weight": (D, R),
        "dt_proj_bias": (D,),
        "A_log": (D, N),
        "D": (D,),
        "out_proj_weight": (H, D),
    }
    assert {k: getattr(p, k).shape for k in shapes} == shapes
    assert_close(-np.exp(p.A_log), -np.tile(np.arange(1.0, N + 1), (D, 1)), "float64", "A = S4D-real")
    assert_close(p.D, np.ones(D), "float64", "D")
    dt0 = np.log1p(np.exp(p.dt_proj_bias))  # softplus(bias) = the initial step
    assert np.all((dt0 >= 1e-3 * (1 - 1e-12)) & (dt0 <= 1e-1 * (1 + 1e-12)))
    assert np.all(np.abs(p.dt_proj_weight) <= R**-0.5)
    assert np.all(np.abs(p.in_proj_weight) <= 1 / math.sqrt(H)) and np.all(np.abs(p.conv1d_weight) <= 0.5)


@given(st.integers(1, 40), sizes, seeds)
def test_mamba_bias_options_follow_the_official_layout_and_leave_the_other_draws(H, N, seed):
    # mamba_ssm: in_proj = nn.Linear(H, 2D, bias=bias), out_proj = nn.Linear(D, H, bias=bias) (default False),
    # conv1d = nn.Conv1d(..., bias=conv_bias) (default True); torch's Linear bias init U[-1/sqrt(fan_in), ...]
    plain = Mamba(H, N, seed=seed)
    assert plain.params.in_proj_bias is None and plain.params.out_proj_bias is None
    biased = Mamba(H, N, seed=seed, bias=True, conv_bias=False)
    p, D = biased.params, 2 * H
    assert p.conv1d_bias is None
    assert p.in_proj_bias.shape == (2 * D,) and p.out_proj_bias.shape == (H,)
    assert np.all(np.abs(p.in_proj_bias) <= 1 / math.sqrt(H)) and np.all(np.abs(p.out_proj_bias) <= 1 / math.sqrt(D))
    for name in ("in_proj_weight", "conv1d_weight", "x_proj_weight", "dt_proj_weight", "dt_proj_bias", "A_log", "D",
                 "out_proj_weight"):  # the flags change no other parameter's draw
        np.testing.assert_array_equal(getattr(p, name), getattr(plain.params, name), err_msg=name)
    assert (biased.config["bias"], biased.config["conv_bias"]) == (True, False)


def test_mamba_output_bias_adds_to_the_output_and_a_zero_bias_changes_nothing():
    rng = np.random.default_rng(3)
    u = rng.normal(size=(2, 6, 3))
    plain, biased = Mamba(3, 2, seed=1), Mamba(3, 2, seed=1, bias=True)
    biased.params.in_proj_bias = np.zeros_like(biased.params.in_proj_bias)
    np.testing.assert_array_equal(biased.forward(u), plain.forward(u) + biased.params.out_proj_bias)
    no_conv_bias = Mamba(3, 2, seed=1, conv_bias=False)
    plain.params.conv1d_bias = np.zeros_like(plain.params.conv1d_bias)
    np.testing.assert_array_equal(no_conv_bias.forward(u), plain.forward(u))


def test_mamba_declares_its_discretizations_and_refuses_others():
    assert Mamba.default_discretization == "mamba" and Mamba(2).discretization == "mamba"
    assert set(Mamba.discretizations) == {"mamba", "zoh", "bilinear", "dirac", "async"}
    with pytest.raises(ValueError, match=r"Mamba.*'euler'.*supported.*mamba"):
        Mamba(2, 4, discretization="euler")


def _model_and_input(method="mamba", L=3):
    model = Mamba(2, 3, discretization=method, d_conv=2)
    return model, np.ones((2, L, 2))


BAD_CALLS = {
    "d_state zero": (lambda: Mamba(2, 0), "d_state"),
    "d_state float": (lambda: Mamba(2, 2.5), "d_state"),
    "d_model zero": (lambda: Mamba(0, 4), "d_model"),
    "expand zero": (lambda: Mamba(2, 4, expand=0), "expand"),
    "expand negative": (lambda: Mamba(2, 4, expand=-1), "expand"),
    "expand not giving an integer width": (lambda: Mamba(3, 4, expand=0.5), "expand"),
    "expand string": (lambda: Mamba(3, 4, expand="2"), "expand"),
    "bias not a bool": (lambda: Mamba(3, 4, bias=1), "bias"),
    "conv_bias not a bool": (lambda: Mamba(3, 4, conv_bias="yes"), "conv_bias"),
    "d_conv zero": (lambda: Mamba(2, 4, d_conv=0), "d_conv"),
    "dt_rank zero": (lambda: Mamba(2, 4, dt_rank=0), "dt_rank"),
    "dt_min above dt_max": (lambda: Mamba(2, 4, dt_min=0.2, dt_max=0.1), "dt_min"),
    "u wrong width": (lambda: _model_and_input()[0].forward(np.ones((2, 3, 5))), "u"),
    "u empty": (lambda: _model_and_input()[0].forward(np.ones((2, 0, 2))), "u"),
    "gaps wrong shape": (
        lambda: _model_and_input()[0].forward(np.ones((2, 3, 2)), integration_timesteps=np.ones(4)),
        "integration_timesteps",
    ),
    "gaps negative": (
        lambda: _model_and_input()[0].forward(np.ones((2, 3, 2)), integration_timesteps=-np.ones(3)),
        "integration_timesteps",
    ),
    "gaps NaN": (
        lambda: _model_and_input()[0].forward(np.ones((2, 3, 2)), integration_timesteps=np.full(3, np.nan)),
        "integration_timesteps",
    ),
    "zero gap with mamba": (
        lambda: _model_and_input()[0].forward(np.ones((2, 3, 2)), integration_timesteps=np.zeros(3)),
        "integration_timesteps",
    ),
    "zero gap with zoh in step": (
        lambda: Mamba(2, 3, discretization="zoh").step(np.ones((2, 2)), Mamba(2, 3).initial_state(2),
            integration_timesteps=[0, 1]),
        "integration_timesteps",
    ),
    "async without gaps": (lambda: Mamba(2, 3, discretization="async").forward(np.ones((2, 3, 2))),
        "integration_timesteps"),
    "async step without gaps": (
        lambda: Mamba(2, 3, discretization="async").step(np.ones((2, 2)), Mamba(2, 3).initial_state(2)),
        "integration_timesteps",
    ),
    "step gaps wrong shape": (
        lambda: Mamba(2, 3).step(np.ones((2, 2)), Mamba(2, 3).initial_state(2), integration_timesteps=np.ones((2, 1))),
        "integration_timesteps",
    ),
    "step u_t wrong shape": (lambda: Mamba(2, 3).step(np.ones((2, 1, 2)), Mamba(2, 3).initial_state(2)), "u_t"),
    "state wrong batch": (lambda: Mamba(2, 3).step(np.ones((2, 2)), Mamba(2, 3).initial_state(3)), "state"),
    "initial state not a state": (
        lambda: Mamba(2, 3).forward(np.ones((2, 3, 2)), initial_state=np.zeros((2, 4, 3))),
        "initial_state",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS), ids=list(BAD_CALLS))
def test_mamba_bad_input_raises_value_error_naming_the_argument(case):
    call, needle = BAD_CALLS[case]
    with pytest.raises(ValueError, match=needle):
        call()
