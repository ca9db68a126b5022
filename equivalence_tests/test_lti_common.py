"""Properties every reference LTI model must have, for every discretization it supports (issue 3):

* its forward modes agree with each other and with a loop of ``step`` calls;
* impulse_response == kernel + D delta == scipy.signal.dimpulse(to_dlti()), and the model's own kernel
  algorithm == brute-force powers of its discrete matrices;
* frequency_response == scipy.signal.dfreqresp(to_dlti()) and == the formula by linear solves;
* chunked forward with the state carried == one-shot forward; causality; time invariance;
* every initialized model is stable; LTI models refuse async and unknown discretizations.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference.models
from equivalence_tests.oracles import dfreqresp_mimo, dimpulse_mimo, formula_by_solves
from equivalence_tests.strategies import lengths, seeds
from equivalence_tests.tolerances import assert_close

LTI_NAMES = ["S4", "S4D", "S5", "LRU", "Centaurus"]
W = np.linspace(0.0, np.pi, 7)


def model_class(name):
    return getattr(reference.models, name)


@st.composite
def lti_models(draw, name):
    """An initialized LTI model of class ``name`` with small drawn sizes and a drawn discretization."""
    cls = model_class(name)
    d_model = draw(st.integers(1, 3))
    d_state = draw(st.sampled_from([2, 4, 6]))
    method = draw(st.sampled_from(cls.discretizations))
    return cls(d_model, d_state, discretization=method, seed=draw(seeds))


def inputs(seed, model, B, L):
    return np.random.default_rng(seed).normal(size=(B, L, model.d_model))


@pytest.mark.parametrize("name", LTI_NAMES)
@given(data=st.data(), seed=seeds, L=lengths)
def test_lti_forward_modes_equal_each_other_and_the_step_loop(name, data, seed, L):
    model = data.draw(lti_models(name))
    u = inputs(seed, model, 2, L)
    y_ref, state_ref = model.forward(u, return_state=True, mode=model.modes[0])
    for mode in model.modes[1:]:
        y, state = model.forward(u, return_state=True, mode=mode)
        assert_close(y, y_ref, "float64", f"{name} {mode} vs {model.modes[0]}")
        assert_close(state, state_ref, "float64", f"{name} {mode} final state")
    state = model.initial_state(2)
    ys = []
    for k in range(L):
        y_k, state = model.step(u[:, k], state)
        ys.append(y_k)
    assert_close(np.stack(ys, axis=1), y_ref, "float64", f"{name} step loop")
    assert_close(state, state_ref, "float64", f"{name} step final state")


@pytest.mark.parametrize("name", LTI_NAMES)
@given(data=st.data(), L=lengths)
def test_lti_impulse_response_matches_kernel_and_scipy_dimpulse(name, data, L):
    model = data.draw(lti_models(name))
    h = model.impulse_response(L)
    K = model.kernel(L)
    sys = model.ssm()
    assert h.shape == (L, sys.C.shape[0], model.d_model)
    assert_close(K, sys.kernel(L), "float64", f"{name} kernel algorithm vs brute-force powers")
    assert_close(h[1:], K[1:], "float64", f"{name} impulse response vs kernel")
    assert_close(h[0], K[0] + sys.D, "float64", f"{name} impulse response at 0")
    assert_close(h, dimpulse_mimo(model.to_dlti(), L), "float64", f"{name} vs scipy dimpulse")
    # The response to a unit impulse fed through forward is the same thing, column by column.
    for i in range(model.d_model):
        u = np.zeros((1, L, model.d_model))
        u[0, 0, i] = 1.0
        assert_close(model.forward(u)[0], h[:, :, i], "float64", f"{name} forward(impulse)")


# Steps that keep the discrete poles away from z = 1, for the comparison with dfreqresp (below).
SEPARATED_POLES = {
    "S4": dict(dt_min=0.1, dt_max=1.0),
    "S4D": dict(dt_min=0.1, dt_max=1.0),
    "S5": dict(dt_min=0.1, dt_max=1.0),
    "LRU": {},
    # Centaurus initializes the sub-states of a lane at -1/2 + i pi m: with dt >= 0.1 their discrete images
    # exp(dt lambda) wrap around the circle and nearly coincide, where the polynomial form fails (errors
    # of order one at M = 16, 1e-6 at M = 2); one sub-state per lane keeps the poles apart. Every other size
    # is covered by the linear-solve test above.
    "Centaurus": dict(dt_min=0.1, dt_max=1.0, sub_state_dim=1),
}


@pytest.mark.parametrize("name", LTI_NAMES)
@given(data=st.data())
def test_lti_frequency_response_matches_formula_by_linear_solves(name, data):
    model = data.draw(lti_models(name))
    dlti = model.to_dlti()
    assert np.isrealobj(dlti.A) and np.isrealobj(dlti.B) and np.isrealobj(dlti.C) and np.isrealobj(dlti.D)
    assert_close(model.frequency_response(W), formula_by_solves(dlti, W), "float64", f"{name} vs linear solves")


@pytest.mark.parametrize("name", LTI_NAMES)
@given(data=st.data())
def test_lti_frequency_response_matches_scipy_dfreqresp(name, data):
    # scipy's dfreqresp evaluates the ratio of the transfer-function polynomials. With the models' default
    # steps (down to dt = 1e-3) all poles crowd within ~1e-3 of z = 1, where that ratio cancels
    # catastrophically (errors of order one at w = 0 were measured, while the linear solves above agree to
    # 1e-16). So this comparison uses steps in [0.1, 1]: there the polynomial form is accurate to ~1e-11 of the
    # response's scale (measured), and the check allows 1e-9 of the scale.
    cls = model_class(name)
    model = cls(
        data.draw(st.integers(1, 3)),
        data.draw(st.sampled_from([2, 4, 6])),
        discretization=data.draw(st.sampled_from(cls.discretizations)),
        seed=data.draw(seeds),
        **SEPARATED_POLES[name],
    )
    H = model.frequency_response(W)
    scale = np.abs(H).max()
    expected = dfreqresp_mimo(model.to_dlti(), W)
    assert_close(H, expected, "float64", f"{name} vs scipy dfreqresp", rtol=1e-9, atol=1e-9 * scale)


@pytest.mark.parametrize("name", LTI_NAMES)
@given(data=st.data(), seed=seeds, L=st.integers(2, 33))
def test_lti_chunked_forward_with_state_equals_one_shot(name, data, seed, L):
    model = data.draw(lti_models(name))
    split = data.draw(st.integers(1, L - 1))
    u = inputs(seed, model, 2, L)
    for mode in model.modes:
        y, final = model.forward(u, return_state=True, mode=mode)
        y1, state = model.forward(u[:, :split], return_state=True, mode=mode)
        y2, final2 = model.forward(u[:, split:], initial_state=state, return_state=True, mode=mode)
        assert_close(np.concatenate([y1, y2], axis=1), y, "float64", f"{name} {mode} chunked output")
        assert_close(final2, final, "float64", f"{name} {mode} chunked final state")


@pytest.mark.parametrize("name", LTI_NAMES)
@given(data=st.data(), seed=seeds, L=st.integers(2, 33))
def test_lti_is_causal(name, data, seed, L):
    model = data.draw(lti_models(name))
    t = data.draw(st.integers(1, L - 1))
    u = inputs(seed, model, 1, L)
    v = u.copy()
    v[:, t:] += np.random.default_rng(seed + 1).normal(size=v[:, t:].shape)
    for mode in model.modes:
        y_u, y_v = model.forward(u, mode=mode), model.forward(v, mode=mode)
        assert_close(y_v[:, :t], y_u[:, :t], "float64", f"{name} {mode}: outputs before t")


@pytest.mark.parametrize("name", LTI_NAMES)
@given(data=st.data(), L=st.integers(2, 25))
def test_lti_shifted_impulse_gives_shifted_response(name, data, L):
    model = data.draw(lti_models(name))
    j = data.draw(st.integers(0, L - 1))
    u = np.zeros((1, L, model.d_model))
    u[0, j, 0] = 1.0
    y = model.forward(u)[0]  # (L, H_out)
    h = model.impulse_response(L)[:, :, 0]  # (L, H_out)
    assert_close(y[:j], np.zeros_like(y[:j]), "float64", f"{name} before the impulse")
    assert_close(y[j:], h[: L - j], "float64", f"{name} shifted response")


@pytest.mark.parametrize("name", LTI_NAMES)
@given(data=st.data())
def test_lti_initialized_model_is_stable(name, data):
    model = data.draw(lti_models(name))
    sys = model.ssm()
    eigenvalues = sys.A_bar if sys.diagonal else np.linalg.eigvals(sys.A_bar)
    assert np.abs(eigenvalues).max() < 1.0
    assert np.abs(np.linalg.eigvals(model.to_dlti().A)).max() < 1.0


@pytest.mark.parametrize("name", LTI_NAMES)
def test_lti_unbatched_input_equals_batch_of_one(name):
    model = model_class(name)(2, 4, seed=3)
    u = inputs(0, model, 1, 7)
    y, state = model.forward(u[0], return_state=True)
    y_b, state_b = model.forward(u, return_state=True)
    assert_close(y, y_b[0], "float64", "unbatched output")
    assert_close(state, state_b[0], "float64", "unbatched state")


# S5 takes async: irregular time (reference/README.md §S5; equivalence_tests/test_s5.py checks it)
@pytest.mark.parametrize(
    ("name", "method"),
    [(name, m) for name in LTI_NAMES for m in ("async", "euler") if (name, m) != ("S5", "async")],
)
def test_lti_refuses_async_and_unknown_discretizations(name, method):
    cls = model_class(name)
    with pytest.raises(ValueError, match=rf"{cls.__name__}.*{method}.*supported.*{cls.discretizations[0]}"):
        cls(2, 4, discretization=method)


@pytest.mark.parametrize("name", LTI_NAMES)
def test_lti_bad_input_raises_value_error(name):
    model = model_class(name)(2, 4, seed=0)
    with pytest.raises(ValueError, match="u"):
        model.forward(np.ones((1, 5, 3)))
    with pytest.raises(ValueError, match="u"):
        model.forward(np.full((1, 5, 2), np.nan))
    with pytest.raises(ValueError, match="initial_state"):
        model.forward(np.ones((1, 5, 2)), initial_state=np.zeros((1, 10**3)))
    with pytest.raises(ValueError, match="mode"):
        model.forward(np.ones((1, 5, 2)), mode="telepathy")
    with pytest.raises(ValueError, match="u_t"):
        model.step(np.ones((1, 5, 2)), model.initial_state(1))
    with pytest.raises(ValueError, match="d_model"):
        model_class(name)(0, 4)
