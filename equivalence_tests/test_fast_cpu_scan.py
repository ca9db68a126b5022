"""The compiled step loop of ``fast.cpu_scan`` (``fast.ops.linear_scan`` on CPU tensors), path by path.

Its paths: real and complex in both precisions, every length (L = 1 included), an initial state or none, a decay
of full shape or broadcast over batch rows, steps or both (read with stride 0) or over lanes (copied), inputs
that are not contiguous or carry torch's lazy conjugate / negation, the work split between threads by batch rows
or by lanes (one, two and three threads), states that decay below the smallest normal number (flushed), and the
backward (the adjoint loop, dL/da in the same pass) by float64 gradcheck and against autograd through a plain
loop. The oracles are ``reference.linear_scan`` (NumPy, step by step) and torch's autograd on the same loop.
"""

from __future__ import annotations

import faulthandler
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import fast.cpu_scan
import fast.ops
import fast.scan
import reference
from equivalence_tests.test_fast_scan_speed_paths import _inputs, _loop, _t  # the blocked scan's tests' inputs
from equivalence_tests.tolerances import assert_close

LENGTHS = [1, 2, 3, 17, 100]

needs_loop = pytest.mark.skipif(not fast.cpu_scan.available()[0],
                                reason=f"the compiled loop is not built here: {fast.cpu_scan.available()[1]}")


def _compiled_node(x):
    """The ``_CompiledScan`` node that made ``x`` (through its views), or None."""
    node = x.grad_fn
    while node is not None and "CompiledScan" not in type(node).__name__:
        node = node.next_functions[0][0] if node.next_functions else None
    return node


@pytest.fixture
def threads(request):
    old = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(old)


def test_the_loop_is_built_wherever_a_c_compiler_is():
    # a compiler on PATH and no build would silently leave the CPU on the blocked scan: that must fail here
    if shutil.which(os.environ.get("CC", "cc")) is None or os.environ.get("LRNN_CPU_SCAN") == "0":
        pytest.skip(f"no C compiler here, or switched off: {fast.cpu_scan.available()[1]}")
    assert fast.cpu_scan.available() == (True, None)
    assert fast.scan.compiled_loop_runs(torch.zeros(1, 2, 3), None)


@needs_loop
def test_linear_scan_runs_the_loop_on_cpu_and_the_blocked_scan_where_asked():
    a, b = torch.rand(2, 5, 3, dtype=torch.float64, requires_grad=True), torch.randn(2, 5, 3, dtype=torch.float64)
    assert _compiled_node(fast.ops.linear_scan(a, b)[0]) is not None
    assert _compiled_node(fast.ops.linear_scan(a, b, chunk_size=4)[0]) is None  # a chunk size: the blocked scan
    for dtype in (torch.float16, torch.bfloat16):  # precisions the loop does not have: the blocked scan
        assert not fast.scan.compiled_loop_runs(b.to(dtype), None)
    assert not fast.scan.compiled_loop_runs(b.to("meta"), None)


@needs_loop
@pytest.mark.parametrize("with_state", [False, True], ids=["zero state", "initial state"])
@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("L", LENGTHS)
def test_every_length_matches_the_recurrence(L, complex_, with_state):
    a, b, x0 = _inputs(L, (3, L, 5), complex_=complex_, with_state=with_state)
    x, final = fast.ops.linear_scan(_t(a), _t(b), _t(x0))
    x_ref, final_ref = reference.linear_scan(a, b, x0)
    assert_close(x, x_ref, "float64", f"states, L={L}")
    assert_close(final, final_ref, "float64", "final state")


@needs_loop
@pytest.mark.parametrize("precision", ["float32", "complex64"])
def test_single_precision_rounds_as_the_step_loop(precision):
    # the loop does the recurrence's own operations in its order: within one rounding of torch's step loop in the
    # same precision (float32: the same ones exactly, as no multiply-add is contracted), and within the table of
    # the float64 recurrence
    dtype = {"float32": torch.float32, "complex64": torch.complex64}[precision]
    a, b, x0 = (_t(v, dtype) for v in _inputs(7, (4, 1000, 6), complex_=dtype.is_complex))
    x, final = fast.ops.linear_scan(a, b, x0)
    assert x.dtype == dtype
    if not dtype.is_complex:
        assert torch.equal(x, _loop(a, b, x0))
    x_ref, final_ref = reference.linear_scan(*(v.numpy().astype(np.complex128) for v in (a, b, x0)))
    assert_close(x, x_ref, precision, "states")
    assert_close(final, final_ref, precision, "final state")


