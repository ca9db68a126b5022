"""S5: one multi-input multi-output diagonal SSM shared by all channels.

Paper: Smith, Warrington, Linderman, "Simplified State Space Layers for Sequence Modeling" (ICLR 2023):
§3 (the MIMO SSM, diagonalized HiPPO-N initialization, per-state steps, parallel scan) and its
block-diagonal initialization. Official code followed: lindermanlab/S5 ``s5/ssm.py`` (``S5SSM``,
``discretize_zoh``, ``discretize_bilinear``, ``apply_ssm``), ``s5/ssm_init.py`` (``make_DPLR_HiPPO``,
``init_VinvB``, ``init_CV``, ``trunc_standard_normal``, ``init_log_steps``), ``s5/train.py`` (blocks,
conj_sym); reference/README.md §S5, §HiPPO.

The system, with P = ``d_state`` the full state size and P_s stored modes:

    x_k = Lambda_bar * x_{k-1} + B_bar u_k         x in C^{P_s}, u_k in R^H
    y_k = 2 Re(C_tilde x_k) + D * u_k             (conj_sym=True: P_s = P/2 stored, one per pair)
    y_k =   Re(C_tilde x_k) + D * u_k             (conj_sym=False: all P_s = P modes)

Its kernel is a full H x H matrix per lag, K_l = 2 Re(C_tilde diag(Lambda_bar^l) B_bar) (or Re),
which ``kernel`` computes as a Vandermonde product (S5 itself never forms it: the official code runs
the associative scan, which is this model's default mode).

Irregular time (the S5 paper's variable observation intervals; reference/README.md §S5): with the gaps
``integration_timesteps`` tau, event k is discretized with its own step dt * tau_k,

    x_k = Lambda_bar_k * x_{k-1} + B_bar_k u_k,    (Lambda_bar_k, B_bar_k) = rule(Lambda, B_tilde, dt * tau_k)

in the "scan" and "recurrence" modes and in ``step`` (the "convolution" mode has one kernel for every step
and refuses gaps). ``discretization="async"`` decays over dt * tau_k but injects one nominal step of input,
B_bar = (exp(dt Lambda) - 1) / Lambda * B_tilde; without gaps (every gap 1) it is the zoh system.

Glossary (code name -> symbol):

    Lambda_re, Lambda_im   Re and Im of Lambda, the stored continuous-time eigenvalues      (P_s,)
    B_tilde                B~ = V^{-1} B, the input matrix in the eigenbasis, complex        (P_s, H)
    C_tilde                C~ = C V, the output matrix in the eigenbasis, complex            (H, P_s)
    C_tilde_reverse        the second C~ of a bidirectional S5 (reads the reversed-time scan)
    D                      the feed-through, one per channel (a diagonal H x H matrix)        (H,)
    log_step               log Delta, one step per stored state                              (P_s,)
    V                      the block-diagonal eigenvectors of the kept modes                 (P, P_s)
    J (blocks)             number of HiPPO-N blocks on the diagonal of A, block size P/J

State layout: the flat state is the P_s stored modes, block-major (block j holds entries
j*P_s/J .. (j+1)*P_s/J - 1), in the order ``reference.init.nplr_legs`` sorts one block's modes.

Initialization ([S5-code] with ``train.py``): per block, the HiPPO-LegS normal part of size P/J is
diagonalized (``nplr_legs``); Lambda = its eigenvalues (with conj_sym only the first half, Im <= 0),
tiled J times; V = blockdiag of the kept eigenvector columns, V^{-1} = V^* (rows of the kept modes).
B: real (P, H), JAX ``lecun_normal`` (a normal truncated to +-2 standard deviations, rescaled to
variance 1/fan_in, fan_in = P); B_tilde = V^* B. C (``C_init``):
"trunc_standard_normal" (default: real and imaginary parts of a complex (H, P) matrix from
``lecun_normal`` per row, variance 1/P; C_tilde = C V), "lecun_normal" (the same over the whole
(H, P, 2) array, variance 1/(H P); C_tilde = C V), "complex_normal" (C_tilde drawn directly,
each part N(0, 1/2), no V). D ~ N(0, 1), log_step ~ U[log dt_min, log dt_max]. Draw order from
``np.random.default_rng(seed)``: B, C, C for the reverse direction (bidirectional only), D, log_step.

Deliberate choices and deviations:

* ``blocks`` defaults to 1 (one HiPPO-N block of size P): the only value valid for every state size.
  [S5-code] ``run_train.py`` uses P = 256 with blocks = 8; pass ``blocks=8`` to reproduce it.
* The random numbers differ from JAX's (NumPy's generator); the eigenvector phases from NumPy's
  eigh may differ from JAX's, which changes B_tilde and C_tilde but not the distribution of the
  system (reference/README.md §HiPPO: compare by copying parameters).
* "dirac" is not in [S5-code] (zoh, bilinear); it is the extra rule of reference/README.md §dirac.
* Bidirectional (``bidirectional=True``, [S5-code] ``apply_ssm``): a second scan runs backwards in time
  over the same (Lambda_bar, B_bar u) and is read by C_tilde_reverse: y_k = read(C~ x_k + C~_r x^r_k)
  + D u_k with x^r_k = Lambda_bar x^r_{k+1} + B_bar u_k. Such a model is NOT causal: y_k depends on
  u_j for j > k. ``forward`` runs it on whole sequences (all three modes); everything that describes
  a causal system (``ssm``, ``step``, ``kernel``, responses, ``to_dlti``, initial or returned states)
  raises a ValueError for it.
* lrnnx's LTI ``S5`` is a different model (reference/README.md §Other-libraries: aTENNuate-style init,
  real B, full H x H D, no
  conjugate symmetry); its bilinear rule has the sign of A flipped. The reference follows
  [S5-code]; lrnnx's LTV S5 keeps d_state = the stored size, here d_state is the full P.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.stats

from reference._checks import as_array, positive, positive_int
from reference.convolution import fft_conv
from reference.discretization import discretize_diagonal
from reference.init import nplr_legs
from reference.models.lti._base import LTIModel
from reference.models.ltv._base import check_timesteps
from reference.response import DiscreteSSM
from reference.scan import associative_scan, linear_scan

__all__ = ["S5", "S5Params"]

C_INITS = ("trunc_standard_normal", "lecun_normal", "complex_normal")

# Standard deviation of a standard normal truncated to [-2, 2]; JAX's truncated lecun_normal divides by it.
_TRUNC_STD = float(scipy.stats.truncnorm.std(-2.0, 2.0))


@dataclass
class S5Params:
    """The parameters of an S5 SSM (H = d_model, P_s = stored modes)."""

    Lambda_re: np.ndarray  # (P_s,)
    Lambda_im: np.ndarray  # (P_s,)
    B_tilde: np.ndarray  # (P_s, H) complex
    C_tilde: np.ndarray  # (H, P_s) complex
    D: np.ndarray  # (H,)
    log_step: np.ndarray  # (P_s,)
    C_tilde_reverse: np.ndarray | None = None  # (H, P_s) complex, bidirectional only


def _lecun_normal(rng: np.random.Generator, shape, fan_in: int) -> np.ndarray:
    """JAX ``lecun_normal``: a standard normal truncated to [-2, 2], scaled to variance 1/fan_in."""
    z = scipy.stats.truncnorm.rvs(-2.0, 2.0, size=shape, random_state=rng)
    return z / _TRUNC_STD / np.sqrt(fan_in)


def _flag(x, name: str) -> bool:
    if not isinstance(x, (bool, np.bool_)):
        raise ValueError(f"{name}: expected True or False, got {x!r}")
    return bool(x)


def _positive_float(x, name: str) -> float:
    value = positive(x, name)
    if value.ndim != 0:
        raise ValueError(f"{name}: expected a single number > 0, got shape {value.shape}")
    return float(value)


class S5(LTIModel):
    """S5 (MIMO diagonal SSM with HiPPO-N blocks); see the module docstring.

    Args:
        d_model: H, input and output width.
        d_state: P, the full state size (``ssm_size_base`` in [S5-code]; default 256).
        discretization: "zoh" (default), "bilinear", "dirac", or "async" (irregular time, module docstring).
        seed: seed of ``np.random.default_rng`` for the initialization.
        blocks: J, the number of HiPPO-N blocks (must divide P; with conj_sym each block size P/J
            must be even). Default 1.
        conj_sym: store one mode per conjugate pair and read 2 Re (default True) or all P modes, Re.
        C_init: "trunc_standard_normal" (default), "lecun_normal" or "complex_normal".
        dt_min, dt_max: range of the log-uniform initial steps (default 1e-3, 1e-1).
        step_rescale: multiplies every step (default 1.0, [S5-code] ``step_rescale``).
        clip_eigs: clip Re Lambda to <= -1e-4 when the system is built (default False).
        bidirectional: add a reversed-time scan read by a second C (default False; not causal).
    """

    discretizations = ("zoh", "bilinear", "dirac", "async")
    default_discretization = "zoh"
    modes = ("scan", "recurrence", "convolution")

    def __init__(
        self,
        d_model: int,
        d_state: int = 256,
        *,
        discretization: str | None = None,
        seed: int = 0,
        blocks: int = 1,
        conj_sym: bool = True,
        C_init: str = "trunc_standard_normal",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        step_rescale: float = 1.0,
        clip_eigs: bool = False,
        bidirectional: bool = False,
    ):
        super().__init__(d_model, d_state, discretization=discretization, seed=seed)
        self.conj_sym = _flag(conj_sym, "conj_sym")
        self.clip_eigs = _flag(clip_eigs, "clip_eigs")
        self.bidirectional = _flag(bidirectional, "bidirectional")
        blocks = positive_int(blocks, "blocks")
        P, H = self.d_state, self.d_model
        if P % blocks:
            raise ValueError(f"blocks: must divide d_state = {P}, got {blocks}")
        block = P // blocks
        if self.conj_sym and block % 2:
            raise ValueError(
                f"d_state: with conj_sym=True each of the {blocks} blocks keeps one mode per conjugate pair, "
                f"so the block size d_state/blocks must be even, got {P}/{blocks} = {block}"
            )
        if C_init not in C_INITS:
            raise ValueError(f"C_init: expected one of {list(C_INITS)}, got {C_init!r}")
        dt_min = _positive_float(dt_min, "dt_min")
        dt_max = _positive_float(dt_max, "dt_max")
        if dt_min > dt_max:
            raise ValueError(f"dt_min: expected dt_min <= dt_max, got dt_min={dt_min} > dt_max={dt_max}")
        self.blocks, self.C_init, self.dt_min, self.dt_max = blocks, C_init, dt_min, dt_max
        self.step_rescale = _positive_float(step_rescale, "step_rescale")

        # HiPPO-N eigenpairs of one block; conj_sym keeps the first half (Im <= 0).
        kept = block // 2 if self.conj_sym else block
        Lambda_block, V_block, _, _ = nplr_legs(block)  # (block,), (block, block)
        Lambda = np.tile(Lambda_block[:kept], blocks)  # (P_s,)
        self.V = scipy.linalg.block_diag(*([V_block[:, :kept]] * blocks))  # (P, P_s)
        V_inv = self.V.conj().T  # (P_s, P)

        rng = np.random.default_rng(seed)
        B = _lecun_normal(rng, (P, H), fan_in=P)  # (P, H) real
        B_tilde = V_inv @ B  # (P_s, H)
        C_tilde = self._draw_C(rng)  # (H, P_s)
        C_rev = self._draw_C(rng) if self.bidirectional else None  # (H, P_s)
        D = rng.normal(size=H)  # (H,)
        log_step = rng.uniform(np.log(dt_min), np.log(dt_max), size=Lambda.shape[0])  # (P_s,)
        self.params = S5Params(
            Lambda_re=Lambda.real.copy(),
            Lambda_im=Lambda.imag.copy(),
            B_tilde=B_tilde,
            C_tilde=C_tilde,
            D=D,
            log_step=log_step,
            C_tilde_reverse=C_rev,
        )

    def _draw_C(self, rng: np.random.Generator) -> np.ndarray:
        """C_tilde (H, P_s) by ``self.C_init``."""
        H, P, P_s = self.d_model, self.d_state, self.V.shape[1]
        if self.C_init == "complex_normal":
            parts = rng.normal(scale=np.sqrt(0.5), size=(H, P_s, 2))  # (H, P_s, 2)
            return parts[..., 0] + 1j * parts[..., 1]  # (H, P_s), no V
        if self.C_init == "trunc_standard_normal":
            parts = np.stack([_lecun_normal(rng, (P, 2), fan_in=P) for _ in range(H)])  # (H, P, 2)
        else:  # "lecun_normal" over the (H, P, 2) array: fan_in = P * H
            parts = _lecun_normal(rng, (H, P, 2), fan_in=P * H)  # (H, P, 2)
        C = parts[..., 0] + 1j * parts[..., 1]  # (H, P)
        return C @ self.V  # (H, P_s)

    # -- the continuous and the discrete system --------------------------------------------------
    @property
    def readout(self) -> str:
        return "2re" if self.conj_sym else "re"

    def eigenvalues(self) -> np.ndarray:
        """Lambda = Lambda_re + i Lambda_im (Re clipped to <= -1e-4 with clip_eigs): ``(P_s,)``."""
        re = self.params.Lambda_re
        if self.clip_eigs:
            re = np.minimum(re, -1e-4)  # (P_s,)
        return re + 1j * self.params.Lambda_im  # (P_s,)

    def discretized(self, integration_timesteps=None) -> tuple[np.ndarray, np.ndarray]:
        """``(Lambda_bar (P_s,), B_bar (P_s, H))`` with one step per state, step_rescale * exp(log_step).

        With the gaps ``integration_timesteps`` tau ``(B, L)``, each event k has its own step dt * tau_k:
        ``(Lambda_bar (B, L, P_s), B_bar (B, L, P_s, H))`` (``async``: dt * tau_k for the decay only).
        Without gaps every gap is 1, so an ``async`` S5 is its zoh system."""
        p = self.params
        dt = self.step_rescale * np.exp(p.log_step)  # (P_s,)
        method = self.discretization
        if integration_timesteps is None and method == "async":
            method = "zoh"  # async with unit gaps is zoh exactly (reference/README.md §async)
        return discretize_diagonal(
            self.eigenvalues(), p.B_tilde, dt, method, integration_timesteps=integration_timesteps
        )

    def _system(self, C: np.ndarray, D: np.ndarray) -> DiscreteSSM:
        Lambda_bar, B_bar = self.discretized()  # (P_s,), (P_s, H)
        return DiscreteSSM(Lambda_bar, B_bar, C, D, readout=self.readout)

    def _refuse_bidirectional(self, what: str):
        if self.bidirectional:
            raise ValueError(
                f"bidirectional: {what} describes a causal system, but an S5 with bidirectional=True is not "
                "causal (its output reads a reversed-time scan); use forward on whole sequences"
            )

    def ssm(self) -> DiscreteSSM:
        """The causal core: diagonal Lambda_bar, B_bar, C_tilde, diag(D), readout 2re (conj_sym) or re."""
        self._refuse_bidirectional("ssm()")
        return self._system(self.params.C_tilde, np.diag(self.params.D))

    @staticmethod
    def _vandermonde_kernel(sys: DiscreteSSM, L: int) -> np.ndarray:
        """K_l = read(C diag(Lambda_bar^l) B_bar) by a Vandermonde contraction: ``(L, H_out, H_in)``."""
        V = sys.A_bar[:, None] ** np.arange(L)  # (P_s, L): Lambda_bar^l
        return sys.read(np.einsum("hp,pl,pk->lhk", sys.C, V, sys.B_bar))  # (L, H, H)

    def kernel(self, L: int) -> np.ndarray:
        """K_l = 2 Re(C_tilde diag(Lambda_bar^l) B_bar) (or Re), a full H x H matrix per lag, without D."""
        L = positive_int(L, "L")
        return self._vandermonde_kernel(self.ssm(), L)

    def _check_gaps(self, integration_timesteps, batch: int, length: int | None):
        """The gaps tau as ``(B, L)`` (forward) or ``(B,)`` (step), or None."""
        if integration_timesteps is not None:
            self._refuse_bidirectional("integration_timesteps")
        zero_ok = self.discretization in ("async", "dirac")
        why = f" with discretization {self.discretization!r}: B_bar = 0 would drop that event's input"
        return check_timesteps(integration_timesteps, batch, length, allow_zero=zero_ok, why_not_zero=why)

    def step(self, u_t, state, *, integration_timesteps=None):
        """One step: ``u_t (B, H)``, ``state (B, P_s)`` and the gap before this step ``integration_timesteps
        (B,)`` (None: a gap of 1) -> ``(y_t (B, H), state)``."""
        self._refuse_bidirectional("step")
        if integration_timesteps is None:
            return super().step(u_t, state)
        u_t = as_array(u_t, "u_t", complex_ok=False)
        if u_t.ndim != 2 or u_t.shape[1] != self.d_model:
            raise ValueError(f"u_t: expected shape (B, {self.d_model}), got {u_t.shape}")
        tau = self._check_gaps(integration_timesteps, u_t.shape[0], None)  # (B,)
        x = self._check_state(state, u_t.shape[0], self.ssm(), "state")  # (B, P_s)
        Lambda_bar, B_bar = self.discretized(tau[:, None])  # (B, 1, P_s), (B, 1, P_s, H)
        x = Lambda_bar[:, 0] * x + np.einsum("bph,bh->bp", B_bar[:, 0], u_t)  # (B, P_s)
        y = self.ssm().read(x @ self.params.C_tilde.T) + self.params.D * u_t  # (B, H)
        return y, x

    def _irregular(self, u, tau, x0, parallel: bool):
        """The recurrence with one step per event: x_k = Lambda_bar_k x_{k-1} + B_bar_k u_k, y_k = read(C~ x_k)
        + D u_k, for ``u (B, L, H)``, ``tau (B, L)`` and ``x0 (B, P_s)``. Returns ``(y (B, L, H), x_{L-1})``."""
        Lambda_bar, B_bar = self.discretized(tau)  # (B, L, P_s), (B, L, P_s, H)
        Bu = np.einsum("blph,blh->blp", B_bar, u)  # (B, L, P_s)
        x, xL = (associative_scan if parallel else linear_scan)(Lambda_bar, Bu, x0)  # (B, L, P_s), (B, P_s)
        y = self.ssm().read(x @ self.params.C_tilde.T) + u * self.params.D  # (B, L, H)
        return y, xL

    # -- bidirectional forward ----------------------------------------------------------------------
    def forward(
        self, u, *, integration_timesteps=None, initial_state=None, return_state=False, mode: str | None = None
    ):
        """Run S5 on ``u (B, L, H)`` or ``(L, H)`` in ``mode`` ("scan" default, "recurrence",
        "convolution"). A bidirectional S5 takes no initial state and returns none (it is not causal).

        ``integration_timesteps`` (tau, ``(L,)`` or ``(B, L)``, >= 0; > 0 unless the rule is async or dirac):
        irregular time, event k discretized with the step dt * tau_k (reference/README.md §S5). Only the
        "scan" and "recurrence" modes take gaps."""
        if integration_timesteps is not None:
            return self._forward_irregular(u, integration_timesteps, initial_state, return_state, mode)
        if not self.bidirectional:
            return super().forward(u, initial_state=initial_state, return_state=return_state, mode=mode)
        if initial_state is not None or return_state:
            raise ValueError(
                "initial_state: a bidirectional S5 runs on whole sequences; it takes no initial state and "
                "returns no final state (its reversed-time scan starts at the end of the sequence)"
            )
        u = self._check_input(u)
        unbatched = u.ndim == 2
        u = u[None] if unbatched else u  # (B, L, H)
        mode = self.modes[0] if mode is None else mode
        if mode not in self.modes:
            raise ValueError(f"mode: {type(self).__name__} runs in {list(self.modes)}, got {mode!r}")
        H = self.d_model
        forward_part = self._system(self.params.C_tilde, np.diag(self.params.D))
        reverse_part = self._system(self.params.C_tilde_reverse, np.zeros((H, H)))
        y = self._causal_run(forward_part, u, mode)  # (B, L, H)
        y = y + self._causal_run(reverse_part, u[:, ::-1], mode)[:, ::-1]  # (B, L, H)
        return y[0] if unbatched else y

    __call__ = forward

    def _forward_irregular(self, u, integration_timesteps, initial_state, return_state, mode):
        u = self._check_input(u)
        unbatched = u.ndim == 2
        if unbatched:
            u = u[None]  # (1, L, H)
            if integration_timesteps is not None and np.ndim(integration_timesteps) == 2:
                raise ValueError(
                    f"integration_timesteps: expected shape ({u.shape[1]},) (L,) for an unbatched input, "
                    f"got {np.shape(integration_timesteps)}"
                )
            if initial_state is not None:
                initial_state = np.asarray(initial_state)[None]
        mode = self.modes[0] if mode is None else mode
        if mode not in self.modes:
            raise ValueError(f"mode: {type(self).__name__} runs in {list(self.modes)}, got {mode!r}")
        if mode == "convolution":
            raise ValueError(
                "integration_timesteps: the 'convolution' mode has one kernel for every step, so it cannot "
                "run irregular time (a different step at every event); use mode='scan' or 'recurrence'"
            )
        tau = self._check_gaps(integration_timesteps, u.shape[0], u.shape[1])  # (B, L)
        x0 = self._check_state(initial_state, u.shape[0], self.ssm())  # (B, P_s)
        y, xL = self._irregular(u, tau, x0, parallel=(mode == "scan"))
        if unbatched:
            y, xL = y[0], xL[0]
        return (y, xL) if return_state else y

    def _causal_run(self, sys: DiscreteSSM, u: np.ndarray, mode: str) -> np.ndarray:
        """One direction of a bidirectional S5 from a zero state: ``(B, L, H)``."""
        if mode == "convolution":
            K = self._vandermonde_kernel(sys, u.shape[1])  # (L, H, H)
            return fft_conv(u, K).real + u @ sys.D.T  # (B, L, H)
        x0 = np.zeros((u.shape[0], sys.state_size), dtype=np.complex128)  # (B, P_s)
        y, _ = self._recurrence(sys, u, x0, parallel=(mode == "scan"))  # (B, L, H)
        return y
