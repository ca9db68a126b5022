"""Parameter converters between the peers' state dicts and this project's parameters (public API).

Every converter works on plain arrays: a state dict maps the peer's key (``"in_proj.weight"``) to a NumPy array or
a torch tensor (tensors are read with ``.detach().cpu()``), and the ``*_to_reference`` functions return the
reference model's params dataclass, in float64. ``load_*`` copies a peer's state dict into a ``fast`` model (torch
is imported only there). None of this imports a peer: the layouts were written from reading the peers' code, and
``equivalence_tests/test_peer_converters.py`` tests them without the peers installed.

Mamba (``mamba_ssm.modules.mamba_simple.Mamba`` 2.3.2.post1, ``mambapy.mamba.MambaBlock`` 1.2.0, and
``lrnnx.models.ltv.Mamba`` 1.0.0.post1 all use torch's module names; D = expand * d_model, R = dt_rank,
W = d_conv)::

    in_proj.weight (2D, H)   [in_proj.bias (2D,) with bias=True]
    conv1d.weight (D, 1, W)  [conv1d.bias (D,) with conv_bias=True]
    x_proj.weight (R + 2N, D)
    dt_proj.weight (D, R), dt_proj.bias (D,)
    A_log (D, N), D (D,)
    out_proj.weight (H, D)   [out_proj.bias (H,) with bias=True]
    lrnnx only: dtA_proj.weight (D, R), dtA_proj.bias (D,): read only by its event mode (integration_timesteps),
        which the reference does not reproduce (reference/README.md §Mamba); dropped on the way in, and written
        as a copy of dt_proj on the way out.

The reference's ``MambaParams`` holds the same numbers under the names with "." -> "_" (``conv1d_weight`` without
torch's singleton axis: ``(D, W)``).

RecurrentGemma's recurrent block (``recurrentgemma.torch.modules.RecurrentBlock`` 1.0.1; D = lru_width)::

    linear_x.weight (D, H), linear_x.bias (D,)      linear_y.weight (D, H), linear_y.bias (D,)
    conv_1d.w (W, D), conv_1d.b (D,)                 rg_lru.a_param (D,)
    rg_lru.input_gate.w (heads, D/heads, D/heads), rg_lru.input_gate.b (heads, D/heads)
    rg_lru.a_gate.w, rg_lru.a_gate.b (the same shapes)
    linear_out.weight (H, D), linear_out.bias (H,)

``reference.models.RGLRU`` keeps exactly these numbers and layouts (``conv_1d_weight``, ``input_gate_weight``, ...).

s5-pytorch's S5 (``s5.S5`` 0.2.1, i404788/s5-pytorch, with its default ``bcInit="dense"``; P = d_state, all P modes
stored: the reference S5 with ``conj_sym=False``)::

    seq.Lambda (P,) complex, seq.B (P, H, 2) real (B_tilde's real and imaginary parts), seq.C (H, P) complex,
    seq.D (H,), seq.log_step (P,)

the reference ``S5Params`` Lambda_re + i Lambda_im, B_tilde, C_tilde, D, log_step.

lrnnx's RG-LRU block (``lrnnx.models.ltv.RGLRU`` 1.0.0.post1 with ``bias=True``; D = expand * d_model; dense gates,
so only the reference's ``num_heads=1``)::

    gate_proj.weight (D, H), .bias (D,)      <-> linear_y_weight, linear_y_bias (the GELU branch)
    in_proj.weight (D, H), .bias (D,)        <-> linear_x_weight, linear_x_bias
    conv1d.weight (D, 1, W), conv1d.bias (D,) <-> conv_1d_weight (W, D) (transposed), conv_1d_bias
    recurrent_gate_proj.weight (D, D) (out, in), .bias (D,) <-> a_gate_weight (1, D, D) [head, in, out], a_gate_bias
    input_gate_proj.weight (D, D), .bias (D,)  <-> input_gate_weight, input_gate_bias (the same layouts)
    a_log (D, 1): a = sigmoid(a_log)          <-> a_param = -a_log (the reference's a = sigmoid(-a_param))
    out_proj.weight (H, D), .bias (H,)        <-> linear_out_weight, linear_out_bias

lrnnx's LRU (``lrnnx.models.lti.LRU`` 1.0.0.post1; N = d_state)::

    nu_log (N,), theta_log (N,), gamma_log (N,), B_re, B_im (N, H), C_re, C_im (H, N), D (H,)

the reference ``LRUParams`` fields of the same names; lrnnx's LRU has no step size, so ``log_dt`` (the reference's
continuous-time reading, unused by its ``"native"`` rule) is zeros (dt = 1) on the way in and dropped on the way
out: the two models agree under ``"native"`` only.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = [
    "MAMBA_LAYOUTS",
    "load_lrnnx_lru_state_dict",
    "load_mamba_state_dict",
    "lrnnx_lru_state_dict_to_reference",
    "lrnnx_rglru_state_dict_to_reference",
    "load_recurrentgemma_state_dict",
    "mamba_state_dict_to_reference",
    "recurrentgemma_state_dict_to_reference",
    "reference_to_lrnnx_lru_state_dict",
    "reference_to_lrnnx_rglru_state_dict",
    "reference_to_s5_pytorch_state_dict",
    "s5_pytorch_state_dict_to_reference",
    "reference_to_mamba_state_dict",
    "reference_to_recurrentgemma_state_dict",
]

#: The Mamba state-dict layouts: mamba_ssm and mambapy are one layout; lrnnx adds the event-mode dtA_proj.
MAMBA_LAYOUTS = ("mamba_ssm", "mambapy", "lrnnx")


def _array(value, key: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor (torch is not imported here)
        value = value.detach().cpu().double().numpy()
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"state_dict[{key!r}]: expected a real array, got {type(value).__name__}") from err
    if not np.all(np.isfinite(array)):
        raise ValueError(f"state_dict[{key!r}]: contains NaN or inf")
    return array


def _complex_array(value, key: str) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        value = value.resolve_conj().numpy() if value.is_complex() else value.double().numpy()
    try:
        array = np.array(value, dtype=np.complex128)
    except (TypeError, ValueError) as err:
        raise ValueError(f"state_dict[{key!r}]: expected a complex array, got {type(value).__name__}") from err
    if not np.all(np.isfinite(array)):
        raise ValueError(f"state_dict[{key!r}]: contains NaN or inf")
    return array


def _read(state_dict, expected: dict, optional: dict, ignored=(), complex_keys=()) -> dict:
    """Check that ``state_dict`` has exactly the keys of ``expected`` (+ any of ``optional`` and ``ignored``) with
    those shapes; return the arrays by key."""
    if not hasattr(state_dict, "keys"):
        raise ValueError(f"state_dict: expected a mapping from parameter names to arrays, got {type(state_dict)}")
    keys = set(state_dict.keys())
    missing = [k for k in expected if k not in keys]
    if missing:
        raise ValueError(f"state_dict: missing keys {missing} (have {sorted(keys)})")
    unknown = sorted(keys - set(expected) - set(optional) - set(ignored))
    if unknown:
        raise ValueError(f"state_dict: unexpected keys {unknown}; expected {list(expected) + list(optional)}")
    out = {}
    for key, shape in {**expected, **{k: v for k, v in optional.items() if k in keys}}.items():
        array = (_complex_array if key in complex_keys else _array)(state_dict[key], key)
        if array.shape != shape:
            raise ValueError(f"state_dict[{key!r}]: expected shape {shape}, got {array.shape}")
        out[key] = array
    return out


def _config(config) -> dict:
    """A reference model's ``config`` dict (or the model itself)."""
    if hasattr(config, "config") and not isinstance(config, dict):
        config = config.config
    if not isinstance(config, dict):
        raise ValueError(f"config: expected a reference model's config dict, got {type(config).__name__}")
    return config


