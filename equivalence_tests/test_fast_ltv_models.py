"""The fast (torch) LTV models Mamba, RGLRU and S7 equal their reference twins: forward outputs and final
states, step, the RG-LRU layer alone, for every discretization each model supports, with and without event
gaps, initial state and (RG-LRU) segment positions; gradients with respect to the input and every parameter
against finite differences; exact parameter copies that survive state_dict save / load; torch.compile of
Mamba's forward; a long Mamba sequence (slow); and ValueErrors for bad input.

float64 runs are compared with the float64 tolerance. float32 runs use the model ``.to(torch.float32)``
and a reference twin whose parameters, inputs and state are rounded to float32 the same way, compared with
the float32 tolerance, so that the comparison measures the computation and not the rounding of the inputs.
The setups (model sizes and options, inputs, gaps) are the hypothesis strategies of the reference tests.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.func import functional_call

import fast.models
import reference.models
from equivalence_tests.strategies import seeds
from equivalence_tests.test_mamba import mamba_setups
from equivalence_tests.test_rglru import rglru_setups, segment_positions
from equivalence_tests.test_s7 import s7_setups
from equivalence_tests.tolerances import assert_close

REPO = Path(__file__).resolve().parents[1]
PRECISIONS = ["float64", "float32"]
DTYPES = {"float64": torch.float64, "float32": torch.float32}
COMPLEX = {"float64": "complex128", "float32": "complex64"}
MODELS = ["Mamba", "RGLRU", "S7"]
SETUPS = {"Mamba": mamba_setups, "RGLRU": rglru_setups, "S7": s7_setups}
FAST = {"Mamba": fast.models.Mamba, "RGLRU": fast.models.RGLRU, "S7": fast.models.S7}


# ------------------------------------------------------------------------------------------------
# conversions
# ------------------------------------------------------------------------------------------------


def _rounded(x, precision: str) -> np.ndarray:
    """``x`` rounded to ``precision`` and back to float64 / complex128 (integers unchanged)."""
    x = np.asarray(x)
    if precision == "float64" or not np.issubdtype(x.dtype, np.inexact):
        return x
    return x.astype(np.complex64 if np.iscomplexobj(x) else np.float32).astype(x.dtype)


def _t(x, precision: str) -> torch.Tensor:
    """An array as a tensor of ``precision`` (complex stays complex, integers stay int64)."""
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.integer):
        return torch.tensor(x, dtype=torch.int64)
    if np.iscomplexobj(x):
        return torch.tensor(x, dtype=torch.complex128 if precision == "float64" else torch.complex64)
    return torch.tensor(x, dtype=DTYPES[precision])


def _state_t(state, precision: str):
    """A reference state (array or NamedTuple of arrays) as tensors: a plain tuple or a tensor."""
    if isinstance(state, tuple):
        return tuple(_t(s, precision) for s in state)
    return _t(state, precision)


def _state_rounded(state, precision: str):
    if isinstance(state, tuple):
        return type(state)(*(_rounded(s, precision) for s in state))
    return _rounded(state, precision)


def _twins(ref, precision: str):
    """(reference twin whose parameters are rounded to ``precision``, fast model in ``precision``)."""
    fast_model = FAST[type(ref).__name__].from_reference(ref).to(DTYPES[precision])
    ref = copy.deepcopy(ref)
    for field in dataclasses.fields(ref.params):
        if getattr(ref.params, field.name) is not None:  # None: an optional parameter that is off (Mamba's biases)
            setattr(ref.params, field.name, _rounded(getattr(ref.params, field.name), precision))
    return ref, fast_model


def assert_states_close(actual, expected, precision: str, what: str):
    """Field by field for NamedTuple states (segment positions exactly), complex tolerance for S7's."""
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and actual._fields == expected._fields, what
        for name, a, e in zip(expected._fields, actual, expected):
            if np.issubdtype(np.asarray(e).dtype, np.integer):
                assert a.dtype == torch.int64 and np.array_equal(a.numpy(), e), f"{what}: {name}"
            else:
                assert a.dtype == DTYPES[precision], f"{what}: {name} dtype {a.dtype}"
                assert_close(a, e, precision, f"{what}: {name}")
    else:
        assert actual.dtype == getattr(torch, COMPLEX[precision]), f"{what}: dtype {actual.dtype}"
        assert_close(actual, expected, COMPLEX[precision], what)


