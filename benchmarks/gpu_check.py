"""The GPU check: one command for a machine with an NVIDIA GPU, in under 8 minutes (``make gpu-check``).

    PYTHONPATH=. python3 -m benchmarks.gpu_check [--out DIR] [--dry] [--total SECONDS]

For a machine where torch and Triton are preinstalled and nothing can be downloaded: it uses the interpreter
it is started with (no virtual environment, no pip). Four parts, each in its own subprocess under its own time
limit (a part that crashes or runs over is recorded as such; the others still run):

  environment    torch, Triton, the device                                                       (limit 60 s)
  triton_tests   pytest equivalence_tests/test_triton_kernels.py on the GPU, TRITON_INTERPRET
                 unset (the kernels compiled and run for real), hypothesis's bounded CI profile  (limit 240 s)
  kernels        fast.triton.bench_triton: the fused selective scan at B = 8, L = 2048, D = 1536,
                 N = 16 and the diagonal linear scan (B, L, D) of the same size, forward and
                 forward + backward, against the torch path and the HBM-bandwidth floor (the
                 bytes the operation must move at the speed of a measured device-to-device copy);
                 the target: the selective scan's forward within 1.5x of its floor              (limit 120 s)
  models         every fast model at the standard size (B = 8, L = 1024, d_model = 128), forward
                 and forward + backward, backend "torch" and "triton" (S4 has no Triton path)    (limit 90 s)

The total is bounded by ``--total`` (default 450 s): a part gets the smaller of its limit and the time left.
Results: ``DIR/gpu_check.json`` (everything, with the markdown table in its ``"markdown"`` field) and the same
table in ``DIR/gpu_check.md``; DIR defaults to benchmarks/results.

Without a CUDA device it writes those files with ``"status": "skipped"`` and the reason, and exits with 0.
``--dry`` runs every part on the CPU at tiny sizes instead (the Triton kernels under Triton's interpreter, a
perf_counter timer; the Triton tests are not run): it checks the parts and the file format, and its times mean
nothing. Exit status: 0 when every part ran (whatever the figures) or the check was skipped; 1 when a part failed
or ran out of time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
LIMITS = {"environment": 60.0, "triton_tests": 240.0, "kernels": 120.0, "models": 90.0}
TOTAL = 450.0
SELECTIVE_TARGET = 1.5  # the selective scan's forward against its bandwidth floor
KERNEL_SHAPE = dict(batch=8, length=2048, width=1536, d_state=16)
DRY_KERNEL_SHAPE = dict(batch=1, length=8, width=4, d_state=2)
MODELS = ["S4", "S4D", "S5", "LRU", "Centaurus", "Mamba", "RGLRU", "S7"]
DRY_MODELS = ["S5", "Mamba"]


# ------------------------------------------------------------------------------------------------
# the parts (each runs in a subprocess: python -m benchmarks.gpu_check --part NAME [--dry])
# ------------------------------------------------------------------------------------------------


def part_environment(dry: bool) -> dict:
    import torch

    info = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
            "torch_cuda": torch.version.cuda}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError as e:
        info["triton"] = f"not importable: {e}"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        capability = ".".join(map(str, torch.cuda.get_device_capability(0)))
        info.update(device=torch.cuda.get_device_name(0), capability=capability,
                    memory_gib=round(props.total_memory / 2**30, 1), device_count=torch.cuda.device_count())
    else:
        info["device"] = "cpu (dry run)" if dry else "no CUDA device"
    return info


def part_triton_tests(dry: bool, limit: float) -> dict:
    if dry:
        return {"status": "skipped", "reason": "dry run: the Triton tests need a GPU here (on a CPU the test suite "
                                               "runs them under TRITON_INTERPRET)"}
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(CI="1", PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "equivalence_tests/test_triton_kernels.py"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(1.0, limit - 5))
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return {"status": "timeout", "seconds": time.perf_counter() - t0, "tail": out[-3000:]}
    lines = proc.stdout.strip().splitlines()
    summary = next((ln for ln in reversed(lines) if " in " in ln and ("passed" in ln or "failed" in ln
                                                                      or "error" in ln)), "")
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed)", summary)}
    return {"status": "ok" if proc.returncode == 0 else "failed", "returncode": proc.returncode,
            "seconds": time.perf_counter() - t0, "summary": summary.strip("= "), "counts": counts,
            "tail": "\n".join(lines[-40:]) + ("\n" + proc.stderr[-2000:] if proc.returncode else "")}


def _perf_timer(fn) -> float:
    """Milliseconds of one call after a warm-up (the dry run's stand-in for triton.testing.do_bench)."""
    fn()
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def part_kernels(dry: bool) -> dict:
    import functools

    import fast.ops
    import fast.triton

    shape = DRY_KERNEL_SHAPE if dry else KERNEL_SHAPE
    extra = dict(device="cpu", timer=_perf_timer) if dry else {}
    rows = []
    for kind in ("selective_scan", "linear_scan"):
        torch_fn = functools.partial(getattr(fast.ops, kind), backend="torch")
        for backward in (False, True):
            for r in fast.triton.bench_triton(kind, torch_fn=torch_fn, backward=backward, **shape, **extra):
                r.update(kind=kind, backward=backward, ratio=r["ms"] / r["floor_ms"], **shape)
                rows.append(r)
    target = next(r for r in rows if r["name"] == "selective_scan triton" and not r["backward"])
    return {"status": "ok", "rows": rows, "shape": shape,
            "target": {"what": f"fused selective scan forward within {SELECTIVE_TARGET}x of the bandwidth floor",
                       "ratio": target["ratio"], "met": target["ratio"] <= SELECTIVE_TARGET}}


def part_models(dry: bool, limit: float) -> dict:
    import torch

    from benchmarks.case import runner, timed

    device = torch.device("cpu" if dry else "cuda")
    names = DRY_MODELS if dry else MODELS
    budget = 0.0 if dry else 1.0
    t_start = time.perf_counter()
    rows = []
    for name in names:
        mamba_like = name in ("Mamba", "S7")
        if dry:
            spec = dict(model=name, B=1, L=8, H=4, N=2)
        else:
            spec = dict(model=name, B=8, L=1024, H=128, N=16 if mamba_like else 64)
        for impl in ("fast", "fast+backward", "fast triton", "fast triton+backward"):
            row = {"model": name, "impl": impl, **{k: spec[k] for k in ("B", "L", "H", "N")}}
            if "triton" in impl and name == "S4":
                rows.append({**row, "status": "no Triton path (dense A_bar)"})
                continue
            if time.perf_counter() - t_start > limit - 15:
                rows.append({**row, "status": "not run: the part's time limit"})
                continue
            try:
                run, _ = runner({**spec, "impl": impl}, impl, device)
                seconds = timed(run, device, budget=budget, min_reps=1 if dry else 3)
                rows.append({**row, "status": "ok", "ms": seconds * 1e3})
            except Exception as e:  # noqa: BLE001 -- the row records the failure, the part goes on
                rows.append({**row, "status": f"error: {type(e).__name__}: {str(e).splitlines()[0][:200]}"})
    ok = all(r["status"] == "ok" or r["status"].startswith("no Triton") for r in rows)
    return {"status": "ok" if ok else "failed", "rows": rows}


# ------------------------------------------------------------------------------------------------
# the driver
# ------------------------------------------------------------------------------------------------


def run_part(name: str, dry: bool, limit: float) -> dict:
    """Run one part in a subprocess under ``limit`` seconds; its JSON result, or what went wrong."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if dry and name in ("kernels", "models"):
        env["TRITON_INTERPRET"] = "1"  # before Triton is first imported in that process
    elif name != "triton_tests":
        env.pop("TRITON_INTERPRET", None)
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--part", name, "--limit", str(limit)] + (["--dry"] if dry
                                                                                                  else [])
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(1.0, limit))
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "limit_s": limit, "seconds": time.perf_counter() - t0}
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        return {"status": "crashed", "returncode": proc.returncode, "seconds": seconds, "tail": "\n".join(tail)}
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {"status": "crashed", "seconds": seconds, "tail": proc.stdout[-2000:]}
    result.setdefault("status", "ok")
    result.update(seconds=seconds, limit_s=limit)
    return result


def markdown(result: dict) -> str:
    env = result["parts"].get("environment", {})
    lines = [f"# GPU check, {result['date']}", "",
             f"Device: {env.get('device', '?')}; torch {env.get('torch', '?')}, Triton {env.get('triton', '?')}; "
             f"status **{result['status']}**" + (f" ({result['reason']})" if result.get("reason") else "")
             + ("; DRY RUN on the CPU: the times mean nothing" if result.get("dry") else ""), ""]
    if result["status"] == "skipped":
        return "\n".join(lines) + "\n"
    lines += ["| Part | status | seconds (limit) |", "|---|---|---|"]
    for name, part in result["parts"].items():
        secs = part.get("seconds")
        lim = part.get("limit_s")
        lines.append(f"| {name} | {part.get('status', 'ok')} | "
                     f"{'-' if secs is None else f'{secs:.0f}'}{'' if lim is None else f' ({lim:.0f})'} |")
    tests = result["parts"].get("triton_tests", {})
    if tests.get("summary"):
        lines += ["", f"Triton tests: {tests['summary']}"]
    kernels = result["parts"].get("kernels", {})
    if kernels.get("rows"):
        s = kernels["shape"]
        lines += ["", f"Kernels at B = {s['batch']}, L = {s['length']}, D = {s['width']}, N = {s['d_state']} "
                  "(floor: the bytes moved at the measured device-to-device copy bandwidth):", "",
                  "| kernel | pass | ms | floor ms | ratio |", "|---|---|---|---|---|"]
        for r in kernels["rows"]:
            lines.append(f"| {r['name']} | {'fwd+bwd' if r['backward'] else 'fwd'} | {r['ms']:.3f} | "
                         f"{r['floor_ms']:.3f} | {r['ratio']:.2f} |")
        t = kernels["target"]
        lines += ["", f"Target: {t['what']}: ratio {t['ratio']:.2f}, {'met' if t['met'] else 'NOT met'}."]
    models = result["parts"].get("models", {})
    if models.get("rows"):
        lines += ["", "| model | impl | B | L | H | N | ms |", "|---|---|---|---|---|---|---|"]
        for r in models["rows"]:
            ms = f"{r['ms']:.2f}" if r.get("ms") is not None else r["status"]
            lines.append(f"| {r['model']} | {r['impl']} | {r['B']} | {r['L']} | {r['H']} | {r['N']} | {ms} |")
    return "\n".join(lines) + "\n"


def write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    result["markdown"] = markdown(result)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1))
    (out / "gpu_check.md").write_text(result["markdown"])


def check(out: Path, dry: bool, total: float) -> int:
    t0 = time.perf_counter()
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "dry": dry, "status": "ok", "parts": {}}
    env = run_part("environment", dry, LIMITS["environment"])
    result["parts"]["environment"] = env
    if env.get("status") != "ok":
        result.update(status="failed", reason="the environment part did not run (is torch importable?)")
        write(result, out)
        print(result["markdown"])
        return 1
    if not dry and not env.get("cuda_available"):
        result.update(status="skipped", reason="no CUDA device is visible (torch.cuda.is_available() is False); "
                                               "nothing was timed. On a CPU, --dry checks the parts at tiny sizes")
        write(result, out)
        print(result["markdown"])
        return 0
    for name in ("triton_tests", "kernels", "models"):
        left = total - (time.perf_counter() - t0)
        if left < 5:
            result["parts"][name] = {"status": "not run: the total time limit"}
            continue
        result["parts"][name] = run_part(name, dry, min(LIMITS[name], left))
        print(f"{name}: {result['parts'][name].get('status')} in {result['parts'][name].get('seconds', 0):.0f} s",
              flush=True)
    bad = [n for n, p in result["parts"].items() if p.get("status") not in ("ok", "skipped")]
    if bad:
        result.update(status="partial", reason="not ok: " + ", ".join(bad))
    result["seconds"] = time.perf_counter() - t0
    write(result, out)
    print(result["markdown"])
    return 1 if bad else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--dry", action="store_true", help="on the CPU at tiny sizes: check the parts and the files")
    parser.add_argument("--total", type=float, default=TOTAL, help="seconds for the whole check")
    parser.add_argument("--part", choices=list(LIMITS), help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part:  # a subprocess of the driver: print one JSON line
        limit = LIMITS[args.part] if args.limit is None else args.limit
        if args.part == "environment":
            result = {"status": "ok", **part_environment(args.dry)}
        elif args.part == "triton_tests":
            result = part_triton_tests(args.dry, limit)
        elif args.part == "kernels":
            result = part_kernels(args.dry)
        else:
            result = part_models(args.dry, limit)
        print(json.dumps(result))
        return 0
    return check(args.out, args.dry, args.total)


if __name__ == "__main__":
    sys.exit(main())
