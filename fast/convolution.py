"""Causal convolution with an SSM kernel through the FFT, in torch (twin of ``reference.convolution``).

    y_k = sum_{l=0}^{k} K_l u_{k-l}          (K_0 acts on the current input)

Glossary: ``u`` input ``(B, L, H_in)``, ``K`` kernel, ``L_K`` its number of taps, ``n`` the FFT length,
``n_f`` the number of frequency bins (``n // 2 + 1`` for a real FFT, ``n`` for a complex one).

Two layouts of ``K``, as in the reference: depthwise ``(L_K, H)`` (channel h filtered by K[:, h]; S4,
S4D) and full ``(L_K, H_out, H_in)`` (y_k = sum_l K_l @ u_{k-l}; S5, LRU, ...). Both sequences are
zero-padded to n >= L + L_K - 1 so that the circular convolution of the FFT is the linear one
(EQUATIONS.md §0.6); real inputs use ``rfft``/``irfft``, complex ones ``fft``/``ifft``.
"""

from __future__ import annotations

import torch

from fast._checks import common_dtype, resolve_backend, tensor

__all__ = ["fft_conv", "fft_conv_projected"]


def _next_fast_len(n: int) -> int:
    """The smallest m >= n whose prime factors are 2, 3 and 5 (fast FFT sizes)."""
    m = n
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def _prepare(u, K):
    u = tensor(u, "u")
    K = tensor(K, "K")
    if u.ndim != 3 or u.shape[1] == 0:
        raise ValueError(f"u: expected shape (B, L, H) with L >= 1, got {tuple(u.shape)}")
    H_in = u.shape[2]
    if K.ndim == 2:
        if K.shape[1] != H_in:
            raise ValueError(f"K: a depthwise kernel must have shape (L_K, {H_in}), got {tuple(K.shape)}")
    elif K.ndim == 3:
        if K.shape[2] != H_in:
            raise ValueError(f"K: a full kernel must have shape (L_K, H_out, {H_in}), got {tuple(K.shape)}")
    else:
        raise ValueError(f"K: expected shape (L_K, H) or (L_K, H_out, H_in), got {tuple(K.shape)}")
    if K.shape[0] == 0:
        raise ValueError("K: expected at least one kernel tap (L_K >= 1)")
    dtype = common_dtype({"u": u, "K": K}, "fft_conv")
    return u.to(dtype), K[: u.shape[1]].to(dtype)  # taps beyond L never reach an output


def fft_conv(u, K, *, backend: str = "auto"):
    """Causal convolution of ``u (B, L, H_in)`` with ``K`` through the FFT; returns ``(B, L, H_out)``.

    ``u`` and ``K`` share one precision; the output is complex if either is. ``backend``: ``"auto"`` and
    ``"torch"`` run ``torch.fft`` (cuFFT on a GPU, the right tool for a long convolution); there is no
    Triton FFT kernel, so ``"triton"`` raises a ``ValueError`` saying so.
    """
    resolve_backend(backend, "fft_conv", no_kernel="the FFT convolution runs on torch.fft, cuFFT on a GPU")
    u, K = _prepare(u, K)
    L = u.shape[1]
    n = _next_fast_len(L + K.shape[0] - 1)
    if u.is_complex():
        u_f = torch.fft.fft(u, n=n, dim=1)  # (B, n, H_in)
        K_f = torch.fft.fft(K, n=n, dim=0)  # (n, H) or (n, H_out, H_in)
    else:
        u_f = torch.fft.rfft(u, n=n, dim=1)  # (B, n // 2 + 1, H_in)
        K_f = torch.fft.rfft(K, n=n, dim=0)  # (n // 2 + 1, H) or (n // 2 + 1, H_out, H_in)
    if K.ndim == 2:
        y_f = u_f * K_f  # (B, n_f, H)
    else:
        y_f = torch.einsum("foi,bfi->bfo", K_f, u_f)  # (B, n_f, H_out)
    y = torch.fft.ifft(y_f, n=n, dim=1) if u.is_complex() else torch.fft.irfft(y_f, n=n, dim=1)  # (B, n, H_out)
    return y[:, :L]


def fft_conv_projected(u: torch.Tensor, K: torch.Tensor, P_in: torch.Tensor, P_out: torch.Tensor) -> torch.Tensor:
    """``P_out (K * (P_in u))``, the depthwise convolution of G projected channels, with the FFTs taken on
    the H-channel sides: ``(B, L, H_out)`` from ``u (B, L, H_in)``, ``K (L, G)``, ``P_in (G, H_in)`` and
    ``P_out (H_out, G)``, all real and of one precision.

    The FFT is linear over channels, so rfft(P_in u) = P_in rfft(u) and irfft(P_out Y) = P_out irfft(Y):

        y = irfft(P_out (K_hat . (P_in rfft(u))))

    runs H_in + H_out transforms instead of 2 G, at the price of projecting complex spectra (twice the real
    products of projecting the signals). Worth it when G exceeds the channel counts: Centaurus pointwise
    (G = 1024 lanes, H = 128) measured 1.4-1.8x faster than projecting in time; the caller decides. No
    argument checks: an internal helper of the fast models, which pass checked tensors.
    """
    L = u.shape[1]
    n = _next_fast_len(L + K.shape[0] - 1)
    U = torch.fft.rfft(u, n=n, dim=1)  # (B, n_f, H_in)
    K_f = torch.fft.rfft(K, n=n, dim=0)  # (n_f, G)
    # the spectra projected as real and imaginary parts: two real matrix products each way
    V_re, V_im = U.real @ P_in.T, U.imag @ P_in.T  # (B, n_f, G) each
    K_re, K_im = K_f.real.contiguous(), K_f.imag.contiguous()  # (n_f, G) each (strided views multiply slowly)
    Z_re = torch.addcmul(V_re * K_re, V_im, K_im, value=-1.0)  # (B, n_f, G): Re(K_hat . V)
    Z_im = torch.addcmul(V_re * K_im, V_im, K_re)  # (B, n_f, G): Im(K_hat . V)
    Y = torch.complex(Z_re @ P_out.T, Z_im @ P_out.T)  # (B, n_f, H_out)
    return torch.fft.irfft(Y, n=n, dim=1)[:, :L]  # (B, L, H_out)
