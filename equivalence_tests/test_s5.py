"""S5-specific checks (reference/README.md §HiPPO, §S5; §Identities 9, 11, 13, 14, 21): the block-diagonal HiPPO-N
initialization, the stored half with its 2 Re readout against the full conjugate-paired system, the
MIMO kernel against brute-force powers, conj_sym=False, and the (non-causal) bidirectional variant.
The generic LTI checks (modes agree, responses vs scipy, ...) are in the common LTI test file."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given
from hypothesis import strategies as st

from equivalence_tests.strategies import gaps, lengths, seeds, sequences
from equivalence_tests.tolerances import assert_close
from reference import DiscreteSSM, discretize_diagonal, linear_scan
from reference.init import hippo_legs
from reference.models.lti import S5

widths = st.integers(1, 4)
blocks = st.integers(1, 3)
half_blocks = st.integers(1, 4)  # conj_sym block size = 2 * half_block
discretizations = st.sampled_from(S5.discretizations)
c_inits = st.sampled_from(["trunc_standard_normal", "lecun_normal", "complex_normal"])


def run_system(sys: DiscreteSSM, u: np.ndarray) -> np.ndarray:
    """y = C x + D u of a diagonal DiscreteSSM with readout 'plain', by the step-by-step recurrence."""
    Bu = u @ sys.B_bar.T  # (B, L, S)
    x, _ = linear_scan(np.broadcast_to(sys.A_bar, Bu.shape), Bu)  # (B, L, S)
    return x @ sys.C.T + u @ sys.D.T  # (B, L, H)


def hippo_normal_part(block: int) -> np.ndarray:
    A, _, P = hippo_legs(block)
    return A + np.outer(P, P)  # (block, block): -1/2 I + skew


@st.composite
def s5_configs(draw, conj_sym=None):
    """(conj_sym, J, d_state): with conj_sym each block size is even, without it any size."""
    conj_sym = draw(st.booleans()) if conj_sym is None else conj_sym
    J = draw(blocks)
    block = 2 * draw(half_blocks) if conj_sym else draw(st.integers(1, 6))
    return conj_sym, J, J * block


@given(widths, s5_configs(), seeds)
def test_s5_init_eigenvalues_are_hippo_n_eigenvalues_tiled_per_block(H, config, seed):
    conj_sym, J, P = config
    model = S5(H, P, blocks=J, conj_sym=conj_sym, seed=seed)
    block = P // J
    S = hippo_normal_part(block)
    eig = np.linalg.eigvals(S)  # a general eigen-solver, independent of the eigh used by the model
    eig = eig[np.argsort(eig.imag)]
    kept = eig[: block // 2] if conj_sym else eig
    assert_close(model.eigenvalues(), np.tile(kept, J), "float64", "Lambda vs eig(HiPPO-N) per block")


@given(widths, s5_configs(), seeds)
def test_s5_eigenvectors_are_orthonormal_per_block_and_diagonalize_hippo_n(H, config, seed):
    conj_sym, J, P = config
    model = S5(H, P, blocks=J, conj_sym=conj_sym, seed=seed)
    V, P_s = model.V, model.eigenvalues().shape[0]
    assert V.shape == (P, P_s)
    assert_close(V.conj().T @ V, np.eye(P_s), "float64", "V^* V = I")
    S = scipy.linalg.block_diag(*([hippo_normal_part(P // J)] * J))  # (P, P)
    assert_close(S @ V, V * model.eigenvalues(), "float64", "S V = V diag(Lambda)")
    for j in range(J):  # block-diagonal: block j's modes live on block j's coordinates only
        rows = np.ones(P, dtype=bool)
        rows[j * (P // J) : (j + 1) * (P // J)] = False
        cols = slice(j * (P_s // J), (j + 1) * (P_s // J))
        assert np.all(V[rows][:, cols] == 0)
    if not conj_sym:
        assert_close(V @ V.conj().T, np.eye(P), "float64", "V V^* = I (all modes kept)")


@given(widths, s5_configs(conj_sym=False), seeds, c_inits)
def test_s5_B_tilde_is_V_inverse_times_a_real_B(H, config, seed, C_init):
    _, J, P = config
    model = S5(H, P, blocks=J, conj_sym=False, seed=seed, C_init=C_init)
    B = model.V @ model.params.B_tilde  # all modes kept: V B~ = V V^* B = B
    assert_close(B.imag, np.zeros(B.shape), "float64", "Im(V B~) = 0")


@given(widths, s5_configs(conj_sym=True), discretizations, seeds, sequences(batch=2, width=1))
def test_s5_stored_half_with_2re_matches_full_conjugate_paired_system(H, config, method, seed, u1):
    _, J, P = config
    model = S5(H, P, discretization=method, blocks=J, seed=seed)
    u = np.repeat(u1, H, axis=2) * np.arange(1, H + 1)  # (B, L, H)
    p = model.params
    Lambda = model.eigenvalues()
    dt = np.exp(p.log_step)
    # all P modes: (Lambda, conj Lambda), (B~, conj B~), (C~, conj C~), each pair with its step,
    # discretized from scratch; its plain readout must be real and equal 2 Re of the stored half.
    a_bar, B_bar = discretize_diagonal(
        np.concatenate([Lambda, Lambda.conj()]),
        np.concatenate([p.B_tilde, p.B_tilde.conj()]),
        np.concatenate([dt, dt]),
        "zoh" if method == "async" else method,  # without gaps an async S5 is its zoh system (every gap is 1)
    )
    full = DiscreteSSM(a_bar, B_bar, np.concatenate([p.C_tilde, p.C_tilde.conj()], axis=1), np.diag(p.D))
    y_full = run_system(full, u)
    assert_close(y_full.imag, np.zeros(y_full.shape), "float64", "imaginary part of the full system")
    for mode in S5.modes:
        assert_close(model.forward(u, mode=mode), y_full.real, "float64", f"2 Re(half) vs full ({mode})")


@given(widths, s5_configs(conj_sym=False), discretizations, seeds, sequences(batch=2, width=1))
def test_s5_scan_equals_convolution_and_recurrence_without_conj_sym(H, config, method, seed, u1):
    _, J, P = config
    model = S5(H, P, discretization=method, blocks=J, conj_sym=False, seed=seed)
    u = np.repeat(u1, H, axis=2) * np.arange(1, H + 1)
    y_scan = model.forward(u, mode="scan")
    assert_close(model.forward(u, mode="convolution"), y_scan, "float64", "convolution vs scan")
    assert_close(model.forward(u, mode="recurrence"), y_scan, "float64", "recurrence vs scan")
    assert model.ssm().readout == "re"


@given(widths, s5_configs(), discretizations, seeds, lengths)
def test_s5_mimo_kernel_matches_brute_force_matrix_powers(H, config, method, seed, L):
    conj_sym, J, P = config
    model = S5(H, P, discretization=method, blocks=J, conj_sym=conj_sym, seed=seed)
    K = model.kernel(L)
    assert K.shape == (L, H, H)
    assert_close(K, model.ssm().kernel(L), "float64", "kernel vs repeated multiplication")
    realified = model.ssm().realified()  # real 2x2 blocks, dense matrix powers
    powers = np.stack([realified.C @ np.linalg.matrix_power(realified.A_matrix, l) @ realified.B_bar
                       for l in range(L)])
    assert_close(K, powers, "float64", "kernel vs dense real matrix powers")


def unidirectional_copy(model: S5, C_tilde: np.ndarray, D: np.ndarray) -> S5:
    """A causal S5 with the bidirectional model's Lambda, B~ and steps, and the given C~, D."""
    twin = S5(model.d_model, model.d_state, discretization=model.discretization, blocks=model.blocks,
        conj_sym=model.conj_sym)
    twin.params = copy.deepcopy(model.params)
    twin.params.C_tilde, twin.params.D, twin.params.C_tilde_reverse = C_tilde, D, None
    return twin


