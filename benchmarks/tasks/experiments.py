"""The experiment: every model on both tasks, a learning-rate search, several seeds, the table and figures.

Protocol (the same budget for every model):

1. Width: each model's width is chosen by ``width_for`` so that its parameter count comes nearest
   ``target_params`` (one number for all models; the table reports each model's count). The ablation
   ``MambaFixed`` takes Mamba's width: the same architecture without the selection projections.
2. Learning-rate search: on seed 0, ``search_steps`` steps at each learning rate of ``lrs``; the rate with the
   lowest mean training loss over the last fifth of the search is kept (per model and task).
3. Training: seeds ``seeds`` at the chosen rate, ``steps`` steps each, fresh batches every step.
4. Evaluation: accuracy on held-out sequences (seeds no training batch uses); induction heads at 1x, 4x and
   16x the training length.

Every run is one process-pool job on one thread (``torch.set_num_threads(1)``), so a run's numbers do not
depend on the number of jobs.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import torch

from benchmarks.tasks.data import induction_heads, selective_copying
from benchmarks.tasks.model import MODELS, SequenceModel, width_for
from benchmarks.tasks.train import evaluate, train

__all__ = ["Config", "TASKS", "make_batch", "run_one", "run_all", "summarize", "QUICK", "FULL"]

RESULTS = Path(__file__).resolve().parent / "results"
TASKS = ("selective_copying", "induction_heads")


@dataclass(frozen=True)
class TaskConfig:
    seq_len: int  # training length
    vocab_size: int
    steps: int
    search_steps: int
    eval_lengths: tuple[int, ...]
    eval_samples: int
    n_memorize: int = 0  # selective copying only


@dataclass(frozen=True)
class Config:
    models: tuple[str, ...] = MODELS
    seeds: tuple[int, ...] = (0, 1, 2)
    lrs: tuple[float, ...] = (3e-3, 1e-2)
    target_params: int = 6000
    d_state: int = 8
    n_layers: int = 2
    batch_size: int = 32
    tasks: dict = field(default_factory=dict)


#: the experiment of ``make experiments`` (12.6 minutes measured on the idle 2-core machine, 2026-12-03; 45 for
#: the earlier two seeds of 500 steps on a heavily loaded one): Centaurus is left out for time (S4 is the LTI row of
#: the paper's Table 1); add it with ``--models``
FULL = Config(
    models=("S4D", "S5", "LRU", "S4", "Mamba", "MambaFixed", "RGLRU", "S7"),
    seeds=(0, 1, 2),
    lrs=(3e-3, 1e-2),
    target_params=20000,
    d_state=16,
    tasks={
        "selective_copying": TaskConfig(seq_len=64, vocab_size=10, n_memorize=4, steps=800, search_steps=100,
                                        eval_lengths=(64, 128, 256), eval_samples=512),
        "induction_heads": TaskConfig(seq_len=32, vocab_size=16, steps=400, search_steps=100,
                                      eval_lengths=(32, 128, 512), eval_samples=256),
    },
)

#: a size that runs in seconds (the tests and ``--quick``): the same code paths, no meaningful accuracy
QUICK = Config(
    models=("S4D", "Mamba", "MambaFixed"),
    seeds=(0, 1),
    lrs=(3e-3, 1e-2),
    target_params=1500,
    d_state=4,
    batch_size=8,
    tasks={
        "selective_copying": TaskConfig(seq_len=16, vocab_size=6, n_memorize=2, steps=6, search_steps=3,
                                        eval_lengths=(16, 32), eval_samples=16),
        "induction_heads": TaskConfig(seq_len=8, vocab_size=6, steps=6, search_steps=3,
                                      eval_lengths=(8, 32), eval_samples=16),
    },
)


def make_batch(task: str, tc: TaskConfig, batch_size: int, seq_len: int, seed: int):
    """A batch of ``task`` at ``seq_len`` from ``seed``."""
    if task == "selective_copying":
        return selective_copying(batch_size, seq_len, tc.n_memorize, tc.vocab_size, seed=seed)
    if task == "induction_heads":
        return induction_heads(batch_size, seq_len, tc.vocab_size, seed=seed)
    raise ValueError(f"task: expected one of {', '.join(TASKS)}, got {task!r}")


def run_one(job: dict, cfg: Config, progress: bool = True) -> dict:
    """One training run: ``job = {task, model, seed, lr, steps, width, evaluate}``. Returns the job with its
    history, evaluation, parameter count and time."""
    torch.set_num_threads(1)
    task, tc = job["task"], cfg.tasks[job["task"]]
    model = SequenceModel(job["model"], tc.vocab_size, job["width"], cfg.d_state, cfg.n_layers, seed=job["seed"])
    batch = partial(make_batch, task, tc)
    start = time.time()
    label = f"{task[:9]} {job['model']} s{job['seed']} lr{job['lr']:g}"
    history = train(model, batch, steps=job["steps"], lr=job["lr"], batch_size=cfg.batch_size,
                    seq_len=tc.seq_len, seed=job["seed"], label=label, progress=progress)
    train_s = time.time() - start
    result = dict(job, history=history, params=model.n_parameters(), train_s=round(train_s, 1))
    if job["evaluate"]:
        acc = evaluate(model, batch, tc.eval_lengths, tc.eval_samples, seed=10**9 + job["seed"])
        result["accuracy"] = {str(L): a for L, a in acc.items()}
    return result


def _final_loss(history: list[dict]) -> float:
    tail = history[-max(1, len(history) // 5) :]
    loss = [h["loss"] for h in tail]
    return float("inf") if any(x != x for x in loss) else sum(loss) / len(loss)


def _map(fn, jobs, n_jobs: int):
    if n_jobs <= 1:
        return [fn(j) for j in jobs]
    import multiprocessing

    with ProcessPoolExecutor(n_jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(fn, jobs))


# cost per step of each model relative to S4D (measured here), to start the slow runs first
_COST = {"Mamba": 4.0, "MambaFixed": 4.0, "S7": 2.0, "RGLRU": 1.5}


def run_all(cfg: Config, n_jobs: int = 2, progress: bool = True) -> dict:
    """The whole protocol (module docstring). Returns ``{"config", "widths", "search", "runs"}``."""
    widths = {t: {m: width_for(m, cfg.target_params, tc.vocab_size, cfg.d_state, cfg.n_layers)
                  for m in cfg.models} for t, tc in cfg.tasks.items()}
    for t, w in widths.items():  # the ablation is Mamba's architecture with selection off: Mamba's width
        if "MambaFixed" in w:
            w["MambaFixed"] = width_for("Mamba", cfg.target_params, cfg.tasks[t].vocab_size, cfg.d_state, cfg.n_layers)
    fn = partial(run_one, cfg=cfg, progress=progress)

    def order(jobs):
        return sorted(jobs, key=lambda j: -_COST.get(j["model"], 1.0) * cfg.tasks[j["task"]].seq_len)

    search_jobs = [dict(task=t, model=m, seed=cfg.seeds[0], lr=lr, steps=tc.search_steps, width=widths[t][m],
                        evaluate=False) for t, tc in cfg.tasks.items() for m in cfg.models for lr in cfg.lrs]
    search = _map(fn, order(search_jobs), n_jobs)
    chosen = {}
    for t in cfg.tasks:
        for m in cfg.models:
            runs = [r for r in search if r["task"] == t and r["model"] == m]
            chosen[(t, m)] = min(runs, key=lambda r: _final_loss(r["history"]))["lr"]
    jobs = [dict(task=t, model=m, seed=s, lr=chosen[(t, m)], steps=tc.steps, width=widths[t][m], evaluate=True)
            for t, tc in cfg.tasks.items() for m in cfg.models for s in cfg.seeds]
    runs = _map(fn, order(jobs), n_jobs)
    config = asdict(cfg)
    config["tasks"] = {t: asdict(tc) for t, tc in cfg.tasks.items()}
    return {"config": config, "widths": widths, "search": search, "runs": runs}


def summarize(results: dict) -> list[dict]:
    """One row per (task, model, evaluation length): mean, standard deviation, min and max over the seeds."""
    rows = []
    for t, tc in results["config"]["tasks"].items():
        for m in results["config"]["models"]:
            runs = [r for r in results["runs"] if r["task"] == t and r["model"] == m]
            if not runs:
                continue
            for L in tc["eval_lengths"]:
                accs = [r["accuracy"][str(L)] for r in runs]
                rows.append({
                    "task": t, "model": m, "kind": _kind(m), "params": runs[0]["params"], "width": runs[0]["width"],
                    "lr": runs[0]["lr"], "steps": runs[0]["steps"], "train_length": tc["seq_len"], "eval_length": L,
                    "mean": statistics.fmean(accs), "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                    "min": min(accs), "max": max(accs), "seeds": len(accs),
                    "per_seed": " ".join(f"{a:.4f}" for a in accs),
                })
    return rows


def _kind(model: str) -> str:
    return "LTI" if model in ("S4D", "S5", "LRU", "S4", "Centaurus") else (
        "selection off" if model == "MambaFixed" else "selective")


def table_markdown(rows: list[dict]) -> str:
    """The results table: one line per model, selective copying and induction heads at each length."""
    by = {}
    for r in rows:
        by.setdefault(r["model"], {})[(r["task"], r["eval_length"])] = r
    keys = sorted({(r["task"], r["eval_length"], r["train_length"]) for r in rows},
                  key=lambda k: (TASKS.index(k[0]), k[1]))
    head = ["model", "kind", "params (SC / IH)"] + [
        f"{'copying' if t == 'selective_copying' else 'induction'} {L // T}x (L={L})" for t, L, T in keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, cells in by.items():
        any_row = next(iter(cells.values()))
        params = " / ".join(str(next(r["params"] for (t, _), r in cells.items() if t == task))
                            for task in TASKS if any(t == task for t, _ in cells))
        vals = [f"{100 * cells[(t, L)]['mean']:.1f} ± {100 * cells[(t, L)]['std']:.1f}" if (t, L) in cells else "—"
                for t, L, _ in keys]
        lines.append("| " + " | ".join([m, any_row["kind"], params] + vals) + " |")
    return "\n".join(lines) + "\n"


def write(results: dict, out: Path) -> list[dict]:
    """runs.json (everything, histories included), results.csv, results.json (the rows), table.md, figures."""
    import csv

    out.mkdir(parents=True, exist_ok=True)
    (out / "runs.json").write_text(json.dumps(results, indent=1) + "\n")
    rows = summarize(results)
    (out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "table.md").write_text(table_markdown(rows))
    from benchmarks.tasks.plots import plot_curves, plot_extrapolation

    plot_curves(results, out / "curves.png")
    chance = {t: 1 / (tc["vocab_size"] - 2) for t, tc in results["config"]["tasks"].items()}
    plot_extrapolation(rows, out / "extrapolation.png", chance=chance)
    return rows


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m benchmarks.tasks", description=__doc__.split("\n\n")[0])
    p.add_argument("command", nargs="?", default="run", choices=["run", "plot"],
                   help="run: train everything, write the results; plot: redraw the table and figures from runs.json")
    p.add_argument("--quick", action="store_true", help="the smoke size (seconds), written to --out")
    p.add_argument("--out", type=Path, default=None, help=f"results folder (default {RESULTS}; --quick: a temp dir)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="parallel runs (one thread each)")
    p.add_argument("--models", nargs="+", choices=MODELS, default=None)
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=None)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    cfg = QUICK if a.quick else FULL
    if a.models:
        cfg = Config(**{**asdict(cfg), "models": tuple(a.models), "tasks": cfg.tasks})
    if a.tasks:
        cfg = Config(**{**asdict(cfg), "tasks": {t: cfg.tasks[t] for t in a.tasks}})
    out = a.out or (Path(os.environ.get("TMPDIR", "/tmp")) / "lrnn_tasks_quick" if a.quick else RESULTS)
    if a.command == "plot":
        rows = write(json.loads((out / "runs.json").read_text()), out)
    else:
        start = time.time()
        results = run_all(cfg, n_jobs=a.jobs, progress=not a.no_progress)
        results["wall_s"] = round(time.time() - start, 1)
        rows = write(results, out)
        print(f"{len(results['runs'])} runs + {len(results['search'])} search runs in {results['wall_s']:.0f} s",
              file=sys.stderr)
    print(table_markdown(rows))
    print(f"results written to {out}/ (results.csv, results.json, table.md, runs.json, curves.png, extrapolation.png)")
    return 0
