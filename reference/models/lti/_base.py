"""What every LTI model shares: once discretized, each is the linear time-invariant system

    x_k = A_bar x_{k-1} + B_bar u_k,     y_k = read(C x_k) + D u_k

(a ``DiscreteSSM``, see ``reference.response``). The models differ in how they parameterize and
initialize (A, B, C, D, dt) and in how they compute the kernel K_l = read(C A_bar^l B_bar) fast
(Vandermonde for S4D, Cauchy + Woodbury for S4, tensor contractions for Centaurus). This base
class gives every model the three ways of running the system, which must agree:

* ``"convolution"``: y = K * u + D u with the model's own ``kernel`` and ``fft_conv``;
* ``"recurrence"``: the state update one step after another (``linear_scan`` for a diagonal A);
* ``"scan"``: the associative (parallel) scan of the same recurrence (diagonal A only).

State. The state of every LTI model is the flat vector x of the ``DiscreteSSM``: ``(B, S)``,
complex for complex models; each model's docstring says how its own indices are flattened.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from reference._checks import as_array, positive_int
from reference.convolution import fft_conv
from reference.discretization import DISCRETIZATIONS, TIME_VARYING_ONLY, custom_discretizations
from reference.models._config import Configured
from reference.response import DiscreteSSM
from reference.scan import associative_scan, linear_scan


class LTIModel(Configured):
    """Base class of the reference LTI models (S4, S4D, S5, LRU, Centaurus)."""

    #: discretizations the model accepts, its default, and its forward modes (default first)
    discretizations: ClassVar[tuple[str, ...]] = ("zoh", "bilinear", "dirac")
    default_discretization: ClassVar[str] = "zoh"
    modes: ClassVar[tuple[str, ...]] = ("convolution", "recurrence", "scan")

    #: whether the rules added by ``register_discretization`` apply: the model discretizes through
    #: ``discretize`` / ``discretize_diagonal`` alone (S4 does not: its kernel algorithm is per rule)
    registered_rules: ClassVar[bool] = True

    @classmethod
    def supported_discretizations(cls) -> tuple[str, ...]:
        """``discretizations`` plus the registered rules the model can run (not the time-varying-only ones)."""
        if not cls.registered_rules:
            return cls.discretizations
        extra = (m for m in custom_discretizations() if m not in TIME_VARYING_ONLY and m not in cls.discretizations)
        return cls.discretizations + tuple(extra)

    def __init__(self, d_model: int, d_state: int, *, discretization: str | None = None, seed: int = 0):
        self.d_model = positive_int(d_model, "d_model")
        self.d_state = positive_int(d_state, "d_state")
        if discretization is None:
            discretization = self.default_discretization
        if discretization not in self.supported_discretizations():
            why = " (it is time-varying; an LTI model has one kernel)" if discretization in TIME_VARYING_ONLY else ""
            known = "" if discretization in DISCRETIZATIONS else " (unknown name)"
            raise ValueError(
                f"{type(self).__name__}: discretization {discretization!r} is not supported{why}{known}; "
                f"supported: {list(self.supported_discretizations())}"
            )
        self.discretization = discretization
        self.seed = seed

    # -- to be provided by each model ------------------------------------------------------
    def ssm(self) -> DiscreteSSM:
        """The discretized core as a ``DiscreteSSM``."""
        raise NotImplementedError

    def kernel(self, L: int) -> np.ndarray:
        """K_l = read(C A_bar^l B_bar), ``(L, H_out, H_in)``, without D. Models override this with
        their own algorithm; the default is brute-force powers."""
        return self.ssm().kernel(L)

    # -- responses -------------------------------------------------------------------------
    def impulse_response(self, L: int) -> np.ndarray:
        """The core's response to a unit impulse, K_l + D delta_l: ``(L, H_out, H_in)``."""
        h = self.kernel(L)  # (L, H_out, H_in)
        h = h.astype(np.result_type(h, self.ssm().D))
        h[0] += self.ssm().D
        return h

    def frequency_response(self, w) -> np.ndarray:
        """H(e^{iw}) = C (I - e^{-iw} A_bar)^{-1} B_bar + D (ML convention): ``(len(w), H_out, H_in)``."""
        return self.ssm().frequency_response(w)

    def to_dlti(self):
        """The core as a real ``scipy.signal.dlti`` in scipy's convention, dt = 1."""
        return self.ssm().to_dlti()

    # -- running it ------------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> np.ndarray:
        """Zeros of shape ``(batch_size, S)``."""
        sys = self.ssm()
        dtype = np.result_type(sys.A_bar, sys.B_bar)
        return np.zeros((positive_int(batch_size, "batch_size"), sys.state_size), dtype=dtype)

    def _check_input(self, u, name="u"):
        u = as_array(u, name, complex_ok=False)
        if u.ndim not in (2, 3) or u.shape[-1] != self.d_model or u.shape[-2] == 0:
            raise ValueError(f"{name}: expected shape (B, L, {self.d_model}) or (L, {self.d_model}), got {u.shape}")
        return u

    def _check_state(self, state, batch: int, sys: DiscreteSSM, name: str = "initial_state"):
        if state is None:
            return np.zeros((batch, sys.state_size), dtype=np.result_type(sys.A_bar, sys.B_bar))
        state = as_array(state, name)
        if state.shape != (batch, sys.state_size):
            raise ValueError(f"{name}: expected shape {(batch, sys.state_size)} (B, S), got {state.shape}")
        return state

    def step(self, u_t, state):
        """One step: ``u_t (B, H)`` and ``state (B, S)`` -> ``(y_t (B, H_out), state)``."""
        sys = self.ssm()
        u_t = as_array(u_t, "u_t", complex_ok=False)
        if u_t.ndim != 2 or u_t.shape[1] != self.d_model:
            raise ValueError(f"u_t: expected shape (B, {self.d_model}), got {u_t.shape}")
        x = self._check_state(state, u_t.shape[0], sys, "state")
        Ax = sys.A_bar * x if sys.diagonal else x @ sys.A_bar.T  # (B, S)
        x = Ax + u_t @ sys.B_bar.T  # (B, S)
        y = sys.read(x @ sys.C.T) + u_t @ sys.D.T  # (B, H_out)
        return y, x

    def forward(self, u, *, initial_state=None, return_state=False, mode: str | None = None):
        """Run the core on ``u (B, L, H)`` or ``(L, H)``; ``mode`` is one of ``self.modes``.

        Returns ``y`` of the input's rank, or ``(y, final_state)`` when ``return_state``.
        """
        u = self._check_input(u)
        unbatched = u.ndim == 2
        if unbatched:
            u = u[None]
            if initial_state is not None:
                initial_state = np.asarray(initial_state)[None]
        mode = self.modes[0] if mode is None else mode
        if mode not in self.modes:
            raise ValueError(f"mode: {type(self).__name__} runs in {list(self.modes)}, got {mode!r}")
        sys = self.ssm()
        x0 = self._check_state(initial_state, u.shape[0], sys)
        if mode == "convolution":
            y, xL = self._convolution(sys, u, x0)
        else:
            y, xL = self._recurrence(sys, u, x0, parallel=(mode == "scan"))
        if unbatched:
            y, xL = y[0], xL[0]
        return (y, xL) if return_state else y

    __call__ = forward

    def _recurrence(self, sys: DiscreteSSM, u, x0, *, parallel: bool):
        Bu = u @ sys.B_bar.T  # (B, L, S)
        if sys.diagonal:
            a = np.broadcast_to(sys.A_bar, Bu.shape)  # (B, L, S)
            x, xL = (associative_scan if parallel else linear_scan)(a, Bu, x0)  # (B, L, S)
        else:
            if parallel:
                raise ValueError("mode: 'scan' needs a diagonal A_bar")
            x = np.empty(Bu.shape, dtype=np.result_type(sys.A_bar, Bu, x0))  # (B, L, S)
            state = x0
            for k in range(u.shape[1]):
                state = state @ sys.A_bar.T + Bu[:, k]  # (B, S)
                x[:, k] = state
            xL = state
        y = sys.read(x @ sys.C.T) + u @ sys.D.T  # (B, L, H_out)
        return y, xL

    def _convolution(self, sys: DiscreteSSM, u, x0):
        """y = K * u + D u + (response to the initial state); the final state by the same sums."""
        L = u.shape[1]
        K = self.kernel(L)  # (L, H_out, H_in)
        y = fft_conv(u, K).real + u @ sys.D.T  # (B, L, H_out)
        # powers[m] = A_bar^m for m = 0..L (diagonal: (L+1, S); dense: (L+1, S, S))
        powers = [np.ones(sys.state_size) if sys.diagonal else np.eye(sys.state_size)]
        for _ in range(L):
            powers.append(sys.A_bar * powers[-1] if sys.diagonal else sys.A_bar @ powers[-1])
        powers = np.stack(powers)
        Bu = u @ sys.B_bar.T  # (B, L, S)
        rev = powers[L - 1 :: -1]  # (L, ...): A_bar^{L-1-j} for j = 0..L-1
        if sys.diagonal:
            # x_{k} from x_{-1}: A_bar^{k+1} x0;  x_{L-1} = A_bar^L x0 + sum_j A_bar^{L-1-j} B_bar u_j
            free = powers[1:][None] * x0[:, None]  # (B, L, S)
            xL = powers[L] * x0 + np.einsum("ls,bls->bs", rev, Bu)  # (B, S)
        else:
            free = np.einsum("lst,bt->bls", powers[1:], x0)  # (B, L, S)
            xL = x0 @ powers[L].T + np.einsum("lst,blt->bs", rev, Bu)  # (B, S)
        y = y + sys.read(free @ sys.C.T)  # (B, L, H_out)
        return y, xL
