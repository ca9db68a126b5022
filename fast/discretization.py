"""Discretization in torch: the twin of ``reference.discretization`` (same names, arguments and rules).

    x_k = A_bar x_{k-1} + B_bar u_k          (x_{-1} = 0; the input enters before the readout)

Glossary (code name -> symbol in the papers and in reference/README.md §zoh to §async):

    A, Lambda   A (dense, N x N) or its eigenvalues lambda (diagonal A = diag(Lambda))
    B           B, the input matrix (N, H) or one input vector (N,)
    dt          Delta, the step size (scalar, one per system, or one per state)
    A_bar       A-bar, the state transition of one step; a_bar for a diagonal A
    gamma       gamma-bar, the input normalizer of a diagonal system: B_bar = gamma * B
    tau         integration_timesteps, the per-event gap of an event stream (reference/README.md §async)

The rules (one eigenvalue lambda, step Delta; a dense A uses the matrix functions) are those of the
reference module docstring: zoh, bilinear, dirac, mamba and async, with the same per-state ``dt``
(state n runs on its own clock, rows of the continuous system are scaled), the same per-system ``dt``,
the same ``integration_timesteps`` rule (the step becomes Delta * tau_k; ``async`` decays over
Delta * tau_k but injects one nominal step), the same refusal of a zero gap for the rules whose B_bar
vanishes with the step, and the same error at the bilinear singularity 1 - Delta lambda / 2 = 0.

Differences from the reference, all deliberate:

* tensors stay in the precision they come in (float32/complex64 or float64/complex128); every tensor
  of one call must share it (``dt`` and ``integration_timesteps`` may be Python numbers or NumPy arrays,
  which are converted);
* everything is differentiable by autograd: dense zoh is ``torch.linalg.matrix_exp`` of the block
  matrix ``[[A, B], [0, 0]] dt`` (evaluated as a batch of two to avoid a torch accuracy bug, see
  ``matrix_exp``), dense bilinear two ``torch.linalg.solve`` calls, and the zoh
  normalizer at lambda = 0 is written as dt + dt^2 lambda / 2 (its value and first derivative there)
  so that its gradient is right as well;
* the dense bilinear map is refused when cond(I - dt A / 2) exceeds the reference's limit (1e14 in
  float64) scaled to the working precision (about 2e5 in float32), where the solve has no correct digit
  left;
* ``register_discretization`` keeps its own registry of torch rules (a NumPy rule registered with
  the reference cannot run on tensors).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fast._checks import (
    HALF,
    broadcast,
    common_dtype,
    no_half,
    real_dtype,
    real_like,
    tensor,
    validating,
    values_ok,
)

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

#: The rules whose A_bar is exp(dt lambda): a product of them over steps is exp(lambda * (sum of the steps)).
EXPONENTIAL_RULES = frozenset({"zoh", "dirac", "mamba", "async"})

#: Methods that only make sense for a time-varying (event-driven) system: an LTI model cannot use them.
TIME_VARYING_ONLY: set[str] = {"async"}

# Methods whose input matrix vanishes with the step: a zero event gap would silently drop the event.
_ZERO_GAP_DROPS_INPUT = {"zoh", "bilinear", "mamba"}

# The reference refuses a dense bilinear map when cond(I - dt A / 2) > 1e14 in float64; the same
# threshold measured in units of the working precision's epsilon.
_COND_LIMIT_EPS = 1e14 * torch.finfo(torch.float64).eps

_CUSTOM: dict[str, Callable] = {}


def register_discretization(name: str, fn: Callable, *, time_varying_only: bool = False) -> None:
    """Add a torch discretization ``fn(A, B, dt, *, integration_timesteps=None) -> (A_bar, B_bar)``.

    As in the reference, ``discretize`` and ``discretize_diagonal`` hand the validated tensors to ``fn``
    unchanged (for ``discretize_diagonal`` a per-system ``dt`` is already expanded against ``Lambda``).
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


