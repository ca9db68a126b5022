"""The fast (torch) building blocks equal their reference twins: discretize / discretize_diagonal, the
chunked parallel linear_scan, fft_conv, kernel / impulse_response / frequency_response.

float64 is compared with the float64 tolerance; float32 runs of the fast code are compared with the
reference evaluated (in float64) on the same float32-rounded inputs, with the float32 tolerance, so the
comparison measures the computation and not the rounding of the inputs. Gradients of the fast ops are
checked by finite differences (torch.autograd.gradcheck) in float64. ``import fast`` must work when
triton cannot be imported, and ``backend="triton"`` must say that the kernels are not in this build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fast
import fast.ops
import reference
from equivalence_tests.strategies import dense_stable_systems, lengths, seeds, stable_diagonal_spectra, step_sizes
from equivalence_tests.tolerances import assert_close

REPO = Path(__file__).resolve().parents[1]
PRECISIONS = ["float64", "float32"]
CHUNK_SIZES = st.sampled_from([2, 3, 4, fast.scan.DEFAULT_CHUNK_SIZE])
# lengths up to 33 (L = 1 and odd ones included) and, sometimes, longer than one default chunk of 64
SCAN_LENGTHS = st.one_of(lengths, st.integers(60, 150))


def _t(x, precision: str) -> torch.Tensor:
    """A NumPy array as a tensor of ``precision`` (complex arrays keep their complex type)."""
    x = np.asarray(x)
    if np.iscomplexobj(x):
        return torch.tensor(x, dtype=torch.complex128 if precision == "float64" else torch.complex64)
    return torch.tensor(x, dtype=torch.float64 if precision == "float64" else torch.float32)


def _np(x: torch.Tensor) -> np.ndarray:
    """The exact values of a tensor as a float64 / complex128 array (the reference's inputs)."""
    x = x.detach()
    return (x.to(torch.complex128) if x.is_complex() else x.to(torch.float64)).numpy()


# ------------------------------------------------------------------------------------------------
# linear_scan
# ------------------------------------------------------------------------------------------------


def _scan_inputs(seed, B, L, lanes, kind):
    rng = np.random.default_rng(seed)
    shape = (B, L, *lanes)
    a = rng.uniform(0.2, 0.99, size=shape)
    b = rng.normal(size=shape)
    x0 = rng.normal(size=(B, *lanes))
    if kind in ("complex", "complex decay, real input"):
        a = a * np.exp(1j * rng.uniform(-np.pi, np.pi, size=shape))
    if kind in ("complex", "real decay, complex input"):
        b = b + 1j * rng.normal(size=shape)
        x0 = x0 + 1j * rng.normal(size=(B, *lanes))
    return a, b, x0


@pytest.mark.parametrize("precision", PRECISIONS)
@given(
    seed=seeds,
    B=st.integers(1, 3),
    L=SCAN_LENGTHS,
    lanes=st.sampled_from([(), (3,), (2, 3)]),
    kind=st.sampled_from(["real", "complex", "real decay, complex input", "complex decay, real input"]),
    with_state=st.booleans(),
    broadcast_a=st.booleans(),
    chunk_size=CHUNK_SIZES,
)
def test_fast_linear_scan_matches_reference(precision, seed, B, L, lanes, kind, with_state, broadcast_a, chunk_size):
    a, b, x0 = _scan_inputs(seed, B, L, lanes, kind)
    if broadcast_a and lanes:  # one decay shared by the last lane axis
        a = a[..., :1]
    a_t, b_t = _t(a, precision), _t(b, precision)
    x0_t = _t(x0, precision) if with_state else None
    x, final = fast.ops.linear_scan(a_t, b_t, x0_t, chunk_size=chunk_size)
    x_ref, final_ref = reference.linear_scan(_np(a_t), _np(b_t), None if x0_t is None else _np(x0_t))
    expected_dtype = torch.promote_types(a_t.dtype, b_t.dtype if x0_t is None else x0_t.dtype)
    assert x.dtype == torch.promote_types(expected_dtype, b_t.dtype)
    assert_close(x, x_ref, precision, f"states ({kind}, chunk {chunk_size})")
    assert_close(final, final_ref, precision, "final state")


@given(seed=seeds, L=SCAN_LENGTHS, chunk_size=CHUNK_SIZES)
def test_fast_linear_scan_with_vanishing_decays_matches_reference(seed, L, chunk_size):
    # Decays of 0 and 1e-200 make every running product underflow to 0: a scan that divides by
    # cumulative products returns inf/NaN here; the fast scan must still equal the recurrence.
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.2, 0.99, size=(2, L, 3)) * np.exp(1j * rng.uniform(-3, 3, size=(2, L, 3)))
    a[rng.uniform(size=a.shape) < 0.3] = 1e-200
    a[rng.uniform(size=a.shape) < 0.1] = 0.0
    b = rng.normal(size=(2, L, 3)) + 1j * rng.normal(size=(2, L, 3))
    x0 = rng.normal(size=(2, 3)) + 0j
    x, final = fast.ops.linear_scan(_t(a, "float64"), _t(b, "float64"), _t(x0, "float64"), chunk_size=chunk_size)
    x_ref, final_ref = reference.linear_scan(a, b, x0)
    assert_close(x, x_ref, "float64", "states")
    assert_close(final, final_ref, "float64", "final state")


