"""The diagonal linear recurrence on the CPU as a compiled step loop (``fast/csrc/linear_scan.c``).

    x_k = a_k * x_{k-1} + b_k,      k = 0 .. L-1,   x_{-1} = initial_state (0 by default)

On one CPU core the recurrence is bound by memory, not arithmetic: a loop over the steps that updates every lane
of a step at once reads a and b and writes x once, one multiply-add per element. A parallel scan does at least
twice that arithmetic and, in torch, pays a Python call per round (``fast.scan``'s module docstring); a Python
loop over the steps pays one per step. So on CPU tensors ``fast.scan.linear_scan`` runs this loop, compiled from
C by the machine's C compiler on first use (a second or so; the library is cached, keyed by the hash of the
source, the flags and the compiler's version), with the work split between ``torch.get_num_threads()`` threads
by batch rows or by lanes. Where no C compiler is found (or ``LRNN_CPU_SCAN=0`` is set) ``available()`` says
why and the blocked scan of ``fast.scan`` runs instead; the test suite fails when a compiler exists and the
build does not.

Environment: ``CC`` (the compiler, default ``cc``), ``LRNN_CACHE_DIR`` (where the library is kept, default
``$XDG_CACHE_HOME/lrnn-reference`` or ``~/.cache/lrnn-reference``, else a folder in the temporary directory when
that is not writable), ``LRNN_CPU_SCAN=0`` (never use it).

Differentiable through ``_CompiledScan``: the backward is the adjoint recurrence G_k = g_k + conj(a_{k+1}) G_{k+1}
with dL/db_k = G_k, dL/da_k = G_k conj(x_{k-1}) and dL/dx_{-1} = conj(a_0) G_0 (PyTorch's convention for complex
gradients), the loop run from the end, dL/da formed in the same pass. Memory: the forward keeps a, x and the
initial state, O(B L F); the backward adds the gradients.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

__all__ = ["available", "DTYPES", "scan"]

#: The precisions the C loop has (real and complex, single and double).
DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)

_SOURCE = Path(__file__).with_name("csrc") / "linear_scan.c"
#: Flags of the build: optimized, no contraction of a * x + b into a fused multiply-add (so the loop rounds as the
#: step-by-step recurrence of the reference does on every machine).
_FLAGS = ("-O3", "-std=c99", "-ffp-contract=off", "-shared", "-fPIC")
_NAMES = {torch.float32: "float32", torch.float64: "float64", torch.complex64: "complex64",
          torch.complex128: "complex128"}

#: The fewest lanes of one thread's share when the work is split by lanes (a multiple of a cache line of float32).
_MIN_LANES = 64
#: The fewest elements (B L F) of one thread's share. Measured 2026-12-04 on the 2-core AMD EPYC (B = 8, F = 32
#: float32, fresh outputs, medians of 101 calls): 1 / 2 threads took 38 / 83 us at 2^17 elements, 124 / 125 us at
#: 2^19 and 243 / 250 us at 2^20 (in cache); at 2^23 (B = 8, L = 4096, F = 256) 17-18 ms / 9.4 ms.
_MIN_WORK = 1 << 19


def _cache_dirs() -> list[Path]:
    """Where the library may be kept: ``LRNN_CACHE_DIR`` when set, else the user's cache directory and, should
    that not be writable, one in the temporary directory."""
    if os.environ.get("LRNN_CACHE_DIR"):
        return [Path(os.environ["LRNN_CACHE_DIR"])]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    user = getattr(os, "getuid", lambda: "user")()
    return [Path(base) / "lrnn-reference", Path(tempfile.gettempdir()) / f"lrnn-reference-{user}"]


def _build(compiler: str, name: str, folder: Path) -> Path:
    """The library ``folder / name``, compiled there unless it exists (into a temporary name, then renamed, so that
    processes building at once do not see a partial file). Raises ``OSError`` (folder not writable) or
    ``RuntimeError`` (the compiler failed)."""
    target = folder / name
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
    os.close(fd)
    build = subprocess.run([compiler, *_FLAGS, str(_SOURCE), "-o", tmp], capture_output=True, text=True, timeout=300)
    if build.returncode != 0:
        os.unlink(tmp)
        raise RuntimeError(f"the C compiler {compiler} failed on {_SOURCE.name}: {build.stderr.strip()[-2000:]}")
    os.replace(tmp, target)
    return target


@functools.lru_cache(maxsize=1)
def _library() -> tuple[ctypes.CDLL | None, str | None]:
    """The compiled loop, built on first use, or ``(None, why not)``."""
    if os.environ.get("LRNN_CPU_SCAN", "1") == "0":
        return None, "switched off by LRNN_CPU_SCAN=0"
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        return None, f"no C compiler found (CC={os.environ.get('CC', 'cc')!r} is not on PATH)"
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as err:
        return None, f"the C compiler {compiler} does not run: {err}"
    key = hashlib.sha256(b"\0".join([_SOURCE.read_bytes(), " ".join(_FLAGS).encode(), version.encode(),
                                      platform.machine().encode()])).hexdigest()[:16]
    errors = []
    for folder in _cache_dirs():
        try:
            lib = ctypes.CDLL(str(_build(compiler, f"linear_scan-{key}.so", folder)))  # its calls release the GIL
            break
        except RuntimeError as err:
            return None, str(err)
        except (OSError, subprocess.SubprocessError) as err:
            errors.append(f"{folder}: {err}")
    else:
        return None, "building or loading the compiled scan failed: " + "; ".join(errors)
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for name in _NAMES.values():
        getattr(lib, f"lrnn_scan_{name}").argtypes = [ptr, i64, i64, ptr, ptr, ptr] + [i64] * 6
        getattr(lib, f"lrnn_adjoint_{name}").argtypes = [ptr, i64, i64, ptr, ptr, ptr, ptr, ptr] + [i64] * 6
    return lib, None


def available() -> tuple[bool, str | None]:
    """``(True, None)`` when the compiled loop can run in this process, else ``(False, why not)``."""
    lib, why = _library()
    return lib is not None, why


@functools.lru_cache(maxsize=8)
def _pool(workers: int, pid: int) -> concurrent.futures.ThreadPoolExecutor:
    """The worker threads of process ``pid``: a forked child (a DataLoader worker) gets its own, since the
    parent's threads do not exist in it and their pool would never run what is given to it."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lrnn-scan")


