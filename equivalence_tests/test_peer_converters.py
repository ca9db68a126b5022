"""The peers' parameter converters (equivalence_tests/peers/converters.py), tested without the peers installed.

The expected keys and shapes below were written from reading the peers' module definitions (mamba_ssm 2.3.2.post1
``modules/mamba_simple.py``, mambapy 1.2.0 ``mamba.py``, lrnnx 1.0.0.post1 ``models/ltv/mamba.py``, recurrentgemma
1.0.1 ``torch/modules.py`` and ``torch/layers.py``), not from the converters. A converter is checked three ways:
the state dict it writes has exactly those keys and shapes; reading it back gives the same parameters; and a
``fast`` model loaded from a state dict computes what the reference model built from the same numbers computes.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import fast.models
import reference.models
from equivalence_tests.peers import converters
from equivalence_tests.tolerances import assert_close


def _mamba_expected_shapes(H, N, expand=2, d_conv=4, bias=False, conv_bias=True, lrnnx=False):
    D, R = expand * H, math.ceil(H / 16)
    shapes = {
        "in_proj.weight": (2 * D, H),  # nn.Linear(d_model, 2 * d_inner, bias=bias)
        "conv1d.weight": (D, 1, d_conv),  # nn.Conv1d(D, D, kernel_size=d_conv, groups=D, bias=conv_bias)
        "x_proj.weight": (R + 2 * N, D),  # nn.Linear(d_inner, dt_rank + 2 d_state, bias=False)
        "dt_proj.weight": (D, R),
        "dt_proj.bias": (D,),  # nn.Linear(dt_rank, d_inner, bias=True)
        "A_log": (D, N),
        "D": (D,),
        "out_proj.weight": (H, D),
    }
    if conv_bias:
        shapes["conv1d.bias"] = (D,)
    if bias:
        shapes["in_proj.bias"] = (2 * D,)
        shapes["out_proj.bias"] = (H,)
    if lrnnx:  # lrnnx's event-mode projection, nn.Linear(dt_rank, d_inner, bias=True)
        shapes["dtA_proj.weight"] = (D, R)
        shapes["dtA_proj.bias"] = (D,)
    return shapes


def _params_equal(a, b):
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if x is None or y is None:
            assert x is None and y is None, field.name
        else:
            np.testing.assert_array_equal(x, y, err_msg=field.name)


@pytest.mark.parametrize("layout", converters.MAMBA_LAYOUTS)
@pytest.mark.parametrize("options", [{}, {"bias": True}, {"conv_bias": False}, {"expand": 1, "d_conv": 3}])
def test_mamba_state_dict_round_trip_has_the_peer_layout(layout, options):
    ref = reference.models.Mamba(20, 3, seed=1, **options)
    sd = converters.reference_to_mamba_state_dict(ref.params, layout=layout)
    expected = _mamba_expected_shapes(
        20, 3, expand=options.get("expand", 2), d_conv=options.get("d_conv", 4), bias=options.get("bias", False),
        conv_bias=options.get("conv_bias", True), lrnnx=layout == "lrnnx",
    )
    assert {k: v.shape for k, v in sd.items()} == expected
    np.testing.assert_array_equal(sd["conv1d.weight"][:, 0, :], ref.params.conv1d_weight)
    back = converters.mamba_state_dict_to_reference(sd, ref.config, layout=layout)
    _params_equal(back, ref.params)


def test_mamba_state_dict_accepts_torch_tensors():
    ref = reference.models.Mamba(4, 2, seed=3)
    sd = {k: torch.from_numpy(v) for k, v in converters.reference_to_mamba_state_dict(ref.params).items()}
    _params_equal(converters.mamba_state_dict_to_reference(sd, ref), ref.params)


def test_loaded_fast_mamba_matches_the_reference_with_those_numbers():
    source = reference.models.Mamba(6, 4, seed=11)  # the numbers a peer's module would hold
    sd = converters.reference_to_mamba_state_dict(source.params)
    model = fast.models.Mamba(6, 4, seed=0, dtype=torch.float64)  # another initialization, overwritten
    converters.load_mamba_state_dict(model, sd)
    u = np.random.default_rng(0).standard_normal((2, 7, 6))
    y = model(torch.from_numpy(u))
    assert_close(y, source.forward(u), "float64", "fast Mamba loaded from a mamba_ssm state dict")
    assert not np.allclose(reference.models.Mamba(6, 4, seed=0).forward(u), source.forward(u))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sd: sd.pop("A_log"), "missing keys ['A_log']"),
        (lambda sd: sd.__setitem__("extra.weight", np.zeros(1)), "unexpected keys ['extra.weight']"),
        (lambda sd: sd.__setitem__("D", np.zeros(3)), "state_dict['D']: expected shape"),
        (lambda sd: sd.__setitem__("D", np.full(16, np.nan)), "state_dict['D']: contains NaN"),
    ],
)
def test_mamba_state_dict_bad_input_names_the_key(edit, message):
    ref = reference.models.Mamba(8, 2, seed=0)
    sd = converters.reference_to_mamba_state_dict(ref.params)
    edit(sd)
    with pytest.raises(ValueError) as info:
        converters.mamba_state_dict_to_reference(sd, ref.config)
    assert message in str(info.value)


def test_mamba_layout_name_is_checked():
    ref = reference.models.Mamba(8, 2, seed=0)
    with pytest.raises(ValueError, match="layout: expected one of"):
        converters.reference_to_mamba_state_dict(ref.params, layout="mamba2")


def test_mamba_ssm_state_dict_does_not_load_as_lrnnx():
    ref = reference.models.Mamba(8, 2, seed=0)
    sd = converters.reference_to_mamba_state_dict(ref.params, layout="mamba_ssm")
    with pytest.raises(ValueError, match="missing keys"):
        converters.mamba_state_dict_to_reference(sd, ref.config, layout="lrnnx")


def _rg_expected_shapes(H, D, heads, W):
    blk = D // heads
    return {
        "linear_y.weight": (D, H), "linear_y.bias": (D,),  # nn.Linear(width, lru_width)
        "linear_x.weight": (D, H), "linear_x.bias": (D,),
        "linear_out.weight": (H, D), "linear_out.bias": (H,),  # nn.Linear(lru_width, width)
        "conv_1d.w": (W, D), "conv_1d.b": (D,),  # Conv1D: w [temporal_width, width], b [width]
        "rg_lru.a_param": (D,),
        "rg_lru.input_gate.w": (heads, blk, blk), "rg_lru.input_gate.b": (heads, blk),  # BlockDiagonalLinear
        "rg_lru.a_gate.w": (heads, blk, blk), "rg_lru.a_gate.b": (heads, blk),
    }


@pytest.mark.parametrize("H, D, heads, W", [(4, None, 1, 4), (3, 6, 2, 2), (5, 8, 4, 1)])
def test_recurrentgemma_state_dict_round_trip_has_the_peer_layout(H, D, heads, W):
    ref = reference.models.RGLRU(H, D, seed=2, num_heads=heads, conv1d_width=W)
    sd = converters.reference_to_recurrentgemma_state_dict(ref.params)
    assert {k: v.shape for k, v in sd.items()} == _rg_expected_shapes(H, D or H, heads, W)
    _params_equal(converters.recurrentgemma_state_dict_to_reference(sd, ref.config), ref.params)


def test_loaded_fast_rglru_matches_the_reference_with_those_numbers():
    source = reference.models.RGLRU(4, 6, seed=5, num_heads=2)
    rng = np.random.default_rng(1)
    for field in ("linear_x_bias", "conv_1d_bias", "input_gate_bias", "a_gate_bias", "linear_out_bias"):
        setattr(source.params, field, rng.standard_normal(getattr(source.params, field).shape))  # zeros at init
    sd = converters.reference_to_recurrentgemma_state_dict(source.params)
    model = fast.models.RGLRU(4, 6, seed=0, num_heads=2, dtype=torch.float64)
    converters.load_recurrentgemma_state_dict(model, sd)
    u = rng.standard_normal((2, 9, 4))
    assert_close(model(torch.from_numpy(u)), source.forward(u), "float64", "fast RGLRU loaded from RecurrentGemma")


def test_recurrentgemma_state_dict_checks_heads():
    ref = reference.models.RGLRU(4, 6, seed=0, num_heads=2)
    sd = converters.reference_to_recurrentgemma_state_dict(ref.params)
    config = dict(ref.config, num_heads=4)
    with pytest.raises(ValueError, match="rg_lru.input_gate.w"):
        converters.recurrentgemma_state_dict_to_reference(sd, dict(config, num_heads=1))
    with pytest.raises(ValueError, match="num_heads = 4 does not divide"):
        converters.recurrentgemma_state_dict_to_reference(sd, config)
