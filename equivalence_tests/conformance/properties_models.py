"""Properties of whole models (``ModelAdapter``): each a statement the reference model satisfies.

Given identical parameters (the adapter's ``build(ref)`` loads ``ref.params``, drawn at initialization or moved
away from it): forward equals the reference; a step loop equals forward; a sequence cut anywhere and continued
from the returned (opaque) state equals the one-shot forward; outputs are causal; batch rows are independent;
the final state equals the reference's (``state_to_reference``); a fresh initialization matches the
reference's (exactly where the reference is deterministic, in distribution where it is random); LTI models:
the impulse response equals ``scipy.signal.dimpulse`` of the reference's ``to_dlti()``, and the kernel and the
frequency response (optional adapter methods) equal the reference's and scipy's; the input gradient (optional)
equals the project's float64 torch twin's.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import scipy.stats
from hypothesis import strategies as st

import reference
from equivalence_tests.conformance.adapters import ModelAdapter, Unsupported
from equivalence_tests.conformance.compare import Mismatch, as_numpy, assert_matches, assert_state_matches
from equivalence_tests.conformance.runner import register
from equivalence_tests.conformance.spaces import (
    LTI_MODELS,
    LTV_MODELS,
    build_reference,
    gap_array,
    input_array,
    model_configs,
    model_inputs,
)
from equivalence_tests.oracles import dimpulse_mimo, formula_by_solves

#: Rules under which an event gap of 0 is valid (the others would drop the event's input).
ZERO_GAP_RULES = ("async", "dirac")


def _lti(adapter):
    if adapter.model not in LTI_MODELS:
        return f"{adapter.model} is not an LTI model"
    varying = [r for r in adapter.discretizations if r in reference.TIME_VARYING_ONLY]
    if varying:  # the adapter's view of one rule (runner._RuleView): an event rule has no single kernel
        return f"rule {varying[0]!r} is time-varying: no kernel, impulse or frequency response"
    return None


def _ltv(adapter):
    return None if adapter.model in LTV_MODELS else f"{adapter.model} is time-invariant (no integration_timesteps)"


def _cut(strategy):
    """Add a cut point 1 <= cut < L to each example (its length is at least 2)."""
    return strategy.flatmap(lambda ex: st.integers(1, ex["length"] - 1).map(lambda k: dict(ex, cut=k)))


def _gaps(ex, *, always=False):
    """The event gaps an example passes: always for an event rule (async) or when ``always``; for the other rules of
    an LTV model when the example drew ``with_gaps``."""
    if ex["discretization"] in reference.TIME_VARYING_ONLY or always or ex.get("with_gaps"):
        return gap_array(ex, allow_zero=ex["discretization"] in ZERO_GAP_RULES)
    return None


def _reference_forward(ref, u, initial_state=None, tau=None):
    if tau is None:
        return ref.forward(u, initial_state=initial_state, return_state=True)
    return ref.forward(u, integration_timesteps=tau, initial_state=initial_state, return_state=True)


def _forward(adapter, impl, u, initial_state=None, tau=None):
    kwargs = {} if tau is None else {"integration_timesteps": tau}
    if initial_state is not None:
        kwargs["initial_state"] = initial_state
    out = adapter.forward(impl, u, **kwargs)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise Mismatch("forward", f"expected (y, state), got {type(out).__name__}")
    return as_numpy(out[0], "y"), out[1]


def _setup(adapter, ex):
    ref = build_reference(adapter.model, ex)
    return ref, adapter.build(ref), input_array(ex, ref.d_model)


@register(ModelAdapter, "forward equals the reference model's forward, given identical parameters, for every "
          "claimed rule (LTV models with and without event gaps)", examples=lambda ad: model_inputs(ad))
def forward_matches_reference(adapter, ex):
    ref, impl, u = _setup(adapter, ex)
    tau = _gaps(ex)
    y, _ = _forward(adapter, impl, u, tau=tau)
    ref_y, _ = _reference_forward(ref, u, tau=tau)
    assert_matches(y, ref_y, adapter.dtype, f"y ({ex['discretization']})")


@register(ModelAdapter, "forward with integration_timesteps (per-event gaps) equals the reference's",
          examples=lambda ad: model_inputs(ad), applies=_ltv)
def forward_with_integration_timesteps_matches_reference(adapter, ex):
    ref, impl, u = _setup(adapter, ex)
    tau = _gaps(ex, always=True)
    y, _ = _forward(adapter, impl, u, tau=tau)
    ref_y, _ = _reference_forward(ref, u, tau=tau)
    assert_matches(y, ref_y, adapter.dtype, f"y with integration_timesteps ({ex['discretization']})")


@register(ModelAdapter, "the final state returned by forward equals the reference's (in its layout)",
          examples=lambda ad: model_inputs(ad), needs=("state_to_reference",))
def final_state_matches_reference(adapter, ex):
    ref, impl, u = _setup(adapter, ex)
    tau = _gaps(ex)
    _, state = _forward(adapter, impl, u, tau=tau)
    _, ref_state = _reference_forward(ref, u, tau=tau)
    assert_state_matches(adapter.state_to_reference(impl, state), ref_state, adapter.dtype, "final state")


@register(ModelAdapter, "a loop of step from the initial state equals forward, output by output",
          examples=lambda ad: model_inputs(ad), needs=("step",))
def step_matches_forward(adapter, ex):
    ref, impl, u = _setup(adapter, ex)
    tau = _gaps(ex)
    y, _ = _forward(adapter, impl, u, tau=tau)
    init = getattr(adapter, "initial_state", None)
    state = init(impl, u.shape[0]) if callable(init) else None
    outputs = []
    for t in range(u.shape[1]):
        kwargs = {} if tau is None else {"integration_timesteps": tau[:, t]}
        out = adapter.step(impl, u[:, t], state, **kwargs)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise Mismatch("step", f"expected (y_t, state), got {type(out).__name__}")
        outputs.append(as_numpy(out[0], f"y_{t}"))
        state = out[1]
    assert_matches(np.stack(outputs, axis=1), y, adapter.dtype, "the step loop's outputs vs forward")


@register(ModelAdapter, "a sequence cut anywhere and continued from the state forward returned equals the "
          "one-shot forward (the implementation's own state goes back in)",
          examples=lambda ad: _cut(model_inputs(ad, min_length=2)))
def chunked_forward_matches_one_shot(adapter, ex):
    ref, impl, u = _setup(adapter, ex)
    tau = _gaps(ex)
    k = ex["cut"]
    y, _ = _forward(adapter, impl, u, tau=tau)
    y1, s1 = _forward(adapter, impl, u[:, :k], tau=None if tau is None else tau[:, :k])
    if s1 is None:
        raise Unsupported("forward returned no state")
    y2, _ = _forward(adapter, impl, u[:, k:], initial_state=s1, tau=None if tau is None else tau[:, k:])
    assert_matches(np.concatenate([y1, y2], axis=1), y, adapter.dtype, f"y of the two parts (cut at {k})")


@register(ModelAdapter, "causality: changing u after step t leaves y up to t unchanged",
          examples=lambda ad: _cut(model_inputs(ad, min_length=2)))
def forward_is_causal(adapter, ex):
    ref, impl, u = _setup(adapter, ex)
    tau = _gaps(ex)
    k = ex["cut"]
    y, _ = _forward(adapter, impl, u, tau=tau)
    u2 = u.copy()
    u2[:, k:] += np.random.default_rng(ex["input_seed"] + 3).normal(size=u2[:, k:].shape)
    y2, _ = _forward(adapter, impl, u2, tau=tau)
    assert_matches(y2[:, :k], y[:, :k], adapter.dtype, f"y[:, :{k}] after changing u from step {k} on")


@register(ModelAdapter, "batch rows are independent: each row alone (and the batch reversed) gives the same "
          "outputs as in the batch", examples=lambda ad: model_inputs(ad))
def batch_rows_are_independent(adapter, ex):
    ref, impl, u = _setup(adapter, ex)
    tau = _gaps(ex)
    y, _ = _forward(adapter, impl, u, tau=tau)
    y_rev, _ = _forward(adapter, impl, u[::-1].copy(), tau=None if tau is None else tau[::-1].copy())
    assert_matches(y_rev[::-1], y, adapter.dtype, "y of the reversed batch")
    for b in range(u.shape[0]):
        y_b, _ = _forward(adapter, impl, u[b : b + 1], tau=None if tau is None else tau[b : b + 1])
        assert_matches(y_b[0], y[b], adapter.dtype, f"y of batch row {b} alone")


def _two_sample(impl_values: np.ndarray, ref_values: np.ndarray, what: str, alpha: float = 1e-6) -> None:
    for part, f in (("real part", np.real), ("imaginary part", np.imag)):
        a, r = f(impl_values).ravel(), f(ref_values).ravel()
        if part == "imaginary part" and not (np.iscomplexobj(ref_values) or np.iscomplexobj(impl_values)):
            continue
        if np.ptp(r) == 0 and np.ptp(a) == 0:
            if a[0] != r[0]:
                raise Mismatch(what, f"{part}: every draw is {a[0]:.6g}, the reference's every draw is {r[0]:.6g}")
            continue
        with warnings.catch_warnings():  # scipy warns when it falls back from the exact to the asymptotic p
            warnings.simplefilter("ignore", RuntimeWarning)
            test = scipy.stats.ks_2samp(a, r)
        if test.pvalue < alpha:
            raise Mismatch(
                what,
                f"{part} is not distributed as the reference's initialization: two-sample Kolmogorov-Smirnov "
                f"statistic {test.statistic:.3f}, p = {test.pvalue:.2e} < {alpha:g} ({a.size} vs {r.size} draws; "
                f"implementation range [{a.min():.4g}, {a.max():.4g}], reference range [{r.min():.4g}, {r.max():.4g}])",
            )


@register(ModelAdapter, "a fresh initialization matches the reference's: exactly in every field the reference "
          "initializes deterministically, in distribution (two-sample Kolmogorov-Smirnov over many seeds, p >= 1e-6) "
          "in every random field", examples=lambda ad: model_configs(ad), needs=("initial_params",), budget=4)
def init_matches_reference(adapter, ex):
    ref = build_reference(adapter.model, dict(ex, perturb=None))
    fields = [f.name for f in dataclasses.fields(ref.params) if isinstance(getattr(ref.params, f.name), np.ndarray)]
    smallest = min(getattr(ref.params, f).size for f in fields)
    n_seeds = int(np.clip(np.ceil(400 / max(smallest, 1)), 16, 128))
    ref_draws = [type(ref)(**ref.config, seed=s).params for s in range(n_seeds)]
    impl_draws = [adapter.initial_params(ref, s) for s in range(n_seeds)]
    for name in fields:
        r = np.stack([getattr(p, name) for p in ref_draws])  # (seeds, ...)
        if not hasattr(impl_draws[0], name):
            raise Mismatch(f"initial_params.{name}", "missing: initial_params must return the reference's fields")
        a = np.stack([as_numpy(getattr(p, name), f"initial_params.{name}") for p in impl_draws])
        if a.shape != r.shape:
            raise Mismatch(f"initial_params.{name}", f"shape {a.shape[1:]}, expected {r.shape[1:]}")
        if all(np.array_equal(r[0], r[k]) for k in range(1, n_seeds)):
            for k in range(n_seeds):
                assert_matches(a[k], r[0], adapter.dtype, f"initial_params.{name} (deterministic in the reference)")
        else:
            _two_sample(a, r, f"initial_params.{name}")


def _impulses(ref, L: int) -> np.ndarray:
    H = ref.d_model
    u = np.zeros((H, L, H))  # (H_in, L, H): row j is a unit impulse at t = 0 into channel j
    u[np.arange(H), 0, np.arange(H)] = 1.0
    return u


@register(ModelAdapter, "the response to a unit impulse in each channel equals scipy.signal.dimpulse of the "
          "reference's to_dlti() (K_l + D delta_l)", examples=lambda ad: model_inputs(ad), applies=_lti)
def impulse_response_matches_scipy_dimpulse(adapter, ex):
    ref = build_reference(adapter.model, ex)
    impl = adapter.build(ref)
    L = ex["length"]
    y, _ = _forward(adapter, impl, _impulses(ref, L))  # (H_in, L, H_out)
    expected = dimpulse_mimo(ref.to_dlti(), L)  # (L, H_out, H_in)
    assert_matches(np.transpose(y, (1, 2, 0)), expected, adapter.dtype, "impulse response vs scipy dimpulse")


@register(ModelAdapter, "kernel(L) (K_l = C A_bar^l B_bar, without D) equals the reference's",
          examples=lambda ad: model_inputs(ad), applies=_lti, needs=("kernel",))
def kernel_matches_reference(adapter, ex):
    ref = build_reference(adapter.model, ex)
    impl = adapter.build(ref)
    K = adapter.kernel(impl, ex["length"])
    assert_matches(K, ref.kernel(ex["length"]), adapter.dtype, "kernel (L, H_out, H_in)")


@register(ModelAdapter, "frequency_response(w) equals C (I - e^{-iw} A_bar)^-1 B_bar + D, the formula evaluated "
          "by linear solves on scipy's system, and the reference's (rtol scaled by the condition number "
          "|a| / |e^{iw} - a| of the nearest pole)",
          examples=lambda ad: model_inputs(ad), applies=_lti, needs=("frequency_response",))
def frequency_response_matches_scipy(adapter, ex):
    ref = build_reference(adapter.model, ex)
    impl = adapter.build(ref)
    w = np.linspace(0.0, np.pi, ex["length"] + 1)
    H = adapter.frequency_response(impl, w)
    sys = ref.to_dlti()
    # near a pole a the response's relative rounding grows by |a| / |e^{iw} - a|, in any correct evaluation
    poles = np.linalg.eigvals(sys.A)  # (S,)
    condition = (np.abs(poles)[None] / np.abs(np.exp(1j * w)[:, None] - poles[None])).max(-1)  # (len(w),)
    condition = condition[:, None, None]
    assert_matches(H, formula_by_solves(sys, w), adapter.dtype, "frequency response vs scipy system",
                   condition=condition)
    assert_matches(H, ref.frequency_response(w), adapter.dtype, "frequency response vs reference", condition=condition)


@register(ModelAdapter, "the gradient of sum(g * y) with respect to u equals the project's float64 torch twin's "
          "(fast.models.<model>.from_reference(ref), autograd)", examples=lambda ad: model_inputs(ad),
          needs=("grad_input",))
def input_gradient_matches_fast_float64(adapter, ex):
    ref, impl, u = _setup(adapter, ex)
    tau = _gaps(ex)
    g = np.random.default_rng(ex["input_seed"] + 5).normal(size=u.shape)  # (B, L, H_out); H_out = H
    expected, _ = _twin_gradients(adapter, ref, u, g, tau)
    grad = adapter.grad_input(impl, u, g, **({} if tau is None else {"integration_timesteps": tau}))
    assert_matches(grad, expected, adapter.dtype, "dL/du")

def _twin_gradients(adapter, ref, u, g, tau):
    """The float64 torch twin's gradients of sum(g * y): (dL/du, {field: dL/dfield}); complex fields as
    dL/dRe + i dL/dIm."""
    try:
        import torch

        import fast.models
    except ImportError as exc:  # pragma: no cover - the kit's own extra brings torch
        raise Unsupported(f"the float64 twin needs torch and fast ({exc})") from None
    twin = getattr(fast.models, adapter.model).from_reference(ref).to(torch.float64)
    ut = torch.tensor(u, requires_grad=True)
    kwargs = {} if tau is None else {"integration_timesteps": torch.tensor(tau)}
    (twin(ut, **kwargs) * torch.tensor(g)).sum().backward()
    grads = {}
    for name, p in twin.named_parameters():
        grad = torch.zeros_like(p).numpy() if p.grad is None else p.grad.numpy()  # None: no path to the output
        complex_field = np.iscomplexobj(getattr(ref.params, name, None))
        grads[name] = grad[..., 0] + 1j * grad[..., 1] if complex_field else grad
    return ut.grad.numpy(), grads


@register(ModelAdapter, "the gradients of sum(g * y) with respect to the parameters the adapter maps (reference "
          "layout; complex ones as dL/dRe + i dL/dIm) equal the project's float64 torch twin's, all fields at their "
          "joint scale",
          examples=lambda ad: model_inputs(ad), needs=("grad_params",))
def parameter_gradients_match_fast_float64(adapter, ex):
    ref, impl, u = _setup(adapter, ex)
    tau = _gaps(ex)
    g = np.random.default_rng(ex["input_seed"] + 5).normal(size=u.shape)  # (B, L, H)
    _, expected = _twin_gradients(adapter, ref, u, g, tau)
    got = adapter.grad_params(impl, u, g, **({} if tau is None else {"integration_timesteps": tau}))
    if not isinstance(got, dict) or not got:
        raise Mismatch("grad_params", f"expected a non-empty dict {{field: gradient}}, got {type(got).__name__}")
    names = sorted(got)
    for name in names:
        if name not in expected:
            raise Mismatch(f"dL/d{name}", f"{name!r} is not a parameter field of reference {adapter.model}")
    # one comparison at the joint scale of every mapped gradient: a field whose true gradient nearly cancels (1e-17
    # beside O(1) ones) carries, in any float32 evaluation, the rounding of the terms that cancel
    got_arrays = [as_numpy(got[n], f"dL/d{n}") for n in names]
    for name, a in zip(names, got_arrays):
        if a.shape != expected[name].shape:
            raise Mismatch(f"dL/d{name}", f"shape {a.shape}, expected {expected[name].shape}")
    flat = np.concatenate([a.astype(complex).ravel() for a in got_arrays])
    flat_expected = np.concatenate([np.asarray(expected[n]).astype(complex).ravel() for n in names])
    sizes = np.cumsum([a.size for a in got_arrays])
    try:
        assert_matches(flat, flat_expected, adapter.dtype, "dL/dparams")
    except Mismatch as mismatch:
        worst = int(np.argmax(np.abs(flat - flat_expected)))
        field = names[int(np.searchsorted(sizes, worst, side="right"))]
        raise Mismatch(f"dL/d{field} (the worst of the mapped fields {names}, at their joint scale)",
                       mismatch.detail, mismatch.worst, mismatch.bound) from None