@pytest.mark.parametrize("kind", ["real", "complex"])
def test_fast_linear_scan_gradients_match_finite_differences(kind):
    # L = 7 with chunks of 2: padding and two levels of chunk summaries are differentiated.
    a, b, x0 = _scan_inputs(0, 2, 7, (2,), "complex" if kind == "complex" else "real")
    inputs = tuple(_t(v, "float64").requires_grad_() for v in (a, b, x0))
    assert torch.autograd.gradcheck(lambda a, b, x0: fast.ops.linear_scan(a, b, x0, chunk_size=2), inputs)


def test_fast_linear_scan_backends_agree_and_fft_conv_has_no_triton_kernel():
    a, b, x0 = (_t(v, "float64") for v in _scan_inputs(1, 2, 9, (3,), "complex"))
    x_auto, f_auto = fast.ops.linear_scan(a, b, x0)  # CPU tensors: "auto" is torch
    x_torch, f_torch = fast.ops.linear_scan(a, b, x0, backend="torch")
    assert torch.equal(x_auto, x_torch) and torch.equal(f_auto, f_torch)
    x_triton, f_triton = fast.ops.linear_scan(a, b, x0, backend="triton")  # the interpreter here (conftest)
    x_ref, f_ref = reference.linear_scan(*(v.numpy() for v in (a, b, x0)))
    assert_close(x_triton, x_ref, "float64", "states (triton)")
    assert_close(f_triton, f_ref, "float64", "final state (triton)")
    with pytest.raises(ValueError, match="backend: fft_conv has no Triton kernel"):
        fast.ops.fft_conv(
            torch.ones(1, 3, 2, dtype=torch.float64), torch.ones(3, 2, dtype=torch.float64), backend="triton"
        )
    with pytest.raises(ValueError, match="backend"):
        fast.ops.linear_scan(a, b, x0, backend="cuda")


# ------------------------------------------------------------------------------------------------
# fft_conv
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", PRECISIONS)
@given(
    seed=seeds,
    B=st.integers(1, 3),
    L=lengths,
    taps=st.integers(1, 40),
    H_in=st.integers(1, 3),
    H_out=st.integers(1, 3),
    layout=st.sampled_from(["depthwise", "full"]),
    complex_=st.booleans(),
)
def test_fast_fft_conv_matches_reference_causal_conv(precision, seed, B, L, taps, H_in, H_out, layout, complex_):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(B, L, H_in))
    K = rng.normal(size=(taps, H_in) if layout == "depthwise" else (taps, H_out, H_in))
    if complex_:
        K = K + 1j * rng.normal(size=K.shape)
    u_t, K_t = _t(u, precision), _t(K, precision)
    y = fast.ops.fft_conv(u_t, K_t)
    expected = reference.causal_conv(_np(u_t), _np(K_t))
    assert y.is_complex() == complex_
    assert_close(y, expected, precision, f"{layout} convolution")


