"""fast behaves as a PyTorch user expects (issue 16, part B): torch.compile, half precision and autocast,
gradients that reach every parameter, empty and bad input, and the validation switch.

* ``torch.compile(model, fullgraph=True)`` traces the forward of every fast model in training and eval mode with
  ``fast.validation`` off (a graph break or a ``.item()`` fails ``fullgraph``); the compiled output equals the
  eager one. The matrix runs on the ``aot_eager`` backend (dynamo's trace, which is where graph breaks and host
  reads show, and AOT autograd's joint graph), one model through the default inductor backend.
* Mamba, RG-LRU, S7 and the real-valued ops take float16 and bfloat16: the outputs are held, with the table's row
  of the dtype, against the reference run in float64 on the same half-precision values cast to float64.
  The complex models and ops refuse half precision with a ValueError naming the dtype. ``torch.autocast`` on CPU
  (bfloat16) runs the half-capable models.
* One backward gives every parameter of every model, under every rule it supports, a gradient.
* Batch 0 and L = 0 raise a ValueError naming ``u`` (``b`` for linear_scan) in every entry point.
* While validation is on, every entry point refuses a NaN in its tensors (models: input, state and every
  parameter, named); while it is off none reads a value (a NaN passes through).

Models are built with explicit ``dtype`` and ``seed`` (or ``from_reference``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fast
import fast.models
import fast.ops
import reference
import reference.models
from equivalence_tests.tolerances import assert_close

LTI = ["S4D", "S4", "S5", "LRU", "Centaurus"]
LTV = ["Mamba", "RGLRU", "S7"]
MODELS = LTI + LTV
HALF = [torch.bfloat16, torch.float16]
H = 4


def _model(name, dtype=torch.float64, discretization=None, **options):
    cls = getattr(fast.models, name)
    if name == "RGLRU":
        return cls(H, discretization=discretization, seed=0, dtype=dtype, **options)
    return cls(H, 4, discretization=discretization, seed=0, dtype=dtype, **options)


def _u(*shape, dtype=torch.float64, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


# ------------------------------------------------------------------------------------------------
# torch.compile
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", MODELS)
def test_compile_fullgraph_traces_every_model_forward(name, training):
    torch._dynamo.reset()
    model = _model(name, torch.float32).train(training)
    u = _u(2, 9, H, dtype=torch.float32)
    with fast.validation(False):
        compiled = torch.compile(model, fullgraph=True, dynamic=False, backend="aot_eager")
        y = compiled(u)
        y_eager = model(u)
    assert_close(y, y_eager.detach().double(), "float32", f"{name} compiled against eager")
    if training:  # the compiled graph is differentiable
        y.square().sum().backward()
        assert all(p.grad is not None for p in model.parameters())


def test_compile_with_inductor_mamba_eval():
    torch._dynamo.reset()
    model = _model("Mamba", torch.float32).eval()
    u = _u(2, 9, H, dtype=torch.float32)
    with fast.validation(False), torch.no_grad():
        y = torch.compile(model, fullgraph=True, dynamic=False)(u)
        y_eager = model(u)
    assert_close(y, y_eager.double(), "float32", "Mamba compiled by inductor against eager")


def test_compile_fullgraph_of_the_ops():
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(1)
    u, dt = torch.randn(2, 11, 3, generator=g), torch.rand(2, 11, 3, generator=g) + 0.1
    A = -torch.rand(3, 4, generator=g) - 0.5
    B, C = torch.randn(2, 11, 4, generator=g), torch.randn(2, 11, 4, generator=g)
    K = torch.randn(11, 3, generator=g)

    def ops(u, dt, A, B, C, K):
        y = fast.ops.selective_scan(u, dt, A, B, C, method="zoh")
        return y + fast.ops.fft_conv(u, K)

    with fast.validation(False):
        y = torch.compile(ops, fullgraph=True, dynamic=False, backend="aot_eager")(u, dt, A, B, C, K)
        y_eager = ops(u, dt, A, B, C, K)
    assert_close(y, y_eager.double(), "float32", "ops compiled against eager")


# ------------------------------------------------------------------------------------------------
# half precision
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", LTV)
def test_half_precision_ltv_models_match_the_reference(name, dtype):
    """A half-precision model's output against the reference in float64 on its own (half-precision) parameters
    and input; the step recurrence too, and the state keeps the module's dtype."""
    model = _model(name, dtype)
    u = _u(2, 10, H, dtype=dtype)
    y, state = model(u, return_state=True)
    assert y.dtype == dtype
    ref = model.to_reference()  # the half-precision parameters, exactly, in float64
    y_ref = ref.forward(u.double().numpy())
    assert_close(y, y_ref, str(dtype).replace("torch.", ""), f"{name} {dtype} forward")
    y_t, _ = model.step(u[:, 0], model.initial_state(2))
    assert y_t.dtype == dtype
    assert_close(y_t, y_ref[:, 0], str(dtype).replace("torch.", ""), f"{name} {dtype} step")


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_half_precision_ops_match_the_reference(dtype):
    name = str(dtype).replace("torch.", "")
    g = torch.Generator().manual_seed(3)
    cast = lambda *shape, scale=1.0, shift=0.0: (torch.randn(*shape, generator=g) * scale + shift).to(dtype)  # noqa: E731
    np64 = lambda x: x.double().numpy()  # noqa: E731
    u, B, C = cast(2, 13, 3), cast(2, 13, 4), cast(2, 13, 4)
    dt = (torch.rand(2, 13, 3, generator=g) * 0.5 + 0.05).to(dtype)
    A = (-torch.rand(3, 4, generator=g) - 0.5).to(dtype)
    D, z = cast(3), cast(2, 13, 3)
    y, state = fast.ops.selective_scan(u, dt, A, B, C, D, z, method="zoh", return_state=True)
    y_ref, state_ref = reference.selective_scan(*map(np64, (u, dt, A, B, C, D, z)), method="zoh", return_state=True)
    assert y.dtype == state.dtype == dtype
    assert_close(y, y_ref, name, "selective_scan output")
    assert_close(state, state_ref, name, "selective_scan state")

    a, b = (torch.rand(2, 13, 3, generator=g) * 0.9).to(dtype), cast(2, 13, 3)
    x, final = fast.ops.linear_scan(a, b)
    x_ref, final_ref = reference.linear_scan(np64(a), np64(b))
    assert x.dtype == final.dtype == dtype
    assert_close(x, x_ref, name, "linear_scan states")
    assert_close(final, final_ref, name, "linear_scan final state")
    assert fast.linear_scan is fast.ops.linear_scan

    K = cast(13, 3, scale=0.5)
    y = fast.ops.fft_conv(u, K)
    assert y.dtype == dtype
    assert_close(y, reference.convolution.fft_conv(np64(u), np64(K)), name, "fft_conv")

    Lambda, Bd, dt1 = (-torch.rand(4, generator=g) - 0.1).to(dtype), cast(4, 2), torch.tensor(0.3).to(dtype)
    for method in ("zoh", "bilinear", "dirac"):
        for A_in in (Lambda, torch.diag(Lambda)):  # diagonal and dense
            A_bar, B_bar = fast.discretize(A_in, Bd, dt1, method)
            A_ref, B_ref = reference.discretize(np64(A_in), np64(Bd), float(dt1), method)
            assert A_bar.dtype == B_bar.dtype == dtype
            assert_close(A_bar, A_ref, name, f"discretize {method} A_bar ({A_in.ndim}-D)")
            assert_close(B_bar, B_ref, name, f"discretize {method} B_bar ({A_in.ndim}-D)")


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", LTI)
def test_complex_models_refuse_half_precision_naming_the_dtype(name, dtype):
    model = _model(name).to(dtype)
    with pytest.raises(ValueError, match=rf"dtype: {name} does not support {dtype}.*supported: torch.float32"):
        model(_u(2, 5, H, dtype=dtype))
    with pytest.raises(ValueError, match=rf"dtype: {name} does not support {dtype}"):
        model.step(_u(2, H, dtype=dtype), None)


