"""How the kit compares an implementation's arrays with the reference's: the one tolerance table, by dtype.

Each entry i is held to ``|actual_i - expected_i| <= atol * min(1, rms) + rtol * max(|expected_i|, rms)``, with
``(rtol, atol)`` the row of ``equivalence_tests.tolerances.TOLERANCES`` for the adapter's dtype and ``rms`` the
expected array's RMS: relative to the entry, or to the array's RMS for entries much smaller than the rest (an
entry near zero that is a sum of O(1) terms carries the rounding of those terms, in any correct implementation);
the table's atol is meant for values of order one, so it shrinks with an array of smaller scale (a model whose
outputs are 1e-4 is held to the same relative accuracy as one whose outputs are 1). A defect (a wrong factor, a wrong
power, a dropped state) moves entries by a fraction of the array's scale, far above every row of the table.
"""

from __future__ import annotations

import numpy as np

from equivalence_tests.tolerances import TOLERANCES


class Mismatch(AssertionError):
    """A comparison that failed: ``what``, the worst error, its tolerance and where it is."""

    def __init__(self, what: str, detail: str, worst: float = float("nan"), bound: float = float("nan")):
        super().__init__(f"{what}: {detail}")
        self.what, self.detail, self.worst, self.bound = what, detail, worst, bound


def as_numpy(x, what: str) -> np.ndarray:
    """``x`` (a NumPy array, a torch tensor, a JAX array, a list) as a NumPy array, upcast to 64 bits."""
    if hasattr(x, "detach"):  # torch, without importing it here
        x = x.detach().cpu()
        if x.is_complex():
            x = x.resolve_conj()
        elif not x.dtype.is_floating_point or x.dtype.itemsize < 4:
            x = x.double()
        x = x.numpy()
    try:
        a = np.asarray(x)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is the adapter's
        raise Mismatch(what, f"could not be read as an array ({type(x).__name__}: {exc})") from None
    if a.dtype == object:
        raise Mismatch(what, f"is not a numeric array (got {type(x).__name__})")
    if a.dtype.kind == "c":
        return a.astype(np.complex128)
    if a.dtype.kind in "fiub" or a.dtype.name in ("bfloat16", "float16"):
        return a.astype(np.float64)
    raise Mismatch(what, f"has dtype {a.dtype}, expected a real or complex array")


def tolerance(dtype: str) -> tuple[float, float]:
    if dtype not in TOLERANCES:
        raise ValueError(f"dtype: no row for {dtype!r} in the tolerance table; known: {list(TOLERANCES)}")
    return TOLERANCES[dtype]


def assert_matches(actual, expected, dtype: str, what: str, *, condition=None) -> float:
    """Raise ``Mismatch`` unless ``actual`` equals ``expected`` within the table's row for ``dtype``; return the
    worst error relative to its bound (<= 1 when it passes). ``condition`` (>= 1, broadcast against the arrays):
    the condition number of the quantity compared, by which any correct evaluation's relative rounding grows
    (e.g. a frequency response near a pole); it multiplies ``rtol``."""
    a = as_numpy(actual, what)
    e = np.asarray(expected)
    if a.shape != e.shape:
        raise Mismatch(what, f"shape {a.shape}, expected {e.shape}")
    if e.dtype.kind != "c" and a.dtype.kind == "c":
        if np.any(a.imag != 0):
            raise Mismatch(what, "is complex with a nonzero imaginary part, expected a real array")
        a = a.real
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise Mismatch(what, f"contains NaN or inf (first at index {tuple(int(i) for i in bad)})")
    if e.size == 0:
        return 0.0
    rtol, atol = tolerance(dtype)
    scale = float(np.sqrt(np.mean(np.abs(e) ** 2)))
    gain = 1.0 if condition is None else np.maximum(np.broadcast_to(condition, e.shape), 1.0)
    atol = atol * min(1.0, scale) if scale > 0 else atol  # the table's atol is for values of order one
    bound = atol + rtol * gain * np.maximum(np.abs(e), scale)
    err = np.abs(a - e)
    ratio = err / bound
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    if ratio[worst] > 1:
        idx = tuple(int(i) for i in worst)
        n_bad = int((ratio > 1).sum())
        raise Mismatch(
            what,
            f"{n_bad}/{ratio.size} entries off; worst |error| {err[worst]:.3e} at index {idx} (got {a[worst]:.6g}, "
            f"expected {e[worst]:.6g}) against tolerance {bound[worst]:.3e} ({dtype}: rtol {rtol:g}, atol {atol:g}; "
            f"array RMS {scale:.3g})",
            float(err[worst]),
            float(bound[worst]),
        )
    return float(ratio[worst])


def assert_state_matches(actual, expected, dtype: str, what: str) -> None:
    """``assert_matches`` for a state: an array, or a tuple of arrays (compared field by field)."""
    if isinstance(expected, tuple):
        if not isinstance(actual, (tuple, list)) or len(actual) != len(expected):
            raise Mismatch(what, f"expected a tuple of {len(expected)} arrays, got {type(actual).__name__}")
        names = getattr(type(expected), "_fields", None) or [str(i) for i in range(len(expected))]
        for name, a, e in zip(names, actual, expected):
            assert_matches(a, e, dtype, f"{what}.{name}")
    else:
        assert_matches(actual, expected, dtype, what)
