"""The figures package draws the models' own responses, and the command line behaves.

* Plotted data: every curve of every plot equals, point for point, the model's ``impulse_response`` /
  ``frequency_response`` (or its poles, its frozen systems, its outputs), recomputed here from the model;
  the comparison's continuous curve equals the continuous transfer function written out from the S4D
  parameters (the bilinear warping identity, reference/README.md §bilinear, §Identities 4).
* ``frozen_system`` (the reference helper the LTV figures use): its impulse response equals the model's
  recurrence run with token t's gates held fixed (gates recomputed here from each model's documented
  equations), and its first step is what ``forward`` does at token t.
* The CLI writes valid PNGs; a bad --model or --discretization exits non-zero with one line on stderr that
  lists the valid choices, and no traceback; the committed gallery is complete and small.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import figures
import reference
from equivalence_tests.strategies import gaps, seeds
from equivalence_tests.tolerances import assert_close
from figures.plots import frequency_grid
from reference.init import softplus
from reference.models import LRU, RGLRU, S4, S4D, S5, S7, Centaurus, Mamba
from reference.models.ltv._base import sigmoid

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

LTI = {"s4": S4, "s4d": S4D, "s5": S5, "lru": LRU, "centaurus": Centaurus}
LTV = {"mamba": Mamba, "rglru": RGLRU, "s7": S7}


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


@st.composite
def lti_models(draw):
    """(name, {rule: model}) for one LTI model under one or two of its rules, built here (not by figures)."""
    name = draw(st.sampled_from(sorted(LTI)))
    cls = LTI[name]
    rules = draw(st.lists(st.sampled_from(cls.discretizations), min_size=1, max_size=2, unique=True))
    d_model = draw(st.integers(1, 3))
    seed = draw(seeds)
    d_state = {"centaurus": draw(st.integers(1, 2))}.get(name, 2 * draw(st.integers(1, 3)))
    return name, {rule: cls(d_model, d_state, discretization=rule, seed=seed) for rule in rules}


@st.composite
def ltv_setups(draw, rules=None):
    """(model, u (T, H), tau (T,) or None): one small LTV model and one input sequence."""
    name = draw(st.sampled_from(sorted(LTV)))
    cls = LTV[name]
    allowed = [r for r in cls.discretizations if rules is None or r in rules]
    rule = draw(st.sampled_from(allowed or list(cls.discretizations)))
    H = draw(st.integers(1, 3))
    seed = draw(seeds)
    if name == "rglru":
        model = RGLRU(H, H * draw(st.integers(1, 2)), seed=seed)
    elif name == "s7":
        model = S7(H, 2 * draw(st.integers(1, 3)), discretization=rule, seed=seed)
    else:
        model = Mamba(H, draw(st.integers(1, 4)), discretization=rule, seed=seed, expand=draw(st.sampled_from([1, 2])))
    T = draw(st.integers(1, 12))
    u = np.random.default_rng(draw(seeds)).normal(size=(T, H))
    tau = None
    if rule == "async" or draw(st.booleans()):
        tau = draw(gaps(T))
    return model, u, tau


def curves(fig):
    """{gid: (xdata, ydata)} of every curve with a gid (the curves drawn from data)."""
    out = {}
    for ax in fig.axes:
        for line in ax.lines:
            gid = line.get_gid()
            if gid is not None:
                assert gid not in out, f"two curves share the gid {gid}"
                out[gid] = (np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float))
    return out


def check_response_curves(fig, plotted, impulse_of: dict, frequency_of: dict):
    """Every response curve of ``fig`` against the model behind its key; returns how many were checked."""
    checked = 0
    for gid, (x, y) in curves(fig).items():
        parts = gid.split("|")
        if len(parts) != 4:
            continue
        key, o, i, quantity = parts[0], int(parts[1]), int(parts[2]), parts[3]
        if quantity == "impulse":
            h = impulse_of[key]
            assert_close(x, np.arange(h.shape[0]), "float64", f"{gid} lags")
            assert_close(y, h[:, o, i], "float64", gid)
        else:
            H = frequency_of[key][:, o, i]
            assert_close(x, plotted.w, "float64", f"{gid} frequencies")
            expected = 20 * np.log10(np.abs(H)) if quantity == "magnitude_db" else np.degrees(np.unwrap(np.angle(H)))
            assert quantity in ("magnitude_db", "phase_deg"), gid
            assert_close(y, expected, "float64", gid)
        checked += 1
    return checked


def assert_same_set(actual, expected, what):
    """Equal as sets of complex numbers: every point of each has its nearest neighbour in the other within
    tolerance. (Sets, not multisets: a realization may repeat a pole, e.g. the generic 2x2-block
    realization of a real eigenvalue read through a real part.)"""
    actual, expected = np.asarray(actual).ravel(), np.asarray(expected).ravel()
    assert actual.size and expected.size, f"{what}: no poles"
    distance = np.abs(actual[:, None] - expected[None, :])  # (A, E)
    assert_close(actual, expected[np.argmin(distance, axis=1)], "complex128", f"{what} (plotted -> expected)")
    assert_close(actual[np.argmin(distance, axis=0)], expected, "complex128", f"{what} (expected -> plotted)")


def is_png(path: Path) -> bool:
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        return False
    image = matplotlib.image.imread(path)
    return image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50 and float(np.ptp(image)) > 0


# ------------------------------------------------------------------------------------------------
# LTI plots
# ------------------------------------------------------------------------------------------------


@given(lti_models(), st.integers(1, 40))
def test_impulse_plot_draws_the_models_impulse_response(setup, L):
    _, models = setup
    fig, plotted = figures.plot_impulse_response(models, L)
    impulse = {rule: m.impulse_response(L) for rule, m in models.items()}
    for rule in models:
        assert_close(plotted.arrays[rule], impulse[rule], "float64", f"{rule} impulse response")
    assert check_response_curves(fig, plotted, impulse, {}) >= len(models)


@given(lti_models(), st.integers(2, 40), st.booleans())
def test_frequency_plot_draws_the_models_frequency_response(setup, n_freq, log):
    _, models = setup
    fig, plotted = figures.plot_frequency_response(models, n_freq, log_frequency=log)
    assert plotted.w.shape == (n_freq,) and plotted.w[0] == 0.0 and abs(plotted.w[-1] - np.pi) < 1e-15
    assert np.all(np.diff(plotted.w) > 0)
    response = {rule: m.frequency_response(plotted.w) for rule, m in models.items()}
    for rule in models:
        assert_close(plotted.arrays[rule], response[rule], "complex128", f"{rule} frequency response")
    # a magnitude and a phase curve per drawn channel
    assert check_response_curves(fig, plotted, {}, response) >= 2 * len(models)


@given(lti_models())
def test_poles_plot_draws_the_eigenvalues_of_the_scipy_realization(setup):
    _, models = setup
    fig, plotted = figures.plot_poles(models)
    drawn = curves(fig)
    for rule, model in models.items():
        expected = np.linalg.eigvals(model.to_dlti().A)  # the real system scipy sees
        assert_same_set(plotted.arrays[rule], expected, f"{rule} poles")
        x, y = drawn[f"{rule}|poles"]
        assert_close(x + 1j * y, plotted.arrays[rule], "complex128", f"{rule} drawn poles")
        angle, radius = drawn[f"{rule}|pole_radius"]
        assert_close(radius * np.exp(1j * angle), plotted.arrays[rule], "complex128", f"{rule} (angle, |p|)")
        assert np.all(np.abs(plotted.arrays[rule]) < 1.0), "a stable model has its poles inside the unit circle"


def s4d_continuous_response(model: S4D, Omega: np.ndarray) -> np.ndarray:
    """G(i Omega) + D of S4D's continuous system, written out: each stored mode and its conjugate partner,
    G_h(s) = sum_n C B / (s - lambda) + conj(C B) / (s - conj(lambda)); ``(W, H, H)``, diagonal."""
    p = model.params
    lam = model.eigenvalues()  # (H, N/2)
    CB = p.C * p.B  # (H, N/2)
    s = 1j * Omega[:, None, None]  # (W, 1, 1)
    g = np.sum(CB / (s - lam) + np.conj(CB) / (s - np.conj(lam)), axis=-1) + p.D  # (W, H)
    out = np.zeros((Omega.size, model.d_model, model.d_model), dtype=complex)
    out[:, np.arange(model.d_model), np.arange(model.d_model)] = g
    return out


@given(seeds, st.integers(1, 3), st.floats(0.05, 2.0), st.integers(2, 60))
def test_comparison_continuous_curve_matches_the_continuous_transfer_function(seed, d_model, dt, n_freq):
    fig, plotted = figures.plot_discretization_comparison("s4d", d_model=d_model, d_state=6, seed=seed, dt=dt,
                                                          n_freq=n_freq)
    w = plotted.w
    model = figures.set_step(S4D(d_model, 6, discretization="zoh", seed=seed), dt)
    # the curve drawn as "continuous" is G(i omega / dt) + D, computed by the figure through the warping identity
    assert_close(plotted.arrays["continuous"], s4d_continuous_response(model, w / dt), "complex128",
                 "continuous response")
    response = {"continuous": plotted.arrays["continuous"]}
    for rule in ("zoh", "bilinear", "dirac"):
        m = figures.set_step(S4D(d_model, 6, discretization=rule, seed=seed), dt)
        response[rule] = m.frequency_response(w)
        assert_close(plotted.arrays[rule], response[rule], "complex128", f"{rule} response")
        assert_same_set(plotted.arrays[f"{rule}:poles"], np.linalg.eigvals(m.to_dlti().A), f"{rule} poles")
    D = np.diag(figures.set_step(S4D(d_model, 6, seed=seed), dt).params.D)  # (H, H): the skip, not rescaled
    response["dirac*dt"] = dt * (response["dirac"] - D) + D  # dirac samples h(t): its dynamic part drawn times dt
    assert check_response_curves(fig, plotted, {}, response) == 2 * 4


@given(seeds, st.integers(1, 3), st.floats(0.02, 1.0))
def test_comparison_plotted_values_at_omega_0_are_the_dc_gains(seed, d_model, dt):
    """At omega = 0 the magnitude panel shows, for channel 0: zoh and bilinear at the continuous DC gain
    G(0) + D = -2 Re(sum C B / lambda) + D (both keep it); dirac drawn as dt (sum_l K_l) + D with the skip D not
    rescaled -- the left Riemann sum of the area G(0) = integral of h, plus D (reference/README.md §dirac)."""
    fig, plotted = figures.plot_discretization_comparison("s4d", d_model=d_model, d_state=6, seed=seed, dt=dt,
                                                          n_freq=16)
    model = figures.set_step(S4D(d_model, 6, discretization="dirac", seed=seed), dt)
    p = model.params
    lam, CB = model.eigenvalues()[0], p.C[0] * p.B[0]  # channel 0: (N/2,) each
    dc = -2 * np.sum(CB / lam).real + p.D[0]  # G(0) + D from the parameters
    L = int(np.ceil(60 / (dt * 0.5)))  # |a_bar|^L = e^{-L dt / 2} < e^{-30}: the tail of the sum is negligible
    riemann = dt * model.kernel(L)[:, 0, 0].sum() + p.D[0]  # dt sum_l h(l dt) + D, by the kernel itself
    drawn = curves(fig)
    assert plotted.w[0] == 0.0
    for rule, expected in (("zoh", dc), ("bilinear", dc), ("continuous", dc), ("dirac*dt", riemann)):
        x, mag_db = drawn[f"{rule}|0|0|magnitude_db"]
        assert x[0] == 0.0
        assert_close(10 ** (mag_db[0] / 20), abs(expected), "float64", f"{rule}: plotted |H| at omega = 0")


def test_comparison_warping_guide_is_folded_and_the_legend_names_only_the_requested_rules():
    for rules in (["zoh"], ["bilinear"], ["dirac", "bilinear"], ["zoh", "bilinear", "dirac"]):
        fig, _ = figures.plot_discretization_comparison("s4d", rules, n_freq=16)
        ax_mag, ax_warp = fig.axes[0], fig.axes[3]
        for ax in (ax_mag, ax_warp, fig.axes[2]):
            labels = [t.get_text() for t in ax.get_legend().get_texts()]
            named = {r for r in ("zoh", "bilinear", "dirac") if any(r in lab for lab in labels)}
            assert named == set(rules), (rules, labels)
        if "zoh" in rules or "dirac" in rules:
            (guide,) = [ln for ln in ax_warp.get_lines() if "folded" in ln.get_label()]
            x, y = guide.get_data()
            assert np.all((x >= 0) & (x <= np.pi + 1e-12)), "the zoh guide leaves [0, pi]"
            assert y.max() > np.pi  # it covers analog frequencies above Nyquist, folded back
            assert_close(x, np.abs(np.angle(np.exp(1j * y))), "float64", "zoh guide: the folded pole angle")


def test_comparison_refuses_a_time_varying_model_and_an_unknown_rule():
    with pytest.raises(ValueError, match="LTI model"):
        figures.plot_discretization_comparison("mamba")
    with pytest.raises(ValueError, match="valid choices: zoh, bilinear, dirac"):
        figures.plot_discretization_comparison("s4d", ["async"])


def test_lti_plots_refuse_ltv_models_and_ltv_plots_refuse_lti_models():
    with pytest.raises(ValueError, match="time-varying"):
        figures.plot_impulse_response(Mamba(2, 4))
    with pytest.raises(ValueError, match="time-invariant"):
        figures.plot_frozen_responses(S4D(2, 4))
    with pytest.raises(ValueError, match="LTV model"):
        figures.plot_async_example(S4D(2, 4))


# ------------------------------------------------------------------------------------------------
# LTV plots
# ------------------------------------------------------------------------------------------------


@given(ltv_setups(), st.integers(1, 20), st.data())
def test_frozen_plot_draws_the_frozen_systems_responses(setup, L, data):
    model, u, tau = setup
    times = data.draw(st.lists(st.integers(0, u.shape[0] - 1), min_size=1, max_size=3, unique=True))
    fig, plotted = figures.plot_frozen_responses(model, u, times, L=L, integration_timesteps=tau, n_freq=17)
    impulse, frequency = {}, {}
    for t in times:
        frozen = model.frozen_system(u, t, integration_timesteps=tau)
        key = f"{model.discretization}@{t}"
        # the state part: the skip D (token-independent; Mamba's D = 1 hides the rest) is not drawn
        impulse[f"{key}:impulse"] = frozen.impulse_response(L) - np.eye(L)[:, :1, None] * frozen.D
        frequency[f"{key}:frequency"] = frozen.frequency_response(plotted.w) - frozen.D
        assert_close(plotted.arrays[f"{key}:impulse"], impulse[f"{key}:impulse"], "float64", f"{key} impulse")
        assert_close(plotted.arrays[f"{key}:frequency"], frequency[f"{key}:frequency"], "complex128", key)
        assert_same_set(plotted.arrays[f"{key}:poles"], np.linalg.eigvals(frozen.to_dlti().A), f"{key} poles")
    assert check_response_curves(fig, plotted, impulse, frequency) == 2 * len(times)


@given(seeds, st.sampled_from(S5.discretizations), st.integers(8, 40))
def test_irregular_sampling_plot_draws_s5_with_the_gaps_and_equals_the_held_input_under_zoh(seed, rule, n):
    model = S5(2, 4, discretization=rule, seed=seed)
    fig, plotted = figures.plot_irregular_sampling(model, L_fine=3 * n, n_events=n, seed=seed)
    a = plotted.arrays
    assert np.all(a["gaps"] >= 1) and a["gaps"].sum() == a["times"][-1] + 1
    assert_close(a["samples"], a["signal"][a["times"]], "float64", "samples")
    assert_close(a["irregular"], model.forward(a["samples"], integration_timesteps=a["gaps"]), "float64", "irregular")
    assert_close(a["as regular"], model.forward(a["samples"]), "float64", "as regular")
    held = np.repeat(a["samples"], a["gaps"].astype(int), axis=0)  # u_k over the gap before event k
    assert_close(a["held:fine"], model.forward(held), "float64", "fine-grid run")
    if rule == "zoh":  # gaps compose exactly (async injects one nominal step per event instead)
        assert_close(a["irregular"], a["held:fine"][a["times"]], "float64", "irregular vs held (zoh)")
    drawn = curves(fig)
    for name in ("irregular", "as regular", "samples"):
        x, y = drawn[f"{name}|0"]
        assert_close(x, a["times"].astype(float), "float64", f"{name} times")
        assert_close(y, a[name][:, 0], "float64", f"{name} curve")
    with pytest.raises(ValueError, match="S5"):
        figures.plot_irregular_sampling(S4D(2, 4))


def test_gallery_has_the_irregular_s5_figure_and_no_time_varying_rule_in_lti_figures():
    names = [name for name, _ in figures.gallery_figures(["s5"])]
    assert "s5_irregular.png" in names
    fig = dict(figures.gallery_figures(["s5"]))["s5_frequency.png"]()
    titles = [ax.get_title() for ax in fig.axes]
    assert not any("async" in t for t in titles) and any("zoh" in t for t in titles), titles


@given(ltv_setups(rules=["async", "zoh", "rglru"]))
def test_async_plot_draws_the_models_outputs_on_irregular_times(setup):
    model, u, _ = setup
    tau = figures.default_gaps(u.shape[0], seed=3)
    fig, plotted = figures.plot_async_example(model, u, tau)
    y_async = model.forward(u, integration_timesteps=tau)
    y_regular = model.forward(u, integration_timesteps=np.ones(u.shape[0]))
    assert_close(plotted.arrays["async"], y_async, "float64", "output with the real gaps")
    assert_close(plotted.arrays["regular"], y_regular, "float64", "output with unit gaps")
    drawn = curves(fig)
    times = np.cumsum(tau)
    for name, y in (("async", y_async), ("regular", y_regular), ("input", u)):
        x, v = drawn[f"{name}|0"]
        assert_close(x, times, "float64", f"{name} times")
        assert_close(v, y[:, 0], "float64", f"{name} curve")
    decay = [np.mean(np.abs(model.frozen_system(u, t, integration_timesteps=tau).A_bar)) for t in range(len(tau))]
    assert_close(drawn["decay"][1], np.array(decay), "float64", "decay per event")


# ------------------------------------------------------------------------------------------------
# frozen_system (the reference helper of the LTV models that the figures use)
# ------------------------------------------------------------------------------------------------


def conv_zero_history(x, weight, bias):
    """Causal depthwise convolution from zeros: y_t = bias + sum_j weight[j] x_{t-W+1+j}; weight (W, D)."""
    W, (L, D) = weight.shape[0], x.shape
    padded = np.concatenate([np.zeros((W - 1, D)), x])  # (W-1+L, D): padded[t + j] = x_{t-W+1+j}
    return bias + sum(weight[j] * padded[j : j + L] for j in range(W))  # (L, D)


def mamba_gates(model: Mamba, u):
    """The SSM input x and the gates (dt, B_t, C_t) of every token, from the documented equations."""
    p, D, R, N = model.params, model.d_inner, model.dt_rank, model.d_state
    x = (u @ p.in_proj_weight.T)[:, :D]  # (T, D)
    x = conv_zero_history(x, p.conv1d_weight.T, p.conv1d_bias)  # (T, D)
    x = x * sigmoid(x)  # SiLU
    x_dbl = x @ p.x_proj_weight.T  # (T, R + 2N)
    dt = softplus(x_dbl[:, :R] @ p.dt_proj_weight.T + p.dt_proj_bias)  # (T, D)
    return x, dt, x_dbl[:, R : R + N], x_dbl[:, R + N :]


def rglru_gates(model: RGLRU, u, tau):
    """The RG-LRU input x and (a_t, input weight) of every token (one document from t = 0)."""
    p, heads = model.params, model.num_heads
    x = conv_zero_history(u @ p.linear_x_weight.T + p.linear_x_bias, p.conv_1d_weight, p.conv_1d_bias)  # (T, D)

    def block_diagonal(v, weight, bias):
        return (np.einsum("thi,hij->thj", v.reshape(len(v), heads, -1), weight) + bias).reshape(v.shape)

    r = sigmoid(block_diagonal(x, p.a_gate_weight, p.a_gate_bias))  # (T, D)
    i = sigmoid(block_diagonal(x, p.input_gate_weight, p.input_gate_bias))  # (T, D)
    log_a = -model.c * r * softplus(p.a_param) * (1.0 if tau is None else tau[:, None])  # (T, D)
    a, weight = np.exp(log_a), np.sqrt(1.0 - np.exp(2 * log_a)) * i  # (T, D)
    a[0], weight[0] = 0.0, i[0]  # the document starts at t = 0: nothing carried, no normalization
    return x, a, weight


def s7_gates(model: S7, u_t, tau_t):
    """(a_bar, B_bar, C_t) of one token from the documented equations and ``reference.discretize``."""
    p, R, P, H = model.params, model.dt_rank, model.local_P, model.d_model
    x_dbl = u_t @ p.x_proj_kernel + p.x_proj_bias
    dt = model.step_rescale * softplus(x_dbl[:R] @ p.step_proj_kernel + p.step_proj_bias)  # (P,)
    B_raw = x_dbl[R : R + 2 * P * H].reshape(P, H, 2)
    C_raw = x_dbl[R + 2 * P * H :].reshape(H, P, 2)
    Lam = p.Lambda_re + 1j * p.Lambda_im  # (P,)
    taus = None if tau_t is None else np.array([tau_t])
    a_bar, B_bar = reference.discretize(Lam, B_raw[..., 0] + 1j * B_raw[..., 1], dt, model.discretization,
                                        integration_timesteps=taus)
    if taus is not None:
        a_bar, B_bar = a_bar[0], B_bar[0]  # the single event's time axis
    return a_bar, B_bar, C_raw[..., 0] + 1j * C_raw[..., 1]


@given(ltv_setups(), st.integers(1, 12), st.data())
def test_frozen_system_impulse_response_equals_the_recurrence_with_frozen_gates(setup, L, data):
    model, u, tau = setup
    t = data.draw(st.integers(0, u.shape[0] - 1))
    h = model.frozen_system(u, t, integration_timesteps=tau).impulse_response(L)  # (L, out, in)
    n_in = h.shape[2]
    impulses = np.zeros((n_in, L, n_in))  # one batch row per input channel: a unit impulse at lag 0
    impulses[np.arange(n_in), 0, np.arange(n_in)] = 1.0
    if isinstance(model, Mamba):
        _, dt, B_t, C_t = mamba_gates(model, u)
        hold = lambda v: np.broadcast_to(v[t], (n_in, L) + v.shape[1:])  # noqa: E731
        y = reference.selective_scan(
            impulses, hold(dt), -np.exp(model.params.A_log), hold(B_t), hold(C_t), model.params.D,
            method=model.discretization, integration_timesteps=None if tau is None else np.full((n_in, L), tau[t]),
        )  # (in, L, out)
    elif isinstance(model, RGLRU):
        _, a, weight = rglru_gates(model, u, tau)
        state, ys = np.zeros((n_in, n_in)), []
        for k in range(L):
            state = a[t] * state + weight[t] * impulses[:, k]  # (in, D)
            ys.append(state)
        y = np.stack(ys, axis=1)  # (in, L, D)
    else:
        a_bar, B_bar, C_t = s7_gates(model, u[t], None if tau is None else tau[t])
        state, ys = np.zeros((n_in, model.local_P), complex), []
        for k in range(L):
            state = a_bar * state + impulses[:, k] @ B_bar.T  # (in, P)
            ys.append(model.readout_scale * (state @ C_t.T).real + model.params.D * impulses[:, k])
        y = np.stack(ys, axis=1)  # (in, L, H)
    assert_close(h, np.transpose(y, (1, 2, 0)), "float64", f"{type(model).__name__} {model.discretization} at t={t}")


@given(ltv_setups(), st.data())
def test_frozen_system_first_step_is_what_forward_does_at_token_t(setup, data):
    model, u, tau = setup
    t = data.draw(st.integers(0, u.shape[0] - 1))
    frozen = model.frozen_system(u, t, integration_timesteps=tau)

    def run(n):  # the model's state after the first n tokens (forward from the zero state)
        if n == 0:
            return model.initial_state(1)
        return model.forward(u[None, :n], integration_timesteps=None if tau is None else tau[None, :n],
                             return_state=True)[1]

    before, after = run(t), run(t + 1)
    if isinstance(model, Mamba):
        x_t = mamba_gates(model, u)[0][t]  # (D,)
        expected = frozen.A_bar * before.ssm_state.reshape(-1) + frozen.B_bar @ x_t  # (D*N,)
        assert_close(expected, after.ssm_state.reshape(-1), "float64", "Mamba ssm state after token t")
    elif isinstance(model, RGLRU):
        x_t = rglru_gates(model, u, tau)[0][t]  # (D,)
        expected = frozen.A_bar * before.ssm_state[0] + frozen.B_bar @ x_t
        assert_close(expected, after.ssm_state[0], "float64", "RG-LRU state after token t")
    else:
        state = frozen.A_bar * before[0] + frozen.B_bar @ u[t]  # (P,)
        assert_close(state, after[0], "complex128", "S7 state after token t")
        y_t = model.forward(u[None, : t + 1], integration_timesteps=None if tau is None else tau[None, : t + 1])
        assert_close(frozen.read(frozen.C @ state) + frozen.D @ u[t], y_t[0, t], "float64", "S7 output at t")


def test_frozen_system_rejects_a_bad_token_index_and_a_batch():
    model, u = S7(2, 4), np.ones((5, 2))
    for t in (-1, 5, 1.5, True):
        with pytest.raises(ValueError, match="^t: "):
            model.frozen_system(u, t)
    with pytest.raises(ValueError, match="^u: "):
        Mamba(2, 4).frozen_system(np.ones((1, 5, 2)), 0)
    with pytest.raises(ValueError, match="integration_timesteps"):
        RGLRU(2).frozen_system(u, 0, integration_timesteps=np.zeros(5))


# ------------------------------------------------------------------------------------------------
# Command line and gallery
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["impulse", "--model", "s4d", "--discretization", "zoh", "bilinear"],
        ["frequency", "--model", "s5", "--dt", "0.05", "--d-state", "4"],
        ["poles", "--model", "lru", "--discretization", "native", "zoh"],
        ["compare", "--model", "centaurus", "--dt", "0.3"],
        ["impulse", "--model", "mamba", "--discretization", "mamba", "async", "--times", "3", "9", "--length", "16"],
        ["frequency", "--model", "rglru", "--length", "16"],
        ["async", "--model", "s7", "--discretization", "async", "--length", "16"],
    ],
    ids=lambda argv: "-".join(argv[:3:2]),
)
def test_cli_writes_a_valid_png(argv, tmp_path, capsys):
    out = tmp_path / "sub" / "f.png"
    assert figures.main([*argv, "--out", str(out)]) == 0
    assert is_png(out)
    printed = capsys.readouterr().out.strip()
    assert printed.startswith(f"wrote {out}") and len(printed.splitlines()) == 1, printed


def test_cli_out_without_extension_writes_and_prints_the_same_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert figures.main(["poles", "--model", "s4d", "--out", "noext"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noext.png"] and is_png(tmp_path / "noext.png")
    assert capsys.readouterr().out.startswith("wrote noext.png")


def test_cli_says_which_channel_pairs_it_drew(tmp_path, capsys):
    assert figures.main(["impulse", "--model", "s4d", "--d-model", "64", "--out", str(tmp_path / "f.png")]) == 0
    printed = capsys.readouterr().out
    assert "0<-0, 1<-1, 2<-2, 3<-3 of d_model = 64" in printed, printed
    assert figures.main(["frequency", "--model", "mamba", "--d-model", "3", "--out", str(tmp_path / "g.png")]) == 0
    assert "0<-0 of d_model = 3" in capsys.readouterr().out


@pytest.mark.parametrize("kind, valid, refused", [("compare", LTI, LTV), ("async", LTV, LTI)])
def test_cli_compare_and_async_list_only_the_models_they_take(kind, valid, refused, capsys):
    with pytest.raises(SystemExit):
        figures.main([kind, "--help"])
    model_help = " ".join(capsys.readouterr().out.split()).split("--model MODEL")[-1].split("--")[0]
    assert model_help.split("one of:")[-1].strip().split(", ") == list(valid), model_help
    assert figures.main([kind, "--model", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.split("valid choices: ")[-1].split(", ") == list(valid), err


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["impulse", "--model", "s4d", "--dt", "-1"], "--dt"),
        (["frequency", "--model", "s5", "--dt", "0"], "--dt"),
        (["impulse", "--model", "s4d", "--length", "0"], "--length"),
        (["impulse", "--model", "mamba", "--length", "-3"], "--length"),
        (["impulse", "--model", "s4d", "--d-model", "0"], "--d-model"),
        (["impulse", "--model", "s4d", "--d-state", "3"], "--d-state"),
    ],
)
def test_cli_names_the_flag_it_rejects(argv, flag, capsys, tmp_path):
    assert figures.main([*argv, "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"python -m figures: error: {flag}:"), err


def test_gallery_of_an_installed_copy_writes_into_the_current_directory_and_says_where(tmp_path, capsys, monkeypatch):
    installed = tmp_path / "venv" / "lib" / "python3.12" / "site-packages" / "figures"
    assert figures.default_gallery_dir(installed, cwd=tmp_path) == tmp_path / "gallery"
    assert figures.default_gallery_dir() == Path(figures.GALLERY_DIR)  # this source checkout: the committed gallery
    monkeypatch.setattr(figures.cli, "__file__", str(installed / "cli.py"))
    monkeypatch.chdir(tmp_path)
    assert figures.main(["gallery", "--model", "lru"]) == 0
    expected = sorted(name for name, _ in figures.gallery_figures(["lru"]))
    assert sorted(p.name for p in (tmp_path / "gallery").iterdir()) == expected
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"{len(expected)} figures in {tmp_path / 'gallery'}"), last
    assert figures.main(["gallery", "--model", "lru", "--out-dir", "pics"]) == 0
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == expected


def test_cli_gallery_writes_every_figure_with_one_progress_line_each(tmp_path, capsys):
    assert figures.main(["gallery", "--out", str(tmp_path), "--model", "s4d", "rglru"]) == 0
    expected = [name for name, _ in figures.gallery_figures(["s4d", "rglru"])]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected) and len(expected) == 6
    assert all(is_png(tmp_path / name) for name in expected)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(expected) + 1
    for k, name in enumerate(expected):
        assert lines[k].startswith(f"[{k + 1:2d}/{len(expected)}]") and name in lines[k]


@pytest.mark.parametrize(
    "argv, choices",
    [
        (["impulse", "--model", "s4x"], list(figures.MODELS)),
        (["frequency", "--model", "s4d", "--discretization", "zoh", "async"], ["zoh", "bilinear", "dirac"]),
        (["poles", "--model", "mamba", "--discretization", "native"], list(Mamba.discretizations)),
        (["compare", "--model", "s7"], list(figures.LTI_MODELS)),
        (["gallery", "--model", "nope"], list(figures.MODELS)),
        (["spectrum", "--model", "s4d"], ["impulse", "frequency", "poles", "compare", "async", "gallery"]),
    ],
    ids=["model", "discretization", "ltv-discretization", "compare-ltv", "gallery-model", "kind"],
)
def test_cli_bad_choice_exits_nonzero_with_one_line_listing_the_choices(argv, choices, capsys):
    assert figures.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0], captured.err
    for choice in choices:
        assert choice in lines[0], f"{choice!r} missing from: {lines[0]}"
    assert "Traceback" not in captured.err and captured.out == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["poles", "--model", "s4d", "--times", "3"],
        ["frequency", "--model", "s5", "--length", "10"],
        ["impulse", "--model", "s4d", "--d-state", "3"],
        ["impulse", "--model", "mamba", "--times", "99", "--length", "16"],
        ["async", "--model", "rglru", "--dt", "-1"],
    ],
    ids=["times-on-lti", "length-on-frequency", "odd-d-state", "time-outside-input", "negative-gap"],
)
def test_cli_bad_option_value_exits_nonzero_with_one_line(argv, capsys, tmp_path):
    assert figures.main([*argv, "--out", str(tmp_path / "x.png")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m figures: error: "), captured.err
    assert "Traceback" not in captured.err and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    "argv",
    [["impulse", "--model", "nope"], ["impulse", "--model", "s4d", "--discretization", "async"]],
    ids=["model", "discretization"],
)
def test_python_dash_m_figures_bad_argument_exits_nonzero_without_traceback(argv, tmp_path):
    run = subprocess.run([sys.executable, "-m", "figures", *argv, "--out", str(tmp_path / "x.png")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "valid choices" in lines[0] and "Traceback" not in run.stderr, run.stderr
    assert not (tmp_path / "x.png").exists()


def test_committed_gallery_is_complete_and_small():
    gallery = Path(figures.GALLERY_DIR)
    expected = {name for name, _ in figures.gallery_figures()}
    present = {p.name for p in gallery.glob("*.png")}
    assert expected == present, f"missing {sorted(expected - present)}, extra {sorted(present - expected)}"
    assert all((gallery / name).read_bytes().startswith(PNG_SIGNATURE) for name in expected)
    assert sum((gallery / name).stat().st_size for name in expected) < 5 * 2**20


def test_frequency_grid_runs_from_zero_to_pi():
    for log in (True, False):
        w = frequency_grid(9, log)
        assert w[0] == 0.0 and abs(w[-1] - np.pi) < 1e-15 and np.all(np.diff(w) > 0)
    with pytest.raises(ValueError, match="n_freq"):
        frequency_grid(1)