# ------------------------------------------------------------------------------------------------
# Mamba
# ------------------------------------------------------------------------------------------------


def _mamba_sizes(config: dict):
    config = _config(config)
    try:
        H, N = int(config["d_model"]), int(config["d_state"])
    except KeyError as err:
        raise ValueError(f"config: missing {err.args[0]!r} (expected a reference Mamba's config)") from None
    W = int(config.get("d_conv", 4))
    D = int(config.get("expand", 2) * H)
    rank = config.get("dt_rank", "auto")
    R = math.ceil(H / 16) if rank == "auto" else int(rank)
    return H, N, D, R, W, bool(config.get("bias", False)), bool(config.get("conv_bias", True))


def _check_layout(layout: str) -> None:
    if layout not in MAMBA_LAYOUTS:
        raise ValueError(f"layout: expected one of {MAMBA_LAYOUTS}, got {layout!r}")


def mamba_state_dict_to_reference(state_dict, config, *, layout: str = "mamba_ssm"):
    """A mamba_ssm / mambapy / lrnnx ``Mamba`` state dict (keys in the module docstring) -> the reference's
    ``MambaParams`` (float64), checked against ``config`` (a reference ``Mamba``'s ``config``: d_model, d_state,
    d_conv, expand, dt_rank, bias, conv_bias)."""
    from reference.models.ltv.mamba import MambaParams

    _check_layout(layout)
    H, N, D, R, W, bias, conv_bias = _mamba_sizes(config)
    expected = {
        "in_proj.weight": (2 * D, H),
        "conv1d.weight": (D, 1, W),
        "x_proj.weight": (R + 2 * N, D),
        "dt_proj.weight": (D, R),
        "dt_proj.bias": (D,),
        "A_log": (D, N),
        "D": (D,),
        "out_proj.weight": (H, D),
    }
    if conv_bias:
        expected["conv1d.bias"] = (D,)
    if bias:
        expected["in_proj.bias"] = (2 * D,)
        expected["out_proj.bias"] = (H,)
    if layout == "lrnnx":
        expected["dtA_proj.weight"] = (D, R)
        expected["dtA_proj.bias"] = (D,)
    sd = _read(state_dict, expected, {})
    return MambaParams(
        in_proj_weight=sd["in_proj.weight"],
        conv1d_weight=sd["conv1d.weight"][:, 0, :],  # (D, W): torch's singleton in-channel axis dropped
        conv1d_bias=sd.get("conv1d.bias"),
        x_proj_weight=sd["x_proj.weight"],
        dt_proj_weight=sd["dt_proj.weight"],
        dt_proj_bias=sd["dt_proj.bias"],
        A_log=sd["A_log"],
        D=sd["D"],
        out_proj_weight=sd["out_proj.weight"],
        in_proj_bias=sd.get("in_proj.bias"),
        out_proj_bias=sd.get("out_proj.bias"),
    )


