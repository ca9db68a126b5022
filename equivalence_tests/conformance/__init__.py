"""The conformance kit: the verification suite pointed at anyone's implementation of a linear RNN / SSM.

Write a small adapter for your implementation (a subclass of one of the four base classes below; arrays cross
it as NumPy arrays), then::

    import equivalence_tests.conformance as cf
    report = cf.check(MyS4D(), max_examples=20)
    print(report.table())          # one row per property: pass / fail / skip / xfail / xpass / error
    assert report.passed

or from the shell, ``python -m equivalence_tests.conformance mypkg.mod:MyS4D [--max-examples N] [--json F]
[--markdown F]`` (exit 1 on a failure), or in your own pytest suite ``test_my_s4d = cf.pytest_suite(MyS4D())``
(one test per property).

Every property is a statement about the model family that the reference satisfies, named by its claim
(``step_matches_forward``, ``init_matches_reference``, ...). Hypothesis draws the examples (sizes shrinking toward
L = 1, N = 1 and odd lengths; every rule the adapter claims; parameters at initialization and moved away from
it) and shrinks every failure; the message gives the shrunk example, the worst error against its tolerance (the
one table, ``equivalence_tests.tolerances``, by the adapter's ``dtype``) and one line that reproduces it.

Adapters: ``DiscretizationAdapter`` (``discretize``), ``LinearScanAdapter`` (``linear_scan``),
``SelectiveScanAdapter`` (``selective_scan``), ``ModelAdapter`` (``build``, ``forward``; optional ``step``,
``initial_state``, ``state_to_reference``, ``initial_params``, ``kernel``, ``frequency_response``,
``grad_input``). An adapter method raises ``Unsupported(reason)`` for an input its implementation cannot take.
``equivalence_tests.conformance.fast_adapters`` has the project's own adapters (every fast model and op), a
worked example of each kind.
"""

from equivalence_tests.conformance.adapters import (
    AdapterError,
    DiscretizationAdapter,
    LinearScanAdapter,
    ModelAdapter,
    SelectiveScanAdapter,
    Unsupported,
)
from equivalence_tests.conformance.report import VERDICTS, Report, Result
from equivalence_tests.conformance.runner import DEFAULT_MAX_EXAMPLES, check, properties_for, reproduce

__all__ = [
    "DEFAULT_MAX_EXAMPLES",
    "VERDICTS",
    "AdapterError",
    "DiscretizationAdapter",
    "LinearScanAdapter",
    "ModelAdapter",
    "Report",
    "Result",
    "SelectiveScanAdapter",
    "Unsupported",
    "check",
    "load_adapter",
    "properties_for",
    "pytest_suite",
    "reproduce",
]


def load_adapter(spec: str):
    """``"package.module:Name"`` -> an adapter instance (``Name`` is a class, instantiated without arguments, or
    an instance). A one-line ``AdapterError`` says what is wrong with ``spec``."""
    import importlib

    if not isinstance(spec, str) or spec.count(":") != 1:
        raise AdapterError(f"adapter: expected MODULE:ADAPTER (e.g. mypkg.adapters:MyS4D), got {spec!r}")
    module_name, attr = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AdapterError(f"adapter: cannot import module {module_name!r} ({exc})") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise AdapterError(f"adapter: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj() if isinstance(obj, type) else obj


def pytest_suite(adapter, *, max_examples: int | None = None, seed: int | None = None):
    """A pytest test function with one case per property of ``adapter`` (failures fail, skips skip, xfails
    xfail): in your test module, ``test_my_model = cf.pytest_suite(MyModel())``."""
    import pytest

    names = [p.name for p in properties_for(adapter)]

    @pytest.mark.parametrize("property_name", names)
    def test_conformance(property_name):
        result = check(adapter, max_examples=max_examples, seed=seed, only=[property_name]).results[0]
        if result.verdict == "skip":
            pytest.skip(result.message)
        if result.verdict == "xfail":
            pytest.xfail(result.message.splitlines()[0])
        if result.verdict in ("fail", "error", "xpass"):
            pytest.fail(f"{property_name}: {result.verdict}\n{result.message}", pytrace=False)

    test_conformance.__name__ = f"test_conformance_{type(adapter).__name__}"
    return test_conformance
