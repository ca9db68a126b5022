"""Responses of a discrete LTI system in the ML convention (reference/README.md §Conventions):

    x_k = A_bar x_{k-1} + B_bar u_k,   y_k = C x_k + D u_k,   x_{-1} = 0.

Glossary: ``K`` kernel, K_l = C A_bar^l B_bar (l = 0..L-1, K_0 = C B_bar: the input is read in the
step it arrives); ``w`` angular frequency omega in radians per sample; ``z = e^{i omega}``.

* impulse response:   h_l = K_l + D delta_l      (the output for u = delta_0)
* frequency response: H(e^{i w}) = sum_l h_l e^{-i w l} = C (I - e^{-i w} A_bar)^{-1} B_bar + D

Relation to scipy.signal. scipy uses the control convention x_{k+1} = A x_k + B u_k, y_k = C x_k + D u_k,
in which the input of step k reaches the output one step later. Write s_k = x_{k-1} (the state
*before* step k's input). Then s_{k+1} = A_bar s_k + B_bar u_k and
y_k = C (A_bar s_k + B_bar u_k) + D u_k = (C A_bar) s_k + (C B_bar + D) u_k. So the same system in
scipy's convention is

    dlti(A_bar, B_bar, C A_bar, C B_bar + D, dt=1),

with the same impulse response sample for sample (no shift) and the same frequency response (no
extra factor). Feeding scipy the naive (A_bar, B_bar, C, D) instead gives the control-convention
response C (z I - A_bar)^{-1} B_bar + D, which lacks the one-step advance z = e^{i w} on its dynamic
part: H_ML - D = e^{i w} (H_naive - D).

Complex systems. Diagonal models store one mode of each conjugate pair, or a complex system whose
real part is read. ``readout`` says how the output is formed:

    "plain": y = C x + D u        (real systems, or the raw complex formula)
    "re":    y = Re(C x) + D u    (LRU, Centaurus)
    "2re":   y = 2 Re(C x) + D u  (S4, S4D, S5: the stored half stands for the full conjugate-paired system)

``to_dlti`` realizes such a system with real 2x2 blocks: a complex state component x = p + i q with
decay a = a_r + i a_i evolves as [p, q] <- [[a_r, -a_i], [a_i, a_r]] [p, q] + [Re B_bar, Im B_bar] u and
is read as f (Re C p - Im C q), f = 1 or 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.signal

from reference._checks import as_array, positive_int

__all__ = ["DiscreteSSM", "READOUTS", "kernel", "impulse_response", "frequency_response", "to_dlti"]

READOUTS = {"plain": None, "re": 1.0, "2re": 2.0}


@dataclass(frozen=True)
class DiscreteSSM:
    """A discrete LTI state-space system in the ML convention.

    Attributes:
        A_bar: ``(S,)`` diagonal or ``(S, S)`` dense state transition.
        B_bar: ``(S, H_in)``.
        C: ``(H_out, S)``.
        D: ``(H_out, H_in)`` feed-through.
        readout: ``"plain"``, ``"re"`` or ``"2re"`` (module docstring).
    """

    A_bar: np.ndarray
    B_bar: np.ndarray
    C: np.ndarray
    D: np.ndarray
    readout: str = "plain"

    def __post_init__(self):
        A_bar = as_array(self.A_bar, "A_bar")
        B_bar = as_array(self.B_bar, "B_bar")
        C = as_array(self.C, "C")
        D = as_array(self.D, "D", complex_ok=False)
        if A_bar.ndim not in (1, 2) or (A_bar.ndim == 2 and A_bar.shape[0] != A_bar.shape[1]):
            raise ValueError(f"A_bar: expected shape (S,) or (S, S), got {A_bar.shape}")
        S = A_bar.shape[0]
        if B_bar.ndim != 2 or B_bar.shape[0] != S:
            raise ValueError(f"B_bar: expected shape ({S}, H_in), got {B_bar.shape}")
        if C.ndim != 2 or C.shape[1] != S:
            raise ValueError(f"C: expected shape (H_out, {S}), got {C.shape}")
        if D.shape != (C.shape[0], B_bar.shape[1]):
            raise ValueError(f"D: expected shape {(C.shape[0], B_bar.shape[1])} (H_out, H_in), got {D.shape}")
        if self.readout not in READOUTS:
            raise ValueError(f"readout: expected one of {list(READOUTS)}, got {self.readout!r}")
        for name, value in (("A_bar", A_bar), ("B_bar", B_bar), ("C", C), ("D", D)):
            object.__setattr__(self, name, value)

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def diagonal(self) -> bool:
        return self.A_bar.ndim == 1

    @property
    def state_size(self) -> int:
        return self.A_bar.shape[0]

    @property
    def A_matrix(self) -> np.ndarray:
        """A_bar as an (S, S) matrix."""
        return np.diag(self.A_bar) if self.diagonal else self.A_bar

    def read(self, Cx: np.ndarray) -> np.ndarray:
        """Apply the readout to C x (or to any linear function of the state)."""
        scale = READOUTS[self.readout]
        return Cx if scale is None else scale * Cx.real

    # -- responses -----------------------------------------------------------------------------
    def kernel(self, L: int) -> np.ndarray:
        """K_l = read(C A_bar^l B_bar), l = 0..L-1, by repeated multiplication; ``(L, H_out, H_in)``."""
        L = positive_int(L, "L")
        K = []
        M = self.B_bar  # (S, H_in): A_bar^l B_bar
        for _ in range(L):
            K.append(self.C @ M)  # (H_out, H_in)
            M = self.A_bar[:, None] * M if self.diagonal else self.A_bar @ M
        return self.read(np.stack(K))  # (L, H_out, H_in)

    def impulse_response(self, L: int) -> np.ndarray:
        """h_l = K_l + D delta_l; ``(L, H_out, H_in)``."""
        h = self.kernel(L)  # (L, H_out, H_in)
        h = h.astype(np.result_type(h, self.D))
        h[0] += self.D
        return h

    def _transfer(self, z: np.ndarray) -> np.ndarray:
        """C (I - z^{-1} A_bar)^{-1} B_bar for each z on the circle; ``(len(z), H_out, H_in)``."""
        S = self.state_size
        out = []
        for zk in z:
            if self.diagonal:
                X = self.B_bar / (1.0 - self.A_bar / zk)[:, None]  # (S, H_in)
            else:
                X = np.linalg.solve(np.eye(S) - self.A_bar / zk, self.B_bar)  # (S, H_in)
            out.append(self.C @ X)
        return np.stack(out)  # (W, H_out, H_in)

    def frequency_response(self, w) -> np.ndarray:
        """H(e^{iw}) = read-out of C (I - e^{-iw} A_bar)^{-1} B_bar, plus D; ``(len(w), H_out, H_in)``.

        For a real-part readout the response of Re(g_l) is (G(w) + conj(G(-w))) / 2.
        """
        w = as_array(w, "w", complex_ok=False)
        if w.ndim != 1 or w.size == 0:
            raise ValueError(f"w: expected a 1-D array of at least one frequency, got shape {w.shape}")
        z = np.exp(1j * w)  # (W,)
        G = self._transfer(z)  # (W, H_out, H_in)
        scale = READOUTS[self.readout]
        if scale is not None:
            G = scale * 0.5 * (G + np.conj(self._transfer(np.conj(z))))
        return G + self.D

    # -- scipy ---------------------------------------------------------------------------------
    def realified(self) -> DiscreteSSM:
        """The same input-output system with real matrices (2x2 blocks per complex state)."""
        complex_system = any(np.iscomplexobj(m) for m in (self.A_bar, self.B_bar, self.C))
        if self.readout == "plain":
            if complex_system:
                raise ValueError("readout: a complex system with readout 'plain' has a complex output")
            return self
        scale = READOUTS[self.readout]
        A = self.A_matrix.astype(np.complex128)  # (S, S)
        rotation = np.array([[0.0, -1.0], [1.0, 0.0]])
        A_real = np.kron(A.real, np.eye(2)) + np.kron(A.imag, rotation)  # (2S, 2S)
        B = self.B_bar.astype(np.complex128)
        B_real = np.stack([B.real, B.imag], axis=1).reshape(2 * self.state_size, -1)  # (2S, H_in)
        C = self.C.astype(np.complex128)
        C_real = scale * np.stack([C.real, -C.imag], axis=2).reshape(C.shape[0], -1)  # (H_out, 2S)
        return DiscreteSSM(A_real, B_real, C_real, self.D, "plain")

    def to_dlti(self) -> scipy.signal.dlti:
        """The system in scipy's convention: ``dlti(A_bar, B_bar, C A_bar, C B_bar + D, dt=1)``, real."""
        r = self.realified()
        A = r.A_matrix
        return scipy.signal.dlti(A, r.B_bar, r.C @ A, r.C @ r.B_bar + r.D, dt=1)


