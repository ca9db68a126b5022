"""Bad input on the reference side gets a ValueError that names the argument as the caller wrote it (the state
of ``step`` is ``state``, an empty ``A`` is ``A``, an empty frequency grid is ``w``, a NaN parameter is
``params.<name>``), and a valid limit is not refused: S7's softplus step underflowing to 0 on a large input is
the limit a_bar = 1 (reference/README.md §S7), not an error about a ``dt`` the caller never passed."""

from __future__ import annotations

import numpy as np
import pytest

import reference
from equivalence_tests.tolerances import assert_close
from reference.models import LRU, RGLRU, S4, S4D, S5, S7, Centaurus, Mamba

LTI = [S4, S4D, S5, LRU, Centaurus]


def build(cls):
    return cls(2, None, seed=0) if cls is Centaurus else cls(2, 4, seed=0)


@pytest.mark.parametrize("cls", LTI, ids=lambda c: c.__name__)
def test_lti_step_names_a_bad_state_state_not_initial_state(cls):
    model = build(cls)
    S = model.initial_state(1).shape[1]
    with pytest.raises(ValueError, match=r"^state: expected shape \(2, "):
        model.step(np.zeros((2, 2)), np.zeros((3, S)))
    with pytest.raises(ValueError, match=r"^state: contains NaN"):
        model.step(np.zeros((1, 2)), np.full((1, S), np.nan))
    with pytest.raises(ValueError, match=r"^initial_state: expected shape"):  # forward keeps its own name
        model.forward(np.zeros((2, 3, 2)), initial_state=np.zeros((3, S)))


@pytest.mark.parametrize("cls", [Mamba, RGLRU, S7], ids=lambda c: c.__name__)
def test_ltv_step_names_a_bad_state_state(cls):
    model = cls(2, 4, seed=0) if cls is not RGLRU else cls(2, seed=0)
    with pytest.raises(ValueError, match=r"^state"):
        model.step(np.zeros((2, 2)), model.initial_state(3))


def test_discretize_names_an_empty_A_as_A():
    for A, B in ((np.array([]), np.ones((0, 1))), (np.zeros((0, 0)), np.ones((0, 1)))):
        with pytest.raises(ValueError, match=r"^A: expected"):
            reference.discretize(A, B, 0.1)
    with pytest.raises(ValueError, match=r"^Lambda: expected"):  # discretize_diagonal's own argument is Lambda
        reference.discretize_diagonal(np.zeros((2, 0)), np.ones((2, 0)), 0.1)


@pytest.mark.parametrize("cls", LTI, ids=lambda c: c.__name__)
def test_frequency_response_of_an_empty_grid_raises_value_error_naming_w(cls):
    model = build(cls)
    with pytest.raises(ValueError, match=r"^w: expected a 1-D array of at least one frequency"):
        model.frequency_response(np.array([]))
    sys = model.ssm()
    with pytest.raises(ValueError, match=r"^w: expected"):
        reference.frequency_response(sys.A_bar, sys.B_bar, sys.C, sys.D, [], readout=sys.readout)
    assert model.frequency_response(np.array([0.5])).shape == (1, 2, 2)  # one frequency is fine


@pytest.mark.parametrize(
    "cls, name",
    [(RGLRU, "linear_out_bias"), (RGLRU, "linear_y_bias"), (RGLRU, "a_param"), (S7, "D"), (S7, "step_proj_bias")],
)
def test_a_nan_parameter_is_named_in_forward_and_step(cls, name):
    model = cls(2, seed=0) if cls is RGLRU else cls(2, 4, seed=0)
    getattr(model.params, name).flat[0] = np.nan
    with pytest.raises(ValueError, match=rf"^params\.{name}: contains NaN"):
        model.forward(np.ones((1, 3, 2)))
    with pytest.raises(ValueError, match=rf"^params\.{name}: contains NaN"):
        model.step(np.ones((1, 2)), model.initial_state(1))


@pytest.mark.parametrize("method", S7.discretizations)
def test_s7_step_underflowing_to_zero_is_the_limit_not_an_error(method):
    model = S7(2, 4, discretization=method, seed=0)
    tau = np.array([1.0, 0.5, 2.0]) if method == "async" else None
    u = np.array([[[0.3, -0.2], [1e5, -1e5], [0.1, 0.4]]])  # token 1 drives every softplus step to 0
    dt, B_t, _ = model._selection(u[0, 1])  # (P,), (P, H), (H, P)
    assert np.all(dt == 0.0), dt  # the underflow this test is about
    y, x = model.forward(u, integration_timesteps=tau, return_state=True)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(x))
    x0 = model.forward(u[:, :1], integration_timesteps=None if tau is None else tau[:1], return_state=True)[1]
    _, x1 = model.step(u[:, 1], x0, integration_timesteps=None if tau is None else tau[1:2])
    # dt = 0: a_bar = 1; zoh, bilinear and async inject nothing (gamma = 0), dirac injects B_t u_t (gamma = 1)
    expected = x0 + (B_t @ u[0, 1])[None] if method == "dirac" else x0
    assert_close(x1, expected, "float64", f"{method}: the state across a zero step")
