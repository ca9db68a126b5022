"""The blocked work-efficient scan of ``fast.scan`` and its adjoint, path by path.

Every code path of the torch ``linear_scan``: one block or several (batch rows split, steps split, both), the
carry between blocks, L not a multiple of the block, L = 1 and L = 2, power-of-two and odd lengths (the rounds
of the up- and down-sweep that exist only for some lengths), real and complex, a broadcast decay, an initial
state or none, decays of zero and products that underflow (the flush of tiny tree products), and the backward
(``_LinearScan``: the reverse scan) by float64 gradcheck and against autograd through a plain step loop. The
oracles are ``reference.linear_scan`` (the recurrence, step by step, in NumPy) and torch's autograd on the
same recurrence written as a loop. The compiled loop that linear_scan runs on CPU tensors by default is switched
off here (``blocked_scan_only``), so a chunk size of None tests the blocked scan's own default plan.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fast.ops
import fast.scan
import reference
from equivalence_tests.tolerances import assert_close

# Lengths that give every shape of the sweeps: 1 (no round), 2, 3 (an up-sweep round, no down-sweep round), powers
# of two and their neighbours, odd lengths.
LENGTHS = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 64, 100]


def _inputs(seed, shape, complex_=False, with_state=True, a_shape=None):
    """Decays (of ``a_shape``, by default ``shape``: a smaller one broadcasts), inputs and an initial state or None."""
    rng = np.random.default_rng(seed)
    a_shape = shape if a_shape is None else a_shape
    a = rng.uniform(0.2, 0.99, size=a_shape)
    b = rng.normal(size=shape)
    x0 = rng.normal(size=(shape[0], *shape[2:])) if with_state else None
    if complex_:
        a = a * np.exp(1j * rng.uniform(-np.pi, np.pi, size=a_shape))
        b = b + 1j * rng.normal(size=shape)
        if with_state:
            x0 = x0 + 1j * rng.normal(size=x0.shape)
    return a, b, x0


def _t(x, dtype=None):
    if x is None:
        return None
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t if dtype is None else t.to(dtype)


def _loop(a, b, x0):
    """The recurrence step by step in torch (differentiable by autograd): the oracle of the backward; ``a`` may
    broadcast against ``b``."""
    a = a.expand(b.shape)
    h = torch.zeros_like(b[:, 0]) if x0 is None else x0
    xs = []
    for k in range(b.shape[1]):
        h = a[:, k] * h + b[:, k]
        xs.append(h)
    return torch.stack(xs, dim=1)


@pytest.fixture(autouse=True)
def blocked_scan_only(monkeypatch):
    """Every test here runs the blocked scan, also where ``chunk_size`` is None (on CPU tensors linear_scan would
    run the compiled loop of ``fast.cpu_scan``, tested in test_fast_cpu_scan.py)."""
    monkeypatch.setattr(fast.scan.cpu_scan, "available", lambda: (False, "off in the tests of the blocked scan"))


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 256 bytes of output: the default block choice then splits small inputs in rows and steps."""
    monkeypatch.setattr(fast.scan, "BLOCK_BYTES", 256)
    monkeypatch.setattr(fast.scan, "DEFAULT_CHUNK_SIZE", 4)


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("L", LENGTHS)
@pytest.mark.parametrize("chunk_size", [2, 3, 5, 8, None])
def test_every_length_and_block_length_matches_the_recurrence(L, chunk_size, complex_):
    a, b, x0 = _inputs(L, (3, L, 4), complex_)
    x, final = fast.ops.linear_scan(_t(a), _t(b), _t(x0), chunk_size=chunk_size)
    x_ref, final_ref = reference.linear_scan(a, b, x0)
    assert_close(x, x_ref, "float64", f"states, L={L}, chunk {chunk_size}")
    assert_close(final, final_ref, "float64", "final state")


def test_block_choice_splits_rows_and_steps(small_blocks):
    # 256-byte blocks of float64 lanes of 4 (32 bytes a step): as many rows as fit 4 steps (2), then as many steps as
    # the rest holds (4), so B = 5 rows x L = 37 steps go in 3 x 10 blocks, the last ones short in both
    assert fast.scan._blocks(5, 37, 4, 8, None) == (2, 4)
    assert fast.scan._blocks(5, 37, 4, 8, 2) == (4, 2)  # a given chunk size; the rows fill the rest of the block
    assert fast.scan._blocks(5, 3, 4, 8, None) == (2, 3)  # L shorter than a block: whole rows, several a block


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero state", "initial state"])
@pytest.mark.parametrize("B, L", [(5, 37), (5, 3), (1, 1), (2, 8)])
def test_blocks_over_rows_and_steps_carry_the_state(small_blocks, B, L, complex_, with_state):
    a, b, x0 = _inputs(B * 100 + L, (B, L, 4), complex_, with_state)
    x, final = fast.ops.linear_scan(_t(a), _t(b), _t(x0))
    x_ref, final_ref = reference.linear_scan(a, b, x0)
    assert_close(x, x_ref, "float64", f"states, B={B}, L={L}")
    assert_close(final, final_ref, "float64", "final state")


