"""The conformance kit, tested: the project passes its own kit, the kit catches every planted defect by a
property whose name says what broke, the honest twins pass, and bad input to the kit gets a one-line error.

Example budgets are small here (``make test`` runs the kit on 22 adapters); the kit's default is 20 per property,
and ``HYPOTHESIS_PROFILE=thorough`` multiplies them.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import equivalence_tests.conformance as cf
from equivalence_tests import planted_defects
from equivalence_tests.conformance import fast_adapters

THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"
OWN_EXAMPLES = 40 if THOROUGH else 3
DEFECT_EXAMPLES = 40 if THOROUGH else 8
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(fast_adapters.ALL_ADAPTERS))
def test_the_projects_own_adapters_report_no_failure(name):
    adapter = fast_adapters.ALL_ADAPTERS[name]()
    report = cf.check(adapter, max_examples=OWN_EXAMPLES)
    assert report.passed, report.table()
    ran = [r for r in report.results if r.verdict == "pass"]
    assert ran and all(r.examples >= 1 for r in ran), report.table()
    # the kit skips only what does not apply to this kind of model, never for a missing method of ours
    assert not any("the adapter has no" in r.message for r in report.results), report.table()


@pytest.mark.parametrize("defect", sorted(planted_defects.DEFECTS))
def test_every_planted_defect_fails_a_property_that_names_it(defect):
    _, expected = planted_defects.DEFECTS[defect]
    report = cf.check(planted_defects.defect_adapter(defect), max_examples=DEFECT_EXAMPLES)
    failed = {r.name for r in report.results if r.verdict == "fail"}
    assert not report.passed
    assert failed & expected, f"{defect}: expected one of {sorted(expected)} to fail, failed: {sorted(failed)}"
    first = report[sorted(failed & expected)[0]]
    # the message: the worst error against its tolerance, the shrunk example, a line that reproduces it
    assert "against tolerance" in first.message or "Kolmogorov" in first.message or "spectral radius" in first.message
    assert "example (shrunk)" in first.message and first.repro in first.message
    assert first.example is not None and json.loads(json.dumps(first.example)) == first.example


@pytest.mark.parametrize("adapter", planted_defects.honest_adapters(), ids=lambda a: type(a).__name__)
def test_the_honest_twins_report_no_failure(adapter):
    report = cf.check(adapter, max_examples=DEFECT_EXAMPLES)
    assert report.passed, report.table()


def test_a_failure_reproduces_from_its_one_line_example():
    adapter = planted_defects.defect_adapter("step_reads_state_before_update")
    result = cf.check(adapter, max_examples=DEFECT_EXAMPLES, only=["step_matches_forward"]).results[0]
    assert result.verdict == "fail"
    with pytest.raises(AssertionError, match="step loop"):
        cf.reproduce(adapter, "step_matches_forward", result.example)
    honest = planted_defects.honest_adapters()[0]
    cf.reproduce(honest, "step_matches_forward", result.example)  # the same example holds for the honest twin


def test_shrinking_reaches_small_examples():
    result = cf.check(planted_defects.defect_adapter("missing_conjugate_factor"), max_examples=DEFECT_EXAMPLES,
                      only=["forward_matches_reference"]).results[0]
    assert result.verdict == "fail"
    assert result.example["length"] == 1 and result.example["batch"] == 1 and result.example["d_model"] == 1


class _Declared(planted_defects.StudentS4D):
    defect = "state_not_carried"
    expected_failures = {"chunked_forward_matches_one_shot": "prefill restarts from zero (documented)",
                         "kernel_matches_reference": "declared, but it holds"}


def test_declared_deviations_report_xfail_and_xpass():
    report = cf.check(_Declared(), max_examples=DEFECT_EXAMPLES,
                      only=["chunked_forward_matches_one_shot", "kernel_matches_reference"])
    assert report.verdicts() == {"chunked_forward_matches_one_shot": "xfail", "kernel_matches_reference": "xpass"}
    assert report.passed


class _NoForward(cf.ModelAdapter):
    model = "S4D"

    def build(self, ref):
        return ref


class _NotAModel(planted_defects.StudentS4D):
    model = "S4DD"


class _UnknownRule(cf.DiscretizationAdapter):
    methods = ("zoh", "tustin")

    def discretize(self, A, B, dt, method, *, integration_timesteps=None):
        return A, B


class _RuleTheModelLacks(planted_defects.StudentS4D):
    discretizations = ("zoh", "async")


class _UnknownExpected(planted_defects.StudentS4D):
    expected_failures = {"step_equals_forward": "typo"}


@pytest.mark.parametrize(
    "adapter, match",
    [
        (_NoForward(), r"does not define forward\(\); ModelAdapter needs it"),
        (_NotAModel(), r"model is 'S4DD', not a reference model; set it to one of \['S4'"),
        (_UnknownRule(), r"methods names 'tustin', which is not a rule; the rules are \['zoh'"),
        (_RuleTheModelLacks(), r"discretizations names 'async', which reference S4D does not have"),
        (_UnknownExpected(), r"expected_failures names 'step_equals_forward', not a property"),
        (planted_defects.StudentS4D, r"pass an instance"),
        (object(), r"not a conformance adapter"),
    ],
    ids=["missing forward", "not a model", "unknown rule", "rule the model lacks", "unknown property", "class",
         "not an adapter"],
)
def test_bad_adapters_get_a_one_line_error_that_says_what_to_fix(adapter, match):
    with pytest.raises(cf.AdapterError, match=match) as info:
        cf.check(adapter)
    assert "\n" not in str(info.value)


def test_an_adapter_that_raises_reports_error_with_the_example():
    class Broken(planted_defects.StudentS4D):
        def forward(self, impl, u, *, initial_state=None, integration_timesteps=None):
            raise RuntimeError("shape mismatch inside my kernel")

    result = cf.check(Broken(), max_examples=2, only=["forward_matches_reference"]).results[0]
    assert result.verdict == "error" and "RuntimeError: shape mismatch inside my kernel" in result.message
    assert "example (shrunk)" in result.message


def test_unsupported_inputs_skip_with_the_reason():
    class NoState(planted_defects.StudentS4D):
        def forward(self, impl, u, *, initial_state=None, integration_timesteps=None):
            if initial_state is not None:
                raise cf.Unsupported("my layer has no initial state")
            y, _ = impl.forward(u)
            return y, None

    report = cf.check(NoState(), max_examples=2, only=["chunked_forward_matches_one_shot"])
    assert report.results[0].verdict == "skip"
    assert "forward returned no state" in report.results[0].message


def test_report_renders_markdown_and_json():
    report = cf.check(planted_defects.defect_adapter("silent_downcast"), max_examples=2,
                      only=["forward_matches_reference", "kernel_matches_reference"])
    md = report.to_markdown()
    assert "| `forward_matches_reference` | fail |" in md and "```" in md
    data = json.loads(report.to_json())
    assert data["passed"] is False and {r["name"] for r in data["results"]} == set(report.verdicts())


# -- the command line, from another directory, as a user runs it ------------------------------------------------

USER_ADAPTER = '''
import numpy as np
import equivalence_tests.conformance as cf
from equivalence_tests.planted_defects import StudentS4D


class Honest(StudentS4D):
    pass


class Wrong(StudentS4D):
    defect = "missing_conjugate_factor"
'''


def _cli(tmp_path, *args):
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    return subprocess.run([sys.executable, "-m", "equivalence_tests.conformance", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def test_cli_exit_codes_and_report_files(tmp_path):
    (tmp_path / "my_adapters.py").write_text(USER_ADAPTER)
    good = _cli(tmp_path, "my_adapters:Honest", "--max-examples", "2", "--property", "forward_matches_reference")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "forward_matches_reference" in good.stdout and "PASSED" in good.stdout
    bad = _cli(tmp_path, "my_adapters:Wrong", "--max-examples", "3", "--json", "r.json", "--markdown", "r.md")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "FAILED" in bad.stdout
    assert "reproduce: python -m equivalence_tests.conformance my_adapters:Wrong" in bad.stdout
    assert json.loads((tmp_path / "r.json").read_text())[0]["passed"] is False
    assert "| `forward_matches_reference` | fail |" in (tmp_path / "r.md").read_text()
    repro = next(line for line in bad.stdout.splitlines() if line.startswith("reproduce: "))
    command = repro.removeprefix("reproduce: ").replace("python", shlex.quote(sys.executable), 1)
    again = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(tmp_path)), timeout=600)
    assert again.returncode != 0 and "Mismatch" in again.stderr
    missing = _cli(tmp_path, "my_adapters:Nope")
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0
    assert "has no attribute 'Nope'" in missing.stderr


# -- the pytest helper -----------------------------------------------------------------------------------------------

test_the_pytest_helper_on_the_honest_student = cf.pytest_suite(planted_defects.honest_adapters()[0], max_examples=2)


def test_the_pytest_helper_fails_a_defect():
    suite = cf.pytest_suite(planted_defects.defect_adapter("kernel_off_by_one"), max_examples=3)
    with pytest.raises(pytest.fail.Exception, match="kernel_matches_reference: fail"):
        suite("kernel_matches_reference")


def test_comparison_reports_the_worst_entry_against_its_tolerance():
    from equivalence_tests.conformance.compare import Mismatch, assert_matches

    expected = np.ones((2, 3))
    actual = expected.copy()
    actual[1, 2] += 1e-3
    assert_matches(expected + 1e-7, expected, "float32", "y")
    with pytest.raises(Mismatch, match=r"1/6 entries off; worst \|error\| 1.000e-03 at index \(1, 2\)"):
        assert_matches(actual, expected, "float32", "y")
    with pytest.raises(Mismatch, match="NaN"):
        assert_matches(np.full((2, 3), np.nan), expected, "float64", "y")
    with pytest.raises(Mismatch, match="shape"):
        assert_matches(expected[0], expected, "float64", "y")


def test_the_kit_ships_in_the_distribution_and_imports_from_any_directory(tmp_path):
    """A non-editable build (the wheel pip installs) contains the kit; run from another directory with only that
    wheel's files on the path (numpy, scipy, hypothesis from the environment), it imports and runs."""
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("lrnn_reference-*.whl")
    import zipfile

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    names = {p.relative_to(site).as_posix() for p in site.rglob("*.py")}
    for module in ("equivalence_tests/conformance/__init__.py", "equivalence_tests/conformance/__main__.py",
                   "equivalence_tests/strategies.py", "equivalence_tests/tolerances.py", "equivalence_tests/oracles.py",
                   "equivalence_tests/planted_defects.py", "reference/__init__.py"):
        assert module in names, f"{module} is not in the wheel"
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = ("import equivalence_tests.conformance as cf, equivalence_tests.tolerances as t; "
            "from equivalence_tests.planted_defects import StudentDiscretization as S; "
            "print(cf.__file__); print(cf.check(S(), max_examples=2).summary())")
    run = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, PYTHONPATH=str(site)))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0].startswith(str(site)) and "PASSED" in run.stdout
