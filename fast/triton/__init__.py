"""Triton kernels for the two scans the fast models run on, forward and backward.

* ``linear_scan(a, b, initial_state=None) -> (x, final_state)``: the diagonal recurrence
  x_k = a_k * x_{k-1} + b_k, real or complex (S5, LRU, RG-LRU); ``fast.triton.linear_scan`` module.
* ``selective_scan(u, dt, A, B, C, D=None, z=None, *, method="mamba", integration_timesteps=None,
  initial_state=None, return_state=False)``: Mamba's selective SSM with the discretization done inside the
  kernel, for every rule (mamba, zoh, bilinear, dirac, async); ``fast.triton.selective_scan`` module.

Both take the arguments of their torch twins (``fast.ops``) and of the reference, walk along L in chunks with
the state carried between chunks, and are differentiable (``torch.autograd.Function`` with Triton backward
kernels). Where they run:

* on CUDA tensors, on a machine with an NVIDIA (or AMD) GPU and Triton installed;
* on CPU tensors under Triton's interpreter, ``TRITON_INTERPRET=1`` set before Triton is first imported
  (the test suite does this when no GPU is present). The interpreter is slow (Python per program and per
  element of a scan): it is for testing on small shapes.

``available()`` says whether this process can run them, and why not. Importing ``fast.triton`` never imports
triton: the kernels are compiled on first use.
"""

from __future__ import annotations

import importlib.util
import os

__all__ = ["available", "bench_triton", "check_runnable", "linear_scan", "require_triton", "selective_scan"]

#: What to run to get Triton (from the repository root).
INSTALL_TRITON = 'pip install -c constraints.txt -e ".[triton]"'

_TRUE = ("1", "true", "on", "yes")