@needs_loop
@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("a_shape", [(1, 1, 2, 3), (3, 1, 2, 3), (1, 9, 2, 3), (3, 9, 1, 3), (3, 9, 2, 1)],
                         ids=["per lane", "per row and lane", "per step and lane", "over a lane axis",
                              "over the other lane axis"])
def test_broadcast_decays_match_the_recurrence(a_shape, complex_):
    # stride 0 over batch rows or steps is read as it is; a decay broadcast over lanes is laid out first
    a, b, x0 = _inputs(1, (3, 9, 2, 3), complex_, a_shape=a_shape)
    x, final = fast.ops.linear_scan(_t(a), _t(b), _t(x0))
    x_ref, final_ref = reference.linear_scan(np.broadcast_to(a, b.shape), b, x0)
    assert_close(x, x_ref, "float64", "states")
    assert_close(final, final_ref, "float64", "final state")


@needs_loop
def test_strided_conjugated_and_negated_inputs_are_read_as_their_values():
    # the loop reads memory: a tensor whose values are not its memory (torch's lazy conjugate and negation bits)
    # or that is not laid out (B, L, F) must be read as its values
    a, b, x0 = _inputs(2, (4, 12, 6), complex_=True)
    a_t = _t(a).transpose(0, 1).contiguous().transpose(0, 1)  # steps outermost in memory
    b_lazy, x0_lazy = _t(b).conj(), torch._neg_view(_t(x0))
    assert b_lazy.is_conj() and x0_lazy.is_neg() and not a_t.is_contiguous()
    x, _ = fast.ops.linear_scan(a_t.conj(), b_lazy, x0_lazy)
    x_ref, _ = reference.linear_scan(np.conj(a), np.conj(b), -x0)
    assert_close(x, x_ref, "complex128", "states")
    x, _ = fast.ops.linear_scan(torch._neg_view(_t(a.real))[:, :, ::2], _t(b.real)[:, :, ::2])  # strided
    x_ref, _ = reference.linear_scan(-a.real[:, :, ::2], b.real[:, :, ::2])
    assert_close(x, x_ref, "float64", "states of a negated decay and a strided input")


@needs_loop
@pytest.mark.parametrize("threads", [1, 2, 3], indirect=True)
@pytest.mark.parametrize("B, F", [(7, 5), (1, 300), (2, 1000), (1, 1)], ids=["rows", "lanes", "rows and lanes",
                                                                         "one lane"])
def test_work_split_between_threads_equals_the_recurrence(threads, B, F, monkeypatch):
    # B >= threads: rows apart; fewer rows: lanes apart (shares of 64 or more lanes); too little work: one share
    monkeypatch.setattr(fast.cpu_scan, "_MIN_WORK", 1)  # split these small inputs as large ones are
    shares = fast.cpu_scan._shares(B, 23, F, threads)
    covered = np.zeros((B, F), dtype=int)
    for r0, r1, f0, f1 in shares:
        covered[r0:r1, f0:f1] += 1
    assert (covered == 1).all(), "the shares must cover every row and lane once"
    a, b, x0 = _inputs(B * F, (B, 23, F), complex_=True)
    leaves = [_t(v).requires_grad_() for v in (a, b, x0)]
    x, _ = fast.ops.linear_scan(*leaves)
    assert_close(x, reference.linear_scan(a, b, x0)[0], "complex128", f"states, {threads} threads")
    torch.set_num_threads(1)
    assert torch.equal(x, fast.ops.linear_scan(*leaves)[0]), "the split must not change a bit of the result"
    torch.set_num_threads(threads)
    w = torch.randn_like(x)
    got = torch.autograd.grad((w * x).real.sum(), leaves)
    want = torch.autograd.grad((w * _loop(*leaves)).real.sum(), leaves)
    for name, g, h in zip(("a", "b", "initial_state"), got, want):
        assert_close(g, h, "complex128", f"dL/d{name}, {threads} threads")


