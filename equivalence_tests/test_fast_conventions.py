"""The fast models behave the way torch users expect (issue 16): constructors, conversion, responses, rules.

* ``Model(d_model)(torch.randn(2, 7, d_model))`` works for every fast model under torch's default dtype (and
  under ``torch.set_default_dtype(torch.float64)``); ``dtype=`` and ``device=`` are honoured (``"meta"`` too);
* ``seed=None`` draws the initialization from torch's global generator: ``torch.manual_seed`` reproduces it,
  other seeds and layers built one after another differ; ``seed=int`` is exactly the reference's initialization;
* everything after ``d_state`` is keyword-only (``Mamba(64, 16, 4)`` is a ``TypeError``); ``repr`` shows the
  configuration, ``config`` is the reference's;
* ``from_reference`` / ``to_reference`` round trips are exact, in float64 and float32, and ``to_reference``
  holds the current (trained) parameters;
* the LTI responses (``kernel``, ``impulse_response``, ``frequency_response``) in float32 equal the reference's
  within the float32 tolerance, are differentiable (``torch.autograd.gradcheck`` in float64), and ``to_dlti``
  gives what scipy's ``dimpulse`` turns into the fast impulse response; ``figures.plot_*`` take fast models;
* a discretization registered in both packages (explicit Euler) runs in an LTI and an LTV model, fast ==
  reference; models whose family cannot run a registered rule refuse it, and so does a fast model whose rule
  is registered in the reference only.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pytest
import scipy.signal
import torch
from hypothesis import given

import fast
import fast.models
import reference
import reference.models
from equivalence_tests.strategies import seeds
from equivalence_tests.tolerances import assert_close

MODELS = ["S4", "S4D", "S5", "LRU", "Centaurus", "Mamba", "RGLRU", "S7"]
LTI = ["S4", "S4D", "S5", "LRU", "Centaurus"]
H = 3

#: small sizes for the tests that compare values (the default d_state of S5 is 256)
SMALL = {"S4": 4, "S4D": 4, "S5": 4, "LRU": 4, "Centaurus": 2, "Mamba": 3, "RGLRU": None, "S7": 4}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextlib.contextmanager
def default_dtype(dtype):
    saved = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(saved)


def small_args(name):
    return (H,) if SMALL[name] is None else (H, SMALL[name])


def params_equal(a, b) -> bool:
    """Whether two fast models hold bit-identical parameters (same names, dtypes, values)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa)


def assert_reference_params_equal(actual, expected):
    for field in dataclasses.fields(expected):
        a, e = getattr(actual, field.name), getattr(expected, field.name)
        if isinstance(e, np.ndarray):
            assert isinstance(a, np.ndarray) and a.dtype == e.dtype, field.name
            np.testing.assert_array_equal(a, e, err_msg=field.name)
        else:
            assert a == e, field.name