def test_complex_ops_refuse_half_precision_naming_the_dtype():
    c = torch.ones(1, 3, 2, dtype=torch.complex32)
    with pytest.raises(ValueError, match="dtype: linear_scan with complex inputs does not support torch.complex32"):
        fast.ops.linear_scan(c, c)
    with pytest.raises(ValueError, match="dtype: fft_conv with complex inputs does not support torch.complex32"):
        fast.ops.fft_conv(c, torch.ones(3, 2, dtype=torch.complex32))
    with pytest.raises(ValueError, match="dtype: discretize_diagonal .* does not support torch.complex32"):
        fast.discretize_diagonal(torch.ones(2, dtype=torch.complex32), torch.ones(2, dtype=torch.complex32), 0.1)


@pytest.mark.parametrize("name", LTV)
def test_autocast_bfloat16_on_cpu_runs_the_half_capable_models(name):
    model = _model(name, torch.float32)
    u = _u(2, 10, H, dtype=torch.float32)
    y32 = model(u).detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(u)
    y.float().square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    # bfloat16 products against the float32 model: within the bfloat16 row
    assert_close(y.float(), y32.double(), "bfloat16", f"{name} under autocast against float32")


# ------------------------------------------------------------------------------------------------
# gradients reach every parameter
# ------------------------------------------------------------------------------------------------

