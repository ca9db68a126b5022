"""The fast LTI models (``fast.models.S4, S4D, S5, LRU, Centaurus``) equal their reference twins (issue 5).

For every model and every discretization it supports, with hypothesis-drawn sizes, seeds and options:

* forward (FFT convolution + initial-state response) == the reference's default mode, in float64 (the
  float64 tolerance) and, after ``.to(torch.float32)``, in float32 (the float32 tolerance), outputs and
  final states, from a zero or a drawn initial state, batched and unbatched; the output is contiguous;
* ``step`` == the reference's ``step``; the kernel, impulse and frequency responses == the reference's;
* gradients with respect to the input, the initial state and every parameter pass
  ``torch.autograd.gradcheck`` in float64 on tiny sizes;
* ``from_reference`` is exact, ``state_dict`` save/load (through ``torch.save``) gives bit-identical
  outputs, and ``.to(float32).to(float64)`` keeps the imaginary parts of complex parameters;
* the kernel cache: eval-mode outputs equal training-mode outputs, the cache is used, and an in-place
  parameter change in eval mode is seen (no stale kernel);
* ``torch.compile`` of S4D's forward on CPU equals eager; bad input raises ``ValueError`` naming the
  argument; model-specific extras (bidirectional S5, S4's O(N) bilinear step, Centaurus's contraction
  orders) equal the reference.

A slow test runs S4D at L = 1,000,000 (float32, B = 1, H = 16) in a subprocess and measures its time and
peak memory. The torch thread pool is limited to one thread in this module: the sizes are tiny and on a
shared 2-core machine the pool's synchronization costs more than the work.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fast.models
import reference.models
from equivalence_tests.strategies import lengths, seeds
from equivalence_tests.tolerances import assert_close

REPO = Path(__file__).resolve().parents[1]
NAMES = ["S4D", "S5", "LRU", "S4", "Centaurus"]
W = np.linspace(0.0, np.pi, 5)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------
# Drawing models and inputs
# ------------------------------------------------------------------------------------------------


@st.composite
def model_specs(draw, name, methods=None, tiny=False):
    """``(name, args, options)`` of a small model: d_model 1..3, even d_state 2..6, a drawn seed,
    discretization and model options (tiny: d_model <= 2, d_state <= 4)."""
    cls = getattr(reference.models, name)
    H = draw(st.integers(1, 2 if tiny else 3))
    N = draw(st.sampled_from([2, 4] if tiny else [2, 4, 6]))
    method = draw(st.sampled_from(cls.discretizations if methods is None else methods))
    options = {"seed": draw(seeds)}
    if name == "S4D":
        options["init"] = draw(st.sampled_from(["legs", "lin", "inv", "real"]))
    elif name == "S5":
        options["conj_sym"] = draw(st.booleans())
        options["C_init"] = draw(st.sampled_from(["trunc_standard_normal", "lecun_normal", "complex_normal"]))
    elif name == "Centaurus":
        mode = draw(st.sampled_from(["pointwise", "neck", "dws", "full"]))
        options["mode"] = mode
        options["sub_state_dim"] = draw(st.integers(1, 2 if tiny else 3))
        N = N // 2 if mode in ("pointwise", "neck") else None  # J state channels; dws / full: natural
    return name, (H, N, method), options


def build(spec, **override):
    """The reference model of ``spec`` and its fast twin (float64, by ``from_reference``)."""
    name, (H, N, method), options = spec
    ref = getattr(reference.models, name)(H, N, discretization=method, **{**options, **override})
    return ref, getattr(fast.models, name).from_reference(ref)


def draw_input(seed, B, L, H):
    return np.random.default_rng(seed).normal(size=(B, L, H))


def draw_state(seed, B, S):
    rng = np.random.default_rng(seed + 1)
    return rng.normal(size=(B, S)) + 1j * rng.normal(size=(B, S))


def to_t(x, dtype=torch.float64):
    x = np.asarray(x)
    if np.iscomplexobj(x):
        return torch.tensor(x, dtype=torch.complex128 if dtype == torch.float64 else torch.complex64)
    return torch.tensor(x, dtype=dtype)


# ------------------------------------------------------------------------------------------------
# forward, final state, step: float64 and float32
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data(), seed=seeds, B=st.integers(1, 3), L=lengths, with_state=st.booleans(), unbatched=st.booleans())
def test_fast_lti_forward_float64_matches_reference(name, data, seed, B, L, with_state, unbatched):
    ref, model = build(data.draw(model_specs(name)))
    S = model.state_size()
    assert S == ref.ssm().state_size
    u = draw_input(seed, B, L, ref.d_model)
    x0 = draw_state(seed, B, S) if with_state else None
    if unbatched:
        u, x0 = u[0], (None if x0 is None else x0[0])
    y_ref, state_ref = ref.forward(u, initial_state=x0, return_state=True)
    y, state = model(to_t(u), initial_state=None if x0 is None else to_t(x0), return_state=True)
    assert y.dtype == torch.float64 and state.dtype == torch.complex128
    assert y.is_contiguous(), "forward must return a contiguous tensor (its FFTs run on a channels-first view)"
    assert_close(y, y_ref, "float64", f"{name} {ref.discretization} output")
    assert_close(state, state_ref, "float64", f"{name} {ref.discretization} final state")
    assert_close(model(to_t(u), initial_state=None if x0 is None else to_t(x0)), y_ref, "float64", "return_state=False")


def assert_close_in_signal_units(actual, expected, what):
    """The float32 comparison, in units of the expected signal's RMS size when that exceeds 1.

    Rounding errors of a float32 sum are relative to the size of the values summed, not of each result:
    an output entry near zero inside a signal of RMS size 5 carries errors of a few ulps of 5. Models
    with large gains (S4 with "dirac", whose B_bar = B is not scaled by dt) reach that size at short
    lengths, and there the kernel is as accurate as float32 allows (measured: 14 eps relative to its
    largest tap, better than brute-force float32 powers). Signals of size <= 1 are compared as they are.
    """
    actual = actual.detach().numpy()
    scale = max(1.0, float(np.sqrt(np.mean(np.abs(expected) ** 2))))
    assert_close(actual / scale, expected / scale, "float32", what)


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data(), seed=seeds, B=st.integers(1, 3), L=lengths, prefix=st.integers(0, 8))
def test_fast_lti_forward_float32_matches_reference(name, data, seed, B, L, prefix):
    """float32 against the float64 reference. The initial state (when ``prefix`` > 0) is one the model
    reaches: the reference's state after a random prefix, as when a long input is processed in chunks.
    (An arbitrary O(1) complex state can make the free response large enough that float32 rounding of
    a_bar^k alone -- the same in a step-by-step float32 recurrence -- exceeds the float32 atol; arbitrary
    states are covered in float64.)"""
    ref, model = build(data.draw(model_specs(name)))
    model = model.to(torch.float32)
    u = draw_input(seed, B, L, ref.d_model).astype(np.float32)  # float32 values, exact in float64 too
    x0 = None
    if prefix:
        _, x0 = ref.forward(draw_input(seed + 3, B, prefix, ref.d_model), return_state=True)
        x0 = x0.astype(np.complex64)
    y_ref, state_ref = ref.forward(u, initial_state=x0, return_state=True)
    y, state = model(to_t(u, torch.float32), initial_state=None if x0 is None else to_t(x0, torch.float32),
                     return_state=True)
    assert y.dtype == torch.float32 and state.dtype == torch.complex64
    assert_close_in_signal_units(y, y_ref, f"{name} {ref.discretization} output")
    assert_close_in_signal_units(state, state_ref, f"{name} {ref.discretization} final state")


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data(), seed=seeds, B=st.integers(1, 3), steps=st.integers(1, 4), cached=st.booleans())
def test_fast_lti_step_matches_reference_step(name, data, seed, B, steps, cached):
    ref, model = build(data.draw(model_specs(name)))
    if cached:
        model.eval()
    u = draw_input(seed, B, steps, ref.d_model)
    x_ref = draw_state(seed, B, model.state_size())
    x = to_t(x_ref)
    with torch.no_grad() if cached else torch.enable_grad():
        for k in range(steps):
            y_ref, x_ref = ref.step(u[:, k], x_ref)
            y, x = model.step(to_t(u[:, k]), x)
            assert_close(y, y_ref, "float64", f"{name} step {k} output")
            assert_close(x, x_ref, "float64", f"{name} step {k} state")
    y0, x1 = model.step(to_t(u[:, 0]), None)  # None: the zero state
    y0_ref, x1_ref = ref.step(u[:, 0], ref.initial_state(B))
    assert_close(y0, y0_ref, "float64", f"{name} step from the zero state")
    assert_close(model.initial_state(B), ref.initial_state(B), "float64", "initial_state")


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data(), L=lengths)
def test_fast_lti_kernel_and_responses_match_reference(name, data, L):
    ref, model = build(data.draw(model_specs(name)))
    assert_close(model.kernel(L), ref.kernel(L), "float64", f"{name} kernel")
    assert_close(model.impulse_response(L), ref.impulse_response(L), "float64", f"{name} impulse response")
    assert_close(model.frequency_response(W), ref.frequency_response(W), "float64", f"{name} frequency response")
    sys_ref, sys = ref.ssm(), model.ssm()
    for field in ("A_bar", "B_bar", "C", "D"):
        assert_close(getattr(sys, field), getattr(sys_ref, field), "float64", f"{name} ssm().{field}")
    assert sys.readout == sys_ref.readout


# ------------------------------------------------------------------------------------------------
# gradients
# ------------------------------------------------------------------------------------------------

GRAD_CASES = [(name, method) for name in NAMES for method in getattr(reference.models, name).discretizations]


@pytest.mark.parametrize(("name", "method"), GRAD_CASES)
@settings(max_examples=2)
@given(data=st.data(), seed=seeds, L=st.integers(1, 5))
def test_fast_lti_gradients_match_finite_differences(name, method, data, seed, L):
    """d(output, final state) / d(input, initial state, every parameter) by torch.autograd.gradcheck."""
    ref, model = build(data.draw(model_specs(name, methods=[method], tiny=True)))
    names = [n for n, p in model.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    u = to_t(draw_input(seed, 1, L, ref.d_model)).requires_grad_()
    x0 = torch.view_as_real(to_t(draw_state(seed, 1, model.state_size()))).clone().requires_grad_()

    def run(u, x0, *ps):
        y, x = torch.func.functional_call(
            model, dict(zip(names, ps)), (u,), {"initial_state": torch.view_as_complex(x0), "return_state": True}
        )
        return y, torch.view_as_real(x)

    assert torch.autograd.gradcheck(run, (u, x0, *params), fast_mode=True)


# ------------------------------------------------------------------------------------------------
# parameters: exact copy, state_dict, dtype round trip
# ------------------------------------------------------------------------------------------------


def _complex_names(model):
    return sorted(model._complex_params)


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data(), seed=seeds, L=lengths)
def test_fast_lti_state_dict_save_load_gives_bit_identical_outputs(name, data, seed, L):
    spec = data.draw(model_specs(name))
    ref, model = build(spec)
    for field, value in vars(ref.params).items():
        if isinstance(value, np.ndarray):  # from_reference is an exact copy
            copied = model.param(field).detach().numpy()
            assert copied.dtype == value.dtype and np.array_equal(copied, value), field
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    _, other = build(spec, seed=spec[2]["seed"] + 1)  # same options, other parameters
    other.load_state_dict(torch.load(buffer, weights_only=True))
    u = to_t(draw_input(seed, 2, L, ref.d_model))
    x0 = to_t(draw_state(seed, 2, model.state_size()))
    y, x = model(u, initial_state=x0, return_state=True)
    y2, x2 = other(u, initial_state=x0, return_state=True)
    assert torch.equal(y, y2) and torch.equal(x, x2)


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_fast_lti_to_float32_and_back_keeps_imaginary_parts(name, data):
    ref, model = build(data.draw(model_specs(name)))
    model.to(torch.float32).to(torch.float64)
    for field, value in vars(ref.params).items():
        if not isinstance(value, np.ndarray):
            continue
        expected = torch.from_numpy(value)
        expected = expected.to(torch.complex64 if expected.is_complex() else torch.float32)  # rounded once
        got = model.param(field).detach()
        assert got.dtype == (torch.complex128 if expected.is_complex() else torch.float64), field
        assert torch.equal(got, expected.to(got.dtype)), field
    for field in _complex_names(model):
        if np.any(getattr(ref.params, field).imag != 0):
            assert bool((model.param(field).imag != 0).any()), f"{field}: imaginary part lost"


# ------------------------------------------------------------------------------------------------
# the kernel cache
# ------------------------------------------------------------------------------------------------


def _count_builds(model):
    calls = {"n": 0}
    build_system = model._build_system

    def counting():
        calls["n"] += 1
        return build_system()

    model._build_system = counting
    return calls


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data(), seed=seeds, L=lengths)
def test_fast_lti_eval_cache_equals_training_output_and_sees_parameter_changes(name, data, seed, L):
    ref, model = build(data.draw(model_specs(name)))
    u = to_t(draw_input(seed, 2, L, ref.d_model))
    x0 = to_t(draw_state(seed, 2, model.state_size()))
    y_train, x_train = model(u, initial_state=x0, return_state=True)
    calls = _count_builds(model)
    model.eval()
    with torch.no_grad():
        y_eval, x_eval = model(u, initial_state=x0, return_state=True)
        y_again, x_again = model(u, initial_state=x0, return_state=True)
        K = model.kernel(L)
    assert calls["n"] == 1, "the eval-mode cache was not used"
    assert torch.equal(y_eval, y_train) and torch.equal(y_again, y_train)
    assert torch.equal(x_eval, x_train) and torch.equal(x_again, x_train)
    assert_close(K, ref.kernel(L), "float64", "cached kernel")

    # Change one parameter in place (as an optimizer step would) in eval mode: the cache must see it.
    field = data.draw(st.sampled_from([n for n, _ in model.named_parameters()]))
    delta = np.random.default_rng(seed).normal(size=getattr(ref.params, field).shape) * 0.05
    if field in model._complex_params:
        delta = delta + 1j * np.random.default_rng(seed + 2).normal(size=delta.shape) * 0.05
    setattr(ref.params, field, getattr(ref.params, field) + delta)
    with torch.no_grad():
        getattr(model, field).add_(torch.view_as_real(to_t(delta)) if np.iscomplexobj(delta) else to_t(delta))
        y_new, x_new = model(u, initial_state=x0, return_state=True)
    assert calls["n"] == 2, "the changed parameter did not invalidate the cache"
    y_ref, x_ref = ref.forward(u.numpy(), initial_state=x0.numpy(), return_state=True)
    assert_close(y_new, y_ref, "float64", f"{name} output after changing {field} in eval mode")
    assert_close(x_new, x_ref, "float64", f"{name} state after changing {field} in eval mode")
    # eval mode with gradients enabled computes afresh: the gradients (twice in a row) are training mode's
    params = list(model.parameters())
    grads_eval = [torch.autograd.grad(model(u, initial_state=x0).sum(), params, allow_unused=True) for _ in range(2)]
    model.train()
    assert "_lti_cache" not in model.__dict__
    grads_train = torch.autograd.grad(model(u, initial_state=x0).sum(), params, allow_unused=True)
    for grads in grads_eval:
        for g, g_train in zip(grads, grads_train):
            assert (g is None and g_train is None) or torch.equal(g, g_train)
    assert any(g is not None for g in grads_train)


def test_fast_lti_cache_follows_dtype_and_load_state_dict():
    ref = reference.models.S4D(2, 4, seed=3)
    model = fast.models.S4D.from_reference(ref).eval()
    u = draw_input(0, 1, 9, 2)
    with torch.no_grad():
        model(to_t(u))
        model.to(torch.float32)
        y32 = model(to_t(u, torch.float32))
    assert y32.dtype == torch.float32
    assert_close(y32, ref.forward(u.astype(np.float32)), "float32", "after .to(float32) in eval mode")
    other_ref = reference.models.S4D(2, 4, seed=4)
    model.to(torch.float64)
    with torch.no_grad():
        model(to_t(u))
        model.load_state_dict(fast.models.S4D.from_reference(other_ref).state_dict())
        y = model(to_t(u))
    assert_close(y, other_ref.forward(u), "float64", "after load_state_dict in eval mode")


# ------------------------------------------------------------------------------------------------
# torch.compile, long sequences
# ------------------------------------------------------------------------------------------------


def test_fast_s4d_torch_compile_forward_matches_eager():
    ref = reference.models.S4D(2, 4, discretization="bilinear", seed=1)
    model = fast.models.S4D.from_reference(ref)
    u = to_t(draw_input(1, 2, 11, 2))
    x0 = to_t(draw_state(1, 2, model.state_size()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # inductor warns that it has no code generation for complex ops
        compiled = torch.compile(model.forward)
        y, x = compiled(u, initial_state=x0, return_state=True)
    y_eager, x_eager = model(u, initial_state=x0, return_state=True)
    assert_close(y, y_eager, "float64", "compiled output")
    assert_close(x, x_eager, "float64", "compiled final state")
    assert_close(y, ref.forward(u.numpy(), initial_state=x0.numpy()), "float64", "compiled vs reference")


_LONG_SCRIPT = r"""
import json, resource, sys, time
import numpy as np, torch
import fast.models, reference.models

