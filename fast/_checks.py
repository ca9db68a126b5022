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


def values_ok(
    finite_args: dict[str, torch.Tensor | None],
    positive_args: dict[str, torch.Tensor | None] | None = None,
    nonnegative_args: dict[str, torch.Tensor | None] | None = None,
) -> None:
    """The value checks of one entry point (while ``validating()``; nothing otherwise): every tensor of
    ``finite_args`` finite, those of ``positive_args`` finite and > 0, those of ``nonnegative_args`` finite and
    >= 0. ``None`` entries are skipped. One reduction per tensor and one host sync for all of them; on a
    failure the per-argument checks raise the ``ValueError`` that names the culprit.

    A sum is finite only if every term is (an inf or a NaN propagates), so a finite sum clears a tensor in one
    pass; a sum that overflows from finite terms only sends the tensor to the exact check."""
    if not validating():
        return
    positive_args = {k: v for k, v in (positive_args or {}).items() if v is not None}
    nonnegative_args = {k: v for k, v in (nonnegative_args or {}).items() if v is not None}
    every = {k: v for k, v in finite_args.items() if v is not None} | positive_args | nonnegative_args
    flags = [torch.isfinite(x.sum(dtype=_sum_dtype(x))) for x in every.values() if x.numel()]
    flags += [x.min() > 0 for x in positive_args.values() if x.numel()]
    flags += [x.min() >= 0 for x in nonnegative_args.values() if x.numel()]
    if not flags or bool(torch.stack([f.to(device=flags[0].device) for f in flags]).all()):
        return
    for name, x in every.items():
        finite(x, name)
    for name, x in positive_args.items():
        positive(x, name)
    for name, x in nonnegative_args.items():
        nonnegative(x, name)


def _sum_dtype(x: torch.Tensor) -> torch.dtype | None:
    """Half-precision tensors are summed in float32 (a float16 sum of finite terms overflows at 65504)."""
    return torch.float32 if x.dtype in HALF else None


def parameters_ok(module: torch.nn.Module) -> None:
    """Every parameter of ``module`` finite (while ``validating()``), one host sync for all; a NaN or an inf is
    reported by the parameter's name, ``<Model>.<name>``, before any computation can fail on it."""
    if not validating():
        return
    what = type(module).__name__
    values_ok({f"{what}.{name}": p.detach() for name, p in module.named_parameters()})


# -- half precision -----------------------------------------------------------------------------------------
# The real-valued ops and models (selective_scan, linear_scan on real inputs, fft_conv on real inputs, diagonal
# discretization of real eigenvalues; Mamba, RG-LRU, S7) take float16 and bfloat16 tensors and compute in
# float32, as mamba_ssm does (its selective scan upcasts u, delta, A, B, C and keeps the state in float32), with
# the results cast back to the input's dtype. Complex arithmetic has no half-precision type torch can run
# (complex32 lacks most kernels), so the complex ops and models refuse half precision with a ValueError.

HALF = (torch.float16, torch.bfloat16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a computation on ``dtype`` tensors runs in: float32 for float16 / bfloat16, ``dtype`` otherwise."""
    return torch.float32 if dtype in HALF else dtype


def upcast(x: torch.Tensor | None) -> torch.Tensor | None:
    """A half-precision tensor as float32 (others unchanged; None stays None)."""
    return x.float() if x is not None and x.dtype in HALF else x


def no_half(dtype: torch.dtype, what: str, why: str = "it computes in complex arithmetic") -> None:
    """A ``ValueError`` for a half-precision ``dtype`` where ``what`` cannot run in it."""
    if dtype in HALF or dtype == torch.complex32:
        raise ValueError(
            f"dtype: {what} does not support {dtype} ({why}, and torch has no usable half-precision complex "
            "type); supported: torch.float32 and torch.float64 (complex64 / complex128 where complex inputs are "
            "allowed). Half precision runs in Mamba, RGLRU, S7 and the real-valued fast.ops"
        )


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
    """The backend that runs ``what``: ``"torch"`` or ``"triton"`` (Triton on CUDA tensors, torch otherwise).

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
