"""Triton kernels for the two scans the fast models run on, forward and backward.

* ``linear_scan(a, b, initial_state=None) -> (x, final_state)``: the diagonal recurrence
  x_k = a_k * x_{k-1} + b_k, real or complex (S5, LRU, RG-LRU); kernels in ``fast/triton/linear_scan.py``.
* ``selective_scan(u, dt, A, B, C, D=None, z=None, *, method="mamba", integration_timesteps=None,
  initial_state=None, return_state=False)``: Mamba's selective SSM with the discretization done inside the
  kernel, for every rule (mamba, zoh, bilinear, dirac, async); kernels in ``fast/triton/selective_scan.py``.

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

__all__ = [
    "available",
    "bench_triton",
    "check_runnable",
    "import_triton",
    "linear_scan",
    "require_triton",
    "selective_scan",
]

#: What to run to get Triton (from the repository root).
INSTALL_TRITON = 'pip install -c constraints.txt -e ".[triton]"'

_TRUE = ("1", "true", "on", "yes")


def interpreting() -> bool:
    """Whether Triton's CPU interpreter is requested (the ``TRITON_INTERPRET`` environment variable)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in _TRUE


def _installed(name: str) -> bool:
    """Whether ``import name`` would find the package, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def available() -> tuple[bool, str]:
    """``(True, where)`` if the Triton kernels can run in this process, else ``(False, why and what to do)``.

    They can run when Triton is installed and either a CUDA device is present or ``TRITON_INTERPRET=1`` is set
    (Triton's CPU interpreter, which also needs NumPy). This function does not import Triton.
    """
    if not _installed("triton"):
        return False, f"Triton is not installed; to install it: {INSTALL_TRITON}"
    if interpreting():
        if not _installed("numpy"):
            return False, "TRITON_INTERPRET=1 is set, but Triton's interpreter needs NumPy: pip install numpy"
        return True, "Triton interpreter on the CPU (TRITON_INTERPRET=1; slow, for tests)"
    if _cuda_available():
        return True, "CUDA device"
    return False, (
        "no CUDA device is visible and TRITON_INTERPRET is not set: the Triton kernels need a GPU, or "
        "TRITON_INTERPRET=1 in the environment before Triton is first imported to run them (slowly) on the CPU"
    )


def import_triton():
    """Import and return ``(triton, triton.language)``, or raise ``RuntimeError`` if Triton is not installed.

    This does not ask whether the kernels can *run* here (``available()``): compiling them ahead of time for a
    GPU (``fast.triton.compile_check``) needs only Triton itself."""
    if not _installed("triton"):
        raise RuntimeError(f"Triton is not installed; to install it: {INSTALL_TRITON}")
    import triton
    import triton.language as tl

    return triton, tl


def require_triton():
    """Import and return ``(triton, triton.language)``, or raise ``RuntimeError`` saying why they cannot run."""
    ok, why = available()
    if not ok:
        raise RuntimeError(f"the Triton kernels cannot run here: {why}")
    return import_triton()


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
    device: str = "cuda",
    timer=None,
):
    """Time the Triton kernel of ``kind`` ("selective_scan" or "linear_scan") against ``torch_fn`` (the torch
    path, same call signature) and the memory-bandwidth floor. For ``make bench``; the harness prints the rows.

    The floor is the time to move once the bytes the operation must read and write (inputs in, outputs out;
    with ``backward`` also the backward's reads and writes), at the bandwidth of a device-to-device copy of a
    buffer of that size timed here: no kernel can beat it. Returns a list of dicts
    ``{"name", "ms", "floor_ms", "bytes"}``; ``ms`` is what ``timer`` returns (default
    ``triton.testing.do_bench``, milliseconds).

    Shapes: selective_scan ``u, dt, z (B, L, D)``, ``A (D, N)``, ``B, C (B, L, N)`` with D = ``width``;
    linear_scan ``a, b (B, L, width)``. Timings mean something only on a GPU (``device="cuda"``); another
    ``device`` and ``timer`` exist so that the code can be exercised under the interpreter.
    """
    import torch

    if device == "cuda" and (interpreting() or not _cuda_available()):
        raise RuntimeError("bench_triton: needs a CUDA device and TRITON_INTERPRET unset (timings of the GPU kernels)")
    if timer is None:
        require_triton()
        from triton.testing import do_bench as timer

    dtype = torch.float32 if dtype is None else dtype
    gen = torch.Generator(device=device).manual_seed(0)
    Bsz, L, D, N = batch, length, width, d_state

    def rand(*shape):
        return torch.randn(*shape, device=device, dtype=dtype, generator=gen)

    if kind == "selective_scan":
        u, z = rand(Bsz, L, D), rand(Bsz, L, D)  # (B, L, D)
        dt = torch.nn.functional.softplus(rand(Bsz, L, D) - 4.0)  # (B, L, D), about 0.02
        A = -torch.rand(D, N, device=device, dtype=dtype, generator=gen) - 0.5  # (D, N)
        Bm, Cm, Dv = rand(Bsz, L, N), rand(Bsz, L, N), rand(D)  # (B, L, N), (B, L, N), (D,)
        args = (u, dt, A, Bm, Cm, Dv, z)
        moved = 4 * Bsz * L * D + 2 * Bsz * L * N  # read u, dt, z, B, C; write y
        if backward:  # read u, dt, z, B, C, dout; write du, ddt, dz, dB, dC
            moved += 4 * Bsz * L * D + 2 * Bsz * L * N + 3 * Bsz * L * D + 2 * Bsz * L * N
        fns = {"triton": selective_scan}
    elif kind == "linear_scan":
        a = torch.rand(Bsz, L, D, device=device, dtype=dtype, generator=gen) * 0.5 + 0.5  # (B, L, D)
        b = rand(Bsz, L, D)  # (B, L, D)
        args = (a, b)
        moved = 3 * Bsz * L * D  # read a, b; write x
        if backward:  # read a, x, dx; write da, db
            moved += 5 * Bsz * L * D
        fns = {"triton": linear_scan}
    else:
        raise ValueError(f"kind: expected 'selective_scan' or 'linear_scan', got {kind!r}")
    if torch_fn is not None:
        fns["torch"] = torch_fn

    nbytes = moved * torch.empty((), dtype=dtype).element_size()
    src = torch.empty(max(1, nbytes // 2), dtype=torch.uint8, device=device)  # a copy reads and writes it
    dst = torch.empty_like(src)
    floor_ms = timer(lambda: dst.copy_(src))
    rows = []
    for name, fn in fns.items():
        leaves = [x.detach().requires_grad_(backward) for x in args]

        def run(fn=fn, leaves=leaves):
            with torch.set_grad_enabled(backward):
                out = fn(*leaves)
                out = out[0] if isinstance(out, tuple) else out
                if backward:
                    out.sum().backward()

        rows.append({"name": f"{kind} {name}", "ms": timer(run), "floor_ms": floor_ms, "bytes": nbytes})
    return rows