def reference_to_mamba_state_dict(params, *, layout: str = "mamba_ssm") -> dict[str, np.ndarray]:
    """The inverse of ``mamba_state_dict_to_reference``: a reference ``MambaParams`` -> a state dict of NumPy
    arrays in the peer's keys and shapes (load it with ``module.load_state_dict({k: torch.as_tensor(v) ...})``)."""
    _check_layout(layout)
    p = params
    sd = {
        "in_proj.weight": p.in_proj_weight,
        "conv1d.weight": p.conv1d_weight[:, None, :],  # (D, 1, W)
        "x_proj.weight": p.x_proj_weight,
        "dt_proj.weight": p.dt_proj_weight,
        "dt_proj.bias": p.dt_proj_bias,
        "A_log": p.A_log,
        "D": p.D,
        "out_proj.weight": p.out_proj_weight,
    }
    if p.conv1d_bias is not None:
        sd["conv1d.bias"] = p.conv1d_bias
    if p.in_proj_bias is not None:
        sd["in_proj.bias"] = p.in_proj_bias
    if p.out_proj_bias is not None:
        sd["out_proj.bias"] = p.out_proj_bias
    if layout == "lrnnx":  # read only in lrnnx's event mode, which the reference does not reproduce
        sd["dtA_proj.weight"] = p.dt_proj_weight
        sd["dtA_proj.bias"] = p.dt_proj_bias
    return {k: np.array(v, dtype=np.float64) for k, v in sd.items()}


