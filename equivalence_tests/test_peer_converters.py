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


def test_lrnnx_lru_state_dict_round_trip_has_the_peer_layout():
    ref = reference.models.LRU(3, 5, seed=4)
    sd = converters.reference_to_lrnnx_lru_state_dict(ref.params)
    # lrnnx/models/lti/lru.py _init_parameters: nu_log, theta_log (N,), B_re, B_im (N, H), C_re, C_im (H, N),
    # D (H,), gamma_log (N,)
    assert {k: v.shape for k, v in sd.items()} == {
        "nu_log": (5,), "theta_log": (5,), "B_re": (5, 3), "B_im": (5, 3), "C_re": (3, 5), "C_im": (3, 5),
        "D": (3,), "gamma_log": (5,),
    }
    _params_equal(converters.lrnnx_lru_state_dict_to_reference(sd, ref.config), ref.params)


def test_lrnnx_lru_drops_the_step_the_native_rule_does_not_read():
    ref = reference.models.LRU(3, 5, seed=4)
    ref.params.log_dt = np.full(5, 0.5)
    back = converters.lrnnx_lru_state_dict_to_reference(converters.reference_to_lrnnx_lru_state_dict(ref.params),
                                                        ref.config)
    np.testing.assert_array_equal(back.log_dt, np.zeros(5))
    twin = reference.models.LRU(3, 5, seed=0)
    twin.params = back
    u = np.random.default_rng(3).standard_normal((1, 6, 3))
    assert_close(twin.forward(u), ref.forward(u), "float64", "LRU under 'native' without its log_dt")


def test_loaded_fast_lru_matches_the_reference_with_those_numbers():
    source = reference.models.LRU(3, 5, seed=9)
    sd = converters.reference_to_lrnnx_lru_state_dict(source.params)
    model = fast.models.LRU(3, 5, seed=0, dtype=torch.float64)
    converters.load_lrnnx_lru_state_dict(model, sd)
    u = np.random.default_rng(2).standard_normal((2, 8, 3))
    assert_close(model(torch.from_numpy(u)), source.forward(u), "float64", "fast LRU loaded from an lrnnx state dict")


# ------------------------------------------------------------------------------------------------
# The peer modules themselves, without the peers (make test's .venv has none of them)
# ------------------------------------------------------------------------------------------------


def test_peer_modules_import_without_their_peers_and_name_valid_adapters():
    import importlib

    import equivalence_tests.conformance as cf
    from equivalence_tests.peers import PEERS

    names = set()
    for peer in PEERS:
        module = importlib.import_module(peer.module)
        assert module.PEER == peer.name and module.VERSION == peer.version
        assert module.ADAPTERS, peer.name
        for cls in module.ADAPTERS:
            assert issubclass(cls, (cf.DiscretizationAdapter, cf.SelectiveScanAdapter, cf.ModelAdapter)), cls
            assert cf.properties_for(cls()), cls  # the kit accepts the declaration (model name, rules, options)
            names.add(cls.__name__)
    from equivalence_tests.peers.explanations import EXPLANATIONS

    assert {adapter for adapter, _ in EXPLANATIONS} <= names


def test_peer_report_lists_a_peer_that_is_not_installed_as_skipped(tmp_path, monkeypatch):
    from equivalence_tests.peers import __main__ as peers_main
    from equivalence_tests.peers import _loading

    monkeypatch.setattr(_loading, "available", lambda package: False)
    out = tmp_path / "REPORT.md"
    assert peers_main.main(["--max-examples", "1", "--out", str(out)]) == 0
    text = out.read_text()
    for name, version in (("lrnnx", "1.0.0.post1"), ("mamba-ssm", "2.3.2.post1"), ("mambapy", "1.2.0"),
                          ("recurrentgemma", "1.0.1"), ("s5-pytorch", "0.2.1")):
        assert f"Skipped: {name} is not installed (make peers installs {name}=={version} in .venv-peers)" in text