L, H = 1_000_000, 16
ref = reference.models.S4D(H, seed=0)  # d_state = 64: 32 complex modes per channel
model = fast.models.S4D.from_reference(ref).to(torch.float32).eval()
u = torch.randn(1, L, H, generator=torch.Generator().manual_seed(0))
start = time.perf_counter()
with torch.no_grad():
    y32, x32 = model(u, return_state=True)
out = {"seconds_eval": time.perf_counter() - start}
out["peak_gib_eval"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
model.train()
start = time.perf_counter()
model(u).square().mean().backward()
out["seconds_train"] = time.perf_counter() - start
out["peak_gib_train"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
out["finite"] = bool(torch.isfinite(y32).all() and torch.isfinite(x32).all())
# float64 run of the same model: the whole sequence, and the last 1000 steps restarted from the state
# after the prefix (initial-state response and final state at L = 1e6).
model = model.double().eval()
u64 = u.double()
with torch.no_grad():
    y64, x64 = model(u64, return_state=True)
    _, x_prefix = model(u64[:, : L - 1000], return_state=True)
    y_tail, x_tail = model(u64[:, L - 1000 :], initial_state=x_prefix, return_state=True)
diff = (y32.double() - y64).square().mean().sqrt() / y64.square().mean().sqrt()
out["float32_rel_rms"] = float(diff)
np.savez(sys.argv[1], y_tail=y_tail[0].numpy(), y64_tail=y64[0, L - 1000 :].numpy(), x_tail=x_tail.numpy(),
         x64=x64.numpy(), x32=x32.numpy())
print(json.dumps(out))
"""


@pytest.mark.slow
def test_fast_s4d_runs_one_million_steps_in_float32_within_memory(tmp_path):
    """S4D at L = 1,000,000 (float32, B = 1, H = 16, N = 64) in a fresh process: time and peak RSS.

    Float32 accuracy is checked elementwise on short sequences above. Here, rounding A_bar to float32
    alone (relative 6e-8) changes A_bar^l by up to l times that, so the float32 run is compared with the
    float64 run by its relative RMS error against the float32 rtol; the float64 run is checked
    elementwise: restarting the last 1000 steps from the carried state gives the same outputs.
    """
    arrays = tmp_path / "long.npz"
    result = subprocess.run(
        [sys.executable, "-c", _LONG_SCRIPT, str(arrays)], cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"S4D L=1e6 float32: {json.dumps(out)}")
    assert out["finite"]
    assert out["peak_gib_eval"] < 4.0 and out["peak_gib_train"] < 6.0, out
    assert out["float32_rel_rms"] < 1e-4, out
    saved = np.load(arrays)
    assert_close(saved["y_tail"], saved["y64_tail"], "float64", "last 1000 steps restarted from the carried state")
    assert_close(saved["x_tail"], saved["x64"], "float64", "final state restarted from the carried state")
    assert_close(saved["x32"], saved["x64"], "float32", "float32 final state")


# ------------------------------------------------------------------------------------------------
# backend="triton": the recurrence through the Triton scan kernel (the interpreter on this CPU)
# ------------------------------------------------------------------------------------------------

TRITON_NAMES = ["S4D", "S5", "LRU", "Centaurus"]


@pytest.mark.parametrize("name", TRITON_NAMES)
@settings(max_examples=3)
@given(data=st.data(), seed=seeds, B=st.integers(1, 2), L=st.integers(1, 9), with_state=st.booleans())
def test_fast_lti_fast_triton_matches_reference(name, data, seed, B, L, with_state):
    """Output and final state of the Triton scan path == the reference; its gradients == the torch path's."""
    spec = data.draw(model_specs(name, tiny=True))
    ref, torch_model = build(spec)
    model = getattr(fast.models, name).from_reference(ref, backend="triton")
    assert model.resolved_backend() == "triton" and torch_model.resolved_backend() == "torch"  # auto on CPU
    S = model.state_size()
    u = draw_input(seed, B, L, ref.d_model)
    x0 = draw_state(seed, B, S) if with_state else None
    y_ref, state_ref = ref.forward(u, initial_state=x0, return_state=True)
    u_t = to_t(u).requires_grad_()
    y, state = model(u_t, initial_state=None if x0 is None else to_t(x0), return_state=True)
    assert_close(y, y_ref, "float64", f"{name} {ref.discretization} output (triton)")
    assert_close(state, state_ref, "float64", f"{name} {ref.discretization} final state (triton)")

    weights = torch.tensor(np.random.default_rng(seed + 2).normal(size=y.shape))
    grads = {}
    for which, m in (("triton", model), ("torch", torch_model)):
        u_t.grad = None
        m.zero_grad()
        out, xL = m(u_t, initial_state=None if x0 is None else to_t(x0), return_state=True)
        ((out * weights).sum() + xL.abs().square().sum()).backward()
        # a parameter the output does not reach (the decay when L = 1, in the torch path) has no .grad: zero
        grads[which] = [u_t.grad.clone()] + [torch.zeros_like(p) if p.grad is None else p.grad for p in m.parameters()]
    for (pname, _), g, g_torch in zip([("u", None), *model.named_parameters()], grads["triton"], grads["torch"]):
        assert_close(g, g_torch.numpy(), "float64", f"{name} gradient of {pname} (triton vs torch)")


@settings(max_examples=3)
@given(data=st.data(), seed=seeds, B=st.integers(1, 2), L=st.integers(1, 9))
def test_fast_s5_bidirectional_fast_triton_matches_reference(data, seed, B, L):
    H, N, method = data.draw(model_specs("S5", tiny=True))[1]
    ref = reference.models.S5(H, N, discretization=method, bidirectional=True, seed=seed)
    model = fast.models.S5.from_reference(ref, backend="triton")
    u = draw_input(seed, B, L, ref.d_model)
    assert_close(model(to_t(u)), ref.forward(u), "float64", "bidirectional S5 (triton)")


# ------------------------------------------------------------------------------------------------
# model-specific extras
# ------------------------------------------------------------------------------------------------


@given(data=st.data(), seed=seeds, B=st.integers(1, 2), L=lengths)
def test_fast_s5_bidirectional_matches_reference(data, seed, B, L):
    ref, model = build(data.draw(model_specs("S5")), bidirectional=True)
    u = draw_input(seed, B, L, ref.d_model)
    assert_close(model(to_t(u)), ref.forward(u), "float64", "bidirectional S5")
    assert_close(model(to_t(u[0])), ref.forward(u[0]), "float64", "bidirectional S5, unbatched")
    for call in (lambda: model(to_t(u), return_state=True), lambda: model.step(to_t(u[:, 0]), None),
                 lambda: model.kernel(L), lambda: model.initial_state(B)):
        with pytest.raises(ValueError, match="bidirectional|initial_state"):
            call()


@given(data=st.data(), seed=seeds, B=st.integers(1, 2), steps=st.integers(1, 4))
def test_fast_s4_step_linear_matches_reference_and_the_dense_step(data, seed, B, steps):
    ref, model = build(data.draw(model_specs("S4", methods=["bilinear"])))
    u = draw_input(seed, B, steps, ref.d_model)
    x_ref = ref.initial_state_linear(B)
    x = model.initial_state_linear(B)
    dense = model.initial_state(B)
    for k in range(steps):
        y_ref, x_ref = ref.step_linear(u[:, k], x_ref)
        y, x = model.step_linear(to_t(u[:, k]), x)
        y_dense, dense = model.step(to_t(u[:, k]), dense)
        assert_close(y, y_ref, "float64", f"S4 step_linear {k}")
        assert_close(x, x_ref, "float64", f"S4 step_linear state {k}")
        assert_close(y, y_dense, "float64", f"S4 step_linear vs dense step {k}")
    assert_close(model.kernel_brute_force(7), ref.kernel(7), "float64", "S4 kernel by powers")
    assert_close(model.c_tilde(5), ref.c_tilde(5), "float64", "S4 C_tilde")


@given(data=st.data(), L=st.integers(1, 70), J=st.integers(1, 6))
def test_fast_s4_c_tilde_and_cauchy_sums_match_reference(data, L, J):
    """C_tilde by doubling on the digits of L (one matrix power per digit) == the reference's matrix power
    for every L up to 70 (every pattern of binary digits up to 7 bits), and the paired Cauchy sums (one
    fraction per conjugate pair, a matrix product over the modes) == the reference's term by term."""
    from fast.models.lti.s4 import cauchy_conjugate_pairs
    from reference.models.lti.s4 import cauchy_conjugate_pairs as reference_cauchy

    ref, model = build(data.draw(model_specs("S4")))
    assert_close(model.c_tilde(L), ref.c_tilde(L), "float64", f"S4 C_tilde L={L}")
    rng = np.random.default_rng(L)
    H, N2 = ref.d_model, ref.d_state // 2
    v = rng.normal(size=(H, 3, N2)) + 1j * rng.normal(size=(H, 3, N2))
    w = -np.exp(rng.normal(size=(H, N2))) + 1j * rng.normal(size=(H, N2))
    z = 1j * np.tan(rng.uniform(-1.5, 1.5, size=J))  # the bilinear nodes lie on the imaginary axis
    expected = np.stack([reference_cauchy(v[:, k], z, w) for k in range(3)], axis=1)  # (H, 3, J)
    assert_close(cauchy_conjugate_pairs(to_t(v), to_t(z), to_t(w)), expected, "float64", "paired Cauchy sums")


def test_fast_s4_real_form_and_paired_form_are_inverse_and_act_alike():
    """A paired complex matrix M = [[M1, M2], [conj M2, conj M1]] and its real form act alike on a paired
    vector [x, conj x] and on [Re x, Im x]; ``paired_form`` undoes ``real_form`` and the converse."""
    from fast.models.lti.s4 import paired, paired_form, real_form

    rng = np.random.default_rng(2)
    M1, M2 = (to_t(rng.normal(size=(3, 4, 4)) + 1j * rng.normal(size=(3, 4, 4))) for _ in range(2))
    M = torch.cat([torch.cat([M1, M2], -1), torch.cat([M2.conj(), M1.conj()], -1)], -2)  # (3, 8, 8)
    x = to_t(rng.normal(size=(3, 4)) + 1j * rng.normal(size=(3, 4)))  # (3, 4)
    y = torch.einsum("hmn,hn->hm", M, paired(x))[:, :4]  # (3, 4): the stored half of M [x, conj x]
    r = torch.einsum("hmn,hn->hm", real_form(M), torch.cat([x.real, x.imag], -1))  # (3, 8)
    assert_close(r, torch.cat([y.real, y.imag], -1), "float64", "real form acting on [Re x, Im x]")
    assert_close(paired_form(real_form(M)), M, "float64", "paired_form(real_form(M))")
    R = to_t(rng.normal(size=(3, 8, 8)))
    assert_close(real_form(paired_form(R)), R, "float64", "real_form(paired_form(R))")


@pytest.mark.parametrize("block", [1, 60, 2**18])
def test_fast_s4_cauchy_sums_in_channel_blocks_match_reference(monkeypatch, block):
    """The Cauchy sums run in blocks of channels (rows = block // (N/2 * J)): one row per block, blocks of
    2 rows with a shorter last one (5 = 2 + 2 + 1), and all rows at once give the reference's sums."""
    from fast.models.lti import s4 as fast_s4
    from reference.models.lti.s4 import cauchy_conjugate_pairs as reference_cauchy

    monkeypatch.setattr(fast_s4, "_CAUCHY_BLOCK", block)
    rng = np.random.default_rng(block)
    H, K, N2, J = 5, 3, 4, 7
    v = rng.normal(size=(H, K, N2)) + 1j * rng.normal(size=(H, K, N2))
    w = -np.exp(rng.normal(size=(H, N2))) + 1j * rng.normal(size=(H, N2))
    z = 1j * np.tan(rng.uniform(-1.5, 1.5, size=J))
    expected = np.stack([reference_cauchy(v[:, k], z, w) for k in range(K)], axis=1)  # (H, K, J)
    got = fast_s4.cauchy_conjugate_pairs(to_t(v), to_t(z), to_t(w))
    assert got.shape == (H, K, J)
    assert_close(got, expected, "float64", f"paired Cauchy sums in blocks of {max(1, block // (N2 * J))} rows")


@pytest.mark.parametrize("log10_freq", [0.0, 5.0, 5.5, 6.0, 8.0])
def test_fast_s4_bilinear_refuses_exactly_where_fast_discretize_does(log10_freq):
    """The batched bilinear map skips the SVD where a norm bound proves the condition number is small; in
    float32 it must still refuse exactly the channels ``fast.discretize`` (one channel, exact cond) refuses.
    Channel 0 gets a mode at lambda ~ 0 and one at frequency 10^log10_freq, so cond(I - A / 2) ~
    10^log10_freq / 2 against the float32 limit of about 1.9e5: 5.5 passes the exact test but not the
    cheap bound, 6 and 8 are refused."""
    from fast.discretization import discretize
    from fast.models.lti.s4 import paired

    ref = reference.models.S4(3, 4, seed=1)
    model = fast.models.S4.from_reference(ref).to(torch.float32)
    with torch.no_grad():
        model.log_dt.zero_()  # dt = 1
        model.log_A_real[0] = torch.tensor([-30.0, 0.0])  # lambda_0 = -1e-13
        model.A_imag[0] = torch.tensor([0.0, 10.0**log10_freq])
        model.P[0] = 0.0
    A, B_f, dt = model.state_matrix(), paired(model.param("B")), torch.exp(model.log_dt)
    refused = []
    for h in range(3):
        try:
            discretize(A[h], B_f[h], dt[h], "bilinear")
            refused.append(False)
        except ValueError:
            refused.append(True)
    assert refused == [log10_freq >= 6.0, False, False]  # the cases cover both outcomes
    if any(refused):
        with pytest.raises(ValueError, match="bilinear: I - dt\\*A/2 is singular"):
            model.discretized()
    else:
        A_bar, B_bar = model.discretized()
        for h in range(3):
            A_bar_h, B_bar_h = discretize(A[h], B_f[h], dt[h], "bilinear")
            assert_close(A_bar[h], A_bar_h, "float32", f"A_bar channel {h}")
            assert_close(B_bar[h], B_bar_h, "float32", f"B_bar channel {h}")


@given(data=st.data(), seed=seeds, B=st.integers(1, 3), L=lengths, order=st.sampled_from(["auto", "kernel", "states"]))
def test_fast_centaurus_contraction_orders_match_reference(data, seed, B, L, order):
    ref, model = build(data.draw(model_specs("Centaurus")))
    u = draw_input(seed, B, L, ref.d_model)
    assert model.contraction_order(B) == ref.contraction_order(B)
    assert_close(model.forward_contraction(to_t(u), order), ref.forward_contraction(u, order), "float64", order)
    assert_close(model.channel_kernels(L), ref.channel_kernels(L), "float64", "channel kernels")


BLOCK_CASES = [  # (model, d_state, options, the contraction order at H = 7, B = 5)
    ("S4D", 4, {}, "depthwise"), ("S5", 4, {}, "lanes"), ("LRU", 4, {}, "lanes"), ("S4", 4, {}, "depthwise"),
    ("Centaurus", 4, {"mode": "neck"}, "states"), ("Centaurus", None, {"mode": "full"}, "kernel"),
    ("Centaurus", 4, {"mode": "pointwise", "sub_state_dim": 2}, "projected spectra"),
]


@pytest.mark.parametrize(("name", "N", "options", "order"), BLOCK_CASES)
@pytest.mark.parametrize("rows", [1, 2, 5])
def test_fast_lti_forward_in_blocks_of_batch_rows_matches_reference(name, N, options, order, rows, monkeypatch):
    """``_convolve`` takes the batch in blocks of ``rows`` (5 rows: one row each, two and a short last block
    of one, all at once) with the kernel's spectrum made once, where the kernel has one spectrum per filtered
    signal ("depthwise", "lanes", narrow "states"), and whole in the "kernel" order and the projected spectra
    (H = 7: Centaurus pointwise has 8 lanes, more than the channels). The output equals the reference's with
    autograd recording (blocks joined) and without (blocks written into one output), in training and eval
    mode; the input gradient in blocks passes gradcheck."""
    import fast.models.lti._base as lti_base

    monkeypatch.setattr(lti_base, "_batch_rows", lambda u, K_f: rows)
    blocks, spectra = [], []
    convolve_rows, spectrum = lti_base.FastLTIModel._convolve_rows, lti_base.FastLTIModel._conv_spectrum
    monkeypatch.setattr(lti_base.FastLTIModel, "_convolve_rows", lambda self, sys, u, *a: blocks.append(u.shape[0])
                        or convolve_rows(self, sys, u, *a))
    monkeypatch.setattr(lti_base.FastLTIModel, "_conv_spectrum", lambda *a: spectra.append(1) or spectrum(*a))
    ref = getattr(reference.models, name)(7, N, seed=4, **options)
    model = getattr(fast.models, name).from_reference(ref)
    sys_ = model.system()
    taken = model._order(sys_, 5)
    if taken == "states" and lti_base._wide(sys_, sys_.a_bar.shape[0]):
        taken = "projected spectra"
    assert taken == order
    u = np.random.default_rng(4).normal(size=(5, 6, 7))
    expected = ref.forward(u)
    x = to_t(u).requires_grad_(True)
    assert_close(model(x), expected, "float64", f"{name} {options} in blocks of {rows}, autograd recording")
    in_blocks = order in ("depthwise", "lanes", "states")
    assert blocks == ([rows] * (5 // rows) + ([5 % rows] if 5 % rows else []) if in_blocks else [5])
    assert spectra == [1]
    with torch.no_grad():
        assert_close(model(x), expected, "float64", f"{name} {options} in blocks of {rows}, no autograd")
    model.eval()
    with torch.no_grad():
        assert_close(model(x), expected, "float64", f"{name} {options} in blocks of {rows}, eval mode")
    model.train()
    if rows == 2:
        assert torch.autograd.gradcheck(lambda v: model(v), (x[:3, :4],))


def test_fast_lti_batch_rows_keep_a_block_of_spectra_within_its_budget_on_the_cpu():
    """On the CPU a block's spectra (C signals x n_f bins, complex) stay within ``_BATCH_BLOCK_BYTES`` (at least
    one row); elsewhere (here the meta device) the whole batch goes at once."""
    from fast.models.lti._base import _BATCH_BLOCK_BYTES, _batch_rows

    u = torch.empty(64, 1024, 16, dtype=torch.float32)
    k_f = torch.empty(16, 1025, dtype=torch.complex64)  # 16 * 1025 * 8 bytes per row
    assert _batch_rows(u, k_f) == _BATCH_BLOCK_BYTES // (16 * 1025 * 8) < 64
    assert _batch_rows(u.double(), k_f.to(torch.complex128)) == _BATCH_BLOCK_BYTES // (16 * 1025 * 16)
    assert _batch_rows(u, torch.empty(2**20, 1025, dtype=torch.complex64)) == 1
    assert _batch_rows(u.to("meta"), k_f.to("meta")) == 64


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_fast_lti_bad_input_raises_value_error_naming_the_argument(name):
    ref, model = build((name, (2, 2, None), {"seed": 0}))
    S = model.state_size()
    u = torch.zeros(2, 5, 2, dtype=torch.float64)
    x0 = torch.zeros(2, S, dtype=torch.complex128)
    zeros = lambda *shape: torch.zeros(*shape, dtype=torch.float64)  # noqa: E731
    bad_calls = {
        "u": [lambda: model(zeros(5)), lambda: model(zeros(2, 5, 3)), lambda: model(zeros(2, 0, 2)),
              lambda: model(u.numpy()), lambda: model(u.float())],
        # gaps of the wrong shape: refused by every LTI model (S5 takes gaps of the right shape)
        "integration_timesteps": [lambda: model(u, integration_timesteps=zeros(4) + 1),
                                  lambda: model.step(u[:, 0], x0, integration_timesteps=zeros(3) + 1)],
        "initial_state": [lambda: model(u, initial_state=x0[:, :-1]),
                          lambda: model(u, initial_state=x0.to(torch.complex64)),
                          lambda: model(u, initial_state=x0.numpy())],
        "u_t": [lambda: model.step(u, x0), lambda: model.step(u[:, 0, :1], x0),
                lambda: model.step(u[:, 0].float(), x0)],
        "state": [lambda: model.step(u[:, 0], x0[:1])],
        "L": [lambda: model.kernel(0)],
        "batch_size": [lambda: model.initial_state(0)],
        "backend": [lambda: getattr(fast.models, name).from_reference(ref, backend="cuda")],
        "reference_model": [lambda: getattr(fast.models, name).from_reference(reference.models.Mamba(2))],
    }
    for argument, calls in bad_calls.items():
        for call in calls:
            with pytest.raises(ValueError, match=argument):
                call()
    with pytest.raises(ValueError, match="supported"):  # S5 takes async (irregular time): an unknown name
        getattr(fast.models, name)(2, discretization="euler" if name == "S5" else "async")
    if name == "S4":  # a dense A_bar: no Triton path, said at construction
        with pytest.raises(ValueError, match="backend: S4 has no Triton kernel"):
            getattr(fast.models, name).from_reference(ref, backend="triton")


def _projected_conv_brute_force(u, K, P_in, P_out):
    """P_out (K * (P_in u)) by the convolution sum itself (NumPy, float64): the oracle of the spectral order."""
    v = u @ P_in.T  # (B, L, G)
    L = u.shape[1]
    w = np.stack([sum(K[l] * v[:, t - l] for l in range(t + 1)) for t in range(L)], axis=1)  # (B, L, G)
    return w @ P_out.T  # (B, L, H_out)


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("block", ["one block", "blocks of 3 frequencies"])
def test_fast_conv_projected_matches_the_convolution_sum_and_gradcheck(precision, block, monkeypatch):
    """``conv_projected`` (FFTs on the channel sides, projections on the spectra) == the brute-force sum of
    P_out (K * (P_in u)), with L not a power of two and more groups than channels, its frequencies in one
    block or in blocks of 3 (8 bins: a short last block); gradients by gradcheck (through the kernel's
    spectrum too)."""
    import fast.convolution
    from fast.convolution import conv_projected, depthwise_spectrum, fft_length

    if block != "one block":
        monkeypatch.setattr(fast.convolution, "_FREQUENCY_BLOCK", 2 * 6 * 3)  # B * G * 3

    def fft_conv_projected(u, K, P_in, P_out):  # K (L, G) taps first, as the brute force reads it
        n = fft_length(u.shape[1], K.shape[0])
        return conv_projected(u, depthwise_spectrum(K.T, n), n, P_in, P_out)

    rng = np.random.default_rng(5)
    B, L, H_in, G, H_out = 2, 7, 3, 6, 2
    u, K = rng.normal(size=(B, L, H_in)), rng.normal(size=(L, G))
    P_in, P_out = rng.normal(size=(G, H_in)), rng.normal(size=(H_out, G))
    dtype = {"float64": torch.float64, "float32": torch.float32}[precision]
    args = [to_t(x, dtype) for x in (u, K, P_in, P_out)]
    expected = _projected_conv_brute_force(*(x.double().numpy() for x in args))
    assert_close(fft_conv_projected(*args), expected, precision, "projected convolution")
    if precision == "float64":
        leaves = [x.clone().requires_grad_(True) for x in args]
        assert torch.autograd.gradcheck(fft_conv_projected, leaves)


def test_fast_centaurus_pointwise_with_more_lanes_than_channels_projects_the_spectra(monkeypatch):
    """Centaurus pointwise with J * M = 8 lanes over H = 6 channels (at B = 2 the official rule picks the "states"
    order: 2 / H < 1 / B + 1 / (J * M)) takes the spectral order (counted), and its
    output, in training and eval mode, equals the reference's; its input gradient passes gradcheck."""
    import fast.models.lti._base as lti_base

    calls = []
    projected = lti_base.conv_projected
    monkeypatch.setattr(lti_base, "conv_projected", lambda *a: calls.append(1) or projected(*a))
    ref = reference.models.Centaurus(6, 4, mode="pointwise", sub_state_dim=2, seed=3)
    model = fast.models.Centaurus.from_reference(ref)
    assert model.contraction_order(2) == "states"
    u = np.random.default_rng(3).normal(size=(2, 9, 6))
    assert_close(model(to_t(u)), ref.forward(u), "float64", "Centaurus pointwise, training mode")
    model.eval()
    with torch.no_grad():
        assert_close(model(to_t(u)), ref.forward(u), "float64", "Centaurus pointwise, eval mode")
    model.train()
    assert torch.autograd.gradcheck(lambda x: model(x), (to_t(u).requires_grad_(True),))
    assert len(calls) >= 3