@pytest.mark.parametrize("layout", ["depthwise", "full"])
@pytest.mark.parametrize("kind", ["real", "complex"])
def test_fast_fft_conv_gradients_match_finite_differences(layout, kind):
    rng = np.random.default_rng(2)
    u = rng.normal(size=(2, 5, 2))
    K = rng.normal(size=(4, 2) if layout == "depthwise" else (4, 3, 2))
    if kind == "complex":
        u = u + 1j * rng.normal(size=u.shape)
        K = K + 1j * rng.normal(size=K.shape)
    inputs = (_t(u, "float64").requires_grad_(), _t(K, "float64").requires_grad_())
    assert torch.autograd.gradcheck(fast.ops.fft_conv, inputs)


# ------------------------------------------------------------------------------------------------
# discretization
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", PRECISIONS)
@given(
    seed=seeds,
    method=st.sampled_from(["zoh", "bilinear", "dirac", "mamba", "async"]),
    systems=st.sampled_from([(), (3,), (2, 2)]),
    N=st.integers(1, 4),
    complex_=st.booleans(),
    B_layout=st.sampled_from(["vector", "matrix"]),
    dt_layout=st.sampled_from(["scalar", "per system", "per state"]),
    gaps=st.sampled_from([None, "(L,)", "(B, L)", "aligned"]),
    L=st.integers(1, 5),
    zero_eigenvalue=st.booleans(),
)
def test_fast_discretize_diagonal_matches_reference(
    precision, seed, method, systems, N, complex_, B_layout, dt_layout, gaps, L, zero_eigenvalue
):
    rng = np.random.default_rng(seed)
    Lambda = -rng.uniform(0.01, 3.0, size=(*systems, N))
    if complex_:
        Lambda = Lambda + 1j * rng.uniform(-5, 5, size=Lambda.shape)
    if zero_eigenvalue:  # the zoh normalizer takes its limit dt there
        Lambda[..., 0] = 0.0
    B = rng.normal(size=(*systems, N) if B_layout == "vector" else (*systems, N, 2))
    dt_shape = {"scalar": (), "per system": systems, "per state": (*systems, N)}[dt_layout]
    dt = np.exp(rng.uniform(np.log(1e-3), 0.0, size=dt_shape))
    if method == "async" and gaps is None:
        gaps = "(L,)"
    tau = None
    if gaps is not None:
        # "aligned": one gap per system, for systems that already carry the time axes (selective models)
        tau_shape = {"(L,)": (L,), "(B, L)": (2, L), "aligned": systems[:-1] + (1,) if systems else ()}[gaps]
        tau = rng.uniform(0.05, 3.0, size=tau_shape)
        if method in ("async", "dirac"):
            tau.flat[0] = 0.0  # simultaneous events are allowed for these two rules
    Lambda_t, B_t, dt_t = _t(Lambda, precision), _t(B, precision), _t(dt, precision)
    tau_t = None if tau is None else _t(tau, precision)
    aligned = gaps == "aligned"
    A_bar, B_bar = fast.discretize_diagonal(
        Lambda_t, B_t, dt_t, method, integration_timesteps=tau_t, aligned_timesteps=aligned
    )
    A_ref, B_ref = reference.discretize_diagonal(
        _np(Lambda_t),
        _np(B_t),
        _np(dt_t),
        method,
        integration_timesteps=None if tau_t is None else _np(tau_t),
        aligned_timesteps=aligned,
    )
    assert_close(A_bar, A_ref, precision, f"A_bar ({method})")
    assert_close(B_bar, B_ref, precision, f"B_bar ({method})")
    if not systems and not aligned:  # one system: discretize with a 1-D A is the same call
        A_one, B_one = fast.discretize(Lambda_t, B_t, dt_t, method, integration_timesteps=tau_t)
        assert torch.equal(A_one, A_bar) and torch.equal(B_one, B_bar)