def _shares(R: int, L: int, F: int, threads: int) -> list[tuple[int, int, int, int]]:
    """The ``(r0, r1, f0, f1)`` of each thread: batch rows apart when there are enough of them, else lanes apart
    (each share at least ``_MIN_LANES`` lanes, cut at multiples of 16), and at least ``_MIN_WORK`` elements a
    share; one share for one thread. Every lane is computed by the same operations in the same order whatever the
    split, so the result does not depend on it."""
    threads = min(threads, R * L * F // _MIN_WORK)
    if threads <= 1 or R * F < 2 * _MIN_LANES:
        return [(0, R, 0, F)]
    if R >= threads:
        cuts = [R * i // threads for i in range(threads + 1)]
        return [(cuts[i], cuts[i + 1], 0, F) for i in range(threads) if cuts[i] < cuts[i + 1]]
    per_row = max(1, min(-(-threads // R), F // _MIN_LANES))  # lane shares in each row
    cuts = [F * i // per_row // 16 * 16 for i in range(per_row)] + [F]  # on 64-byte lines of float32 (no sharing)
    return [(r, r + 1, cuts[i], cuts[i + 1]) for r in range(R) for i in range(per_row)]


def _run(fn, shares, *args) -> None:
    """``fn(*args, r0, r1, f0, f1, L, F)`` for every share, in parallel threads (the calling one included)."""
    if len(shares) == 1:
        fn(*args, *shares[0])
        return
    pool = _pool(len(shares) - 1, os.getpid())
    futures = [pool.submit(fn, *args, *share) for share in shares[1:]]
    fn(*args, *shares[0])
    for f in futures:
        f.result()


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _strides(a: torch.Tensor) -> tuple[int, int]:
    """The loop's strides of ``a (B or 1, L or 1, F)`` over batch rows and steps: 0 along an axis of size 1."""
    return tuple(a.stride(d) if a.shape[d] > 1 else 0 for d in range(2))


def _launch(kind: str, a: torch.Tensor, like: torch.Tensor, *pointers) -> None:
    """The C function ``lrnn_<kind>_<dtype>`` over the states of shape ``like (B, L, F)``: its arguments are a's
    pointer and strides, ``pointers``, then each thread's share."""
    R, L, F = like.shape
    fn = getattr(_library()[0], f"lrnn_{kind}_{_NAMES[like.dtype]}")
    shares = [share + (L, F) for share in _shares(R, L, F, torch.get_num_threads())]
    _run(fn, shares, a.data_ptr(), *_strides(a), *pointers)


def _forward(a, b, x0) -> torch.Tensor:
    """``x (B, L, F)`` from ``a (B or 1, L or 1, F)`` (lanes unit-stride), ``b (B, L, F)`` contiguous and
    ``x0 (B, F)`` or None."""
    x = torch.empty_like(b)  # (B, L, F)
    _launch("scan", a, b, b.data_ptr(), x.data_ptr(), _ptr(x0))
    return x


def _adjoint(a, x, x0, g, want_a: bool):
    """``(G, dL/da or None)`` of ``_forward`` for the gradient ``g (B, L, F)`` contiguous."""
    G = torch.empty_like(g)  # (B, L, F)
    da = torch.empty_like(g) if want_a else None  # (B, L, F)
    _launch("adjoint", a, g, x.data_ptr(), _ptr(x0), g.data_ptr(), G.data_ptr(), _ptr(da))
    return G, da


class _CompiledScan(torch.autograd.Function):
    """The compiled loop with its adjoint as the backward (module docstring)."""

    @staticmethod
    def forward(ctx, a, b, x0):
        x = _forward(a, b, x0)
        ctx.save_for_backward(a, x, x0)
        return x

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_x):
        a, x, x0 = ctx.saved_tensors
        want_a, want_b, want_x0 = ctx.needs_input_grad[:3]
        G, da = _adjoint(a, x, x0, _plain(grad_x), want_a)
        if want_a and a.shape != G.shape:  # a broadcast over batch rows or steps: its gradient summed over them
            da = da.sum(tuple(d for d in range(3) if a.shape[d] == 1), keepdim=True)
        d_x0 = a[:, 0].conj() * G[:, 0] if (want_x0 and x0 is not None) else None  # (B, F)
        return da, G if want_b else None, d_x0


def _plain(t: torch.Tensor, contiguous: bool = True) -> torch.Tensor:
    """``t`` with its values in memory as the C code reads them: a lazy conjugate or negation (torch's conj and neg
    bits) carried out, and contiguous unless ``contiguous`` is False."""
    t = t.resolve_conj().resolve_neg()
    return t.contiguous() if contiguous else t


def _decays(a: torch.Tensor) -> torch.Tensor:
    """``a (B, L, F)`` as the loop reads it: an axis of stride 0 (a decay broadcast over batch rows or steps, as
    the LTI lane models pass it) kept at size 1, which the loop reads with stride 0 (no copy); lanes unit-stride."""
    index = tuple(slice(0, 1) if a.stride(d) == 0 and a.shape[d] > 1 else slice(None) for d in range(2))
    a = a[index]  # (B or 1, L or 1, F): a view
    return a if a.stride(2) == 1 or a.shape[2] == 1 else a.contiguous()  # a broadcast over lanes: laid out


def scan(a: torch.Tensor, b: torch.Tensor, x0: torch.Tensor | None) -> torch.Tensor:
    """States ``x (B, L, F)`` of x_k = a_k x_{k-1} + b_k from ``a, b (B, L, F)`` and ``x0 (B, F)`` or None, all of
    one dtype of ``DTYPES`` on the CPU (``available()`` must be true)."""
    return _CompiledScan.apply(_plain(_decays(a), contiguous=False), _plain(b), None if x0 is None else _plain(x0))
