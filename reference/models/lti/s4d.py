"""S4D: the diagonal structured state space model, one SISO system per channel.

Paper: Gu, Gupta, Goel, Re, "On the Parameterization and Initialization of Diagonal State Space
Models" (NeurIPS 2022, arXiv 2206.11893): the diagonal SSM, its S4D-LegS / -Lin / -Inv / -Real
initializations and the Vandermonde kernel. Official code followed: state-spaces/s4
``models/s4/s4.py`` (``SSMKernelDiag``, ``dplr``, ``nplr``, ``SSMKernel.init_dt``, ``FFTConv`` for D),
reference/README.md §S4D, §HiPPO.

Each channel h = 0..H-1 holds its own diagonal system with N/2 complex modes (one of each conjugate
pair, N = ``d_state`` the full real state size):

    x'_h(t) = diag(lambda_h) x_h(t) + B_h u_h(t),      y_h = 2 Re(C_h x_h) + D_h u_h

discretized with the channel's own step dt_h. The kernel of channel h is the Vandermonde product
(reference/README.md §S4D)

    k_h[l] = 2 Re( sum_n C_hn B_bar_hn a_bar_hn^l ),      l = 0..L-1,

and the model's full kernel ``(L, H, H)`` is diagonal in its two channel axes (channels do not mix).

Glossary (code name -> symbol):

    log_A_real  log(-Re lambda)  (the 'exp' real transform of [S4-code]: Re lambda = -exp(log_A_real))
    A_imag      -Im lambda       ([S4-code] stores it non-negative: lambda = -exp(log_A_real) - i A_imag)
    Lambda      lambda, the N/2 stored continuous-time eigenvalues per channel     (H, N/2)
    B, C        B, C of each channel's modes, complex                               (H, N/2)
    log_dt      log Delta, one step per channel ([S4-code] ``inv_dt`` with dt_tie)  (H,)
    D           the feed-through of each channel                                    (H,)
    a_bar, B_bar   the discretized eigenvalues and input weights                    (H, N/2)

State layout. The flat state of the ``DiscreteSSM`` has S = H * N/2 complex entries, h-major:
entry h * (N/2) + n is mode n of channel h.

Initializations (``init=``, reference/README.md §S4D; n = 0..N/2-1; all with B = 1 except legs):

    "legs" (default)  lambda_n = the stored half of the HiPPO-LegS normal part's eigenvalues
                      (-1/2 + i Im, Im <= 0; ``reference.init.nplr_legs``), B = V^* B_legs with
                      Im clipped to [-B_clip, B_clip] ([S4-code] ``nplr(B_clip=2.0)``)
    "lin"             lambda_n = -1/2 - i pi n
    "inv"             lambda_n = -1/2 - i (N/pi) (N/(2n+1) - 1)
    "real"            lambda_n = -(n+1)
C ~ complex normal with E|C|^2 = 1 (torch ``randn(cfloat)``), D ~ N(0, 1), log dt ~ U[log dt_min,
log dt_max]. Draw order from ``np.random.default_rng(seed)``: log_dt, C (real then imaginary), D.

Deliberate choices and deviations (each also in reference/README.md §S4D):

* n_ssm = H and channels = 1 ([S4-code] defaults): every channel has its own (A, B, dt), one output.
* legs B clip: the clip of Im(V^* B) to +-2 is large and depends on the phase that the
  eigen-solver gives each eigenvector, so NumPy's eigh and torch's eigh give different B here. The
  reference reproduces the construction, not torch's numbers; copy parameters to compare.
  [S4-code] also notes that theory asks for B/2 here and drops the factor; so does the reference.
* The sign of Im lambda for "lin": [S4-code] kernels use -i pi n (followed here), the minimal
  ``s4d.py`` and Centaurus +i pi n. With complex C the sign only conjugates the sine part.
* "dirac" is not in [S4-code] (which offers zoh, bilinear and DSS's 'dss'); it is lrnnx's extra rule
  (reference/README.md §dirac). 'dss' is not implemented.
* The Vandermonde matrix is formed as a_bar^l (exact integer powers); [S4-code] writes it as
  exp(l log a_bar), with log a_bar = dt lambda for zoh, which is the same matrix.
* lrnnx's S4D wrapper (GELU, GELU, Linear, GELU; reference/README.md §Other-libraries) is outside the SSM
  core and not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reference._checks import positive, positive_int
from reference.discretization import discretize_diagonal
from reference.init import log_uniform, nplr_legs
from reference.models.lti._base import LTIModel
from reference.response import DiscreteSSM

__all__ = ["S4D", "S4DParams"]

INITS = ("legs", "lin", "inv", "real")


@dataclass
class S4DParams:
    """The parameters of an S4D layer's SSM core (H = d_model, N = d_state)."""

    log_A_real: np.ndarray  # (H, N/2)  Re lambda = -exp(log_A_real)
    A_imag: np.ndarray  # (H, N/2)  Im lambda = -A_imag
    B: np.ndarray  # (H, N/2) complex
    C: np.ndarray  # (H, N/2) complex
    log_dt: np.ndarray  # (H,)
    D: np.ndarray  # (H,)


def _positive_float(x, name: str) -> float:
    value = positive(x, name)
    if value.ndim != 0:
        raise ValueError(f"{name}: expected a single number > 0, got shape {value.shape}")
    return float(value)


