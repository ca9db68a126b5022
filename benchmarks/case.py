"""One benchmark case, run in its own process: ``python -m benchmarks.case '<json spec>'``.

Prints one JSON line: the spec plus ``seconds`` (median forward time), ``peak_bytes`` and ``device``. With
``"paired": <impl>`` in the spec it then times the case and that partner in alternation in this process
(``timed_alternating``) and adds ``paired_seconds``: (this case, the partner), the pair a ratio is taken from.
``impl``: "fast" (training mode), "fast eval" (eval mode: LTI kernels cached), "fast+backward" (backend
torch); "fast triton", "fast triton+backward" (backend triton, on a CUDA device); "sequential" (a torch loop
of ``step``), "reference" (NumPy), "fft floor".
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time

import numpy as np
import torch

LTV = ("Mamba", "RGLRU", "S7")


def _status_kib(field: str) -> int | None:
    """A field of /proc/self/status in KiB (None where there is no such file)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> int:
    """Start a fresh peak: on Linux, writing 5 to /proc/self/clear_refs sets the peak resident set (VmHWM)
    to the current one, so set-up temporaries already freed (the float64 draw of the input) do not hide the
    case's own peak. Returns the resident bytes now."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    rss = _status_kib("VmRSS")
    return _peak_rss() if rss is None else rss * 1024


def _peak_rss() -> int:
    """The peak resident bytes since the last reset (VmHWM), or ru_maxrss (since start) without /proc."""
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, budget: float = 5.0, min_reps: int = 3) -> float:
    fn()  # warm-up (and kernel compilation)
    _sync(device)
    times = []
    while len(times) < min_reps or (sum(times) < budget and len(times) < 50):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def model_args(spec):
    name, H, N = spec["model"], spec["H"], spec["N"]
    options = dict(spec.get("options", {}))
    if options.get("mode") in ("dws", "full"):  # Centaurus: the state size follows from the mode
        N = None
    if name == "Mamba":
        options.setdefault("expand", 2)
    if name == "RGLRU":
        return (H,), options
    return (H, N), options


def timed_alternating(fn_a, fn_b, device, budget: float = 6.0, min_reps: int = 3) -> tuple[float, float]:
    """Median times of two functions run in alternation (a, b, a, b, ...) after a warm-up of each: both see
    the same state of the machine (times taken minutes apart drift), though each then runs on memory the other
    just freed rather than on its own warm buffers."""
    fn_a()
    fn_b()
    _sync(device)
    times_a, times_b = [], []
    while len(times_a) < min_reps or (sum(times_a) + sum(times_b) < budget and len(times_a) < 50):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
    return statistics.median(times_a), statistics.median(times_b)


def timed_round_robin(fns: dict, device, budget: float = 6.0, min_reps: int = 3, max_reps: int = 50) -> dict:
    """Median times of several functions run in turn (f1, f2, ..., f1, f2, ...) after a warm-up of each: the
    generalization of ``timed_alternating`` to side-by-side rows. Returns ``{name: median seconds}``."""
    for fn in fns.values():
        fn()
    _sync(device)
    times = {name: [] for name in fns}
    while True:
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
        reps = len(next(iter(times.values()), []))
        spent = sum(sum(t) for t in times.values())
        if not fns or reps >= max_reps or (reps >= min_reps and spent >= budget):
            break
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    spec = json.loads(sys.argv[1])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    run, device_name = runner(spec, spec["impl"], device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    before = _reset_peak_rss()
    seconds = timed(run, device)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else _peak_rss() - before
    result = {**spec, "seconds": seconds, "peak_bytes": peak, "device": device_name, "status": "ok"}
    if spec.get("paired"):  # after the peak was read: the partner's memory does not count
        partner, _ = runner(spec, spec["paired"], device)
        result["paired_seconds"] = timed_alternating(run, partner, device)  # (this impl, the partner)
    print(json.dumps(result))


def runner(spec: dict, impl: str, device):
    """``(run, device name)``: a function that runs ``impl`` once on the spec's model and input."""
    B, L, H = spec["B"], spec["L"], spec["H"]
    name = spec["model"]
    rng = np.random.default_rng(0)
    u_np = rng.normal(size=(B, L, H)).astype(np.float32)
    args, options = model_args(spec)

    if impl == "reference":
        import reference.models

        model = getattr(reference.models, name)(*args, seed=0, **options)
        u64 = u_np.astype(np.float64)
        run = lambda: model.forward(u64)  # noqa: E731
        device_name = "cpu (numpy)"
    elif impl == "fft floor":
        u = torch.from_numpy(u_np).to(device)
        run = lambda: torch.fft.irfft(torch.fft.rfft(u, n=2 * L, dim=1), n=2 * L, dim=1)[:, :L]  # noqa: E731
        device_name = str(device)
    else:
        import fast.models

        backend = "triton" if impl.startswith("fast triton") else "torch"
        model = getattr(fast.models, name)(*args, seed=0, backend=backend, device=device, dtype=torch.float32,
                                           **options)
        u = torch.from_numpy(u_np).to(device)
        device_name = str(device)
        impl = impl.replace("fast triton", "fast")
        if impl in ("fast", "fast eval"):
            # training mode: an LTI model computes its kernel in every call; eval mode, no gradients: an LTI
            # model's kernel is cached after the warm-up
            if impl == "fast eval":
                model.eval()

            def run():
                with torch.no_grad():
                    return model.forward(u)
        elif impl == "fast+backward":
            u.requires_grad_(True)

            def run():
                y = model.forward(u)
                y = y[0] if isinstance(y, tuple) else y
                y.sum().backward()
        elif impl == "sequential":
            def run():
                with torch.no_grad():
                    state = model.initial_state(B)
                    for k in range(L):
                        _, state = model.step(u[:, k], state)
        else:
            raise ValueError(f"impl: unknown {impl!r}")
    return run, device_name


if __name__ == "__main__":
    main()