def nudge(model, scale=0.01):
    """An in-place update of every parameter (as an optimizer step would make), deterministic."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype))


# ------------------------------------------------------------------------------------------------
# constructors
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_fast_model_runs_on_torch_randn_under_the_default_dtype(name):
    torch.manual_seed(0)
    model = getattr(fast.models, name)(H)
    assert all(p.dtype == torch.get_default_dtype() == torch.float32 for p in model.parameters())
    y = model(torch.randn(2, 7, H))
    assert y.shape == (2, 7, H) and y.dtype == torch.float32 and bool(torch.isfinite(y).all())
    with default_dtype(torch.float64):
        model = getattr(fast.models, name)(H)
        assert all(p.dtype == torch.float64 for p in model.parameters())
        y = model(torch.randn(2, 7, H))
        assert y.dtype == torch.float64 and bool(torch.isfinite(y).all())


@pytest.mark.parametrize("name", MODELS)
def test_fast_model_init_follows_torch_manual_seed_and_layers_differ(name):
    cls = getattr(fast.models, name)
    torch.manual_seed(5)
    first, second = cls(*small_args(name)), cls(*small_args(name))  # built one after another: differ
    torch.manual_seed(5)
    again = cls(*small_args(name))
    torch.manual_seed(6)
    other = cls(*small_args(name))
    assert params_equal(first, again) and first.seed == again.seed
    assert not params_equal(first, second) and not params_equal(first, other)
    # model.seed rebuilds the initialization
    assert params_equal(cls(*small_args(name), seed=first.seed), first)


def test_four_stacked_s4d_layers_start_different():
    torch.manual_seed(0)
    layers = torch.nn.ModuleList(fast.models.S4D(16) for _ in range(4))
    for i in range(4):
        for j in range(i):
            assert not params_equal(layers[i], layers[j]), (i, j)


@pytest.mark.parametrize("name", MODELS)
@given(seed=seeds)
def test_fast_model_int_seed_is_exactly_the_reference_init(name, seed):
    ref = getattr(reference.models, name)(*small_args(name), seed=seed)
    state = torch.get_rng_state()
    model = getattr(fast.models, name)(*small_args(name), seed=seed, dtype=torch.float64)
    assert torch.equal(torch.get_rng_state(), state)  # an int seed leaves torch's generator alone
    assert_reference_params_equal(model.to_reference().params, ref.params)
    assert params_equal(model, getattr(fast.models, name).from_reference(ref))
    model32 = getattr(fast.models, name)(*small_args(name), seed=seed)  # float32: rounded once from float64
    assert params_equal(model32, getattr(fast.models, name).from_reference(ref).to(torch.float32))


@pytest.mark.parametrize("name", MODELS)
def test_fast_model_dtype_and_device_are_honoured(name):
    cls = getattr(fast.models, name)
    for dtype in (torch.float32, torch.float64):
        model = cls(*small_args(name), seed=1, dtype=dtype, device="cpu")
        assert {p.dtype for p in model.parameters()} == {dtype} and model.dtype == dtype
        assert model.device == torch.device("cpu")
    meta = cls(*small_args(name), seed=1, device="meta")
    assert {p.device.type for p in meta.parameters()} == {"meta"} and meta.dtype == torch.float32
    ref = getattr(reference.models, name)(*small_args(name), seed=1)
    assert {p.dtype for p in cls.from_reference(ref).parameters()} == {torch.float64}  # exact copy by default
    assert params_equal(cls.from_reference(ref, dtype=torch.float32), cls.from_reference(ref).to(torch.float32))
    assert {p.device.type for p in cls.from_reference(ref, device=torch.device("meta")).parameters()} == {"meta"}
    for bad in (torch.int64, torch.complex64, "float32"):
        with pytest.raises(ValueError, match="dtype"):
            cls(*small_args(name), dtype=bad)
        with pytest.raises(ValueError, match="dtype"):
            cls.from_reference(ref, dtype=bad)
    with pytest.raises(ValueError, match="device"):
        cls(*small_args(name), device="nowhere")
    with pytest.raises(ValueError, match="to_reference.*meta"):
        meta.to_reference()


@pytest.mark.parametrize("name", MODELS)
def test_fast_model_takes_everything_after_d_state_by_keyword(name):
    cls = getattr(fast.models, name)
    with pytest.raises(TypeError):
        cls(2, 4, cls.reference_class.default_discretization)
    with pytest.raises(TypeError):
        getattr(reference.models, name)(2, 4, cls.reference_class.default_discretization)


def test_the_issue_example_mamba_64_16_runs_on_torch_randn():
    torch.manual_seed(0)
    y = fast.models.Mamba(64, 16)(torch.randn(2, 100, 64))
    assert y.shape == (2, 100, 64) and y.dtype == torch.float32 and bool(torch.isfinite(y).all())


def test_mamba_64_16_4_is_a_type_error():
    with pytest.raises(TypeError):
        fast.models.Mamba(64, 16, 4)
    assert fast.models.Mamba(8, 16, d_conv=3, seed=0).d_conv == 3


@pytest.mark.parametrize("name", MODELS)
def test_fast_model_repr_shows_the_configuration(name):
    model = getattr(fast.models, name)(*small_args(name), seed=0)
    ref = getattr(reference.models, name)(*small_args(name), seed=0)
    assert model.config == ref.config
    text = repr(model)
    assert text.startswith(f"{name}(")
    for key, value in model.config.items():
        assert f"{key}={value!r}" in text, key
    assert "dtype" not in text and "device" not in text and "backend" not in text  # the defaults are not shown
    wide = repr(getattr(fast.models, name)(*small_args(name), seed=0, dtype=torch.float64, backend="torch"))
    assert "dtype=torch.float64" in wide and "backend='torch'" in wide


# ------------------------------------------------------------------------------------------------
# from_reference / to_reference
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
@given(seed=seeds)
def test_fast_to_reference_round_trip_is_exact(name, seed):
    cls = getattr(fast.models, name)
    ref = getattr(reference.models, name)(*small_args(name), seed=seed)
    back = cls.from_reference(ref).to_reference()
    assert type(back) is type(ref) and back.config == ref.config
    assert_reference_params_equal(back.params, ref.params)
    model32 = cls(*small_args(name), seed=seed)
    assert params_equal(cls.from_reference(model32.to_reference(), dtype=torch.float32), model32)


@pytest.mark.parametrize("name", MODELS)
def test_fast_to_reference_holds_the_trained_parameters(name):
    model = getattr(fast.models, name)(*small_args(name), seed=2, dtype=torch.float64)
    nudge(model)
    trained = model.to_reference()
    u = np.random.default_rng(0).normal(size=(2, 6, H))
    assert_close(model(torch.tensor(u)), trained.forward(u), "float64", f"{name} trained, fast vs to_reference")


def test_fast_mamba_bias_options_match_the_reference():
    ref = reference.models.Mamba(3, 2, seed=4, bias=True, conv_bias=False)
    model = fast.models.Mamba.from_reference(ref)
    assert model.conv1d_bias is None and model.in_proj_bias.shape == (12,) and model.out_proj_bias.shape == (3,)
    assert params_equal(model, fast.models.Mamba(3, 2, seed=4, bias=True, conv_bias=False, dtype=torch.float64))
    u = np.random.default_rng(1).normal(size=(2, 5, 3))
    y, state = model(torch.tensor(u), return_state=True)
    y_ref, state_ref = ref.forward(u, return_state=True)
    assert_close(y, y_ref, "float64", "Mamba with biases, forward")
    y_t, _ = model.step(torch.tensor(u[:, 0]), model.initial_state(2))
    assert_close(y_t, ref.step(u[:, 0], ref.initial_state(2))[0], "float64", "Mamba with biases, step")
    assert_close(state.ssm_state, state_ref.ssm_state, "float64", "final state")
    assert_reference_params_equal(model.to_reference().params, ref.params)


# ------------------------------------------------------------------------------------------------
# LTI responses
# ------------------------------------------------------------------------------------------------

W = np.linspace(0.0, np.pi, 7)


def _lti_cases():
    return [(name, rule) for name in LTI for rule in getattr(reference.models, name).discretizations]


def _float64(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.complex128 if t.is_complex() else torch.float64).numpy()


@pytest.mark.parametrize(("name", "rule"), _lti_cases())
@given(seed=seeds)
def test_fast_lti_responses_in_float32_match_the_reference(name, rule, seed):
    ref = getattr(reference.models, name)(*small_args(name), discretization=rule, seed=seed)
    model = getattr(fast.models, name).from_reference(ref, dtype=torch.float32)
    assert_close(model.kernel(16), ref.kernel(16), "float32", f"{name} {rule} kernel")
    assert_close(model.impulse_response(16), ref.impulse_response(16), "float32", f"{name} {rule} impulse")
    # The frequency response against the float64 evaluation of the model's own float32 discrete system: near a
    # pole at distance delta from the unit circle H moves by about eps / delta when A_bar is rounded, so the
    # rounding of A_bar to float32 alone (not the evaluation) can exceed the float32 row for delta ~ 1e-3
    # (dt_min): measured, Centaurus at seed 3 is 1.7x the row at w = 0 against the float64 reference, and 0.09x
    # against this oracle (the worst over 30 seeds of every model and rule). The float64 test
    # (test_fast_lti_models) compares the whole computation with the reference.
    s = model.ssm()
    own = reference.DiscreteSSM(_float64(s.A_bar), _float64(s.B_bar), _float64(s.C), _float64(s.D), s.readout)
    assert_close(model.frequency_response(W), own.frequency_response(W), "complex64", f"{name} {rule} frequency")


class _Response(torch.nn.Module):
    """A response of ``model`` as a module's forward, so that ``functional_call`` can vary its parameters."""

    def __init__(self, model, which):
        super().__init__()
        self.model, self.which = model, which

    def forward(self):
        if self.which == "kernel":
            return self.model.kernel(5)
        if self.which == "impulse_response":
            return self.model.impulse_response(5)
        return torch.view_as_real(self.model.frequency_response(W))