def test_peer_report_refuses_a_bad_example_count():
    from equivalence_tests.peers import __main__ as peers_main

    with pytest.raises(SystemExit):
        peers_main.main(["--max-examples", "0"])


@pytest.mark.parametrize("H, P, blocks", [(3, 4, 1), (2, 6, 2), (1, 1, 1)])
def test_s5_pytorch_state_dict_round_trip_has_the_peer_layout(H, P, blocks):
    ref = reference.models.S5(H, P, seed=6, blocks=blocks, conj_sym=False, C_init="lecun_normal")
    sd = converters.reference_to_s5_pytorch_state_dict(ref.params)
    # s5/s5_model.py S5SSM with bcInit="dense": Lambda (P,) complex64, B (P, H, 2) float, C (H, P) complex64,
    # D (H,), log_step (P,), under the wrapper S5's attribute "seq"
    assert {k: v.shape for k, v in sd.items()} == {
        "seq.Lambda": (P,), "seq.B": (P, H, 2), "seq.C": (H, P), "seq.D": (H,), "seq.log_step": (P,),
    }
    assert np.iscomplexobj(sd["seq.Lambda"]) and np.iscomplexobj(sd["seq.C"]) and not np.iscomplexobj(sd["seq.B"])
    _params_equal(converters.s5_pytorch_state_dict_to_reference(sd, ref.config), ref.params)


def test_s5_pytorch_needs_every_mode_stored():
    ref = reference.models.S5(2, 4, seed=0)  # conj_sym=True: half the modes
    sd = converters.reference_to_s5_pytorch_state_dict(reference.models.S5(2, 4, seed=0, conj_sym=False).params)
    with pytest.raises(ValueError, match="expected conj_sym=False"):
        converters.s5_pytorch_state_dict_to_reference(sd, ref.config)


def test_lrnnx_rglru_state_dict_round_trip_has_the_peer_layout():
    ref = reference.models.RGLRU(3, 6, seed=8, num_heads=1, conv1d_width=3)
    sd = converters.reference_to_lrnnx_rglru_state_dict(ref.params)
    # lrnnx/models/ltv/rglru.py with bias=True, d_inner = 6: nn.Linear layers (out, in), depthwise Conv1d
    # (D, 1, W), a_log (d_inner, d_state = 1)
    assert {k: v.shape for k, v in sd.items()} == {
        "gate_proj.weight": (6, 3), "gate_proj.bias": (6,), "in_proj.weight": (6, 3), "in_proj.bias": (6,),
        "conv1d.weight": (6, 1, 3), "conv1d.bias": (6,), "recurrent_gate_proj.weight": (6, 6),
        "recurrent_gate_proj.bias": (6,), "input_gate_proj.weight": (6, 6), "input_gate_proj.bias": (6,),
        "a_log": (6, 1), "out_proj.weight": (3, 6), "out_proj.bias": (3,),
    }
    # nn.Linear computes x @ W.T: the reference's [in, out] gate matrix is that weight transposed
    x = np.random.default_rng(0).standard_normal(6)
    np.testing.assert_allclose(sd["input_gate_proj.weight"] @ x, x @ ref.params.input_gate_weight[0], rtol=1e-14)
    # lrnnx's a = sigmoid(a_log) is the reference's sigmoid(-a_param)
    np.testing.assert_allclose(1 / (1 + np.exp(-sd["a_log"][:, 0])), 1 / (1 + np.exp(ref.params.a_param)))
    _params_equal(converters.lrnnx_rglru_state_dict_to_reference(sd, ref.config), ref.params)


def test_lrnnx_rglru_needs_one_head():
    ref = reference.models.RGLRU(2, 4, seed=0, num_heads=2)
    with pytest.raises(ValueError, match="only num_heads = 1 converts"):
        converters.reference_to_lrnnx_rglru_state_dict(ref.params)
    with pytest.raises(ValueError, match="num_heads = 1; got 2"):
        converters.lrnnx_rglru_state_dict_to_reference({}, ref.config)
