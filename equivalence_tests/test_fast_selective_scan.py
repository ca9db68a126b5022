"""fast.ops.selective_scan (torch, chunked over time) against reference.selective_scan, for every
discretization, with and without event gaps, initial state, skip D and gate z; its gradients against finite
differences; and its memory claim: no tensor of the size of (B, L, D, N) is ever made, and what autograd
keeps for backward is O(B L D + B (L/T) D N) (the process size of a long training run is in
test_fast_ltv_models.py, marked slow).

float64 is compared with the float64 tolerance; float32 runs are compared with the reference evaluated (in
float64) on the same float32-rounded inputs, with the float32 tolerance, so that the comparison measures the
computation and not the rounding of the inputs. Chunk sizes as small as 1 make L > T the common case.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils._pytree import tree_flatten

import fast.ops
import fast.selective_scan
import reference
from equivalence_tests.strategies import lengths, seeds
from equivalence_tests.test_selective_scan import random_problem
from equivalence_tests.tolerances import assert_close

METHODS = ["mamba", "zoh", "bilinear", "dirac", "async"]
PRECISIONS = ["float64", "float32"]
DTYPES = {"float64": torch.float64, "float32": torch.float32}
ARGS = ("u", "dt", "A", "B", "C", "D", "z")
sizes = st.integers(1, 4)
# L = 1, odd lengths, and lengths of many chunks (the default chunk: test_fast_selective_scan_default_chunk_*)
scan_lengths = st.one_of(lengths, st.integers(60, 140))
chunk_sizes = st.sampled_from([1, 2, 3, 5, None, fast.selective_scan.DEFAULT_CHUNK_SIZE])


def _t(x, precision: str) -> torch.Tensor:
    return torch.tensor(np.asarray(x), dtype=DTYPES[precision])


def _np(x: torch.Tensor) -> np.ndarray:
    """The exact values of a tensor as float64 (the reference's inputs)."""
    return x.detach().to(torch.float64).numpy()


def _problem(seed, Bsz, L, D, N, method, gaps, with_state, with_D, with_z):
    """Reference arguments from ``random_problem`` (test_selective_scan), with the optional parts dropped and
    the gaps in the requested layout: None, shared "(L,)" or per batch row "(B, L)"."""
    args, tau, x0 = random_problem(seed, Bsz, L, D, N, method, with_gaps=gaps is not None)
    if not with_D:
        args["D"] = None
    if not with_z:
        args["z"] = None
    if tau is not None and gaps == "(L,)":
        tau = tau[0]
    return args, tau, (x0 if with_state else None)


@pytest.mark.parametrize("precision", PRECISIONS)
@given(
    seed=seeds,
    Bsz=st.integers(1, 3),
    L=scan_lengths,
    D=sizes,
    N=sizes,
    method=st.sampled_from(METHODS),
    gaps=st.sampled_from([None, "(L,)", "(B, L)"]),
    with_state=st.booleans(),
    with_D=st.booleans(),
    with_z=st.booleans(),
    chunk_size=chunk_sizes,
)
def test_fast_selective_scan_matches_reference(
    precision, seed, Bsz, L, D, N, method, gaps, with_state, with_D, with_z, chunk_size
):
    args, tau, x0 = _problem(seed, Bsz, L, D, N, method, gaps, with_state, with_D, with_z)
    targs = {k: None if v is None else _t(v, precision) for k, v in args.items()}
    tau_t = None if tau is None else _t(tau, precision)
    x0_t = None if x0 is None else _t(x0, precision)
    y, state = fast.ops.selective_scan(
        **targs, method=method, integration_timesteps=tau_t, initial_state=x0_t, return_state=True,
        chunk_size=chunk_size,
    )
    y_ref, state_ref = reference.selective_scan(
        **{k: None if v is None else _np(v) for k, v in targs.items()},
        method=method,
        integration_timesteps=None if tau_t is None else _np(tau_t),
        initial_state=None if x0_t is None else _np(x0_t),
        return_state=True,
    )
    assert y.dtype == state.dtype == DTYPES[precision]
    what = f"{method}, gaps {gaps}, chunk {chunk_size}"
    assert_close(y, y_ref, precision, f"outputs ({what})")
    assert_close(state, state_ref, precision, f"final state ({what})")


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("method", ["mamba", "zoh", "dirac", "async", "bilinear"])
@pytest.mark.parametrize("reach", [0.5, 30.0, 1000.0])
def test_fast_selective_scan_wide_decay_ranges_match_reference(precision, method, reach):
    """A chunk's scan uses products and sums only, so its accuracy does not depend on the chunk's decay range
    max |lambda| sum dt (a factorization through running decays exp(lambda s_t) and their inverses overflows
    float32 beyond a range of about 88, float64 beyond 709; no path is chosen from the values). The steps are
    scaled so that the widest chunk spans ``reach``; outputs and final state must equal the reference."""
    T = fast.selective_scan.DEFAULT_CHUNK_SIZE
    L = 3 * T + 3  # three full chunks and a short one
    args, tau, x0 = random_problem(11, 2, L, 3, 4, method, with_gaps=method == "async")
    step = args["dt"] * (1.0 if tau is None else tau[:, :, None])  # (B, L, D): dt_A
    chunk_sums = np.stack([step[:, i : i + T].sum(1) for i in range(0, L, T)], axis=1)  # (B, chunks, D)
    widest = (chunk_sums * np.abs(args["A"]).max(-1)).max()
    args["dt"] = args["dt"] * reach / widest
    targs = {k: _t(v, precision) for k, v in args.items()}
    tau_t = None if tau is None else _t(tau, precision)
    y, state = fast.ops.selective_scan(
        **targs, method=method, integration_timesteps=tau_t, initial_state=_t(x0, precision), return_state=True,
        chunk_size=T,
    )
    y_ref, state_ref = reference.selective_scan(
        **{k: _np(v) for k, v in targs.items()}, method=method,
        integration_timesteps=None if tau_t is None else _np(tau_t), initial_state=_np(_t(x0, precision)),
        return_state=True,
    )  # fmt: skip
    assert_close(y, y_ref, precision, f"outputs ({method}, widest chunk's decay range {reach})")
    assert_close(state, state_ref, precision, f"final state ({method}, widest chunk's decay range {reach})")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("with_gaps", [False, True])
def test_fast_selective_scan_gradients_match_finite_differences(method, with_gaps):
    # L = 5 with chunks of 2: three recomputed chunks with the state carried between them (the last one
    # shorter). Every tensor argument is differentiated, the gaps too when given.
    with_gaps = with_gaps or method == "async"
    args, tau, x0 = random_problem(3, 1, 5, 2, 2, method, with_gaps=with_gaps)
    if tau is not None:
        tau = np.maximum(tau, 0.05)  # away from a zero gap (where some rules refuse)
    names = list(ARGS) + ["initial_state"] + (["integration_timesteps"] if tau is not None else [])
    values = [args[k] for k in ARGS] + [x0] + ([tau] if tau is not None else [])
    inputs = tuple(_t(v, "float64").requires_grad_() for v in values)

    def run(*xs):
        kw = dict(zip(names, xs))
        y, state = fast.ops.selective_scan(**kw, method=method, return_state=True, chunk_size=2)
        return y, state

    assert torch.autograd.gradcheck(run, inputs)


def test_fast_selective_scan_with_L_1_and_without_D_and_z_matches_reference():
    args, _, _ = random_problem(0, 2, 1, 3, 2, "mamba")
    core = {k: _t(args[k], "float64") for k in ("u", "dt", "A", "B", "C")}
    y, state = fast.ops.selective_scan(**core, return_state=True)
    y_ref, state_ref = reference.selective_scan(**{k: args[k] for k in core}, return_state=True)
    assert_close(y, y_ref, "float64", "output")
    assert_close(state, state_ref, "float64", "state")


# ------------------------------------------------------------------------------------------------
# memory
# ------------------------------------------------------------------------------------------------


class _LargestTensor(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the largest number of elements of any tensor an aten operation returns (forward and
    backward), views included."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def _memory_problem(requires_grad: bool):
    Bsz, L, D, N = 1, 256, 4, 8
    args, _, _ = random_problem(5, Bsz, L, D, N, "zoh")
    tensors = {k: _t(v, "float64").requires_grad_(requires_grad) for k, v in args.items()}
    return tensors, (Bsz, L, D, N)


@pytest.mark.parametrize("with_backward", [False, True])
def test_fast_selective_scan_never_makes_a_tensor_of_size_B_L_D_N(with_backward):
    # The bound: no tensor larger than the sequence tensors (B, L, D), (B, L, N) or one chunk's (B, T, D, N).
    # The detector is shown to work: with one chunk (T = L) it does see a (B, L, D, N) tensor.
    args, (Bsz, L, D, N) = _memory_problem(with_backward)
    T = 8
    bound = max(Bsz * L * D, Bsz * L * N, Bsz * T * D * N)
    largest = {}
    for chunk in (T, L):
        mode = _LargestTensor()
        with mode:
            y = fast.ops.selective_scan(**args, method="zoh", chunk_size=chunk)
            if with_backward:
                y.square().sum().backward()
        largest[chunk] = mode.largest
    assert largest[T] <= bound < Bsz * L * D * N, f"largest tensor {largest[T]} elements, bound {bound}"
    assert largest[L] >= Bsz * L * D * N, "the detector missed the (B, L, D, N) tensor of a single chunk"


def _extra_saved_elements(args, **kwargs) -> int:
    """Elements of the storages autograd keeps for backward, beyond the caller's own input tensors."""
    inputs = {t.untyped_storage().data_ptr() for t in args.values()}
    kept = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in inputs:
            kept[storage.data_ptr()] = storage.nbytes() // t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fast.ops.selective_scan(**args, method="zoh", **kwargs)
    return sum(kept.values())


@pytest.mark.parametrize("method", sorted(fast.selective_scan.HAND_ADJOINT_RULES))
@pytest.mark.parametrize("chunk_size", [1, 3, 4, 7])
def test_fast_selective_scan_hand_written_backward_equals_autograd_through_the_rule(method, chunk_size, monkeypatch):
    # The mamba and dirac rules without gaps have their chunk backward written out by hand
    # (_hand_chunk_backward, with the forward's buffers for full chunks and fresh tensors for the shorter last
    # one: L = 10 is not a multiple of 3, 4 or 7); the other rules let autograd differentiate the rule. The
    # two must give the same gradients of every argument, and the hand path must be the one taken.
    args, _, x0 = random_problem(5, 2, 10, 3, 4, method, with_gaps=False)
    names = list(ARGS) + ["initial_state"]
    leaves = [_t(v, "float64").requires_grad_() for v in [args[k] for k in ARGS] + [x0]]
    weights = torch.randn(2, 10, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def gradients():
        y, state = fast.ops.selective_scan(**dict(zip(names, leaves)), method=method, return_state=True,
                                           chunk_size=chunk_size)
        return torch.autograd.grad((y * weights).sum() + state.square().sum(), leaves)

    calls = []
    hand = fast.selective_scan._hand_chunk_backward
    monkeypatch.setattr(fast.selective_scan, "_hand_chunk_backward", lambda *a: calls.append(1) or hand(*a))
    by_hand = gradients()
    assert len(calls) == math.ceil(10 / chunk_size)
    monkeypatch.setattr(fast.selective_scan, "HAND_ADJOINT_RULES", frozenset())
    by_autograd = gradients()
    assert len(calls) == math.ceil(10 / chunk_size)  # not called again
    for name, g_hand, g_auto in zip(names, by_hand, by_autograd):
        torch.testing.assert_close(g_hand, g_auto, rtol=1e-12, atol=1e-12, msg=f"{method}: gradient of {name}")


@pytest.mark.parametrize("method", sorted(fast.selective_scan.HAND_ADJOINT_RULES))
@pytest.mark.parametrize("skip_and_gate", [True, False])
def test_fast_selective_scan_batched_products_get_rows_of_unit_stride(method, skip_and_gate, monkeypatch):
    # torch's CPU batched product multiplies a batch of strided rows one matrix at a time through copies
    # (fast.selective_scan._rows): every row-vector operand of the scan's batched products, in the forward and
    # in the hand-written backward, must reach torch.matmul with unit stride along its last axis. B = 1 makes
    # dt's chunk reshape to a permuted view (stride D); without D and z, y.sum() hands the chunks' backward a
    # stride-0 gradient.
    args, _, _ = random_problem(3, 1, 12, 3, 4, method, with_gaps=False)
    names = ARGS if skip_and_gate else [k for k in ARGS if k not in ("D", "z")]
    leaves = {k: _t(args[k], "float64").requires_grad_() for k in names}
    rows = []
    matmul = torch.matmul

    def recording(a, b, *rest, **kw):
        rows.append((tuple(a.shape), a.stride(-1)))
        return matmul(a, b, *rest, **kw)

    monkeypatch.setattr(torch, "matmul", recording)
    fast.ops.selective_scan(**leaves, method=method, chunk_size=4).sum().backward()
    monkeypatch.undo()
    assert len(rows) == 3 + 3 * 5  # the readout of 3 chunks; five sums in each chunk's backward
    strided = [r for r in rows if r[0][-1] > 1 and r[1] != 1]
    assert not strided, f"row operands (shape, last stride) not of unit stride: {strided}"


@pytest.mark.parametrize("states", [1, 7, 512, 1000, 1024, 1025, 4096, 8191, 8192, 32768, 32769, 10**6])
def test_fast_selective_scan_default_chunk_size_keeps_a_chunk_near_its_state_budget(states):
    # The rule of default_chunk_size: a power of two in [DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE], the largest one
    # whose chunk of steps holds at most CHUNK_STATES states (unless clamped).
    ss = fast.selective_scan
    T = ss.default_chunk_size(states)
    assert T & (T - 1) == 0 and ss.DEFAULT_CHUNK_SIZE <= T <= ss.MAX_CHUNK_SIZE, T
    assert T * states <= ss.CHUNK_STATES or T == ss.DEFAULT_CHUNK_SIZE, (T, states)
    assert 2 * T * states > ss.CHUNK_STATES or T == ss.MAX_CHUNK_SIZE, (T, states)


@pytest.mark.parametrize(
    ("Bsz", "D", "N", "L", "chunks"),
    [
        (1, 2, 4, 300, [256, 44]),  # 8 states a step: the longest chunk
        (1, 24, 64, 200, [128, 72]),  # 1536: 2**18 / 1536 = 170.7, rounded down to 128
        (4, 64, 128, 20, [8, 8, 4]),  # 32768 (Mamba's standard step): 8
        (8, 64, 128, 20, [8, 8, 4]),  # 65536: would be 4, clamped to 8
    ],
)
def test_fast_selective_scan_default_chunk_follows_the_steps_state_count(Bsz, D, N, L, chunks, monkeypatch):
    # chunk_size=None: the torch backend splits time into default_chunk_size(B * D * N) steps (the last chunk
    # shorter), in the forward with and without gradients.
    ss = fast.selective_scan
    seen, chunk = [], ss._chunk

    def recording(u_c, *rest):  # every chunk's forward runs _chunk (the differentiable one too)
        seen.append(u_c.shape[1])
        return chunk(u_c, *rest)

    monkeypatch.setattr(ss, "_chunk", recording)
    gen = torch.Generator().manual_seed(0)
    u, dt = torch.randn(Bsz, L, D, generator=gen), torch.rand(Bsz, L, D, generator=gen)
    A = -torch.rand(D, N, generator=gen)
    Bm, Cm = torch.randn(Bsz, L, N, generator=gen), torch.randn(Bsz, L, N, generator=gen)
    with torch.no_grad():
        fast.ops.selective_scan(u, dt, A, Bm, Cm, method="zoh")
    assert seen == chunks
    seen.clear()
    fast.ops.selective_scan(u.requires_grad_(), dt, A, Bm, Cm, method="zoh")
    assert seen == chunks


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("T", [1, 2, 3, 5, 8, 9, 16])
def test_blelloch_scan_with_separate_products_leaves_the_decays_and_equals_the_step_loop(T, reverse):
    # _blelloch_ writes its partial products into P, or (the backward's scans) into ``products`` and only reads
    # P: both must equal the step-by-step recurrence, and the second must leave P as it was.
    gen = torch.Generator().manual_seed(T)
    P = torch.rand(2, T, 3, 4, dtype=torch.float64, generator=gen) * 1.5  # (B, T, D, N), some above 1
    X = torch.randn(2, T, 3, 4, dtype=torch.float64, generator=gen)
    expected = torch.empty_like(X)
    state = torch.zeros_like(X[:, 0])
    for t in (reversed(range(T)) if reverse else range(T)):  # the oracle: one step at a time
        state = P[:, t] * state + X[:, t]
        expected[:, t] = state
    P_kept, products = P.clone(), torch.full_like(P, float("nan"))
    separate = fast.selective_scan._blelloch_(P_kept, X.clone(), reverse=reverse, products=products)
    in_place = fast.selective_scan._blelloch_(P.clone(), X.clone(), reverse=reverse)
    torch.testing.assert_close(separate, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(in_place, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(P_kept, P)


def test_fast_selective_scan_keeps_O_BLD_plus_one_state_per_chunk_for_backward(monkeypatch):
    # With the chunks recomputed in backward, autograd keeps the output-sized tensors and the state entering
    # each chunk: at most 2 (B L D + (L/T) B D N) elements. Without (plain autograd through each chunk) the
    # intermediates of every chunk are kept, O(B L D N log T): the same measure must then exceed the bound.
    args, (Bsz, L, D, N) = _memory_problem(True)
    T = 8
    bound = 2 * (Bsz * L * D + math.ceil(L / T) * Bsz * D * N)
    kept = _extra_saved_elements(args, chunk_size=T)
    assert kept <= bound, f"autograd keeps {kept} elements, bound {bound}"
    monkeypatch.setattr(fast.selective_scan, "_differentiable_chunk", fast.selective_scan._chunk)
    assert _extra_saved_elements(args, chunk_size=T) > Bsz * L * D * N


def test_fast_selective_scan_without_gradients_builds_no_graph_and_equals_the_recomputing_run():
    args, _ = _memory_problem(False)
    with torch.no_grad():
        y_plain = fast.ops.selective_scan(**args, method="zoh", chunk_size=8)
    grad_args = {k: v.detach().clone().requires_grad_() for k, v in args.items()}
    y_ckpt = fast.ops.selective_scan(**grad_args, method="zoh", chunk_size=8)
    assert not y_plain.requires_grad and y_ckpt.requires_grad
    assert torch.equal(y_plain, y_ckpt.detach())


# ------------------------------------------------------------------------------------------------
# backends and bad input
# ------------------------------------------------------------------------------------------------


def test_fast_selective_scan_backends_agree_and_triton_refuses_what_it_lacks():
    args, tau, x0 = random_problem(1, 2, 9, 3, 2, "async")
    targs = {k: _t(v, "float64") for k, v in args.items()}
    kw = dict(method="async", integration_timesteps=_t(tau, "float64"), initial_state=_t(x0, "float64"))
    y_auto = fast.ops.selective_scan(**targs, **kw)  # CPU tensors: "auto" is torch
    y_torch = fast.ops.selective_scan(**targs, **kw, backend="torch")
    assert torch.equal(y_auto, y_torch)
    y_triton, state = fast.ops.selective_scan(**targs, **kw, backend="triton", return_state=True)  # interpreter
    y_ref, state_ref = reference.selective_scan(
        **args, method="async", integration_timesteps=tau, initial_state=x0, return_state=True
    )
    assert_close(y_triton, y_ref, "float64", "output (triton)")
    assert_close(state, state_ref, "float64", "final state (triton)")
    # half precision runs in float32 on either backend (the kernel sees the upcast tensors), cast back
    half = {k: v.to(torch.bfloat16) for k, v in targs.items()}
    y_half_triton = fast.ops.selective_scan(**half, method="mamba", backend="triton")
    y_half_torch = fast.ops.selective_scan(**half, method="mamba", backend="torch")
    assert y_half_triton.dtype == y_half_torch.dtype == torch.bfloat16
    assert_close(y_half_triton, y_half_torch.double(), "bfloat16", "bfloat16 output (triton against torch)")
    with pytest.raises(ValueError, match="backend"):
        fast.ops.selective_scan(**targs, **kw, backend="cuda")


def _bad(**changes):
    args, _, _ = random_problem(0, 2, 3, 2, 2, "mamba")
    args = {k: _t(v, "float64") for k, v in args.items()}
    kwargs = dict(method="mamba")
    for key, value in changes.items():
        (args if key in args else kwargs)[key] = value
    return lambda: fast.ops.selective_scan(**args, **kwargs)


def _ones(*shape, dtype=torch.float64):
    return torch.ones(*shape, dtype=dtype)


def _with(x, index, value):
    x = x.clone()
    x[index] = value
    return x


BAD_CALLS = {
    "u not a tensor": (_bad(u=np.ones((2, 3, 2))), "u"),
    "u 2-D": (_bad(u=_ones(3, 2)), "u"),
    "u empty L": (_bad(u=_ones(2, 0, 2)), "u"),
    "u NaN": (_bad(u=torch.full((2, 3, 2), float("nan"), dtype=torch.float64)), "u"),
    "u integer": (_bad(u=torch.ones(2, 3, 2, dtype=torch.int64)), "u"),
    "u one inf": (_bad(u=_with(_ones(2, 3, 2), (1, 2, 0), float("inf"))), "u"),
    "u inf and -inf": (_bad(u=_with(_with(_ones(2, 3, 2), (0, 0, 0), float("inf")), (1, 1, 1), -float("inf"))), "u"),
    "C one NaN": (_bad(C=_with(_ones(2, 3, 2), (0, 2, 1), float("nan"))), "C"),
    "dt wrong shape": (_bad(dt=_ones(2, 3)), "dt"),
    "dt zero": (_bad(dt=torch.zeros(2, 3, 2, dtype=torch.float64)), "dt"),
    "dt negative": (_bad(dt=-_ones(2, 3, 2)), "dt"),
    "A wrong channels": (_bad(A=-_ones(3, 2)), "A"),
    "A complex": (_bad(A=-_ones(2, 2, dtype=torch.complex128)), "A"),
    "B wrong N": (_bad(B=_ones(2, 3, 3)), "B"),
    "C wrong L": (_bad(C=_ones(2, 4, 2)), "C"),
    "D wrong shape": (_bad(D=_ones(3)), "D"),
    "z wrong shape": (_bad(z=_ones(2, 3, 1)), "z"),
    "dtype mismatch u float32": (_bad(u=_ones(2, 3, 2, dtype=torch.float32)), "precision.*u torch.float32"),
    "dtype mismatch A float32": (_bad(A=-_ones(2, 2, dtype=torch.float32)), "precision.*A torch.float32"),
    "unknown method": (_bad(method="euler"), "method"),
    "gaps wrong shape": (_bad(integration_timesteps=_ones(2, 4)), "integration_timesteps"),
    "gaps 3-D": (_bad(integration_timesteps=_ones(2, 3, 1)), "integration_timesteps"),
    "gaps float32": (_bad(integration_timesteps=_ones(3, dtype=torch.float32)), "integration_timesteps"),
    "gaps negative": (_bad(integration_timesteps=np.array([1.0, -1.0, 1.0])), "integration_timesteps"),
    "gaps NaN": (_bad(integration_timesteps=np.array([1.0, np.nan, 1.0])), "integration_timesteps"),
    "zero gap with mamba": (_bad(integration_timesteps=np.array([1.0, 0.0, 1.0])), "integration_timesteps"),
    "zero gap with zoh": (_bad(method="zoh", integration_timesteps=np.zeros(3)), "integration_timesteps"),
    "zero gap with bilinear": (_bad(method="bilinear", integration_timesteps=np.zeros(3)), "integration_timesteps"),
    "async without gaps": (_bad(method="async"), "integration_timesteps"),
    "initial state wrong shape": (_bad(initial_state=torch.zeros(2, 2, dtype=torch.float64)), "initial_state"),
    "initial state float32": (
        _bad(initial_state=torch.zeros(2, 2, 2, dtype=torch.float32)),
        "precision.*initial_state torch.float32",
    ),
    "chunk size zero": (_bad(chunk_size=0), "chunk_size"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS), ids=list(BAD_CALLS))
def test_fast_selective_scan_bad_input_raises_value_error_naming_the_argument(case):
    call, needle = BAD_CALLS[case]
    with pytest.raises(ValueError, match=needle):
        call()


def test_fast_selective_scan_accepts_finite_values_whose_sum_overflows():
    # the value check screens each tensor by its sum; finite float32 entries whose sum overflows must pass
    args, _, _ = random_problem(0, 2, 3, 2, 2, "mamba")
    targs = {k: _t(v, "float32") for k, v in args.items()}
    targs["u"] = torch.full((2, 3, 2), 3e38, dtype=torch.float32)
    assert torch.isinf(targs["u"].sum())
    y = fast.ops.selective_scan(**targs, method="mamba")
    assert y.shape == (2, 3, 2)
