"""The fast S5 on irregular time (``integration_timesteps``, reference/README.md §S5) against the reference:
outputs, final states and steps in float64 and float32 for every rule S5 has plus async, through the torch scan
and the Triton linear-scan kernel (under ``TRITON_INTERPRET=1`` on a CPU, at small sizes); gradients by
``torch.autograd.gradcheck`` (input, initial state, gaps, every parameter), against central differences of the
reference, and Triton's against the torch path's. The reference itself is checked against scipy.linalg.expm
per step in test_s5.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fast.models
import reference.models
from equivalence_tests.strategies import seeds
from equivalence_tests.tolerances import assert_close

RULES = reference.models.S5.discretizations  # zoh, bilinear, dirac, async


@st.composite
def s5_models(draw, method=None):
    """A small reference S5 (any rule, conj_sym or not, one or two blocks, a step rescale)."""
    conj_sym = draw(st.booleans())
    blocks = draw(st.integers(1, 2))
    block = 2 * draw(st.integers(1, 2)) if conj_sym else draw(st.integers(1, 3))
    method = draw(st.sampled_from(RULES)) if method is None else method
    return reference.models.S5(
        draw(st.integers(1, 3)), blocks * block, discretization=method, blocks=blocks, conj_sym=conj_sym,
        step_rescale=draw(st.sampled_from([1.0, 2.5])), seed=draw(seeds),
    )


def problem(ref, seed, B, L, with_state):
    """u (B, L, H), gaps (B, L) (zeros allowed where the rule takes them) and an initial state or None."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(B, L, ref.d_model))
    tau = rng.uniform(0.05, 3.0, size=(B, L))
    if ref.discretization in ("async", "dirac") and L > 1:
        tau[:, 1] = 0.0  # simultaneous events
    P_s = ref.eigenvalues().shape[0]
    x0 = rng.normal(size=(B, P_s)) + 1j * rng.normal(size=(B, P_s)) if with_state else None
    return u, tau, x0


