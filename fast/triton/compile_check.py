"""Compile the Triton kernels ahead of time for an NVIDIA GPU, on a machine that has none.

The test suite runs the kernels under Triton's CPU interpreter, which executes the kernel source as NumPy and
so accepts code that the real compiler rejects (a type that changes across loop iterations, an unsupported
operation in float64, a shape mismatch that NumPy broadcasts). This module runs the real compiler instead:
``triton.compile`` lowers each kernel variant (Triton IR -> GPU IR -> LLVM IR -> PTX) and Triton's bundled
``ptxas`` assembles the PTX into a binary for the chosen architecture (default sm_90, Hopper: H100/H200). No
GPU and no CUDA driver are needed; nothing is executed, so this proves that the kernels *build* for the GPU,
not what they compute there (the interpreter tests do that on the CPU).

For each variant it also reports what ``ptxas -v`` says of the binary: registers per thread, bytes spilled to
local memory (spills make a kernel slow), and the shared memory Triton allocates for the kernel.

Run it in a process where ``TRITON_INTERPRET`` is not set (under the interpreter ``triton.jit`` builds
interpreted functions, which cannot be compiled)::

    python -m fast.triton.compile_check            # every variant, sm_90, a table
    python -m fast.triton.compile_check --arch 80  # for an A100

Variants: the selective-scan forward and backward kernels for every rule, with every optional input present
and with none of them (float32), and with all present (float64); the linear-scan kernels, real and complex,
with and without an initial state (float32) and with one (float64). The tile sizes are the defaults of the
entry points (``DEFAULT_CHUNK_SIZE``, ``DEFAULT_BLOCK_SIZE``) and the state tile of N = 16.
"""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Variant", "variants", "compile_variant", "main"]

#: Integer (non-constexpr) arguments of the kernels.
_INTS = {"L", "D", "N", "F", "Bsz", "NUM_CHUNKS"}


@dataclass(frozen=True)
class Variant:
    """One specialization of one kernel: which kernel, the float type, and the constexpr arguments.

    ``absent`` names the pointer arguments passed as ``None`` at run time (Triton then specializes them as
    ``constexpr None``, as it does here)."""

    module: str  # "selective_scan" or "linear_scan"
    kernel: str  # the kernel function's name in that module
    dtype: str  # "fp32" or "fp64"
    constexprs: dict = field(hash=False)
    absent: tuple = ()

    @property
    def name(self) -> str:
        rules = {code: rule for rule, code in importlib.import_module("fast.triton.selective_scan").METHODS.items()}

        def show(key, value):
            return rules[value] if key == "METHOD" else int(value) if isinstance(value, bool) else value

        flags = ",".join(f"{k}={show(k, v)}" for k, v in self.constexprs.items())
        return f"{self.kernel}[{self.dtype}; {flags}]"


def variants() -> list[Variant]:
    """The kernel variants compiled by ``main`` (module docstring)."""
    # the modules, not the functions of the same names that fast.triton exports
    lin = importlib.import_module("fast.triton.linear_scan")
    sel = importlib.import_module("fast.triton.selective_scan")

    out = []
    tiles = dict(CHUNK=sel.DEFAULT_CHUNK_SIZE, BLOCK_D=sel.DEFAULT_BLOCK_SIZE, BLOCK_N=16)
    for code in sel.METHODS.values():
        for dtype, present in (("fp32", True), ("fp32", False), ("fp64", True)):
            fwd = dict(METHOD=code, HAS_D=present, HAS_Z=present, HAS_TAU=present, HAS_H0=present)
            fwd["SAVE_STATES"] = present
            bwd = dict(METHOD=code, HAS_D=present, HAS_Z=present, HAS_TAU=present, WANT_DTAU=present)
            none = () if present else ("Dv", "Z", "TAU", "H0")
            out.append(Variant("selective_scan", "_selective_scan_fwd_kernel", dtype, fwd | tiles, none))
            none = () if present else ("Dv", "Z", "TAU", "DZ", "DD_PART", "DTAU_PART")
            out.append(Variant("selective_scan", "_selective_scan_bwd_kernel", dtype, bwd | tiles, none))
    tiles = dict(CHUNK=lin.DEFAULT_CHUNK_SIZE, BLOCK_F=lin.DEFAULT_BLOCK_SIZE)
    for kernel in ("_linear_scan_fwd_kernel", "_linear_scan_bwd_kernel"):
        for is_complex in (False, True):
            for dtype, has_h0 in (("fp32", True), ("fp32", False), ("fp64", True)):
                flags = dict(IS_COMPLEX=is_complex, HAS_H0=has_h0) | tiles
                out.append(Variant("linear_scan", kernel, dtype, flags, () if has_h0 else ("H0",)))
    return out


