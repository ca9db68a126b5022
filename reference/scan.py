"""The diagonal linear recurrence and its parallel (associative) scan.

    x_k = a_k * x_{k-1} + b_k,      k = 0 .. L-1,   x_{-1} = initial_state (0 by default)

Glossary: ``a`` = a-bar_k (the per-step decay, elementwise), ``b`` = B-bar_k u_k (the injected input),
``x`` = the states. Arrays are batch-first ``(B, L, ...)``: axis 1 is time, the trailing axes are
independent lanes (channels, states).

``linear_scan`` is the definition: one step after another. ``associative_scan`` computes the same
thing with the operator of reference/README.md §Scan (S5 and LRU papers),

    (a_i, b_i) • (a_j, b_j) = (a_j a_i,  a_j b_i + b_j)       (i earlier than j),

which is associative, so the inclusive prefix "sum" over time can be taken in log2(L) rounds
(Hillis & Steele's doubling scan): after the round with offset s, element k holds the combination
of elements k-2s+1 .. k. Its second component at the end is x_k.
"""

from __future__ import annotations

import numpy as np

from reference._checks import as_array, broadcast

__all__ = ["linear_scan", "associative_scan"]


def _prepare(a, b, initial_state):
    a = as_array(a, "a")
    b = as_array(b, "b")
    if b.ndim < 2 or b.shape[1] == 0:
        raise ValueError(f"b: expected shape (B, L, ...) with L >= 1, got {b.shape}")
    if a.ndim != b.ndim:
        raise ValueError(f"a: expected {b.ndim} axes to broadcast against b {b.shape}, got shape {a.shape}")
    shape = broadcast({"a": a.shape, "b": b.shape}, "linear_scan")
    if shape != b.shape:
        raise ValueError(f"a: shape {a.shape} would enlarge b {b.shape}; give b its full shape")
    dtype = np.result_type(a, b)
    state_shape = (b.shape[0],) + b.shape[2:]
    if initial_state is None:
        x0 = np.zeros(state_shape, dtype=dtype)
    else:
        x0 = as_array(initial_state, "initial_state")
        if x0.shape != state_shape:
            raise ValueError(f"initial_state: expected shape {state_shape} (B, ...), got {x0.shape}")
        dtype = np.result_type(dtype, x0)
    return np.broadcast_to(a, shape), b, x0.astype(dtype), dtype


def linear_scan(a, b, initial_state=None):
    """The recurrence x_k = a_k * x_{k-1} + b_k, step by step.

    Args:
        a: ``(B, L, ...)`` decays (may have size-1 axes that broadcast against ``b``).
        b: ``(B, L, ...)`` inputs.
        initial_state: ``(B, ...)``, the state before step 0 (zeros if omitted).

    Returns:
        ``(x, final_state)`` with ``x (B, L, ...)`` and ``final_state = x[:, -1]``.
    """
    a, b, x_prev, dtype = _prepare(a, b, initial_state)
    x = np.empty(b.shape, dtype=dtype)  # (B, L, ...)
    for k in range(b.shape[1]):
        x_prev = a[:, k] * x_prev + b[:, k]  # (B, ...)
        x[:, k] = x_prev
    return x, x[:, -1].copy()


def associative_scan(a, b, initial_state=None):
    """The same recurrence as ``linear_scan``, as a log-depth parallel prefix scan (educational).

    The initial state is folded into the first element: b_0 <- a_0 x_{-1} + b_0.
    """
    a, b, x0, dtype = _prepare(a, b, initial_state)
    A = np.array(a, dtype=dtype)  # (B, L, ...) running product of decays
    X = np.array(b, dtype=dtype)  # (B, L, ...) running state
    X[:, 0] = A[:, 0] * x0 + X[:, 0]
    L = b.shape[1]
    offset = 1
    while offset < L:
        # element k absorbs element k - offset (which is earlier): (A', X') • (A, X)
        A_prev, X_prev = A[:, :-offset].copy(), X[:, :-offset].copy()  # (B, L - offset, ...)
        X[:, offset:] = A[:, offset:] * X_prev + X[:, offset:]
        A[:, offset:] = A[:, offset:] * A_prev
        offset *= 2
    return X, X[:, -1].copy()
