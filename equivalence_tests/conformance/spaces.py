"""What the kit draws: model configurations, parameter values away from initialization, and inputs.

Hypothesis draws small, JSON-able *examples* (sizes, names, integer seeds); the arrays are then made from those
seeds by NumPy's generator. So every example shrinks toward small sizes (L = 1, N = 1, one channel) and prints as
one line that rebuilds it exactly (``check`` puts that line in every failure message).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

import reference.models

seeds = st.integers(min_value=0, max_value=2**32 - 1)
lengths = st.integers(min_value=1, max_value=17)  # shrinks to 1; odd and even alike
batches = st.integers(min_value=1, max_value=3)

#: The reference models the kit knows, by the name ``ModelAdapter.model`` uses.
MODELS = ("S4", "S4D", "S5", "LRU", "Centaurus", "Mamba", "RGLRU", "S7")
LTI_MODELS = ("S4", "S4D", "S5", "LRU", "Centaurus")
LTV_MODELS = ("Mamba", "RGLRU", "S7")


def model_class(name: str):
    return getattr(reference.models, name)


@st.composite
def _sizes_and_options(draw, model: str) -> tuple[int, int | None, dict]:
    """(d_model, d_state, options) over each model's valid configurations, small first."""
    H = draw(st.integers(1, 3))
    if model == "S4":
        return H, draw(st.sampled_from([2, 4])), {}
    if model == "S4D":
        return H, draw(st.sampled_from([2, 4, 6])), {"init": draw(st.sampled_from(["legs", "lin", "inv", "real"]))}
    if model == "S5":
        conj = draw(st.booleans())
        blocks = draw(st.sampled_from([1, 2]))
        per_block = draw(st.integers(1, 2)) * (2 if conj else 1)
        return H, blocks * per_block, {"blocks": blocks, "conj_sym": conj}
    if model == "LRU":
        return H, draw(st.integers(1, 4)), {"r_min": draw(st.sampled_from([0.0, 0.5, 0.9])), "r_max": 0.99}
    if model == "Centaurus":
        mode = draw(st.sampled_from(["pointwise", "neck", "dws", "full"]))
        J = {"pointwise": draw(st.integers(1, 3)), "neck": draw(st.integers(1, 3)), "dws": H, "full": H * H}[mode]
        return H, J, {"mode": mode, "sub_state_dim": draw(st.integers(1, 3))}
    if model == "Mamba":
        return H, draw(st.integers(1, 4)), {"d_conv": draw(st.integers(1, 4)), "expand": draw(st.sampled_from([1, 2])),
                                            "conv_bias": draw(st.booleans()), "bias": draw(st.booleans())}
    if model == "RGLRU":
        heads = draw(st.sampled_from([1, 2]))
        width = heads * draw(st.integers(1, 2))
        return H, width, {"num_heads": heads, "conv1d_width": draw(st.integers(1, 4))}
    if model == "S7":
        conj = draw(st.booleans())
        block = draw(st.integers(1, 2)) * (2 if conj else 1)
        return H, block * draw(st.integers(1, 2)), {"block_size": block, "conj_sym": conj}
    raise ValueError(f"model: expected one of {list(MODELS)}, got {model!r}")


def claimed_rules(adapter) -> tuple[str, ...]:
    cls = model_class(adapter.model)
    return tuple(adapter.discretizations) or (cls.default_discretization,)


@st.composite
def model_configs(draw, adapter) -> dict:
    """A configuration the adapter claims: sizes, one of its rules, drawn options (those in ``adapter.options``
    held fixed), the initialization seed and a seed for moving the parameters away from initialization."""
    H, N, options = draw(_sizes_and_options(adapter.model))
    options.update(adapter.options)
    config = {
        "d_model": H,
        "d_state": N,
        "discretization": draw(st.sampled_from(claimed_rules(adapter))),
        "options": options,
        "seed": draw(st.integers(0, 2**16)),
    }
    # three regimes, a third of the examples each: the initialization itself, parameters moved away from it, and
    # moved to large steps without the skip term (shrinking goes toward the initialization)
    regime = draw(st.sampled_from(["init", "moved", "large steps"]))
    config["perturb"] = None if regime == "init" else draw(st.integers(0, 2**16))
    config["large_steps"] = regime == "large steps"
    try:  # a drawn option may contradict a fixed one (e.g. a fixed Centaurus mode and a drawn d_state)
        build_reference(adapter.model, config)
    except ValueError:
        assume(False)
    return config