def _zoh_gamma(Lambda: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """(exp(dt lambda) - 1) / lambda; at lambda = 0 its limit dt, written dt + dt^2 lambda / 2 so that
    the derivative in lambda (dt^2 / 2) is right too. ``expm1`` keeps small dt lambda accurate."""
    zero = Lambda == 0  # (..., N)
    safe = torch.where(zero, torch.ones_like(Lambda), Lambda)  # (..., N): no 0/0 in either branch
    return torch.where(zero, dt + dt * dt * Lambda / 2, torch.expm1(dt * Lambda) / safe)  # (..., N)


def input_gain(method: str, Lambda: torch.Tensor, dt_B: torch.Tensor) -> torch.Tensor:
    """gamma of a rule whose A_bar is exp(dt lambda) (``EXPONENTIAL_RULES``; B_bar = gamma * B), in the
    smallest shape that broadcasts against A_bar: zoh and async (exp(dt lambda) - 1) / lambda, mamba dt,
    dirac 1. ``dt_B`` is the input's step (``rule_steps``)."""
    if method in ("zoh", "async"):
        return _zoh_gamma(Lambda, dt_B)  # (..., N)
    if method == "dirac":
        return torch.ones((), dtype=Lambda.dtype, device=Lambda.device)  # ()
    if method == "mamba":
        return dt_B.to(Lambda.dtype)  # the shape of dt_B
    raise AssertionError(method)  # pragma: no cover - guarded by the callers


def rule_steps(method: str, dt: torch.Tensor, tau: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dt_A, dt_B)``: the step of the state transition and of the input under the event gaps ``tau``
    (broadcast against ``dt``; None: both are ``dt``). The transition runs over dt * tau; so does the input,
    except for async, which decays over the gap but injects one nominal step."""
    if tau is None:
        return dt, dt
    dt_A = dt * tau
    return dt_A, (dt if method == "async" else dt_A)


def _diagonal_rule(method: str, Lambda, dt_A, dt_B):
    """(a_bar, gamma) of one rule. ``dt_A`` drives the state transition, ``dt_B`` the input."""
    if method == "bilinear":
        denom_A = 1.0 - dt_A * Lambda / 2.0  # (..., N)
        denom_B = 1.0 - dt_B * Lambda / 2.0  # (..., N)
        if validating() and (bool((denom_A == 0).any()) or bool((denom_B == 0).any())):
            raise ValueError("bilinear: 1 - dt*lambda/2 = 0 for some eigenvalue (the map is singular there)")
        a_bar = (1.0 + dt_A * Lambda / 2.0) / denom_A  # (..., N)
        gamma = dt_B / denom_B  # (..., N)
        return a_bar, gamma
    return torch.exp(dt_A * Lambda), input_gain(method, Lambda, dt_B)  # (..., N), broadcastable to it


def check_gaps(method: str, tau: torch.Tensor | None) -> None:
    """The gaps a rule needs: ``ValueError`` when a time-varying-only rule (async) has none, or when a gap of
    zero would make B_bar = 0 (zoh, bilinear, mamba) and silently drop that event's input."""
    if tau is None:
        if method in TIME_VARYING_ONLY:
            raise ValueError(
                f"integration_timesteps: method {method!r} needs the per-event gaps, shape (L,) or (B, L)"
            )
        return
    if method in _ZERO_GAP_DROPS_INPUT and validating() and bool((tau == 0).any()):
        raise ValueError(
            f"integration_timesteps: a zero gap with method {method!r} makes B_bar = 0 and silently "
            "drops that event's input; use 'async' or 'dirac' for simultaneous events"
        )


def _check_timesteps(integration_timesteps, method: str, dtype, device, aligned: bool = False):
    if integration_timesteps is None:
        check_gaps(method, None)
        return None
    tau = real_like(integration_timesteps, "integration_timesteps", dtype, device)  # values: by the caller
    if not aligned and (tau.ndim not in (1, 2) or tau.shape[-1] == 0):
        raise ValueError(f"integration_timesteps: expected shape (L,) or (B, L) with L >= 1, got {tuple(tau.shape)}")
    return tau


def discretize_diagonal(Lambda, B, dt, method: str = "zoh", *, integration_timesteps=None, aligned_timesteps=False):
    """Discretize many diagonal systems at once (one per channel, per head, ...), in torch.

    Args:
        Lambda: eigenvalues, tensor ``(..., N)``, real or complex.
        B: tensor ``(..., N)`` (one input per system) or ``(..., N, H)``; leading axes broadcast.
        dt: step, ``()``, ``(...)`` (one per system) or ``(..., N)`` (one per state); > 0. A tensor of
            the precision of ``Lambda``, or a Python number / NumPy array.
        method: a name in ``DISCRETIZATIONS``.
        integration_timesteps: event gaps tau, ``(L,)`` or ``(B, L)``, >= 0. When given, the
            results gain these leading time axes: ``A_bar (L, ..., N)`` or ``(B, L, ..., N)``.
        aligned_timesteps: for systems that already carry the time axes (a selective model whose
            ``dt`` is ``(B, L, ...)``). When True, ``integration_timesteps`` gets no new axes: it holds
            one gap per system, broadcast against the system axes ``(...)`` (e.g. ``(B, L, 1)`` against
            ``dt (B, L, D)``), shared by the N states of each system. A custom rule receives it as given.

    Returns:
        ``(A_bar, B_bar)``: ``A_bar`` has the broadcast shape of ``Lambda`` and ``dt``,
        ``B_bar`` the shape of ``B`` broadcast against it.
    """
    method = _check_method(method)
    Lambda = tensor(Lambda, "Lambda")
    if Lambda.ndim < 1 or Lambda.shape[-1] == 0:
        raise ValueError(f"Lambda: expected shape (..., N) with N >= 1, got {tuple(Lambda.shape)}")
    B = tensor(B, "B")
    dtype = common_dtype({"Lambda": Lambda, "B": B}, "discretize_diagonal")
    if B.ndim == Lambda.ndim:
        vector_B = True
    elif B.ndim == Lambda.ndim + 1:
        vector_B = False
    else:
        raise ValueError(
            f"B: expected shape (..., N) or (..., N, H) with as many leading axes as Lambda "
            f"{tuple(Lambda.shape)}, got {tuple(B.shape)}"
        )
    if (B.shape[-1] if vector_B else B.shape[-2]) != Lambda.shape[-1]:
        raise ValueError(f"B: its state axis must have N = {Lambda.shape[-1]} entries, got shape {tuple(B.shape)}")
    if dtype == torch.complex32:
        no_half(dtype, "discretize_diagonal with complex eigenvalues or inputs")
    dt = real_like(dt, "dt", dtype, Lambda.device)
    if dt.ndim in (0, Lambda.ndim - 1):  # a scalar, or one step per system
        dt = dt[..., None]
    elif dt.ndim != Lambda.ndim:
        raise ValueError(
            f"dt: expected a scalar, shape {tuple(Lambda.shape[:-1])} (one per system) or "
            f"{tuple(Lambda.shape)} (one per state), got {tuple(dt.shape)}"
        )
    broadcast({"Lambda": Lambda.shape, "dt": dt.shape}, "discretize_diagonal")
    tau = _check_timesteps(integration_timesteps, method, dtype, Lambda.device, aligned_timesteps)
    if tau is not None and aligned_timesteps:
        systems = broadcast({"Lambda": Lambda.shape[:-1], "dt": dt.shape[:-1]}, "discretize_diagonal")
        broadcast({"integration_timesteps": tau.shape, "systems": systems}, "discretize_diagonal")
    values_ok({"Lambda": Lambda, "B": B}, {"dt": dt}, {"integration_timesteps": tau})  # while fast.validation is on
    check_gaps(method, tau)
    if method in _CUSTOM:
        return _CUSTOM[method](Lambda, B, dt, integration_timesteps=tau)
    if tau is not None and not aligned_timesteps:
        tau = tau.reshape(tau.shape + (1,) * (Lambda.ndim - 1))  # (L, 1..) or (B, L, 1..): one gap per system
    return diagonal_rule(method, Lambda, B, dt, tau, vector_B=vector_B)


def diagonal_rule(method: str, Lambda, B, dt, tau=None, *, vector_B: bool = True):
    """``(A_bar, B_bar)`` of ``discretize_diagonal`` on tensors whose shapes it has checked, without value
    checks: what the models call on the steps they compute themselves (a softplus step that underflowed to
    exactly 0 is a valid step there: A_bar = 1, and B_bar = 0 under zoh, bilinear and mamba).

    ``Lambda (..., N)``, ``B (..., N)`` (``vector_B``) or ``(..., N, H)``, ``dt`` with a state axis (``(..., 1)``
    or ``(..., N)``), ``tau`` one gap per system broadcast against the system axes ``(...)`` or None. Half-precision
    real tensors are computed in float32 and the results cast back."""
    half = Lambda.dtype if Lambda.dtype in HALF else None
    if half is not None:
        Lambda, B, dt = Lambda.float(), B.float(), dt.float()
        tau = None if tau is None else tau.float()
    if method in _CUSTOM:
        A_bar, B_bar = _CUSTOM[method](Lambda, B, dt, integration_timesteps=tau)
        return (A_bar, B_bar) if half is None else (A_bar.to(half), B_bar.to(half))
    if tau is not None:
        tau = tau[..., None]  # (..., 1): one gap per system, shared by its states
    dt_A, dt_B = rule_steps(method, dt, tau)  # (L, ..., N) or (B, L, ..., N) with gaps
    a_bar, gamma = _diagonal_rule(method, Lambda, dt_A, dt_B)  # (..., N)
    gamma = gamma.expand(broadcast({"gamma": gamma.shape, "A_bar": a_bar.shape}, "discretize_diagonal"))
    if vector_B:
        broadcast({"B": B.shape, "A_bar": gamma.shape}, "discretize_diagonal")
        B_bar = gamma * B  # (..., N)
    else:
        broadcast({"B": B.shape[:-1], "A_bar": gamma.shape}, "discretize_diagonal")
        B_bar = gamma[..., None] * B  # (..., N, H)
    return (a_bar, B_bar) if half is None else (a_bar.to(half), B_bar.to(half))


# ------------------------------------------------------------------------------------------------
# Dense A: matrix functions
# ------------------------------------------------------------------------------------------------


def cond_limit(dtype: torch.dtype) -> float:
    """The largest cond(I - dt A / 2) the dense bilinear map accepts in this precision."""
    return _COND_LIMIT_EPS / torch.finfo(real_dtype(dtype)).eps


def matrix_exp(M: torch.Tensor) -> torch.Tensor:
    """exp(M) of a square matrix ``(n, n)`` or a batch ``(H, n, n)``, accurate to rounding.

    Workaround: for a single matrix, ``torch.linalg.matrix_exp`` picks a Taylor degree from the norm,
    and its degree-8 branch has a wrong coefficient (pytorch/pytorch#196592; present in torch 2.13):
    for 1-norms around 0.01-0.05 the float64 result is off by ~1e-11. A batch of more than one matrix
    always takes the highest-degree branch, which is accurate, so a single matrix is exponentiated as
    two copies.
    """
    if M.ndim == 3 and M.shape[0] > 1:
        return torch.linalg.matrix_exp(M)  # (H, n, n)
    return torch.linalg.matrix_exp(M.expand(2, *M.shape))[0]  # (n, n) or (1, n, n)


def _discretize_dense(A: torch.Tensor, B: torch.Tensor, dt: torch.Tensor, method: str):
    N, H = B.shape
    dtype = torch.promote_types(A.dtype, B.dtype)
    A, B = A.to(dtype), B.to(dtype)
    dt_rows = dt.reshape(-1, 1) if dt.ndim == 1 else dt  # () or (N, 1): per-state clocks scale rows
    dtA = dt_rows * A  # (N, N)
    dtB = dt_rows * B  # (N, H)
    eye = torch.eye(N, dtype=dtype, device=A.device)  # (N, N)
    if method == "zoh":
        # matrix_exp(dt [[A, B], [0, 0]]) = [[A_bar, B_bar], [0, I]]: exact, and valid for a singular A.
        top = torch.cat([dtA, dtB], dim=1)  # (N, N + H)
        M = torch.cat([top, torch.zeros(H, N + H, dtype=dtype, device=A.device)], dim=0)  # (N + H, N + H)
        E = matrix_exp(M)  # (N + H, N + H)
        return E[:N, :N], E[:N, N:]
    if method == "bilinear":
        left = eye - dtA / 2.0  # (N, N)
        if validating():  # the singularity check reads a value (a host sync): with fast.validation on only
            with torch.no_grad():
                cond = float(torch.linalg.cond(left))
        else:
            cond = 0.0
        if not cond <= cond_limit(dtype):
            raise ValueError("bilinear: I - dt*A/2 is singular (an eigenvalue with dt*lambda = 2)")
        A_bar = torch.linalg.solve(left, eye + dtA / 2.0)  # (N, N)
        B_bar = torch.linalg.solve(left, dtB)  # (N, H)
        return A_bar, B_bar
    A_bar = matrix_exp(dtA)  # (N, N)
    if method == "dirac":
        return A_bar, B.clone()
    if method == "mamba":
        return A_bar, dtB
    raise AssertionError(method)  # pragma: no cover


def discretize(A, B, dt, method: str = "zoh", *, integration_timesteps=None):
    """Discretize x' = A x + B u with step ``dt`` by ``method``, in torch (see ``reference.discretize``).

    Args:
        A: tensor ``(N, N)`` dense matrix or ``(N,)`` diagonal (its eigenvalues); real or complex.
        B: tensor ``(N, H)`` (or ``(N,)`` for a single input), of the precision of ``A``.
        dt: step > 0, a scalar or one per state ``(N,)``.
        method: one of ``DISCRETIZATIONS``.
        integration_timesteps: per-event gaps ``(L,)`` or ``(B, L)`` (diagonal A only). Required
            by ``"async"``; with it the results carry the time axes in front:
            ``A_bar (L, N)``, ``B_bar (L, N, H)`` (or ``(B, L, ...)``).

    Returns:
        ``(A_bar, B_bar)``; a 1-D ``A`` gives a 1-D ``A_bar``.
    """
    method = _check_method(method)
    A = tensor(A, "A")
    if A.ndim == 1:
        return discretize_diagonal(A, B, dt, method, integration_timesteps=integration_timesteps)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ValueError(f"A: expected a square (N, N) matrix or an (N,) diagonal, got shape {tuple(A.shape)}")
    N = A.shape[0]
    B = tensor(B, "B")
    dtype = common_dtype({"A": A, "B": B}, "discretize")
    vector_B = B.ndim == 1
    B2 = B[:, None] if vector_B else B  # (N, H)
    if B2.ndim != 2 or B2.shape[0] != N:
        raise ValueError(f"B: expected shape ({N}, H) or ({N},) to match A {tuple(A.shape)}, got {tuple(B.shape)}")
    if dtype == torch.complex32:
        no_half(dtype, "discretize with a complex matrix")
    dt = real_like(dt, "dt", dtype, A.device)
    if dt.ndim != 0 and tuple(dt.shape) != (N,):
        raise ValueError(f"dt: expected a scalar or shape ({N},) (one per state), got {tuple(dt.shape)}")
    if method in TIME_VARYING_ONLY or integration_timesteps is not None:
        raise ValueError(
            f"method: {method!r} with integration_timesteps is time-varying and needs a diagonal A "
            "(an (N,) array of eigenvalues); a dense A supports zoh, bilinear, dirac and mamba"
        )
    values_ok({"A": A, "B": B}, {"dt": dt})  # while fast.validation is on
    if method in _CUSTOM:
        return _CUSTOM[method](A, B, dt, integration_timesteps=None)
    if dtype in HALF:  # a real half-precision system: the matrix functions in float32, the results cast back
        A_bar, B_bar = _discretize_dense(A.float(), B2.float(), dt.float(), method)
        A_bar, B_bar = A_bar.to(dtype), B_bar.to(dtype)
    else:
        A_bar, B_bar = _discretize_dense(A, B2, dt, method)
    return A_bar, (B_bar[:, 0] if vector_B else B_bar)
