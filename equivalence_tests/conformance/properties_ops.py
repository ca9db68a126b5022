"""Properties of the building blocks: discretization rules, the diagonal linear scan, the selective scan.

Each property is a statement about the family that the reference satisfies, named by its claim. Oracles: the
reference (``reference.discretize``, ``reference.linear_scan``, ``reference.selective_scan``), and ones nobody
here wrote: ``scipy.signal.cont2discrete``, ``scipy.linalg.expm``, and identities of the rules (a stable system
stays stable; zoh is a semigroup in the step; zoh and bilinear keep the DC gain; dirac injects B unscaled; the
mamba rule is the exact decay with an Euler input; event gaps of zero-input steps add up; async with unit gaps
is zoh; integration_timesteps scale the step).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.signal
from hypothesis import strategies as st

import reference
from equivalence_tests.conformance.adapters import (
    DiscretizationAdapter,
    LinearScanAdapter,
    SelectiveScanAdapter,
    Unsupported,
)
from equivalence_tests.conformance.compare import Mismatch, as_numpy, assert_matches
from equivalence_tests.conformance.runner import register
from equivalence_tests.conformance.spaces import seeds

EXPONENTIAL = ("zoh", "dirac", "mamba", "async")  # rules whose A_bar is expm(dt A)


# ------------------------------------------------------------------------------------------------
# Discretization
# ------------------------------------------------------------------------------------------------


def _rules(adapter, allowed=None, exclude=()) -> list[str]:
    return [m for m in adapter.methods if (allowed is None or m in allowed) and m not in exclude]


def _needs_rules(allowed=None, exclude=()):
    def applies(adapter):
        if _rules(adapter, allowed, exclude):
            return None
        wanted = sorted(set(allowed or reference.DISCRETIZATIONS) - set(exclude))
        return f"the adapter claims none of the rules {wanted}"

    return applies


def _systems(adapter, allowed=None, exclude=(), real_only=False):
    """Examples: sizes, a rule the adapter claims, real or complex, diagonal or dense, scalar or per-state dt."""
    rules = _rules(adapter, allowed, exclude) or ["zoh"]
    return st.fixed_dictionaries({
        "N": st.integers(1, 4), "H": st.integers(1, 3), "method": st.sampled_from(rules),
        "complex": st.just(False) if real_only else st.booleans(),
        "dense": st.booleans() if adapter.dense else st.just(False),
        "per_state_dt": st.booleans(), "L": st.integers(1, 5), "seed": seeds,
    })


def _system_arrays(ex: dict):
    """(A, B, dt, tau) of an example: A (N,) diagonal with Re in [-3, -0.01], or (N, N) dense real with eigenvalues
    in Re < -0.05; B (N, H); dt log-uniform in [1e-3, 1] (scalar or per state); tau (L,) gaps in [0.05, 3].
    ``well_conditioned``: Re in [-3, -0.3] and dt in [0.1, 1], for identities that divide by 1 - A_bar."""
    rng = np.random.default_rng(ex["seed"])
    N, H = ex["N"], ex["H"]
    low_decay, low_dt = (0.3, 0.1) if ex.get("well_conditioned") else (0.01, 1e-3)
    if ex["dense"]:
        M = rng.normal(size=(N, N))
        A = M - (np.linalg.eigvals(M).real.max() + rng.uniform(0.05, 2.0)) * np.eye(N)  # (N, N)
        B = rng.normal(size=(N, H))  # (N, H)
    else:
        A = -rng.uniform(low_decay, 3.0, size=N)  # (N,)
        B = rng.normal(size=(N, H))  # (N, H)
        if ex["complex"]:
            A = A + 1j * rng.uniform(-5.0, 5.0, size=N)
            B = B + 1j * rng.normal(size=(N, H))
    dt = np.exp(rng.uniform(np.log(low_dt), 0.0, size=N if ex["per_state_dt"] else ()))
    tau = rng.uniform(0.05, 3.0, size=ex["L"])  # (L,)
    return A, B, dt, tau


def _as_matrix(A):
    return np.diag(A) if A.ndim == 1 else A


def _discretize(adapter, A, B, dt, method, tau=None):
    out = adapter.discretize(A, B, dt, method, integration_timesteps=tau)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise Mismatch("discretize", f"expected (A_bar, B_bar), got {type(out).__name__}")
    return as_numpy(out[0], "A_bar"), as_numpy(out[1], "B_bar")


@register(DiscretizationAdapter, "every claimed rule gives the reference's (A_bar, B_bar), for diagonal (real and "
          "complex) and dense A, scalar and per-state steps; async with per-event gaps",
          examples=lambda ad: _systems(ad))
def discretize_matches_reference(adapter, ex):
    if ex["method"] == "async":  # an event rule takes a diagonal A (its gaps give every event its own system)
        ex = dict(ex, dense=False)
    A, B, dt, tau = _system_arrays(ex)
    tau = tau if ex["method"] == "async" else None
    A_bar, B_bar = _discretize(adapter, A, B, dt, ex["method"], tau)
    ref_A, ref_B = reference.discretize(A, B, dt, ex["method"], integration_timesteps=tau)
    assert_matches(A_bar, ref_A, adapter.dtype, f"A_bar ({ex['method']})")
    assert_matches(B_bar, ref_B, adapter.dtype, f"B_bar ({ex['method']})")


@register(DiscretizationAdapter, "zoh and bilinear equal scipy.signal.cont2discrete's 'zoh' and 'bilinear' "
          "(A_bar, B_bar) on real systems",
          examples=lambda ad: _systems(ad, ("zoh", "bilinear"), real_only=True),
          applies=_needs_rules(("zoh", "bilinear")))
def discretize_matches_scipy_cont2discrete(adapter, ex):
    ex = dict(ex, per_state_dt=False)  # scipy takes one step
    A, B, dt, _ = _system_arrays(ex)
    A_bar, B_bar = _discretize(adapter, A, B, float(dt), ex["method"])
    N, H = B.shape
    Ad, Bd, *_ = scipy.signal.cont2discrete((_as_matrix(A), B, np.zeros((1, N)), np.zeros((1, H))), float(dt),
                                            method=ex["method"])
    assert_matches(_as_matrix(A_bar) if A.ndim == 1 else A_bar, Ad, adapter.dtype, f"A_bar vs scipy ({ex['method']})")
    assert_matches(B_bar, Bd, adapter.dtype, f"B_bar vs scipy ({ex['method']})")


@register(DiscretizationAdapter, "a stable continuous system (every eigenvalue in Re < 0) gives a stable discrete "
          "one (every eigenvalue of A_bar inside the unit circle) under every claimed rule",
          examples=lambda ad: _systems(ad, exclude=("async",)), applies=_needs_rules(exclude=("async",)))
def stable_systems_stay_stable(adapter, ex):
    A, B, dt, _ = _system_arrays(ex)
    A_bar, _ = _discretize(adapter, A, B, dt, ex["method"])
    radius = np.abs(A_bar) if A.ndim == 1 else np.abs(np.linalg.eigvals(A_bar))
    if not np.all(radius < 1.0):
        raise Mismatch(f"A_bar ({ex['method']})", f"spectral radius {radius.max():.6g} >= 1 for a stable A "
                       f"(max Re lambda {np.max(np.linalg.eigvals(_as_matrix(A)).real):.3g})")


@register(DiscretizationAdapter, "zoh is a semigroup in the step: A_bar(s + t) = A_bar(t) A_bar(s) and "
          "B_bar(s + t) = A_bar(t) B_bar(s) + B_bar(t)",
          examples=lambda ad: _systems(ad, ("zoh",)), applies=_needs_rules(("zoh",)))
def zoh_is_a_semigroup(adapter, ex):
    if ex["dense"]:  # per-state clocks of a dense A do not compose as one matrix semigroup
        ex = dict(ex, per_state_dt=False)
    A, B, dt, _ = _system_arrays(ex)
    s, t = dt, 0.5 * dt + 1e-3
    As, Bs = _discretize(adapter, A, B, s, "zoh")
    At, Bt = _discretize(adapter, A, B, t, "zoh")
    Ast, Bst = _discretize(adapter, A, B, s + t, "zoh")
    if A.ndim == 1:
        assert_matches(Ast, At * As, adapter.dtype, "A_bar(s + t) vs A_bar(t) A_bar(s)")
        assert_matches(Bst, At[:, None] * Bs + Bt, adapter.dtype, "B_bar(s + t) vs A_bar(t) B_bar(s) + B_bar(t)")
    else:
        assert_matches(Ast, At @ As, adapter.dtype, "A_bar(s + t) vs A_bar(t) A_bar(s)")
        assert_matches(Bst, At @ Bs + Bt, adapter.dtype, "B_bar(s + t) vs A_bar(t) B_bar(s) + B_bar(t)")


@register(DiscretizationAdapter, "zoh and bilinear keep the DC gain: (I - A_bar)^-1 B_bar = -A^-1 B",
          examples=lambda ad: _systems(ad, ("zoh", "bilinear")), applies=_needs_rules(("zoh", "bilinear")))
def dc_gain_matches_continuous(adapter, ex):
    # (I - A_bar) is ~ dt A: its rounding is amplified by 1 / (dt |lambda|), so the steps are kept well conditioned
    ex = dict(ex, per_state_dt=False, well_conditioned=True)
    A, B, dt, _ = _system_arrays(ex)
    A_bar, B_bar = _discretize(adapter, A, B, dt, ex["method"])
    N = B.shape[0]
    gain = np.linalg.solve(np.eye(N) - _as_matrix(A_bar), B_bar) if A.ndim == 1 else np.linalg.solve(
        np.eye(N) - A_bar, B_bar)
    assert_matches(gain, -np.linalg.solve(_as_matrix(A), B), adapter.dtype, f"DC gain ({ex['method']})")


@register(DiscretizationAdapter, "dirac keeps the exact decay A_bar = expm(dt A) (scipy.linalg.expm) and injects "
          "the impulse unscaled: B_bar = B",
          examples=lambda ad: _systems(ad, ("dirac",)), applies=_needs_rules(("dirac",)))
def dirac_is_exact_decay_with_unscaled_input(adapter, ex):
    A, B, dt, _ = _system_arrays(ex)
    A_bar, B_bar = _discretize(adapter, A, B, dt, "dirac")
    expected_A = np.exp(dt * A) if A.ndim == 1 else scipy.linalg.expm(np.reshape(dt, (-1, 1)) * A)
    assert_matches(A_bar, expected_A, adapter.dtype, "A_bar (dirac) vs expm(dt A)")
    assert_matches(B_bar, B, adapter.dtype, "B_bar (dirac) vs B")


@register(DiscretizationAdapter, "the mamba rule is the exact decay A_bar = expm(dt A) with an Euler input "
          "B_bar = dt B",
          examples=lambda ad: _systems(ad, ("mamba",)), applies=_needs_rules(("mamba",)))
def mamba_rule_is_exact_decay_with_euler_input(adapter, ex):
    A, B, dt, _ = _system_arrays(ex)
    A_bar, B_bar = _discretize(adapter, A, B, dt, "mamba")
    rows = np.reshape(dt, (-1, 1))
    expected_A = np.exp(dt * A) if A.ndim == 1 else scipy.linalg.expm(rows * A)
    assert_matches(A_bar, expected_A, adapter.dtype, "A_bar (mamba) vs expm(dt A)")
    assert_matches(B_bar, rows * B, adapter.dtype, "B_bar (mamba) vs dt B")


@register(DiscretizationAdapter, "async with unit gaps equals zoh at every event",
          examples=lambda ad: _systems(ad, ("async",)), applies=_needs_rules(("async",)))
def async_with_unit_gaps_equals_zoh(adapter, ex):
    ex = dict(ex, dense=False)
    A, B, dt, tau = _system_arrays(ex)
    A_bar, B_bar = _discretize(adapter, A, B, dt, "async", np.ones_like(tau))
    zoh_A, zoh_B = reference.discretize(A, B, dt, "zoh")
    L = tau.shape[0]
    assert_matches(A_bar, np.broadcast_to(zoh_A, (L,) + zoh_A.shape), adapter.dtype, "A_bar (async, unit gaps)")
    assert_matches(B_bar, np.broadcast_to(zoh_B, (L,) + zoh_B.shape), adapter.dtype, "B_bar (async, unit gaps)")


@register(DiscretizationAdapter, "async: the decays of zero-input gaps add up, A_bar(tau1) A_bar(tau2) = "
          "A_bar(tau1 + tau2), a zero gap does not decay (A_bar = 1), and every event injects one nominal step",
          examples=lambda ad: _systems(ad, ("async",)), applies=_needs_rules(("async",)))
def async_gaps_add_up(adapter, ex):
    ex = dict(ex, dense=False)
    A, B, dt, tau = _system_arrays(ex)
    t1, t2 = tau[0], tau[-1]
    gaps = np.array([t1, t2, t1 + t2, 0.0])
    A_bar, B_bar = _discretize(adapter, A, B, dt, "async", gaps)
    assert_matches(A_bar[2], A_bar[0] * A_bar[1], adapter.dtype, "A_bar(tau1 + tau2) vs A_bar(tau1) A_bar(tau2)")
    assert_matches(A_bar[3], np.ones_like(A_bar[3]), adapter.dtype, "A_bar at a zero gap")
    _, zoh_B = reference.discretize(A, B, dt, "zoh")
    assert_matches(B_bar, np.broadcast_to(zoh_B, (4,) + zoh_B.shape), adapter.dtype, "B_bar (one nominal step)")


@register(DiscretizationAdapter, "integration_timesteps scale the step of every non-async rule: event k is "
          "discretized with dt * tau_k",
          examples=lambda ad: _systems(ad, exclude=("async",)), applies=_needs_rules(exclude=("async",)))
def integration_timesteps_scale_the_step(adapter, ex):
    ex = dict(ex, dense=False)
    A, B, dt, tau = _system_arrays(ex)
    A_bar, B_bar = _discretize(adapter, A, B, dt, ex["method"], tau)
    for k, t in enumerate(tau):
        ref_A, ref_B = _discretize(adapter, A, B, dt * t, ex["method"])
        assert_matches(A_bar[k], ref_A, adapter.dtype, f"A_bar at event {k} vs the rule at dt * tau_k")
        assert_matches(B_bar[k], ref_B, adapter.dtype, f"B_bar at event {k} vs the rule at dt * tau_k")


# ------------------------------------------------------------------------------------------------
# The diagonal linear scan
# ------------------------------------------------------------------------------------------------


def _scan_examples(adapter, min_length=1):
    return st.fixed_dictionaries({
        "B": st.integers(1, 3), "L": st.integers(min_length, 40), "F": st.integers(1, 4),
        "complex": st.booleans() if adapter.complex_values else st.just(False),
        "zeros": st.booleans(), "h0": st.booleans(), "seed": seeds,
    })


def _scan_arrays(ex):
    """a (B, L, F) with |a| <= 1 (exact zeros too when ``zeros``: a scan that divides by running products breaks
    there), b (B, L, F), h0 (B, F) or None."""
    rng = np.random.default_rng(ex["seed"])
    shape = (ex["B"], ex["L"], ex["F"])
    a = rng.uniform(0.0, 1.0, size=shape)  # (B, L, F)
    b = rng.normal(size=shape)  # (B, L, F)
    if ex["zeros"]:
        a[rng.uniform(size=shape) < 0.2] = 0.0
    if ex["complex"]:
        a = a * np.exp(1j * rng.uniform(-np.pi, np.pi, size=shape))
        b = b + 1j * rng.normal(size=shape)
    h0 = rng.normal(size=shape[::2]) * (1 + 1j * ex["complex"]) if ex["h0"] else None  # (B, F)
    return a, b, h0


def _scan(adapter, a, b, h0):
    out = adapter.linear_scan(a, b, initial_state=h0)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise Mismatch("linear_scan", f"expected (x, final_state), got {type(out).__name__}")
    return as_numpy(out[0], "x"), as_numpy(out[1], "final_state")


@register(LinearScanAdapter, "the states and the final state equal reference.linear_scan (real and complex, with "
          "and without an initial state, decays down to exactly 0)", examples=_scan_examples)
def linear_scan_matches_reference(adapter, ex):
    a, b, h0 = _scan_arrays(ex)
    x, xL = _scan(adapter, a, b, h0)
    ref_x, ref_xL = reference.linear_scan(a, b, h0)
    assert_matches(x, ref_x, adapter.dtype, "x")
    assert_matches(xL, ref_xL, adapter.dtype, "final_state")


@register(LinearScanAdapter, "the final state is the state at the last step", examples=_scan_examples)
def linear_scan_final_state_is_the_last_state(adapter, ex):
    a, b, h0 = _scan_arrays(ex)
    x, xL = _scan(adapter, a, b, h0)
    assert_matches(xL, x[:, -1], adapter.dtype, "final_state vs x[:, -1]")


@register(LinearScanAdapter, "a sequence cut anywhere and continued from the returned final state equals the "
          "one-shot scan", examples=lambda ad: _scan_examples(ad, min_length=2).flatmap(
              lambda ex: st.integers(1, ex["L"] - 1).map(lambda k: dict(ex, cut=k))))
def linear_scan_continues_from_its_final_state(adapter, ex):
    a, b, h0 = _scan_arrays(ex)
    k = ex["cut"]
    x, xL = _scan(adapter, a, b, h0)
    x1, s1 = _scan(adapter, a[:, :k], b[:, :k], h0)
    x2, s2 = _scan(adapter, a[:, k:], b[:, k:], s1)
    assert_matches(np.concatenate([x1, x2], axis=1), x, adapter.dtype, f"x of the two parts (cut at {k})")
    assert_matches(s2, xL, adapter.dtype, f"final_state of the two parts (cut at {k})")


# ------------------------------------------------------------------------------------------------
# The selective scan
# ------------------------------------------------------------------------------------------------


def _selective_examples(adapter, *, h0=False, tau=None, min_length=1, rules=None):
    methods = [m for m in adapter.methods if rules is None or m in rules] or list(adapter.methods)
    return st.fixed_dictionaries({
        "B": st.integers(1, 2), "L": st.integers(min_length, 17), "D": st.integers(1, 3), "N": st.integers(1, 4),
        "method": st.sampled_from(methods), "with_D": st.booleans(), "with_z": st.booleans(),
        "h0": st.just(h0), "tau": st.just(tau) if tau is not None else st.booleans(), "seed": seeds,
    })


def _selective_arrays(ex):
    """u, dt, A, B, C, D, z, tau, h0 of an example (dt = softplus of a normal, in (0, ~3]; A = -exp(normal))."""
    rng = np.random.default_rng(ex["seed"])
    Bsz, L, Dch, N = ex["B"], ex["L"], ex["D"], ex["N"]
    u = rng.normal(size=(Bsz, L, Dch))  # (B, L, D)
    dt = np.log1p(np.exp(rng.normal(-1.0, 1.0, size=(Bsz, L, Dch))))  # (B, L, D)
    A = -np.exp(rng.normal(size=(Dch, N)))  # (D, N)
    Bm = rng.normal(size=(Bsz, L, N))  # (B, L, N)
    Cm = rng.normal(size=(Bsz, L, N))  # (B, L, N)
    D = rng.normal(size=Dch) if ex["with_D"] else None  # (D,)
    z = rng.normal(size=(Bsz, L, Dch)) if ex["with_z"] else None  # (B, L, D)
    needs_tau = ex["method"] in reference.TIME_VARYING_ONLY or ex["tau"]
    tau = rng.uniform(0.05, 3.0, size=(Bsz, L)) if needs_tau else None  # (B, L)
    if tau is not None and ex["method"] in ("async", "dirac") and rng.uniform() < 0.5:
        tau[:, rng.integers(L)] = 0.0  # simultaneous events are valid for these rules
    h0 = rng.normal(size=(Bsz, Dch, N)) if ex["h0"] else None  # (B, D, N)
    return u, dt, A, Bm, Cm, D, z, tau, h0


def _selective(adapter, u, dt, A, Bm, Cm, D, z, tau, h0, method):
    out = adapter.selective_scan(u, dt, A, Bm, Cm, D, z, method=method, integration_timesteps=tau, initial_state=h0)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise Mismatch("selective_scan", f"expected (y, final_state or None), got {type(out).__name__}")
    y, state = out
    return as_numpy(y, "y"), None if state is None else as_numpy(state, "final_state")


def _reference_selective(u, dt, A, Bm, Cm, D, z, tau, h0, method):
    return reference.selective_scan(u, dt, A, Bm, Cm, D, z, method=method, integration_timesteps=tau,
                                    initial_state=h0, return_state=True)


def _y_matches_reference(adapter, ex, what: str) -> None:
    args = _selective_arrays(ex)
    y, _ = _selective(adapter, *args, ex["method"])
    ref_y, _ = _reference_selective(*args, ex["method"])
    assert_matches(y, ref_y, adapter.dtype, f"{what} ({ex['method']})")


@register(SelectiveScanAdapter, "y equals reference.selective_scan for every claimed rule, with and without D and "
          "the gate z (async with its event gaps)", examples=lambda ad: _selective_examples(ad, tau=False))
def selective_scan_matches_reference(adapter, ex):
    _y_matches_reference(adapter, ex, "y")


@register(SelectiveScanAdapter, "y from a given initial state equals the reference's",
          examples=lambda ad: _selective_examples(ad, h0=True, tau=False))
def selective_scan_from_initial_state_matches_reference(adapter, ex):
    _y_matches_reference(adapter, ex, "y from initial_state")


@register(SelectiveScanAdapter, "integration_timesteps (per-event gaps) give the reference's y for every claimed "
          "rule", examples=lambda ad: _selective_examples(ad, tau=True))
def selective_scan_with_integration_timesteps_matches_reference(adapter, ex):
    _y_matches_reference(adapter, ex, "y with integration_timesteps")


@register(SelectiveScanAdapter, "the final state (B, D, N) equals the reference's",
          examples=lambda ad: _selective_examples(ad, tau=False).flatmap(
              lambda ex: st.booleans().map(lambda h: dict(ex, h0=h))))
def selective_scan_final_state_matches_reference(adapter, ex):
    args = _selective_arrays(ex)
    _, state = _selective(adapter, *args, ex["method"])
    if state is None:
        raise Unsupported("selective_scan returned no final state")
    _, ref_state = _reference_selective(*args, ex["method"])
    assert_matches(state, ref_state, adapter.dtype, f"final_state ({ex['method']})")


@register(SelectiveScanAdapter, "a sequence cut anywhere and continued from the returned final state equals the "
          "one-shot scan", examples=lambda ad: _selective_examples(ad, tau=False, min_length=2).flatmap(
              lambda ex: st.integers(1, ex["L"] - 1).map(lambda k: dict(ex, cut=k))))
def selective_scan_continues_from_its_final_state(adapter, ex):
    u, dt, A, Bm, Cm, D, z, tau, h0 = _selective_arrays(ex)
    k, m = ex["cut"], ex["method"]

    def part(sl, state):
        def cut(x):
            return None if x is None else x[:, sl]

        return _selective(adapter, u[:, sl], dt[:, sl], A, Bm[:, sl], Cm[:, sl], D, cut(z), cut(tau), state, m)

    y, _ = _selective(adapter, u, dt, A, Bm, Cm, D, z, tau, h0, m)
    y1, s1 = part(slice(0, k), h0)
    if s1 is None:
        raise Unsupported("selective_scan returned no final state")
    y2, _ = part(slice(k, None), s1)
    assert_matches(np.concatenate([y1, y2], axis=1), y, adapter.dtype, f"y of the two parts (cut at {k}, {m})")


@register(SelectiveScanAdapter, "causality: changing the inputs after step t leaves y up to t unchanged",
          examples=lambda ad: _selective_examples(ad, tau=False, min_length=2).flatmap(
              lambda ex: st.integers(1, ex["L"] - 1).map(lambda k: dict(ex, cut=k))))
def selective_scan_is_causal(adapter, ex):
    u, dt, A, Bm, Cm, D, z, tau, h0 = _selective_arrays(ex)
    k, m = ex["cut"], ex["method"]
    y, _ = _selective(adapter, u, dt, A, Bm, Cm, D, z, tau, h0, m)
    rng = np.random.default_rng(ex["seed"] + 7)
    u2, Bm2, Cm2 = u.copy(), Bm.copy(), Cm.copy()
    u2[:, k:] += rng.normal(size=u2[:, k:].shape)
    Bm2[:, k:] += rng.normal(size=Bm2[:, k:].shape)
    Cm2[:, k:] += rng.normal(size=Cm2[:, k:].shape)
    y2, _ = _selective(adapter, u2, dt, A, Bm2, Cm2, D, z, tau, h0, m)
    assert_matches(y2[:, :k], y[:, :k], adapter.dtype, f"y[:, :{k}] after changing the inputs from step {k} on")
