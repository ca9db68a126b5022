"""Speed and memory of the fast models against the reference and a plain sequential torch loop.

    python -m benchmarks                 # the standard table (B=8, L=1024, d_model=128) + the L sweep
    python -m benchmarks --quick         # small sizes, to check that the harness runs
    python -m benchmarks --models S4D Mamba --lengths 1024 4096

Every case runs in its own subprocess, so that its peak resident memory (the peak since set-up, VmHWM reset
through /proc/self/clear_refs, minus what the process held then) is its own; on CUDA the peak is
torch.cuda.max_memory_allocated. Times are
the median of repeated runs after a warm-up. Ratios are formed only between numbers measured in this run. The
target ratios (an LTI forward against the FFT floor, an LTV forward against the sequential loop) are printed
twice: from the two cases timed alone in separate processes, and from the two timed in alternation in one
process (``benchmarks.case.timed_alternating``). On a shared machine times taken minutes apart drift by tens of
percent; in alternation both see the same machine, but each also runs on memory the other just freed (fresh
pages), which slows an FFT round trip that alone in a loop reuses its buffers. Neither is the single truth.

Rows per model:
  fast          the fast model's forward (and forward + backward)
  reference     the NumPy reference's forward (skipped past a time budget)
  sequential    a plain torch loop of ``model.step`` over time: the "standard implementation" the Mamba
                paper measures against
  fft floor     one torch.fft.rfft + irfft round trip of an input of the same size, the floor for an FFT
                convolution (LTI); Centaurus "full" convolves H x H kernels and is compared with H floors
  fast triton   with a CUDA device and Triton: the same with backend="triton" (every model but S4)
Scans side by side (``benchmarks.scan_bench``, in the peers' environment of ``make peers`` when it exists): the
linear scan (B=8, L=4096, D=256 real float32; the complex lanes of S4D and S5) against a step loop, torch's
associative_scan, mambapy's pscan and the copy floor, and the selective scan against mamba-ssm's and lrnnx's
selective_scan_ref and mambapy's, timed in round robin in one process, outputs compared with a float64 oracle
(WRONG when off), at torch's default threads and at one thread; scans.json and scans_1thread.json.
Triton kernels (with a CUDA device and Triton): ``fast.triton.bench_triton`` times the fused selective scan at
the Mamba-block size of issue 6 (B=8, L=2048, D=1536, N=16) and the diagonal linear scan, forward and
forward + backward, against the torch path and the memory-bandwidth floor (the bytes that must move, at the
speed of a device-to-device copy); the ratio kernel / floor is printed. Without a GPU these rows are skipped,
and the output says why.
Results: a table on stdout, benchmarks/results/results.csv, kernels.csv and sweep.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
LTI = ["S4", "S4D", "S5", "LRU", "Centaurus"]
LTV = ["Mamba", "RGLRU", "S7"]


def triton_on_gpu() -> tuple[bool, str]:
    """Whether the Triton kernels can be timed here (a CUDA device, Triton installed, no interpreter)."""
    import torch

    import fast.triton

    if not torch.cuda.is_available():
        return False, "no CUDA device"
    if fast.triton.interpreting():
        return False, "TRITON_INTERPRET is set (the interpreter times Python, not the kernels)"
    return fast.triton.available()


def kernel_rows(quick: bool) -> list[dict]:
    """The Triton kernels against the torch path and the bandwidth floor (``fast.triton.bench_triton``)."""
    import functools

    import fast.ops
    import fast.triton

    shape = dict(batch=2, length=256, width=64, d_state=16) if quick else dict(batch=8, length=2048, width=1536,
                                                                               d_state=16)
    rows = []
    for kind in ("selective_scan", "linear_scan"):
        torch_fn = functools.partial(getattr(fast.ops, kind), backend="torch")
        for backward in (False, True):
            for r in fast.triton.bench_triton(kind, torch_fn=torch_fn, backward=backward, **shape):
                r.update(shape, backward=backward, ratio=r["ms"] / r["floor_ms"])
                rows.append(r)
                print(f"{r['name']:24s} {'fwd+bwd' if backward else 'fwd':8s} B={shape['batch']} "
                      f"L={shape['length']} D={shape['width']} N={shape['d_state']}  {r['ms']:9.3f} ms  "
                      f"floor {r['floor_ms']:8.3f} ms  ratio {r['ratio']:6.2f}", flush=True)
    return rows


PEERS_PYTHON = Path(__file__).parent.parent / ".venv-peers" / "bin" / "python"


def scan_rows(quick: bool, timeout: float) -> None:
    """The scans side by side with their peers (``benchmarks.scan_bench``), at torch's default threads and at one
    thread, each in one process: in the peers' environment (``make peers``) when it exists, else here, where the
    peer rows say why they are skipped."""
    python = PEERS_PYTHON if PEERS_PYTHON.exists() else Path(sys.executable)
    if not PEERS_PYTHON.exists():
        print(f"Peer rows (mambapy, mamba-ssm, lrnnx) skipped: {PEERS_PYTHON.parent.parent} does not exist "
              "(`make peers` builds it); torch's associative_scan and the step loop are timed here.", flush=True)
    for threads, name in ((None, "scans.json"), (1, "scans_1thread.json")):
        cmd = [str(python), "-m", "benchmarks.scan_bench", "--out", str(RESULTS / name)]
        cmd += (["--quick"] if quick else []) + ([] if threads is None else ["--threads", str(threads)])
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  cwd=Path(__file__).parent.parent)
        except subprocess.TimeoutExpired:
            print(f"scan rows ({name}): timeout > {timeout:.0f} s", flush=True)
            continue
        failed = f"scan rows ({name}) failed: {proc.stderr.strip()[-500:]}"
        print(proc.stdout.strip() if proc.returncode == 0 else failed, flush=True)


def validation_rows(quick: bool) -> list[dict]:
    """The cost of fast.validation: a training-mode forward of a few models (float32, the standard sizes) with the
    value checks on and off, timed in turn in this process (benchmarks.case.timed_round_robin, medians)."""
    import torch

    import fast
    import fast.models
    from benchmarks.case import timed_round_robin

    rows = []
    for name in ("S4D", "S5", "Mamba", "S7"):
        size = sizes(name, quick)
        cls = getattr(fast.models, name)
        model = cls(size["H"], size["N"], seed=0, dtype=torch.float32)
        u = torch.randn(size["B"], 256 if quick else 1024, size["H"], generator=torch.Generator().manual_seed(0))

        def run(on: bool, model=model, u=u):
            with fast.validation(on):
                model(u)

        t = timed_round_robin({"on": lambda: run(True), "off": lambda: run(False)}, torch.device("cpu"), budget=4.0)
        rows.append(dict(model=name, L=u.shape[1], on=t["on"], off=t["off"], ratio=t["on"] / t["off"]))
        print(f"validation {name:9s} B={size['B']} L={u.shape[1]} H={size['H']} N={size['N']}: on {fmt_time(t['on'])}"
              f"  off {fmt_time(t['off'])}  on/off {t['on'] / t['off']:.3f}", flush=True)
    return rows


def sizes(name: str, quick: bool) -> dict:
    if quick:
        return dict(B=2, H=16, N=8 if name not in ("Mamba", "S7") else 4)
    return dict(B=8, H=128, N=64 if name not in ("Mamba", "S7") else 16)


def run_case(spec: dict, timeout: float) -> dict:
    """Run one case in a fresh interpreter; returns its JSON result (or the reason it did not finish)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.case", json.dumps(spec)],
            capture_output=True, text=True, timeout=timeout, cwd=Path(__file__).parent.parent,
        )
    except subprocess.TimeoutExpired:
        return {**spec, "status": f"timeout>{timeout:.0f}s"}
    if proc.returncode < 0:  # killed: on this machine the kernel's out-of-memory killer (signal 9)
        return {**spec, "status": f"killed by signal {-proc.returncode}"}
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {**spec, "status": f"error: {last}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt_time(t):
    return "-" if t is None else (f"{t * 1e3:9.2f} ms" if t < 10 else f"{t:9.1f} s ")


def fmt_mem(m):
    return "-" if m is None else f"{m / 2**20:8.1f} MiB"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=LTI + LTV, choices=LTI + LTV)
    parser.add_argument("--lengths", nargs="+", type=int, default=None, help="the L sweep (default up to 65536)")
    parser.add_argument("--quick", action="store_true", help="small sizes: check that the harness runs")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per case before it is dropped")
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    L0 = 256 if args.quick else 1024
    sweep = args.lengths or ([256, 1024, 4096] if args.quick else [1024, 4096, 16384, 65536])

    gpu_triton, why = triton_on_gpu()
    rows = []
    for name in args.models:
        base = dict(model=name, L=L0, **sizes(name, args.quick))
        impls = ["fast"] + (["fast eval"] if name in LTI else []) + ["fast+backward", "sequential", "reference"]
        if gpu_triton and name != "S4":  # S4 has no Triton path
            impls += ["fast triton", "fast triton+backward"]
        for impl in impls:
            rows.append(run_case({**base, "impl": impl, **_pairing(name, impl)}, args.timeout))
            print(_line(rows[-1]), flush=True)
        if name in LTI:
            rows.append(run_case({**base, "impl": "fft floor"}, args.timeout))
            print(_line(rows[-1]), flush=True)
        if name == "Centaurus":  # "full" convolves H x H kernels: its own lines, against H fft floors
            for impl in ("fast", "fast eval"):
                spec = {**base, "impl": impl, "options": {"mode": "full"}, **_pairing(name, impl)}
                rows.append(run_case(spec, args.timeout))
                print(_line(rows[-1]), flush=True)
        for L in sweep:
            if L == L0:
                continue
            rows.append(run_case({**base, "L": L, "impl": "fast"}, args.timeout))
            print(_line(rows[-1]), flush=True)
            if name in LTI:
                rows.append(run_case({**base, "L": L, "impl": "fft floor"}, args.timeout))
                print(_line(rows[-1]), flush=True)

    with open(RESULTS / "results.csv", "w", newline="") as f:
        keys = ["model", "impl", "B", "L", "H", "N", "device", "seconds", "peak_bytes", "status", "paired",
                "paired_seconds"]
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    print()
    if gpu_triton:
        kernels = kernel_rows(args.quick)
        with open(RESULTS / "kernels.csv", "w", newline="") as f:
            keys = ["name", "backward", "batch", "length", "width", "d_state", "ms", "floor_ms", "ratio", "bytes"]
            writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kernels)
    else:
        print(f"Triton rows skipped: {why}")
    print()
    scan_rows(args.quick, timeout=max(args.timeout, 900.0))
    print()
    validation = validation_rows(args.quick)
    with open(RESULTS / "validation.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["model", "L", "on", "off", "ratio"])
        writer.writeheader()
        writer.writerows(validation)
    print()
    print(_ratios(rows, L0))
    _plot(rows, RESULTS / "sweep.png")
    print(f"\nwritten: {RESULTS / 'results.csv'}, {RESULTS / 'sweep.png'}")


def _pairing(name: str, impl: str) -> dict:
    """The partner a standard-size case is also timed against in its own process, in alternation (the ratios
    of issue 5): an LTI forward against the FFT floor, an LTV forward against the sequential loop."""
    if impl in ("fast", "fast eval") and name in LTI:
        return {"paired": "fft floor"}
    if impl == "fast" and name in LTV:
        return {"paired": "sequential"}
    return {}


def _line(r):
    size = f"B={r['B']} L={r['L']} H={r['H']} N={r['N']}"
    status = r.get("status", "ok")
    label = r["model"] + (f"/{r['options']['mode']}" if r.get("options") else "")
    measured = f"{fmt_time(r.get('seconds'))} {fmt_mem(r.get('peak_bytes'))}"
    return f"{label:15s} {r['impl']:14s} {size:28s} {measured}  {status}"


def _ratios(rows, L0) -> str:
    """The ratios the issue asks for, from this run's numbers only."""
    def t(model, impl):
        for r in rows:
            if r["model"] == model and r["impl"] == impl and r["L"] == L0 and r.get("seconds"):
                return r["seconds"]
        return None

    out = [f"Ratios at L = {L0} (this run; 'fast' is training mode, 'eval' eval mode with the kernel cached):"]
    for r in rows:
        if r["impl"] not in ("fast", "fast eval") or r["L"] != L0 or not r.get("seconds"):
            continue
        m = r["model"]
        full = r.get("options", {}).get("mode") == "full"
        label = m + ("/full" if full else "") + (" eval" if r["impl"] == "fast eval" else "")
        seq, ref, floor = t(m, "sequential"), t(m, "reference"), t(m, "fft floor")
        pair = r.get("paired_seconds")  # (fast, partner) timed in alternation in one process
        parts = []
        if r.get("paired") == "sequential" and pair:
            parts.append(f"sequential loop / fast = {pair[1] / pair[0]:.1f}x interleaved"
                         + (f" ({seq / r['seconds']:.1f}x from separate processes)" if seq else ""))
        elif seq and not full and r["impl"] == "fast":
            parts.append(f"sequential loop / fast = {seq / r['seconds']:.1f}x")
        if ref and not full and r["impl"] == "fast":
            parts.append(f"reference / fast = {ref / r['seconds']:.1f}x")
        factor = r["H"] if full else 1
        if r.get("paired") == "fft floor" and pair:
            parts.append(f"fast / (fft floor x {factor}) = {pair[0] / (pair[1] * factor):.2f} interleaved"
                         + (f" ({r['seconds'] / (floor * factor):.2f} from separate processes)" if floor else ""))
        elif floor:
            parts.append(f"fast / (fft floor x {factor}) = {r['seconds'] / (floor * factor):.2f}")
        out.append(f"  {label:20s} " + "; ".join(parts))
    out.append("  (interleaved: the case and its partner timed in alternation in one process: the same state of the "
               "machine,\n   but each pays for the memory the other freed; separate processes: each timed alone, "
               "minutes apart)")
    return "\n".join(out)


def _plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for model in sorted({r["model"] for r in rows}):
        pts = sorted((r["L"], r["seconds"]) for r in rows if r["model"] == model and r["impl"] == "fast"
                     and r.get("seconds"))
        if pts:
            ax.loglog(*zip(*pts), marker="o", label=model)
    floor = sorted({(r["L"], r["seconds"]) for r in rows if r["impl"] == "fft floor" and r.get("seconds")})
    if floor:
        ax.loglog(*zip(*floor), "k--", label="rfft+irfft floor (H=128)")
    ax.set_xlabel("sequence length L")
    ax.set_ylabel("forward time [s]")
    ax.set_title("fast models, forward")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
