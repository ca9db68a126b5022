"""Initializations shared by several models: HiPPO-LegS, its normal-plus-low-rank diagonalization,
step sizes and the inverse softplus. Everything is float64 / complex128 and done once.

Glossary (reference/README.md §HiPPO):
    A_legs, B_legs   HiPPO-LegS matrices (continuous time)
    P                the rank-1 correction: S = A_legs + P P^T is normal (-1/2 I + skew-symmetric)
    Lambda           eigenvalues of S: -1/2 + i * Im, in conjugate pairs
    V                unitary eigenvectors of S;  B_tilde = V^* B_legs, P_tilde = V^* P

Sources: Gu et al., "Efficiently Modeling Long Sequences with Structured State Spaces" (S4), §3 and
Appendix C; official code state-spaces/s4 ``transition('legs')``, ``rank_correction``, ``nplr``;
lindermanlab/S5 ``make_DPLR_HiPPO`` (the same construction).
"""

from __future__ import annotations

import numpy as np

from reference._checks import positive_int

__all__ = ["hippo_legs", "nplr_legs", "log_uniform", "softplus", "softplus_inverse"]


def hippo_legs(N: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HiPPO-LegS: A (N, N), B (N,), and the rank-1 correction P (N,).

    A_nk = -sqrt(2n+1) sqrt(2k+1) for n > k, -(n+1) for n = k, 0 for n < k;  B_n = sqrt(2n+1);
    P_n = sqrt(n + 1/2), so that A + P P^T = -1/2 I + (skew-symmetric).
    """
    N = positive_int(N, "N")
    q = np.sqrt(2.0 * np.arange(N) + 1.0)  # (N,)
    A = -np.tril(np.outer(q, q), -1) - np.diag(np.arange(N) + 1.0)  # (N, N)
    B = q.copy()  # (N,)
    P = np.sqrt(np.arange(N) + 0.5)  # (N,)
    return A, B, P


def nplr_legs(N: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Diagonalize the normal part of HiPPO-LegS: A_legs = V (diag(Lambda) - P_t P_t^*) V^*.

    Returns all N modes, sorted by imaginary part (ascending), so that the first N/2 are the
    conjugate-pair representatives with Im <= 0 that S4 and S5 keep:
        Lambda (N,), V (N, N) unitary, B_tilde = V^* B (N,), P_tilde = V^* P (N,).
    The real part is the mean of diag(S) = -1/2; the imaginary part comes from the Hermitian
    eigenproblem of -i S (eigh reads one triangle, so it sees only the skew part).
    """
    A, B, P = hippo_legs(N)
    S = A + np.outer(P, P)  # (N, N): -1/2 I + skew
    lambda_re = np.mean(np.diag(S)) * np.ones(N)  # (N,)
    lambda_im, V = np.linalg.eigh(-1j * S)  # (N,), (N, N); ascending imaginary parts
    Lambda = lambda_re + 1j * lambda_im  # (N,)
    B_tilde = V.conj().T @ B  # (N,)
    P_tilde = V.conj().T @ P  # (N,)
    return Lambda, V, B_tilde, P_tilde


def log_uniform(rng: np.random.Generator, low: float, high: float, size) -> np.ndarray:
    """Samples with log uniform on [log low, log high] (the dt init of S4, S4D, S5, Mamba)."""
    return np.exp(rng.uniform(np.log(low), np.log(high), size=size))


def softplus(x):
    """log(1 + e^x), computed without overflow."""
    return np.logaddexp(0.0, x)


def softplus_inverse(y):
    """The inverse of softplus for y > 0: y + log(-expm1(-y)) (the stable form Mamba's code uses)."""
    y = np.asarray(y, dtype=np.float64)
    if np.any(y <= 0):
        raise ValueError("y: softplus_inverse needs values > 0")
    return y + np.log(-np.expm1(-y))
