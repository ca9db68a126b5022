"""Training and evaluation: AdamW, warm-up then cosine decay, fresh batches every step, a progress bar.

Every batch is drawn from the task generator with its own seed (``seed * 1_000_003 + step``), so a run is
a pure function of its arguments: the same seed gives the same numbers (on one thread; see
``torch.set_num_threads``). Fresh data every step means the training accuracy of a batch is already an
unbiased estimate of the accuracy on unseen sequences; the evaluation sets are drawn from seeds that no
training batch uses. No checkpoints are written.
"""

from __future__ import annotations

import math
import sys
import time

import torch
import torch.nn.functional as F

from benchmarks.tasks.data import IGNORE

__all__ = ["accuracy", "evaluate", "train", "loss_and_accuracy"]


def loss_and_accuracy(logits, targets):
    """Cross-entropy and accuracy over the scored positions (``targets != IGNORE``) of ``logits (B, L, V)``."""
    mask = targets != IGNORE  # (B, L)
    scored = logits[mask]  # (S, V)
    answers = targets[mask]  # (S,)
    loss = F.cross_entropy(scored, answers)
    acc = (scored.argmax(-1) == answers).float().mean()
    return loss, acc


def accuracy(model, inputs, targets, batch_size: int = 128) -> float:
    """The accuracy of ``model`` on a fixed set, in batches, without gradients."""
    model.eval()
    hits, total = 0, 0
    with torch.no_grad():
        for k in range(0, inputs.shape[0], batch_size):
            x, y = inputs[k : k + batch_size], targets[k : k + batch_size]
            logits = model(x)
            mask = y != IGNORE
            hits += int((logits[mask].argmax(-1) == y[mask]).sum())
            total += int(mask.sum())
    model.train()
    return hits / total


def evaluate(model, make_batch, lengths, n_samples: int, seed: int) -> dict[int, float]:
    """Accuracy at each sequence length of ``lengths`` on ``n_samples`` sequences drawn from ``seed``:
    ``make_batch(batch_size, seq_len, seed)`` -> (inputs, targets)."""
    return {L: accuracy(model, *make_batch(n_samples, L, seed + L)) for L in lengths}


def _schedule(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def train(model, make_batch, *, steps: int, lr: float, batch_size: int, seq_len: int, seed: int,
          weight_decay: float = 0.01, clip: float = 1.0, log_every: int = 10, label: str = "", progress=True):
    """Train ``model`` for ``steps`` AdamW steps on fresh batches ``make_batch(batch_size, seq_len, seed)``.

    Returns the history ``[{"step", "loss", "accuracy"}, ...]``: the mean training loss and accuracy of the
    last ``log_every`` batches, every ``log_every`` steps. A non-finite loss or gradient norm stops the run
    before the step that would spoil the parameters (the history says so with a NaN loss; the model keeps the
    last finite parameters, so it can still be evaluated)."""
    params = model.trained_parameters() if hasattr(model, "trained_parameters") else list(model.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _schedule(s, steps, warmup))
    history, losses, accs = [], [], []
    start = time.time()
    model.train()
    for step in range(steps):
        inputs, targets = make_batch(batch_size, seq_len, seed * 1_000_003 + step)
        loss, acc = loss_and_accuracy(model(inputs), targets)
        acc = acc.item()
        if not torch.isfinite(loss):
            history.append({"step": step + 1, "loss": float("nan"), "accuracy": float(acc)})
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if not torch.isfinite(torch.nn.utils.clip_grad_norm_(params, clip)):  # diverged: stop before the step
            history.append({"step": step + 1, "loss": float("nan"), "accuracy": float(acc)})
            break
        opt.step()
        sched.step()
        losses.append(loss.item())
        accs.append(float(acc))
        if (step + 1) % log_every == 0 or step + 1 == steps:
            history.append({"step": step + 1, "loss": sum(losses) / len(losses), "accuracy": sum(accs) / len(accs)})
            losses, accs = [], []
            if progress:
                _bar(label, step + 1, steps, history[-1], time.time() - start)
    if progress:
        sys.stderr.write("\n")
    return history


def _bar(label: str, done: int, total: int, last: dict, elapsed: float, width: int = 24) -> None:
    """One line on stderr, rewritten in place: ``label [####----] 120/400 loss 1.23 acc 0.45 12s``."""
    fill = int(width * done / total)
    eta = elapsed / done * (total - done)
    sys.stderr.write(
        f"\r{label:28s} [{'#' * fill}{'-' * (width - fill)}] {done}/{total} loss {last['loss']:.3f} "
        f"acc {last['accuracy']:.3f} {elapsed:.0f}s (eta {eta:.0f}s)"
    )
    sys.stderr.flush()
