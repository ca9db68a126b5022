"""linear_scan (the definition) == associative_scan == scipy.signal.lfilter; causal_conv == fft_conv ==
lfilter (reference/README.md §Scan, §Convolution)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from hypothesis import given
from hypothesis import strategies as st

from equivalence_tests.strategies import lengths, seeds
from equivalence_tests.tolerances import assert_close
from reference import associative_scan, causal_conv, fft_conv, linear_scan


def _decays_and_inputs(seed, B, L, N, complex_):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.2, 0.99, size=(B, L, N))
    b = rng.normal(size=(B, L, N))
    if complex_:
        a = a * np.exp(1j * rng.uniform(-np.pi, np.pi, size=(B, L, N)))
        b = b + 1j * rng.normal(size=(B, L, N))
    x0 = rng.normal(size=(B, N)) + (1j * rng.normal(size=(B, N)) if complex_ else 0)
    return a, b, x0


@given(seeds, st.integers(1, 3), lengths, st.integers(1, 4), st.booleans(), st.booleans())
def test_associative_scan_equals_linear_scan(seed, B, L, N, complex_, with_state):
    a, b, x0 = _decays_and_inputs(seed, B, L, N, complex_)
    x0 = x0 if with_state else None
    x_seq, final_seq = linear_scan(a, b, x0)
    x_par, final_par = associative_scan(a, b, x0)
    assert_close(x_par, x_seq, "float64", "states")
    assert_close(final_par, final_seq, "float64", "final state")
    assert_close(final_seq, x_seq[:, -1], "float64", "final state is the last state")


@given(seeds, lengths, st.floats(-0.99, 0.99))
def test_linear_scan_with_constant_decay_matches_lfilter(seed, L, a):
    # x_k = a x_{k-1} + b_k is the IIR filter 1 / (1 - a z^-1).
    b = np.random.default_rng(seed).normal(size=(2, L, 1))
    x, _ = linear_scan(np.full_like(b, a), b)
    expected = scipy.signal.lfilter([1.0], [1.0, -a], b, axis=1)
    assert_close(x, expected, "float64", "states")


@given(seeds, lengths)
def test_linear_scan_matches_closed_form_with_products(seed, L):
    # x_k = prod_{i<=k} a_i x_{-1} + sum_{j<=k} prod_{j<i<=k} a_i b_j, summed term by term.
    a, b, x0 = _decays_and_inputs(seed, 1, L, 2, True)
    x, _ = linear_scan(a, b, x0)
    for k in range(L):
        expected = np.prod(a[:, : k + 1], axis=1) * x0
        for j in range(k + 1):
            expected = expected + np.prod(a[:, j + 1 : k + 1], axis=1) * b[:, j]
        assert_close(x[:, k], expected, "float64", f"x_{k}")


@given(seeds, st.integers(2, 33), st.data())
def test_chunked_scan_with_state_carried_equals_one_shot(seed, L, data):
    split = data.draw(st.integers(1, L - 1))
    a, b, x0 = _decays_and_inputs(seed, 2, L, 3, True)
    x_full, final_full = linear_scan(a, b, x0)
    for scan in (linear_scan, associative_scan):
        x1, state = scan(a[:, :split], b[:, :split], x0)
        x2, final = scan(a[:, split:], b[:, split:], state)
        assert_close(np.concatenate([x1, x2], axis=1), x_full, "float64", f"{scan.__name__} chunked")
        assert_close(final, final_full, "float64", "final state")


def test_scan_bad_input_raises_value_error():
    a = np.ones((2, 5, 3))
    with pytest.raises(ValueError, match="b"):
        linear_scan(a, np.ones((2, 0, 3)))
    with pytest.raises(ValueError, match="do not broadcast"):
        linear_scan(np.ones((2, 5, 4)), np.ones((2, 5, 3)))
    with pytest.raises(ValueError, match="initial_state"):
        associative_scan(a, a, np.ones((2, 4)))
    with pytest.raises(ValueError, match="a"):
        linear_scan(np.ones((5, 3)), a)
    with pytest.raises(ValueError, match="NaN"):
        linear_scan(a, np.full((2, 5, 3), np.nan))


@given(seeds, st.integers(1, 3), lengths, st.integers(1, 4), st.booleans())
def test_fft_conv_equals_direct_conv_depthwise(seed, B, L, H, complex_):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(B, L, H))
    K = rng.normal(size=(L, H)) + (1j * rng.normal(size=(L, H)) if complex_ else 0)
    assert_close(fft_conv(u, K), causal_conv(u, K), "float64", "depthwise conv")


@given(seeds, lengths, st.integers(1, 40), st.integers(1, 3), st.integers(1, 3))
def test_fft_conv_equals_direct_conv_full_matrix_kernel(seed, L, L_K, H_in, H_out):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(2, L, H_in))
    K = rng.normal(size=(L_K, H_out, H_in))
    assert_close(fft_conv(u, K), causal_conv(u, K), "float64", "full conv")


@given(seeds, lengths, st.floats(-0.95, 0.95), st.floats(-2, 2), st.floats(-2, 2))
def test_single_mode_kernel_conv_matches_lfilter(seed, L, a, b, c):
    # One real mode: K_l = c a^l b, so K * u is the IIR filter c b / (1 - a z^-1).
    u = np.random.default_rng(seed).normal(size=(1, L, 1))
    K = (c * b * a ** np.arange(L))[:, None]  # (L, 1)
    expected = scipy.signal.lfilter([c * b], [1.0, -a], u, axis=1)
    assert_close(fft_conv(u, K), expected, "float64", "fft conv")
    assert_close(causal_conv(u, K), expected, "float64", "direct conv")


@given(seeds, lengths, st.integers(1, 3))
def test_direct_conv_matches_numpy_convolve(seed, L, H):
    rng = np.random.default_rng(seed)
    u, K = rng.normal(size=(1, L, H)), rng.normal(size=(L, H))
    expected = np.stack([np.convolve(u[0, :, h], K[:, h])[:L] for h in range(H)], axis=-1)[None]
    assert_close(causal_conv(u, K), expected, "float64", "conv")


def test_conv_bad_input_raises_value_error():
    u = np.ones((1, 4, 2))
    with pytest.raises(ValueError, match="u"):
        fft_conv(np.ones((4, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="K"):
        fft_conv(u, np.ones((4, 3)))
    with pytest.raises(ValueError, match="K"):
        causal_conv(u, np.ones((4, 1, 3)))