@pytest.mark.parametrize("precision", ["float32", "complex64"])
def test_single_precision_is_within_the_table_of_the_float64_recurrence(precision):
    a, b, x0 = _inputs(7, (4, 1000, 6), precision == "complex64")
    dtype = torch.float32 if precision == "float32" else torch.complex64
    x, final = fast.ops.linear_scan(*(_t(v).to(dtype) for v in (a, b, x0)))
    x_ref, final_ref = reference.linear_scan(*(_t(v).to(dtype).numpy().astype(np.complex128) for v in (a, b, x0)))
    assert x.dtype == dtype
    assert_close(x, x_ref, precision, "states")
    assert_close(final, final_ref, precision, "final state")


@given(seed=st.integers(0, 2**31 - 1), L=st.sampled_from(LENGTHS), chunk_size=st.sampled_from([2, 3, 7, None]))
def test_broadcast_decay_and_lane_axes_match_the_recurrence(seed, L, chunk_size):
    # a (1, 1, G, M) shared by the batch and the steps, as the LTI lane models pass it; b (B, L, G, M)
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.5, 0.999, size=(1, 1, 2, 3)) * np.exp(1j * rng.uniform(-3, 3, size=(1, 1, 2, 3)))
    b = rng.normal(size=(2, L, 2, 3)) + 1j * rng.normal(size=(2, L, 2, 3))
    x, final = fast.ops.linear_scan(_t(a), _t(b), chunk_size=chunk_size)
    x_ref, final_ref = reference.linear_scan(np.broadcast_to(a, b.shape), b)
    assert_close(x, x_ref, "complex128", "states")
    assert_close(final, final_ref, "complex128", "final state")


@pytest.mark.parametrize("precision", ["float32", "float64", "complex64"])
def test_products_that_underflow_are_flushed_without_changing_the_states(precision):
    # 1e-3 per step: a product of 32 decays is 1e-96, below every normal float32 and near float64's range at
    # 128: the tree's long products underflow (flushed to zero); the states must still be the recurrence's.
    # Decays of exactly 0 (resets) sit inside blocks, not only at their starts.
    dtype = {"float32": torch.float32, "float64": torch.float64, "complex64": torch.complex64}[precision]
    rng = np.random.default_rng(3)
    shape = (2, 700, 5)
    a = np.full(shape, 1e-3) * (np.exp(1j * rng.uniform(-3, 3, size=shape)) if dtype.is_complex else 1)
    a[:, 100:400] = rng.uniform(0.9, 1.0, size=(2, 300, 5))  # slow lanes between the fast ones
    a[:, 250, 2] = 0.0
    b = rng.normal(size=shape)
    x, _ = fast.ops.linear_scan(_t(a).to(dtype), _t(b).to(dtype), chunk_size=512)
    a_in, b_in = _t(a).to(dtype).numpy().astype(np.complex128), _t(b).to(dtype).numpy().astype(np.complex128)
    x_ref, _ = reference.linear_scan(a_in, b_in)
    assert_close(x, x_ref, precision, "states")


def test_unit_modulus_decays_keep_their_phase_over_long_blocks():
    # |a| = 1 (a rotation): the products never underflow; 4096 steps in one block, complex128
    rng = np.random.default_rng(4)
    a = np.exp(1j * rng.uniform(-np.pi, np.pi, size=(2, 4096, 3)))
    b = rng.normal(size=(2, 4096, 3)) + 0j
    x, _ = fast.ops.linear_scan(_t(a), _t(b), chunk_size=4096)
    x_ref, _ = reference.linear_scan(a, b)
    assert_close(x, x_ref, "complex128", "states")


# ------------------------------------------------------------------------------------------------
# the backward: the reverse scan
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero state", "initial state"])
@pytest.mark.parametrize("L, chunk_size", [(1, None), (2, 2), (7, 3), (8, 4), (13, None), (17, 5)])
def test_gradcheck_of_the_reverse_scan(L, chunk_size, complex_, with_state):
    a, b, x0 = _inputs(L, (2, L, 3), complex_, with_state)
    inputs = [_t(v).requires_grad_() for v in (a, b)] + ([_t(x0).requires_grad_()] if with_state else [])

    def scan(a, b, x0=None):
        return fast.ops.linear_scan(a, b, x0, chunk_size=chunk_size)

    assert torch.autograd.gradcheck(scan, tuple(inputs))


def test_gradcheck_across_blocks_of_rows_and_steps(small_blocks):
    a, b, x0 = _inputs(11, (3, 11, 4), True)
    inputs = tuple(_t(v).requires_grad_() for v in (a, b, x0))
    assert torch.autograd.gradcheck(lambda a, b, x0: fast.ops.linear_scan(a, b, x0), inputs)