@given(widths, s5_configs(), discretizations, seeds, sequences(batch=2, width=1))
def test_s5_bidirectional_is_a_forward_scan_plus_a_time_reversed_scan(H, config, method, seed, u1):
    conj_sym, J, P = config
    model = S5(H, P, discretization=method, blocks=J, conj_sym=conj_sym, bidirectional=True, seed=seed)
    u = np.repeat(u1, H, axis=2) * np.arange(1, H + 1)
    p = model.params
    forward_part = unidirectional_copy(model, p.C_tilde, p.D).forward(u)
    reverse_part = unidirectional_copy(model, p.C_tilde_reverse, np.zeros(H)).forward(u[:, ::-1])[:, ::-1]
    expected = forward_part + reverse_part
    for mode in S5.modes:
        assert_close(model.forward(u, mode=mode), expected, "float64", f"bidirectional ({mode})")
    assert_close(model.forward(u[0]), expected[0], "float64", "unbatched bidirectional")


def test_s5_bidirectional_is_not_causal_and_refuses_causal_interfaces():
    model = S5(2, 4, bidirectional=True, seed=1)
    u = np.zeros((1, 5, 2))
    u_late = u.copy()
    u_late[0, -1, 0] = 1.0
    # an input at the last step reaches the first output through the reversed scan
    assert np.abs(model.forward(u_late)[0, 0]).max() > 1e-6
    for call in (
        model.ssm,
        lambda: model.step(np.zeros((1, 2)), np.zeros((1, 2))),
        lambda: model.kernel(3),
        lambda: model.impulse_response(3),
        lambda: model.frequency_response(np.zeros(2)),
        model.to_dlti,
        lambda: model.initial_state(1),
    ):
        with pytest.raises(ValueError, match="bidirectional"):
            call()
    with pytest.raises(ValueError, match="initial_state"):
        model.forward(u, return_state=True)
    with pytest.raises(ValueError, match="initial_state"):
        model.forward(u, initial_state=np.zeros((1, 2)))
    with pytest.raises(ValueError, match="mode"):
        model.forward(u, mode="fft")


