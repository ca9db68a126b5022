"""``check(adapter)``: run every property that applies to an adapter, each through hypothesis, into a Report."""

from __future__ import annotations

import json
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import hypothesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis.errors import FailedHealthCheck, Unsatisfiable

from equivalence_tests.conformance.adapters import (
    Adapter,
    AdapterError,
    DiscretizationAdapter,
    LinearScanAdapter,
    ModelAdapter,
    SelectiveScanAdapter,
    Unsupported,
)
from equivalence_tests.conformance.compare import Mismatch, tolerance
from equivalence_tests.conformance.report import Report, Result

#: Examples per property when ``check`` is not told (hypothesis shrinks every failure it finds).
DEFAULT_MAX_EXAMPLES = 20


@dataclass
class Property:
    """A statement about the family that the reference satisfies, checked on an adapter.

    ``examples(adapter)`` is the hypothesis strategy of its JSON-able examples, ``run(adapter, example)`` raises
    ``Mismatch`` when the statement fails (``Unsupported`` when the adapter cannot take the input),
    ``applies(adapter)`` returns None or why the property does not apply, and ``needs`` names optional adapter
    methods (a missing one: skip). ``budget`` caps its examples (properties that draw many seeds per example).
    """

    name: str
    kind: type
    claim: str
    examples: Callable
    run: Callable
    applies: Callable | None = None
    needs: tuple[str, ...] = ()
    budget: int | None = None


PROPERTIES: list[Property] = []


def register(kind: type, claim: str, *, examples: Callable, applies: Callable | None = None,
             needs: tuple[str, ...] = (), budget: int | None = None):
    """Decorator: the function ``run(adapter, example)`` becomes the property named after it."""

    def decorate(run: Callable) -> Callable:
        if any(p.name == run.__name__ for p in PROPERTIES):
            raise ValueError(f"property {run.__name__!r} is defined twice")
        PROPERTIES.append(Property(run.__name__, kind, claim, examples, run, applies, needs, budget))
        return run

    return decorate


def _kind(adapter) -> type:
    for kind in (DiscretizationAdapter, LinearScanAdapter, SelectiveScanAdapter, ModelAdapter):
        if isinstance(adapter, kind):
            return kind
    raise AdapterError(
        f"adapter: {type(adapter).__name__} is not a conformance adapter; subclass one of cf.DiscretizationAdapter, "
        "cf.LinearScanAdapter, cf.SelectiveScanAdapter, cf.ModelAdapter"
    )


def validate(adapter) -> type:
    """The adapter's kind, after checking what the kit needs of it (``AdapterError``, one line, otherwise)."""
    import reference
    from equivalence_tests.conformance.spaces import MODELS, model_class

    if isinstance(adapter, type):
        raise AdapterError(f"adapter: pass an instance, e.g. {adapter.__name__}(), not the class")
    kind = _kind(adapter)
    name = type(adapter).__name__
    for method in kind.required:
        if getattr(type(adapter), method, None) is getattr(kind, method, None):
            raise AdapterError(f"adapter: {name} does not define {method}(); {kind.__name__} needs it")
    try:
        tolerance(adapter.dtype)
    except ValueError as exc:
        raise AdapterError(f"adapter: {name}.dtype: {exc}") from None
    if not isinstance(adapter.expected_failures, dict):
        raise AdapterError(f"adapter: {name}.expected_failures must be a dict {{property name: reason}}")
    known = {p.name for p in PROPERTIES if p.kind is kind}
    for prop in adapter.expected_failures:
        if prop not in known:
            raise AdapterError(f"adapter: {name}.expected_failures names {prop!r}, not a property of a "
                               f"{kind.__name__}; known: {sorted(known)}")
    if kind in (DiscretizationAdapter, SelectiveScanAdapter):
        rules = adapter.methods
        if isinstance(rules, str) or not rules:
            raise AdapterError(f"adapter: {name}.methods must be a non-empty tuple of rule names, got {rules!r}")
        for rule in rules:
            if rule not in reference.DISCRETIZATIONS:
                raise AdapterError(f"adapter: {name}.methods names {rule!r}, which is not a rule; the rules are "
                                   f"{list(reference.DISCRETIZATIONS)}")
    if kind is ModelAdapter:
        if adapter.model not in MODELS:
            raise AdapterError(f"adapter: {name}.model is {adapter.model!r}, not a reference model; set it to one "
                               f"of {list(MODELS)}")
        cls = model_class(adapter.model)
        rules = adapter.discretizations
        if isinstance(rules, str):
            raise AdapterError(f"adapter: {name}.discretizations must be a tuple of names, e.g. ({rules!r},)")
        for rule in rules:
            if rule not in cls.discretizations:
                raise AdapterError(f"adapter: {name}.discretizations names {rule!r}, which reference {adapter.model} "
                                   f"does not have; it has {list(cls.discretizations)}")
        if not isinstance(adapter.options, dict):
            raise AdapterError(f"adapter: {name}.options must be a dict of constructor options")
    return kind