def test_gradcheck_of_a_broadcast_decay_and_a_real_decay_with_complex_input():
    rng = np.random.default_rng(5)
    a = _t(rng.uniform(0.3, 0.9, size=(1, 1, 3))).requires_grad_()  # real, broadcast over batch and steps
    b = _t(rng.normal(size=(2, 9, 3)) + 1j * rng.normal(size=(2, 9, 3))).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: fast.ops.linear_scan(a, b, chunk_size=4), (a, b))


@pytest.mark.parametrize("precision", ["float64", "complex128"])
def test_gradients_equal_autograd_through_the_step_loop(precision):
    # weights on x and on the final state: both reach the reverse scan (the final state is x's last step)
    complex_ = precision == "complex128"
    a, b, x0 = _inputs(9, (3, 300, 5), complex_)
    rng = np.random.default_rng(10)
    w = _t(rng.normal(size=b.shape) + (1j * rng.normal(size=b.shape) if complex_ else 0))
    v = _t(rng.normal(size=x0.shape))
    grads = []
    for run in (lambda a, b, x0: fast.ops.linear_scan(a, b, x0, chunk_size=64), None):
        leaves = [_t(t).requires_grad_() for t in (a, b, x0)]
        if run is None:
            x = _loop(*leaves)
            final = x[:, -1]
        else:
            x, final = run(*leaves)
        loss = (w * x).real.sum() + (v * final).real.sum()
        grads.append(torch.autograd.grad(loss, leaves))
    for name, got, want in zip(("a", "b", "initial_state"), *grads):
        assert_close(got, want, precision, f"dL/d{name}")


def test_gradient_of_b_alone_and_of_a_alone():
    # needs_input_grad: only the wanted gradients are formed, and they are the same as when all are
    a, b, x0 = _inputs(12, (2, 20, 3))
    full = [_t(t).requires_grad_() for t in (a, b, x0)]
    x, _ = fast.ops.linear_scan(*full, chunk_size=6)
    all_grads = torch.autograd.grad(x.sum(), full)
    for i in range(3):
        leaves = [_t(t).requires_grad_(j == i) for j, t in enumerate((a, b, x0))]
        x, _ = fast.ops.linear_scan(*leaves, chunk_size=6)
        (g,) = torch.autograd.grad(x.sum(), [leaves[i]])
        assert_close(g, all_grads[i], "float64", f"gradient {i} alone")


def test_backward_keeps_only_a_x_and_the_state():
    # O(B L F) memory: the graph holds the inputs and the states, no per-round intermediates
    a, b, x0 = (_t(v).requires_grad_() for v in _inputs(13, (2, 64, 3)))
    x, _ = fast.ops.linear_scan(a, b, x0, chunk_size=16)
    node = x.grad_fn
    while node is not None and "LinearScan" not in type(node).__name__:
        node = node.next_functions[0][0]
    assert node is not None, "linear_scan's output does not come from the _LinearScan function"
    saved = node.saved_tensors
    assert len(saved) == 3
    assert sum(t.numel() for t in saved if t is not None) == a.numel() + b.numel() + x0.numel()



@pytest.mark.parametrize("precision", ["float32", "complex128"])
@pytest.mark.parametrize("decay_shape", [(1, 1, 4), (3, 1, 4)], ids=["one per lane", "one per row and lane"])
@pytest.mark.parametrize("magnitude", [0.97, 1e-3], ids=["slow", "underflowing powers"])
def test_decay_constant_in_time_runs_on_its_powers(decay_shape, magnitude, precision):
    # a broadcast over the steps: the tree is a^(2^j) per lane (flushed when it underflows), several blocks
    dtype = {"float32": torch.float32, "complex128": torch.complex128}[precision]
    rng = np.random.default_rng(6)
    a = magnitude * rng.uniform(0.9, 1.0, size=decay_shape)
    if dtype.is_complex:
        a = a * np.exp(1j * rng.uniform(-3, 3, size=decay_shape))
    b = rng.normal(size=(3, 700, 4))
    x, final = fast.ops.linear_scan(_t(a).to(dtype), _t(b).to(dtype), chunk_size=300)
    a_in = np.broadcast_to(_t(a).to(dtype).numpy().astype(np.complex128), b.shape)
    x_ref, final_ref = reference.linear_scan(a_in, _t(b).to(dtype).numpy().astype(np.complex128))
    assert_close(x, x_ref, precision, "states")
    assert_close(final, final_ref, precision, "final state")


def test_the_blocked_scan_runs_here_without_a_chunk_size():
    # what blocked_scan_only promises: a chunk size of None reaches _LinearScan, not the compiled loop
    a = torch.rand(2, 9, 3, dtype=torch.float64, requires_grad=True)
    x, _ = fast.ops.linear_scan(a, torch.randn(2, 9, 3, dtype=torch.float64))
    node = x.grad_fn
    while node is not None and "LinearScan" not in type(node).__name__:
        node = node.next_functions[0][0] if node.next_functions else None
    assert node is not None and type(node).__name__.startswith("_LinearScan")
