"""The plots: impulse and frequency responses, poles, a comparison of discretizations, and the frozen
systems of the selective (LTV) models.

Every ``plot_*`` function returns ``(fig, plotted)``: a matplotlib ``Figure`` (Agg, no screen; save it
with ``fig.savefig(path)``) and a ``Plotted`` record of the arrays it drew, so that a test can check that
the picture shows the model's own ``impulse_response`` / ``frequency_response`` and nothing else.

Curve protocol. Every curve drawn from data carries a matplotlib ``gid`` of the form

    "<key>|<out>|<in>|<quantity>"      quantity: impulse, magnitude_db, phase_deg
    "<key>|poles"                      (x, y) = (Re, Im) of the poles
    "<key>|pole_radius"                (x, y) = (angle, |pole|) of the poles

where ``plotted.arrays[key]`` is the array the curve comes from: an impulse response ``(L, H_out, H_in)``
(drawn as ``h[:, out, in]`` against ``plotted.lags``), a frequency response ``(W, H_out, H_in)`` (drawn as
20 log10 |H[:, out, in]| and as its unwrapped phase in degrees, against ``plotted.w``), or a 1-D array of
poles. Keys are the discretization names (``"zoh"``, ...), with ``"@t"`` and ``":impulse"`` /
``":frequency"`` / ``":poles"`` suffixes for the frozen systems of an LTV model at token t.

Glossary: ``w`` omega, the angular frequency in radians per sample, 0..pi; ``lags`` l = 0..L-1;
``dt`` Delta, the step; ``Omega`` an analog (continuous-time) frequency, Omega Delta = omega for zoh.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
from matplotlib.figure import Figure

import reference
from reference._checks import as_array, positive_int
from reference.models import LRU, RGLRU, S4, S4D, S5, S7, Centaurus, Mamba
from reference.models.lti._base import LTIModel
from reference.models.ltv._base import LTVModel

__all__ = [
    "LTI_MODELS",
    "LTV_MODELS",
    "MODELS",
    "Plotted",
    "default_gaps",
    "default_input",
    "make_model",
    "plot_async_example",
    "plot_discretization_comparison",
    "plot_frequency_response",
    "plot_frozen_responses",
    "plot_impulse_response",
    "plot_irregular_sampling",
    "plot_poles",
    "poles",
    "set_step",
]

#: The models by their command-line names, LTI first.
LTI_MODELS = {"s4": S4, "s4d": S4D, "s5": S5, "lru": LRU, "centaurus": Centaurus}
LTV_MODELS = {"mamba": Mamba, "rglru": RGLRU, "s7": S7}
MODELS = {**LTI_MODELS, **LTV_MODELS}

#: d_state used by the figures when none is given: small systems, readable plots (RG-LRU: its width = d_model).
DEFAULT_D_STATE = {"s4": 8, "s4d": 8, "s5": 8, "lru": 8, "centaurus": 2, "mamba": 8, "rglru": None, "s7": 8}

COLUMN_WIDTH, ROW_HEIGHT = 3.3, 2.3  # inches per panel


@dataclass(frozen=True)
class Plotted:
    """The arrays a figure draws (module docstring: curve protocol)."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    lags: np.ndarray | None = None
    w: np.ndarray | None = None


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------


def make_model(name: str, discretization: str | None = None, *, d_model: int = 2, d_state=None, seed: int = 0):
    """``MODELS[name](d_model, d_state, discretization=discretization, seed=seed)``; ``d_state=None`` takes the figures'
    small default (``DEFAULT_D_STATE``). Raises ``ValueError`` for an unknown name."""
    if name not in MODELS:
        raise ValueError(f"model: unknown model {name!r}; valid choices: {', '.join(MODELS)}")
    if d_state is None:
        d_state = DEFAULT_D_STATE[name]
    return MODELS[name](d_model, d_state, discretization=discretization, seed=seed)


def set_step(model: LTIModel, dt: float) -> LTIModel:
    """Give every state of an LTI model the same step ``dt`` (its ``log_dt`` / ``log_step`` parameter), in
    place; returns the model. A uniform step is what makes one analog frequency axis Omega = omega / dt."""
    if not isinstance(model, LTIModel):
        raise ValueError(f"dt: only an LTI model has a step to set, got {type(model).__name__}")
    if isinstance(dt, bool) or not isinstance(dt, (int, float, np.integer, np.floating)) or not 0 < dt < np.inf:
        raise ValueError(f"dt: expected a finite step > 0, got {dt!r}")
    if model.discretization not in reference.DISCRETIZATIONS:
        raise ValueError(
            f"dt: {type(model).__name__}'s rule {model.discretization!r} has no step; "
            f"use one of {[d for d in model.discretizations if d in reference.DISCRETIZATIONS]}"
        )
    for name in ("log_dt", "log_step"):
        if hasattr(model.params, name):
            setattr(model.params, name, np.full_like(getattr(model.params, name), np.log(dt)))
            return model
    raise ValueError(f"dt: {type(model).__name__} has no log_dt / log_step parameter")  # pragma: no cover