def interpreting() -> bool:
    """Whether Triton's CPU interpreter is requested (the ``TRITON_INTERPRET`` environment variable)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in _TRUE


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def available() -> tuple[bool, str]:
    """``(True, where)`` if the Triton kernels can run in this process, else ``(False, why and what to do)``.

    They can run when Triton is installed and either a CUDA device is present or ``TRITON_INTERPRET=1`` is set
    (Triton's CPU interpreter, which also needs NumPy). This function does not import Triton.
    """
    if importlib.util.find_spec("triton") is None:
        return False, f"Triton is not installed; to install it: {INSTALL_TRITON}"
    if interpreting():
        if importlib.util.find_spec("numpy") is None:
            return False, "TRITON_INTERPRET=1 is set, but Triton's interpreter needs NumPy: pip install numpy"
        return True, "Triton interpreter on the CPU (TRITON_INTERPRET=1; slow, for tests)"
    if _cuda_available():
        return True, "CUDA device"
    return False, (
        "no CUDA device is visible and TRITON_INTERPRET is not set: the Triton kernels need a GPU, or "
        "TRITON_INTERPRET=1 in the environment before Triton is first imported to run them (slowly) on the CPU"
    )


def require_triton():
    """Import and return ``(triton, triton.language)``, or raise ``RuntimeError`` saying why they cannot run."""
    ok, why = available()
    if not ok:
        raise RuntimeError(f"the Triton kernels cannot run here: {why}")
    import triton
    import triton.language as tl

    return triton, tl


def check_runnable(tensors: dict, what: str) -> None:
    """Raise unless the kernels can run on these tensors: Triton usable here, and the tensors on a CUDA device
    (or on the CPU under the interpreter), all on the same device."""
    ok, why = available()
    if not ok:
        raise RuntimeError(f"{what}: the Triton kernels cannot run here: {why}")
    present = {k: v for k, v in tensors.items() if v is not None}
    devices = {v.device for v in present.values()}
    if len(devices) > 1:
        desc = ", ".join(f"{k} on {v.device}" for k, v in present.items())
        raise ValueError(f"{what}: all tensors must be on one device, got {desc}")
    device = next(iter(devices))
    if interpreting():
        if device.type != "cpu":
            raise ValueError(f"{what}: under TRITON_INTERPRET=1 the kernels run on CPU tensors, got device {device}")
    elif device.type != "cuda":
        raise ValueError(
            f"{what}: the Triton kernels run on CUDA tensors, got device {device}; move the tensors to the GPU "
            "(or use backend='torch')"
        )


from fast.triton.linear_scan import linear_scan  # noqa: E402  (after the helpers it imports lazily)
from fast.triton.selective_scan import selective_scan  # noqa: E402


def bench_triton(
    kind: str = "selective_scan",
    *,
    batch: int = 4,
    length: int = 2048,
    width: int = 1024,
    d_state: int = 16,
    dtype=None,
    torch_fn=None,
    backward: bool = True,
):
    """Time the Triton kernel of ``kind`` ("selective_scan" or "linear_scan") against ``torch_fn`` (the torch
    path, same call signature) and the memory-bandwidth floor, on the current CUDA device.

    The floor is the time to move the bytes the operation must read and write once (inputs in, outputs out,
    at the device-to-device copy bandwidth measured here by ``torch.Tensor.copy_`` of a buffer of that size):
    no kernel can beat it. Returns a list of dicts ``{"name", "ms", "floor_ms", "bytes"}`` for the harness
    (``make bench``) to print; ``ms`` is the median of ``triton.testing.do_bench``.

    Shapes: selective_scan ``u, dt, z (B, L, D)``, ``A (D, N)``, ``B, C (B, L, N)`` with D = ``width``;
    linear_scan ``a, b (B, L, width)``. Requires a CUDA device (a benchmark under the interpreter would time
    Python).
    """
    import torch

    if interpreting() or not _cuda_available():
        raise RuntimeError("bench_triton: needs a CUDA device and TRITON_INTERPRET unset (timings of the GPU kernels)")
    triton, _ = require_triton()
    from triton.testing import do_bench

    dtype = torch.float32 if dtype is None else dtype
    dev = "cuda"
    gen = torch.Generator(device=dev).manual_seed(0)
    Bsz, L, D, N = batch, length, width, d_state

    def rand(*shape):
        return torch.randn(*shape, device=dev, dtype=dtype, generator=gen)

    if kind == "selective_scan":
        u, z = rand(Bsz, L, D), rand(Bsz, L, D)
        dt = torch.nn.functional.softplus(rand(Bsz, L, D) - 4.0)  # (B, L, D), about 0.02
        A = -torch.rand(D, N, device=dev, dtype=dtype, generator=gen) - 0.5  # (D, N)
        Bm, Cm, Dv = rand(Bsz, L, N), rand(Bsz, L, N), rand(D)
        args = (u, dt, A, Bm, Cm, Dv, z)
        moved = 4 * Bsz * L * D + 2 * Bsz * L * N + D * N + D  # elements read (u, dt, z, B, C, A, D) + y written
        if backward:  # read again in the backward, plus dout in and du, ddt, dz, dB, dC out
            moved += 3 * Bsz * L * D + 2 * Bsz * L * N + Bsz * L * D + 3 * Bsz * L * D + 2 * Bsz * L * N
        fns = {"triton": selective_scan}
    elif kind == "linear_scan":
        a = torch.rand(Bsz, L, D, device=dev, dtype=dtype, generator=gen) * 0.5 + 0.5  # (B, L, D)
        b = rand(Bsz, L, D)
        args = (a, b)
        moved = 3 * Bsz * L * D
        if backward:
            moved += 3 * Bsz * L * D + 2 * Bsz * L * D  # a, x, dx in; da, db out
        fns = {"triton": linear_scan}
    else:
        raise ValueError(f"kind: expected 'selective_scan' or 'linear_scan', got {kind!r}")
    if torch_fn is not None:
        fns["torch"] = torch_fn

    nbytes = moved * torch.empty((), dtype=dtype).element_size()
    src = torch.empty(nbytes // 2 + 1, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    copy_ms = do_bench(lambda: dst.copy_(src))  # reads and writes nbytes in total
    rows = []
    for name, fn in fns.items():
        if backward:
            leaves = [x.detach().requires_grad_() for x in args]

            def step(fn=fn, leaves=leaves):
                out = fn(*leaves)
                out = out[0] if isinstance(out, tuple) else out
                out.sum().backward()

        else:

            def step(fn=fn):
                with torch.no_grad():
                    fn(*args)

        rows.append({"name": f"{kind} {name}", "ms": do_bench(step), "floor_ms": copy_ms, "bytes": nbytes})
    return rows