def _random_state(zeros, rng):
    """A state of the layout of ``zeros`` (a reference state) with random values."""
    if isinstance(zeros, tuple):
        return type(zeros)(*(_random_state(z, rng) for z in zeros))
    if np.issubdtype(zeros.dtype, np.integer):
        return rng.integers(0, 3, size=zeros.shape)
    if np.iscomplexobj(zeros):
        return rng.normal(size=zeros.shape) + 1j * rng.normal(size=zeros.shape)
    return rng.normal(size=zeros.shape)


def _cut(a, s):
    return None if a is None else a[:, s]


@st.composite
def ltv_cases(draw, name: str, precision: str):
    """(reference twin, fast model, u, tau, extra forward kwargs, reference initial state or None).

    The initial state, when drawn, is either the state the reference reaches after a random prefix (RG-LRU:
    its segment position continues from there) or random values."""
    ref, u, tau = draw(SETUPS[name]())
    ref, fast_model = _twins(ref, precision)
    u = _rounded(u, precision)
    tau = None if tau is None else _rounded(tau, precision)
    Bsz, L, _ = u.shape
    kwargs = {}
    if name == "Mamba":
        fast_model.scan_chunk_size = draw(st.sampled_from([1, 2, 3, 64]), label="scan chunk size")
    if name == "S7":
        fast_model.selection_chunk_size = draw(st.sampled_from([1, 2, 3, None]), label="selection chunk size")
    if name == "RGLRU" and draw(st.booleans(), label="segment_pos"):
        kwargs["segment_pos"] = draw(segment_positions(Bsz, L))
    state = None
    kind = draw(st.sampled_from([None, "after a prefix", "random"]), label="initial state")
    rng = np.random.default_rng(draw(seeds))
    if kind == "random":  # any values (RG-LRU: a position of 0, 1 or 2, so a reset may meet a full history)
        state = _random_state(ref.initial_state(Bsz), rng)
        state = _state_rounded(state, precision)
    elif kind == "after a prefix":
        k = int(rng.integers(1, 5))
        prefix_tau = None
        if tau is not None:
            prefix_tau = _rounded(rng.uniform(0.05, 3.0, size=(Bsz, k)), precision)
        _, state = ref.forward(
            _rounded(rng.normal(size=(Bsz, k, ref.d_model)), precision), integration_timesteps=prefix_tau,
            return_state=True,
        )
        state = _state_rounded(state, precision)
    return ref, fast_model, u, tau, kwargs, state


# ------------------------------------------------------------------------------------------------
# forward, step, layer
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", MODELS)
@given(data=st.data())
def test_ltv_model_fast_torch_forward_matches_reference(name, precision, data):
    ref, model, u, tau, kwargs, state = data.draw(ltv_cases(name, precision))
    if tau is not None and data.draw(st.booleans(), label="gaps shared by the batch, shape (L,)"):
        tau = tau[0]
    y_ref, state_ref = ref.forward(u, integration_timesteps=tau, initial_state=state, return_state=True, **kwargs)
    y, final = model(
        _t(u, precision),
        integration_timesteps=None if tau is None else _t(tau, precision),
        initial_state=None if state is None else _state_t(state, precision),
        return_state=True,
        **kwargs,
    )
    what = f"{name} {ref.discretization}, gaps {tau is not None}, initial state {state is not None}"
    assert y.dtype == DTYPES[precision]
    assert_close(y, y_ref, precision, f"outputs ({what})")
    assert_states_close(final, state_ref, precision, f"final state ({what})")


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", MODELS)
@given(data=st.data())
def test_ltv_model_fast_torch_step_matches_reference(name, precision, data):
    ref, model, u, tau, _, state = data.draw(ltv_cases(name, precision))
    state_ref = ref.initial_state(u.shape[0]) if state is None else state
    state_fast = model.initial_state(u.shape[0]) if state is None else _state_t(state, precision)
    for t in range(min(u.shape[1], 5)):
        gap = None if tau is None else tau[:, t]
        y_ref, state_ref = ref.step(u[:, t], state_ref, integration_timesteps=gap)
        y, state_fast = model.step(
            _t(u[:, t], precision), state_fast, integration_timesteps=None if gap is None else _t(gap, precision)
        )
        assert_close(y, y_ref, precision, f"{name} {ref.discretization} step {t} output")
        assert_states_close(state_fast, state_ref, precision, f"{name} step {t} state")