def init_eigenvalues(init: str, N: int) -> np.ndarray:
    """The N/2 stored continuous-time eigenvalues of one channel for ``init`` (N = full state size)."""
    n = np.arange(N // 2)  # (N/2,)
    if init == "legs":
        return nplr_legs(N)[0][: N // 2]  # (N/2,) Im <= 0
    if init == "lin":
        return -0.5 - 1j * np.pi * n  # (N/2,)
    if init == "inv":
        return -0.5 - 1j * (N / np.pi) * (N / (2 * n + 1) - 1)  # (N/2,)
    if init == "real":
        return -(n + 1.0) + 0j  # (N/2,)
    raise ValueError(f"init: expected one of {list(INITS)}, got {init!r}")


class S4D(LTIModel):
    """S4D (diagonal SSM per channel, stored half + 2 Re readout); see the module docstring.

    Args:
        d_model: H, the number of channels.
        d_state: N, the full real state size per channel (even: N/2 complex modes are stored).
        discretization: "zoh" (default, [S4-code] ``disc='zoh'``), "bilinear" or "dirac".
        seed: seed of ``np.random.default_rng`` for the initialization.
        init: "legs" (default), "lin", "inv" or "real".
        dt_min, dt_max: range of the log-uniform initial step (default 1e-3, 1e-1).
        B_clip: clip of Im B for the "legs" init (default 2.0; None for no clipping).
    """

    discretizations = ("zoh", "bilinear", "dirac")
    default_discretization = "zoh"
    modes = ("convolution", "recurrence", "scan")

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        discretization: str | None = None,
        seed: int = 0,
        init: str = "legs",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        B_clip: float | None = 2.0,
    ):
        super().__init__(d_model, d_state, discretization=discretization, seed=seed)
        if self.d_state % 2:
            raise ValueError(
                f"d_state: S4D stores one mode per conjugate pair and needs an even full state size, "
                f"got {self.d_state}"
            )
        if init not in INITS:
            raise ValueError(f"init: expected one of {list(INITS)}, got {init!r}")
        dt_min = _positive_float(dt_min, "dt_min")
        dt_max = _positive_float(dt_max, "dt_max")
        if dt_min > dt_max:
            raise ValueError(f"dt_min: expected dt_min <= dt_max, got dt_min={dt_min} > dt_max={dt_max}")
        if B_clip is not None:
            B_clip = _positive_float(B_clip, "B_clip")
        self.init, self.dt_min, self.dt_max, self.B_clip = init, dt_min, dt_max, B_clip

        H, N, N2 = self.d_model, self.d_state, self.d_state // 2
        Lambda = init_eigenvalues(init, N)  # (N/2,)
        if init == "legs":
            B = nplr_legs(N)[2][:N2]  # (N/2,) V^* B_legs of the kept modes
            if B_clip is not None:
                B = B.real + 1j * np.clip(B.imag, -B_clip, B_clip)  # (N/2,)
        else:
            B = np.ones(N2, dtype=np.complex128)  # (N/2,)
        rng = np.random.default_rng(seed)
        log_dt = np.log(log_uniform(rng, dt_min, dt_max, H))  # (H,)
        C = (rng.normal(size=(H, N2)) + 1j * rng.normal(size=(H, N2))) / np.sqrt(2.0)  # (H, N/2)
        D = rng.normal(size=H)  # (H,)
        self.params = S4DParams(
            log_A_real=np.tile(np.log(-Lambda.real), (H, 1)),  # (H, N/2)
            A_imag=np.tile(-Lambda.imag, (H, 1)),  # (H, N/2)
            B=np.tile(B, (H, 1)).astype(np.complex128),  # (H, N/2)
            C=C,
            log_dt=log_dt,
            D=D,
        )

    # -- the continuous and the discrete system --------------------------------------------------
    def eigenvalues(self) -> np.ndarray:
        """lambda = -exp(log_A_real) - i A_imag, the stored continuous-time eigenvalues ``(H, N/2)``."""
        p = self.params
        return -np.exp(p.log_A_real) - 1j * p.A_imag  # (H, N/2)

    def discretized(self) -> tuple[np.ndarray, np.ndarray]:
        """``(a_bar, B_bar)``, both ``(H, N/2)``: each channel discretized with its own step."""
        p = self.params
        return discretize_diagonal(self.eigenvalues(), p.B, np.exp(p.log_dt), self.discretization)

    def ssm(self) -> DiscreteSSM:
        """The H channel systems as one block-diagonal ``DiscreteSSM`` (S = H*N/2, h-major, readout 2re)."""
        H, N2 = self.d_model, self.d_state // 2
        a_bar, b_bar = self.discretized()  # (H, N/2), (H, N/2)
        eye = np.eye(H)  # (H, H)
        B_bar = (b_bar[:, :, None] * eye[:, None, :]).reshape(H * N2, H)  # (S, H): mode (h, n) reads u_h
        C = (eye[:, :, None] * self.params.C[None, :, :]).reshape(H, H * N2)  # (H, S): y_h reads channel h
        return DiscreteSSM(a_bar.reshape(H * N2), B_bar, C, np.diag(self.params.D), readout="2re")

    def kernel(self, L: int) -> np.ndarray:
        """The Vandermonde kernel k_h[l] = 2 Re(sum_n C_hn B_bar_hn a_bar_hn^l), as ``(L, H, H)``
        (diagonal in the channel axes), without D."""
        L = positive_int(L, "L")
        a_bar, b_bar = self.discretized()  # (H, N/2), (H, N/2)
        W = self.params.C * b_bar  # (H, N/2): C_hn B_bar_hn
        V = a_bar[:, :, None] ** np.arange(L)  # (H, N/2, L): Vandermonde matrix a_bar^l
        k = 2.0 * np.einsum("hn,hnl->lh", W, V).real  # (L, H)
        K = np.zeros((L, self.d_model, self.d_model))  # (L, H, H)
        K[:, np.arange(self.d_model), np.arange(self.d_model)] = k
        return K