def _repro(adapter, prop: str, example: dict, max_examples) -> str:
    cls = type(adapter)
    spec = f"{cls.__module__}:{cls.__qualname__}"
    ex = json.dumps(example, sort_keys=True)
    if cls.__module__ != "__main__" and "<locals>" not in cls.__qualname__:
        return f"python -m equivalence_tests.conformance {spec} --property {prop} --example '{ex}'"
    return f"equivalence_tests.conformance.reproduce(<your {cls.__qualname__}()>, {prop!r}, {ex})"


class _RuleView:
    """The adapter as the kit sees it while checking one of its rules: the same object, claiming that rule alone."""

    def __init__(self, adapter, rule: str):
        self._adapter, self._rule = adapter, rule

    def __getattr__(self, name):
        if name in ("methods", "discretizations"):
            return (self._rule,)
        return getattr(self._adapter, name)


def _claimed_rules(adapter) -> list:
    if isinstance(adapter, ModelAdapter):
        from equivalence_tests.conformance.spaces import claimed_rules

        return list(claimed_rules(adapter))
    if isinstance(adapter, (DiscretizationAdapter, SelectiveScanAdapter)):
        return list(adapter.methods)
    return [None]


def _run_examples(prop: Property, adapter, n: int, seed: int | None) -> dict:
    """Run one property on one view through hypothesis: {"verdict", "ran", "unsupported", "last"}."""
    state = {"ran": 0, "unsupported": [], "last": None, "verdict": "pass"}

    def body(example):
        try:
            prop.run(adapter, example)
        except Unsupported as exc:
            state["unsupported"].append(str(exc) or type(exc).__name__)
            hypothesis.reject()
        except Exception as exc:
            state["last"] = (example, exc, traceback.format_exc())
            raise
        state["ran"] += 1

    test = settings(
        max_examples=n, database=None, deadline=None, derandomize=seed is None, report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, print_blob=False,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
    )(given(prop.examples(adapter))(body))
    if seed is not None:
        test = hypothesis.seed(seed)(test)
    try:
        test()
    except (Unsatisfiable, FailedHealthCheck):
        state["verdict"] = "skip"
    except Exception as outer:  # noqa: BLE001 - hypothesis re-raises the shrunk example's exception
        if state["last"] is None:
            state["last"] = ({}, outer, traceback.format_exc())
        state["verdict"] = "fail" if isinstance(state["last"][1], Mismatch) else "error"
    return state


