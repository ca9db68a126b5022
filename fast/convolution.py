"""Causal convolution with an SSM kernel through the FFT, in torch (twin of ``reference.convolution``).

    y_k = sum_{l=0}^{k} K_l u_{k-l}          (K_0 acts on the current input)

Glossary: ``u`` input ``(B, L, H_in)``, ``K`` kernel, ``L_K`` its number of taps, ``n`` the FFT length,
``n_f`` the number of frequency bins (``n // 2 + 1`` for a real FFT, ``n`` for a complex one).

Two layouts of ``K``, as in the reference: depthwise ``(L_K, H)`` (channel h filtered by K[:, h]; S4,
S4D) and full ``(L_K, H_out, H_in)`` (y_k = sum_l K_l @ u_{k-l}; S5, LRU, ...). Both sequences are
zero-padded to n >= L + L_K - 1 so that the circular convolution of the FFT is the linear one
(reference/README.md §Convolution); real inputs use ``rfft``/``irfft``, complex ones ``fft``/``ifft``.

``fft_conv`` is the checked public entry; the fast models call its pieces (``fft_length``, the kernel
spectra, ``conv_depthwise``, ``conv_full``, ``conv_projected``) so that eval mode can cache a kernel's
spectrum instead of transforming the kernel in every call.
"""

from __future__ import annotations

import torch

from fast._checks import HALF, common_dtype, no_half, records_grad, resolve_backend, tensor, values_ok

__all__ = [
    "fft_conv",
    "fft_length",
    "depthwise_spectrum",
    "full_spectrum",
    "conv_depthwise",
    "conv_full",
    "conv_projected",
]


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
    if u.ndim != 3 or 0 in u.shape:
        raise ValueError(f"u: expected shape (B, L, H) with B, L, H >= 1, got {tuple(u.shape)}")
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
    if dtype == torch.complex32:
        no_half(dtype, "fft_conv with complex inputs")
    values_ok({"u": u, "K": K})  # while fast.validation is on
    return u.to(dtype), K[: u.shape[1]].to(dtype)  # taps beyond L never reach an output


def fft_conv(u, K, *, backend: str = "auto"):
    """Causal convolution of ``u (B, L, H_in)`` with ``K`` through the FFT; returns ``(B, L, H_out)``.

    ``u`` and ``K`` share one precision; the output is complex if either is. Real float16 / bfloat16 inputs are
    transformed in float32 (torch's FFT has no half-precision CPU kernel) and the output cast back; complex half
    precision is refused. ``backend``: ``"auto"`` and
    ``"torch"`` run ``torch.fft`` (cuFFT on a GPU, the right tool for a long convolution); there is no
    Triton FFT kernel, so ``"triton"`` raises a ``ValueError`` saying so.
    """
    resolve_backend(backend, "fft_conv", no_kernel="the FFT convolution runs on torch.fft, cuFFT on a GPU")
    u, K = _prepare(u, K)
    if u.dtype in HALF:
        return fft_conv(u.float(), K.float(), backend=backend).to(u.dtype)
    L = u.shape[1]
    n = fft_length(L, K.shape[0])
    if K.ndim == 2:
        return conv_depthwise(u, depthwise_spectrum(K.T, n), n).contiguous()  # (B, L, H)
    return conv_full(u, full_spectrum(K, n), n)  # (B, L, H_out)


# ------------------------------------------------------------------------------------------------
# The pieces, for the fast models (which cache a kernel's spectrum in eval mode). No argument checks:
# the models pass checked tensors of one precision, a real or a complex u with a spectrum of its kind.
# ------------------------------------------------------------------------------------------------


_FREQUENCY_BLOCK = 2**20  # conv_projected: complex lane values per frequency block (8 MiB in complex64)


def fft_length(L: int, taps: int) -> int:
    """n: the FFT length of a causal convolution of L samples with ``taps`` kernel taps (n >= L + taps - 1)."""
    return _next_fast_len(L + taps - 1)