@given(widths, s5_configs(), seeds, st.floats(1e-4, 1e-2), st.floats(1.0, 100.0))
def test_s5_steps_are_one_per_stored_state_within_the_range(H, config, seed, dt_min, ratio):
    conj_sym, J, P = config
    model = S5(H, P, blocks=J, conj_sym=conj_sym, seed=seed, dt_min=dt_min, dt_max=dt_min * ratio)
    dt = np.exp(model.params.log_step)
    assert dt.shape == ((P // 2) if conj_sym else P,)
    # exp(log(dt)) may round one ulp outside the interval
    assert np.all(dt >= dt_min * (1 - 1e-14)) and np.all(dt <= dt_min * ratio * (1 + 1e-14))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(d_state=5), "d_state"),  # conj_sym needs pairs
        (dict(d_state=6, blocks=2), "d_state"),  # block size 3 is odd under conj_sym
        (dict(d_state=6, blocks=4), "blocks"),  # 4 does not divide 6
        (dict(blocks=0), "blocks"),
        (dict(conj_sym="yes"), "conj_sym"),
        (dict(bidirectional=1), "bidirectional"),
        (dict(clip_eigs=None), "clip_eigs"),
        (dict(C_init="normal"), "C_init"),
        (dict(dt_min=0.1, dt_max=0.01), "dt_min"),
        (dict(dt_min=0.0), "dt_min"),
        (dict(step_rescale=-1.0), "step_rescale"),
        (dict(discretization="euler"), "S5"),
        (dict(discretization="mamba"), "S5"),
    ],
)
def test_s5_bad_options_raise_value_error_naming_the_argument(kwargs, name):
    args = dict(d_model=2, d_state=4) | kwargs
    with pytest.raises(ValueError, match=name):
        S5(**args)


def test_s5_odd_state_without_conj_sym_is_valid():
    model = S5(2, 5, conj_sym=False, seed=0)
    assert model.ssm().state_size == 5 and np.all(np.abs(model.ssm().A_bar) < 1)


# ------------------------------------------------------------------------------------------------
# irregular time: integration_timesteps (reference/README.md §S5)
# ------------------------------------------------------------------------------------------------

irregular_modes = st.sampled_from(["scan", "recurrence"])


