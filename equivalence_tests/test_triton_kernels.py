"""The Triton kernels (fast.triton) against the definitions: forward, final state and gradients.

Without a GPU these run under Triton's CPU interpreter (``TRITON_INTERPRET=1``, set by conftest.py before triton is
first imported); with one, on CUDA tensors. The interpreter runs a scan in Python element by element, so the shapes
are tiny (B <= 2, L <= 9, D <= 5, N <= 3) and so are the tiles (chunks of 2 or 4 steps, blocks of 1 to 4 lanes),
which exercises what matters: several chunks with the state carried, L = 1, odd L, L and D not multiples of the
tile, with and without an initial state, every discretization, float32 and float64, real and complex.

Oracles: the reference (``reference.linear_scan``, ``reference.selective_scan``: NumPy, float64), a naive
step-by-step torch loop in float64 written here (its autograd is the gradient oracle), the torch path
(``fast.linear_scan`` and ``fast.ops.selective_scan`` with ``backend="torch"``, in the same precision), and
``torch.autograd.gradcheck`` (finite differences) on float64 cases. A float32 kernel is compared with the float64
oracles evaluated on the same (float32-rounded) inputs.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import fast
import fast.triton
import reference
from equivalence_tests.strategies import gaps, seeds, sequences, stable_diagonal_spectra
from equivalence_tests.tolerances import assert_close

DEVICE = "cpu" if fast.triton.interpreting() else "cuda"
METHODS = ["mamba", "zoh", "bilinear", "dirac", "async"]
DTYPES = {"float32": (torch.float32, torch.complex64), "float64": (torch.float64, torch.complex128)}
small_batches = st.integers(1, 2)
short_lengths = st.integers(1, 9)
chunk_sizes = st.sampled_from([2, 4])
block_sizes = st.sampled_from([2, 4])


def _t(x, dtype, grad=False):
    """A tensor of ``dtype`` on the test device from a NumPy array."""
    return torch.tensor(np.asarray(x), dtype=dtype, device=DEVICE).requires_grad_(grad)


def _oracle_inputs(tensors):
    """The same values as float64 / complex128 leaves on the CPU (for the float64 oracles)."""
    out = []
    for x in tensors:
        if x is None:
            out.append(None)
            continue
        y = x.detach().cpu()
        y = y.to(torch.complex128 if y.is_complex() else torch.float64)
        out.append(y.requires_grad_(x.requires_grad))
    return out


def _loss(outputs, weights):
    """A real scalar that weighs every output entry differently: sum Re(out * conj(w))."""
    total = 0.0
    for out, w in zip(outputs, weights):
        w = w.to(out.device, out.dtype)
        total = total + (out * w.conj()).real.sum()
    return total


def _grads(loss, leaves):
    present = [x for x in leaves if x is not None and x.requires_grad]
    return torch.autograd.grad(loss, present)


def _precision(dtype_name: str, complex_: bool = False) -> str:
    return str(DTYPES[dtype_name][int(complex_)]).replace("torch.", "")


# ------------------------------------------------------------------------------------------------
# Diagonal linear scan
# ------------------------------------------------------------------------------------------------


def naive_linear_scan(a, b, h0):
    """x_k = a_k x_{k-1} + b_k, one step after another (torch, differentiable)."""
    x = torch.zeros_like(b[:, 0]) if h0 is None else h0
    states = []
    for k in range(b.shape[1]):
        x = a[:, k] * x + b[:, k]  # (B, ...)
        states.append(x)
    return torch.stack(states, dim=1), x


@st.composite
def linear_scan_problems(draw, complex_):
    """Decays inside the unit disk and inputs (B, L, *lanes); a may broadcast over the last lane axis."""
    B, L = draw(small_batches), draw(short_lengths)
    lanes = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
    broadcast_a = draw(st.booleans())
    rng = np.random.default_rng(draw(seeds))
    a_shape = (B, L) + lanes[:-1] + (1,) if broadcast_a else (B, L) + lanes
    a = rng.uniform(0.2, 0.99, size=a_shape)
    b = rng.normal(size=(B, L) + lanes)
    h0 = rng.normal(size=(B,) + lanes)
    if complex_:
        a = a * np.exp(1j * rng.uniform(-np.pi, np.pi, size=a_shape))
        b = b + 1j * rng.normal(size=b.shape)
        h0 = h0 + 1j * rng.normal(size=h0.shape)
    weights = (rng.normal(size=b.shape) + 1j * rng.normal(size=b.shape), rng.normal(size=h0.shape))
    return a, b, h0, weights


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@given(data=st.data(), dtype_name=st.sampled_from(list(DTYPES)), with_state=st.booleans(), chunk=chunk_sizes,
       block=block_sizes)  # fmt: skip
def test_triton_linear_scan_matches_reference_naive_loop_and_torch_scan(
    complex_, data, dtype_name, with_state, chunk, block
):
    a, b, h0, weights = data.draw(linear_scan_problems(complex_))
    dtype = DTYPES[dtype_name][int(complex_)]
    prec = _precision(dtype_name, complex_)
    h0 = h0 if with_state else None
    ta, tb = _t(a, dtype, True), _t(b, dtype, True)
    th0 = None if h0 is None else _t(h0, dtype, True)
    w = [torch.tensor(weights[0]), torch.tensor(weights[1])]
    w = [x if complex_ else x.real for x in w]

    x, final = fast.triton.linear_scan(ta, tb, th0, chunk_size=chunk, block_size=block)
    grads = _grads(_loss([x, final], w), [ta, tb, th0])

    # the reference, in float64 on the same (rounded) values
    oa, ob, oh0 = _oracle_inputs([ta, tb, th0])
    ref_x, ref_final = reference.linear_scan(oa.detach().numpy(), ob.detach().numpy(),
                                             None if oh0 is None else oh0.detach().numpy())  # fmt: skip
    assert_close(x, ref_x, prec, "states vs reference")
    assert_close(final, ref_final, prec, "final state vs reference")
    # the naive float64 loop and its autograd
    nx, nfinal = naive_linear_scan(oa.expand(ob.shape), ob, oh0)
    assert_close(nx, ref_x, "float64", "naive loop vs reference")
    naive_grads = _grads(_loss([nx, nfinal], w), [oa, ob, oh0])
    for name, got, want in zip(["a", "b", "initial_state"], grads, naive_grads):
        assert_close(got, want, prec, f"d{name} vs naive loop autograd")
    # the torch path in the same precision
    lx, lfinal = fast.linear_scan(ta, tb, th0, backend="torch", chunk_size=chunk)
    torch_grads = _grads(_loss([lx, lfinal], w), [ta, tb, th0])
    assert_close(x, lx, prec, "states vs torch path")
    assert_close(final, lfinal, prec, "final state vs torch path")
    for name, got, want in zip(["a", "b", "initial_state"], grads, torch_grads):
        assert_close(got, want, prec, f"d{name} vs torch path")


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
def test_triton_linear_scan_gradcheck(complex_):
    rng = np.random.default_rng(0)
    dtype = torch.complex128 if complex_ else torch.float64
    shape = (1, 5, 3)  # 3 chunks of 2 steps, 2 blocks of 2 lanes
    a = rng.uniform(0.3, 0.9, size=shape) * (np.exp(1j * rng.uniform(-3, 3, size=shape)) if complex_ else 1)
    b = rng.normal(size=shape) + (1j * rng.normal(size=shape) if complex_ else 0)
    h0 = rng.normal(size=(1, 3)) + (1j * rng.normal(size=(1, 3)) if complex_ else 0)
    inputs = (_t(a, dtype, True), _t(b, dtype, True), _t(h0, dtype, True))

    def fn(a, b, h0):
        return fast.triton.linear_scan(a, b, h0, chunk_size=2, block_size=2)

    assert torch.autograd.gradcheck(fn, inputs, fast_mode=True)


# ------------------------------------------------------------------------------------------------
# Selective scan
# ------------------------------------------------------------------------------------------------


def naive_selective_scan(u, dt, A, B, C, D, z, method, tau, h0):
    """The selective SSM one token after another, with the rules written out (torch, differentiable).
    ``tau`` is ``(B, L)`` or None. Eigenvalues must be nonzero (the zoh gain divides by them)."""
    Bsz, L, Dch = u.shape
    x = torch.zeros(Bsz, Dch, A.shape[1], dtype=u.dtype) if h0 is None else h0  # (B, D, N)
    lam = A[None]  # (1, D, N)
    ys = []
    for t in range(L):
        s_a = dt[:, t] if tau is None else dt[:, t] * tau[:, t, None]  # (B, D)
        s_b = dt[:, t] if tau is None or method == "async" else s_a
        s_a, s_b = s_a[..., None], s_b[..., None]  # (B, D, 1)
        if method == "bilinear":
            a = (1 + s_a * lam / 2) / (1 - s_a * lam / 2)  # (B, D, N)
            g = s_b / (1 - s_b * lam / 2)
        else:
            a = torch.exp(s_a * lam)
            g = {"zoh": torch.expm1(s_b * lam) / lam, "async": torch.expm1(s_b * lam) / lam,
                 "dirac": torch.ones_like(a), "mamba": s_b.expand_as(a)}[method]  # fmt: skip
        x = a * x + g * B[:, t, None, :] * u[:, t, :, None]  # (B, D, N)
        y = (x * C[:, t, None, :]).sum(-1)  # (B, D)
        if D is not None:
            y = y + D * u[:, t]
        if z is not None:
            y = y * F.silu(z[:, t])
        ys.append(y)
    return torch.stack(ys, dim=1), x


@st.composite
def selective_scan_problems(draw, method, with_gaps, zero_gaps=False):
    """Inputs of one selective scan (float64 NumPy) and which optional parts it uses."""
    B, L, Dch, N = draw(small_batches), draw(short_lengths), draw(st.integers(1, 5)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(seeds))
    p = {
        "u": draw(sequences(B, L, Dch)),
        "dt": np.exp(rng.uniform(np.log(1e-3), 0.0, size=(B, L, Dch))),  # log-uniform in [1e-3, 1]
        "A": np.stack([draw(stable_diagonal_spectra(n=N, complex_=False)) for _ in range(Dch)]),  # (D, N)
        "B": draw(sequences(B, L, N)),
        "C": draw(sequences(B, L, N)),
        "D": rng.normal(size=Dch) if draw(st.booleans()) else None,
        "z": draw(sequences(B, L, Dch)) if draw(st.booleans()) else None,
        "h0": rng.normal(size=(B, Dch, N)) if draw(st.booleans()) else None,
        "tau": None,
    }
    if with_gaps:
        shared = draw(st.booleans())  # (L,) shared by the batch, or (B, L)
        p["tau"] = draw(gaps(L, None if shared else B, allow_zero=zero_gaps))
    p["weights"] = (rng.normal(size=(B, L, Dch)), rng.normal(size=(B, Dch, N)))
    return p


SELECTIVE_ARGS = ["u", "dt", "A", "B", "C", "D", "z"]


def _selective(fn, leaves, method, **kw):
    return fn(*[leaves[k] for k in SELECTIVE_ARGS], method=method, integration_timesteps=leaves["tau"],
              initial_state=leaves["h0"], return_state=True, **kw)  # fmt: skip


def _check_selective_scan(p, method, dtype_name, chunk, block):
    """Triton forward, final state and gradients against the reference, the naive float64 loop and the torch
    path (``fast.ops.selective_scan(backend="torch")``, same precision)."""
    prec = dtype_name
    dtype = DTYPES[dtype_name][0]
    names = SELECTIVE_ARGS + ["h0", "tau"]
    leaves = {k: None if p[k] is None else _t(p[k], dtype, True) for k in names}
    present = [k for k in names if leaves[k] is not None]
    w = [torch.tensor(x) for x in p["weights"]]
    y, final = _selective(fast.triton.selective_scan, leaves, method, chunk_size=chunk, block_size=block)
    grads = dict(zip(present, _grads(_loss([y, final], w), [leaves[k] for k in present])))

    # the reference (float64, NumPy) on the same rounded values
    o = dict(zip(names, _oracle_inputs([leaves[k] for k in names])))
    ref_y, ref_final = _selective(reference.selective_scan, {k: None if v is None else v.detach().numpy()
                                                             for k, v in o.items()}, method)  # fmt: skip
    assert_close(y, ref_y, prec, "y vs reference")
    assert_close(final, ref_final, prec, "final state vs reference")
    # the naive float64 loop and its autograd
    tau_2d = None if o["tau"] is None else o["tau"].expand(o["u"].shape[:2])  # (B, L)
    ny, nfinal = naive_selective_scan(*[o[k] for k in SELECTIVE_ARGS], method, tau_2d, o["h0"])
    assert_close(ny, ref_y, "float64", "naive loop vs reference")
    naive_grads = _grads(_loss([ny, nfinal], w), [o[k] for k in present])
    for (name, got), want in zip(grads.items(), naive_grads):
        assert_close(got, want, prec, f"d{name} vs naive loop autograd")
    # the torch path, in the same precision
    same = {k: None if v is None else v.detach().requires_grad_() for k, v in leaves.items()}
    ty, tfinal = _selective(fast.ops.selective_scan, same, method, backend="torch")
    assert_close(y, ty, prec, "y vs torch path")
    assert_close(final, tfinal, prec, "final state vs torch path")
    torch_grads = _grads(_loss([ty, tfinal], w), [same[k] for k in present])
    for (name, got), want in zip(grads.items(), torch_grads):
        assert_close(got, want, prec, f"d{name} vs torch path")


CASES = [(m, gaps) for m in METHODS for gaps in ([True] if m == "async" else [False, True])]


@pytest.mark.parametrize("method, with_gaps", CASES, ids=[f"{m}-{'gaps' if g else 'nogaps'}" for m, g in CASES])
@given(data=st.data(), dtype_name=st.sampled_from(list(DTYPES)))
def test_triton_selective_scan_matches_reference_naive_loop_and_torch_path(method, with_gaps, data, dtype_name):
    _check_selective_scan(data.draw(selective_scan_problems(method, with_gaps)), method, dtype_name, 4, 4)


@pytest.mark.parametrize("method", ["dirac", "async"])
@given(data=st.data())
def test_triton_selective_scan_with_zero_gaps_matches_reference_naive_loop_and_torch_path(method, data):
    # simultaneous events (tau = 0): the state does not decay, dirac and async still inject the input
    _check_selective_scan(data.draw(selective_scan_problems(method, True, zero_gaps=True)), method, "float64", 4, 4)


@pytest.mark.parametrize("method", METHODS)
def test_triton_selective_scan_gradcheck(method):
    # finite differences in float64; A has a zero eigenvalue, where the zoh gain is taken by its limit dt
    rng = np.random.default_rng(1)
    B, L, Dch, N = 1, 3, 2, 2
    u, z = rng.normal(size=(B, L, Dch)), rng.normal(size=(B, L, Dch))
    dt = rng.uniform(0.1, 1.0, size=(B, L, Dch))
    A = np.array([[-0.5, 0.0], [-1.5, -0.2]])
    Bm, Cm, D = rng.normal(size=(B, L, N)), rng.normal(size=(B, L, N)), rng.normal(size=Dch)
    tau, h0 = rng.uniform(0.2, 2.0, size=(B, L)), rng.normal(size=(B, Dch, N))
    inputs = tuple(_t(x, torch.float64, True) for x in (u, dt, A, Bm, Cm, D, z, tau, h0))

    def fn(u, dt, A, Bm, Cm, D, z, tau, h0):
        return fast.triton.selective_scan(u, dt, A, Bm, Cm, D, z, method=method, integration_timesteps=tau,
                                          initial_state=h0, return_state=True, chunk_size=2, block_size=2)  # fmt: skip

    assert torch.autograd.gradcheck(fn, inputs, fast_mode=True)


def test_triton_selective_scan_zoh_at_zero_eigenvalue_matches_reference_and_gradcheck():
    # zoh at lam = 0: g = dt, dg/dlam = dt^2 / 2 (the series branch of phi1)
    rng = np.random.default_rng(2)
    u, dt = rng.normal(size=(1, 2, 1)), rng.uniform(0.1, 1.0, size=(1, 2, 1))
    Bm, Cm = rng.normal(size=(1, 2, 1)), rng.normal(size=(1, 2, 1))
    inputs = tuple(_t(x, torch.float64, True) for x in (u, dt, np.zeros((1, 1)), Bm, Cm))
    y = fast.triton.selective_scan(*inputs, method="zoh", chunk_size=2, block_size=1)
    ref = reference.selective_scan(u, dt, np.zeros((1, 1)), Bm, Cm, method="zoh")
    assert_close(y, ref, "float64", "y at lam = 0 vs reference")
    assert torch.autograd.gradcheck(
        lambda *x: fast.triton.selective_scan(*x, method="zoh", chunk_size=2, block_size=1), inputs, fast_mode=True
    )


# ------------------------------------------------------------------------------------------------
# Errors and availability
# ------------------------------------------------------------------------------------------------


def test_triton_selective_scan_bad_input_raises_value_error():
    f64 = dict(dtype=torch.float64, device=DEVICE)
    u, dt = torch.randn(2, 5, 3, **f64), torch.rand(2, 5, 3, **f64) + 0.1
    A, Bm, Cm = -torch.rand(3, 4, **f64) - 0.1, torch.randn(2, 5, 4, **f64), torch.randn(2, 5, 4, **f64)
    ss = fast.triton.selective_scan
    with pytest.raises(ValueError, match="A: expected shape"):
        ss(u, dt, A[:2], Bm, Cm)
    with pytest.raises(ValueError, match="B: expected shape"):
        ss(u, dt, A, Bm[:, :4], Cm)
    with pytest.raises(ValueError, match="dt: expected values > 0"):
        ss(u, -dt, A, Bm, Cm)
    with pytest.raises(ValueError, match="one precision"):
        ss(u, dt.float(), A, Bm, Cm)
    with pytest.raises(ValueError, match="float32 or float64"):
        ss(u.half(), dt.half(), A.half(), Bm.half(), Cm.half())
    with pytest.raises(ValueError, match="method"):
        ss(u, dt, A, Bm, Cm, method="foh")
    with pytest.raises(ValueError, match="integration_timesteps: method 'async' needs"):
        ss(u, dt, A, Bm, Cm, method="async")
    with pytest.raises(ValueError, match="zero gap"):
        ss(u, dt, A, Bm, Cm, method="zoh", integration_timesteps=np.array([1.0, 0.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="integration_timesteps: expected shape"):
        ss(u, dt, A, Bm, Cm, method="async", integration_timesteps=np.ones(4))
    with pytest.raises(ValueError, match="singular"):
        ss(u, torch.ones_like(dt), torch.full((3, 4), 2.0, **f64), Bm, Cm, method="bilinear")
    with pytest.raises(ValueError, match="chunk_size"):
        ss(u, dt, A, Bm, Cm, chunk_size=3)
    with pytest.raises(ValueError, match="initial_state"):
        ss(u, dt, A, Bm, Cm, initial_state=torch.zeros(2, 3, **f64))


def test_triton_linear_scan_bad_input_raises_value_error():
    a = torch.rand(2, 5, 3, dtype=torch.float64, device=DEVICE)
    with pytest.raises(ValueError, match="b: expected shape"):
        fast.triton.linear_scan(a, a[:, :0])
    with pytest.raises(ValueError, match="do not broadcast"):
        fast.triton.linear_scan(a[..., :2], a)
    with pytest.raises(ValueError, match="initial_state"):
        fast.triton.linear_scan(a, a, a[:, 0, :2])
    with pytest.raises(ValueError, match="float32, float64, complex64 or complex128"):
        fast.triton.linear_scan(a.half(), a.half())
    with pytest.raises(ValueError, match="block_size"):
        fast.triton.linear_scan(a, a, block_size=3)


def test_triton_unavailable_raises_with_the_reason_and_the_install_command(monkeypatch):
    a = torch.rand(1, 3, 2, dtype=torch.float64)
    monkeypatch.setattr(fast.triton, "_installed", lambda name: name != "triton")
    ok, why = fast.triton.available()
    assert not ok and fast.triton.INSTALL_TRITON in why
    with pytest.raises(RuntimeError, match="Triton is not installed"):
        fast.triton.linear_scan(a, a)
    monkeypatch.undo()
    # installed, but neither a GPU nor the interpreter
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(fast.triton, "_cuda_available", lambda: False)
    ok, why = fast.triton.available()
    assert not ok and "TRITON_INTERPRET=1" in why
    with pytest.raises(RuntimeError, match="no CUDA device"):
        fast.triton.selective_scan(a, a.abs() + 0.1, -torch.ones(2, 1, dtype=torch.float64), a[..., :1], a[..., :1])


def test_importing_fast_does_not_import_triton():
    code = "import sys, fast, fast.ops, fast.triton; assert 'triton' not in sys.modules, 'triton was imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("kind", ["linear_scan", "selective_scan"])
def test_bench_triton_times_the_kernel_the_torch_path_and_the_floor(kind):
    # the benchmark's code path with a counting timer (GPU timings come from `make bench` on a GPU)
    calls = []

    def timer(fn):
        fn()
        calls.append(fn)
        return float(len(calls))

    torch_path = {"linear_scan": fast.linear_scan, "selective_scan": fast.ops.selective_scan}[kind]
    torch_fn = functools.partial(torch_path, backend="torch")
    rows = fast.triton.bench_triton(kind, batch=1, length=3, width=2, d_state=2, dtype=torch.float64,
                                    torch_fn=torch_fn, device=DEVICE, timer=timer)  # fmt: skip
    assert [r["name"] for r in rows] == [f"{kind} triton", f"{kind} torch"]
    assert [r["ms"] for r in rows] == [2.0, 3.0] and all(r["floor_ms"] == 1.0 for r in rows)
    per_element = {"linear_scan": 8 * 3 * 2, "selective_scan": 11 * 3 * 2 + 6 * 3 * 2}[kind]
    assert all(r["bytes"] == per_element * 8 for r in rows)


# ------------------------------------------------------------------------------------------------
# The real compiler (no GPU needed): every kernel variant built for sm_90
# ------------------------------------------------------------------------------------------------

_ROOT = Path(__file__).resolve().parents[1]


def _without_interpreter(tmp_path) -> dict:
    # triton.jit builds interpreted kernels when TRITON_INTERPRET is set; a fresh cache makes it compile anew
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return env | {"TRITON_CACHE_DIR": str(tmp_path / "triton-cache")}


def test_every_kernel_variant_compiles_for_hopper_with_the_real_compiler(tmp_path):
    # The interpreter runs the kernel source as NumPy and accepts code the compiler rejects; here Triton lowers
    # every variant (fast.triton.compile_check: each rule, optional inputs present and absent, float32 and
    # float64, real and complex) to PTX and its bundled ptxas assembles it for sm_90 (H100/H200).
    from fast.triton import compile_check

    done = subprocess.run(
        [sys.executable, "-m", "fast.triton.compile_check", "--arch", "90"],
        cwd=_ROOT, env=_without_interpreter(tmp_path), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    n = len(compile_check.variants())
    assert n == 2 * 3 * len(METHODS) + 2 * 2 * 3
    assert f"{n} of {n} variants compiled for sm_90" in done.stdout


def test_the_compile_check_fails_on_a_kernel_the_compiler_rejects(tmp_path):
    # the same path must raise for a variant that cannot be built: a chunk of 3 steps (tl.arange needs a power
    # of two; the entry points refuse it before any kernel is built, so only the compiler sees it here)
    code = (
        "import dataclasses, sys\n"
        "from fast.triton import compile_check as cc\n"
        "v = cc.variants()[0]\n"
        "bad = dataclasses.replace(v, constexprs=v.constexprs | {'CHUNK': 3})\n"
        "try:\n"
        "    cc.compile_variant(bad)\n"
        "except Exception as e:\n"
        "    print('raised', type(e).__name__, e)\n"
        "    sys.exit(0)\n"
        "sys.exit('compiled a kernel with CHUNK=3')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=_ROOT, env=_without_interpreter(tmp_path), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "raised CompilationError" in done.stdout and "power of 2" in done.stdout


@pytest.mark.skipif(not fast.triton.interpreting(), reason="checks the refusal under the interpreter")
def test_the_compile_check_refuses_to_run_under_the_interpreter():
    from fast.triton import compile_check

    with pytest.raises(RuntimeError, match="TRITON_INTERPRET is set"):
        compile_check.compile_variant(compile_check.variants()[0])