def _load_params(fast_model, params) -> None:
    import torch

    names = {f.name for f in dataclasses.fields(params)}
    with torch.no_grad():
        for name in names:
            value = getattr(params, name)
            target = fast_model._parameters.get(name)
            if target is None:  # a setting the model keeps as a buffer (LRU's log_dt under "native", read by no rule)
                target = fast_model._buffers.get(name)
            if value is None:
                if target is not None:
                    raise ValueError(f"state_dict: has no value for {name!r}, which the fast model holds")
                continue
            if target is None and isinstance(getattr(fast_model, name, None), np.ndarray):
                setattr(fast_model, name, value.copy())  # a setting the model keeps as an array (LRU's log_dt under
                continue  # "native", which no computation reads)
            if target is None:
                raise ValueError(f"fast_model: has no parameter {name!r} for the state dict's value (its options "
                                 "differ from the state dict's: build it with the same bias / conv_bias)")
            if tuple(target.shape) != value.shape:
                raise ValueError(f"fast_model.{name}: shape {tuple(target.shape)}, the state dict gives {value.shape}")
            target.copy_(torch.from_numpy(value).to(dtype=target.dtype, device=target.device))


def load_mamba_state_dict(fast_model, state_dict, *, layout: str = "mamba_ssm"):
    """Copy a mamba_ssm / mambapy / lrnnx ``Mamba`` state dict into a ``fast.models.Mamba`` of the same
    configuration (in place; rounded to the model's dtype). Returns the model."""
    params = mamba_state_dict_to_reference(state_dict, fast_model.config, layout=layout)
    _load_params(fast_model, params)
    return fast_model


# ------------------------------------------------------------------------------------------------
# RecurrentGemma's recurrent block (RG-LRU)
# ------------------------------------------------------------------------------------------------

_RG_KEYS = {  # RecurrentGemma key -> reference field
    "linear_x.weight": "linear_x_weight",
    "linear_x.bias": "linear_x_bias",
    "linear_y.weight": "linear_y_weight",
    "linear_y.bias": "linear_y_bias",
    "conv_1d.w": "conv_1d_weight",
    "conv_1d.b": "conv_1d_bias",
    "rg_lru.a_param": "a_param",
    "rg_lru.input_gate.w": "input_gate_weight",
    "rg_lru.input_gate.b": "input_gate_bias",
    "rg_lru.a_gate.w": "a_gate_weight",
    "rg_lru.a_gate.b": "a_gate_bias",
    "linear_out.weight": "linear_out_weight",
    "linear_out.bias": "linear_out_bias",
}


def recurrentgemma_state_dict_to_reference(state_dict, config):
    """A RecurrentGemma torch ``RecurrentBlock`` state dict (keys in the module docstring) -> the reference's
    ``RGLRUParams``, checked against ``config`` (a reference ``RGLRU``'s config: d_model, d_state = lru_width,
    num_heads, conv1d_width)."""
    from reference.models.ltv.rglru import RGLRUParams

    config = _config(config)
    try:
        H = int(config["d_model"])
    except KeyError:
        raise ValueError("config: missing 'd_model' (expected a reference RGLRU's config)") from None
    D = int(config.get("d_state") or H)
    heads, W = int(config.get("num_heads", 1)), int(config.get("conv1d_width", 4))
    if D % heads:
        raise ValueError(f"config: num_heads = {heads} does not divide the RG-LRU width {D}")
    blk = D // heads
    shapes = {
        "linear_x.weight": (D, H), "linear_x.bias": (D,), "linear_y.weight": (D, H), "linear_y.bias": (D,),
        "conv_1d.w": (W, D), "conv_1d.b": (D,), "rg_lru.a_param": (D,),
        "rg_lru.input_gate.w": (heads, blk, blk), "rg_lru.input_gate.b": (heads, blk),
        "rg_lru.a_gate.w": (heads, blk, blk), "rg_lru.a_gate.b": (heads, blk),
        "linear_out.weight": (H, D), "linear_out.bias": (H,),
    }
    sd = _read(state_dict, shapes, {})
    return RGLRUParams(**{field: sd[key] for key, field in _RG_KEYS.items()})


def reference_to_recurrentgemma_state_dict(params) -> dict[str, np.ndarray]:
    """The inverse of ``recurrentgemma_state_dict_to_reference``: ``RGLRUParams`` -> RecurrentGemma's keys."""
    return {key: np.array(getattr(params, field), dtype=np.float64) for key, field in _RG_KEYS.items()}


def load_recurrentgemma_state_dict(fast_model, state_dict):
    """Copy a RecurrentGemma ``RecurrentBlock`` state dict into a ``fast.models.RGLRU`` of the same configuration
    (in place). Returns the model."""
    _load_params(fast_model, recurrentgemma_state_dict_to_reference(state_dict, fast_model.config))
    return fast_model


