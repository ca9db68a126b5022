"""S4: the structured state space model with a diagonal-plus-low-rank (DPLR) state matrix.

Paper: Gu, Goel, Re, "Efficiently Modeling Long Sequences with Structured State Spaces" (ICLR 2022,
arXiv 2111.00396): the HiPPO-LegS matrix written as normal plus low rank (§3.1), the bilinear
discretization (eq. 3) and the kernel by truncated generating function, Cauchy kernel and Woodbury
identity (Algorithm 1). Official code followed: state-spaces/s4 ``models/s4/s4.py``
(``SSMKernelDPLR``: ``register_params``, ``_setup_C``, ``_omega``, ``forward``, ``_setup_linear``,
``_step_state_linear``, ``_setup_state``; ``nplr``, ``init_dt``, ``cauchy_naive``), reference/README.md §S4, §HiPPO.

Each channel h = 0..H-1 is its own single-input single-output system of real size N = ``d_state``,
kept in the diagonalized HiPPO basis as N/2 stored complex modes (one of each conjugate pair):

    x'_h = A_h x_h + B_h u_h,     A_h = diag(Lambda_h) - P_h P_h^*    (on the full paired system)
    y_h  = C_h x_h + D_h u_h

The full conjugate-paired system of a channel doubles every stored vector: Lambda_f = [Lambda,
conj(Lambda)], P_f = [P, conj(P)], B_f = [B, conj(B)], C_f = [C, conj(C)] (N complex entries), and
A_f = diag(Lambda_f) - P_f P_f^* is an N x N complex matrix similar to a real one, so every output
is real.

Glossary (code name -> symbol):

    log_A_real   log(-Re Lambda)  ([S4-code] ``A_real`` with the 'exp' transform)           (H, N/2)
    A_imag       -Im Lambda       ([S4-code] ``A_imag``, non-negative: Lambda = -e^log_A_real - i A_imag)
    Lambda       Lambda, the stored diagonal part                                            (H, N/2)
    P            P, the rank-1 part (Q = conj(P), tied as in [S4-code])                      (H, N/2)
    B, C         B and C of the stored modes (C is the plain output matrix, not C-tilde)     (H, N/2)
    log_dt       log Delta, one step per channel ([S4-code] ``inv_dt``, dt_tie=True)         (H,)
    D            the feed-through of each channel                                            (H,)
    A_bar, B_bar the discretized full paired system of one channel                  (H, N, N), (H, N)
    C_tilde      C-tilde = C (I - A_bar^L), the output row that makes the length-L generating
                 function exact at the L-th roots of unity (paper §3.3, [S4-code] ``_setup_C``)
    omega, z     the nodes omega_j = exp(-2 pi i j / L), j = 0..L//2 (rfft half), and
                 z_j = 2 (1 - omega_j) / (1 + omega_j), the bilinear image of omega_j

State layout. ``ssm()`` is the full paired system of every channel, stacked block-diagonally: the
flat state has S = H * N complex entries, h-major; entries h*N + n, n < N/2, are the stored modes of
channel h, entries h*N + N/2 + n their conjugate partners (the layout of [S4-code]'s dense step
mode, state (B, H, N)). The readout is "re": the paired system's output is real and Re drops only
rounding. ``step_linear`` works on the stored half instead, state (B, H, N/2), with 2 Re(C x).

Kernel (``kernel(L)``, the model's own algorithm, reference/README.md §S4):

* bilinear (S4's rule): for z^L = 1, sum_{l<L} C A_bar^l B_bar z^l = C_tilde (I - A_bar z)^{-1} B_bar,
  and with the bilinear A_bar, B_bar,
      (I - omega A_bar)^{-1} B_bar = 2/(1 + omega) (z I - dt A)^{-1} dt B.
  The resolvent of the DPLR matrix comes from the Cauchy sums
      r_ab(z) = dt * sum_{full modes n} a_n b_n / (z - dt Lambda_n),    a in {C_tilde, P^*}, b in {B, P},
  (each stored mode adds its conjugate partner's term v_bar/(z - w_bar); z itself is not conjugated,
  so this is not 2 Re) and the rank-1 Woodbury identity
      k_hat = r_CB - r_CP r_QB / (1 + r_QP),      K_hat(omega) = 2/(1 + omega) k_hat,
  and K = irfft(K_hat, n=L).
* zoh, dirac (no Cauchy form: A_bar is a matrix exponential): the same truncated generating function
  at the roots of unity, K_hat(omega_j) = C_tilde (I - omega_j A_bar)^{-1} B_bar, by dense solves,
  then irfft.
``kernel_brute_force(L)`` gives the same kernel by powers of the dense A_bar of each channel.

Initialization ([S4-code] ``init='legs'``, ``nplr``, ``init_dt``; reference/README.md §HiPPO, §S4): Lambda, P
and B from the diagonalized HiPPO-LegS (``reference.init.nplr_legs``: Lambda = -1/2 + i Im, the half
with Im <= 0, P = V^* P_legs, B = V^* B_legs), the same for every channel; C complex normal with
E|C|^2 = 1 (torch ``randn(cfloat)``); log dt ~ U[log dt_min, log dt_max]; D ~ N(0, 1). Draw order from
``np.random.default_rng(seed)``: log_dt, C (real then imaginary part), D.

Deliberate choices and deviations:

* B_clip: [S4-code] replaces B by Re B + i clip(Im B, -2, 2) (default ``B_clip=2.0``,
  followed here; ``B_clip=None`` keeps V^* B_legs exactly). The clip is a large change and depends on
  the phase the eigen-solver gives each eigenvector, so NumPy's and torch's B differ: copy
  parameters to compare with torch code.
* C, not C-tilde, is the parameter. [S4-code] learns C-tilde itself (created from C at the first
  forward for a fixed length, doubled later); the reference keeps the system's C and forms
  C-tilde = C (I - A_bar^L) for each requested L, as the paper's Algorithm 1 does.
* Discretizations: [S4-code]'s DPLR kernel is bilinear only (reference/README.md §S4). "zoh" and "dirac" are
  offered as extras with the resolvent kernel above (documented, not from the source).
* n_ssm = H, channels = 1, rank = 1, dt_tie = True, dt_transform = 'exp' ([S4-code] defaults;
  its docstring says softplus, its code uses exp). The layer around the core (GELU, GLU;
  reference/README.md §Other-libraries for
  lrnnx's wrapper) is not part of the core.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from reference._checks import as_array, positive_int
from reference.discretization import discretize
from reference.init import log_uniform, nplr_legs
from reference.models.lti._base import LTIModel
from reference.response import DiscreteSSM

__all__ = ["S4", "S4Params", "cauchy_conjugate_pairs"]


@dataclass
class S4Params:
    """The parameters of an S4 layer's SSM core (H = d_model, N = d_state; N/2 stored modes)."""

    log_A_real: np.ndarray  # (H, N/2)  Re Lambda = -exp(log_A_real)
    A_imag: np.ndarray  # (H, N/2)  Im Lambda = -A_imag
    P: np.ndarray  # (H, N/2) complex, rank-1 part
    B: np.ndarray  # (H, N/2) complex
    C: np.ndarray  # (H, N/2) complex
    log_dt: np.ndarray  # (H,)
    D: np.ndarray  # (H,)