def run_property(prop: Property, adapter, *, max_examples: int, seed: int | None) -> Result:
    """One property through hypothesis, once for every rule the adapter claims (each with its share of the
    examples, at least 1): pass, fail (with the shrunk example), skip, or error."""
    result = Result(prop.name, "pass", claim=prop.claim)
    rules = _claimed_rules(adapter)
    views = [adapter if rule is None else _RuleView(adapter, rule) for rule in rules]
    reasons = [prop.applies(v) if prop.applies else None for v in views]
    active = [v for v, r in zip(views, reasons) if r is None]
    if not active:
        result.verdict, result.message = "skip", reasons[0]
        return result
    missing = [m for m in prop.needs if not callable(getattr(adapter, m, None))]
    if missing:
        result.verdict, result.message = "skip", f"the adapter has no {', '.join(m + '()' for m in missing)}"
        return result
    n = max_examples if prop.budget is None else min(max_examples, prop.budget)
    n = max(1, -(-n // len(active)))
    unsupported: list[str] = []
    for view in active:
        state = _run_examples(prop, view, n, seed)
        result.examples += state["ran"]
        unsupported += state["unsupported"]
        if state["verdict"] in ("fail", "error"):
            example, exc, tb = state["last"]
            result.verdict, result.example = state["verdict"], example
            result.repro = _repro(adapter, prop.name, example, max_examples)
            shown = json.dumps(example, sort_keys=True)
            if state["verdict"] == "fail":
                result.message = f"{exc}\nexample (shrunk): {shown}\nreproduce: {result.repro}"
            else:
                last = tb.strip().splitlines()
                result.message = (f"the adapter raised {type(exc).__name__}: {exc}\nexample (shrunk): {shown}\n"
                                  f"reproduce: {result.repro}\n" + "\n".join(last[-6:]))
            break
    if result.verdict == "pass" and result.examples == 0:
        why = Counter(unsupported).most_common(1)[0][0] if unsupported else "no valid example could be drawn"
        result.verdict, result.message = "skip", f"unsupported: {why}"
    elif result.verdict == "pass" and unsupported:
        result.message = f"({len(unsupported)} drawn inputs unsupported: {Counter(unsupported).most_common(1)[0][0]})"
    expected = adapter.expected_failures.get(prop.name)
    if expected is not None:
        if result.verdict == "fail":
            result.verdict, result.message = "xfail", f"expected: {expected}\n{result.message}"
        elif result.verdict == "pass":
            result.verdict, result.message = "xpass", f"declared as an expected failure ({expected}), but it holds"
    return result


def properties_for(adapter) -> list[Property]:
    _load_properties()
    kind = validate(adapter)
    return [p for p in PROPERTIES if p.kind is kind]


def _load_properties() -> None:
    from equivalence_tests.conformance import properties_models, properties_ops  # noqa: F401 - they register


def check(adapter: Adapter, *, max_examples: int | None = None, seed: int | None = None,
          only: list[str] | None = None) -> Report:
    """Run every property that applies to ``adapter``; see the package docstring.

    ``max_examples`` per property (default ``DEFAULT_MAX_EXAMPLES``); ``seed`` makes hypothesis' draws
    reproducible under another seed (None: derandomized, the same examples every run); ``only`` restricts the
    run to the named properties.
    """
    props = properties_for(adapter)
    if only is not None:
        names = {p.name for p in props}
        for name in only:
            if name not in names:
                raise AdapterError(f"only: {name!r} is not a property of this adapter; known: {sorted(names)}")
        props = [p for p in props if p.name in only]
    n = DEFAULT_MAX_EXAMPLES if max_examples is None else max_examples
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise AdapterError(f"max_examples: expected an integer >= 1, got {max_examples!r}")
    report = Report(type(adapter).__name__, _kind(adapter).__name__, adapter.dtype)
    for prop in props:
        report.results.append(run_property(prop, adapter, max_examples=n, seed=seed))
    return report


def reproduce(adapter: Adapter, name: str, example: dict) -> None:
    """Run property ``name`` on one example (from a failure message); raises what the property raises."""
    for prop in properties_for(adapter):
        if prop.name == name:
            prop.run(adapter, example)
            return
    raise AdapterError(f"name: {name!r} is not a property of this adapter")
