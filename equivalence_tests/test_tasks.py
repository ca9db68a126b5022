"""The synthetic tasks of benchmarks/tasks (selective copying, induction heads): smoke tests, not accuracies.

* The generators build the paper's construction (checked against a brute-force reading of every row: the data
  tokens of a selective-copying row, in order, are its targets; the token after the first special token of an
  induction-heads row is its target), take sizes as arguments, are seeded, and refuse bad sizes by name.
* Every model of the comparison builds and maps tokens (B, L) to float32 logits (B, L, V).
* The selection ablation: Delta, B and C do not depend on the input, the unused projections get no gradient,
  and its recurrent ``step`` (Mamba's own code path) agrees with its chunked ``forward``.
* Training lowers the loss; a seed gives the same numbers twice; the results files of a tiny run are complete;
  the committed results are what ``summarize`` makes of the committed runs.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import fast.models
from benchmarks.tasks.data import IGNORE, MARKER, NOISE, induction_heads, selective_copying
from benchmarks.tasks.experiments import QUICK, run_all, run_one, summarize, write
from benchmarks.tasks.model import MODELS, FixedSelectionMamba, SequenceModel
from benchmarks.tasks.train import train
from equivalence_tests.tolerances import assert_close

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "tasks" / "results"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These small models run fastest on one thread (as the experiment runs them); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("B,L,K,V", [(5, 16, 2, 6), (7, 64, 4, 10), (3, 9, 4, 3)])
def test_selective_copying_rows_are_data_among_noise_then_markers(B, L, K, V):
    inputs, targets = selective_copying(B, L, K, V, seed=3)
    assert inputs.shape == targets.shape == (B, L) and inputs.dtype == targets.dtype == torch.int64
    for x, y in zip(inputs.tolist(), targets.tolist()):
        span, tail = x[: L - K], x[L - K :]
        assert tail == [MARKER] * K
        data = [t for t in span if t != NOISE]  # brute force: the non-noise tokens, in order
        assert len(data) == K and all(2 <= t < V for t in data)
        assert span.count(NOISE) == L - 2 * K
        assert y[L - K :] == data and y[: L - K] == [IGNORE] * (L - K)


@pytest.mark.parametrize("B,L,V", [(6, 8, 6), (9, 32, 16), (4, 4, 4)])
def test_induction_heads_rows_recall_the_token_after_the_special_one(B, L, V):
    inputs, targets = induction_heads(B, L, V, seed=5)
    assert inputs.shape == targets.shape == (B, L)
    for x, y in zip(inputs.tolist(), targets.tolist()):
        where = [k for k, t in enumerate(x) if t == MARKER]
        assert len(where) == 2 and where[1] == L - 1 and where[0] <= L - 3
        assert all(2 <= t < V for k, t in enumerate(x) if k not in where)
        assert y[-1] == x[where[0] + 1] and y[:-1] == [IGNORE] * (L - 1)


def test_generators_are_seeded_and_positions_vary():
    for make in (lambda s: selective_copying(64, 32, 4, 10, seed=s), lambda s: induction_heads(64, 32, 16, seed=s)):
        a, b, c = make(0), make(0), make(1)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert not torch.equal(a[0], c[0])
    x, _ = selective_copying(64, 32, 4, 10, seed=0)
    first = (x != NOISE).int().argmax(dim=1)  # position of each row's first data token
    assert len(set(first.tolist())) > 5  # random spacing, not a fixed layout
    g = torch.Generator().manual_seed(7)
    assert torch.equal(induction_heads(4, 8, seed=g)[0], induction_heads(4, 8, seed=7)[0])


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: selective_copying(0, 16, 2, 6), "batch_size"),
        (lambda: selective_copying(2, 4, 2, 6), "seq_len"),
        (lambda: selective_copying(2, 16, 0, 6), "n_memorize"),
        (lambda: selective_copying(2, 16, 2, 2), "vocab_size"),
        (lambda: induction_heads(2, 3, 6), "seq_len"),
        (lambda: induction_heads(2, 8, 3), "vocab_size"),
        (lambda: induction_heads(2, 8, 6, seed=1.5), "seed"),
        (lambda: SequenceModel("S6", 6, 8), "name"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(call, name):
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize("name", MODELS)
def test_every_model_maps_tokens_to_logits(name):
    model = SequenceModel(name, vocab_size=6, d_model=8, d_state=4, n_layers=2, seed=0)
    tokens, _ = induction_heads(3, 12, 6, seed=0)
    logits = model(tokens)
    assert logits.shape == (3, 12, 6) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    assert 0 < model.n_parameters() <= sum(p.numel() for p in model.parameters())


def test_fixed_selection_mamba_is_input_independent_and_its_step_matches_forward():
    torch.manual_seed(0)
    layer = FixedSelectionMamba(8, d_state=4, seed=0).to(torch.float32)
    x1, x2 = torch.randn(2, 5, layer.d_inner), torch.randn(2, 5, layer.d_inner)
    for a, b in zip(layer._selection(x1), layer._selection(x2)):
        assert torch.equal(a, b)
    parent = fast.models.Mamba._selection  # the selective original does depend on x
    assert not torch.equal(parent(layer, x1)[1], parent(layer, x2)[1])
    u = torch.randn(2, 7, 8, dtype=torch.float32)
    y = layer(u)
    y.pow(2).sum().backward()
    assert layer.x_proj_weight.grad is None and layer.dt_proj_weight.grad is None
    assert layer.B_fixed.grad is not None and layer.C_fixed.grad is not None and layer.dt_proj_bias.grad is not None
    state, steps = layer.initial_state(2), []
    with torch.no_grad():
        for t in range(7):
            y_t, state = layer.step(u[:, t], state)
            steps.append(y_t)
    assert_close(torch.stack(steps, 1), y.detach(), "float32", "step against forward")


@pytest.mark.parametrize("name", ["S4D", "Mamba"])
def test_training_lowers_the_loss(name):
    from benchmarks.tasks.experiments import make_batch

    tc = QUICK.tasks["selective_copying"]
    model = SequenceModel(name, tc.vocab_size, 16, 4, 2, seed=0)
    history = train(model, lambda b, L, s: make_batch("selective_copying", tc, b, L, s), steps=20, lr=1e-2,
                    batch_size=16, seq_len=tc.seq_len, seed=0, log_every=5, progress=False)
    assert len(history) == 4
    assert history[-1]["loss"] < history[0]["loss"] - 0.1, history


def test_a_diverging_run_stops_before_its_parameters_go_nan():
    # A non-finite gradient (made here by a hook from the third backward on) ends the run before the optimizer
    # step: the history ends with a NaN loss, the parameters stay finite (the fast model would refuse NaN ones
    # at its next forward), so the run can still be evaluated and the experiment goes on.
    from benchmarks.tasks.experiments import make_batch

    tc = QUICK.tasks["selective_copying"]
    model = SequenceModel("S4D", tc.vocab_size, 16, 4, 2, seed=0)
    calls = []
    first = next(model.parameters())
    first.register_hook(lambda g: (calls.append(1), g * float("nan") if len(calls) >= 3 else g)[1])
    history = train(model, lambda b, L, s: make_batch("selective_copying", tc, b, L, s), steps=10, lr=1e-2,
                    batch_size=8, seq_len=tc.seq_len, seed=0, log_every=1, progress=False)
    assert len(history) == 3 and history[-1]["loss"] != history[-1]["loss"], history  # NaN at step 3
    assert all(torch.isfinite(p).all() for p in model.parameters())
    inputs, _ = make_batch("selective_copying", tc, 4, tc.seq_len, 99)
    assert torch.isfinite(model(inputs)).all()


def test_a_seed_gives_the_same_numbers_and_another_seed_others():
    job = dict(task="selective_copying", model="S4D", seed=0, lr=1e-2, steps=8, width=16, evaluate=True)
    a, b = run_one(job, QUICK, progress=False), run_one(job, QUICK, progress=False)
    assert a["history"] == b["history"] and a["accuracy"] == b["accuracy"]
    c = run_one(dict(job, seed=1), QUICK, progress=False)
    assert c["history"] != a["history"]


def test_a_tiny_run_writes_complete_results(tmp_path):
    cfg = replace(QUICK, models=("S4D", "MambaFixed"), seeds=(0, 1), lrs=(1e-2,))
    cfg = replace(cfg, tasks={t: replace(tc, steps=3, search_steps=2) for t, tc in cfg.tasks.items()})
    results = run_all(cfg, n_jobs=1, progress=False)
    rows = write(results, tmp_path)
    for f in ("runs.json", "results.json", "results.csv", "table.md", "curves.png", "extrapolation.png"):
        assert (tmp_path / f).stat().st_size > 0, f
    lengths = {t: tc.eval_lengths for t, tc in cfg.tasks.items()}
    assert {(r["task"], r["model"], r["eval_length"]) for r in rows} == {
        (t, m, L) for t in lengths for m in cfg.models for L in lengths[t]}
    assert all(r["seeds"] == 2 and r["min"] <= r["mean"] <= r["max"] for r in rows)


def test_committed_results_are_the_summary_of_the_committed_runs():
    runs = json.loads((RESULTS / "runs.json").read_text())
    rows = json.loads((RESULTS / "results.json").read_text())
    assert rows == json.loads(json.dumps(summarize(runs)))
    cfg = runs["config"]
    assert {(r["task"], r["model"]) for r in rows} == {(t, m) for t in cfg["tasks"] for m in cfg["models"]}
    assert all(r["seeds"] >= 2 for r in rows)
    for f in ("curves.png", "extrapolation.png", "table.md", "results.csv"):
        assert (RESULTS / f).is_file(), f