def t(x, dtype=torch.float64):
    x = np.asarray(x)
    if np.iscomplexobj(x):
        return torch.tensor(x, dtype=torch.complex128 if dtype == torch.float64 else torch.complex64)
    return torch.tensor(x, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@given(ref=s5_models(), seed=seeds, B=st.integers(1, 2), L=st.integers(1, 12), with_state=st.booleans())
def test_s5_irregular_fast_torch_matches_reference(dtype, ref, seed, B, L, with_state):
    name = str(dtype).replace("torch.", "")
    model = fast.models.S5.from_reference(ref, dtype=dtype)
    u, tau, x0 = problem(ref, seed, B, L, with_state)
    y_ref, x_ref = ref.forward(u, integration_timesteps=tau, initial_state=x0, return_state=True)
    y, x = model(t(u, dtype), integration_timesteps=t(tau, dtype),
                 initial_state=None if x0 is None else t(x0, dtype), return_state=True)
    assert y.dtype == dtype and x.dtype == (torch.complex128 if dtype == torch.float64 else torch.complex64)
    assert_close(y, y_ref, name, f"{ref.discretization} output")
    assert_close(x, x_ref, name, f"{ref.discretization} final state")
    # one step, and an unbatched sequence with gaps of shape (L,)
    y_s, x_s = model.step(t(u[:, 0], dtype), None if x0 is None else t(x0, dtype),
                          integration_timesteps=t(tau[:, 0], dtype))
    y_s_ref, x_s_ref = ref.step(u[:, 0], x0, integration_timesteps=tau[:, 0])
    assert_close(y_s, y_s_ref, name, "step output")
    assert_close(x_s, x_s_ref, name, "step state")
    y_u = model(t(u[0], dtype), integration_timesteps=t(tau[0], dtype))
    assert_close(y_u, ref.forward(u[0], integration_timesteps=tau[0]), name, "unbatched output")


@settings(max_examples=4)
@given(ref=s5_models(), seed=seeds, B=st.integers(1, 2), L=st.integers(1, 9), with_state=st.booleans())
def test_s5_irregular_fast_triton_matches_reference_and_its_gradients_the_torch_path(ref, seed, B, L, with_state):
    model = fast.models.S5.from_reference(ref, backend="triton")
    torch_model = fast.models.S5.from_reference(ref, backend="torch")
    assert model.resolved_backend() == "triton"
    u, tau, x0 = problem(ref, seed, B, L, with_state)
    y_ref, x_ref = ref.forward(u, integration_timesteps=tau, initial_state=x0, return_state=True)
    kw = dict(integration_timesteps=t(tau), initial_state=None if x0 is None else t(x0), return_state=True)
    u_t = t(u).requires_grad_()
    y, x = model(u_t, **kw)
    assert_close(y, y_ref, "float64", f"{ref.discretization} output (triton)")
    assert_close(x, x_ref, "float64", f"{ref.discretization} final state (triton)")
    weights = torch.tensor(np.random.default_rng(seed + 2).normal(size=y.shape))
    grads = {}
    for which, m in (("triton", model), ("torch", torch_model)):
        u_t.grad = None
        m.zero_grad()
        out, xL = m(u_t, **kw)
        ((out * weights).sum() + xL.abs().square().sum()).backward()
        grads[which] = [u_t.grad.clone()] + [torch.zeros_like(p) if p.grad is None else p.grad for p in m.parameters()]
    names = ["u"] + [n for n, _ in model.named_parameters()]
    for pname, g, g_torch in zip(names, grads["triton"], grads["torch"]):
        assert_close(g, g_torch, "float64", f"gradient of {pname} (triton vs torch)")


@pytest.mark.parametrize("method", RULES)
@settings(max_examples=2)
@given(data=st.data(), seed=seeds, L=st.integers(1, 4))
def test_s5_irregular_gradients_match_finite_differences(method, data, seed, L):
    """d(output, final state) / d(input, initial state, gaps, every parameter) by torch.autograd.gradcheck."""
    ref = data.draw(s5_models(method=method))
    model = fast.models.S5.from_reference(ref)
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    u, tau, x0 = problem(ref, seed, 1, L, True)
    tau = np.maximum(tau, 0.1)  # gradcheck perturbs the gaps: keep them away from the boundary 0
    u_t, tau_t = t(u).requires_grad_(), t(tau).requires_grad_()
    x0_t = torch.view_as_real(t(x0)).clone().requires_grad_()

    def run(u, x0, tau, *ps):
        y, x = torch.func.functional_call(
            model, dict(zip(names, ps)), (u,),
            {"integration_timesteps": tau, "initial_state": torch.view_as_complex(x0), "return_state": True},
        )
        return y, torch.view_as_real(x)

    assert torch.autograd.gradcheck(run, (u_t, x0_t, tau_t, *params), fast_mode=True)


@given(ref=s5_models(), seed=seeds, L=st.integers(1, 5))
def test_s5_irregular_fast_input_and_gap_gradients_match_reference_central_differences(ref, seed, L):
    """The fast model's gradient of a weighted sum of outputs with respect to the input and the gaps equals the
    reference's own central differences (the reference has no autodiff: the derivative of its computation)."""
    model = fast.models.S5.from_reference(ref)
    u, tau, _ = problem(ref, seed, 1, L, False)
    tau = np.maximum(tau, 0.1)
    w = np.random.default_rng(seed + 3).normal(size=u.shape)
    u_t, tau_t = t(u).requires_grad_(), t(tau).requires_grad_()
    (model(u_t, integration_timesteps=tau_t) * t(w)).sum().backward()

    def loss(u, tau):
        return float((ref.forward(u, integration_timesteps=tau) * w).sum())

    h = 1e-6
    for what, x, g in (("u", u, u_t.grad), ("integration_timesteps", tau, tau_t.grad)):
        fd = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            plus, minus = x.copy(), x.copy()
            plus[i] += h
            minus[i] -= h
            fd[i] = (loss(*((plus, tau) if what == "u" else (u, plus))) -
                     loss(*((minus, tau) if what == "u" else (u, minus)))) / (2 * h)
        # central differences carry O(h^2) truncation and O(eps/h) rounding: about 1e-9 of the scale here
        assert_close(g, fd, "float64", f"gradient of {what} vs central differences", rtol=1e-6, atol=1e-7)


@settings(max_examples=5)
@given(ref=s5_models(method="zoh"), seed=seeds, tau1=st.floats(0.05, 4.0), tau2=st.floats(0.05, 4.0))
def test_s5_irregular_fast_zoh_zero_input_gaps_compose(ref, seed, tau1, tau2):
    model = fast.models.S5.from_reference(ref)
    _, _, x0 = problem(ref, seed, 1, 1, True)
    zero = torch.zeros(1, 2, ref.d_model, dtype=torch.float64)
    _, x_two = model(zero, integration_timesteps=t([tau1, tau2]), initial_state=t(x0), return_state=True)
    _, x_one = model(zero[:, :1], integration_timesteps=t([tau1 + tau2]), initial_state=t(x0), return_state=True)
    assert_close(x_two, x_one, "float64", "two gaps vs their sum (zero input)")


def test_s5_irregular_fast_bad_input_raises_value_error_naming_the_argument():
    ref = reference.models.S5(2, 4, seed=0)
    model = fast.models.S5.from_reference(ref)
    u = torch.zeros(2, 5, 2, dtype=torch.float64)
    ones = lambda *shape: torch.ones(*shape, dtype=torch.float64)  # noqa: E731
    for call, match in [
        (lambda: model(u, integration_timesteps=ones(4)), r"integration_timesteps: expected shape \(5,\)"),
        (lambda: model(u, integration_timesteps=-ones(5)), "integration_timesteps"),
        (lambda: model(u, integration_timesteps=ones(5) * float("nan")), "integration_timesteps"),
        (lambda: model(u, integration_timesteps=torch.tensor([1.0, 0, 1, 1, 1], dtype=torch.float64)),
         "integration_timesteps: a zero gap is not allowed here with discretization 'zoh'"),
        (lambda: model(u[0], integration_timesteps=ones(1, 5)), "integration_timesteps: expected shape \\(5,\\)"),
        (lambda: model.step(u[:, 0], None, integration_timesteps=ones(3)), r"integration_timesteps: in step"),
        (lambda: model(u, integration_timesteps=ones(5), initial_state=torch.zeros(3, 2, dtype=torch.complex128)),
         "initial_state"),
        (lambda: model.step(u[:, 0], torch.zeros(3, 2, dtype=torch.complex128), integration_timesteps=ones(2)),
         "state"),
        (lambda: fast.models.S5.from_reference(reference.models.S5(2, 4, bidirectional=True))(
            u, integration_timesteps=ones(5)), "bidirectional"),
    ]:
        with pytest.raises(ValueError, match=match):
            call()