# ------------------------------------------------------------------------------------------------
# lrnnx's LRU
# ------------------------------------------------------------------------------------------------

_LRU_KEYS = ("nu_log", "theta_log", "B_re", "B_im", "C_re", "C_im", "D", "gamma_log")


def lrnnx_lru_state_dict_to_reference(state_dict, config):
    """An lrnnx ``LRU`` state dict (keys in the module docstring) -> the reference's ``LRUParams`` (log_dt = 0),
    checked against ``config`` (a reference ``LRU``'s config: d_model, d_state)."""
    from reference.models.lti.lru import LRUParams

    config = _config(config)
    try:
        H, N = int(config["d_model"]), int(config["d_state"])
    except KeyError as err:
        raise ValueError(f"config: missing {err.args[0]!r} (expected a reference LRU's config)") from None
    shapes = {"nu_log": (N,), "theta_log": (N,), "B_re": (N, H), "B_im": (N, H), "C_re": (H, N), "C_im": (H, N),
              "D": (H,), "gamma_log": (N,)}
    sd = _read(state_dict, shapes, {})
    return LRUParams(**sd, log_dt=np.zeros(N))


def reference_to_lrnnx_lru_state_dict(params) -> dict[str, np.ndarray]:
    """The inverse of ``lrnnx_lru_state_dict_to_reference``. ``log_dt`` is dropped: lrnnx's LRU is the reference's
    under its ``"native"`` rule, which does not read it."""
    return {key: np.array(getattr(params, key), dtype=np.float64) for key in _LRU_KEYS}


def load_lrnnx_lru_state_dict(fast_model, state_dict):
    """Copy an lrnnx ``LRU`` state dict into a ``fast.models.LRU`` of the same configuration (in place)."""
    _load_params(fast_model, lrnnx_lru_state_dict_to_reference(state_dict, fast_model.config))
    return fast_model


# ------------------------------------------------------------------------------------------------
# s5-pytorch's S5
# ------------------------------------------------------------------------------------------------


def s5_pytorch_state_dict_to_reference(state_dict, config):
    """An s5-pytorch ``S5`` state dict (keys in the module docstring) -> the reference's ``S5Params``, checked
    against ``config`` (a reference ``S5``'s config with ``conj_sym=False`` and ``bidirectional=False``)."""
    from reference.models.lti.s5 import S5Params

    config = _config(config)
    try:
        H, P = int(config["d_model"]), int(config["d_state"])
    except KeyError as err:
        raise ValueError(f"config: missing {err.args[0]!r} (expected a reference S5's config)") from None
    if config.get("conj_sym", True) or config.get("bidirectional", False):
        raise ValueError("config: s5-pytorch's S5 stores every mode and runs one direction: expected conj_sym=False "
                         "and bidirectional=False")
    shapes = {"seq.Lambda": (P,), "seq.B": (P, H, 2), "seq.C": (H, P), "seq.D": (H,), "seq.log_step": (P,)}
    sd = _read(state_dict, shapes, {}, complex_keys=("seq.Lambda", "seq.C"))
    return S5Params(
        Lambda_re=sd["seq.Lambda"].real.copy(),
        Lambda_im=sd["seq.Lambda"].imag.copy(),
        B_tilde=sd["seq.B"][..., 0] + 1j * sd["seq.B"][..., 1],  # (P, H)
        C_tilde=sd["seq.C"],
        D=sd["seq.D"],
        log_step=sd["seq.log_step"],
    )


def reference_to_s5_pytorch_state_dict(params) -> dict[str, np.ndarray]:
    """The inverse of ``s5_pytorch_state_dict_to_reference`` (no reverse C: s5-pytorch's S5 is unidirectional
    here)."""
    if params.C_tilde_reverse is not None:
        raise ValueError("params.C_tilde_reverse: a bidirectional S5 has no s5-pytorch counterpart here")
    B = np.asarray(params.B_tilde, dtype=np.complex128)  # (P, H)
    return {
        "seq.Lambda": np.asarray(params.Lambda_re, dtype=np.float64) + 1j * np.asarray(params.Lambda_im),
        "seq.B": np.stack([B.real, B.imag], axis=-1),  # (P, H, 2)
        "seq.C": np.asarray(params.C_tilde, dtype=np.complex128),
        "seq.D": np.asarray(params.D, dtype=np.float64),
        "seq.log_step": np.asarray(params.log_step, dtype=np.float64),
    }