@pytest.mark.parametrize("name", MODELS)
@given(data=st.data())
def test_ltv_model_fast_torch_unbatched_input_matches_reference(name, data):
    ref, model, u, tau, kwargs, state = data.draw(ltv_cases(name, "float64"))
    tau0 = None if tau is None else tau[0]
    kw0 = {k: v[0] for k, v in kwargs.items()}
    state0 = None
    if state is not None:
        state0 = type(state)(*(s[0] for s in state)) if isinstance(state, tuple) else state[0]
    y_ref, s_ref = ref.forward(u[0], integration_timesteps=tau0, initial_state=state0, return_state=True, **kw0)
    y, s = model(
        _t(u[0], "float64"),
        integration_timesteps=None if tau0 is None else _t(tau0, "float64"),
        initial_state=None if state0 is None else _state_t(state0, "float64"),
        return_state=True,
        **kw0,
    )
    assert y.shape == (u.shape[1], ref.d_model)
    assert_close(y, y_ref, "float64", f"{name} unbatched outputs")
    assert_states_close(s, s_ref, "float64", f"{name} unbatched state")


@pytest.mark.parametrize("precision", PRECISIONS)
@given(setup=rglru_setups(), data=st.data())
def test_rglru_fast_torch_layer_matches_reference(precision, setup, data):
    ref, _, tau = setup
    ref, model = _twins(ref, precision)
    rng = np.random.default_rng(data.draw(seeds))
    Bsz, L = tau.shape if tau is not None else (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 17)))
    x = _rounded(rng.normal(size=(Bsz, L, ref.lru_width)), precision)
    seg = data.draw(segment_positions(Bsz, L)) if data.draw(st.booleans()) else None
    h0 = _rounded(rng.normal(size=(Bsz, ref.lru_width)), precision) if data.draw(st.booleans()) else None
    y_ref, h_ref = ref.rg_lru(x, seg, integration_timesteps=tau, initial_state=h0, return_state=True)
    y, h = model.rg_lru(
        _t(x, precision),
        None if seg is None else torch.tensor(seg),
        integration_timesteps=None if tau is None else _t(tau, precision),
        initial_state=None if h0 is None else _t(h0, precision),
        return_state=True,
    )
    assert_close(y, y_ref, precision, "RG-LRU layer outputs")
    assert_close(h, h_ref, precision, "RG-LRU layer last state")


# ------------------------------------------------------------------------------------------------
# gradients
# ------------------------------------------------------------------------------------------------


def _tiny(name: str, method: str | None, segment_reset: bool = True):
    """(reference model, u (1, L, H), forward kwargs) of a tiny model, L = 5 (Mamba: chunks of 2)."""
    rng = np.random.default_rng(7)
    L = 5
    if name == "Mamba":
        # the projection biases (mamba_ssm's bias=True) on the default rule, so that their gradients are checked
        ref = reference.models.Mamba(2, 2, discretization=method, seed=1, d_conv=2, expand=1, bias=method == "mamba")
    elif name == "RGLRU":
        ref = reference.models.RGLRU(2, 2, seed=1, num_heads=2, conv1d_width=2, segment_reset=segment_reset)
    else:
        ref = reference.models.S7(1, 2, discretization=method, seed=1)
    # parameters away from their init values (zero biases, all-equal A_log) so no derivative hides
    for field in dataclasses.fields(ref.params):
        value = getattr(ref.params, field.name)
        if value is not None:  # None: an optional parameter that is off (Mamba's biases)
            setattr(ref.params, field.name, value + 0.1 * rng.normal(size=value.shape))
    kwargs = {}
    if name == "RGLRU":
        kwargs["segment_pos"] = torch.tensor([2, 3, 0, 1, 2])  # a document start inside the sequence
    if method in ("async", "zoh", "dirac") or name == "RGLRU":
        kwargs["integration_timesteps"] = torch.tensor(rng.uniform(0.2, 2.0, size=L))
    return ref, torch.tensor(rng.normal(size=(1, L, ref.d_model))), kwargs


GRAD_CASES = (
    [("Mamba", m, True) for m in reference.models.Mamba.discretizations]
    + [("RGLRU", "rglru", reset) for reset in (True, False)]
    + [("S7", m, True) for m in reference.models.S7.discretizations]
)


@pytest.mark.parametrize(("W", "with_bias", "with_history"), [(4, True, True), (4, False, False), (1, True, True),
                                                              (3, True, False)])
