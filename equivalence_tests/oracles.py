"""Independent oracles shared by the tests: scipy.signal's responses, made MIMO, and the frequency-response
formula evaluated by linear solves on a scipy system."""

from __future__ import annotations

import numpy as np
import scipy.signal


def _structurally_relevant_states(A, b, c) -> np.ndarray:
    """States that can be reached from input column ``b`` AND can reach output row ``c`` through the sparsity
    pattern of ``A``. Dropping the others changes no transfer function (they are exactly uncontrollable or
    unobservable), and keeps scipy's polynomial form from multiplying in poles that cancel."""
    links = A != 0  # links[r, s]: state s feeds state r
    reach = b != 0
    while True:
        grown = reach | links[:, reach].any(axis=1)
        if (grown == reach).all():
            break
        reach = grown
    seen = c != 0
    while True:
        grown = seen | links[seen, :].any(axis=0)
        if (grown == seen).all():
            break
        seen = grown
    return np.flatnonzero(reach & seen)


def dfreqresp_mimo(sys: scipy.signal.dlti, w) -> np.ndarray:
    """scipy's dfreqresp for each (output, input) pair of a MIMO system; ``(len(w), H_out, H_in)``.

    dfreqresp is SISO-only and goes through the transfer-function polynomials; each pair is first reduced
    to the states that structurally matter for it (exact, see ``_structurally_relevant_states``).
    """
    n_out, n_in = sys.D.shape
    H = np.empty((len(w), n_out, n_in), dtype=complex)
    for o in range(n_out):
        for i in range(n_in):
            keep = _structurally_relevant_states(sys.A, sys.B[:, i], sys.C[o])
            if keep.size == 0:
                H[:, o, i] = sys.D[o, i]
                continue
            siso = scipy.signal.dlti(
                sys.A[np.ix_(keep, keep)], sys.B[keep, i : i + 1], sys.C[o : o + 1, keep], sys.D[o : o + 1, i : i + 1],
                dt=1,
            )
            H[:, o, i] = scipy.signal.dfreqresp(siso, w=w)[1]
    return H


def dimpulse_mimo(sys: scipy.signal.dlti, L: int) -> np.ndarray:
    """scipy's dimpulse as one ``(L, H_out, H_in)`` array."""
    # scipy 1.16's dimpulse returns uninitialized memory for n = 1: ask for at least 2 samples.
    _, responses = scipy.signal.dimpulse(sys, n=max(L, 2))  # one (n, H_out) array per input
    return np.stack(responses, axis=-1)[:L]  # (L, H_out, H_in)


def formula_by_solves(sys: scipy.signal.dlti, w) -> np.ndarray:
    """C (zI - A)^{-1} B + D of a scipy system by linear solves (dfreqresp goes through polynomials)."""
    S = sys.A.shape[0]
    return np.stack([sys.C @ np.linalg.solve(np.exp(1j * wk) * np.eye(S) - sys.A, sys.B) + sys.D for wk in w])
