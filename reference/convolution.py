"""Causal convolution with an SSM kernel: the convolution mode of an LTI model.

    y_k = sum_{l=0}^{k} K_l u_{k-l}          (K_0 acts on the current input)

Two layouts of the kernel ``K``:

* depthwise ``(L_K, H)``: channel h is filtered by its own scalar kernel K[:, h]  (S4, S4D);
* full ``(L_K, H_out, H_in)``: a matrix kernel, y_k = sum_l K_l @ u_{k-l}          (S5, LRU, ...).

``causal_conv`` is the definition (a double sum). ``fft_conv`` uses the convolution theorem
(reference/README.md §Convolution): zero-pad both sequences to n >= L + L_K - 1 so that the circular convolution
of the FFT equals the linear one, multiply the spectra, transform back, keep the first L samples.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from reference._checks import as_array

__all__ = ["causal_conv", "fft_conv"]


def _prepare(u, K):
    u = as_array(u, "u")
    K = as_array(K, "K")
    if u.ndim != 3 or u.shape[1] == 0:
        raise ValueError(f"u: expected shape (B, L, H) with L >= 1, got {u.shape}")
    H_in = u.shape[2]
    if K.ndim == 2:
        if K.shape[1] != H_in:
            raise ValueError(f"K: a depthwise kernel must have shape (L_K, {H_in}), got {K.shape}")
    elif K.ndim == 3:
        if K.shape[2] != H_in:
            raise ValueError(f"K: a full kernel must have shape (L_K, H_out, {H_in}), got {K.shape}")
    else:
        raise ValueError(f"K: expected shape (L_K, H) or (L_K, H_out, H_in), got {K.shape}")
    if K.shape[0] == 0:
        raise ValueError("K: expected at least one kernel tap (L_K >= 1)")
    return u, K[: u.shape[1]]  # taps beyond L never reach an output


def causal_conv(u, K):
    """Direct causal convolution of ``u (B, L, H_in)`` with ``K``; returns ``(B, L, H_out)``."""
    u, K = _prepare(u, K)
    B, L, _ = u.shape
    H_out = K.shape[1]
    y = np.zeros((B, L, H_out), dtype=np.result_type(u, K))  # (B, L, H_out)
    for lag in range(K.shape[0]):
        shifted = u[:, : L - lag]  # (B, L - lag, H_in): u_{k - lag} for k >= lag
        if K.ndim == 2:
            y[:, lag:] += K[lag] * shifted  # (B, L - lag, H)
        else:
            y[:, lag:] += shifted @ K[lag].T  # (B, L - lag, H_out)
    return y


def fft_conv(u, K):
    """``causal_conv`` through the FFT, padded to at least L + L_K - 1 (>= 2L - 1 when L_K = L)."""
    u, K = _prepare(u, K)
    L = u.shape[1]
    n = scipy.fft.next_fast_len(L + K.shape[0] - 1)
    transform, inverse = (scipy.fft.fft, scipy.fft.ifft)
    real = not (np.iscomplexobj(u) or np.iscomplexobj(K))
    if real:
        transform, inverse = scipy.fft.rfft, scipy.fft.irfft
    u_f = transform(u, n=n, axis=1)  # (B, n_f, H_in)
    K_f = transform(K, n=n, axis=0)  # (n_f, H) or (n_f, H_out, H_in)
    if K.ndim == 2:
        y_f = u_f * K_f  # (B, n_f, H)
    else:
        y_f = np.einsum("foi,bfi->bfo", K_f, u_f)  # (B, n_f, H_out)
    y = inverse(y_f, n=n, axis=1)  # (B, n, H_out)
    return y[:, :L]
