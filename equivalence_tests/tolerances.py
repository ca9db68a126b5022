"""One comparison for the whole suite, with one table of tolerances by dtype.

A failure reports the largest absolute error and the relative RMS error, so that a reader can tell a
precision problem (errors of the order of the dtype's epsilon) from a bug (errors of order one).
A tolerance in this table is never loosened to make a test pass: find the cause.
"""

from __future__ import annotations

import numpy as np

# (rtol, atol) per precision of the computation under test. The reference runs in float64.
# float64: rounding of a few hundred operations on well-conditioned systems.
# float32: the order that lrnnx's own tests use for float32 (rtol 3e-3, atol 5e-3), tightened.
TOLERANCES = {
    "float64": (1e-10, 1e-12),
    "complex128": (1e-10, 1e-12),
    "float32": (1e-4, 1e-5),
    "complex64": (1e-4, 1e-5),
    "bfloat16": (2e-2, 1e-2),
    # float16: the bfloat16 row scaled by the ratio of the two epsilons, 2^-10 / 2^-7 = 1/8 (float16 keeps 10
    # fraction bits, bfloat16 7): the same computation rounds as often, each rounding 8 times smaller; the half
    # precision models and ops compute in float32 between roundings of their inputs, parameters and outputs.
    "float16": (2.5e-3, 1.25e-3),
}


def _to_numpy(x):
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().cpu()
        if x.is_complex():
            return x.resolve_conj().numpy()
        return x.double().numpy() if str(x.dtype) == "torch.bfloat16" else x.numpy()
    return np.asarray(x)


def _dtype_name(dtype) -> str:
    name = str(dtype).replace("torch.", "")
    if name not in TOLERANCES:
        raise ValueError(f"dtype: no tolerance for {dtype!r}; known: {list(TOLERANCES)}")
    return name


def errors(actual, expected) -> tuple[float, float]:
    """(max-abs error, relative RMS error) of ``actual`` against ``expected``."""
    a = _to_numpy(actual).astype(np.complex128)
    e = _to_numpy(expected).astype(np.complex128)
    diff = np.abs(a - e)
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.sqrt(np.mean(np.abs(e) ** 2))) if e.size else 0.0
    rel_rms = float(np.sqrt(np.mean(diff**2)) / scale) if scale > 0 else max_abs
    return max_abs, rel_rms


def assert_close(actual, expected, dtype="float64", what: str = "value", *, rtol=None, atol=None):
    """Assert ``|actual - expected| <= atol + rtol * |expected|`` elementwise, with the table's
    tolerances for ``dtype`` (``rtol``/``atol`` only for documented, stricter or physically derived
    bounds). Shapes must match exactly (no broadcasting)."""
    a, e = _to_numpy(actual), _to_numpy(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{what}: shape {a.shape} != expected {e.shape}")
    table_rtol, table_atol = TOLERANCES[_dtype_name(dtype)]
    rtol = table_rtol if rtol is None else rtol
    atol = table_atol if atol is None else atol
    if not np.all(np.isfinite(a)):
        raise AssertionError(f"{what}: actual contains NaN or inf")
    bad = np.abs(a.astype(np.complex128) - e) > atol + rtol * np.abs(e)
    if np.any(bad):
        max_abs, rel_rms = errors(a, e)
        raise AssertionError(
            f"{what} ({dtype}): {int(bad.sum())}/{bad.size} entries off; max abs error {max_abs:.3e}, "
            f"relative RMS error {rel_rms:.3e} (rtol {rtol:g}, atol {atol:g})"
        )
