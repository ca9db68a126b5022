"""Responses of a discrete LTI system in torch (twin of the functions of ``reference.response``).

    x_k = A_bar x_{k-1} + B_bar u_k,   y_k = read(C x_k) + D u_k,   x_{-1} = 0.

Glossary: ``K`` kernel, K_l = read(C A_bar^l B_bar) for l = 0..L-1 (K_0 = C B_bar); ``S`` state size;
``w`` angular frequency omega in radians per sample; ``z = e^{i omega}``; ``readout`` as in the
reference: ``"plain"`` (C x), ``"re"`` (Re C x: LRU, Centaurus), ``"2re"`` (2 Re C x: S4, S4D, S5).

* kernel:             K_l = read(C A_bar^l B_bar)
* impulse response:   h_l = K_l + D delta_l
* frequency response: H(e^{iw}) = read-out of C (I - e^{-iw} A_bar)^{-1} B_bar, plus D

How the powers A_bar^l are formed (the reference multiplies L times in a loop):

* diagonal A_bar ``(S,)``: ``torch.cumprod`` of A_bar repeated, a direct product (never exp(l log a),
  which is wrong on the branch cut and loses accuracy for |a| near 0);
* dense A_bar ``(S, S)``: doubling, [A^0 B .. A^{m-1} B] -> then append A^m [A^0 B .. A^{m-1} B],
  m -> 2m: log2(L) matrix products instead of L.

For a real-part readout the frequency response of Re(g_l) is (G(w) + conj(G(-w))) / 2, as in the
reference. All tensors of one call share a precision; everything is differentiable.
"""

from __future__ import annotations

import torch

from fast._checks import common_dtype, complex_dtype, finite, positive_int, real_like, tensor

__all__ = ["READOUTS", "kernel", "impulse_response", "frequency_response"]

READOUTS = {"plain": None, "re": 1.0, "2re": 2.0}


def _check_system(A_bar, B_bar, C, D, readout: str, what: str):
    A_bar = tensor(A_bar, "A_bar")
    B_bar = tensor(B_bar, "B_bar")
    C = tensor(C, "C")
    if A_bar.ndim not in (1, 2) or (A_bar.ndim == 2 and A_bar.shape[0] != A_bar.shape[1]):
        raise ValueError(f"A_bar: expected shape (S,) or (S, S), got {tuple(A_bar.shape)}")
    S = A_bar.shape[0]
    if B_bar.ndim != 2 or B_bar.shape[0] != S:
        raise ValueError(f"B_bar: expected shape ({S}, H_in), got {tuple(B_bar.shape)}")
    if C.ndim != 2 or C.shape[1] != S:
        raise ValueError(f"C: expected shape (H_out, {S}), got {tuple(C.shape)}")
    if D is not None:
        D = tensor(D, "D", complex_ok=False)
        if tuple(D.shape) != (C.shape[0], B_bar.shape[1]):
            raise ValueError(f"D: expected shape {(C.shape[0], B_bar.shape[1])} (H_out, H_in), got {tuple(D.shape)}")
    if readout not in READOUTS:
        raise ValueError(f"readout: expected one of {list(READOUTS)}, got {readout!r}")
    dtype = common_dtype({"A_bar": A_bar, "B_bar": B_bar, "C": C, "D": D}, what)
    return A_bar.to(dtype), B_bar.to(dtype), C.to(dtype), D, dtype


def _read(Cx: torch.Tensor, readout: str) -> torch.Tensor:
    scale = READOUTS[readout]
    return Cx if scale is None else scale * Cx.real


def _powers_times(A_bar: torch.Tensor, B_bar: torch.Tensor, L: int) -> torch.Tensor:
    """A_bar^l B_bar for l = 0..L-1: ``(L, S, H_in)``."""
    if A_bar.ndim == 1:
        powers = torch.cumprod(A_bar.expand(L - 1, -1), dim=0)  # (L - 1, S): a^1 .. a^{L-1}
        powers = torch.cat([torch.ones_like(A_bar)[None], powers], dim=0)  # (L, S)
        return powers[:, :, None] * B_bar  # (L, S, H_in)
    M = B_bar[None]  # (m, S, H_in) with m = 1: A^0 B
    A_m = A_bar  # (S, S): A^m
    while M.shape[0] < L:
        M = torch.cat([M, A_m @ M], dim=0)  # (2m, S, H_in)
        A_m = A_m @ A_m  # (S, S)
    return M[:L]


def kernel(A_bar, B_bar, C, L: int, *, readout: str = "plain") -> torch.Tensor:
    """K_l = read(C A_bar^l B_bar) for l = 0..L-1; ``(L, H_out, H_in)``."""
    L = positive_int(L, "L")
    A_bar, B_bar, C, _, _ = _check_system(A_bar, B_bar, C, None, readout, "kernel")
    M = _powers_times(A_bar, B_bar, L)  # (L, S, H_in)
    return _read(torch.einsum("os,lsi->loi", C, M), readout)  # (L, H_out, H_in)


def impulse_response(A_bar, B_bar, C, D, L: int, *, readout: str = "plain") -> torch.Tensor:
    """h_l = K_l + D delta_l; ``(L, H_out, H_in)``. ``D`` may be ``None`` (no feed-through)."""
    L = positive_int(L, "L")
    A_bar, B_bar, C, D, _ = _check_system(A_bar, B_bar, C, D, readout, "impulse_response")
    h = kernel(A_bar, B_bar, C, L, readout=readout)  # (L, H_out, H_in)
    if D is None:
        return h
    return torch.cat([h[:1] + D, h[1:]], dim=0)  # (L, H_out, H_in)


def _transfer(A_bar: torch.Tensor, B_bar: torch.Tensor, C: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """C (I - z^{-1} A_bar)^{-1} B_bar for each z; ``(W, H_out, H_in)``."""
    if A_bar.ndim == 1:
        X = B_bar[None] / (1.0 - A_bar[None] / z[:, None])[:, :, None]  # (W, S, H_in)
    else:
        S = A_bar.shape[0]
        eye = torch.eye(S, dtype=z.dtype, device=z.device)  # (S, S)
        left = eye - A_bar[None] / z[:, None, None]  # (W, S, S)
        X = torch.linalg.solve(left, B_bar.to(z.dtype).expand(z.shape[0], -1, -1))  # (W, S, H_in)
    return torch.einsum("os,wsi->woi", C.to(z.dtype), X)  # (W, H_out, H_in)


def frequency_response(A_bar, B_bar, C, D, w, *, readout: str = "plain") -> torch.Tensor:
    """C (I - e^{-iw} A_bar)^{-1} B_bar + D in the ML convention; ``(len(w), H_out, H_in)``, complex.

    ``w`` is a real tensor (or a NumPy array / list) of frequencies in radians per sample; ``D`` may be
    ``None``.
    """
    A_bar, B_bar, C, D, dtype = _check_system(A_bar, B_bar, C, D, readout, "frequency_response")
    w = finite(real_like(w, "w", dtype, A_bar.device), "w")
    if w.ndim != 1:
        raise ValueError(f"w: expected a 1-D array of frequencies, got shape {tuple(w.shape)}")
    z = torch.polar(torch.ones_like(w), w)  # (W,): e^{i w}
    z = z.to(complex_dtype(dtype))
    G = _transfer(A_bar, B_bar, C, z)  # (W, H_out, H_in)
    scale = READOUTS[readout]
    if scale is not None:
        G = scale * 0.5 * (G + _transfer(A_bar, B_bar, C, z.conj()).conj())  # (W, H_out, H_in)
    return G if D is None else G + D
