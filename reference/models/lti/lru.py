"""LRU: the Linear Recurrent Unit, a diagonal complex recurrence learned directly in discrete time.

Paper: Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu, De, "Resurrecting Recurrent Neural Networks
for Long Sequences" (ICML 2023, arXiv 2303.06349): §3 (exponential parameterization, ring
initialization Lemma 3.2, gamma normalization) and the JAX listing of its appendix
(``init_lru_parameters``, ``forward_LRU``, ``binary_operator_diag``), which this follows; lrnnx's
``lrnnx/models/lti/lru.py`` is a faithful port of it (reference/README.md §LRU).

    x_k = lambda * x_{k-1} + gamma * (B u_k),      y_k = Re(C x_k) + D * u_k

with N = ``d_state`` complex modes (no conjugate pairing: the readout is Re, not 2 Re) and the kernel
K_l = Re(C diag(lambda^l) diag(gamma) B), a full H x H matrix per lag.

Glossary (code name -> symbol):

    nu_log, theta_log   lambda = exp(-exp(nu_log) + i exp(theta_log)): |lambda| = exp(-exp(nu_log)) < 1,
                        phase theta = exp(theta_log)                                        (N,)
    gamma_log           log gamma, the input normalization (trainable)                      (N,)
    B_re, B_im          B = B_re + i B_im                                                   (N, H)
    C_re, C_im          C = C_re + i C_im                                                   (H, N)
    D                   the feed-through, one per channel (a diagonal H x H matrix)         (H,)
    log_dt              log Delta, the step of the continuous-time reading (below)          (N,)

State layout: the flat state is the N modes in parameter order.

Initialization (the paper's listing): u1, u2 ~ U[0, 1) (N each);
nu_log = log(-1/2 log(u1 (r_max^2 - r_min^2) + r_min^2)), so |lambda|^2 is uniform on
[r_min^2, r_max^2]; theta_log = log(max_phase u2), so the phase is uniform on [0, max_phase];
B_re, B_im ~ N(0, 1/(2H)); C_re, C_im ~ N(0, 1/N); D ~ N(0, 1); gamma_log = log sqrt(1 - |lambda|^2),
which makes the stationary E|x_n|^2 equal E|(B u)_n|^2 for white input. log_dt = 0 (dt = 1).
Draw order from ``np.random.default_rng(seed)``: u1, u2, B_re, B_im, C_re, C_im, D.

Discretizations. The LRU has no continuous-time system; its own rule is ``"native"`` (the default, a
name that exists only in this class's ``discretizations``): a_bar = lambda, B_bar = gamma * B.
The rules of ``reference.discretize`` are also offered, by reading the exponent of lambda as a
continuous-time eigenvalue times a step. With z = -exp(nu_log) + i exp(theta_log) (so lambda = e^z),
dt = exp(log_dt) and the normalized input matrix B_c = gamma * B, the continuous system is

    Lambda_c = z / dt,     x' = Lambda_c x + B_c u,

discretized with step dt by ``discretize_diagonal``:

    "zoh":       a_bar = exp(dt Lambda_c) = lambda (exactly, up to rounding of z/dt*dt),
                 B_bar = (lambda - 1)/Lambda_c * B_c = dt (lambda - 1)/z * gamma B
                 (-> native as z -> 0 with dt = 1)
    "bilinear":  a_bar = (1 + z/2)/(1 - z/2) (not lambda: Tustin's approximation of e^z),
                 B_bar = dt/(1 - z/2) * gamma B
    "dirac":     a_bar = lambda, B_bar = gamma B: identical to "native"

Only B_bar depends on dt; a_bar depends on z alone. Since z is the LRU's own exponent (not a principal
log of lambda), phases beyond pi are kept.

Deliberate choices and deviations:

* The continuous-time reading and ``log_dt`` are the reference's own addition (lrnnx's LRU has no
  discretization: it accepts the argument and ignores it). With "native" the model is the paper's.
* Defaults r_min = 0, r_max = 1, max_phase = 2 pi (the paper's listing writes 6.28, lrnnx 2 pi).
  The listing has no default state size; d_state = 64 here (Unverified against the per-task sizes).
* The paper's block around the LRU (norm, GLU/MLP, skip; unverified per task) is outside this core.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reference._checks import as_array, positive_int
from reference.discretization import discretize_diagonal
from reference.models.lti._base import LTIModel
from reference.response import DiscreteSSM

__all__ = ["LRU", "LRUParams"]


@dataclass
class LRUParams:
    """The parameters of an LRU (H = d_model, N = d_state complex modes)."""

    nu_log: np.ndarray  # (N,)
    theta_log: np.ndarray  # (N,)
    B_re: np.ndarray  # (N, H)
    B_im: np.ndarray  # (N, H)
    C_re: np.ndarray  # (H, N)
    C_im: np.ndarray  # (H, N)
    D: np.ndarray  # (H,)
    gamma_log: np.ndarray  # (N,)
    log_dt: np.ndarray  # (N,)


def _real(x, name: str) -> float:
    value = as_array(x, name, complex_ok=False)
    if value.ndim != 0:
        raise ValueError(f"{name}: expected a single real number, got shape {value.shape}")
    return float(value)


class LRU(LTIModel):
    """The Linear Recurrent Unit; see the module docstring.

    Args:
        d_model: H, input and output width.
        d_state: N, the number of complex modes (any N >= 1; default 64).
        discretization: "native" (default), "zoh", "bilinear" or "dirac" (module docstring).
        seed: seed of ``np.random.default_rng`` for the initialization.
        r_min, r_max: the ring of initial |lambda|, 0 <= r_min < r_max <= 1 (default 0, 1).
        max_phase: initial phases are uniform on [0, max_phase], max_phase > 0 (default 2 pi).
    """

    discretizations = ("native", "zoh", "bilinear", "dirac")
    default_discretization = "native"
    modes = ("scan", "recurrence", "convolution")

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        discretization: str | None = None,
        seed: int = 0,
        r_min: float = 0.0,
        r_max: float = 1.0,
        max_phase: float = 2 * np.pi,
    ):
        super().__init__(d_model, d_state, discretization=discretization, seed=seed)
        r_min, r_max = _real(r_min, "r_min"), _real(r_max, "r_max")
        max_phase = _real(max_phase, "max_phase")
        if r_min < 0:
            raise ValueError(f"r_min: expected 0 <= r_min < r_max, got r_min={r_min}")
        if r_max > 1:
            raise ValueError(f"r_max: expected r_max <= 1 (|lambda| < 1 keeps the recurrence stable), got {r_max}")
        if r_min >= r_max:
            raise ValueError(f"r_min: expected r_min < r_max, got r_min={r_min} >= r_max={r_max}")
        if max_phase <= 0:
            raise ValueError(f"max_phase: expected a phase range > 0, got {max_phase}")
        self.r_min, self.r_max, self.max_phase = r_min, r_max, max_phase

        N, H = self.d_state, self.d_model
        rng = np.random.default_rng(seed)
        u1 = rng.uniform(size=N)  # (N,)
        u2 = rng.uniform(size=N)  # (N,)
        nu_log = np.log(-0.5 * np.log(u1 * (r_max**2 - r_min**2) + r_min**2))  # (N,)
        theta_log = np.log(max_phase * u2)  # (N,)
        B_re = rng.normal(size=(N, H)) / np.sqrt(2 * H)  # (N, H)
        B_im = rng.normal(size=(N, H)) / np.sqrt(2 * H)  # (N, H)
        C_re = rng.normal(size=(H, N)) / np.sqrt(N)  # (H, N)
        C_im = rng.normal(size=(H, N)) / np.sqrt(N)  # (H, N)
        D = rng.normal(size=H)  # (H,)
        modulus = np.exp(-np.exp(nu_log))  # (N,) |lambda|
        gamma_log = np.log(np.sqrt(1.0 - modulus**2))  # (N,)
        self.params = LRUParams(nu_log, theta_log, B_re, B_im, C_re, C_im, D, gamma_log, np.zeros(N))

    # -- the discrete system ---------------------------------------------------------------------
    def exponent(self) -> np.ndarray:
        """z = -exp(nu_log) + i exp(theta_log), so that lambda = exp(z): ``(N,)``."""
        return -np.exp(self.params.nu_log) + 1j * np.exp(self.params.theta_log)  # (N,)

    def eigenvalues(self) -> np.ndarray:
        """lambda = exp(z), the diagonal of the recurrence: ``(N,)``."""
        return np.exp(self.exponent())  # (N,)

    def discretized(self) -> tuple[np.ndarray, np.ndarray]:
        """``(a_bar (N,), B_bar (N, H))`` by ``self.discretization`` (module docstring)."""
        p = self.params
        B_c = np.exp(p.gamma_log)[:, None] * (p.B_re + 1j * p.B_im)  # (N, H): gamma * B
        if self.discretization == "native":
            return self.eigenvalues(), B_c
        dt = np.exp(p.log_dt)  # (N,)
        Lambda_c = self.exponent() / dt  # (N,)
        return discretize_diagonal(Lambda_c, B_c, dt, self.discretization)

    def ssm(self) -> DiscreteSSM:
        """Diagonal a_bar, B_bar, C = C_re + i C_im, diag(D), readout re."""
        p = self.params
        a_bar, B_bar = self.discretized()  # (N,), (N, H)
        return DiscreteSSM(a_bar, B_bar, p.C_re + 1j * p.C_im, np.diag(p.D), readout="re")

    def kernel(self, L: int) -> np.ndarray:
        """K_l = Re(C diag(a_bar^l) B_bar) by a Vandermonde contraction: ``(L, H, H)``, without D."""
        L = positive_int(L, "L")
        p = self.params
        a_bar, B_bar = self.discretized()  # (N,), (N, H)
        V = a_bar[:, None] ** np.arange(L)  # (N, L): a_bar^l
        return np.einsum("hn,nl,nk->lhk", p.C_re + 1j * p.C_im, V, B_bar).real  # (L, H, H)