def test_shares_split_rows_first_then_lanes():
    L = fast.cpu_scan._MIN_WORK  # enough steps that every split below is worth its threads
    assert fast.cpu_scan._shares(8, L, 256, 2) == [(0, 4, 0, 256), (4, 8, 0, 256)]
    assert fast.cpu_scan._shares(1, L, 256, 2) == [(0, 1, 0, 128), (0, 1, 128, 256)]
    assert fast.cpu_scan._shares(1, L, 100, 2) == [(0, 1, 0, 100)]  # under 2 x 64 lanes: one share
    assert fast.cpu_scan._shares(1, L, 300, 2) == [(0, 1, 0, 144), (0, 1, 144, 300)]  # cut at a multiple of 16
    assert fast.cpu_scan._shares(2, L, 300, 3) == [(0, 1, 0, 144), (0, 1, 144, 300), (1, 2, 0, 144),
                                                   (1, 2, 144, 300)]
    assert fast.cpu_scan._shares(8, L, 256, 1) == [(0, 8, 0, 256)]
    assert fast.cpu_scan._shares(8, 4, 256, 2) == [(0, 8, 0, 256)]  # too little work for a second thread
    assert len(fast.cpu_scan._shares(8, 5 * L // (2 * 8 * 256), 256, 3)) == 2  # work for 2.5 shares: two


@needs_loop
@pytest.mark.parametrize("precision", ["float32", "float64", "complex64"])
def test_states_that_decay_below_the_normal_range_are_flushed_harmlessly(precision):
    # an impulse then 3000 steps of decay 0.97: lane 0's state passes float32's smallest normal (1.2e-38) near
    # step 2870 (float64's much later) and is flushed; the other lanes get a small kick at step 2000 and stay
    # normal; every state is the recurrence's within the table
    dtype = {"float32": torch.float32, "float64": torch.float64, "complex64": torch.complex64}[precision]
    L = 3000
    a = torch.full((2, L, 3), 0.97, dtype=torch.float64)
    a[:, 1000, 1] = 0.0  # a reset inside the sequence
    b = torch.zeros(2, L, 3, dtype=torch.float64)
    b[:, 0] = 1.0
    b[:, 2000, 1:] = 1e-20
    x, _ = fast.ops.linear_scan(a.to(dtype), b.to(dtype))
    x_ref, _ = reference.linear_scan(a.to(dtype).numpy().astype(np.complex128), b.to(dtype).numpy())
    assert_close(x, x_ref, precision, "states")
    tiny = torch.finfo(x.real.dtype).tiny
    assert (x[:, -1, 0] == 0).all() or dtype == torch.float64, "lane 0 ends flushed in single precision"
    assert (x[:, -1, 1:] != 0).all()
    assert ((x.abs() >= tiny) | (x == 0)).all(), "no denormal state is produced"


@needs_loop
@pytest.mark.parametrize("with_state", [False, True], ids=["zero state", "initial state"])
@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("a_shape", [None, (1, 1, 4), (3, 1, 4)], ids=["full", "per lane", "per row and lane"])
def test_gradcheck_of_the_adjoint_loop(a_shape, complex_, with_state):
    a, b, x0 = _inputs(4, (3, 7, 4), complex_, with_state, a_shape=a_shape)
    leaves = tuple(_t(v).requires_grad_() for v in (a, b, x0) if v is not None)
    if with_state:
        assert torch.autograd.gradcheck(lambda a, b, x0: fast.ops.linear_scan(a, b, x0)[0], leaves)
    else:
        assert torch.autograd.gradcheck(lambda a, b: fast.ops.linear_scan(a, b)[0], leaves)


@needs_loop
@pytest.mark.parametrize("precision", ["float64", "complex128"])
def test_gradients_equal_autograd_through_the_step_loop(precision):
    # weights on x and on the final state (x's last step); one gradient wanted at a time gives the same values
    complex_ = precision == "complex128"
    a, b, x0 = _inputs(9, (3, 300, 5), complex_=complex_)
    rng = np.random.default_rng(10)
    w = _t(rng.normal(size=b.shape) + (1j * rng.normal(size=b.shape) if complex_ else 0))
    v = _t(rng.normal(size=x0.shape))
    grads = []
    for run in (fast.ops.linear_scan, None):
        leaves = [_t(t).requires_grad_() for t in (a, b, x0)]
        x = _loop(*leaves) if run is None else run(*leaves)[0]
        loss = (w * x).real.sum() + (v * x[:, -1]).real.sum()
        grads.append(torch.autograd.grad(loss, leaves))
    for name, got, want in zip(("a", "b", "initial_state"), *grads):
        assert_close(got, want, precision, f"dL/d{name}")
    for i in range(3):
        leaves = [_t(t).requires_grad_(j == i) for j, t in enumerate((a, b, x0))]
        x = fast.ops.linear_scan(*leaves)[0]
        (g,) = torch.autograd.grad((w * x).real.sum() + (v * x[:, -1]).real.sum(), [leaves[i]])
        assert_close(g, grads[0][i], precision, f"gradient {i} alone")


@needs_loop
def test_backward_keeps_only_a_x_and_the_state():
    # O(B L F): the graph holds the decays as the loop reads them (a broadcast decay at its own size), the states
    # and the initial state
    a, b, x0 = (_t(v).requires_grad_() for v in _inputs(13, (2, 64, 3), a_shape=(1, 1, 3)))
    x, _ = fast.ops.linear_scan(a, b, x0)
    node = _compiled_node(x)
    assert node is not None
    assert sum(t.numel() for t in node.saved_tensors) == a.numel() + b.numel() + x0.numel()


def test_switched_off_by_the_environment():
    code = ("import torch, fast.cpu_scan, fast.scan; ok, why = fast.cpu_scan.available(); "
            "print(ok, why); assert not ok and 'LRNN_CPU_SCAN=0' in why; "
            "assert not fast.scan.compiled_loop_runs(torch.zeros(1, 2, 3), None)")
    env = {**os.environ, "LRNN_CPU_SCAN": "0"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def test_a_missing_compiler_is_reported_and_the_blocked_scan_runs(tmp_path):
    code = ("import torch, fast.cpu_scan, fast.ops; ok, why = fast.cpu_scan.available(); "
            "assert not ok and 'no C compiler' in why, why; "
            "x, _ = fast.ops.linear_scan(torch.full((1, 3, 1), 0.5), torch.ones(1, 3, 1)); "
            "assert x.flatten().tolist() == [1.0, 1.5, 1.75], x")
    env = {**os.environ, "CC": "no-such-compiler-here", "LRNN_CACHE_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler here")
def test_a_fresh_cache_builds_the_library_once(tmp_path):
    code = ("import fast.cpu_scan, pathlib, sys; assert fast.cpu_scan.available() == (True, None); "
            "print([(p.name, p.stat().st_mtime_ns) for p in pathlib.Path(sys.argv[1]).iterdir()])")
    env = {**os.environ, "LRNN_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("LRNN_CPU_SCAN", None)
    listings = []
    for _ in range(2):  # the second process loads the first one's library: the same one file, not rebuilt
        run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "cache")], env=env, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        listings.append(run.stdout.strip())
    assert listings[0] == listings[1] and listings[0].count("linear_scan-") == 1, listings


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler here")
def test_an_unwritable_cache_falls_back_to_the_temporary_directory(tmp_path):
    (tmp_path / "file").write_text("")  # a cache "directory" below a file: mkdir fails
    code = "import fast.cpu_scan; print(fast.cpu_scan.available())"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "file" / "cache"), "TMPDIR": str(tmp_path / "tmp")}
    env.pop("LRNN_CACHE_DIR", None)
    env.pop("LRNN_CPU_SCAN", None)
    (tmp_path / "tmp").mkdir()
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "(True, None)", run.stdout + run.stderr
    assert list((tmp_path / "tmp").glob("lrnn-reference-*/linear_scan-*.so"))


@needs_loop
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_runs_the_threads_of_its_own():
    # the parent's worker threads do not survive a fork: a child that splits the work (two shares) must start its
    # own pool, not wait forever on the parent's. The child splits without starting torch's own threads (which
    # GNU OpenMP does not make fork-safe: DataLoader workers run one torch thread for that reason).
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        a, b = torch.rand(2, 4096, 256) * 0.5, torch.randn(2, 4096, 256)  # 2^21 elements
        assert len(fast.cpu_scan._shares(2, 4096, 256, 2)) == 2
        want = fast.cpu_scan.scan(a, b, None)  # the parent's pool now exists
    finally:
        torch.set_num_threads(old)
    pid = os.fork()
    if pid == 0:  # the child: exit 0 when its scan equals the parent's, 1 when not, 2 when it hangs 30 s
        code = 1
        try:
            faulthandler.dump_traceback_later(30, exit=True)
            fast.cpu_scan.torch.get_num_threads = lambda: 2
            code = 0 if np.array_equal(fast.cpu_scan.scan(a, b, None).numpy(), want.numpy()) else 1  # no torch threads
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"the forked child ended with status {status}"
