"""The reference RG-LRU and Griffin's recurrent block: forward == step == chunked forward, causality,
RecurrentGemma's equations written out as loops, the segment reset, r_t = 0 keeps the state, the
normalization keeps the stationary variance, and irregular timesteps (reference/README.md §RG-LRU, §Identities 15, 17,
19, 20)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st

from equivalence_tests.strategies import gaps, seeds
from equivalence_tests.tolerances import assert_close
from reference.init import softplus, softplus_inverse
from reference.models import RGLRU

model_lengths = st.integers(1, 17)
all_resets = st.booleans()


@st.composite
def rglru_setups(draw, length=model_lengths, segment_reset=all_resets):
    """(model, u, tau): a small recurrent block, an input (B, L, H) and, half the time, event gaps > 0."""
    H, heads = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    D = heads * draw(st.integers(1, 2))
    Bsz, L = draw(st.integers(1, 3)), draw(length)
    model = RGLRU(
        H, D, seed=draw(seeds), num_heads=heads, conv1d_width=draw(st.integers(1, 4)), segment_reset=draw(segment_reset)
    )
    rng = np.random.default_rng(draw(seeds))
    u = rng.normal(size=(Bsz, L, H))
    tau = draw(gaps(L, batch=Bsz)) if draw(st.booleans()) else None
    return model, u, tau


@st.composite
def segment_positions(draw, Bsz: int, L: int):
    """(B, L) positions in the document: 0 where a document starts, counting up in between."""
    rng = np.random.default_rng(draw(seeds))
    starts = rng.uniform(size=(Bsz, L)) < 0.25
    offset = rng.integers(0, 3, size=Bsz)  # the first document may have started before t = 0
    seg = np.empty((Bsz, L), dtype=np.int64)
    for b in range(Bsz):
        pos = offset[b]
        for t in range(L):
            pos = 0 if starts[b, t] else pos
            seg[b, t] = pos
            pos += 1
    return seg


def cut(a, s):
    """a[:, s], or None for a missing argument."""
    return None if a is None else a[:, s]


def run_steps(model, u, tau, state=None):
    state = model.initial_state(u.shape[0]) if state is None else state
    ys = []
    for t in range(u.shape[1]):
        y_t, state = model.step(u[:, t], state, integration_timesteps=None if tau is None else tau[:, t])
        ys.append(y_t)
    return np.stack(ys, axis=1), state


def assert_states_close(actual, expected, what):
    assert_close(actual.conv_state, expected.conv_state, "float64", f"{what}: conv state")
    assert_close(actual.ssm_state, expected.ssm_state, "float64", f"{what}: ssm state")
    np.testing.assert_array_equal(actual.segment_pos, expected.segment_pos)


@given(rglru_setups())
def test_rglru_step_equals_forward(setup):
    model, u, tau = setup
    y, state = model.forward(u, integration_timesteps=tau, return_state=True)
    y_steps, state_steps = run_steps(model, u, tau)
    assert_close(y_steps, y, "float64", "outputs")
    assert_states_close(state_steps, state, "step vs forward")


@given(rglru_setups(length=st.integers(2, 17)), st.data())
def test_rglru_chunked_forward_equals_one_shot(setup, data):
    model, u, tau = setup
    Bsz, L, _ = u.shape
    k = data.draw(st.integers(1, L - 1), label="split")
    seg = data.draw(segment_positions(Bsz, L), label="segment_pos") if data.draw(st.booleans()) else None
    y, state = model.forward(u, integration_timesteps=tau, segment_pos=seg, return_state=True)
    y1, s1 = model.forward(
        u[:, :k],
        integration_timesteps=cut(tau, slice(None, k)),
        segment_pos=cut(seg, slice(None, k)),
        return_state=True,
    )
    y2, s2 = model.forward(
        u[:, k:],
        integration_timesteps=cut(tau, slice(k, None)),
        segment_pos=cut(seg, slice(k, None)),
        initial_state=s1,
        return_state=True,
    )
    assert_close(np.concatenate([y1, y2], axis=1), y, "float64", "outputs")
    assert_states_close(s2, state, "chunked vs one shot")
    if seg is None:  # a forward continued by steps gives the same as well
        y2_steps, _ = run_steps(model, u[:, k:], None if tau is None else tau[:, k:], s1)
        assert_close(y2_steps, y2, "float64", "steps after a forward")


@given(rglru_setups(length=st.integers(2, 17)), st.data())
def test_rglru_forward_is_causal(setup, data):
    model, u, tau = setup
    t0 = data.draw(st.integers(1, u.shape[1] - 1), label="perturbed step")
    y = model.forward(u, integration_timesteps=tau)
    u_p = u.copy()
    u_p[:, t0:] += 1.0
    y_p = model.forward(u_p, integration_timesteps=tau)
    np.testing.assert_array_equal(y_p[:, :t0], y[:, :t0])
    assert not np.allclose(y_p[:, t0], y[:, t0])


def recurrentgemma_equations(model: RGLRU, u):
    """RecurrentBlock.forward of recurrentgemma/torch (one document from t = 0) as explicit loops: the
    Conv1D reads w[W-1-s] * x[t-s]; BlockDiagonalLinear splits the width as (heads, D/heads)."""
    p, W, heads, c = model.params, model.conv1d_width, model.num_heads, model.c
    Bsz, L, _ = u.shape
    D = model.lru_width
    blk = D // heads
    out = np.zeros((Bsz, L, model.d_model))

    def block_linear(v, w, b):
        return np.concatenate([v[h * blk : (h + 1) * blk] @ w[h] + b[h] for h in range(heads)])

    for bi in range(Bsz):
        xs = u[bi] @ p.linear_x_weight.T + p.linear_x_bias  # (L, D)
        h = np.zeros(D)
        for t in range(L):
            y_branch = u[bi, t] @ p.linear_y_weight.T + p.linear_y_bias
            y_branch = 0.5 * y_branch * (1 + np.tanh(math.sqrt(2 / math.pi) * (y_branch + 0.044715 * y_branch**3)))
            x = p.conv_1d_bias + sum(p.conv_1d_weight[W - 1 - s] * xs[t - s] for s in range(min(W, t + 1)))
            gate_x = scipy.special.expit(block_linear(x, p.input_gate_weight, p.input_gate_bias))
            gate_a = scipy.special.expit(block_linear(x, p.a_gate_weight, p.a_gate_bias))
            log_a = -c * gate_a * np.log1p(np.exp(p.a_param))
            reset = t == 0 and model.segment_reset
            multiplier = 1.0 if reset else np.sqrt(1 - np.exp(2 * log_a))
            h = (0.0 if reset else np.exp(log_a)) * h + multiplier * gate_x * x
            out[bi, t] = (h * y_branch) @ p.linear_out_weight.T + p.linear_out_bias
    return out


@given(rglru_setups())
def test_rglru_forward_matches_recurrentgemma_equations(setup):
    model, u, _ = setup
    assert_close(model.forward(u), recurrentgemma_equations(model, u), "float64", "recurrent block")


@given(rglru_setups(segment_reset=st.just(True)), rglru_setups(segment_reset=st.just(True)).map(lambda s: s[1]))
def test_rglru_two_documents_in_one_sequence_equal_two_separate_runs(setup, u2_raw):
    # The reset (state dropped, no normalization) and the convolution's document mask isolate documents.
    model, u1, _ = setup
    Bsz, L1, H = u1.shape
    u2 = np.resize(u2_raw, (Bsz, u2_raw.shape[1], H))
    L2 = u2.shape[1]
    seg = np.concatenate([np.arange(L1), np.arange(L2)])
    y = model.forward(np.concatenate([u1, u2], axis=1), segment_pos=seg)
    assert_close(y[:, :L1], model.forward(u1), "float64", "first document")
    assert_close(y[:, L1:], model.forward(u2), "float64", "second document")


def gates(model: RGLRU, x):
    """(i_t, a_t) of the layer for x (B, L, D), from the parameters (heads split as (heads, D/heads))."""
    p, heads = model.params, model.num_heads
    xh = x.reshape(x.shape[:-1] + (heads, -1))
    gate_x = scipy.special.expit(np.einsum("blhi,hij->blhj", xh, p.input_gate_weight) + p.input_gate_bias)
    gate_a = scipy.special.expit(np.einsum("blhi,hij->blhj", xh, p.a_gate_weight) + p.a_gate_bias)
    return gate_x.reshape(x.shape), np.exp(-model.c * gate_a.reshape(x.shape) * softplus(p.a_param))


@given(rglru_setups(segment_reset=st.just(True)), st.data())
def test_rglru_layer_resets_where_segment_pos_is_zero(setup, data):
    # At a document start RecurrentGemma drops the state and does not normalize: h_t = i_t x_t.
    model, _, _ = setup
    rng = np.random.default_rng(data.draw(seeds))
    Bsz, L, D = data.draw(st.integers(1, 3)), data.draw(model_lengths), model.lru_width
    x = rng.normal(size=(Bsz, L, D))
    seg = data.draw(segment_positions(Bsz, L))
    h = model.rg_lru(x, seg, initial_state=rng.normal(size=(Bsz, D)))
    i_t, _ = gates(model, x)
    starts = seg == 0
    assert_close(h[starts], (i_t * x)[starts], "float64", "h at document starts")


@given(rglru_setups(segment_reset=st.just(False)), st.data())
def test_rglru_without_segment_reset_ignores_segment_pos_and_normalizes_every_step(setup, data):
    # lrnnx's form (reference/README.md §Other-libraries): no reset; the first step from a zero state is
    # sqrt(1 - a_0^2) i_0 x_0.
    model, _, _ = setup
    rng = np.random.default_rng(data.draw(seeds))
    Bsz, L, D = data.draw(st.integers(1, 3)), data.draw(model_lengths), model.lru_width
    x = rng.normal(size=(Bsz, L, D))
    h = model.rg_lru(x, data.draw(segment_positions(Bsz, L)))
    assert_close(h, model.rg_lru(x, np.arange(1, L + 1)), "float64", "outputs whatever segment_pos")
    i_t, a_t = gates(model, x)
    assert_close(h[:, 0], np.sqrt(1 - a_t[:, 0] ** 2) * i_t[:, 0] * x[:, 0], "float64", "first step")


def test_rglru_default_layer_call_is_one_document_from_t0():
    model = RGLRU(3, 4, num_heads=2, seed=1)
    x = np.random.default_rng(0).normal(size=(2, 5, 4))
    assert_close(model.rg_lru(x), model.rg_lru(x, np.arange(5)), "float64", "default segment_pos")
    assert not np.allclose(model.rg_lru(x), model.rg_lru(x, np.arange(1, 6)))


@given(rglru_setups(), st.data())
def test_rglru_with_recurrence_gate_zero_keeps_the_state_exactly(setup, data):
    # r_t = 0 gives a_t = a^0 = 1 and sqrt(1 - a_t^2) = 0: h_t = h_{t-1} bit for bit
    # (reference/README.md §Identities 20).
    model, u, tau = setup
    model.params.a_gate_weight[:] = 0.0
    model.params.a_gate_bias[:] = -1e300  # sigmoid(-1e300) == 0.0 exactly in float64
    rng = np.random.default_rng(data.draw(seeds))
    Bsz, D = u.shape[0], model.lru_width
    h0 = rng.normal(size=(Bsz, D))
    state = model.initial_state(Bsz)._replace(ssm_state=h0, segment_pos=np.full(Bsz, 7))
    _, final = model.forward(u, integration_timesteps=tau, initial_state=state, return_state=True)
    np.testing.assert_array_equal(final.ssm_state, h0)
    h = model.rg_lru(rng.normal(size=(Bsz, 4, D)), initial_state=h0)
    np.testing.assert_array_equal(h, np.broadcast_to(h0[:, None], h.shape))


@pytest.mark.parametrize("segment_reset", [True, False])
def test_rglru_normalization_keeps_the_stationary_variance_of_the_gated_input(segment_reset):
    # Fixed gates (zero gate weights): h_t = a h_{t-1} + sqrt(1 - a^2) i x_t with i.i.d. x ~ N(0, 1) has
    # stationary variance i^2 (reference/README.md §Identities 20). With the reset, h_0 = i x_0 already has it,
    # so every t
    # does; without it, var h_t = i^2 (1 - a^{2(t+1)}) reaches it after a burn-in. Checked on n = 4000
    # independent sequences: a sample variance has relative standard deviation sqrt(2 / (n - 1)); the bound
    # is 5 of those. (Without the normalization the variance would be i^2 / (1 - a^2) >= 1.7 i^2 here.)
    D, n, L = 4, 4000, 80
    model = RGLRU(1, D, seed=3, segment_reset=segment_reset)
    a = np.linspace(0.9, 0.95, D)  # inside the init range; a_t = a^4 <= 0.82 keeps the burn-in short
    model.params.a_param = softplus_inverse(-np.log(a))
    model.params.input_gate_weight[:] = 0.0
    model.params.a_gate_weight[:] = 0.0
    model.params.input_gate_bias[:] = 0.4  # i = sigmoid(0.4)
    model.params.a_gate_bias[:] = 0.0  # r = 1/2: a_t = a^4 with a in [0.9, 0.999]
    i = scipy.special.expit(0.4)
    a_t = a**4
    assert np.all(1 / (1 - a_t**2) >= 1.7) and np.all(a_t ** (2 * L) < 1e-12)
    x = np.random.default_rng(12345).normal(size=(n, L, D))
    h = model.rg_lru(x)
    bound = 5 * math.sqrt(2 / (n - 1))
    times = [0, 1, L // 2, L - 1] if segment_reset else [L - 1]
    for t in times:
        assert_close(h[:, t].var(axis=0), np.full(D, i**2), "float64", f"variance at t={t}", rtol=bound, atol=0.0)
    if not segment_reset:  # the burn-in is visible at t = 0: var h_0 = (1 - a_t^2) i^2
        assert_close(h[:, 0].var(axis=0), (1 - a_t**2) * i**2, "float64", "variance at t=0", rtol=bound, atol=0.0)


@given(rglru_setups())
def test_rglru_unit_gaps_equal_no_gaps(setup):
    model, u, _ = setup
    y_gaps = model.forward(u, integration_timesteps=np.ones(u.shape[:2]))
    assert_close(y_gaps, model.forward(u), "float64", "outputs")


@given(rglru_setups(), st.floats(0.05, 4.0))
def test_rglru_constant_gap_equals_a_rescaled_decay_rate(setup, k):
    # a_t = a^{c r_t tau}: a constant gap k is the same block with softplus(a_param) multiplied by k.
    model, u, _ = setup
    rescaled = RGLRU(
        model.d_model, model.d_state, num_heads=model.num_heads, conv1d_width=model.conv1d_width,
        segment_reset=model.segment_reset,
    )  # fmt: skip
    rescaled.params = type(model.params)(**vars(model.params))
    rescaled.params.a_param = softplus_inverse(k * softplus(model.params.a_param))
    y_gap = model.forward(u, integration_timesteps=np.full(u.shape[1], k))
    assert_close(y_gap, rescaled.forward(u), "float64", "outputs")


@given(st.integers(1, 6), st.integers(1, 3), seeds)
def test_rglru_init_and_parameter_layout_follow_recurrentgemma(blk, heads, seed):
    D, H = blk * heads, 3
    model = RGLRU(H, D, seed=seed, num_heads=heads)
    p = model.params
    a = np.exp(-softplus(p.a_param))  # a = sigmoid(-a_param)
    assert np.all((a >= 0.9) & (a <= 0.999 + 1e-8))
    shapes = {
        "a_param": (D,),
        "input_gate_weight": (heads, blk, blk),
        "input_gate_bias": (heads, blk),
        "a_gate_weight": (heads, blk, blk),
        "a_gate_bias": (heads, blk),
        "conv_1d_weight": (4, D),
        "linear_x_weight": (D, H),
        "linear_out_weight": (H, D),
    }
    assert {k: getattr(p, k).shape for k in shapes} == shapes
    assert model.lru_width == model.d_state == D and RGLRU(5).lru_width == 5


def test_rglru_declares_its_native_rule_and_refuses_others():
    assert RGLRU.discretizations == ("rglru",) and RGLRU.default_discretization == "rglru"
    assert RGLRU(2).discretization == "rglru"
    with pytest.raises(ValueError, match=r"RGLRU.*'zoh'.*supported.*rglru"):
        RGLRU(2, None, discretization="zoh")


def _forward(**kwargs):
    return lambda: RGLRU(2, 4, num_heads=2).forward(np.ones((2, 3, 2)), **kwargs)


BAD_CALLS = {
    "d_state zero": (lambda: RGLRU(2, 0), "d_state"),
    "num_heads not dividing": (lambda: RGLRU(2, 4, num_heads=3), "num_heads"),
    "num_heads zero": (lambda: RGLRU(2, 4, num_heads=0), "num_heads"),
    "conv width zero": (lambda: RGLRU(2, 4, conv1d_width=0), "conv1d_width"),
    "c zero": (lambda: RGLRU(2, 4, c=0.0), "c"),
    "radii reversed": (lambda: RGLRU(2, 4, min_rad=0.99, max_rad=0.9), "min_rad"),
    "u wrong width": (lambda: RGLRU(2, 4).forward(np.ones((2, 3, 4))), "u"),
    "gaps wrong shape": (_forward(integration_timesteps=np.ones((3, 3))), "integration_timesteps"),
    "gaps negative": (_forward(integration_timesteps=-np.ones(3)), "integration_timesteps"),
    "gaps zero": (_forward(integration_timesteps=np.array([1.0, 0.0, 1.0])), "integration_timesteps"),
    "gaps inf": (_forward(integration_timesteps=np.array([1.0, np.inf, 1.0])), "integration_timesteps"),
    "segment_pos negative": (_forward(segment_pos=np.array([0, -1, 1])), "segment_pos"),
    "segment_pos float": (_forward(segment_pos=np.array([0.0, 1.0, 2.0])), "segment_pos"),
    "segment_pos wrong shape": (_forward(segment_pos=np.arange(4)), "segment_pos"),
    "initial state 2 fields": (_forward(initial_state=(np.zeros((2, 3, 4)), np.zeros((2, 4)))), "initial_state"),
    "step gaps zero": (
        lambda: RGLRU(2).step(np.ones((2, 2)), RGLRU(2).initial_state(2), integration_timesteps=np.zeros(2)),
        "integration_timesteps",
    ),
    "step u_t wrong shape": (lambda: RGLRU(2).step(np.ones(2), RGLRU(2).initial_state(1)), "u_t"),
    "layer x wrong width": (lambda: RGLRU(2, 4).rg_lru(np.ones((1, 3, 2))), "x"),
    "layer gaps wrong shape": (
        lambda: RGLRU(2, 4).rg_lru(np.ones((1, 3, 4)), integration_timesteps=np.ones(2)),
        "integration_timesteps",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS), ids=list(BAD_CALLS))
def test_rglru_bad_input_raises_value_error_naming_the_argument(case):
    call, needle = BAD_CALLS[case]
    with pytest.raises(ValueError, match=needle):
        call()
