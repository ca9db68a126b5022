"""The figures of the experiment: learning curves, and induction-heads accuracy against the test length."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_curves", "plot_extrapolation", "COLORS"]

#: LTI models in blues/greens, selective ones in reds/oranges, the ablation in grey
COLORS = {"S4D": "#1f77b4", "S5": "#17becf", "LRU": "#2ca02c", "S4": "#9467bd", "Centaurus": "#8c564b",
          "Mamba": "#d62728", "RGLRU": "#ff7f0e", "S7": "#e377c2", "MambaFixed": "#7f7f7f"}
_TITLES = {"selective_copying": "selective copying", "induction_heads": "induction heads"}


def plot_curves(results: dict, path: Path) -> None:
    """Training accuracy (fresh batches) against the step, per task: the mean over seeds, the seeds' range shaded."""
    tasks = list(results["config"]["tasks"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for model in results["config"]["models"]:
            runs = [r for r in results["runs"] if r["task"] == task and r["model"] == model]
            if not runs:
                continue
            n = min(len(r["history"]) for r in runs)
            steps = [h["step"] for h in runs[0]["history"][:n]]
            acc = [[r["history"][k]["accuracy"] for r in runs] for k in range(n)]
            mean = [sum(a) / len(a) for a in acc]
            style = "--" if model == "MambaFixed" else "-"
            ax.plot(steps, mean, style, color=COLORS.get(model), label=model, lw=1.6)
            ax.fill_between(steps, [min(a) for a in acc], [max(a) for a in acc], color=COLORS.get(model), alpha=0.12)
        tc = results["config"]["tasks"][task]
        chance = 1 / (tc["vocab_size"] - 2)
        ax.axhline(chance, color="k", lw=0.8, ls=":", label="chance")
        ax.set_title(f"{_TITLES.get(task, task)} (L={tc['seq_len']})")
        ax.set_xlabel("training step")
        ax.set_ylabel("accuracy (training batches)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_extrapolation(rows: list[dict], path: Path, chance: dict | None = None) -> None:
    """Held-out accuracy against the test length, one panel per task evaluated at several lengths (mean over
    seeds, min-max bars). ``chance``: ``{task: accuracy of a guess}``, drawn as a line."""
    tasks = [t for t in dict.fromkeys(r["task"] for r in rows)
             if len({r["eval_length"] for r in rows if r["task"] == t}) > 1]
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(5.5 * max(1, len(tasks)), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        mine_task = [r for r in rows if r["task"] == task]
        for model in dict.fromkeys(r["model"] for r in mine_task):
            mine = sorted((r for r in mine_task if r["model"] == model), key=lambda r: r["eval_length"])
            x = [r["eval_length"] for r in mine]
            y = [r["mean"] for r in mine]
            err = [[r["mean"] - r["min"] for r in mine], [r["max"] - r["mean"] for r in mine]]
            style = "--" if model == "MambaFixed" else "-"
            ax.errorbar(x, y, yerr=err, fmt=style + "o", color=COLORS.get(model), label=model, capsize=3, lw=1.4,
                        ms=4)
        ax.axvline(mine_task[0]["train_length"], color="k", lw=0.8, ls=":", label="training length")
        if chance and task in chance:
            ax.axhline(chance[task], color="k", lw=0.8, ls="-.", label="chance")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("test sequence length")
        ax.set_ylabel("accuracy (held out)")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{_TITLES.get(task, task)}: trained at L={mine_task[0]['train_length']}")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