@pytest.mark.parametrize("which", ["kernel", "impulse_response", "frequency_response"])
@pytest.mark.parametrize("name", LTI)
def test_fast_lti_responses_are_differentiable(name, which):
    ref = getattr(reference.models, name)(1, 2, seed=5)
    model = getattr(fast.models, name).from_reference(ref)
    wrapper = _Response(model, which)
    names = [f"model.{n}" for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in model.parameters())

    def response(*ps):
        return torch.func.functional_call(wrapper, dict(zip(names, ps)), ())

    assert torch.autograd.gradcheck(response, params)
    out = response(*params).square().sum()
    grads = torch.autograd.grad(out, params, allow_unused=True)
    assert any(g is not None and bool((g != 0).any()) for g in grads)  # a gradient reaches the parameters


@pytest.mark.parametrize(("name", "rule"), _lti_cases())
def test_fast_lti_to_dlti_gives_the_fast_impulse_response_through_scipy(name, rule):
    model = getattr(fast.models, name)(*small_args(name), discretization=rule, seed=6, dtype=torch.float64)
    nudge(model, 0.001)  # a trained model: to_dlti reads the current parameters
    system = model.to_dlti()
    assert isinstance(system, scipy.signal.dlti) and system.dt == 1
    L = 12
    outputs = scipy.signal.dimpulse(system, n=L)[1]  # one (L, H_out) array per input
    h = np.stack(outputs, axis=-1)  # (L, H_out, H_in)
    assert_close(h, model.impulse_response(L), "float64", f"{name} {rule} dimpulse(to_dlti)")