@pytest.mark.parametrize("precision", PRECISIONS)
@given(
    system=dense_stable_systems(),
    dt=step_sizes(),
    method=st.sampled_from(["zoh", "bilinear", "dirac", "mamba"]),
    per_state_dt=st.booleans(),
    vector_B=st.booleans(),
    complex_=st.booleans(),
    seed=seeds,
)
def test_fast_discretize_dense_matches_reference(precision, system, dt, method, per_state_dt, vector_B, complex_, seed):
    A, B, _, _ = system
    rng = np.random.default_rng(seed)
    if complex_:
        A = A + 0.5j * rng.normal(size=A.shape)
        B = B + 1j * rng.normal(size=B.shape)
    if vector_B:
        B = B[:, 0]
    dt_arg = dt * rng.uniform(0.5, 1.5, size=A.shape[0]) if per_state_dt else dt
    A_t, B_t = _t(A, precision), _t(B, precision)
    dt_t = _t(dt_arg, precision)
    A_bar, B_bar = fast.discretize(A_t, B_t, dt_t, method)
    A_ref, B_ref = reference.discretize(_np(A_t), _np(B_t), _np(dt_t), method)
    assert_close(A_bar, A_ref, precision, f"A_bar ({method})")
    assert_close(B_bar, B_ref, precision, f"B_bar ({method})")


def test_fast_discretize_dense_zoh_matches_closed_form_rotation():
    # exp(dt [[0, -1], [1, 0]]) is the rotation by dt. dt = 0.04 is where torch's matrix_exp of a single
    # matrix is off by ~1e-10 (pytorch/pytorch#196592); fast.discretize must not inherit that error.
    for dt in (0.012, 0.025, 0.04, 0.3):
        A = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
        A_bar, B_bar = fast.discretize(A, torch.tensor([1.0, 0.0], dtype=torch.float64), dt, "zoh")
        c, s = np.cos(dt), np.sin(dt)
        assert_close(A_bar, np.array([[c, -s], [s, c]]), "float64", f"A_bar (dt {dt})")
        # B_bar = int_0^dt exp(A t) dt e_1 = (sin dt, 1 - cos dt)
        assert_close(B_bar, np.array([s, 1.0 - c]), "float64", f"B_bar (dt {dt})")


def test_fast_register_discretization_dispatches_to_the_custom_rule():
    def forward_euler(A, B, dt, *, integration_timesteps=None):
        return 1.0 + dt * A, dt * B

    name = "forward_euler_fast_test"
    fast.register_discretization(name, forward_euler)
    assert name in fast.DISCRETIZATIONS and name not in reference.DISCRETIZATIONS
    Lambda = torch.tensor([-1.0, -2.0], dtype=torch.float64)
    A_bar, B_bar = fast.discretize(Lambda, torch.ones(2, 3, dtype=torch.float64), 0.1, name)
    assert_close(A_bar, np.array([0.9, 0.8]), "float64", "A_bar")
    assert_close(B_bar, np.full((2, 3), 0.1), "float64", "B_bar")
    with pytest.raises(ValueError, match="already exists"):
        fast.register_discretization(name, forward_euler)


def test_fast_discretize_zoh_diagonal_complex_gradients_match_finite_differences():
    rng = np.random.default_rng(3)
    Lambda = -rng.uniform(0.1, 2.0, size=(2, 3)) + 1j * rng.uniform(-3, 3, size=(2, 3))
    Lambda[0, 0] = 0.0  # the limit branch of the zoh normalizer must have the right derivative too
    B = rng.normal(size=(2, 3, 2)) + 1j * rng.normal(size=(2, 3, 2))
    dt = rng.uniform(0.1, 1.0, size=(2, 3))
    inputs = tuple(_t(v, "float64").requires_grad_() for v in (Lambda, B, dt))
    assert torch.autograd.gradcheck(lambda L_, B_, dt_: fast.discretize_diagonal(L_, B_, dt_, "zoh"), inputs)