def _fft(x: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    return torch.fft.fft(x, n=n, dim=dim) if x.is_complex() else torch.fft.rfft(x, n=n, dim=dim)


def _ifft(Y: torch.Tensor, n: int, dim: int, complex_signal: bool) -> torch.Tensor:
    """The inverse of ``_fft``: a complex signal from its full spectrum, a real one from its half."""
    return torch.fft.ifft(Y, n=n, dim=dim) if complex_signal else torch.fft.irfft(Y, n=n, dim=dim)


def depthwise_spectrum(k: torch.Tensor, n: int) -> torch.Tensor:
    """The spectrum of C channel kernels stored taps last, ``k (C, L_K)`` -> ``(C, n_f)``."""
    return _fft(k, n, -1)


def full_spectrum(K: torch.Tensor, n: int) -> torch.Tensor:
    """The spectrum of a full kernel ``K (L_K, H_out, H_in)`` -> ``(n_f, H_out, H_in)``."""
    return _fft(K, n, 0)


def conv_depthwise(u: torch.Tensor, k_f: torch.Tensor, n: int) -> torch.Tensor:
    """Channel c of ``u (B, L, C)`` filtered by the kernel whose spectrum is ``k_f[c]`` (``(C, n_f)``, from
    ``depthwise_spectrum``): ``(B, L, C)``, a transposed view of a channels-first result (callers add
    their skip term into a fresh contiguous tensor, or call ``.contiguous()``).

    The transforms run along the last axis of the channels-first view ``u (B, C, L)``: torch's FFT along
    a middle axis first copies the signal into that layout and the result back (profiled: the round trip
    costs about 1.4x a last-axis one at B = 8, L = 1024, C = 128)."""
    L = u.shape[1]
    U = _fft(u.transpose(1, 2), n, -1)  # (B, C, n_f)
    Y = U * k_f if records_grad(U, k_f) else U.mul_(k_f)  # (B, C, n_f)
    y = _ifft(Y, n, -1, u.is_complex())  # (B, C, n)
    return y[..., :L].transpose(1, 2)  # (B, L, C)


def conv_full(u: torch.Tensor, K_f: torch.Tensor, n: int) -> torch.Tensor:
    """y_k = sum_l K_l @ u_{k-l} with the spectrum ``K_f (n_f, H_out, H_in)`` (``full_spectrum``): ``(B, L, H_out)``."""
    L = u.shape[1]
    U = _fft(u, n, 1)  # (B, n_f, H_in)
    Y = torch.einsum("foi,bfi->bfo", K_f, U)  # (B, n_f, H_out)
    y = _ifft(Y, n, 1, u.is_complex())  # (B, n, H_out)
    return y[:, :L]


def conv_projected(u: torch.Tensor, k_f: torch.Tensor, n: int, P_in: torch.Tensor, P_out: torch.Tensor) -> torch.Tensor:
    """``P_out (k * (P_in u))``, the depthwise convolution of G projected channels, with the FFTs taken on
    the H-channel sides: ``(B, L, H_out)`` (a transposed view, as ``conv_depthwise``) from ``u (B, L, H_in)``,
    the spectrum ``k_f (G, n_f)`` of the G kernels, ``P_in (G, H_in)`` and ``P_out (H_out, G)``, all real.

    The FFT is linear over channels, so rfft(P_in u) = P_in rfft(u) and irfft(P_out Y) = P_out irfft(Y):

        y = irfft(P_out (k_hat . (P_in rfft(u))))

    runs H_in + H_out transforms instead of 2 G, at the price of projecting complex spectra (twice the real
    products of projecting the signals). Worth it when G exceeds the channel counts (Centaurus pointwise:
    G = 1024 lanes, H = 128); the caller decides. A real matrix acts on a complex spectrum as on its
    interleaved real and imaginary parts, so each projection is a real batched product over ``(H, 2 m)``
    (``bmm`` on the broadcast matrix: ``matmul`` would fold the batch by transposing copies).
    The frequencies go in blocks of m (``_FREQUENCY_BLOCK`` G-lane values per batch row at most): the
    ``(B, G, m)`` lane spectra of one block are projected out before the next block's are made, instead of
    writing and reading all ``(B, G, n_f)`` of them (measured about 2x faster at B = 8, L = 1024, G = 1024).
    """
    B, L = u.shape[:2]
    G = P_in.shape[0]
    U = torch.view_as_real(torch.fft.rfft(u.transpose(1, 2), n=n, dim=-1))  # (B, H_in, n_f, 2)
    n_f = U.shape[2]
    m = max(1, _FREQUENCY_BLOCK // (B * G))
    P_in, P_out = P_in.expand(B, *P_in.shape), P_out.expand(B, *P_out.shape)  # (B, G, H_in), (B, H_out, G)
    blocks = []
    for f0 in range(0, n_f, m):
        U_blk = U[:, :, f0 : f0 + m].flatten(-2)  # (B, H_in, 2 m'): parts interleaved, m' <= m
        V = torch.view_as_complex(torch.bmm(P_in, U_blk).unflatten(-1, (-1, 2)))  # (B, G, m')
        k_blk = k_f[:, f0 : f0 + m]  # (G, m')
        V = V * k_blk if records_grad(V, k_blk) else V.mul_(k_blk)  # (B, G, m')
        blocks.append(torch.bmm(P_out, torch.view_as_real(V).flatten(-2)))  # (B, H_out, 2 m')
    Y = torch.view_as_complex(torch.cat(blocks, dim=-1).unflatten(-1, (n_f, 2)))  # (B, H_out, n_f)
    y = torch.fft.irfft(Y, n=n, dim=-1)  # (B, H_out, n)
    return y[..., :L].transpose(1, 2)  # (B, L, H_out)