def build_reference(model: str, config: dict):
    """The reference model of an example: built from its seed, then (``perturb`` not None) its parameters moved
    away from initialization by ``perturb_params`` (and, with ``large_steps``, by ``large_steps``)."""
    cls = model_class(model)
    ref = cls(config["d_model"], config["d_state"], discretization=config["discretization"], seed=config["seed"],
              **config["options"])
    if config.get("perturb") is not None:
        rng = np.random.default_rng(config["perturb"])
        perturb_params(ref, rng)
        if config.get("large_steps"):
            large_steps(ref, rng)
    return ref


#: Parameters that set the step: log-parametrized (dt = exp), or a bias under a softplus (dt = softplus(... + b)).
LOG_STEP_FIELDS = ("log_dt", "log_step")
SOFTPLUS_STEP_FIELDS = ("dt_proj_bias", "step_proj_bias")


def large_steps(ref, rng: np.random.Generator) -> None:
    """The other end of the valid range: steps of 0.1 to 1 (initializations draw 1e-3 to 1e-1, where the rules
    differ only in high order) and no skip term D (which would dominate the output and hide the state path)."""
    for field in dataclasses.fields(ref.params):
        x = getattr(ref.params, field.name)
        if not isinstance(x, np.ndarray):
            continue
        dt = rng.uniform(0.1, 1.0, size=x.shape)
        if field.name in LOG_STEP_FIELDS:
            setattr(ref.params, field.name, np.log(dt))
        elif field.name in SOFTPLUS_STEP_FIELDS:
            setattr(ref.params, field.name, np.log(np.expm1(dt)))  # softplus^-1(dt)
        elif field.name == "D":
            setattr(ref.params, field.name, np.zeros_like(x))


def perturb_params(ref, rng: np.random.Generator) -> None:
    """Move every parameter of ``ref`` inside its valid range: each nonzero entry is scaled by exp(0.3 e) (its
    sign, and so every stability constraint written as a sign, is kept), an exactly zero entry (a bias at
    init) gets 0.1 e, and a log-parametrized field (name starting with ``log`` or ending with ``_log``) is shifted
    by 0.3 e; e ~ N(0, 1) per entry."""
    for field in dataclasses.fields(ref.params):
        x = getattr(ref.params, field.name)
        if not isinstance(x, np.ndarray) or x.dtype.kind not in "fc":
            continue
        e = rng.normal(size=x.shape)
        if field.name.startswith("log") or field.name.endswith("_log"):
            new = x + 0.3 * e
        else:
            new = np.where(x == 0, 0.1 * e, x * np.exp(0.3 * e))
        setattr(ref.params, field.name, new.astype(x.dtype))


@st.composite
def model_inputs(draw, adapter, *, min_length: int = 1) -> dict:
    """An example for a model property: a configuration, a batch size, a length and an input seed."""
    config = draw(model_configs(adapter))
    config.update(batch=draw(batches), length=draw(st.integers(min_length, 17)), input_seed=draw(seeds))
    if adapter.model in LTV_MODELS:  # event gaps under every rule, not only the event rule (which always has them)
        config["with_gaps"] = draw(st.booleans())
    return config


def input_array(example: dict, d_model: int) -> np.ndarray:
    rng = np.random.default_rng(example["input_seed"])
    return rng.normal(size=(example["batch"], example["length"], d_model))  # (B, L, H)


def gap_array(example: dict, *, allow_zero: bool) -> np.ndarray:
    """Event gaps tau (B, L) in [0.05, 3] (one entry 0 when ``allow_zero``)."""
    rng = np.random.default_rng(example["input_seed"] + 1)
    tau = rng.uniform(0.05, 3.0, size=(example["batch"], example["length"]))
    if allow_zero:
        tau[:, rng.integers(example["length"])] = 0.0
    return tau