def test_figures_plot_fast_models_trained_ones_included():
    import figures

    lti = fast.models.S4D(2, 4, seed=0)  # float32, as a user trains it
    nudge(lti)
    _, plotted = figures.plot_impulse_response(lti, L=16)
    assert_close(plotted.arrays["zoh"], lti.impulse_response(16), "float32", "plotted impulse of a fast S4D")
    _, plotted = figures.plot_frequency_response([lti], n_freq=8)
    assert_close(plotted.arrays["zoh"], lti.frequency_response(plotted.w), "complex64", "plotted frequency")
    ltv = fast.models.Mamba(2, 2, seed=0, dtype=torch.float64)
    nudge(ltv)
    u = np.random.default_rng(0).normal(size=(6, 2))
    _, plotted = figures.plot_frozen_responses(ltv, u=u, times=[2], L=8, show=("impulse",))
    _, expected = figures.plot_frozen_responses(ltv.to_reference(), u=u, times=[2], L=8, show=("impulse",))
    assert plotted.arrays.keys() == expected.arrays.keys() and "mamba@2:impulse" in plotted.arrays
    for key in expected.arrays:  # the fast model drawn as its reference twin with the trained parameters
        np.testing.assert_array_equal(plotted.arrays[key], expected.arrays[key], err_msg=key)
    _, plotted = figures.plot_async_example(fast.models.Mamba(2, 2, discretization="async", seed=0), L=6)
    assert plotted.arrays["async"].shape == (6, 2)


# ------------------------------------------------------------------------------------------------
# registered discretizations
# ------------------------------------------------------------------------------------------------


def euler(A, B, dt, *, integration_timesteps=None):
    """Explicit (forward) Euler, A_bar = 1 + dt A, B_bar = dt B, for NumPy arrays and torch tensors alike, in the
    layouts ``discretize_diagonal`` hands a registered rule (``dt`` expanded against ``A (..., N)``)."""
    if integration_timesteps is not None:
        raise ValueError("integration_timesteps: the test's Euler rule takes no event gaps")
    A_bar = 1 + dt * A  # (..., N)
    B_bar = dt * B if B.ndim == A.ndim else dt[..., None] * B  # (..., N) or (..., N, H)
    return A_bar, B_bar


@pytest.fixture
def euler_rule():
    reference.register_discretization("euler", euler)
    fast.register_discretization("euler", euler)
    yield "euler"
    reference.unregister_discretization("euler")
    fast.unregister_discretization("euler")