def test_causal_depthwise_conv1d_equals_numpy_convolution_and_its_backward_the_plain_graph(W, with_bias, with_history):
    # The convolution without document starts runs as one Function (taps in place, backward written out): its
    # output equals numpy's full convolution channel by channel, and its gradients (input, weight, bias,
    # history) equal gradcheck's finite differences and autograd's through the masked path with doc_start = 0
    # (which keeps every position, so it is the same convolution as the plain graph of products).
    from fast.models.ltv._base import causal_depthwise_conv1d

    gen = torch.Generator().manual_seed(W)
    Bsz, L, D = 2, 7, 3
    x = torch.randn(Bsz, L, D, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(W, D, dtype=torch.float64, generator=gen, requires_grad=True)
    bias = torch.randn(D, dtype=torch.float64, generator=gen, requires_grad=True) if with_bias else None
    history = (torch.randn(Bsz, W - 1, D, dtype=torch.float64, generator=gen, requires_grad=True)
               if with_history else None)
    y, new_history = causal_depthwise_conv1d(x, weight, bias, history)
    seq = np.concatenate([np.zeros((Bsz, W - 1, D)) if history is None else history.detach().numpy(),
                          x.detach().numpy()], axis=1)  # (B, W-1+L, D)
    expected = np.stack([np.stack([np.convolve(seq[b, :, d], weight.detach().numpy()[::-1, d], mode="valid")
                                   for d in range(D)], axis=-1) for b in range(Bsz)])  # (B, L, D)
    if bias is not None:
        expected = expected + bias.detach().numpy()
    np.testing.assert_allclose(y.detach().numpy(), expected, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(new_history.detach().numpy(), seq[:, L:])

    leaves = [t for t in (x, weight, bias, history) if t is not None]

    def run(*args, doc_start=None):
        it = iter(args)
        call = [next(it) if t is not None else None for t in (x, weight, bias, history)]
        return causal_depthwise_conv1d(*call, doc_start=doc_start)[0]

    assert torch.autograd.gradcheck(run, tuple(leaves))
    g = torch.randn(Bsz, L, D, dtype=torch.float64, generator=gen)
    fast_grads = torch.autograd.grad(run(*leaves), leaves, g)
    plain_grads = torch.autograd.grad(run(*leaves, doc_start=torch.zeros(Bsz, L, dtype=torch.long)), leaves, g)
    for got, want in zip(fast_grads, plain_grads):
        torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(
    ("name", "method", "segment_reset"), GRAD_CASES, ids=[f"{n}-{m}-reset_{r}" for n, m, r in GRAD_CASES]
)
def test_ltv_model_fast_torch_gradients_match_finite_differences(name, method, segment_reset):
    # d(output, final SSM state) / d(input, every parameter), float64, against torch.autograd.gradcheck
    ref, u, kwargs = _tiny(name, None if name == "RGLRU" else method, segment_reset)
    model = FAST[name].from_reference(ref)
    if name == "Mamba":
        model.scan_chunk_size = 2
    if name == "S7":
        model.selection_chunk_size = 2  # three chunks (L = 5), each a checkpoint recomputed in backward
    names = [n for n, _ in model.named_parameters()]
    assert set(names) == {f.name for f in dataclasses.fields(ref.params) if getattr(ref.params, f.name) is not None}
    params = tuple(p.detach().clone().requires_grad_() for p in model.parameters())

    def run(u, *ps):
        y, state = functional_call(model, dict(zip(names, ps)), (u,), dict(kwargs, return_state=True))
        ssm = state if isinstance(state, torch.Tensor) else state.ssm_state
        return y, ssm

    assert torch.autograd.gradcheck(run, (u.requires_grad_(), *params))


@pytest.mark.parametrize(
    ("name", "method", "segment_reset"), GRAD_CASES, ids=[f"{n}-{m}-reset_{r}" for n, m, r in GRAD_CASES]
)
def test_ltv_model_fast_triton_matches_reference(name, method, segment_reset):
    """backend="triton" (Mamba: the fused selective scan; RG-LRU, S7: the diagonal scan kernel, run by the
    interpreter on this CPU): output and final state == the reference, gradients == the torch backend's."""
    ref, u, kwargs = _tiny(name, None if name == "RGLRU" else method, segment_reset)
    model = FAST[name].from_reference(ref, backend="triton")
    torch_model = FAST[name].from_reference(ref, backend="torch")
    if name == "Mamba":
        model.scan_chunk_size = torch_model.scan_chunk_size = 2  # L = 5: three chunks, the last one short
    rng = np.random.default_rng(5)  # the initial state: where the reference is after a 3-step prefix
    prefix_tau = rng.uniform(0.2, 2.0, size=3) if "integration_timesteps" in kwargs else None
    _, state0 = ref.forward(rng.normal(size=(1, 3, ref.d_model)), integration_timesteps=prefix_tau, return_state=True)
    ref_kwargs = {k: v.numpy() for k, v in kwargs.items()}
    y_ref, state_ref = ref.forward(u.numpy(), initial_state=state0, return_state=True, **ref_kwargs)
    kwargs["initial_state"] = _state_t(state0, "float64")
    u = u.requires_grad_()
    y, state = model(u, return_state=True, **kwargs)
    assert_close(y, y_ref, "float64", f"{name} {method} output (triton)")
    assert_states_close(state, state_ref, "float64", f"{name} {method} final state (triton)")

    weights = torch.tensor(np.random.default_rng(3).normal(size=y.shape))
    grads = {}
    for which, m in (("triton", model), ("torch", torch_model)):
        u.grad = None
        y, _ = m(u, return_state=True, **kwargs)
        (y * weights).sum().backward()
        grads[which] = [u.grad.clone()] + [torch.zeros_like(p) if p.grad is None else p.grad for p in m.parameters()]
    for pname, g, g_torch in zip(["u"] + [n for n, _ in model.named_parameters()], grads["triton"], grads["torch"]):
        assert_close(g, g_torch.numpy(), "float64", f"{name} {method} gradient of {pname} (triton vs torch)")


# ------------------------------------------------------------------------------------------------
# parameters: exact copies, state_dict round trip
# ------------------------------------------------------------------------------------------------


def _small(name: str):
    if name == "Mamba":
        return reference.models.Mamba(3, 4, discretization="zoh", seed=3, d_conv=3)
    if name == "RGLRU":
        return reference.models.RGLRU(3, 4, seed=3, num_heads=2)
    return reference.models.S7(3, 4, discretization="bilinear", seed=3)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", MODELS)
def test_ltv_model_fast_from_reference_then_state_dict_round_trip_is_bit_identical(name, precision):
    ref = _small(name)
    model = FAST[name].from_reference(ref).to(DTYPES[precision])
    for field in dataclasses.fields(ref.params):  # an exact copy (a float32 model: exactly rounded)
        if getattr(ref.params, field.name) is None:  # an optional parameter that is off
            assert getattr(model, field.name) is None, field.name
            continue
        expected = torch.tensor(getattr(ref.params, field.name)).to(DTYPES[precision])
        assert torch.equal(getattr(model, field.name).detach(), expected), field.name
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    loaded = FAST[name](ref.d_model, ref.d_state, discretization=ref.discretization, seed=11,
        **_options(ref)).to(DTYPES[precision])
    u = torch.tensor(np.random.default_rng(0).normal(size=(2, 7, ref.d_model)), dtype=DTYPES[precision])
    tau = torch.linspace(0.5, 1.5, 7, dtype=DTYPES[precision])
    assert not torch.equal(loaded(u, integration_timesteps=tau), model(u, integration_timesteps=tau))
    loaded.load_state_dict(torch.load(buffer))
    y, state = model(u, integration_timesteps=tau, return_state=True)
    y_loaded, state_loaded = loaded(u, integration_timesteps=tau, return_state=True)
    assert torch.equal(y, y_loaded)
    for a, b in zip(*((s,) if isinstance(s, torch.Tensor) else s for s in (state, state_loaded))):
        assert torch.equal(a, b)


def _options(ref) -> dict:
    if isinstance(ref, reference.models.Mamba):
        return dict(d_conv=ref.d_conv, expand=ref.expand)
    if isinstance(ref, reference.models.RGLRU):
        return dict(num_heads=ref.num_heads)
    return {}


@pytest.mark.parametrize("with_grad", [False, True])
def test_s7_fast_forward_projects_the_tokens_in_chunks(with_grad, monkeypatch):
    """S7's per-token B_t and C_t (4 P_loc H numbers a token) are made a chunk of tokens at a time: no
    projection sees more than ``selection_chunk`` tokens, in forward and (recomputed) in backward; the output
    and the gradients equal the reference / the unchunked forward. The projections are counted where they are
    made: ``_project`` (the delta columns) and ``_linear_rows`` (the B_t and C_t columns, in
    ``_ProjectedContraction``, on the (B T, H) rows of a chunk's tokens)."""
    import fast.models.ltv.s7 as s7

    ref = reference.models.S7(3, 4, discretization="zoh", seed=2)
    model = fast.models.S7.from_reference(ref)
    assert model.selection_chunk(2) >= 10  # the default: these 10 tokens are one chunk
    u = np.random.default_rng(2).normal(size=(2, 10, 3))
    u_whole = torch.tensor(u, requires_grad=True)
    grad_whole = torch.autograd.grad(model(u_whole).square().sum(), u_whole)[0]  # one chunk of 10 tokens
    tokens = []
    project, linear_rows = model._project, s7._linear_rows
    model._project = lambda x, *columns: tokens.append(x.shape[-2]) or project(x, *columns)
    monkeypatch.setattr(s7, "_linear_rows",
                        lambda x, *a, **k: tokens.append(x.shape[0] // 2) or linear_rows(x, *a, **k))  # B = 2 rows
    model.selection_chunk_size = 4
    u_t = torch.tensor(u, requires_grad=with_grad)
    with torch.set_grad_enabled(with_grad):
        y = model(u_t)
    assert_close(y, ref.forward(u), "float64", "S7 forward in chunks of 4 tokens")
    # the inputs of three chunks (two products each: the delta columns, the B_t columns), then their readouts
    assert tokens == [4, 4, 4, 4, 2, 2, 4, 4, 2], tokens
    if with_grad:
        grad = torch.autograd.grad(y.square().sum(), u_t)[0]
        # backward formed each chunk's B_t and C_t projections again (the delta columns' are kept: R per token)
        assert len(tokens) == 15 and max(tokens) == 4, tokens
        assert_close(grad, grad_whole.numpy(), "float64", "input gradient, chunked vs whole")


def test_s7_fast_backward_keeps_no_projection_sized_tensor():
    # What autograd saves for S7's backward: the inputs, the weights and the (B, L, P_loc)-sized scan tensors,
    # never a chunk's projection (B T 2 P_loc H numbers), which _ProjectedContraction forms again in backward.
    model = fast.models.S7(16, 8, seed=0, dtype=torch.float64)
    model.selection_chunk_size = 32
    Bsz, L = 2, 64  # two chunks of B T = 64 token rows, more than the 16 input rows of a weight
    u = torch.randn(Bsz, L, 16, dtype=torch.float64, requires_grad=True)
    projection = Bsz * 32 * 2 * model.local_P * 16  # one chunk's B_t (or C_t) columns
    assert projection > max(p.numel() for p in model.parameters())
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = model(u)
    assert saved and max(saved) < projection, (max(saved), projection)
    y.square().sum().backward()
    assert u.grad is not None and torch.isfinite(u.grad).all()


# ------------------------------------------------------------------------------------------------
# torch.compile, long sequences
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_grad", [False, True], ids=["inference", "training"])
def test_mamba_fast_torch_compiled_forward_matches_eager_on_cpu(with_grad):
    # Inductor on the CPU, with event gaps. Training mode runs three chunks (4, 4, 1), takes the gradients
    # through the compiled forward (and the chunks recomputed in backward) and compares them with eager ones;
    # inference runs one chunk (each chunk length is one more compilation).
    torch._dynamo.reset()
    model = fast.models.Mamba.from_reference(reference.models.Mamba(4, 3, discretization="async", seed=2, d_conv=3))
    model.scan_chunk_size = 4 if with_grad else 64
    u = torch.tensor(np.random.default_rng(1).normal(size=(2, 9, 4)))
    tau = torch.linspace(0.5, 2.0, 9, dtype=torch.float64)
    compiled = torch.compile(model.forward)
    with torch.set_grad_enabled(with_grad):
        y_eager, s_eager = model(u, integration_timesteps=tau, return_state=True)
        y_compiled, s_compiled = compiled(u, integration_timesteps=tau, return_state=True)
    assert_close(y_compiled, y_eager, "float64", "compiled outputs")
    assert_close(s_compiled.ssm_state, s_eager.ssm_state, "float64", "compiled final state")
    assert_close(s_compiled.conv_state, s_eager.conv_state, "float64", "compiled conv state")
    if with_grad:
        params = list(model.parameters())
        g_eager = torch.autograd.grad(y_eager.square().sum(), params)
        g_compiled = torch.autograd.grad(y_compiled.square().sum(), params)
        for (name, _), a, e in zip(model.named_parameters(), g_compiled, g_eager):
            assert_close(a, e, "float64", f"compiled gradient of {name}")


_LONG_MAMBA = """
import json, resource, time
import numpy as np, torch
import fast.models, reference.models
torch.set_num_threads(2)
L, H = 100_000, 64
ref = reference.models.Mamba(H, 16, seed=0)
model = fast.models.Mamba.from_reference(ref).to(torch.float32)
u = torch.randn(1, L, H, generator=torch.Generator().manual_seed(0))
start = time.perf_counter()
with torch.no_grad():
    y, state = model(u, return_state=True)
seconds = time.perf_counter() - start
head = ref.forward(u[:, :300].double().numpy())
print(json.dumps({
    "seconds": seconds,
    "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "finite": bool(torch.isfinite(y).all()) and bool(torch.isfinite(state.ssm_state).all()),
    "shape": list(y.shape),
    "head_error": float(np.max(np.abs(y[:, :300].double().numpy() - head))),
    "head_scale": float(np.max(np.abs(head))),
}))
"""


def _run_json(code: str) -> dict:
    """Run ``code`` in a fresh Python process (so that its peak RSS is its own); its last line of output is JSON."""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_mamba_fast_torch_runs_a_100k_sequence_in_bounded_memory():
    # B = 1, L = 100,000, d_model = 64 (D = 128, N = 16), float32. A (B, L, D, N) float32 tensor alone would
    # be 0.82 GB; the bound on the process's peak RSS leaves no room for one.
    result = _run_json(_LONG_MAMBA)
    print(f"Mamba L=100,000 float32: {result['seconds']:.1f} s, peak RSS {result['peak_rss_bytes'] / 2**30:.2f} GiB")
    assert result["finite"] and result["shape"] == [1, 100_000, 64]
    assert result["head_error"] <= 1e-4 * result["head_scale"] + 1e-5, result  # float32 table vs the reference
    assert result["peak_rss_bytes"] < 1.5 * 2**30, result


_LONG_MAMBA_TRAINING = """
import json, resource, time
import torch
import fast.models, reference.models
torch.set_num_threads(2)
L, H = 20_000, 64
model = fast.models.Mamba.from_reference(reference.models.Mamba(H, 16, seed=0)).to(torch.float32)
u = torch.randn(1, L, H, generator=torch.Generator().manual_seed(0))
start = time.perf_counter()
model(u).square().mean().backward()
print(json.dumps({
    "seconds": time.perf_counter() - start,
    "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "finite": all(bool(torch.isfinite(p.grad).all()) for p in model.parameters()),
}))
"""


@pytest.mark.slow
def test_mamba_fast_torch_trains_on_a_20k_sequence_in_bounded_memory():
    # forward + backward at L = 20,000 (D = 128, N = 16), float32. Plain autograd would keep O(B L D N log T)
    # (about 2 GB here); torch.utils.checkpoint per chunk kept the tensors bounded but grew the process to
    # ~3.3 GB through heap fragmentation. The recomputing chunk Function stays under the bound.
    result = _run_json(_LONG_MAMBA_TRAINING)
    print(f"Mamba L=20,000 float32 forward+backward: {result['seconds']:.1f} s, "
          f"peak RSS {result['peak_rss_bytes'] / 2**30:.2f} GiB")
    assert result["finite"]
    assert result["peak_rss_bytes"] < 1.5 * 2**30, result


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------


def _m(name="Mamba", method=None):
    if method is None:
        return FAST[name].from_reference(_small(name))
    return FAST[name](3, 4, discretization=method, dtype=torch.float64)


def _u(*shape, dtype=torch.float64):
    return torch.ones(*shape, dtype=dtype)


def _fwd(name, *shape, method=None, dtype=torch.float64, **kwargs):
    """A forward call of a small model on ones of ``shape`` (default (2, 3, 3))."""
    return lambda: _m(name, method)(_u(*(shape or (2, 3, 3)), dtype=dtype), **kwargs)


def _step(name, u_shape=(2, 3), batch=2, method=None, dtype=torch.float64, **kwargs):
    """A step call of a small model from a zero state of ``batch`` rows."""
    return lambda: _m(name, method).step(_u(*u_shape, dtype=dtype), _m(name, method).initial_state(batch), **kwargs)


G = "integration_timesteps"
BAD_CALLS = {
    "Mamba unknown discretization": (lambda: fast.models.Mamba(2, 4, discretization="euler"),
        r"Mamba.*'euler'.*supported"),
    "S7 mamba discretization": (lambda: fast.models.S7(2, 4, discretization="mamba"), r"S7.*'mamba'.*supported"),
    "RGLRU zoh discretization": (lambda: fast.models.RGLRU(2, 4, discretization="zoh"), r"RGLRU.*'zoh'.*supported"),
    "Mamba d_state zero": (lambda: fast.models.Mamba(2, 0), "d_state"),
    "unknown backend": (lambda: fast.models.Mamba(2, 4, backend="cuda"), "backend"),
}
for _n in MODELS:
    BAD_CALLS |= {
        f"{_n} u not a tensor": (lambda n=_n: _m(n)(np.ones((2, 3, 3))), "u"),
        f"{_n} u wrong width": (_fwd(_n, 2, 3, 4), "u"),
        f"{_n} u empty": (_fwd(_n, 2, 0, 3), "u"),
        f"{_n} u 4-D": (_fwd(_n, 1, 2, 3, 3), "u"),
        f"{_n} u float32 in a float64 module": (_fwd(_n, dtype=torch.float32), "u.*dtype"),
        f"{_n} gaps wrong shape": (_fwd(_n, **{G: _u(3, 3)}), G),
        f"{_n} gaps float32": (_fwd(_n, **{G: _u(3, dtype=torch.float32)}), G),
        f"{_n} gaps negative": (_fwd(_n, **{G: -_u(3)}), G),
        f"{_n} gaps NaN": (_fwd(_n, **{G: torch.tensor([1.0, float("nan"), 1.0], dtype=torch.float64)}), G),
        f"{_n} gaps 2-D with unbatched u": (_fwd(_n, 3, 3, **{G: _u(1, 3)}), G),
        f"{_n} step u_t wrong shape": (_step(_n, u_shape=(1, 1, 3), batch=1), "u_t"),  # (H,) is an unbatched step
        f"{_n} step u_t float32": (_step(_n, dtype=torch.float32), "u_t"),
        f"{_n} step gaps wrong shape": (_step(_n, **{G: _u(3)}), G),
        f"{_n} step state of another batch": (_step(_n, batch=1), "state"),
        f"{_n} initial state float32": (
            lambda n=_n: _m(n)(_u(2, 3, 3), initial_state=_m(n).to(torch.float32).initial_state(2)),
            "initial_state",
        ),
        f"{_n} batch size zero": (lambda n=_n: _m(n).initial_state(0), "batch_size"),
    }
_gap_with_zero = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
BAD_CALLS |= {
    "Mamba zero gap": (_fwd("Mamba", **{G: _gap_with_zero}), G),
    "Mamba async step without gaps": (_step("Mamba", method="async"), G),
    "Mamba initial state 1 field": (_fwd("Mamba", initial_state=(_u(2, 6, 3),)), "initial_state"),
    "S7 async without gaps": (_fwd("S7", method="async"), G),
    "S7 state wrong shape": (_fwd("S7", initial_state=torch.zeros(2, 3, dtype=torch.complex128)), "initial_state"),
    "RGLRU zero gap": (_fwd("RGLRU", **{G: _gap_with_zero}), G),
    "RGLRU step zero gap": (_step("RGLRU", **{G: torch.zeros(2, dtype=torch.float64)}), G),
    "RGLRU segment_pos float": (_fwd("RGLRU", segment_pos=torch.tensor([0.0, 1.0, 2.0])), "segment_pos"),
    "RGLRU segment_pos negative": (_fwd("RGLRU", segment_pos=torch.tensor([0, -1, 1])), "segment_pos"),
    "RGLRU segment_pos wrong shape": (_fwd("RGLRU", segment_pos=torch.arange(4)), "segment_pos"),
    "RGLRU state segment_pos float": (_fwd("RGLRU", initial_state=(_u(2, 3, 4), _u(2, 4), _u(2))), "segment_pos"),
    "RGLRU layer x wrong width": (lambda: _m("RGLRU").rg_lru(_u(1, 3, 3)), "x"),
    "RGLRU layer gaps wrong shape": (lambda: _m("RGLRU").rg_lru(_u(1, 3, 4), **{G: _u(2)}), G),
    "RGLRU layer state wrong shape": (lambda: _m("RGLRU").rg_lru(_u(1, 3, 4), initial_state=_u(1, 3)), "initial"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS), ids=list(BAD_CALLS))
def test_ltv_model_fast_bad_input_raises_value_error_naming_the_argument(case):
    call, needle = BAD_CALLS[case]
    with pytest.raises(ValueError, match=needle):
        call()
