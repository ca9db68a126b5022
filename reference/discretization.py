"""Discretization: from a continuous-time system x'(t) = A x(t) + B u(t) to the discrete recurrence

    x_k = A_bar x_{k-1} + B_bar u_k          (x_{-1} = 0; the input enters before the readout)

Glossary (code name -> symbol in the papers and in reference/README.md §zoh to §async):

    A, Lambda   A (dense, N x N) or its eigenvalues lambda (diagonal A = diag(Lambda))
    B           B, the input matrix (N, H) or one input vector (N,)
    dt          Delta, the step size (scalar, one per system, or one per state)
    A_bar       A-bar = the state transition of one step; a_bar for a diagonal A
    gamma       gamma-bar, the input normalizer of a diagonal system: B_bar = gamma * B
    tau         integration_timesteps, the per-event gap of an event stream (reference/README.md §async)

The rules, for one eigenvalue lambda and step Delta (dense A: the same with matrix functions):

    method     a_bar                          gamma (B_bar = gamma B)       source
    zoh        exp(Delta lambda)              (exp(Delta lambda) - 1)/lambda  exact for piecewise-constant u
    bilinear   (1 + Delta lambda/2)           Delta / (1 - Delta lambda/2)  Tustin; S4 eq. (3)
               / (1 - Delta lambda/2)
    dirac      exp(Delta lambda)              1                             u is a train of impulses
    mamba      exp(Delta lambda)              Delta                         Mamba's simplification of zoh
    async      exp(Delta tau_k lambda)        (exp(Delta lambda) - 1)/lambda  event streams (EvSSM, S7)

``integration_timesteps`` (tau, one gap per event) turns the step of every rule into Delta * tau_k.
``async`` is the exception the event-SSM papers introduce: the state decays over the real elapsed
time Delta * tau_k, but each event injects one nominal step of input (gamma uses Delta alone).

A per-state step ``dt`` of shape (N,) means that state n runs on its own clock: the continuous
system is rescaled row by row, x_n' = dt_n (A x + B u)_n, and then discretized with a unit step.
For a diagonal A this is the usual elementwise formula with Delta = dt_n.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.linalg

from reference._checks import as_array, broadcast, nonnegative, positive

__all__ = [
    "DISCRETIZATIONS",
    "TIME_VARYING_ONLY",
    "discretize",
    "discretize_diagonal",
    "custom_discretizations",
    "register_discretization",
    "unregister_discretization",
]

#: The names ``discretize`` accepts. ``register_discretization`` appends to this list.
DISCRETIZATIONS: list[str] = ["zoh", "bilinear", "dirac", "mamba", "async"]

#: Methods that only make sense for a time-varying (event-driven) system: an LTI model cannot use them.
TIME_VARYING_ONLY: set[str] = {"async"}

# Methods whose input matrix vanishes with the step: a zero event gap would silently drop the event.
_ZERO_GAP_DROPS_INPUT = {"zoh", "bilinear", "mamba"}

_CUSTOM: dict[str, Callable] = {}


def register_discretization(name: str, fn: Callable, *, time_varying_only: bool = False) -> None:
    """Add a discretization ``fn(A, B, dt, *, integration_timesteps=None) -> (A_bar, B_bar)``.

    ``discretize`` and ``discretize_diagonal`` hand the validated arrays to ``fn`` unchanged (for
    ``discretize_diagonal`` a per-system ``dt`` is already expanded to broadcast against
    ``Lambda``). Set ``time_varying_only`` for a rule that needs ``integration_timesteps``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    if name in DISCRETIZATIONS:
        raise ValueError(f"name: discretization {name!r} already exists; choose another name")
    if not callable(fn):
        raise ValueError(f"fn: expected a callable, got {type(fn).__name__}")
    _CUSTOM[name] = fn
    DISCRETIZATIONS.append(name)
    if time_varying_only:
        TIME_VARYING_ONLY.add(name)