_RULES = [(n, r) for n in MODELS for r in getattr(reference.models, n).supported_discretizations()]


@pytest.mark.parametrize("name, rule", _RULES, ids=[f"{n}-{r}" for n, r in _RULES])
def test_one_backward_gives_every_parameter_a_gradient(name, rule):
    model = _model(name, discretization=rule)
    kwargs = {"integration_timesteps": _u(7).abs() + 0.5} if rule == "async" else {}
    model(_u(2, 7, H), **kwargs).square().sum().backward()
    missing = [k for k, p in model.named_parameters() if p.grad is None]
    assert not missing, f"{name} ({rule}): no gradient reaches {missing}"


def test_lru_native_has_no_step_parameter_and_round_trips():
    model = _model("LRU", discretization="native")
    assert "log_dt" not in dict(model.named_parameters())
    ref = reference.models.LRU(H, 4, seed=0)
    back = model.to_reference()
    for field in ("log_dt", "nu_log", "B_re"):
        assert np.array_equal(getattr(back.params, field), getattr(ref.params, field)), field


# ------------------------------------------------------------------------------------------------
# step on an unbatched input
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_step_accepts_an_unbatched_input(name):
    model = _model(name)
    u = _u(3, H)
    state = model.initial_state(1)
    one = (lambda s: s[0]) if isinstance(state, torch.Tensor) else (lambda s: type(s)(*(x[0] for x in s)))
    y_b, state_b = model.step(u[:1], state)
    y_u, state_u = model.step(u[0], one(state))
    assert y_u.shape == (H,)
    assert torch.equal(y_u, y_b[0])
    flat_u = [state_u] if isinstance(state_u, torch.Tensor) else list(state_u)
    flat_b = [state_b] if isinstance(state_b, torch.Tensor) else list(state_b)
    for s_u, s_b in zip(flat_u, flat_b):
        assert torch.equal(s_u, s_b[0])


# ------------------------------------------------------------------------------------------------
# empty input
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape", [(0, 5, H), (2, 0, H), (0, H)], ids=["batch 0", "L 0", "unbatched L 0"])
def test_models_refuse_empty_input_naming_u(name, shape):
    with pytest.raises(ValueError, match="^u: expected"):
        _model(name)(torch.zeros(shape, dtype=torch.float64))


@pytest.mark.parametrize("name", MODELS)
def test_step_refuses_batch_0_naming_u_t(name):
    with pytest.raises(ValueError, match="^u_t: expected"):
        _model(name).step(torch.zeros(0, H, dtype=torch.float64), None)


