"""Centaurus: diagonal SSMs whose channel connectivity is chosen like a convolution's, computed as
tensor contractions.

Paper: Pei, "Let SSMs be ConvNets: State-space Modeling with Optimal Tensor Contractions" (ICLR 2025,
arXiv 2501.13230; the equations below are taken from the official code, reference/README.md §Centaurus). Official
code followed: Brainchip-Inc/Centaurus ``centaurus/ssm.py`` (``SSMLayer.__init__`` for the parameters
and their initialization, ``Kernelizer.discretize`` and ``Kernelizer.forward`` for the system and the
streaming state) and ``centaurus/opt_fft.py`` (``_K`` for the basis, ``padded_fft_conv_opt`` for the
choice of contraction order).

The core. Every mode is a set of complex diagonal "lanes" s with eigenvalue lambda_s, step dt_s, a
real input row and a real output column; a lane's state is complex and only its real part is read
(the third readout of reference/README.md §Conventions: damped cosines, no sine part, no factor 2):

    x_s' = lambda_s x_s + (b_s . u),        y = sum_s c_s Re(x_s)
    lambda = -softplus(A[..., 0]) + i A[..., 1]

Lanes are grouped into "state channels" j of M' lanes each (M' = M = ``sub_state_dim``, or 1 in
pointwise mode). A state channel reads the input through a row of ``P_in`` and writes the output
through a column of ``P_out``; inside a channel the lanes are mixed by real weights E. Discretized
with ``(a_bar, gamma) = discretize_diagonal(lambda, 1, dt)`` (B_bar = gamma * input row), the kernel
of a state channel and the model's kernel are

    k_j[l] = sum_m E_jm Re(gamma_jm a_bar_jm^l),         K_l = P_out diag(k[l]) P_in    (H, H)

Under the official rule ("mamba": a_bar = exp(dt lambda), gamma = dt) this is
k_j[l] = sum_m dt E_jm Re(exp(l dt lambda_jm)) = sum_m dt E_jm e^{l dt Re lambda} cos(l dt Im lambda),
the official basis ``_K`` contracted with the dt-scaled weights.

Modes (``mode=``; official shapes, batch-first here; d_model = H = C_in = C_out; J = d_state):

    mode                parameters                                   lanes S      P_in / P_out
    "pointwise" ("s5")  A (J*M, 2), log_dt (J*M,),                   J*M (M'=1)   B / C
                        B (J*M, H), C (H, J*M)
    "neck"              A (J, M, 2), log_dt (J,),                    J*M          B / C
                        B (J, H), C (H, J), E (J, M)
    "dws"   (J = H)     A (H, M, 2), log_dt (H, M), E (H, M)         H*M          I / I
    "full"  (J = H*H)   A (H, H, M, 2), log_dt (H, M), E (H, H, M)   H*H*M        channel (d, c) reads u_c,
                                                                                  writes y_d

(pointwise: each lane is its own channel with E = 1; "neck": one dt per channel; "dws": depthwise,
one channel per input channel; "full": one channel per (output d, input c) pair, dt per (d, m)).

Glossary (code name -> symbol):

    A            [raw real part a_re, imaginary part a_im] of each lane: lambda = -softplus(a_re) + i a_im
    log_dt       log Delta (``log_dt`` of the official code)
    B, C         real input / output projections (pointwise, neck)
    E            real weights of the lanes inside a state channel (neck, dws, full)
    M            ``sub_state_dim``: the official ``num_states``
    J            ``d_state``: the number of state channels (official ``state_blocks`` for pointwise/neck)
    P_in, P_out  the input / output projection of the state channels, (J', H) / (H, J')
    a_bar, gamma the discretized eigenvalue and input factor of each lane (B_bar = gamma * P_in row)

State layout. The flat state has S complex entries, one per lane, flattened row-major in the order
of the official streaming state: pointwise (J*M), neck (J, M), dws (H, M), full (H_out, H_in, M).

Initialization (``SSMLayer.__init__``; draws from ``np.random.default_rng(seed)`` in this order):
a_re = softplus^{-1}(1/2), a_im = pi m (m = 0..M-1), so lambda_m = -1/2 + i pi m in every channel;
dt = geomspace(dt_min, dt_max, n) (official: 1e-3, 1e-1, the defaults) over the state channels
(n = J for pointwise and neck, H for dws and full), repeated over the lanes. pointwise:
B = 1/sqrt(H), C ~ N(0, 2/(J M)). neck: B = 1/sqrt(H), C ~ N(0, 2/(J M)), then E ~ N(0, 2).
dws: E = 1/sqrt(M). full: E = 1/sqrt(H).

Contraction orders (``forward_contraction(u, order=)``, the choice ``padded_fft_conv_opt`` makes):
"kernel" materializes K (L, H, H) and runs one full FFT convolution; "states" projects u onto the
state channels (P_in), convolves each with its own k_j (depthwise FFT), and projects out (P_out).
"auto" picks as the official code: for pointwise/neck "kernel" when 1/H + 1/H > 1/batch +
1/(number of state channels), else "states"; "states" (depthwise) for dws; "kernel" for full.

Deliberate choices and deviations:

* Discretizations: the official rule is "mamba" (exact A, B_bar = dt B), which the official code calls
  a "simplified zero-order hold" (it is not exact ZOH, reference/README.md §mamba-rule). It is the default here. "zoh",
  "bilinear" and "dirac" are honoured for real (lrnnx accepts the argument and ignores it): gamma is
  complex for zoh and bilinear, and then sits inside the real part, Re(gamma a_bar^l).
* The core is the official ``Kernelizer`` (the linear SSM). In dws mode the official ``SSMLayer`` then
  applies its ``mixer``: BatchNorm + ReLU (always, in the official code) and a pointwise Conv1d (C_in -> C_out).
  Being nonlinear, BatchNorm + ReLU cannot be part of an LTI core, and the Conv1d comes after them, so
  the whole mixer is left to the layer: the dws core here is the depthwise SSM alone (as in lrnnx).
* d_state counts state channels as in lrnnx (J), not real state dimensions: the core holds S complex
  lanes (table above). Its default (None) is the mode's natural value: 1 for pointwise and neck (the
  official ``state_blocks=None -> 1``), H for dws, H*H for full; other values are refused for dws/full.
  sub_state_dim defaults to 16 (the official README's ``num_states``).
* Channels-last (B, L, H) instead of the official (B, C, L); C_in = C_out = d_model; no D (the
  official layer has none).
* lrnnx (reference/README.md §Other-libraries) departs from the official code: a_im = pi m / M, no
  softplus on the real part, E ~
  N(0, 2) in every mode, kaiming B/C in neck, dt per (out, in) pair in full. The reference follows the
  official code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reference._checks import as_array, positive_int
from reference.convolution import fft_conv
from reference.discretization import discretize_diagonal
from reference.init import softplus, softplus_inverse
from reference.models.lti._base import LTIModel
from reference.response import DiscreteSSM

__all__ = ["Centaurus", "CentaurusParams"]

CONNECTIVITIES = ("pointwise", "neck", "dws", "full")
CONTRACTION_ORDERS = ("auto", "kernel", "states")


@dataclass
class CentaurusParams:
    """The parameters of a Centaurus core, in the official code's names and shapes (module docstring).
    ``B`` and ``C`` are None in dws and full modes, ``E`` is None in pointwise mode."""

    A: np.ndarray  # (..., 2): [a_re, a_im] per lane; lambda = -softplus(a_re) + i a_im
    log_dt: np.ndarray  # per mode, see the table
    B: np.ndarray | None = None  # (J*M, H) pointwise, (J, H) neck
    C: np.ndarray | None = None  # (H, J*M) pointwise, (H, J) neck
    E: np.ndarray | None = None  # (J, M) neck, (H, M) dws, (H, H, M) full


class Centaurus(LTIModel):
    """Centaurus core (diagonal lanes, real part of each, real weights); see the module docstring.

    Args:
        d_model: H = C_in = C_out.
        d_state: J, the number of state channels (None: 1 for pointwise/neck, H for dws, H*H for full).
        discretization: "mamba" (default, the official rule), "zoh", "bilinear" or "dirac".
        seed: seed of ``np.random.default_rng`` (draws C and E where the official init is random).
        mode: "pointwise" (default, the official ``mode='s5'``, also accepted), "neck", "dws" or "full".
        sub_state_dim: M, the lanes per state channel (official ``num_states``; default 16).
        dt_min, dt_max: ends of the deterministic geometric range of initial steps (official 1e-3, 1e-1).
    """

    discretizations = ("mamba", "zoh", "bilinear", "dirac")
    default_discretization = "mamba"
    modes = ("convolution", "recurrence", "scan")

    def __init__(
        self,
        d_model: int,
        d_state: int | None = None,
        *,
        discretization: str | None = None,
        seed: int = 0,
        mode: str = "pointwise",
        sub_state_dim: int = 16,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
    ):
        if mode == "s5":
            mode = "pointwise"
        if mode not in CONNECTIVITIES:
            raise ValueError(
                f"mode: Centaurus supports {list(CONNECTIVITIES)} ('s5' is accepted for 'pointwise'), got {mode!r}"
            )
        H = positive_int(d_model, "d_model")
        natural = {"pointwise": 1, "neck": 1, "dws": H, "full": H * H}[mode]
        super().__init__(d_model, natural if d_state is None else d_state, discretization=discretization, seed=seed)
        if mode == "dws" and self.d_state != H:
            raise ValueError(
                f"d_state: Centaurus mode 'dws' has one state channel per input channel, so it needs "
                f"d_state == d_model = {H}, got {self.d_state}"
            )
        if mode == "full" and self.d_state != H * H:
            raise ValueError(
                f"d_state: Centaurus mode 'full' has one state channel per (output, input) pair, so it needs "
                f"d_state == d_model**2 = {H * H}, got {self.d_state}"
            )
        self.mode = mode
        self.sub_state_dim = positive_int(sub_state_dim, "sub_state_dim")
        for name, value in (("dt_min", dt_min), ("dt_max", dt_max)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
                np.isfinite(value) and value > 0
            ):
                raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
        if dt_min > dt_max:
            raise ValueError(f"dt_min: expected dt_min <= dt_max, got dt_min={dt_min} > dt_max={dt_max}")
        self.dt_min, self.dt_max = float(dt_min), float(dt_max)

        J, M = self.d_state, self.sub_state_dim
        rng = np.random.default_rng(seed)

        def steps(n):  # (n,) log dt, geometrically spaced
            return np.log(np.geomspace(self.dt_min, self.dt_max, n))

        A_lane = np.stack([softplus_inverse(0.5) * np.ones(M), np.pi * np.arange(M)], axis=-1)  # (M, 2)
        if mode == "pointwise":
            log_dt = np.repeat(steps(J), M)  # (J*M,)
            self.params = CentaurusParams(
                A=np.tile(A_lane, (J, 1)),  # (J*M, 2)
                log_dt=log_dt,
                B=np.ones((J * M, H)) / np.sqrt(H),  # (J*M, H)
                C=rng.normal(size=(H, J * M)) * np.sqrt(2.0 / (J * M)),  # (H, J*M)
            )
        elif mode == "neck":
            C = rng.normal(size=(H, J)) * np.sqrt(2.0 / (J * M))  # (H, J)
            E = rng.normal(size=(J, M)) * np.sqrt(2.0)  # (J, M)
            self.params = CentaurusParams(
                A=np.tile(A_lane, (J, 1, 1)),  # (J, M, 2)
                log_dt=steps(J),  # (J,)
                B=np.ones((J, H)) / np.sqrt(H),  # (J, H)
                C=C,
                E=E,
            )
        elif mode == "dws":
            self.params = CentaurusParams(
                A=np.tile(A_lane, (H, 1, 1)),  # (H, M, 2)
                log_dt=np.repeat(steps(H)[:, None], M, axis=1),  # (H, M)
                E=np.ones((H, M)) / np.sqrt(M),  # (H, M)
            )
        else:  # full
            self.params = CentaurusParams(
                A=np.tile(A_lane, (H, H, 1, 1)),  # (H, H, M, 2)
                log_dt=np.repeat(steps(H)[:, None], M, axis=1),  # (H, M)
                E=np.ones((H, H, M)) / np.sqrt(H),  # (H, H, M)
            )

    # -- parameters -> state channels ------------------------------------------------------------
    def _expected_shapes(self) -> dict:
        H, J, M = self.d_model, self.d_state, self.sub_state_dim
        return {
            "pointwise": {"A": (J * M, 2), "log_dt": (J * M,), "B": (J * M, H), "C": (H, J * M), "E": None},
            "neck": {"A": (J, M, 2), "log_dt": (J,), "B": (J, H), "C": (H, J), "E": (J, M)},
            "dws": {"A": (H, M, 2), "log_dt": (H, M), "B": None, "C": None, "E": (H, M)},
            "full": {"A": (H, H, M, 2), "log_dt": (H, M), "B": None, "C": None, "E": (H, H, M)},
        }[self.mode]

    def _checked_params(self) -> dict:
        """The parameters as real arrays of the mode's shapes (the user may have replaced them)."""
        out = {}
        for name, shape in self._expected_shapes().items():
            value = getattr(self.params, name)
            if shape is None:
                if value is not None:
                    raise ValueError(f"params.{name}: Centaurus mode {self.mode!r} has no {name}; expected None")
                continue
            if value is None:
                raise ValueError(f"params.{name}: Centaurus mode {self.mode!r} needs an array of shape {shape}")
            arr = as_array(value, f"params.{name}", complex_ok=False)
            if arr.shape != shape:
                raise ValueError(f"params.{name}: expected shape {shape} in mode {self.mode!r}, got {arr.shape}")
            out[name] = arr
        return out

    def eigenvalues(self) -> np.ndarray:
        """lambda = -softplus(a_re) + i a_im of every lane, in the shape of ``params.A`` without its last axis."""
        A = self._checked_params()["A"]
        return -softplus(A[..., 0]) + 1j * A[..., 1]

    def state_channels(self):
        """The core as state channels: ``(Lambda, dt, E)`` each ``(J', M')`` and ``P_in (J', H)``,
        ``P_out (H, J')`` (module docstring)."""
        p = self._checked_params()
        H, M = self.d_model, self.sub_state_dim
        Lambda = self.eigenvalues()
        dt = np.exp(p["log_dt"])
        if self.mode == "pointwise":
            Lambda, dt = Lambda[:, None], dt[:, None]  # (J*M, 1): every lane its own channel
            E = np.ones_like(dt)  # (J*M, 1)
            P_in, P_out = p["B"], p["C"]  # (J*M, H), (H, J*M)
        elif self.mode == "neck":
            dt = np.broadcast_to(dt[:, None], Lambda.shape)  # (J, M): one step per channel
            E, P_in, P_out = p["E"], p["B"], p["C"]  # (J, M), (J, H), (H, J)
        elif self.mode == "dws":
            E = p["E"]  # (H, M)
            P_in = P_out = np.eye(H)  # channel c reads u_c and writes y_c
        else:  # full: channel (d, c) at index d*H + c
            Lambda = Lambda.reshape(H * H, M)  # (H*H, M)
            dt = np.broadcast_to(dt[:, None, :], (H, H, M)).reshape(H * H, M)  # (H*H, M): dt of (d, m)
            E = p["E"].reshape(H * H, M)  # (H*H, M)
            P_in = np.tile(np.eye(H), (H, 1))  # (H*H, H): channel (d, c) reads u_c
            P_out = np.repeat(np.eye(H), H, axis=1)  # (H, H*H): y_d sums the channels (d, .)
        return Lambda, dt, E, P_in, P_out

    def discretized(self) -> tuple[np.ndarray, np.ndarray]:
        """``(a_bar, gamma)`` of every lane, ``(J', M')`` each: B_bar of a lane is gamma times its input row."""
        Lambda, dt, _, _, _ = self.state_channels()
        return discretize_diagonal(Lambda, np.ones_like(Lambda), dt, self.discretization)

    def ssm(self) -> DiscreteSSM:
        """The lanes as one diagonal ``DiscreteSSM``: S lanes (module docstring), readout "re", D = 0."""
        _, _, E, P_in, P_out = self.state_channels()
        a_bar, gamma = self.discretized()  # (J', M')
        J, M = a_bar.shape
        B_bar = (gamma[:, :, None] * P_in[:, None, :]).reshape(J * M, self.d_model)  # (S, H)
        C = (P_out[:, :, None] * E[None, :, :]).reshape(self.d_model, J * M)  # (H, S)
        D = np.zeros((self.d_model, self.d_model))  # (H, H)
        return DiscreteSSM(a_bar.reshape(J * M), B_bar, C, D, readout="re")

    # -- kernels ---------------------------------------------------------------------------------
    def _lane_powers(self, L: int) -> np.ndarray:
        """a_bar^l of every lane, ``(J', M', L)`` complex (= exp(l dt lambda) for the exp rules)."""
        a_bar, _ = self.discretized()  # (J', M')
        return a_bar[..., None] ** np.arange(positive_int(L, "L"))  # (J', M', L)

    def basis(self, L: int) -> np.ndarray:
        """The official basis Re(a_bar^l) of every lane ([Cent-code] ``_K``): ``(J', M', L)`` real."""
        return self._lane_powers(L).real

    def channel_kernels(self, L: int) -> np.ndarray:
        """k_j[l] = sum_m E_jm Re(gamma_jm a_bar_jm^l), one kernel per state channel: ``(L, J')``."""
        _, _, E, _, _ = self.state_channels()
        _, gamma = self.discretized()  # (J', M')
        lanes = (gamma[..., None] * self._lane_powers(L)).real  # (J', M', L)
        return np.einsum("jm,jml->lj", E, lanes)  # (L, J')

    def kernel(self, L: int) -> np.ndarray:
        """K_l = P_out diag(k[l]) P_in: the full kernel ``(L, H, H)`` materialized from the channel
        kernels ([Cent-code] ``_full_k``), without D (there is none)."""
        _, _, _, P_in, P_out = self.state_channels()
        k = self.channel_kernels(L)  # (L, J')
        return np.einsum("oj,lj,ji->loi", P_out, k, P_in)  # (L, H, H)

    # -- the official choice of contraction order -------------------------------------------------
    def contraction_order(self, batch_size: int) -> str:
        """The order [Cent-code] ``padded_fft_conv_opt`` would choose: "kernel" or "states"."""
        batch_size = positive_int(batch_size, "batch_size")
        if self.mode == "dws":
            return "states"
        if self.mode == "full":
            return "kernel"
        channels = self._expected_shapes()["C"][1]  # J*M (pointwise) or J (neck)
        return "kernel" if 2.0 / self.d_model > 1.0 / batch_size + 1.0 / channels else "states"

    def forward_contraction(self, u, order: str = "auto"):
        """The convolution mode with an explicit contraction order, from a zero state.

        ``order``: "kernel" (materialize K (L, H, H), one full FFT convolution), "states" (project onto
        the state channels, depthwise FFT convolution with k_j, project out) or "auto" (the official
        choice, ``contraction_order``). ``u (B, L, H)`` or ``(L, H)``; returns ``y`` of the same shape.
        """
        if order not in CONTRACTION_ORDERS:
            raise ValueError(f"order: expected one of {list(CONTRACTION_ORDERS)}, got {order!r}")
        u = self._check_input(u)
        unbatched = u.ndim == 2
        if unbatched:
            u = u[None]
        if order == "auto":
            order = self.contraction_order(u.shape[0])
        L = u.shape[1]
        if order == "kernel":
            y = fft_conv(u, self.kernel(L))  # (B, L, H)
        else:
            _, _, _, P_in, P_out = self.state_channels()
            z = u @ P_in.T  # (B, L, J'): the input of each state channel
            z = fft_conv(z, self.channel_kernels(L))  # (B, L, J'): depthwise
            y = z @ P_out.T  # (B, L, H)
        return y[0] if unbatched else y