def _positive_float(x, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)) or not np.isfinite(x) or x <= 0:
        raise ValueError(f"{name}: expected a finite number > 0, got {x!r}")
    return float(x)


def paired(x: np.ndarray) -> np.ndarray:
    """The full conjugate-paired vector [x, conj(x)] of a stored half, along the last axis."""
    return np.concatenate([x, np.conj(x)], axis=-1)


def cauchy_conjugate_pairs(v: np.ndarray, z: np.ndarray, w: np.ndarray) -> np.ndarray:
    """sum_n [v_n / (z - w_n) + conj(v_n) / (z - conj(w_n))] for each node z ([S4-code] ``cauchy_naive``).

    Args: ``v (..., N/2)`` numerators and ``w (..., N/2)`` poles of the stored modes, ``z (J,)`` nodes.
    Returns ``(..., J)``: the Cauchy sum over the full conjugate-paired system.
    """
    v_f, w_f = paired(v), paired(w)  # (..., N)
    return np.sum(v_f[..., None] / (z - w_f[..., None]), axis=-2)  # (..., J)


class S4(LTIModel):
    """S4 (DPLR state matrix per channel, HiPPO-LegS init, bilinear by default); see the module docstring.

    Args:
        d_model: H, the number of channels.
        d_state: N, the full real state size per channel (even: N/2 complex modes are stored).
        discretization: "bilinear" (default, the paper's rule), "zoh" or "dirac".
        seed: seed of ``np.random.default_rng`` for the initialization.
        dt_min, dt_max: range of the log-uniform initial step (default 1e-3, 1e-1).
        B_clip: clip of Im B at initialization (default 2.0 as [S4-code]; None for no clipping).
    """

    discretizations = ("bilinear", "zoh", "dirac")
    default_discretization = "bilinear"
    #: its kernel is built by a per-rule algorithm (Cauchy + Woodbury, block exponential): no registered rules
    registered_rules = False
    modes = ("convolution", "recurrence")

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        discretization: str | None = None,
        seed: int = 0,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        B_clip: float | None = 2.0,
    ):
        super().__init__(d_model, d_state, discretization=discretization, seed=seed)
        if self.d_state % 2:
            raise ValueError(
                f"d_state: S4 stores one mode per conjugate pair and needs an even full state size, "
                f"got {self.d_state}"
            )
        dt_min = _positive_float(dt_min, "dt_min")
        dt_max = _positive_float(dt_max, "dt_max")
        if dt_min > dt_max:
            raise ValueError(f"dt_min: expected dt_min <= dt_max, got dt_min={dt_min} > dt_max={dt_max}")
        if B_clip is not None:
            B_clip = _positive_float(B_clip, "B_clip")
        self.dt_min, self.dt_max, self.B_clip = dt_min, dt_max, B_clip

        H, N, N2 = self.d_model, self.d_state, self.d_state // 2
        Lambda, _, B_tilde, P_tilde = nplr_legs(N)  # (N,) sorted by Im: the first N/2 have Im <= 0
        Lambda, B, P = Lambda[:N2], B_tilde[:N2], P_tilde[:N2]  # (N/2,)
        if B_clip is not None:
            B = B.real + 1j * np.clip(B.imag, -B_clip, B_clip)  # (N/2,)
        rng = np.random.default_rng(seed)
        log_dt = np.log(log_uniform(rng, dt_min, dt_max, H))  # (H,)
        C = (rng.normal(size=(H, N2)) + 1j * rng.normal(size=(H, N2))) / np.sqrt(2.0)  # (H, N/2)
        D = rng.normal(size=H)  # (H,)
        self.params = S4Params(
            log_A_real=np.tile(np.log(-Lambda.real), (H, 1)),  # (H, N/2)
            A_imag=np.tile(-Lambda.imag, (H, 1)),  # (H, N/2)
            P=np.tile(P, (H, 1)).astype(np.complex128),  # (H, N/2)
            B=np.tile(B, (H, 1)).astype(np.complex128),  # (H, N/2)
            C=C,
            log_dt=log_dt,
            D=D,
        )

    # -- the continuous and the discrete system --------------------------------------------------
    def _checked_params(self):
        """The parameters as arrays of the expected shapes (the user may have replaced them)."""
        H, N2 = self.d_model, self.d_state // 2
        p = self.params
        out = {}
        for name in ("log_A_real", "A_imag", "P", "B", "C", "log_dt", "D"):
            shape = (H,) if name in ("log_dt", "D") else (H, N2)
            arr = as_array(getattr(p, name), f"params.{name}", complex_ok=name in ("P", "B", "C"))
            if arr.shape != shape:
                raise ValueError(f"params.{name}: expected shape {shape}, got {arr.shape}")
            out[name] = arr
        return out

    def eigenvalues(self) -> np.ndarray:
        """Lambda = -exp(log_A_real) - i A_imag, the stored diagonal part ``(H, N/2)``."""
        p = self._checked_params()
        return -np.exp(p["log_A_real"]) - 1j * p["A_imag"]  # (H, N/2)

    def state_matrix(self) -> np.ndarray:
        """A_f = diag(Lambda_f) - P_f P_f^* of every channel: the continuous full paired ``(H, N, N)``."""
        P_f = paired(self._checked_params()["P"])  # (H, N)
        Lambda_f = paired(self.eigenvalues())  # (H, N)
        eye = np.eye(self.d_state)  # (N, N)
        return Lambda_f[:, :, None] * eye - P_f[:, :, None] * P_f[:, None, :].conj()  # (H, N, N)

    def discretized(self) -> tuple[np.ndarray, np.ndarray]:
        """``(A_bar (H, N, N), B_bar (H, N))``: each channel's full paired system discretized densely
        with its own step by ``reference.discretize``."""
        p = self._checked_params()
        A = self.state_matrix()  # (H, N, N)
        B_f = paired(p["B"])  # (H, N)
        dt = np.exp(p["log_dt"])  # (H,)
        blocks = [discretize(A[h], B_f[h], dt[h], self.discretization) for h in range(self.d_model)]
        A_bar = np.stack([b[0] for b in blocks])  # (H, N, N)
        B_bar = np.stack([b[1] for b in blocks])  # (H, N)
        return A_bar, B_bar

    def ssm(self) -> DiscreteSSM:
        """All channels as one block-diagonal dense ``DiscreteSSM`` (S = H*N complex, h-major, readout re)."""
        H, N = self.d_model, self.d_state
        A_bar, B_bar = self.discretized()  # (H, N, N), (H, N)
        C_f = paired(self._checked_params()["C"])  # (H, N)
        eye = np.eye(H)  # (H, H)
        A_big = np.einsum("hg,hmn->hmgn", eye, A_bar).reshape(H * N, H * N)  # (S, S) block diagonal
        B_big = (B_bar[:, :, None] * eye[:, None, :]).reshape(H * N, H)  # (S, H): block h reads u_h
        C_big = (eye[:, :, None] * C_f[None, :, :]).reshape(H, H * N)  # (H, S): y_h reads block h
        return DiscreteSSM(A_big, B_big, C_big, np.diag(self._checked_params()["D"]), readout="re")

    def to_dlti(self):
        """The core as a real ``scipy.signal.dlti`` with N real states per channel (minimal).

        The paired state of a channel is x_f = [x; conj(x)] for real input, so x = p + i q gives the real
        coordinates: x_f = T [p; q] with T = [[I, iI], [I, -iI]] (N/2 blocks). T^{-1} A_bar T,
        T^{-1} B_bar and Re(C_f T) are real, and each stored mode becomes a real 2x2 rotation-and-decay
        block mixed by the rank-1 part. (The generic realification of ``DiscreteSSM`` would double every
        pole, which is exact but not minimal.)
        """
        sys = self.ssm()
        half = np.eye(self.d_state // 2)  # (N/2, N/2)
        T_channel = np.block([[half, 1j * half], [half, -1j * half]])  # (N, N)
        T = np.kron(np.eye(self.d_model), T_channel)  # (S, S), block diagonal like A_bar
        T_inv = np.linalg.inv(T)  # (S, S)
        A = T_inv @ sys.A_bar @ T  # (S, S), real up to rounding
        B = T_inv @ sys.B_bar  # (S, H)
        C = sys.C @ T  # (H, S)
        for name, m in (("A_bar", A), ("B_bar", B), ("C", C)):
            if np.abs(m.imag).max() > 1e-9 * max(1.0, np.abs(m).max()):
                raise AssertionError(f"{name}: the paired system is not conjugate-symmetric")  # pragma: no cover
        return DiscreteSSM(A.real, B.real, C.real, sys.D).to_dlti()

    # -- kernels ---------------------------------------------------------------------------------
    def _depthwise(self, k: np.ndarray) -> np.ndarray:
        """A per-channel kernel ``(H, L)`` as the model's ``(L, H, H)`` kernel (diagonal in the channels)."""
        L = k.shape[1]
        K = np.zeros((L, self.d_model, self.d_model))  # (L, H, H)
        K[:, np.arange(self.d_model), np.arange(self.d_model)] = k.T
        return K

    def c_tilde(self, L: int) -> np.ndarray:
        """C_tilde = C_f (I - A_bar^L) of every channel, on the full paired system ``(H, N)``."""
        return self._c_tilde(self.discretized()[0], positive_int(L, "L"))

    def _c_tilde(self, A_bar: np.ndarray, L: int) -> np.ndarray:
        C_f = paired(self._checked_params()["C"])  # (H, N)
        A_bar_L = np.linalg.matrix_power(A_bar, L)  # (H, N, N)
        return C_f - np.einsum("hm,hmn->hn", C_f, A_bar_L)  # (H, N)

    def kernel(self, L: int) -> np.ndarray:
        """The S4 kernel through the generating function at the L-th roots of unity (module docstring):
        Cauchy + Woodbury for bilinear, dense resolvent solves for zoh / dirac. ``(L, H, H)``, without D."""
        L = positive_int(L, "L")
        N2 = self.d_state // 2
        A_bar, B_bar = self.discretized()  # (H, N, N), (H, N)
        C_tilde_f = self._c_tilde(A_bar, L)  # (H, N)
        omega = np.exp(-2j * np.pi * np.arange(L // 2 + 1) / L)  # (J,) rfft nodes, J = L//2 + 1
        if self.discretization == "bilinear":
            p = self._checked_params()
            dt = np.exp(p["log_dt"])[:, None]  # (H, 1)
            dt_Lambda = dt * self.eigenvalues()  # (H, N/2) poles of the Cauchy sums
            # The computed omega_{L/2} = exp(-i pi) is -1 - 1.2e-16 i, never exactly -1, so z stays
            # finite there; 2/(1 + omega) then cancels the same (1 + omega) exactly up to rounding.
            z = 2.0 * (1.0 - omega) / (1.0 + omega)  # (J,)
            C_tilde = C_tilde_f[:, :N2]  # (H, N/2): C_tilde_f is conjugate-paired, keep the stored half
            Q = np.conj(p["P"])  # (H, N/2): the row vector of the low-rank part, Q = conj(P)
            r = {}
            for a_name, a in (("C", C_tilde), ("Q", Q)):
                for b_name, b in (("B", p["B"]), ("P", p["P"])):
                    r[a_name + b_name] = cauchy_conjugate_pairs(dt * a * b, z, dt_Lambda)  # (H, J)
            k_hat = r["CB"] - r["CP"] * r["QB"] / (1.0 + r["QP"])  # (H, J) rank-1 Woodbury
            K_hat = k_hat * 2.0 / (1.0 + omega)  # (H, J) undo the bilinear change of variable
        else:
            eye = np.eye(self.d_state)  # (N, N)
            M = eye - omega[:, None, None, None] * A_bar[None]  # (J, H, N, N): I - omega A_bar
            X = np.linalg.solve(M, np.broadcast_to(B_bar[None, :, :, None], M.shape[:-1] + (1,)))  # (J, H, N, 1)
            K_hat = np.einsum("hn,jhn->hj", C_tilde_f, X[..., 0])  # (H, J)
        k = scipy.fft.irfft(K_hat, n=L, axis=-1)  # (H, L)
        return self._depthwise(k)

    def kernel_brute_force(self, L: int) -> np.ndarray:
        """K_l = Re(C_f A_bar^l B_bar) per channel by repeated multiplication with the dense A_bar;
        ``(L, H, H)``, without D (the oracle for ``kernel``)."""
        L = positive_int(L, "L")
        A_bar, x = self.discretized()  # (H, N, N), (H, N): x = A_bar^l B_bar
        C_f = paired(self._checked_params()["C"])  # (H, N)
        k = np.empty((self.d_model, L))  # (H, L)
        for ell in range(L):
            k[:, ell] = np.einsum("hn,hn->h", C_f, x).real  # (H,)
            x = np.einsum("hmn,hn->hm", A_bar, x)  # (H, N)
        return self._depthwise(k)

    # -- the O(N) step of the bilinear DPLR system ----------------------------------------------
    def initial_state_linear(self, batch_size: int) -> np.ndarray:
        """Zeros of the stored-half state of ``step_linear``: ``(batch_size, H, N/2)`` complex."""
        return np.zeros((positive_int(batch_size, "batch_size"), self.d_model, self.d_state // 2), complex)

    def step_linear(self, u_t, state):
        """One bilinear step in O(N) on the stored half (reference/README.md §S4; [S4-code] ``_step_state_linear``).

        The bilinear recurrence is (2/dt - A) x_k = (2/dt + A) x_{k-1} + 2 B u_k. With A = Lambda - P P^*,
        the right side is E x - P (P^* x) + 2 B u (E = 2/dt + Lambda), and the left matrix
        D_dt^{-1} + P P^* (D_dt = (2/dt - Lambda)^{-1}) is inverted by Woodbury. Every inner product
        P^* x over the full paired system is 2 Re of the sum over the stored half.

        Args: ``u_t (B, H)``; ``state (B, H, N/2)`` complex (the stored modes of the dense state).
        Returns ``(y_t (B, H), state (B, H, N/2))`` with y_t = 2 Re(C x_k) + D u_t.
        """
        if self.discretization != "bilinear":
            raise ValueError(
                f"discretization: step_linear is the bilinear DPLR step; this model uses {self.discretization!r} "
                "(use step, the dense recurrence)"
            )
        H, N2 = self.d_model, self.d_state // 2
        u_t = as_array(u_t, "u_t", complex_ok=False)
        if u_t.ndim != 2 or u_t.shape[1] != H:
            raise ValueError(f"u_t: expected shape (B, {H}), got {u_t.shape}")
        x = as_array(state, "state")
        if x.shape != (u_t.shape[0], H, N2):
            raise ValueError(f"state: expected shape {(u_t.shape[0], H, N2)} (B, H, N/2), got {x.shape}")
        p = self._checked_params()
        P, B = p["P"], p["B"]  # (H, N/2)
        Lambda = self.eigenvalues()  # (H, N/2)
        two_over_dt = 2.0 / np.exp(p["log_dt"])[:, None]  # (H, 1)
        E = two_over_dt + Lambda  # (H, N/2)
        D_dt = 1.0 / (two_over_dt - Lambda)  # (H, N/2)

        def full_inner(a, v):  # sum over the full paired system of a_f * v_f = 2 Re(sum_half a v)
            return 2.0 * np.sum(a * v, axis=-1).real

        v = E * x - P * full_inner(np.conj(P), x)[..., None] + 2.0 * B * u_t[..., None]  # (B, H, N/2)
        denom = 1.0 + full_inner(np.conj(P) * D_dt * P, 1.0)  # (H,)
        x = D_dt * (v - P * (full_inner(np.conj(P) * D_dt, v) / denom)[..., None])  # (B, H, N/2)
        y = 2.0 * np.sum(p["C"] * x, axis=-1).real + p["D"] * u_t  # (B, H)
        return y, x