@pytest.mark.parametrize("L, Bsz", [(0, 2), (5, 0)], ids=["L 0", "batch 0"])
def test_ops_refuse_empty_input_naming_it(L, Bsz):
    u = torch.zeros(Bsz, L, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="^u: expected"):
        fast.ops.fft_conv(u, torch.ones(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="^u: expected"):
        fast.ops.selective_scan(u, u, -torch.ones(3, 2, dtype=torch.float64), u[..., :2], u[..., :2])
    with pytest.raises(ValueError, match="^b: expected"):
        fast.ops.linear_scan(u, u)


# ------------------------------------------------------------------------------------------------
# validation on and off
# ------------------------------------------------------------------------------------------------


def _nan_at(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x.view(-1)[-1] = float("nan")  # the last entry: it reaches an output in every op (a_0 meets a zero state)
    return x


def _op_calls():
    """Each entry point with one NaN argument: (call with the NaN, the argument named)."""
    g = torch.Generator().manual_seed(5)
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    u, dt, B, C = r(2, 6, 3), r(2, 6, 3).abs() + 0.1, r(2, 6, 2), r(2, 6, 2)
    A, a = -r(3, 2).abs() - 0.1, r(2, 6, 3).tanh()
    Lambda, Bd = -r(2).abs() - 0.1, r(2, 3)
    ss = dict(u=u, dt=dt, A=A, B=B, C=C)
    calls = {}
    for k in ss:
        calls[f"selective_scan {k}"] = (lambda k=k: fast.ops.selective_scan(**(ss | {k: _nan_at(ss[k])})), k)
    calls["selective_scan initial_state"] = (
        lambda: fast.ops.selective_scan(**ss, initial_state=_nan_at(r(2, 3, 2))), "initial_state"
    )
    calls["linear_scan a"] = (lambda: fast.ops.linear_scan(_nan_at(a), u), "a")
    calls["linear_scan b"] = (lambda: fast.ops.linear_scan(a, _nan_at(u)), "b")
    calls["linear_scan initial_state"] = (lambda: fast.ops.linear_scan(a, u, _nan_at(r(2, 3))), "initial_state")
    calls["fft_conv u"] = (lambda: fast.ops.fft_conv(_nan_at(u), r(4, 3)), "u")
    calls["fft_conv K"] = (lambda: fast.ops.fft_conv(u, _nan_at(r(4, 3))), "K")
    calls["discretize_diagonal Lambda"] = (lambda: fast.discretize_diagonal(_nan_at(Lambda), Bd, 0.1), "Lambda")
    calls["discretize_diagonal B"] = (lambda: fast.discretize_diagonal(Lambda, _nan_at(Bd), 0.1), "B")
    calls["discretize_diagonal dt"] = (lambda: fast.discretize_diagonal(Lambda, Bd, _nan_at(r(2).abs())), "dt")
    calls["discretize dense A"] = (lambda: fast.discretize(_nan_at(torch.diag(Lambda)), Bd, 0.1), "A")
    calls["discretize dense B"] = (lambda: fast.discretize(torch.diag(Lambda), _nan_at(Bd), 0.1), "B")
    return calls


_OPS = _op_calls()


@pytest.mark.parametrize("case", list(_OPS), ids=list(_OPS))
def test_every_op_refuses_a_nan_while_validating_and_reads_no_value_when_off(case):
    call, name = _OPS[case]
    with pytest.raises(ValueError, match=rf"^{name}: contains NaN or infinite values"):
        call()
    with fast.validation(False):
        out = call()  # no check: the NaN propagates instead of an error
    flat = [t for t in (out if isinstance(out, tuple) else (out,)) if isinstance(t, torch.Tensor)]
    assert any(torch.isnan(t).any() for t in flat)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_names_a_nan_input_state_or_parameter_while_validating(name):
    model = _model(name)
    u = _u(2, 5, H)
    with pytest.raises(ValueError, match="^u: contains NaN"):
        model(_nan_at(u))
    with pytest.raises(ValueError, match="^u_t: contains NaN"):
        model.step(_nan_at(u[:, 0]), model.initial_state(2))
    state = model.initial_state(2)
    bad_state = _nan_at(state) if isinstance(state, torch.Tensor) else type(state)(_nan_at(state[0]), *state[1:])
    with pytest.raises(ValueError, match="initial_state.*: contains NaN"):
        model(u, initial_state=bad_state)
    with pytest.raises(ValueError, match="^state.*: contains NaN"):
        model.step(u[:, 0], bad_state)
    for pname, p in model.named_parameters():
        saved = p.detach().clone()
        with torch.no_grad():
            p.copy_(_nan_at(p))
        with pytest.raises(ValueError, match=rf"^{name}\.{pname}: contains NaN"):
            model(u)
        with pytest.raises(ValueError, match=rf"^{name}\.{pname}: contains NaN"):
            model.step(u[:, 0], model.initial_state(2))
        with fast.validation(False):
            y = model(u)  # no value read: the NaN reaches the output
            assert not torch.isfinite(y).all()
        with torch.no_grad():
            p.copy_(saved)


def test_s7_large_finite_input_is_a_valid_step():
    """At u x 100 the softplus of some steps underflows to exactly 0 in float32: a step of 0 is valid
    (a_bar = 1, gamma = 0 under zoh), not an error about a dt the user never passed."""
    model = fast.models.S7(H, 4, seed=0, dtype=torch.float32)
    u = _u(2, 16, H, dtype=torch.float32) * 100
    y = model(u)
    assert torch.isfinite(y).all()
    mamba = fast.models.Mamba(H, 4, seed=0, dtype=torch.float32)
    assert torch.isfinite(mamba(u * 10)).all()


def test_validation_switch_is_restored_and_checked():
    assert fast._checks.validating()
    with fast.validation(False):
        assert not fast._checks.validating()
    assert fast._checks.validating()
    with pytest.raises(ValueError, match="value"):
        fast.set_validation(1)


@pytest.mark.parametrize("name", ["S4", "S4D", "S5", "LRU", "Centaurus"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_complex_models_refuse_half_precision_at_construction(name, dtype):
    model_class = getattr(fast.models, name)
    with pytest.raises(ValueError, match=rf"dtype: {name} does not support {dtype}"):
        model_class(2, 4 if name != "Centaurus" else None, dtype=dtype, seed=0)
    with pytest.raises(ValueError, match=rf"dtype: {name} does not support {dtype}"):
        model_class.from_reference(getattr(reference.models, name)(2, 4 if name != "Centaurus" else None), dtype=dtype)
