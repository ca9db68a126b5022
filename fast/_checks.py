"""Input validation shared by the fast package (the torch twin of ``reference/_checks.py``).

Bad input gets a ``ValueError`` that names the argument and what was expected. The fast package computes
in the precision it is given (float32 / complex64 or float64 / complex128): every tensor of one call must
share that precision, and a mismatch is an error rather than a silent cast. Step sizes and event gaps may
also be Python numbers or NumPy arrays; those are converted to the working precision.
"""

from __future__ import annotations

import torch

BACKENDS = ("auto", "torch", "triton")

# -- the validation switch (modelled on torch.distributions' validate_args) ----------------------------------
# Shape, dtype and device checks always run: they read metadata only. Value checks (finite inputs, parameters
# and states; dt > 0; gaps >= 0) read tensor values on the host, which is a device synchronization and a graph
# break under torch.compile: they run while validation is on (the default) and never while it is off or while
# torch.compile traces.

_VALIDATE = True


def set_validation(value: bool) -> None:
    """Turn the value checks of every fast entry point on (the default) or off."""
    global _VALIDATE
    if not isinstance(value, bool):
        raise ValueError(f"value: expected True or False, got {value!r}")
    _VALIDATE = value


class validation:
    """``with fast.validation(False): ...`` runs the block without value checks (and restores the switch)."""

    def __init__(self, value: bool):
        if not isinstance(value, bool):
            raise ValueError(f"value: expected True or False, got {value!r}")
        self.value = value

    def __enter__(self):
        self._saved = _VALIDATE
        set_validation(self.value)
        return self

    def __exit__(self, *exc):
        set_validation(self._saved)
        return False


def validating() -> bool:
    """Whether value checks run now: the switch is on and torch.compile is not tracing."""
    return _VALIDATE and not torch.compiler.is_compiling()


def tensor(x, name: str, *, complex_ok: bool = True) -> torch.Tensor:
    """``x`` itself, after checking that it is a floating-point (or complex) torch tensor."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.is_complex():
        if not complex_ok:
            raise ValueError(f"{name}: expected real values, got a complex tensor ({x.dtype})")
    elif not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point or complex tensor, got dtype {x.dtype}")
    return x


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """The real dtype of the same precision (complex64 -> float32, complex128 -> float64)."""
    return torch.empty((), dtype=dtype).real.dtype if dtype.is_complex else dtype


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype of the same precision (float32 -> complex64, float64 -> complex128)."""
    return torch.promote_types(dtype, torch.complex64)


def common_dtype(tensors: dict[str, torch.Tensor | None], what: str) -> torch.dtype:
    """The dtype a computation on ``tensors`` runs in: their shared precision, complex if any is complex.

    Tensors of different precision (float32 with float64, complex64 with float64, ...) raise a
    ``ValueError`` naming them: the fast package never casts silently.
    """
    present = {k: v for k, v in tensors.items() if v is not None}
    precisions = {real_dtype(v.dtype) for v in present.values()}
    if len(precisions) > 1:
        desc = ", ".join(f"{k} {v.dtype}" for k, v in present.items())
        raise ValueError(
            f"{what}: the tensors must share one precision (all float32/complex64 or all float64/complex128), "
            f"got {desc}"
        )
    dtype = next(iter(present.values())).dtype
    for v in present.values():
        dtype = torch.promote_types(dtype, v.dtype)
    return dtype


def real_like(x, name: str, dtype: torch.dtype, device) -> torch.Tensor:
    """A real step-like argument (``dt``, event gaps) in the working precision ``real_dtype(dtype)``.

    A tensor must already have that precision; a Python number or NumPy array is converted to it.
    """
    want = real_dtype(dtype)
    if isinstance(x, torch.Tensor):
        tensor(x, name, complex_ok=False)
        if x.dtype != want:
            raise ValueError(f"{name}: expected dtype {want} to match the other tensors, got {x.dtype}")
        return x
    try:
        return torch.as_tensor(x, dtype=want, device=device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{name}: expected a real number or array, got {type(x).__name__}") from exc


def finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """``x``, after checking (while ``validating()``) that every entry is finite."""
    if validating() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return x


def positive(x: torch.Tensor, name: str) -> torch.Tensor:
    """A real tensor whose entries are all finite and > 0 (step sizes)."""
    finite(x, name)
    if validating() and x.numel() and bool((x <= 0).any()):
        raise ValueError(f"{name}: expected values > 0, got min {float(x.min()):.3g}")
    return x


def nonnegative(x: torch.Tensor, name: str) -> torch.Tensor:
    """A real tensor whose entries are all finite and >= 0 (event gaps)."""
    finite(x, name)
    if validating() and x.numel() and bool((x < 0).any()):
        raise ValueError(f"{name}: expected values >= 0, got min {float(x.min()):.3g}")
    return x


def records_grad(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd records an operation on these tensors (None entries skipped): grad mode is on and one
    of them requires grad. Where it does not, an intermediate may be updated in place or written into a
    reused buffer."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def positive_int(x, name: str, minimum: int = 1) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or x < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {x!r}")
    return int(x)


def broadcast(shapes: dict[str, tuple], what: str) -> torch.Size:
    """Broadcast named shapes, raising a ``ValueError`` naming them when they do not fit."""
    try:
        return torch.broadcast_shapes(*shapes.values())
    except RuntimeError:
        desc = ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items())
        raise ValueError(f"{what}: shapes do not broadcast ({desc})") from None


def resolve_backend(backend, what: str, tensors=(), *, no_kernel: str | None = None) -> str:
    """The backend that runs ``what``: ``"torch"`` or ``"triton"`` (DESIGN.md §3).

    * ``"torch"``: the torch code, on any device.
    * ``"triton"``: the Triton kernels. Refused with a ``ValueError`` when ``what`` has no kernel
      (``no_kernel`` says why), and with a ``RuntimeError`` that says why and what to install when the
      kernels cannot run in this process (Triton missing; no CUDA device and ``TRITON_INTERPRET`` unset).
      Never a silent fallback to torch: a caller (or a test) that asked for Triton gets Triton or an error.
    * ``"auto"``: Triton when ``what`` has a kernel, one of ``tensors`` is on a CUDA device and the kernels
      can run; torch otherwise (CPU tensors run torch even under the interpreter, which is for tests).

    ``tensors`` are the call's tensors (``None`` entries are skipped); the Triton module is looked up only
    when needed, and Triton itself is never imported here.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {list(BACKENDS)}, got {backend!r}")
    if backend == "torch":
        return "torch"
    on_cuda = any(isinstance(t, torch.Tensor) and t.is_cuda for t in tensors)
    if backend == "auto" and (no_kernel is not None or not on_cuda):
        return "torch"
    if no_kernel is not None:
        raise ValueError(f"backend: {what} has no Triton kernel ({no_kernel}); use backend='torch' or 'auto'")
    from fast.triton import available

    ok, why = available()
    if backend == "auto":
        return "triton" if ok else "torch"
    if not ok:
        raise RuntimeError(f"{what}: backend='triton' was requested, but the Triton kernels cannot run here: {why}")
    return "triton"