def test_fast_discretize_bilinear_dense_gradients_match_finite_differences():
    rng = np.random.default_rng(4)
    A = rng.normal(size=(3, 3)) - 2.0 * np.eye(3)
    B = rng.normal(size=(3, 2))
    dt = rng.uniform(0.1, 1.0, size=3)
    inputs = tuple(_t(v, "float64").requires_grad_() for v in (A, B, dt))
    assert torch.autograd.gradcheck(lambda A_, B_, dt_: fast.discretize(A_, B_, dt_, "bilinear"), inputs)


# ------------------------------------------------------------------------------------------------
# responses
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", PRECISIONS)
@given(
    Lambda=stable_diagonal_spectra(),
    system=dense_stable_systems(),
    dt=step_sizes(),
    dense=st.booleans(),
    readout=st.sampled_from(["plain", "re", "2re"]),
    L=lengths,
    seed=seeds,
)
def test_fast_responses_match_reference(precision, Lambda, system, dt, dense, readout, L, seed):
    rng = np.random.default_rng(seed)
    if dense:
        A, B, C, D = system
        A_bar, B_bar = reference.discretize(A, B, dt, "zoh")
        readout = "plain"  # a real system
    else:
        H_in, H_out = rng.integers(1, 4, size=2)
        B = rng.normal(size=(Lambda.shape[0], H_in)) + 1j * rng.normal(size=(Lambda.shape[0], H_in))
        A_bar, B_bar = reference.discretize(Lambda, B, dt, "zoh")
        C = rng.normal(size=(H_out, Lambda.shape[0])) + 1j * rng.normal(size=(H_out, Lambda.shape[0]))
        D = rng.normal(size=(H_out, H_in))
    w = np.linspace(-np.pi, np.pi, 7)
    A_t, B_t, C_t, D_t, w_t = (_t(v, precision) for v in (A_bar, B_bar, C, D, w))
    A_r, B_r, C_r, D_r, w_r = (_np(v) for v in (A_t, B_t, C_t, D_t, w_t))
    K = fast.kernel(A_t, B_t, C_t, L, readout=readout)
    assert_close(K, reference.kernel(A_r, B_r, C_r, L, readout=readout), precision, "kernel")
    h = fast.impulse_response(A_t, B_t, C_t, D_t, L, readout=readout)
    assert_close(h, reference.impulse_response(A_r, B_r, C_r, D_r, L, readout=readout), precision, "impulse")
    G = fast.frequency_response(A_t, B_t, C_t, D_t, w_t, readout=readout)
    expected = reference.frequency_response(A_r, B_r, C_r, D_r, w_r, readout=readout)
    assert_close(G, expected, precision, "frequency response")


def test_fast_kernel_gradients_match_finite_differences():
    rng = np.random.default_rng(5)
    A_bar = rng.uniform(0.3, 0.9, size=3) * np.exp(1j * rng.uniform(-2, 2, size=3))
    B_bar = rng.normal(size=(3, 2)) + 1j * rng.normal(size=(3, 2))
    C = rng.normal(size=(2, 3)) + 1j * rng.normal(size=(2, 3))
    inputs = tuple(_t(v, "float64").requires_grad_() for v in (A_bar, B_bar, C))
    assert torch.autograd.gradcheck(lambda A_, B_, C_: fast.kernel(A_, B_, C_, 6, readout="2re"), inputs)


# ------------------------------------------------------------------------------------------------
# import without triton
# ------------------------------------------------------------------------------------------------

