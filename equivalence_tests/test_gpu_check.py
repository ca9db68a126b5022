"""``make gpu-check`` (benchmarks/gpu_check.py) on this CPU: its skip path, its dry run at tiny sizes, its files.

On a machine without CUDA the check must say so, write a results file saying it was skipped, and exit 0; with
``--dry`` every part runs on the CPU (the Triton kernels under the interpreter) and the JSON and markdown files have
the fields the GPU run will fill. A part over its time limit is recorded as a timeout, not a crash of the check.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check

ROOT = Path(__file__).resolve().parent.parent


def _run(*args, timeout=300):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "CI": "1"}
    return subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the skip path is for machines without CUDA")
def test_without_cuda_the_check_is_skipped_with_its_reason_and_exit_0(tmp_path):
    proc = _run("--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["status"] == "skipped"
    assert "no CUDA device" in result["reason"]
    assert result["parts"]["environment"]["cuda_available"] is False
    md = (tmp_path / "gpu_check.md").read_text()
    assert "skipped" in md and "no CUDA device" in md
    assert "kernels" not in result["parts"]  # nothing was timed


def test_dry_run_fills_every_part_and_both_files(tmp_path):
    proc = _run("--dry", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["dry"] is True and result["status"] == "ok"
    parts = result["parts"]
    assert list(parts) == ["environment", "triton_tests", "kernels", "models"]
    assert parts["triton_tests"]["status"] == "skipped"
    kernels = parts["kernels"]
    names = {(r["name"], r["backward"]) for r in kernels["rows"]}
    assert names == {(f"{k} {b}", w) for k in ("selective_scan", "linear_scan") for b in ("triton", "torch")
                     for w in (False, True)}
    for r in kernels["rows"]:
        assert r["ms"] > 0 and r["floor_ms"] > 0 and r["ratio"] == pytest.approx(r["ms"] / r["floor_ms"])
    assert set(kernels["target"]) == {"what", "ratio", "met"}
    models = parts["models"]["rows"]
    assert {(r["model"], r["impl"]) for r in models} == {
        (m, i) for m in gpu_check.DRY_MODELS for i in ("fast", "fast+backward", "fast triton", "fast triton+backward")}
    assert all(r["status"] == "ok" and r["ms"] > 0 for r in models)
    md = (tmp_path / "gpu_check.md").read_text()
    assert md == result["markdown"]
    assert "DRY RUN" in md and "| selective_scan triton | fwd |" in md and "| Mamba | fast triton |" in md


def test_a_part_over_its_limit_is_recorded_as_a_timeout():
    result = gpu_check.run_part("environment", dry=True, limit=0.01)
    assert result["status"] == "timeout" and result["limit_s"] == 0.01


def test_markdown_of_a_partial_run_names_the_parts_that_failed():
    result = {"date": "d", "dry": False, "status": "partial", "reason": "not ok: kernels",
              "parts": {"environment": {"status": "ok", "device": "X", "torch": "t", "triton": "v", "seconds": 1.0},
                        "kernels": {"status": "crashed", "seconds": 2.0, "limit_s": 120.0}}}
    md = gpu_check.markdown(result)
    assert "| kernels | crashed | 2 (120) |" in md and "partial" in md and "not ok: kernels" in md