def poles(system: reference.DiscreteSSM) -> np.ndarray:
    """The poles of the real input-output system: the eigenvalues of A_bar, with their conjugates added
    when a complex system is read through a real part (a stored half, S4D / S5, or unpaired modes, LRU /
    Centaurus) -- the poles of its real realization ``to_dlti``. A system that already holds both members
    of every pair (S4's paired A_bar) is returned as it is."""
    eig = system.A_bar if system.diagonal else np.linalg.eigvals(system.A_bar)  # (S,)
    if system.readout == "plain" or not np.iscomplexobj(eig):
        return eig
    scale = max(1.0, float(np.max(np.abs(eig))))
    gap = np.min(np.abs(eig[:, None] - np.conj(eig)[None, :]), axis=1)  # (S,): distance to the nearest conjugate
    if np.all(gap <= 1e-9 * scale):
        return eig  # already closed under conjugation
    return np.concatenate([eig, np.conj(eig)])  # (2S,)


def default_input(L: int, H: int, seed: int = 0) -> np.ndarray:
    """A given input for the LTV figures: white noise with a louder stretch a third of the way in, ``(L, H)``."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(L, H))  # (L, H)
    u[L // 3 : L // 3 + max(1, L // 16)] *= 3.0  # (L, H): a louder stretch, so the gates visibly move
    return u


def default_gaps(L: int, seed: int = 0, mean: float = 1.0) -> np.ndarray:
    """Irregular event gaps tau > 0 with the given mean, ``(L,)``: exponential, clipped to [0.05, 6] * mean."""
    rng = np.random.default_rng(seed + 1)
    return mean * np.clip(rng.exponential(1.0, size=L), 0.05, 6.0)


def _as_reference(model):
    """A reference model as it is; a fast (torch) model as its reference twin with its current parameters
    (``model.to_reference()``, float64), so that a trained fast model is plotted from what it holds now."""
    if not isinstance(model, (LTIModel, LTVModel)) and callable(getattr(model, "to_reference", None)):
        return model.to_reference()
    return model


def _as_models(models) -> dict[str, object]:
    """A model, a sequence of models (labelled by discretization) or a mapping label -> model; fast models are
    converted by ``_as_reference``."""
    if isinstance(models, Mapping):
        out = dict(models)
    elif isinstance(models, Sequence) and not isinstance(models, str):
        out = {m.discretization: m for m in models}
        if len(out) != len(models):
            raise ValueError("models: two models share a discretization; pass a mapping label -> model")
    else:
        out = {models.discretization: models}
    if not out:
        raise ValueError("models: expected at least one model")
    out = {label: _as_reference(m) for label, m in out.items()}
    for label, m in out.items():
        if not isinstance(m, (LTIModel, LTVModel)):
            raise ValueError(f"models: {label!r} is not a reference or fast model, got {type(m).__name__}")
    return out


def _lti_only(models: dict, what: str, instead: str) -> None:
    for m in models.values():
        if not isinstance(m, LTIModel):
            raise ValueError(
                f"models: {type(m).__name__} is time-varying (LTV) and has no single {what}; use {instead}"
            )


def _channels(model, channels) -> list[tuple[int, int]]:
    """(out, in) pairs to draw: by default the diagonal pairs of the first (up to) 4 channels."""
    sys = model.ssm() if isinstance(model, LTIModel) else None
    H_out, H_in = (sys.C.shape[0], sys.B_bar.shape[1]) if sys is not None else (model.d_model, model.d_model)
    if channels is None:
        return [(h, h) for h in range(min(H_out, H_in, 4))]
    pairs = [tuple(int(v) for v in c) for c in channels]
    for o, i in pairs:
        if not (0 <= o < H_out and 0 <= i < H_in):
            raise ValueError(f"channels: pair {(o, i)} is outside (H_out, H_in) = {(H_out, H_in)}")
    return pairs


def _title(model, label: str) -> str:
    return f"{type(model).__name__}, {label}"


def _figure(nrows: int, ncols: int, *, width=COLUMN_WIDTH, height=ROW_HEIGHT):
    """A figure of nrows x ncols panels, built without pyplot (no global state, no screen; saved by Agg)."""
    fig = Figure(figsize=(max(width * ncols, 5.0), height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _db(H: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(np.abs(H))


def _phase_deg(H: np.ndarray) -> np.ndarray:
    return np.degrees(np.unwrap(np.angle(H)))


def _focus_on_tail(ax, curves: list[np.ndarray]) -> None:
    """Scale the y axis to lags l >= 1: the skip D delta_l puts a spike at l = 0 that would flatten the
    rest. A clipped h[0] is written in the corner instead (the curve itself keeps every value)."""
    tails = [c[1:] for c in curves if c.size > 1]
    if not tails:
        return
    lo = min(0.0, min(float(t.min()) for t in tails))
    hi = max(0.0, max(float(t.max()) for t in tails))
    pad = 0.08 * (hi - lo) or 1e-12
    lo, hi = lo - pad, hi + pad
    clipped = [float(c[0]) for c in curves if not lo <= c[0] <= hi]
    if clipped:
        ax.set_ylim(lo, hi)
        text = ", ".join(f"{v:.3g}" for v in clipped)
        ax.text(0.02, 0.97, f"h[0] = {text} (off scale)", transform=ax.transAxes, fontsize=7, va="top")


def _draw_impulse(ax, key: str, h: np.ndarray, pairs, label_prefix=""):
    lags = np.arange(h.shape[0])
    for o, i in pairs:
        (line,) = ax.plot(lags, h[:, o, i], ".-", ms=3, lw=1, label=f"{label_prefix}out {o} <- in {i}")
        line.set_gid(f"{key}|{o}|{i}|impulse")
    _focus_on_tail(ax, [h[:, o, i] for o, i in pairs])
    ax.axhline(0.0, color="0.6", lw=0.5)
    ax.set_xlabel("lag l")


#: Below this omega the Bode axis is linear (symlog); the grid is log-spaced from it up to pi.
LOG_FLOOR = np.pi * 1e-3


def frequency_grid(n_freq: int, log: bool = True) -> np.ndarray:
    """omega in [0, pi]: 0 then ``n_freq - 1`` log-spaced points from pi/1000 (``log``, Bode style: the
    models' steps are small, so their structure sits at low omega), or ``n_freq`` evenly spaced points."""
    n_freq = positive_int(n_freq, "n_freq")
    if n_freq < 2:
        raise ValueError(f"n_freq: expected at least 2 frequencies, got {n_freq}")
    if log:
        positive = np.geomspace(LOG_FLOOR, np.pi, n_freq - 1) if n_freq > 2 else np.array([np.pi])
        return np.concatenate([[0.0], positive])
    return np.linspace(0.0, np.pi, n_freq)


def _frequency_axis(ax, log: bool) -> None:
    if log:
        ax.set_xscale("symlog", linthresh=LOG_FLOOR, linscale=0.3)
        ax.set_xlim(0.0, np.pi)
        ax.set_xticks([0, 1e-2, 1e-1, 1, np.pi], ["0", "0.01", "0.1", "1", "π"])
    else:
        ax.set_xlim(0.0, np.pi)
        ax.set_xticks([0, np.pi / 4, np.pi / 2, 3 * np.pi / 4, np.pi], ["0", "π/4", "π/2", "3π/4", "π"])


def _draw_frequency(ax_mag, ax_phase, key: str, w: np.ndarray, H: np.ndarray, pairs, label_prefix="", log=True,
                    **style):
    for o, i in pairs:
        (line,) = ax_mag.plot(w, _db(H[:, o, i]), lw=1, label=f"{label_prefix}out {o} <- in {i}", **style)
        line.set_gid(f"{key}|{o}|{i}|magnitude_db")
        if ax_phase is not None:
            (line,) = ax_phase.plot(w, _phase_deg(H[:, o, i]), lw=1, **style)
            line.set_gid(f"{key}|{o}|{i}|phase_deg")
    ax_mag.set_ylabel("|H| (dB)")
    for ax in (ax_mag, ax_phase):
        if ax is not None:
            _frequency_axis(ax, log)
    (ax_phase or ax_mag).set_xlabel("ω (rad / sample)")
    if ax_phase is not None:
        ax_phase.set_ylabel("phase (deg)")


def _draw_unit_circle(ax):
    theta = np.linspace(0.0, 2 * np.pi, 361)
    ax.plot(np.cos(theta), np.sin(theta), color="0.5", lw=0.8)
    ax.axhline(0.0, color="0.8", lw=0.5)
    ax.axvline(0.0, color="0.8", lw=0.5)
    ax.set_aspect("equal")
    ax.set_xlim(-1.15, 1.15)
    ax.set_ylim(-1.15, 1.15)
    ax.set_xlabel("Re")
    ax.set_ylabel("Im")


def _draw_poles(ax_circle, ax_radius, key: str, p: np.ndarray, label: str, **style):
    style = {"marker": "x", "ls": "none", "ms": 5, **style}
    (line,) = ax_circle.plot(p.real, p.imag, label=label, **style)
    line.set_gid(f"{key}|poles")
    if ax_radius is not None:
        (line,) = ax_radius.plot(np.angle(p), np.abs(p), label=label, **style)
        line.set_gid(f"{key}|pole_radius")
        ax_radius.axhline(1.0, color="0.5", lw=0.8)
        ax_radius.set_xlim(-np.pi, np.pi)
        ax_radius.set_xlabel("angle of the pole (rad)")
        ax_radius.set_ylabel("|pole|")


# ------------------------------------------------------------------------------------------------
# LTI models
# ------------------------------------------------------------------------------------------------


def plot_impulse_response(models, L: int = 64, *, channels=None):
    """Impulse responses h_l = K_l + D delta_l per channel, one column per model (or discretization).

    ``models``: a model, a sequence of models (labelled by their discretization) or a mapping
    label -> model; LTI models only. ``channels``: (out, in) pairs (default: the first diagonal pairs).
    ``plotted.arrays[label] = model.impulse_response(L)``.
    """
    models = _as_models(models)
    _lti_only(models, "impulse response", "plot_frozen_responses")
    L = positive_int(L, "L")
    fig, axes = _figure(1, len(models))
    arrays = {}
    for col, (label, model) in enumerate(models.items()):
        h = model.impulse_response(L)  # (L, H_out, H_in)
        arrays[label] = h
        ax = axes[0, col]
        _draw_impulse(ax, label, h, _channels(model, channels))
        ax.set_title(_title(model, label), fontsize=10)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("h[l]")
    fig.suptitle("impulse response", fontsize=11)
    return fig, Plotted(arrays, lags=np.arange(L))


def plot_frequency_response(models, n_freq: int = 256, *, channels=None, log_frequency: bool = True):
    """Bode-style frequency responses: magnitude in dB (top) and unwrapped phase (bottom) against
    omega in [0, pi] (a log axis above pi/1000 unless ``log_frequency=False``), one column per model.
    ``plotted.arrays[label] = model.frequency_response(w)`` with ``w = plotted.w = frequency_grid(n_freq)``."""
    models = _as_models(models)
    _lti_only(models, "frequency response", "plot_frozen_responses")
    w = frequency_grid(n_freq, log_frequency)  # (W,)
    fig, axes = _figure(2, len(models))
    arrays = {}
    for col, (label, model) in enumerate(models.items()):
        H = model.frequency_response(w)  # (W, H_out, H_in)
        arrays[label] = H
        _draw_frequency(axes[0, col], axes[1, col], label, w, H, _channels(model, channels), log=log_frequency)
        axes[0, col].set_title(_title(model, label), fontsize=10)
        axes[0, col].legend(fontsize=7)
    fig.suptitle(r"frequency response $H(e^{i\omega}) = C\,(I - e^{-i\omega}\bar{A})^{-1}\bar{B} + D$", fontsize=11)
    return fig, Plotted(arrays, w=w)


def plot_poles(models):
    """The eigenvalues of A_bar (the poles of the real system, ``poles``) against the unit circle (top), and
    |pole| against its angle (bottom: how close each mode is to the circle), one column per model.
    ``plotted.arrays[label] = poles(model.ssm())``."""
    models = _as_models(models)
    _lti_only(models, "set of poles", "plot_frozen_responses")
    fig, axes = _figure(2, len(models), height=2.9)
    arrays = {}
    for col, (label, model) in enumerate(models.items()):
        p = poles(model.ssm())
        arrays[label] = p
        _draw_unit_circle(axes[0, col])
        _draw_poles(axes[0, col], axes[1, col], label, p, label)
        axes[0, col].set_title(f"{_title(model, label)}: {p.size} poles", fontsize=10)
    fig.suptitle("eigenvalues of Ā", fontsize=11)
    return fig, Plotted(arrays)


def _same_continuous_system(models: dict) -> None:
    first_label, first = next(iter(models.items()))
    for label, m in models.items():
        for f in fields(first.params):
            a, b = getattr(first.params, f.name), getattr(m.params, f.name)
            if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
                raise ValueError(
                    f"models: {label!r} and {first_label!r} do not share the continuous system "
                    f"(parameter {f.name} differs)"
                )


def plot_discretization_comparison(
    name: str,
    discretizations: Sequence[str] | None = None,
    *,
    d_model: int = 2,
    d_state=None,
    seed: int = 0,
    dt: float = 0.5,
    channel: tuple[int, int] = (0, 0),
    n_freq: int = 256,
):
    """zoh, bilinear and dirac (or the rules given) applied to the same continuous system, side by side.

    One model per rule is built with the same seed (so the same continuous parameters, which is checked)
    and every state gets the step ``dt``. Panels: (a) magnitude of each H(e^{i omega}) and of the
    continuous system's response G(i Omega) + D at Omega = omega / dt; dirac's dynamic part is drawn times dt,
    dt (H_dirac - D) + D (its kernel samples h(t), the others integrate it over a step, so H_dirac - D ~ G / dt;
    the skip D is not a kernel and is not rescaled); at omega = 0 that is G(0) + D + (dt/2) C B + O(dt^2)
    (reference/README.md §dirac); (b) phase; (c) the poles;
    (d) frequency warping: the analog frequency Omega dt that digital omega stands for, omega under zoh
    and dirac (poles e^{lambda dt}) and 2 tan(omega / 2) under bilinear, with each continuous mode placed
    at (angle of its discrete pole, Im(lambda) dt).

    The continuous response comes from the bilinear model by its warping identity, exact at every omega:
    G(i (2/dt) tan(v/2)) = cos(v/2) e^{-iv/2} (H_bilinear(e^{iv}) - D); for Omega dt = omega take
    v = 2 arctan(omega / 2). The continuous eigenvalues come from the bilinear poles by the inverse map
    lambda dt = 2 (p - 1) / (p + 1).

    ``plotted.arrays``: ``rule`` -> that model's ``frequency_response(w)``; ``"dirac*dt"`` -> the drawn
    dt (H_dirac - D) + D; ``"continuous"`` -> G + D on
    ``w`` (shape of a frequency response); ``rule + ":poles"`` -> its poles; ``"continuous:eigenvalues"``
    -> lambda dt.
    """
    if name not in LTI_MODELS:
        raise ValueError(
            f"model: the comparison needs an LTI model, one of {', '.join(LTI_MODELS)}; got {name!r}"
        )
    cls = LTI_MODELS[name]
    if discretizations is None:
        discretizations = [d for d in ("zoh", "bilinear", "dirac") if d in cls.discretizations]
    discretizations = list(discretizations)
    if not discretizations:
        raise ValueError("discretizations: expected at least one rule")
    for d in discretizations:
        step_rules = [r for r in cls.discretizations if r in reference.DISCRETIZATIONS]
        valid = [r for r in step_rules if r not in reference.TIME_VARYING_ONLY]  # one kernel per rule
        if d not in valid:
            raise ValueError(
                f"discretization: {d!r} is not a step rule of {name}; valid choices: {', '.join(valid)}"
            )
    models = {
        d: set_step(make_model(name, d, d_model=d_model, d_state=d_state, seed=seed), dt)
        for d in dict.fromkeys([*discretizations, "bilinear"])
    }
    _same_continuous_system(models)
    o, i = (int(c) for c in channel)
    H_out, H_in = models["bilinear"].ssm().D.shape
    if not (0 <= o < H_out and 0 <= i < H_in):
        raise ValueError(f"channel: pair {(o, i)} is outside (H_out, H_in) = {(H_out, H_in)}")
    w = frequency_grid(n_freq, log=False)  # (W,): linear, so that the warping shows over the whole band
    D = models["bilinear"].ssm().D  # (H_out, H_in)
    v = 2.0 * np.arctan(w / 2.0)  # (W,): bilinear frequency that stands for Omega dt = w
    G = (np.cos(v / 2) * np.exp(-0.5j * v))[:, None, None] * (models["bilinear"].frequency_response(v) - D) + D

    fig, axes = _figure(2, 2, width=4.6, height=3.1)
    ax_mag, ax_phase, ax_poles, ax_warp = axes[0, 0], axes[0, 1], axes[1, 0], axes[1, 1]
    arrays = {"continuous": G}
    _draw_frequency(ax_mag, ax_phase, "continuous", w, G, [(o, i)], log=False, color="k", ls="--")
    ax_mag.lines[-1].set_label("continuous G(iΩ) + D, Ω = ω/Δ")
    colors = {"zoh": "C0", "bilinear": "C1", "dirac": "C2"}
    markers = {"zoh": "o", "bilinear": "x", "dirac": "+"}
    for k, d in enumerate(discretizations):
        H = models[d].frequency_response(w)  # (W, H_out, H_in)
        arrays[d] = H
        color = colors.get(d, f"C{3 + k}")
        D_skip = models[d].ssm().D  # (H_out, H_in): the skip, not part of the kernel
        shown = dt * (H - D_skip) + D_skip if d == "dirac" else H  # dirac: the dynamic part times dt
        key = f"{d}*dt" if d == "dirac" else d
        if d == "dirac":
            arrays[key] = shown
        _draw_frequency(ax_mag, ax_phase, key, w, shown, [(o, i)], log=False, color=color)
        ax_mag.lines[-1].set_label(f"{d}: Δ·(H − D) + D" if d == "dirac" else d)
        p = poles(models[d].ssm())
        arrays[f"{d}:poles"] = p
        _draw_poles(ax_poles, None, f"{d}:poles", p, d, color=color, marker=markers.get(d, "."), mfc="none")
    ax_mag.legend(fontsize=7)
    ax_mag.set_title(f"{cls.__name__}, channel {o} <- {i}, Δ = {dt:g}", fontsize=10)
    ax_phase.set_title("phase", fontsize=10)
    _draw_unit_circle(ax_poles)
    ax_poles.legend(fontsize=7)
    ax_poles.set_title("poles of Ā (all channels)", fontsize=10)

    # frequency warping: which analog frequency each digital frequency stands for
    p_bil = poles(models["bilinear"].ssm())
    lam_dt = 2.0 * (p_bil - 1.0) / (p_bil + 1.0)  # the continuous eigenvalues times dt
    arrays["continuous:eigenvalues"] = lam_dt
    top = min(max(3 * np.pi, 1.1 * float(np.max(np.abs(lam_dt.imag), initial=0.0))), 6 * np.pi)
    up = lam_dt.imag >= 0  # one of each conjugate pair
    exact_A = [d for d in discretizations if d in ("zoh", "dirac")]  # the rules with poles e^{lambda dt}
    if exact_A:  # only the requested rules appear in the legend
        analog = np.linspace(0.0, top, 2001)  # ΩΔ on the y axis, mapped to the pole angle folded into [0, π]
        ax_warp.plot(np.abs(np.angle(np.exp(1j * analog))), analog, color=colors[exact_A[0]], lw=1,
                     label=f"{', '.join(exact_A)}: ω = ΩΔ folded into [0, π]")
        p_zoh = np.exp(lam_dt[up])  # where zoh and dirac put the modes
        ax_warp.plot(np.abs(np.angle(p_zoh)), lam_dt[up].imag, "o", color=colors[exact_A[0]], mfc="none", ms=4,
                     label=f"modes under {', '.join(exact_A)}")
    if "bilinear" in discretizations:
        ax_warp.plot(w, 2.0 * np.tan(np.minimum(w, np.pi - 1e-3) / 2.0), color=colors["bilinear"], lw=1,
                     label="bilinear: ΩΔ = 2 tan(ω/2)")
        ax_warp.plot(np.abs(np.angle(p_bil[up])), lam_dt[up].imag, "x", color=colors["bilinear"], ms=4,
                     label="modes under bilinear")
    ax_warp.set_xlim(0.0, np.pi)
    ax_warp.set_ylim(0.0, top)
    ax_warp.set_xlabel("ω (rad / sample)")
    ax_warp.set_ylabel("analog frequency ΩΔ")
    ax_warp.set_title("frequency warping", fontsize=10)
    ax_warp.legend(fontsize=7)
    fig.suptitle(f"{cls.__name__}: one continuous system, {len(discretizations)} discretizations", fontsize=11)
    return fig, Plotted(arrays, w=w)


# ------------------------------------------------------------------------------------------------
# LTV models
# ------------------------------------------------------------------------------------------------


def _ltv_only(models: dict) -> None:
    for m in models.values():
        if not isinstance(m, LTVModel):
            raise ValueError(
                f"models: {type(m).__name__} is time-invariant; use plot_impulse_response / "
                "plot_frequency_response / plot_poles"
            )


def _times(times, L: int) -> list[int]:
    if times is None:
        return sorted({L // 8, L // 2, (7 * L) // 8})
    out = [int(t) for t in times]
    for t in out:
        if not 0 <= t < L:
            raise ValueError(f"times: token {t} is outside the input (0 <= t < {L})")
    if not out:
        raise ValueError("times: expected at least one token index")
    return out


def plot_frozen_responses(
    models,
    u=None,
    times=None,
    *,
    L: int = 64,
    integration_timesteps=None,
    channel: tuple[int, int] = (0, 0),
    n_freq: int = 256,
    show: Sequence[str] = ("impulse", "frequency", "poles"),
    seed: int = 0,
    log_frequency: bool = True,
):
    """An LTV model frozen at chosen tokens of a given input: the LTI system its core applies at token t
    (``model.frozen_system(u, t)``), for each t in ``times``. One column per model (or discretization).

    Rows: the input with the chosen tokens marked; then, as ``show`` asks, the state part of each frozen
    system (channel pair ``channel``), without the skip D (which does not depend on the token and, for Mamba's
    D = 1, would hide everything else): its kernel K_l = read(C A_bar^l B_bar) and the magnitude of
    H(e^{i omega}) - D in dB, each on its own scale; and the poles in the complex plane with the arc of the
    unit circle near z = 1.
    ``u (T, H)``: the input (default ``default_input(L, H, seed)``); ``integration_timesteps (T,)`` its gaps,
    the same for every column (when one model is "async" and none are given, ``default_gaps``).
    ``L``: the impulse response length (and the default input's length).
    ``plotted.arrays[f"{label}@{t}:impulse"] = frozen.kernel(L)`` (the impulse response less D delta_l),
    ``...:frequency`` = ``frozen.frequency_response(w) - frozen.D``, ``...:poles`` = ``poles(frozen)``;
    ``"input"`` = u;
    ``"gaps"`` = the gaps used (when any).
    """
    models = _as_models(models)
    _ltv_only(models)
    show = tuple(show)
    for s in show:
        if s not in ("impulse", "frequency", "poles"):
            raise ValueError(f"show: expected a subset of ('impulse', 'frequency', 'poles'), got {s!r}")
    first = next(iter(models.values()))
    L = positive_int(L, "L")
    u = default_input(L, first.d_model, seed) if u is None else as_array(u, "u", complex_ok=False)
    if u.ndim != 2:
        raise ValueError(f"u: expected one sequence (T, H), got shape {u.shape}")
    times = _times(times, u.shape[0])
    if integration_timesteps is None and any(m.discretization == "async" for m in models.values()):
        integration_timesteps = default_gaps(u.shape[0], seed)
    w = frequency_grid(n_freq, log_frequency)  # (W,)
    o, i = (int(c) for c in channel)

    fig, axes = _figure(1 + len(show), len(models))
    arrays = {"input": u}
    if integration_timesteps is not None:
        arrays["gaps"] = np.asarray(integration_timesteps, dtype=np.float64)
    for col, (label, model) in enumerate(models.items()):
        ax_in = axes[0, col]
        ax_in.plot(np.arange(u.shape[0]), u, lw=0.8)
        for k, t in enumerate(times):
            ax_in.axvline(t, color=f"C{k + 1}", lw=1.2, ls="--")
        ax_in.set_title(f"{type(model).__name__}, {label}: input, frozen at t = {times}", fontsize=9)
        ax_in.set_xlabel("token t")
        impulse_curves = []
        for k, t in enumerate(times):
            frozen = model.frozen_system(u, t, integration_timesteps=integration_timesteps)
            n_out, n_in = frozen.D.shape
            if not (0 <= o < n_out and 0 <= i < n_in):
                raise ValueError(f"channel: pair {(o, i)} is outside the core's (H_out, H_in) = {(n_out, n_in)}")
            key = f"{label}@{t}"
            style = {"color": f"C{k + 1}"}
            row = 1
            if "impulse" in show:
                h = frozen.kernel(L)  # (L, H_out, H_in): the state part, without D delta_l
                arrays[f"{key}:impulse"] = h
                ax = axes[row, col]
                (line,) = ax.plot(np.arange(L), h[:, o, i], lw=1, label=f"t = {t}", **style)
                line.set_gid(f"{key}:impulse|{o}|{i}|impulse")
                impulse_curves.append(h[:, o, i])
                ax.set_xlabel("lag l")
                ax.set_ylabel(f"K[l] (no skip), {o} <- {i}")
                ax.legend(fontsize=7)
                row += 1
            if "frequency" in show:
                H = frozen.frequency_response(w) - frozen.D  # (W, H_out, H_in): the state part
                arrays[f"{key}:frequency"] = H
                _draw_frequency(axes[row, col], None, f"{key}:frequency", w, H, [(o, i)], log=log_frequency, **style)
                axes[row, col].lines[-1].set_label(f"t = {t}")
                axes[row, col].set_ylabel("|H − D| (dB)")
                axes[row, col].legend(fontsize=7)
                row += 1
            if "poles" in show:
                p = poles(frozen)
                arrays[f"{key}:poles"] = p
                _draw_poles(axes[row, col], None, f"{key}:poles", p, f"t = {t}", marker="o", mfc="none", ms=4,
                            **style)
                ax = axes[row, col]
                ax.set_xlabel("Re pole")
                ax.set_ylabel("Im pole")
                ax.legend(fontsize=7)
        if "impulse" in show:
            _focus_on_tail(axes[1, col], impulse_curves)
        if "poles" in show:
            ax = axes[len(show), col]
            theta = np.linspace(-0.35, 0.35, 101)
            ax.plot(np.cos(theta), np.sin(theta), color="0.5", lw=0.8)  # the arc of the unit circle near 1
    fig.suptitle("frozen systems: the LTI system the core applies at token t (state part, skip D not drawn)",
                 fontsize=11)
    return fig, Plotted(arrays, lags=np.arange(L), w=w)


def plot_async_example(model, u=None, integration_timesteps=None, *, channel: int = 0, seed: int = 0, L: int = 48):
    """Irregular timesteps: the same events processed with their real gaps and as a regular sequence.

    Panels: (a) the events (channel ``channel`` of u) at their times; (b) that output channel of
    ``model.forward(u, integration_timesteps=gaps)`` and of ``model.forward(u, integration_timesteps=ones)``
    (the events counted as evenly spaced); (c) how much of the state survives each gap: the mean |A_bar| of
    the frozen system at each event, against the gap before it.
    ``plotted.arrays``: ``"input"``, ``"gaps"``, ``"times"`` (cumulative), ``"async"``, ``"regular"`` (the
    two outputs, ``(T, H)``), ``"decay"`` (T,). The curves' gids are ``"input|c"``, ``"async|c"``,
    ``"regular|c"`` (y = arrays[name][:, c] against ``times``) and ``"decay"`` (y = decay against gaps).
    """
    model = _as_reference(model)
    if not isinstance(model, LTVModel):
        raise ValueError(f"model: the async example needs an LTV model (mamba, rglru, s7), got {type(model).__name__}")
    u = default_input(L, model.d_model, seed) if u is None else as_array(u, "u", complex_ok=False)
    if u.ndim != 2:
        raise ValueError(f"u: expected one sequence (T, H), got shape {u.shape}")
    T = u.shape[0]
    c = int(channel)
    if not 0 <= c < model.d_model:
        raise ValueError(f"channel: expected 0 <= channel < {model.d_model}, got {channel!r}")
    gaps = default_gaps(T, seed) if integration_timesteps is None else np.asarray(integration_timesteps, float)
    y_async = model.forward(u, integration_timesteps=gaps)  # (T, H)
    y_regular = model.forward(u, integration_timesteps=np.ones(T))  # (T, H)
    decay = np.array([np.mean(np.abs(model.frozen_system(u, t, integration_timesteps=gaps).A_bar)) for t in range(T)])
    times = np.cumsum(gaps)  # (T,)

    fig, axes = _figure(3, 1, width=7.0, height=2.0)
    ax_ev, ax_out, ax_dec = axes[:, 0]
    ax_ev.vlines(times, 0.0, u[:, c], color="0.3", lw=1)
    (line,) = ax_ev.plot(times, u[:, c], "o", ms=3, color="0.3")
    line.set_gid(f"input|{c}")
    ax_ev.set_ylabel(f"u, channel {c}")
    ax_ev.set_title(f"{type(model).__name__}, {model.discretization}: {T} events at irregular times", fontsize=10)
    (line,) = ax_out.plot(times, y_async[:, c], ".-", lw=1, label="with the real gaps τ")
    line.set_gid(f"async|{c}")
    (line,) = ax_out.plot(times, y_regular[:, c], ".--", lw=1, label="as a regular sequence (τ = 1)")
    line.set_gid(f"regular|{c}")
    ax_out.set_xlabel("time (sum of the gaps)")
    ax_out.set_ylabel(f"y, channel {c}")
    ax_out.legend(fontsize=7)
    (line,) = ax_dec.plot(gaps, decay, "o", ms=3)
    line.set_gid("decay")
    ax_dec.set_xlabel("gap τ before the event")
    ax_dec.set_ylabel("mean |Ā| at the event")
    arrays = {"input": u, "gaps": gaps, "times": times, "async": y_async, "regular": y_regular, "decay": decay}
    return fig, Plotted(arrays)


def plot_irregular_sampling(model=None, *, L_fine: int = 240, n_events: int = 40, channel: int = 0, seed: int = 0):
    """An irregularly sampled signal through S5 (reference/README.md §S5): ``n_events`` samples of a smooth
    signal at random times on a fine grid of ``L_fine`` unit steps, run three ways.

    * "irregular": ``model.forward(samples, integration_timesteps=gaps)``, each event with the step dt * tau_k;
    * "held": the regular model on the fine grid, the input held at each sample over the gap before it (what
      zoh assumes), read at the event times -- under zoh exactly the same numbers (gaps compose);
    * "as regular": the samples as if evenly spaced (every gap 1): what a model without time information sees.

    ``model``: an S5 (default: ``S5(2, 8)`` with zoh, every step 0.2). ``plotted.arrays``: ``"signal"`` (L_fine,
    H), ``"times"`` (n_events,) event times on the fine grid, ``"gaps"``, ``"samples"`` (n_events, H),
    ``"irregular"``, ``"held"`` (the fine-grid output at the event times), ``"as regular"`` (n_events, H), and
    ``"held:fine"`` (L_fine, H), the whole fine-grid output. Curves' gids: ``"<name>|<channel>"``.
    """
    model = set_step(S5(2, 8, seed=seed), 0.2) if model is None else _as_reference(model)
    if not isinstance(model, S5):
        raise ValueError(f"model: the irregular-sampling figure runs an S5, got {type(model).__name__}")
    if model.bidirectional:
        raise ValueError("model: the irregular-sampling figure needs a causal (bidirectional=False) S5")
    L_fine, n_events = positive_int(L_fine, "L_fine"), positive_int(n_events, "n_events")
    if n_events > L_fine:
        raise ValueError(f"n_events: expected at most L_fine = {L_fine} events, got {n_events}")
    c = int(channel)
    if not 0 <= c < model.d_model:
        raise ValueError(f"channel: expected 0 <= channel < {model.d_model}, got {channel!r}")
    rng = np.random.default_rng(seed + 7)
    grid = np.arange(L_fine)  # (L_fine,): the fine clock, unit steps
    phases = rng.uniform(0, 2 * np.pi, size=model.d_model)
    signal = np.sin(2 * np.pi * grid[:, None] / 60.0 + phases) + 0.5 * np.sin(2 * np.pi * grid[:, None] / 17.0)
    times = np.sort(rng.choice(L_fine, size=n_events, replace=False))  # (n_events,) event indices on the grid
    gaps = np.diff(np.concatenate([[-1], times])).astype(np.float64)  # (n_events,): first gap from t = -1
    samples = signal[times]  # (n_events, H)
    y_irregular = model.forward(samples, integration_timesteps=gaps)  # (n_events, H)
    held = np.repeat(samples, gaps.astype(int), axis=0)  # (times[-1] + 1, H): u_k held over the gap before it
    y_held = model.forward(held)  # (times[-1] + 1, H), regular unit steps
    y_regular = model.forward(samples)  # (n_events, H): every gap 1

    fig, axes = _figure(2, 1, width=7.0, height=2.4)
    ax_in, ax_out = axes[:, 0]
    ax_in.plot(grid, signal[:, c], color="0.6", lw=1, label="signal")
    (line,) = ax_in.plot(times, samples[:, c], "o", ms=3, color="k", label="samples (irregular times)")
    line.set_gid(f"samples|{c}")
    ax_in.step(np.arange(held.shape[0]), held[:, c], where="pre", color="C0", lw=0.8, alpha=0.6,
               label="held over each gap (zoh)")
    ax_in.set_ylabel(f"u, channel {c}")
    ax_in.set_title(f"S5 ({model.discretization}): {n_events} samples at irregular times of a signal on "
                    f"{L_fine} steps", fontsize=10)
    ax_in.legend(fontsize=7, loc="upper right")
    (line,) = ax_out.plot(np.arange(held.shape[0]), y_held[:, c], color="C0", lw=1,
                          label="regular S5 on the held input")
    line.set_gid(f"held:fine|{c}")
    (line,) = ax_out.plot(times, y_irregular[:, c], "o", ms=4, mfc="none", color="C1",
                          label="S5 with integration_timesteps = the gaps")
    line.set_gid(f"irregular|{c}")
    (line,) = ax_out.plot(times, y_regular[:, c], "x", ms=4, color="C3", label="the samples as if evenly spaced")
    line.set_gid(f"as regular|{c}")
    ax_out.set_xlabel("time (fine steps)")
    ax_out.set_ylabel(f"y, channel {c}")
    ax_out.legend(fontsize=7, loc="upper right")
    fig.suptitle("irregular time: each event discretized with the step Δ·τ_k", fontsize=11)
    arrays = {"signal": signal, "times": times, "gaps": gaps, "samples": samples, "irregular": y_irregular,
              "held": y_held[times], "held:fine": y_held, "as regular": y_regular}
    return fig, Plotted(arrays)