_NO_TRITON = r"""
import importlib.abc, json, sys

class NoTriton(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "triton" or name.startswith("triton."):
            raise ImportError(f"{name} is blocked by the test")
        return None

sys.meta_path.insert(0, NoTriton())
import fast, fast.models, fast.ops
import torch
loaded = "triton" in sys.modules
try:
    fast.ops.linear_scan(torch.ones(1, 3, 2), torch.ones(1, 3, 2), backend="triton")
    message = None
except RuntimeError as exc:
    message = str(exc)
x, _ = fast.ops.linear_scan(torch.ones(1, 3, 2), torch.ones(1, 3, 2))
print(json.dumps({"triton_loaded": loaded, "message": message, "x": x[0, :, 0].tolist()}))
"""


def test_import_fast_works_without_triton_and_triton_backend_says_what_to_install():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-c", _NO_TRITON], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["triton_loaded"] is False
    assert result["x"] == [1.0, 2.0, 3.0]
    assert result["message"] is not None
    assert "Triton is not installed" in result["message"]
    assert 'pip install -c constraints.txt -e ".[triton]"' in result["message"]


_NO_DEVICE = r"""
import json
import torch
import fast.models, fast.ops
messages = []
for call in (lambda: fast.ops.linear_scan(torch.ones(1, 3, 2), torch.ones(1, 3, 2), backend="triton"),
             lambda: fast.models.Mamba(2, backend="triton")):
    try:
        call()
        messages.append(None)
    except RuntimeError as exc:
        messages.append(str(exc))
print(json.dumps(messages))
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where no CUDA device is visible")
def test_triton_backend_without_a_gpu_or_the_interpreter_says_why():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run(
        [sys.executable, "-c", _NO_DEVICE], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    for message in json.loads(out.stdout.strip().splitlines()[-1]):
        assert message is not None and "no CUDA device is visible and TRITON_INTERPRET is not set" in message


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------

f64 = torch.float64


def _ones(*shape, dtype=f64):
    return torch.ones(*shape, dtype=dtype)


BAD_INPUTS = {
    "scan a with fewer axes": (lambda: fast.ops.linear_scan(_ones(2, 3), _ones(2, 3, 4)), "a: expected 3 axes"),
    "scan a enlarges b": (lambda: fast.ops.linear_scan(_ones(2, 3, 4), _ones(2, 3, 1)), "would enlarge b"),
    "scan a does not broadcast": (lambda: fast.ops.linear_scan(_ones(2, 3, 4), _ones(2, 3, 5)), "do not broadcast"),
    "scan empty time axis": (lambda: fast.ops.linear_scan(_ones(2, 0, 4), _ones(2, 0, 4)), "L >= 1"),
    "scan initial state shape": (
        lambda: fast.ops.linear_scan(_ones(2, 3, 4), _ones(2, 3, 4), _ones(2, 5)),
        "initial_state: expected shape",
    ),
    "scan float32 a with float64 b": (
        lambda: fast.ops.linear_scan(_ones(2, 3, dtype=torch.float32), _ones(2, 3)),
        "share one precision",
    ),
    "scan complex64 b with float64 a": (
        lambda: fast.ops.linear_scan(_ones(2, 3), _ones(2, 3, dtype=torch.complex64)),
        "share one precision",
    ),
    "scan integer tensor": (
        lambda: fast.ops.linear_scan(torch.ones(2, 3, dtype=torch.int64), _ones(2, 3)),
        "a: expected a floating-point",
    ),
    "scan numpy input": (lambda: fast.ops.linear_scan(np.ones((2, 3)), _ones(2, 3)), "a: expected a torch.Tensor"),
    "scan chunk size 1": (lambda: fast.ops.linear_scan(_ones(2, 3), _ones(2, 3), chunk_size=1), "chunk_size"),
    "conv kernel width": (lambda: fast.ops.fft_conv(_ones(1, 4, 3), _ones(4, 2)), "K: a depthwise kernel"),
    "conv kernel axes": (lambda: fast.ops.fft_conv(_ones(1, 4, 3), _ones(4)), "K: expected shape"),
    "conv input axes": (lambda: fast.ops.fft_conv(_ones(4, 3), _ones(4, 3)), "u: expected shape"),
    "conv precisions": (
        lambda: fast.ops.fft_conv(_ones(1, 4, 3, dtype=torch.float32), _ones(4, 3)),
        "share one precision",
    ),
    "dt zero": (lambda: fast.discretize(_ones(3) * -1, _ones(3, 2), 0.0), "dt: expected values > 0"),
    "dt negative per state": (
        lambda: fast.discretize(-_ones(3), _ones(3, 2), torch.tensor([0.1, -0.1, 0.2], dtype=f64)),
        "dt: expected values > 0",
    ),
    "dt nan": (lambda: fast.discretize(-_ones(3), _ones(3, 2), float("nan")), "dt: contains NaN"),
    "dt float32 with float64 A": (
        lambda: fast.discretize(-_ones(3), _ones(3, 2), torch.tensor(0.1, dtype=torch.float32)),
        "dt: expected dtype torch.float64",
    ),
    "dt wrong length": (lambda: fast.discretize(-_ones(3), _ones(3, 2), _ones(2) * 0.1), "do not broadcast .*dt"),
    "dt too many axes": (lambda: fast.discretize(-_ones(3), _ones(3, 2), _ones(2, 3) * 0.1), "dt: expected a scalar"),
    "dense dt wrong shape": (lambda: fast.discretize(-torch.eye(3, dtype=f64), _ones(3, 2), _ones(2)), "dt: expected"),
    "unknown method": (lambda: fast.discretize(-_ones(3), _ones(3, 2), 0.1, "euler"), "method: unknown"),
    "A not square": (lambda: fast.discretize(_ones(3, 2), _ones(3, 2), 0.1), "A: expected a square"),
    "B rows": (lambda: fast.discretize(-torch.eye(3, dtype=f64), _ones(2, 2), 0.1), "B: expected shape"),
    "diagonal B state axis": (lambda: fast.discretize(-_ones(3), _ones(2, 2), 0.1), "B: its state axis"),
    "A and B precisions": (
        lambda: fast.discretize(-_ones(3, dtype=torch.float32), _ones(3, 2), 0.1),
        "share one precision",
    ),
    "async without gaps": (lambda: fast.discretize(-_ones(3), _ones(3, 2), 0.1, "async"), "integration_timesteps"),
    "async with dense A": (
        lambda: fast.discretize(-torch.eye(3, dtype=f64), _ones(3, 2), 0.1, "async", integration_timesteps=_ones(4)),
        "needs a diagonal A",
    ),
    "zero gap with zoh": (
        lambda: fast.discretize(-_ones(3), _ones(3, 2), 0.1, "zoh", integration_timesteps=torch.zeros(4, dtype=f64)),
        "a zero gap",
    ),
    "negative gap": (
        lambda: fast.discretize(-_ones(3), _ones(3, 2), 0.1, "async", integration_timesteps=-_ones(4)),
        "integration_timesteps: expected values >= 0",
    ),
    "bilinear singular diagonal": (
        lambda: fast.discretize(2 * _ones(3), _ones(3, 2), 1.0, "bilinear"),
        "bilinear: 1 - dt\\*lambda/2 = 0",
    ),
    "bilinear singular dense": (
        lambda: fast.discretize(2 * torch.eye(3, dtype=f64), _ones(3, 2), 1.0, "bilinear"),
        "bilinear: I - dt\\*A/2 is singular",
    ),
    "kernel length zero": (lambda: fast.kernel(_ones(3), _ones(3, 2), _ones(1, 3), 0), "L: expected an integer"),
    "kernel C width": (lambda: fast.kernel(_ones(3), _ones(3, 2), _ones(1, 2), 4), "C: expected shape"),
    "unknown readout": (
        lambda: fast.kernel(_ones(3), _ones(3, 2), _ones(1, 3), 4, readout="imag"),
        "readout: expected one of",
    ),
    "frequencies 2-D": (
        lambda: fast.frequency_response(_ones(3), _ones(3, 2), _ones(1, 3), None, _ones(2, 2)),
        "w: expected a 1-D",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_fast_bad_input_raises_value_error_naming_the_argument(case):
    call, message = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        call()