def brute_force_irregular(model: S5, u: np.ndarray, tau: np.ndarray, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """S5 on irregular time written out step by step: each event's (Lambda_bar_k, B_bar_k) from scipy.linalg.expm
    of the augmented matrix dt_k [[diag(Lambda), B_tilde], [0, 0]] (per-state steps scale the rows), or the
    bilinear solves; then x_k = Lambda_bar_k x_{k-1} + B_bar_k u_k, y_k = read(C~ x_k) + D u_k. ``u (B, L, H)``,
    ``tau (B, L)``, ``x0 (B, P_s)``."""
    p, method = model.params, model.discretization
    Lam = model.eigenvalues()  # (P_s,)
    dt = model.step_rescale * np.exp(p.log_step)  # (P_s,)
    P_s, H = p.B_tilde.shape
    scale = 2.0 if model.conj_sym else 1.0

    def rule(step_A, step_B):  # (P_s,) steps -> dense (P_s, P_s) A_bar, (P_s, H) B_bar
        if method == "bilinear":
            left = np.eye(P_s) - np.diag(Lam * step_A) / 2
            return np.linalg.solve(left, np.eye(P_s) + np.diag(Lam * step_A) / 2), np.linalg.solve(
                left, step_B[:, None] * p.B_tilde
            )
        M = np.zeros((P_s + H, P_s + H), dtype=complex)
        M[:P_s, :P_s] = np.diag(Lam * step_B)
        M[:P_s, P_s:] = step_B[:, None] * p.B_tilde
        E = scipy.linalg.expm(M)  # [[A_bar(step_B), B_bar(step_B)], [0, I]]
        A_bar = scipy.linalg.expm(np.diag(Lam * step_A))
        return A_bar, (p.B_tilde.copy() if method == "dirac" else E[:P_s, P_s:])

    Bsz, L, _ = u.shape
    y = np.empty((Bsz, L, H))
    x_last = np.empty_like(x0)
    for b in range(Bsz):
        x = x0[b]
        for k in range(L):
            step_B = dt if method == "async" else dt * tau[b, k]
            A_bar, B_bar = rule(dt * tau[b, k], step_B)
            x = A_bar @ x + B_bar @ u[b, k]
            y[b, k] = scale * (p.C_tilde @ x).real + p.D * u[b, k]
        x_last[b] = x
    return y, x_last


def random_state(seed: int, batch: int, P_s: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    return rng.normal(size=(batch, P_s)) + 1j * rng.normal(size=(batch, P_s))


@given(widths, s5_configs(), discretizations, seeds, irregular_modes, sequences(batch=2, length=st.integers(1, 9)))
def test_s5_unit_gaps_equal_the_lti_s5(H, config, method, seed, mode, u1):
    conj_sym, J, P = config
    model = S5(H, P, blocks=J, conj_sym=conj_sym, discretization=method, seed=seed)
    u = np.repeat(u1[..., :1], H, axis=-1) * np.arange(1, H + 1)  # (B, L, H)
    x0 = random_state(seed, 2, model.eigenvalues().shape[0])
    L = u.shape[1]
    y, x = model.forward(u, initial_state=x0, return_state=True, mode=mode)
    for tau in (np.ones(L), np.ones((2, L))):
        y_t, x_t = model.forward(u, integration_timesteps=tau, initial_state=x0, return_state=True, mode=mode)
        assert_close(y_t, y, "float64", f"{method} {mode}: unit gaps vs LTI output")
        assert_close(x_t, x, "float64", f"{method} {mode}: unit gaps vs LTI final state")
    y_s, x_s = model.step(u[:, 0], x0, integration_timesteps=np.ones(2))
    assert_close(y_s, model.step(u[:, 0], x0)[0], "float64", f"{method}: step with a unit gap")


@given(widths, s5_configs(), seeds, st.floats(0.05, 5.0), st.floats(0.05, 5.0), irregular_modes)
def test_s5_zoh_zero_input_gap_tau1_then_tau2_equals_one_gap_tau1_plus_tau2(H, config, seed, tau1, tau2, mode):
    conj_sym, J, P = config
    model = S5(H, P, blocks=J, conj_sym=conj_sym, seed=seed)
    x0 = random_state(seed, 1, model.eigenvalues().shape[0])
    zero = np.zeros((1, 2, H))
    _, x_two = model.forward(zero, integration_timesteps=[tau1, tau2], initial_state=x0, return_state=True, mode=mode)
    _, x_one = model.forward(zero[:, :1], integration_timesteps=[tau1 + tau2], initial_state=x0, return_state=True)
    assert_close(x_two, x_one, "float64", "two gaps vs their sum (zero input)")
    _, x_steps = model.step(zero[:, 0], model.step(zero[:, 0], x0, integration_timesteps=[tau1])[1],
                            integration_timesteps=[tau2])
    assert_close(x_steps, x_one, "float64", "two steps vs one step of the summed gap")


@given(widths, s5_configs(), discretizations, seeds, irregular_modes, st.data())
def test_s5_irregular_time_matches_brute_force_per_step_expm(H, config, method, seed, mode, data):
    conj_sym, J, P = config
    model = S5(H, P, blocks=J, conj_sym=conj_sym, discretization=method, seed=seed, step_rescale=2.0)
    Bsz, L = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 7))
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(Bsz, L, H))
    tau = data.draw(gaps(L, Bsz, allow_zero=method in ("async", "dirac")))
    x0 = random_state(seed, Bsz, model.eigenvalues().shape[0])
    y, x = model.forward(u, integration_timesteps=tau, initial_state=x0, return_state=True, mode=mode)
    y_bf, x_bf = brute_force_irregular(model, u, tau, x0)
    assert_close(y, y_bf, "float64", f"{method} {mode}: output vs per-step expm")
    assert_close(x, x_bf, "float64", f"{method} {mode}: final state vs per-step expm")