@pytest.mark.parametrize("name", ["S4D", "S5", "LRU", "Centaurus", "Mamba", "S7"])
def test_a_rule_registered_in_both_packages_runs_in_lti_and_ltv_models(name, euler_rule):
    options = {"r_max": 0.9, "max_phase": 0.5} if name == "LRU" else {}
    ref = getattr(reference.models, name)(2, 4, discretization=euler_rule, seed=7, **options)
    built = getattr(fast.models, name)(2, 4, discretization=euler_rule, seed=7, dtype=torch.float64, **options)
    assert params_equal(built, getattr(fast.models, name).from_reference(ref))  # the constructor accepts it too
    if name == "LRU":  # explicit Euler is stable only for |1 + dt z| < 1: LRU's step (1 at init) set to 0.1
        ref.params.log_dt = np.full_like(ref.params.log_dt, np.log(0.1))
        assert np.all(np.abs(1 + 0.1 * ref.exponent()) < 1)
    assert euler_rule in ref.supported_discretizations()
    model = getattr(fast.models, name).from_reference(ref)
    u = np.random.default_rng(2).normal(size=(2, 9, 2))
    y, state = model(torch.tensor(u), return_state=True)
    y_ref, state_ref = ref.forward(u, return_state=True)
    assert_close(y, y_ref, "float64", f"{name} with a registered Euler rule")
    if isinstance(state_ref, tuple):  # Mamba: (conv_state, ssm_state)
        assert_close(state.ssm_state, state_ref.ssm_state, "float64", f"{name} final state")
    else:
        assert_close(state, state_ref, "complex128", f"{name} final state")
    y_t, _ = model.step(torch.tensor(u[:, 0]), model.initial_state(2))
    assert_close(y_t, ref.step(u[:, 0], ref.initial_state(2))[0], "float64", f"{name} Euler step")
    if name == "S4D":  # the rule itself: a_bar = 1 + dt lambda
        dt = np.exp(ref.params.log_dt)[:, None]  # (H, 1)
        lam = -np.exp(ref.params.log_A_real) - 1j * ref.params.A_imag  # (H, N/2)
        assert_close(model.discretized()[0], 1 + dt * lam, "complex128", "Euler a_bar")


def test_registered_rules_are_refused_where_the_family_cannot_run_them(euler_rule):
    for cls in (reference.models.S4, fast.models.S4, reference.models.RGLRU, fast.models.RGLRU):
        with pytest.raises(ValueError, match=rf"{cls.__name__}: discretization 'euler' is not supported"):
            cls(2, 4, discretization=euler_rule)
    assert euler_rule in fast.models.S7.supported_discretizations()
    reference.register_discretization("euler_events", euler, time_varying_only=True)
    fast.register_discretization("euler_events", euler, time_varying_only=True)
    try:
        with pytest.raises(ValueError, match="time-varying"):
            fast.models.S4D(2, 4, discretization="euler_events")
        assert "euler_events" in fast.models.Mamba.supported_discretizations()
    finally:
        reference.unregister_discretization("euler_events")
        fast.unregister_discretization("euler_events")
    reference.register_discretization("euler_numpy_only", euler)
    try:
        with pytest.raises(ValueError, match="registered in reference but not in fast"):
            fast.models.S4D(2, 4, discretization="euler_numpy_only")
    finally:
        reference.unregister_discretization("euler_numpy_only")
    assert "euler_numpy_only" not in reference.DISCRETIZATIONS


def test_unregister_discretization_removes_the_rule_and_refuses_unknown_names(euler_rule):
    assert euler_rule in reference.DISCRETIZATIONS and euler_rule in fast.DISCRETIZATIONS
    for package in (reference, fast):
        with pytest.raises(ValueError, match="name"):
            package.unregister_discretization("zoh")  # a built-in rule stays
    fast.unregister_discretization(euler_rule)
    try:
        assert euler_rule not in fast.DISCRETIZATIONS
        with pytest.raises(ValueError, match="method"):
            fast.discretize_diagonal(torch.tensor([-1.0]), torch.tensor([1.0]), 0.1, euler_rule)
    finally:
        fast.register_discretization(euler_rule, euler)  # the fixture removes it again


def test_supported_discretizations_are_the_built_in_ones_without_registrations():
    for name in MODELS:
        cls = getattr(fast.models, name)
        assert cls.supported_discretizations() == cls.reference_class.discretizations
