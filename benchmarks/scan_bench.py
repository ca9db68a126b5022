"""The two scans side by side with their peers, timed in alternation in one process, outputs compared.

    python -m benchmarks.scan_bench [--quick] [--threads N] [--out FILE.json]

Rows (each timed in round-robin with the others of its case, ``benchmarks.case.timed_round_robin``, so that all
see the same state of the machine; medians):

  linear scan, real float32, B = 8, L = 4096, D = 256 (issue 19), and the complex64 lanes of two LTI models at the
  standard size (S4D: H = 128 groups of 32 lanes, S5: 64 lanes; one decay per lane broadcast over batch and time):
    fast.ops.linear_scan        this project (backend "torch": on the CPU the compiled step loop of fast.cpu_scan,
                                where it is built)
    fast blocked scan           this project's blocked parallel scan in torch ops (chunk_size = its default
                                block's steps, which selects it), what linear_scan runs without a C compiler
    step loop                   x_k = a_k x_{k-1} + b_k, a plain torch loop over time (one torch operation a step)
    torch associative_scan      torch._higher_order_ops.associative_scan, combine_mode "generic" (its "pointwise"
                                mode refuses CPU tensors)
    mambapy pscan               mambapy.pscan.pscan (lanes as its (B, L, D, N) with N = 1), if installed
    copy floor                  one torch copy_ of a tensor of the output's size into warm memory; the floor is the
                                bytes of a, b and x once each at the speed of that copy (bytes read + written per
                                second), i.e. 1.5 copies of one tensor's size; with a broadcast decay, a's bytes are
                                its own
    fresh clone                 b.clone(): one copy of b into a fresh tensor, whose pages are faulted in on first
                                touch (every implementation returns a fresh output: this is about the least it
                                costs on this machine's allocator)
  the RG-LRU scan with its discretization, real float32, B = 8, L = 4096, D = 256: a = A^delta, b = sqrt(1 - a^2) u
  from Griffin-like inputs (A^8 in [0.9, 0.999] a channel, delta = 8 sigmoid(.)), then x_k = a_k x_{k-1} + b_k:
    fast.ops.linear_scan        the discretization in torch ops, then this project's scan
    step loop                   the same discretization, then the plain loop
    lrnnx rglru_scan_ref        lrnnx.ops.rglru_scan.rglru_scan_ref (its (B, D, L) layout prepared outside the
                                timing; N = 1, so its readout is the state), if installed
  models RG-LRU, S7, Mamba at the standard size (B = 8, L = 1024, d_model = 128): forward, forward + backward and the
  sequential loop of ``model.step`` (the runs of ``benchmarks.case``), in round robin
  selective scan, Mamba at the standard size (B = 8, L = 1024, D = 256 = 2 x d_model, N = 16, float32):
    fast.ops.selective_scan     this project (backend "torch", rule "mamba", with D and z)
    mamba-ssm selective_scan_ref, lrnnx selective_scan_ref   the peers' own pure-torch references (their (B, D, L)
                                layout prepared outside the timing), if installed
    mambapy selective scan      mambapy's Mamba selective scan: exp(dt A), dt B u, pscan, C readout (its
                                ``MambaBlock.selective_scan`` steps, run as the module's own functions), if installed

Every output is compared with a float64 oracle of the same parameters (the step loop in float64; for the selective
scan, ``reference.selective_scan``): a row whose relative RMS error exceeds the float32 rtol of
``equivalence_tests/tolerances.py`` (1e-4) is marked WRONG, so a fast wrong peer is not mistaken for a fast one. A peer
that is not installed (they live in the ``make peers`` environment ``.venv-peers``) or refuses the input gets a
row saying why.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import numpy as np
import torch

from benchmarks.case import timed_round_robin

CPU = torch.device("cpu")
F32_RTOL, F32_ATOL = 1e-4, 1e-5  # equivalence_tests/tolerances.py, float32 / complex64


def _error(out, ref) -> tuple[float, bool]:
    """(relative RMS error, within the float32 rtol of the table). Normwise: over thousands of steps of decays
    near 1 the states of any float32 order of operations (the step loop's too) drift by ~1e-5 of their scale,
    which the elementwise test fails where a state crosses zero."""
    diff = (out.detach().to(ref.dtype) - ref).abs()
    rel = float(diff.pow(2).mean().sqrt() / ref.abs().pow(2).mean().sqrt())
    return rel, bool(rel <= F32_RTOL)


def _step_loop(a, b):
    """x_k = a_k x_{k-1} + b_k, one step at a time (a broadcasts against b)."""
    x = torch.empty(b.shape, dtype=torch.promote_types(a.dtype, b.dtype))
    h = torch.zeros_like(x[:, 0])
    a_steps = a.expand(b.shape) if a.shape[1] == 1 else a
    for k in range(b.shape[1]):
        h = torch.addcmul(b[:, k], a_steps[:, k], h)
        x[:, k] = h
    return x


def _peer(name):
    """Import a peer module, or return the reason it cannot be."""
    try:
        if name == "mambapy":
            import mambapy.pscan

            return mambapy.pscan
        if name == "mamba_ssm":
            from equivalence_tests.peers import mamba_ssm_adapters

            return mamba_ssm_adapters.load()[0]
        if name in ("lrnnx", "lrnnx_rglru"):
            from equivalence_tests.peers import lrnnx_adapters

            ns = lrnnx_adapters.load()
            return ns.selective_scan if name == "lrnnx" else ns.rglru_scan
    except Exception as e:  # noqa: BLE001 -- any import failure is the row's reason
        return f"not importable here ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    raise ValueError(name)


def linear_scan_case(label, shape, a_shape, dtype, budget) -> list[dict]:
    """The linear-scan rows of one case."""
    from torch._higher_order_ops.associative_scan import associative_scan

    import fast.ops
    import fast.scan

    gen = torch.Generator().manual_seed(0)
    real = torch.float32
    mag = torch.rand(a_shape, generator=gen, dtype=real) * 0.5 + 0.5  # |a| in [0.5, 1)
    b = torch.randn(shape, generator=gen, dtype=real)
    if dtype.is_complex:
        phase = torch.rand(a_shape, generator=gen, dtype=real) * 2 * math.pi
        a = torch.polar(mag, phase)
        b = torch.complex(b, torch.randn(shape, generator=gen, dtype=real))
    else:
        a = mag
    ref = _step_loop(a.to(torch.complex128 if dtype.is_complex else torch.float64), b.to(torch.complex128 if
                     dtype.is_complex else torch.float64))
    a_full = a.expand(shape).contiguous()  # the peers take a full decay tensor (prepared outside the timing)

    def combine(left, right):
        return right[0] * left[0], right[0] * left[1] + right[1]

    steps = fast.scan._blocks(shape[0], shape[1], math.prod(shape[2:]), b.element_size(), None)[1]  # default plan
    fns = {
        "fast.ops.linear_scan": lambda: fast.ops.linear_scan(a, b, backend="torch")[0],
        "fast blocked scan": lambda: fast.ops.linear_scan(a, b, backend="torch", chunk_size=steps)[0],
        "step loop": lambda: _step_loop(a, b),
        "torch associative_scan": lambda: associative_scan(combine, (a_full, b), dim=1, combine_mode="generic")[1],
    }
    skipped = {}
    pscan = _peer("mambapy")
    if isinstance(pscan, str):
        skipped["mambapy pscan"] = pscan
    else:
        lanes = (shape[0], shape[1], math.prod(shape[2:]), 1)
        a4, b4 = a_full.reshape(lanes), b.reshape(lanes)
        fns["mambapy pscan"] = lambda: pscan.pscan(a4, b4).reshape(shape)
    rows = _checked_rows(label, fns, ref, skipped)
    out_copy = torch.empty_like(b)  # the floor's copy, of the output's size, timed in the same round robin
    fns["copy floor"] = lambda: out_copy.copy_(b)
    fns["fresh clone"] = lambda: b.clone()  # a copy into a fresh tensor: what returning a new output costs at least
    with torch.no_grad():
        times = timed_round_robin(fns, CPU, budget=budget)
    moved = (a.numel() * a.element_size()) + 2 * b.numel() * b.element_size()  # a, b read; x written
    rate = 2 * b.numel() * b.element_size() / times["copy floor"]  # bytes read + written per second
    floor = moved / rate
    for r in rows:
        r.update(seconds=times[r["impl"]], floor_seconds=floor, copy_bytes_per_second=rate)
    rows.append({"case": label, "impl": "fresh clone", "seconds": times["fresh clone"], "floor_seconds": floor})
    rows += [{"case": label, "impl": name, "status": why} for name, why in skipped.items()]
    return rows


def _checked_rows(case: str, fns: dict, ref, skipped: dict) -> list[dict]:
    """Run every function of ``fns`` once and compare its output with ``ref``: a row each (``rel_error``,
    ``correct``); a function that raises leaves ``fns`` and goes to ``skipped`` with its error (it is a row too)."""
    rows = []
    for name, fn in list(fns.items()):  # outputs first: a row that fails or is wrong is still timed and marked
        try:
            with torch.no_grad():
                rel, ok = _error(fn(), ref)
        except Exception as e:  # noqa: BLE001 -- the peer's failure is the row
            skipped[name] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
            del fns[name]
            continue
        rows.append({"case": case, "impl": name, "rel_error": rel, "correct": ok})
    return rows


def rglru_scan_case(budget, quick) -> list[dict]:
    """The RG-LRU scan with its discretization (a = A^delta, b = sqrt(1 - a^2) u), ours and the step loop against
    lrnnx's ``rglru_scan_ref``, from the same float32 inputs; the oracle is the float64 of both steps."""
    import fast.ops

    Bsz, L, D = (2, 256, 32) if quick else (8, 4096, 256)
    gen = torch.Generator().manual_seed(0)
    A = (torch.rand(D, 1, generator=gen) * 0.099 + 0.9) ** (1 / 8)  # (D, 1): A^8 in [0.9, 0.999], Griffin's range
    delta = 8 * torch.sigmoid(torch.randn(Bsz, L, D, generator=gen))  # (B, L, D): c r_t with c = 8
    u = torch.randn(Bsz, L, D, generator=gen)  # (B, L, D): the gated input

    def systems(delta, u, A):  # (B, L, D) each: lrnnx's formulas (a through the log of A), two fresh tensors
        a = torch.mul(delta, torch.log(A[:, 0])).exp_()
        return a, torch.mul(a, a).neg_().add_(1).sqrt_().mul_(u)

    ref = _step_loop(*systems(delta.double(), u.double(), A.double()))  # (B, L, D)
    case = f"RG-LRU scan real float32 B={Bsz} L={L} D={D}"
    fns = {
        "fast.ops.linear_scan": lambda: fast.ops.linear_scan(*systems(delta, u, A), backend="torch")[0],
        "step loop": lambda: _step_loop(*systems(delta, u, A)),
    }
    skipped = {}
    mod = _peer("lrnnx_rglru")
    if isinstance(mod, str):
        skipped["lrnnx rglru_scan_ref"] = mod
    else:
        u_t, delta_t = u.transpose(1, 2).contiguous(), delta.transpose(1, 2).contiguous()  # (B, D, L)
        fns["lrnnx rglru_scan_ref"] = lambda: mod.rglru_scan_ref(u_t, delta_t, A).transpose(1, 2)
    rows = _checked_rows(case, fns, ref, skipped)
    with torch.no_grad():
        times = timed_round_robin(fns, CPU, budget=budget)
    for r in rows:
        r["seconds"] = times[r["impl"]]
    return rows + [{"case": case, "impl": name, "status": why} for name, why in skipped.items()]


def selective_scan_case(budget, quick) -> list[dict]:
    """Mamba's selective scan at the standard size against the peers' reference scans."""
    import fast.ops
    import reference

    Bsz, L, D, N = (2, 128, 32, 8) if quick else (8, 1024, 256, 16)
    gen = torch.Generator().manual_seed(0)
    u, z = torch.randn(Bsz, L, D, generator=gen), torch.randn(Bsz, L, D, generator=gen)
    dt = torch.nn.functional.softplus(torch.randn(Bsz, L, D, generator=gen) - 4.0)  # about 0.02, Mamba's range
    A = -(torch.arange(1, N + 1, dtype=torch.float32).repeat(D, 1))  # (D, N): S4D-real, Mamba's initialization
    Bm, Cm = torch.randn(Bsz, L, N, generator=gen), torch.randn(Bsz, L, N, generator=gen)
    Dv = torch.randn(D, generator=gen)
    ref = torch.from_numpy(np.asarray(reference.selective_scan(
        *(x.double().numpy() for x in (u, dt, A, Bm, Cm, Dv, z)), method="mamba")))  # (B, L, D)
    fns = {"fast.ops.selective_scan": lambda: fast.ops.selective_scan(u, dt, A, Bm, Cm, Dv, z, backend="torch")}
    skipped = {}
    tr = {k: v.transpose(1, 2).contiguous() for k, v in {"u": u, "dt": dt, "B": Bm, "C": Cm, "z": z}.items()}
    for peer, label in (("mamba_ssm", "mamba-ssm selective_scan_ref"), ("lrnnx", "lrnnx selective_scan_ref")):
        mod = _peer(peer)
        if isinstance(mod, str):
            skipped[label] = mod
            continue
        fns[label] = (lambda mod=mod: mod.selective_scan_ref(
            tr["u"], tr["dt"], A, tr["B"], tr["C"], Dv, tr["z"]).transpose(1, 2))
    pscan = _peer("mambapy")
    if isinstance(pscan, str):
        skipped["mambapy selective scan"] = pscan
    else:
        def mambapy_scan():  # the steps of mambapy.mamba.MambaBlock.selective_scan, then its gate
            deltaA = torch.exp(dt.unsqueeze(-1) * A)  # (B, L, D, N)
            BX = dt.unsqueeze(-1) * Bm.unsqueeze(2) * u.unsqueeze(-1)  # (B, L, D, N)
            hs = pscan.pscan(deltaA, BX)  # (B, L, D, N)
            y = (hs @ Cm.unsqueeze(-1)).squeeze(3) + Dv * u  # (B, L, D)
            return y * torch.nn.functional.silu(z)

        fns["mambapy selective scan"] = mambapy_scan
    case = f"selective scan B={Bsz} L={L} D={D} N={N} float32"
    rows = _checked_rows(case, fns, ref, skipped)
    with torch.no_grad():
        times = timed_round_robin(fns, CPU, budget=budget)
    for r in rows:
        r["seconds"] = times[r["impl"]]
    return rows + [{"case": case, "impl": name, "status": why} for name, why in skipped.items()]


def model_case(name: str, budget: float, quick: bool) -> list[dict]:
    """A fast LTV model at the standard size: forward, forward + backward and the sequential step loop, in round
    robin (``benchmarks.case.runner``'s runs)."""
    from benchmarks.case import runner

    spec = dict(model=name, B=2 if quick else 8, L=128 if quick else 1024, H=16 if quick else 128,
                N=4 if quick else (16 if name in ("Mamba", "S7") else 64))
    fns = {impl: runner({**spec, "impl": impl}, impl, CPU)[0] for impl in ("fast", "fast+backward", "sequential")}
    times = timed_round_robin(fns, CPU, budget=budget, min_reps=3)
    case = f"model {name} B={spec['B']} L={spec['L']} d_model={spec['H']} N={spec['N']} float32"
    return [{"case": case, "impl": impl, "seconds": t} for impl, t in times.items()]


def run(quick: bool = False, threads: int | None = None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    budget = 2.0 if quick else 6.0
    scale = 8 if quick else 1
    L, D, H = 4096 // scale, 256 // scale, 128 // scale
    Ll = 1024 // scale
    cases = [
        (f"real float32 B=8 L={L} D={D}", (8, L, D), (8, L, D), torch.float32),
        (f"complex64 S4D lanes B=8 L={Ll} H={H} M=32", (8, Ll, H, 32), (1, 1, H, 32), torch.complex64),
        (f"complex64 S5 lanes B=8 L={Ll} P=64", (8, Ll, 64, 1), (1, 1, 64, 1), torch.complex64),
    ]
    rows = []
    for label, shape, a_shape, dtype in cases:
        rows += linear_scan_case(label, shape, a_shape, dtype, budget)
    rows += rglru_scan_case(budget, quick)
    rows += selective_scan_case(budget, quick)
    for name in ("RGLRU", "S7", "Mamba"):
        rows += model_case(name, budget, quick)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
                   f"torch {torch.__version__}",
        "rows": rows,
    }


def table(result: dict) -> str:
    lines = [f"Scans side by side ({result['date']}; {result['machine']}; times are medians in round robin):"]
    by_case: dict = {}
    for r in result["rows"]:
        by_case.setdefault(r["case"], []).append(r)
    for case, rows in by_case.items():
        rate = next((r["copy_bytes_per_second"] for r in rows if "copy_bytes_per_second" in r), None)
        lines.append(f"  {case}" + ("" if rate is None else f"  (copy floor: {rate / 1e9:.1f} GB/s read + written)"))
        ours = next((r for r in rows if r["impl"] in ("fast", "fast.ops.linear_scan", "fast.ops.selective_scan")
                     and "seconds" in r), None)
        for r in rows:
            if "seconds" not in r:
                lines.append(f"    {r['impl']:30s} skipped: {r['status']}")
                continue
            parts = [f"{r['seconds'] * 1e3:9.2f} ms"]
            if ours is not None and r is not ours:
                parts.append(f"{r['seconds'] / ours['seconds']:6.2f}x ours")
            if r.get("floor_seconds"):
                parts.append(f"{r['seconds'] / r['floor_seconds']:6.2f}x floor")
            if "correct" in r:
                parts.append(("correct" if r["correct"] else "WRONG") + f" (rel. error {r['rel_error']:.1e})")
            lines.append(f"    {r['impl']:30s} " + "  ".join(parts))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scan_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: check that the rows run")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads before timing")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    result = run(args.quick, args.threads)
    print(table(result), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