def unregister_discretization(name: str) -> None:
    """Remove a discretization added by ``register_discretization`` (the built-in rules cannot be removed)."""
    if name not in _CUSTOM:
        raise ValueError(f"name: {name!r} is not a registered custom discretization; registered: {list(_CUSTOM)}")
    del _CUSTOM[name]
    DISCRETIZATIONS.remove(name)
    TIME_VARYING_ONLY.discard(name)


def custom_discretizations() -> tuple[str, ...]:
    """The names added by ``register_discretization``, in the order they were added."""
    return tuple(_CUSTOM)


def _check_method(method) -> str:
    if method not in DISCRETIZATIONS:
        raise ValueError(f"method: unknown discretization {method!r}; expected one of {DISCRETIZATIONS}")
    return method


# ------------------------------------------------------------------------------------------------
# Diagonal A: elementwise formulas
# ------------------------------------------------------------------------------------------------


def _zoh_gamma(Lambda: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """(exp(dt lambda) - 1) / lambda, with its limit dt at lambda = 0 (expm1 keeps it accurate)."""
    Lambda, dt = np.broadcast_arrays(Lambda, dt)
    safe = np.where(Lambda == 0, 1.0, Lambda)
    return np.where(Lambda == 0, dt, np.expm1(dt * Lambda) / safe)


def _diagonal_rule(method: str, Lambda, dt_A, dt_B) -> tuple[np.ndarray, np.ndarray]:
    """(a_bar, gamma) of one rule. ``dt_A`` drives the state transition, ``dt_B`` the input."""
    if method == "bilinear":
        denom_A = 1.0 - dt_A * Lambda / 2.0
        denom_B = 1.0 - dt_B * Lambda / 2.0
        if np.any(denom_A == 0) or np.any(denom_B == 0):
            raise ValueError("bilinear: 1 - dt*lambda/2 = 0 for some eigenvalue (the map is singular there)")
        a_bar = (1.0 + dt_A * Lambda / 2.0) / denom_A
        gamma = dt_B / denom_B
        return a_bar, gamma
    a_bar = np.exp(dt_A * Lambda)
    if method in ("zoh", "async"):
        gamma = _zoh_gamma(Lambda, dt_B)
    elif method == "dirac":
        gamma = np.ones_like(a_bar)
    elif method == "mamba":
        gamma = dt_B * np.ones_like(a_bar)
    else:  # pragma: no cover - guarded by _check_method
        raise AssertionError(method)
    return a_bar, gamma


def _check_timesteps(integration_timesteps, method: str, aligned: bool = False) -> np.ndarray | None:
    if method in TIME_VARYING_ONLY and integration_timesteps is None:
        raise ValueError(
            f"integration_timesteps: method {method!r} needs the per-event gaps, shape (L,) or (B, L)"
        )
    if integration_timesteps is None:
        return None
    tau = nonnegative(integration_timesteps, "integration_timesteps")
    if not aligned and (tau.ndim not in (1, 2) or tau.shape[-1] == 0):
        raise ValueError(
            f"integration_timesteps: expected shape (L,) or (B, L) with L >= 1, got {tau.shape}"
        )
    if method in _ZERO_GAP_DROPS_INPUT and np.any(tau == 0):
        raise ValueError(
            f"integration_timesteps: a zero gap with method {method!r} makes B_bar = 0 and silently "
            "drops that event's input; use 'async' or 'dirac' for simultaneous events"
        )
    return tau


def discretize_diagonal(
    Lambda, B, dt, method: str = "zoh", *, integration_timesteps=None, aligned_timesteps=False, allow_zero_step=False
):
    """Discretize many diagonal systems at once (one per channel, per head, ...).

    Args:
        Lambda: eigenvalues, shape ``(..., N)``, real or complex.
        B: ``(..., N)`` (one input per system) or ``(..., N, H)``; leading axes broadcast.
        dt: step, ``()``, ``(...)`` (one per system) or ``(..., N)`` (one per state); > 0.
        method: a name in ``DISCRETIZATIONS``.
        integration_timesteps: event gaps tau, ``(L,)`` or ``(B, L)``, >= 0. When given, the
            results gain these leading time axes: ``A_bar (L, ..., N)`` or ``(B, L, ..., N)``.
        aligned_timesteps: for systems that already carry the time axes (a selective model whose
            ``dt`` is ``(B, L, ...)``). When True, ``integration_timesteps`` gets no new axes: it is
            one gap per system, broadcast against the system axes ``(...)`` (for example
            ``(B, L, 1)`` against ``dt (B, L, D)``) and shared by the N states of each system.
            A registered custom rule receives it as given.
        allow_zero_step: accept dt = 0 (a selective model's softplus step can underflow to 0): the limit of
            every rule, a_bar = 1 with gamma = 0 (zoh, bilinear, mamba, async) or gamma = 1 (dirac).

    Returns:
        ``(A_bar, B_bar)``: ``A_bar`` has the broadcast shape of ``Lambda`` and ``dt``,
        ``B_bar`` the shape of ``B`` broadcast against it.
    """
    method = _check_method(method)
    Lambda = as_array(Lambda, "Lambda")
    if Lambda.ndim < 1 or Lambda.shape[-1] == 0:
        raise ValueError(f"Lambda: expected shape (..., N) with N >= 1, got {Lambda.shape}")
    B = as_array(B, "B")
    if B.ndim == Lambda.ndim:
        vector_B = True
    elif B.ndim == Lambda.ndim + 1:
        vector_B = False
    else:
        raise ValueError(
            f"B: expected shape (..., N) or (..., N, H) with as many leading axes as Lambda "
            f"{Lambda.shape}, got {B.shape}"
        )
    if (B.shape[-1] if vector_B else B.shape[-2]) != Lambda.shape[-1]:
        raise ValueError(f"B: its state axis must have N = {Lambda.shape[-1]} entries, got shape {B.shape}")
    dt = nonnegative(dt, "dt") if allow_zero_step else positive(dt, "dt")
    if dt.ndim in (0, Lambda.ndim - 1):  # a scalar, or one step per system
        dt = dt[..., None]
    elif dt.ndim != Lambda.ndim:
        raise ValueError(
            f"dt: expected a scalar, shape {Lambda.shape[:-1]} (one per system) or "
            f"{Lambda.shape} (one per state), got {dt.shape}"
        )
    broadcast({"Lambda": Lambda.shape, "dt": dt.shape}, "discretize_diagonal")
    tau = _check_timesteps(integration_timesteps, method, aligned_timesteps)
    if tau is not None and aligned_timesteps:
        systems = np.broadcast_shapes(Lambda.shape[:-1], dt.shape[:-1])
        broadcast({"integration_timesteps": tau.shape, "systems": systems}, "discretize_diagonal")

    if method in _CUSTOM:
        return _CUSTOM[method](Lambda, B, dt, integration_timesteps=tau)

    dt_A = dt_B = dt
    if tau is not None:
        if aligned_timesteps:
            tau = tau[..., None]  # (..., 1): one gap per system, shared by its states
        else:
            tau = tau.reshape(tau.shape + (1,) * Lambda.ndim)  # (L, 1.., 1) or (B, L, 1.., 1)
        dt_A = dt * tau
        dt_B = dt if method == "async" else dt * tau
    a_bar, gamma = _diagonal_rule(method, Lambda, dt_A, dt_B)  # (..., N)
    gamma = np.broadcast_to(gamma, np.broadcast_shapes(gamma.shape, a_bar.shape))
    if vector_B:
        broadcast({"B": B.shape, "A_bar": gamma.shape}, "discretize_diagonal")
        B_bar = gamma * B  # (..., N)
    else:
        broadcast({"B": B.shape[:-1], "A_bar": gamma.shape}, "discretize_diagonal")
        B_bar = gamma[..., None] * B  # (..., N, H)
    return a_bar, B_bar


# ------------------------------------------------------------------------------------------------
# Dense A: matrix functions
# ------------------------------------------------------------------------------------------------


def _discretize_dense(A: np.ndarray, B: np.ndarray, dt: np.ndarray, method: str):
    N, H = B.shape
    dt_rows = dt.reshape(-1, 1) if dt.ndim == 1 else dt  # () or (N, 1): per-state clocks scale rows
    dtA = dt_rows * A  # (N, N)
    dtB = dt_rows * B  # (N, H)
    if method == "zoh":
        # expm(dt [[A, B], [0, 0]]) = [[A_bar, B_bar], [0, I]]: exact, and valid for a singular A.
        M = np.zeros((N + H, N + H), dtype=np.result_type(A, B))
        M[:N, :N] = dtA
        M[:N, N:] = dtB
        E = scipy.linalg.expm(M)  # (N + H, N + H)
        return E[:N, :N], E[:N, N:]
    if method == "bilinear":
        left = np.eye(N) - dtA / 2.0  # (N, N)
        if np.linalg.cond(left) > 1e14:
            raise ValueError("bilinear: I - dt*A/2 is singular (an eigenvalue with dt*lambda = 2)")
        A_bar = np.linalg.solve(left, np.eye(N) + dtA / 2.0)  # (N, N)
        B_bar = np.linalg.solve(left, dtB)  # (N, H)
        return A_bar, B_bar
    A_bar = scipy.linalg.expm(dtA)  # (N, N)
    if method == "dirac":
        return A_bar, B.copy()
    if method == "mamba":
        return A_bar, dtB
    raise AssertionError(method)  # pragma: no cover


def discretize(A, B, dt, method: str = "zoh", *, integration_timesteps=None):
    """Discretize x' = A x + B u with step ``dt`` by ``method`` (see the module docstring).

    Args:
        A: ``(N, N)`` dense matrix or ``(N,)`` diagonal (its eigenvalues); real or complex.
        B: ``(N, H)`` (or ``(N,)`` for a single input).
        dt: step > 0, a scalar or one per state ``(N,)``.
        method: one of ``DISCRETIZATIONS``.
        integration_timesteps: per-event gaps ``(L,)`` or ``(B, L)`` (diagonal A only). Required
            by ``"async"``; with it the results carry the time axes in front:
            ``A_bar (L, N)``, ``B_bar (L, N, H)`` (or ``(B, L, ...)``).

    Returns:
        ``(A_bar, B_bar)``; a 1-D ``A`` gives a 1-D ``A_bar``.
    """
    method = _check_method(method)
    A = as_array(A, "A")
    if A.ndim == 1 and A.shape[0] == 0:
        raise ValueError("A: expected a square (N, N) matrix or an (N,) diagonal with N >= 1, got shape (0,)")
    if A.ndim == 1:
        return discretize_diagonal(A, B, dt, method, integration_timesteps=integration_timesteps)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ValueError(f"A: expected a square (N, N) matrix or an (N,) diagonal, got shape {A.shape}")
    N = A.shape[0]
    B = as_array(B, "B")
    vector_B = B.ndim == 1
    B2 = B[:, None] if vector_B else B
    if B2.ndim != 2 or B2.shape[0] != N:
        raise ValueError(f"B: expected shape ({N}, H) or ({N},) to match A {A.shape}, got {B.shape}")
    dt = positive(dt, "dt")
    if dt.ndim != 0 and dt.shape != (N,):
        raise ValueError(f"dt: expected a scalar or shape ({N},) (one per state), got {dt.shape}")
    if method in TIME_VARYING_ONLY or integration_timesteps is not None:
        raise ValueError(
            f"method: {method!r} with integration_timesteps is time-varying and needs a diagonal A "
            "(an (N,) array of eigenvalues); a dense A supports zoh, bilinear, dirac and mamba"
        )
    if method in _CUSTOM:
        return _CUSTOM[method](A, B, dt, integration_timesteps=None)
    A_bar, B_bar = _discretize_dense(A, B2, dt, method)
    return A_bar, (B_bar[:, 0] if vector_B else B_bar)