# ------------------------------------------------------------------------------------------------
# lrnnx's RG-LRU
# ------------------------------------------------------------------------------------------------


def _rglru_sizes(config):
    config = _config(config)
    try:
        H = int(config["d_model"])
    except KeyError:
        raise ValueError("config: missing 'd_model' (expected a reference RGLRU's config)") from None
    D, heads, W = int(config.get("d_state") or H), int(config.get("num_heads", 1)), int(config.get("conv1d_width", 4))
    if heads != 1:
        raise ValueError(f"config: lrnnx's RG-LRU has dense gates, the reference's num_heads = 1; got {heads}")
    return H, D, W


def lrnnx_rglru_state_dict_to_reference(state_dict, config):
    """An lrnnx ``RGLRU`` state dict (built with ``bias=True``; keys in the module docstring) -> the reference's
    ``RGLRUParams`` (num_heads = 1)."""
    from reference.models.ltv.rglru import RGLRUParams

    H, D, W = _rglru_sizes(config)
    shapes = {
        "gate_proj.weight": (D, H), "gate_proj.bias": (D,), "in_proj.weight": (D, H), "in_proj.bias": (D,),
        "conv1d.weight": (D, 1, W), "conv1d.bias": (D,), "recurrent_gate_proj.weight": (D, D),
        "recurrent_gate_proj.bias": (D,), "input_gate_proj.weight": (D, D), "input_gate_proj.bias": (D,),
        "a_log": (D, 1), "out_proj.weight": (H, D), "out_proj.bias": (H,),
    }
    sd = _read(state_dict, shapes, {})
    return RGLRUParams(
        linear_x_weight=sd["in_proj.weight"], linear_x_bias=sd["in_proj.bias"],
        linear_y_weight=sd["gate_proj.weight"], linear_y_bias=sd["gate_proj.bias"],
        conv_1d_weight=sd["conv1d.weight"][:, 0, :].T.copy(), conv_1d_bias=sd["conv1d.bias"],  # (W, D)
        a_param=-sd["a_log"][:, 0],
        input_gate_weight=sd["input_gate_proj.weight"].T[None].copy(),  # (1, D_in, D_out)
        input_gate_bias=sd["input_gate_proj.bias"][None],
        a_gate_weight=sd["recurrent_gate_proj.weight"].T[None].copy(), a_gate_bias=sd["recurrent_gate_proj.bias"][None],
        linear_out_weight=sd["out_proj.weight"], linear_out_bias=sd["out_proj.bias"],
    )


def reference_to_lrnnx_rglru_state_dict(params) -> dict[str, np.ndarray]:
    """The inverse of ``lrnnx_rglru_state_dict_to_reference`` (num_heads must be 1)."""
    p = params
    if np.shape(p.input_gate_weight)[0] != 1:
        raise ValueError("params.input_gate_weight: lrnnx's RG-LRU has dense gates; only num_heads = 1 converts")
    sd = {
        "gate_proj.weight": p.linear_y_weight, "gate_proj.bias": p.linear_y_bias,
        "in_proj.weight": p.linear_x_weight, "in_proj.bias": p.linear_x_bias,
        "conv1d.weight": np.asarray(p.conv_1d_weight).T[:, None, :],  # (D, 1, W)
        "conv1d.bias": p.conv_1d_bias,
        "recurrent_gate_proj.weight": np.asarray(p.a_gate_weight)[0].T, "recurrent_gate_proj.bias": p.a_gate_bias[0],
        "input_gate_proj.weight": np.asarray(p.input_gate_weight)[0].T,
        "input_gate_proj.bias": p.input_gate_bias[0],
        "a_log": -np.asarray(p.a_param)[:, None],  # (D, 1)
        "out_proj.weight": p.linear_out_weight, "out_proj.bias": p.linear_out_bias,
    }
    return {k: np.array(v, dtype=np.float64) for k, v in sd.items()}
