"""The selective scan of Mamba ("S6"): a bank of diagonal SSMs whose step, input and output matrices change
with every token.

For every batch element b, channel d and state n (D channels, N states per channel):

    A_bar[t, d, n], B_bar[t, d, n] = discretize(A[d, n], B[t, n], dt[t, d])     (any rule of §1)
    x[t, d, n] = A_bar[t, d, n] * x[t-1, d, n] + B_bar[t, d, n] * u[t, d]
    y[t, d]    = sum_n C[t, n] x[t, d, n] + D[d] u[t, d]
    y[t, d]   *= SiLU(z[t, d])                                                    (when z is given)

Glossary (code name -> symbol in Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces", arXiv 2312.00752, §3.2 and Algorithm 2; reference/README.md §Mamba):

    u       x, the input of the SSM (after Mamba's convolution)            (B, L, D)
    dt      Delta = softplus(s_Delta(x) + bias), used here as given       (B, L, D)
    A       A, one real diagonal per channel (S4D-real: A = -exp(A_log))  (D, N)
    B, C    B = s_B(x), C = s_C(x): shared by all channels of a token     (B, L, N)
    D       the skip ("D") term                                           (D,)
    z       the gate branch                                               (B, L, D)
    A_bar, B_bar   discretized A and B (``reference.discretize_diagonal``)
    tau     integration_timesteps: the gap before each event (reference/README.md §async)

Discretization. The official code (state-spaces/mamba ``selective_scan_ref``) uses ``method="mamba"``:
A_bar = exp(dt A), B_bar = dt B (the paper's simplification of zero-order hold). Any rule of
``reference.DISCRETIZATIONS`` can be asked for. With ``integration_timesteps`` the step of token t becomes
dt[t] * tau[t]; under "async" only the state decay uses it and the input keeps the nominal step dt[t]
(reference/README.md §async). Where lrnnx's event mode differs (a separate, input-independent step for A), see
reference/README.md §Other-libraries: the reference does not copy it.

Algorithm: discretize every (token, channel, state) at once with ``discretize_diagonal`` (the systems
broadcast as Lambda (1, 1, D, N) against dt (B, L, D)), then run ``linear_scan`` over time.
Only a real A is supported (Mamba's default; the complex variant is not implemented).
"""

from __future__ import annotations

import numpy as np

from reference._checks import as_array
from reference.discretization import DISCRETIZATIONS, discretize_diagonal
from reference.models.ltv._base import check_timesteps, silu
from reference.scan import linear_scan

__all__ = ["selective_scan"]


def _check(name: str, x, shape: tuple, labels: str, *, complex_ok=False) -> np.ndarray:
    arr = as_array(x, name, complex_ok=complex_ok)
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape} {labels}, got {arr.shape}")
    return arr


def selective_scan(
    u,
    dt,
    A,
    B,
    C,
    D=None,
    z=None,
    *,
    method="mamba",
    integration_timesteps=None,
    initial_state=None,
    return_state=False,
):
    """Run Mamba's selective SSM (module docstring) over a batch of sequences.

    Args:
        u: ``(B, L, D)`` input.
        dt: ``(B, L, D)`` steps > 0, used as given (softplus and bias belong to the layer).
        A: ``(D, N)`` real continuous-time eigenvalues.
        B, C: ``(B, L, N)`` input and output matrices of each token.
        D: ``(D,)`` skip, or None.
        z: ``(B, L, D)`` gate (the output is multiplied by SiLU(z)), or None.
        method: a name in ``reference.DISCRETIZATIONS``.
        integration_timesteps: event gaps ``(L,)`` or ``(B, L)``, >= 0 (> 0 for zoh, bilinear, mamba);
            required by ``"async"``.
        initial_state: ``(B, D, N)`` state before the first token (zeros when omitted).
        return_state: also return the final state.

    Returns:
        ``y (B, L, D)``, or ``(y, state (B, D, N))`` when ``return_state``.
    """
    u = as_array(u, "u", complex_ok=False)
    if u.ndim != 3 or u.shape[1] == 0 or u.shape[2] == 0:
        raise ValueError(f"u: expected shape (B, L, D) with L >= 1, got {u.shape}")
    Bsz, L, Dch = u.shape
    A = as_array(A, "A", complex_ok=False)
    if A.ndim != 2 or A.shape[0] != Dch or A.shape[1] == 0:
        raise ValueError(f"A: expected shape ({Dch}, N) (D, N) with N >= 1, got {A.shape}")
    N = A.shape[1]
    dt = _check("dt", dt, (Bsz, L, Dch), "(B, L, D)")
    B = _check("B", B, (Bsz, L, N), "(B, L, N)")
    C = _check("C", C, (Bsz, L, N), "(B, L, N)")
    D = None if D is None else _check("D", D, (Dch,), "(D,)")
    z = None if z is None else _check("z", z, (Bsz, L, Dch), "(B, L, D)")
    if method not in DISCRETIZATIONS:
        raise ValueError(f"method: unknown discretization {method!r}; expected one of {DISCRETIZATIONS}")
    # shape and sign here; discretize_diagonal refuses zero gaps where the rule cannot take them
    tau = check_timesteps(integration_timesteps, Bsz, L, allow_zero=True)
    x0 = None if initial_state is None else _check("initial_state", initial_state, (Bsz, Dch, N), "(B, D, N)")

    A_bar, B_bar = discretize_diagonal(
        A[None, None],  # (1, 1, D, N)
        B[:, :, None, :],  # (B, L, 1, N)
        dt,  # (B, L, D): one step per (token, channel) system
        method,
        integration_timesteps=None if tau is None else tau[:, :, None],  # (B, L, 1)
        aligned_timesteps=True,
    )  # A_bar, B_bar: (B, L, D, N)
    Bu = B_bar * u[..., None]  # (B, L, D, N)
    x, final_state = linear_scan(A_bar, Bu, x0)  # (B, L, D, N), (B, D, N)
    y = np.einsum("bldn,bln->bld", x, C)  # (B, L, D)
    if D is not None:
        y = y + D * u  # (B, L, D)
    if z is not None:
        y = y * silu(z)  # (B, L, D)
    return (y, final_state) if return_state else y
