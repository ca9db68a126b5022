"""Hypothesis strategies, named by what they draw.

Sizes shrink toward small (L = 1, N = 1), and odd lengths are drawn as often as even ones. Arrays are
filled from a drawn seed with NumPy's generator: hypothesis chooses the shape and the seed (and
shrinks both), NumPy supplies well-spread values fast.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

lengths = st.integers(min_value=1, max_value=33)
small_sizes = st.integers(min_value=1, max_value=5)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def step_sizes(draw, low: float = 1e-3, high: float = 1.0):
    """dt > 0, log-uniform between ``low`` and ``high``."""
    return float(np.exp(draw(st.floats(np.log(low), np.log(high)))))


@st.composite
def stable_diagonal_spectra(draw, n=small_sizes, complex_=None, max_decay: float = 3.0):
    """An (N,) array of continuous-time eigenvalues with Re < 0 (complex unless ``complex_`` is False)."""
    N = draw(n) if not isinstance(n, int) else n
    is_complex = draw(st.booleans()) if complex_ is None else complex_
    rng = np.random.default_rng(draw(seeds))
    re = -rng.uniform(0.01, max_decay, size=N)
    if not is_complex:
        return re
    return re + 1j * rng.uniform(-5.0, 5.0, size=N)


@st.composite
def dense_stable_systems(draw, n=small_sizes, h_in=small_sizes, h_out=small_sizes):
    """A real continuous-time system (A (N, N), B (N, H_in), C (H_out, N), D (H_out, H_in)) with every
    eigenvalue of A in Re < -0.05."""
    N, H_in, H_out = draw(n), draw(h_in), draw(h_out)
    rng = np.random.default_rng(draw(seeds))
    M = rng.normal(size=(N, N))
    A = M - (np.linalg.eigvals(M).real.max() + rng.uniform(0.05, 2.0)) * np.eye(N)
    B = rng.normal(size=(N, H_in))
    C = rng.normal(size=(H_out, N))
    D = rng.normal(size=(H_out, H_in))
    return A, B, C, D


@st.composite
def sequences(draw, batch=st.integers(1, 3), length=lengths, width=small_sizes):
    """A float64 input of shape (B, L, H); each argument is a strategy or an int."""
    shape = tuple(draw(s) if not isinstance(s, int) else s for s in (batch, length, width))
    rng = np.random.default_rng(draw(seeds))
    return rng.normal(size=shape)


@st.composite
def gaps(draw, length: int, batch: int | None = None, allow_zero: bool = False):
    """Event gaps tau >= 0 (or > 0) of shape (L,) or (B, L)."""
    rng = np.random.default_rng(draw(seeds))
    shape = (length,) if batch is None else (batch, length)
    tau = rng.uniform(0.05, 3.0, size=shape)
    if allow_zero and draw(st.booleans()):
        tau[..., rng.integers(length)] = 0.0
    return tau
