"""Input validation shared by the reference package.

Every public function checks its arguments here so that bad input gets a ``ValueError`` that names
the argument and what was expected, never a NumPy broadcasting traceback or a silent NaN.
"""

from __future__ import annotations

import dataclasses

import numpy as np


def as_array(x, name: str, *, complex_ok: bool = True) -> np.ndarray:
    """``x`` as a float64 / complex128 array (the reference always computes in double precision)."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name}: expected an array of numbers, got {type(x).__name__}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name}: expected an array of numbers, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        if not complex_ok:
            raise ValueError(f"{name}: expected real values, got a complex array")
        arr = arr.astype(np.complex128)
    else:
        arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def finite_params(params) -> None:
    """Every array field of a model's parameter dataclass is finite: a ``ValueError`` names
    ``params.<field>`` (a NaN in a parameter that is only added at the end would otherwise reach the output
    silently)."""
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if value is not None and not isinstance(value, (bool, int, float, str)):
            as_array(value, f"params.{f.name}")


def positive(x, name: str) -> np.ndarray:
    """A real array whose entries are all finite and > 0 (step sizes)."""
    arr = as_array(x, name, complex_ok=False)
    if np.any(arr <= 0):
        raise ValueError(f"{name}: expected values > 0, got min {arr.min():.3g}")
    return arr


def nonnegative(x, name: str) -> np.ndarray:
    """A real array whose entries are all finite and >= 0 (event gaps)."""
    arr = as_array(x, name, complex_ok=False)
    if np.any(arr < 0):
        raise ValueError(f"{name}: expected values >= 0, got min {arr.min():.3g}")
    return arr


def positive_int(x, name: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 1:
        raise ValueError(f"{name}: expected a positive integer, got {x!r}")
    return int(x)


def shape_error(name: str, expected: str, got) -> ValueError:
    return ValueError(f"{name}: expected shape {expected}, got {tuple(np.shape(got))}")


def broadcast(shapes: dict[str, tuple], what: str) -> tuple:
    """Broadcast named shapes, raising a ``ValueError`` naming them when they do not fit."""
    try:
        return np.broadcast_shapes(*shapes.values())
    except ValueError:
        desc = ", ".join(f"{k} {v}" for k, v in shapes.items())
        raise ValueError(f"{what}: shapes do not broadcast ({desc})") from None