@given(widths, s5_configs(), discretizations, seeds, st.data())
def test_s5_irregular_step_and_chunked_forward_equal_one_forward(H, config, method, seed, data):
    conj_sym, J, P = config
    model = S5(H, P, blocks=J, conj_sym=conj_sym, discretization=method, seed=seed)
    L = data.draw(st.integers(2, 8))
    cut = data.draw(st.integers(1, L - 1))
    u = np.random.default_rng(seed).normal(size=(2, L, H))
    tau = data.draw(gaps(L, 2))
    y, x = model.forward(u, integration_timesteps=tau, return_state=True)
    ys, state = [], model.initial_state(2)
    for k in range(L):
        y_k, state = model.step(u[:, k], state, integration_timesteps=tau[:, k])
        ys.append(y_k)
    assert_close(np.stack(ys, axis=1), y, "float64", "step by step vs forward")
    assert_close(state, x, "float64", "final state of the steps")
    y1, x1 = model.forward(u[:, :cut], integration_timesteps=tau[:, :cut], return_state=True, mode="recurrence")
    y2, x2 = model.forward(u[:, cut:], integration_timesteps=tau[:, cut:], initial_state=x1, return_state=True)
    assert_close(np.concatenate([y1, y2], axis=1), y, "float64", "chunked vs one-shot output")
    assert_close(x2, x, "float64", "chunked vs one-shot final state")
    y_u, x_u = model.forward(u[0], integration_timesteps=tau[0], return_state=True)  # unbatched (L, H), (L,)
    assert_close(y_u, y[0], "float64", "unbatched output")
    assert_close(x_u, x[0], "float64", "unbatched final state")


def test_s5_async_is_accepted_and_without_gaps_is_its_zoh_system():
    zoh, asyn = S5(2, 4, seed=3), S5(2, 4, discretization="async", seed=3)
    u = np.random.default_rng(0).normal(size=(1, 6, 2))
    for mode in S5.modes:
        assert_close(asyn.forward(u, mode=mode), zoh.forward(u, mode=mode), "float64", f"async vs zoh ({mode})")
    assert_close(asyn.kernel(6), zoh.kernel(6), "float64", "async kernel vs zoh kernel")
    tau = np.array([0.5, 2.0, 0.0, 1.0, 3.0, 0.25])  # a zero gap: a simultaneous event, allowed for async
    y = asyn.forward(u, integration_timesteps=tau)
    assert_close(y, brute_force_irregular(asyn, u, tau[None], asyn.initial_state(1))[0], "float64", "async gaps")
    assert np.abs(y - zoh.forward(u, integration_timesteps=np.where(tau == 0, 1.0, tau))).max() > 1e-6


def test_s5_irregular_time_bad_input_raises_value_error_saying_why():
    model = S5(2, 4, seed=0)
    u = np.zeros((2, 5, 2))
    with pytest.raises(ValueError, match="integration_timesteps: the 'convolution' mode has one kernel"):
        model.forward(u, integration_timesteps=np.ones(5), mode="convolution")
    for bad, match in [
        (np.ones(4), r"integration_timesteps: expected shape \(5,\)"),
        (np.ones((3, 5)), r"integration_timesteps: expected shape"),
        (-np.ones(5), "integration_timesteps: expected gaps >= 0"),
        (np.full(5, np.nan), "integration_timesteps: contains NaN"),
        (np.array([1.0, 0.0, 1.0, 1.0, 1.0]), "integration_timesteps: a zero gap is not allowed here with "
         "discretization 'zoh'"),
    ]:
        with pytest.raises(ValueError, match=match):
            model.forward(u, integration_timesteps=bad)
    with pytest.raises(ValueError, match=r"integration_timesteps: in step expected shape \(2,\)"):
        model.step(u[:, 0], None, integration_timesteps=np.ones(3))
    with pytest.raises(ValueError, match=r"integration_timesteps: expected shape \(5,\) \(L,\) for an unbatched"):
        model.forward(u[0], integration_timesteps=np.ones((1, 5)))
    with pytest.raises(ValueError, match="state: expected shape"):
        model.step(u[:, 0], np.zeros((3, 2)), integration_timesteps=np.ones(2))
    bidirectional = S5(2, 4, seed=0, bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional"):
        bidirectional.forward(u, integration_timesteps=np.ones(5))
    S5(2, 4, discretization="dirac").forward(u, integration_timesteps=np.zeros(5))  # dirac: a zero gap is valid
