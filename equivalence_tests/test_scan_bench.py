"""benchmarks.scan_bench, at tiny sizes: every row's output is checked against its float64 oracle before it is
timed, so a wrong or failing peer is reported as such, not as fast; peers that are not installed get a row
saying why. (The timings themselves are make bench's, not a test's.)"""

from __future__ import annotations

import types

import pytest
import torch

from benchmarks import scan_bench as sb

BUDGET = 0.01  # seconds: the round robin then runs its minimum of 3 repetitions


def _by_impl(rows):
    return {r["impl"]: r for r in rows}


@pytest.mark.parametrize(
    ("shape", "a_shape", "dtype"),
    [((2, 33, 8), (2, 33, 8), torch.float32), ((2, 17, 4, 8), (1, 1, 4, 8), torch.complex64)],
)
def test_linear_scan_case_checks_every_row_and_states_the_floor(shape, a_shape, dtype):
    rows = _by_impl(sb.linear_scan_case("tiny", shape, a_shape, dtype, BUDGET))
    for name in ("fast.ops.linear_scan", "fast blocked scan", "step loop", "torch associative_scan"):
        assert rows[name]["correct"], rows[name]
        assert rows[name]["rel_error"] < 1e-5 and rows[name]["seconds"] > 0
        assert rows[name]["floor_seconds"] > 0 and rows[name]["copy_bytes_per_second"] > 0
    clone = rows["fresh clone"]  # the partner that shows the cost of a fresh output: timed, no output check
    assert clone["seconds"] > 0 and clone["floor_seconds"] == rows["step loop"]["floor_seconds"]
    pscan = rows["mambapy pscan"]
    assert pscan.get("correct") or "not importable" in pscan["status"], pscan


def test_selective_and_rglru_cases_run_ours_correctly():
    for rows in (sb.selective_scan_case(BUDGET, quick=True), sb.rglru_scan_case(BUDGET, quick=True)):
        ours = [r for r in rows if r["impl"].startswith("fast.ops.")]
        assert len(ours) == 1 and ours[0]["correct"] and ours[0]["seconds"] > 0, ours
        for r in rows:  # every row is either checked and timed or says why not
            assert ("correct" in r and r["seconds"] > 0) or r["status"], r


def _fake_rglru_peer(output):
    """A stand-in for lrnnx.ops.rglru_scan: ``output(u, delta, A)`` in its (B, D, L) layout."""
    return types.SimpleNamespace(rglru_scan_ref=lambda u, delta, A: output(u, delta, A))


def _true_rglru(u, delta, A):  # (B, D, L): the recurrence in float64, lrnnx's argument layout
    a = torch.exp(delta.double() * torch.log(A.double()))  # (B, D, L): A (D, 1) broadcast over time
    b = torch.sqrt(1 - a * a) * u.double()
    return sb._step_loop(a.transpose(1, 2), b.transpose(1, 2)).transpose(1, 2).float()


@pytest.mark.parametrize("scale", [1.0, 1.01])
def test_a_peer_is_marked_wrong_exactly_when_its_output_is(monkeypatch, scale):
    monkeypatch.setattr(sb, "_peer", lambda name: _fake_rglru_peer(lambda *args: scale * _true_rglru(*args)))
    rows = sb.rglru_scan_case(BUDGET, quick=True)
    peer = _by_impl(rows)["lrnnx rglru_scan_ref"]
    assert peer["correct"] is (scale == 1.0), peer
    text = sb.table({"date": "today", "machine": "here", "rows": rows})
    line = next(line for line in text.splitlines() if "lrnnx rglru_scan_ref" in line)
    assert ("WRONG" in line) is (scale != 1.0) and "x ours" in line, line


def test_a_peer_that_raises_is_a_row_with_its_error_and_is_not_timed(monkeypatch):
    def refuse(u, delta, A):
        raise RuntimeError("no CPU kernel")

    monkeypatch.setattr(sb, "_peer", lambda name: _fake_rglru_peer(refuse))
    rows = _by_impl(sb.rglru_scan_case(BUDGET, quick=True))
    assert rows["lrnnx rglru_scan_ref"] == {
        "case": rows["fast.ops.linear_scan"]["case"], "impl": "lrnnx rglru_scan_ref",
        "status": "failed: RuntimeError: no CPU kernel",
    }
    assert rows["fast.ops.linear_scan"]["correct"] and rows["step loop"]["correct"]


def test_a_missing_peer_is_a_row_saying_why(monkeypatch):
    monkeypatch.setattr(sb, "_peer", lambda name: "not importable here (ModuleNotFoundError: No module 'lrnnx')")
    rows = _by_impl(sb.rglru_scan_case(BUDGET, quick=True))
    assert rows["lrnnx rglru_scan_ref"]["status"].startswith("not importable here")
    text = sb.table({"date": "today", "machine": "here", "rows": list(rows.values())})
    assert "lrnnx rglru_scan_ref" in text and "skipped: not importable here" in text