def _jit_kernel(v: Variant):
    from fast.triton import interpreting

    if interpreting():
        raise RuntimeError(
            "TRITON_INTERPRET is set: triton.jit builds interpreted kernels, which cannot be compiled; "
            "run this in a process without it (env -u TRITON_INTERPRET ...)"
        )
    module = importlib.import_module(f"fast.triton.{v.module}")
    module._kernels()  # binds the triton.jit versions of the kernels and their device functions
    return getattr(module, v.kernel)


def _ptxas_report(ptx: str, arch: int) -> dict:
    """Registers and spilled bytes of the PTX, from ``ptxas -v`` run as Triton runs it (its bundled ptxas, its
    options)."""
    from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "kernel.ptx"
        src.write_text(ptx)
        cmd = [get_ptxas(arch).path, "-v", "--regAllocOptLevel=2", f"--gpu-name={sm_arch_from_capability(arch)}"]
        cmd += [str(src), "-o", str(Path(tmp) / "kernel.cubin")]
        log = subprocess.run(cmd, check=True, capture_output=True, text=True).stderr

    def number(pattern: str) -> int:
        found = re.search(pattern, log)
        return int(found.group(1)) if found else 0

    return {
        "registers": number(r"Used (\d+) registers"),
        "spill_stores": number(r"(\d+) bytes spill stores"),
        "spill_loads": number(r"(\d+) bytes spill loads"),
    }


def compile_variant(v: Variant, arch: int = 90) -> dict:
    """Compile one variant for ``sm_<arch>`` down to a GPU binary; return its resource use and compile time.

    ``shared`` is in bytes. Raises whatever Triton raises when the kernel does not compile (a
    ``CompilationError`` names the line)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = _jit_kernel(v)
    signature, constexprs = {}, dict(v.constexprs)
    for arg in fn.arg_names:
        if arg in v.constexprs:
            signature[arg] = "constexpr"
        elif arg in v.absent:
            signature[arg] = "constexpr"
            constexprs[arg] = None
        elif arg in _INTS:
            signature[arg] = "i32"
        else:
            signature[arg] = f"*{v.dtype}"
    start = time.perf_counter()
    compiled = triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", arch, 32))
    seconds = time.perf_counter() - start
    if not compiled.asm.get("cubin"):
        raise RuntimeError(f"{v.name}: Triton produced no binary")
    report = {"name": v.name, "seconds": seconds, "shared": compiled.metadata.shared}
    return report | _ptxas_report(compiled.asm["ptx"], arch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fast.triton.compile_check", description=__doc__.split("\n")[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability x 10 (90: H100/H200; 80: A100)")
    parser.add_argument("--only", default="", help="compile only the variants whose name contains this text")
    args = parser.parse_args(argv)
    chosen = [v for v in variants() if args.only in v.name]
    if not chosen:
        parser.error(f"--only {args.only!r} matches no variant")
    failures = 0
    print(f"{'variant':<118} {'regs':>5} {'spill st/ld':>12} {'smem':>6} {'s':>5}")
    for v in chosen:
        try:
            r = compile_variant(v, args.arch)
        except Exception as e:  # report every failing variant, then fail
            failures += 1
            print(f"{v.name:<118} FAILED: {type(e).__name__}: {e}")
            continue
        spills = f"{r['spill_stores']}/{r['spill_loads']}"
        print(f"{r['name']:<118} {r['registers']:>5} {spills:>12} {r['shared']:>6} {r['seconds']:>5.1f}")
    print(f"{len(chosen) - failures} of {len(chosen)} variants compiled for sm_{args.arch}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