def _as_system(A_bar, B_bar, C, D, readout) -> DiscreteSSM:
    B_bar = as_array(B_bar, "B_bar")
    C = as_array(C, "C")
    if D is None:
        D = np.zeros((C.shape[0] if C.ndim == 2 else 0, B_bar.shape[1] if B_bar.ndim == 2 else 0))
    return DiscreteSSM(A_bar, B_bar, C, D, readout)


def kernel(A_bar, B_bar, C, L: int, *, readout: str = "plain") -> np.ndarray:
    """K_l = C A_bar^l B_bar for l = 0..L-1 by powers; ``(L, H_out, H_in)``."""
    return _as_system(A_bar, B_bar, C, None, readout).kernel(L)


def impulse_response(A_bar, B_bar, C, D, L: int, *, readout: str = "plain") -> np.ndarray:
    """K_l + D delta_l; ``(L, H_out, H_in)``."""
    return _as_system(A_bar, B_bar, C, D, readout).impulse_response(L)


def frequency_response(A_bar, B_bar, C, D, w, *, readout: str = "plain") -> np.ndarray:
    """C (I - e^{-iw} A_bar)^{-1} B_bar + D in the ML convention; ``(len(w), H_out, H_in)``."""
    return _as_system(A_bar, B_bar, C, D, readout).frequency_response(w)


def to_dlti(A_bar, B_bar, C, D, *, readout: str = "plain") -> scipy.signal.dlti:
    """``scipy.signal.dlti(A_bar, B_bar, C A_bar, C B_bar + D, dt=1)`` (realized if complex)."""
    return _as_system(A_bar, B_bar, C, D, readout).to_dlti()
