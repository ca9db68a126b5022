"""Centaurus-specific checks (reference/README.md §Centaurus, §mamba-rule; §Identities 16): the official
initialization and
kernel formulas of every mode, every contraction order against the others, `full` with one channel
against scipy.signal.lfilter, the damped-cosine basis, chunked streaming, the four discretizations
(really different, and zoh / bilinear equal to scipy's cont2discrete of the realified system), and the
mode constraints. The generic LTI checks are in the common LTI test file."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.signal
from hypothesis import given
from hypothesis import strategies as st

from equivalence_tests.strategies import lengths, seeds, sequences
from equivalence_tests.tolerances import assert_close
from reference.models.lti import Centaurus

CONNECTIVITIES = ["pointwise", "neck", "dws", "full"]
connectivities = st.sampled_from(CONNECTIVITIES)
discretizations = st.sampled_from(Centaurus.discretizations)


@st.composite
def centaurus_models(draw, mode=connectivities, discretization=discretizations, width=None):
    """A Centaurus core with drawn connectivity, sizes and discretization; its log_dt and A are perturbed
    away from the (highly symmetric) initialization so that every lane differs."""
    mode = draw(mode)
    H = draw(st.integers(1, 4)) if width is None else width
    J = {"pointwise": draw(st.integers(1, 3)), "neck": draw(st.integers(1, 4)), "dws": H, "full": H * H}[mode]
    model = Centaurus(H, J, discretization=draw(discretization), seed=draw(seeds), mode=mode,
        sub_state_dim=draw(st.integers(1, 4)))
    rng = np.random.default_rng(draw(seeds))
    p = model.params
    p.log_dt = p.log_dt + rng.uniform(0.0, 3.0, p.log_dt.shape)  # dt up to ~2
    p.A = p.A + rng.uniform(-0.5, 0.5, p.A.shape)
    if p.E is not None:
        p.E = rng.normal(size=p.E.shape)
    return model


def lanes_from_params(model: Centaurus):
    """(lambda, dt) of every lane in the state-channel layout (J', M'), read off the official shapes."""
    p, H, M = model.params, model.d_model, model.sub_state_dim
    lam = -np.log1p(np.exp(p.A[..., 0])) + 1j * p.A[..., 1]
    dt = np.exp(p.log_dt)
    if model.mode == "pointwise":
        return lam[:, None], dt[:, None]
    if model.mode == "neck":
        return lam, np.repeat(dt[:, None], M, axis=1)
    if model.mode == "dws":
        return lam, dt
    return lam.reshape(H * H, M), np.repeat(dt[:, None, :], H, axis=1).reshape(H * H, M)


def official_mamba_kernel(model: Centaurus, L: int) -> np.ndarray:
    """The kernel as the official code builds it ("mamba" rule): basis exp(l dt Re) cos(l dt Im), the
    weight tensor (B or E) multiplied by dt, then the mode's contraction; ``(L, H, H)``."""
    p, H, M = model.params, model.d_model, model.sub_state_dim
    lam, dt = lanes_from_params(model)  # (J', M')
    ell = np.arange(L)
    basis = np.exp(ell * (dt * lam.real)[..., None]) * np.cos(ell * (dt * lam.imag)[..., None])  # (J', M', L)
    if model.mode == "pointwise":
        B_hat = p.B * np.exp(p.log_dt)[:, None]  # (J*M, H)
        return np.einsum("os,sl,si->loi", p.C, basis[:, 0], B_hat)
    if model.mode == "neck":
        B_hat = p.B * np.exp(p.log_dt)[:, None]  # (J, H)
        return np.einsum("oj,jm,jml,ji->loi", p.C, p.E, basis, B_hat)
    if model.mode == "dws":
        k = np.einsum("cm,cml->lc", p.E * dt, basis)  # (L, H)
        return np.einsum("lc,oc,ci->loi", k, np.eye(H), np.eye(H))
    E_hat = p.E * np.exp(p.log_dt)[:, None, :]  # (H_out, H_in, M)
    return np.einsum("dcm,dcml->ldc", E_hat, basis.reshape(H, H, M, L))


@given(centaurus_models(discretization=st.just("mamba")), lengths)
def test_centaurus_mamba_kernel_matches_the_official_contraction(model, L):
    assert_close(model.kernel(L), official_mamba_kernel(model, L), "float64", f"{model.mode} kernel")


@given(centaurus_models(discretization=st.sampled_from(["mamba", "zoh", "dirac"])), lengths)
def test_centaurus_basis_is_a_damped_cosine(model, L):
    # Re(exp(l dt lambda)) = exp(l dt Re lambda) cos(l dt Im lambda) for the rules with a_bar = exp(dt lambda)
    lam, dt = lanes_from_params(model)
    ell = np.arange(L)
    expected = np.exp(ell * (dt * lam.real)[..., None]) * np.cos(ell * (dt * lam.imag)[..., None])
    assert_close(model.basis(L), expected, "float64", f"{model.mode} basis")


@given(centaurus_models(), st.integers(1, 3), lengths, seeds)
def test_centaurus_every_contraction_order_gives_the_same_output(model, batch, L, seed):
    u = np.random.default_rng(seed).normal(size=(batch, L, model.d_model))
    y = model.forward(u, mode="recurrence")
    for order in ("kernel", "states", "auto"):
        assert_close(model.forward_contraction(u, order=order), y, "float64", f"{model.mode} order {order}")
    assert_close(model.forward_contraction(u[0], order="states"), y[0], "float64", "unbatched input")


@pytest.mark.parametrize(
    "mode, H, J, M, batch, expected",
    [
        ("pointwise", 1, 1, 1, 1, "states"),  # 1/1 + 1/1 > 1/1 + 1/1 is false
        ("pointwise", 1, 1, 2, 1, "kernel"),  # 2 > 1 + 1/2
        ("pointwise", 4, 4, 4, 8, "kernel"),  # 1/2 > 1/8 + 1/16
        ("pointwise", 4, 4, 4, 1, "states"),  # 1/2 < 1 + 1/16
        ("neck", 2, 2, 8, 4, "kernel"),  # 1/2 + 1/2 > 1/4 + 1/2 (neck counts the J channels, not J*M)
        ("neck", 2, 2, 8, 1, "states"),  # 1 < 1 + 1/2
        ("dws", 3, 3, 4, 100, "states"),  # official: always the depthwise convolution
        ("full", 2, 4, 4, 1, "kernel"),  # official: always the full (H_out, H_in, L) kernel
    ],
)
def test_centaurus_auto_order_follows_the_official_rule(mode, H, J, M, batch, expected):
    # padded_fft_conv_opt: materialize the kernel when 1/C_in + 1/C_out > 1/batch + 1/(state channels)
    model = Centaurus(H, J, mode=mode, sub_state_dim=M)
    assert model.contraction_order(batch) == expected


@given(centaurus_models(mode=st.just("full"), width=1), sequences(batch=2, width=1))
def test_centaurus_full_with_one_channel_is_a_sum_of_second_order_filters(model, u):
    # One input, one output: y = sum_m E_m Re(x_m), x_m = a_m x_m + gamma_m u. For real u the lane's
    # transfer function Re(gamma / (1 - a z^-1)) is the real biquad (Re gamma - Re(gamma conj a) z^-1) /
    # (1 - 2 Re a z^-1 + |a|^2 z^-2); run each with scipy.signal.lfilter.
    lam, dt = (x[0] for x in lanes_from_params(model))  # (M,)
    method = model.discretization
    if method == "bilinear":
        a = (1 + dt * lam / 2) / (1 - dt * lam / 2)
        gamma = dt / (1 - dt * lam / 2)
    else:
        a = np.exp(dt * lam)
        gamma = {"mamba": dt + 0j, "zoh": (a - 1) / lam, "dirac": np.ones_like(a)}[method]
    E = model.params.E[0, 0]  # (M,)
    expected = np.zeros(u.shape)
    for m in range(len(a)):
        b_coef = [gamma[m].real, -(gamma[m] * a[m].conj()).real]
        a_coef = [1.0, -2 * a[m].real, abs(a[m]) ** 2]
        expected += E[m] * scipy.signal.lfilter(b_coef, a_coef, u, axis=1)
    for mode in Centaurus.modes:
        assert_close(model.forward(u, mode=mode), expected, "float64", f"full H=1 {method} {mode} vs lfilter")


@given(centaurus_models(), st.lists(st.integers(1, 9), min_size=2, max_size=4), seeds)
def test_centaurus_chunked_streaming_equals_one_shot(model, chunks, seed):
    # The official inference mode: each chunk is an FFT convolution plus the decay of the carried state.
    u = np.random.default_rng(seed).normal(size=(2, sum(chunks), model.d_model))
    y, final = model.forward(u, mode="convolution", return_state=True)
    state, ys, start = None, [], 0
    for n in chunks:
        y_chunk, state = model.forward(u[:, start : start + n], initial_state=state, return_state=True)
        ys.append(y_chunk)
        start += n
    assert_close(np.concatenate(ys, axis=1), y, "float64", f"{model.mode} chunked output")
    assert_close(state, final, "float64", f"{model.mode} chunked final state")


def realified_continuous(model: Centaurus):
    """The continuous real system of all lanes, each lane's clock folded in (dt_s A_s, dt_s B_s), so that
    one unit step discretizes every lane with its own dt: (A (2S, 2S), B (2S, H), C (H, 2S))."""
    Lambda, dt, E, P_in, P_out = model.state_channels()  # (J', M'), ..., (J', H), (H, J')
    J, M = Lambda.shape
    lam, step = Lambda.reshape(-1), dt.reshape(-1)  # (S,)
    rows = np.repeat(P_in, M, axis=0)  # (S, H): the input row of each lane
    cols = (P_out[:, :, None] * E[None]).reshape(model.d_model, J * M)  # (H, S): real output weights
    S = J * M
    A = np.zeros((2 * S, 2 * S))
    B = np.zeros((2 * S, model.d_model))
    C = np.zeros((model.d_model, 2 * S))
    for s in range(S):  # x = p + i q:  p' = Re(lam) p - Im(lam) q + b.u,  q' = Im(lam) p + Re(lam) q;  y = c p
        A[2 * s : 2 * s + 2, 2 * s : 2 * s + 2] = step[s] * np.array([[lam[s].real, -lam[s].imag],
                                                                      [lam[s].imag, lam[s].real]])
        B[2 * s] = step[s] * rows[s]
        C[:, 2 * s] = cols[:, s]
    return A, B, C, step


@given(centaurus_models(discretization=st.just("mamba")), lengths, seeds)
def test_centaurus_discretizations_match_scipy_on_the_realified_system_and_differ(model, L, seed):
    # Steps of 0.1..2 so that the rules differ well above rounding (zoh and bilinear agree to O((dt lambda)^2)).
    rng = np.random.default_rng(seed)
    model.params.log_dt = np.log(rng.uniform(0.1, 2.0, model.params.log_dt.shape))
    A, B, C, step = realified_continuous(model)
    no_output = (np.zeros((1, len(A))), np.zeros((1, B.shape[1])))
    A_exp = scipy.linalg.expm(A)
    oracles = {
        "zoh": scipy.signal.cont2discrete((A, B, *no_output), 1.0, method="zoh")[:2],
        "bilinear": scipy.signal.cont2discrete((A, B, *no_output), 1.0, method="bilinear")[:2],
        "mamba": (A_exp, B),  # exact A, B_bar = dt B (dt is already folded into B)
        "dirac": (A_exp, B / np.repeat(step, 2)[:, None]),  # B_bar = B
    }
    kernels = {}
    for method, (A_bar, B_bar) in oracles.items():
        model.discretization = method
        expected = np.stack([C @ np.linalg.matrix_power(A_bar, ell) @ B_bar for ell in range(L)])
        kernels[method] = model.kernel(L)
        assert_close(kernels[method], expected, "float64", f"{model.mode} {method} kernel vs scipy")
    for a in oracles:  # each rule really changes the kernel (K_0 = C B_bar already differs)
        for b in oracles:
            if a < b:
                gap = np.abs(kernels[a] - kernels[b]).max()
                assert gap > 1e-6 * np.abs(kernels[a]).max(), f"{a} and {b} give the same kernel"


def test_centaurus_default_init_follows_the_official_code():
    M = 5
    for mode, H, J in [("pointwise", 3, 2), ("neck", 3, 2), ("dws", 3, 3), ("full", 2, 4)]:
        model = Centaurus(H, mode=mode, sub_state_dim=M)
        assert model.d_state == J if mode in ("dws", "full") else model.d_state == 1
        model = Centaurus(H, J, mode=mode, sub_state_dim=M)
        lam = model.eigenvalues()
        m = (np.arange(lam.size) % M).reshape(lam.shape)  # the lane index inside its channel (last axis)
        assert_close(lam, -0.5 + 1j * np.pi * m, "float64", f"{mode} lambda = -1/2 + i pi m")
        p = model.params
        if mode == "pointwise":
            assert_close(np.exp(p.log_dt), np.repeat(np.geomspace(1e-3, 1e-1, J), M), "float64", "dt")
            assert_close(p.B, np.ones((J * M, H)) / np.sqrt(H), "float64", "B")
            assert p.C.shape == (H, J * M) and p.E is None
        elif mode == "neck":
            assert_close(np.exp(p.log_dt), np.geomspace(1e-3, 1e-1, J), "float64", "dt")
            assert_close(p.B, np.ones((J, H)) / np.sqrt(H), "float64", "B")
            assert p.C.shape == (H, J) and p.E.shape == (J, M)
        elif mode == "dws":
            assert_close(np.exp(p.log_dt), np.repeat(np.geomspace(1e-3, 1e-1, H)[:, None], M, 1), "float64", "dt")
            assert_close(p.E, np.ones((H, M)) / np.sqrt(M), "float64", "E")
        else:
            assert_close(np.exp(p.log_dt), np.repeat(np.geomspace(1e-3, 1e-1, H)[:, None], M, 1), "float64", "dt")
            assert_close(p.E, np.ones((H, H, M)) / np.sqrt(H), "float64", "E")
    custom = Centaurus(2, 3, sub_state_dim=M, dt_min=0.1, dt_max=1.0)
    assert_close(np.exp(custom.params.log_dt), np.repeat(np.geomspace(0.1, 1.0, 3), M), "float64", "dt range")
    s5 = Centaurus(3, 2, mode="s5", sub_state_dim=M, seed=4)
    pw = Centaurus(3, 2, mode="pointwise", sub_state_dim=M, seed=4)
    assert s5.mode == "pointwise"
    assert_close(s5.kernel(6), pw.kernel(6), "float64", "'s5' is 'pointwise'")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mode="dws", d_model=3, d_state=2), "d_state.*dws.*d_model"),
        (dict(mode="full", d_model=2, d_state=2), "d_state.*full.*d_model\\*\\*2"),
        (dict(mode="depthwise"), "mode.*Centaurus"),
        (dict(sub_state_dim=0), "sub_state_dim"),
        (dict(dt_min=0.1, dt_max=0.01), "dt_min"),
        (dict(dt_max=0.0), "dt_max"),
        (dict(discretization="async"), "Centaurus"),
        (dict(discretization="native"), "Centaurus"),
        (dict(d_model=0), "d_model"),
    ],
)
def test_centaurus_bad_options_raise_value_error_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Centaurus(**(dict(d_model=2, d_state=2) | kwargs))


def test_centaurus_bad_calls_raise_value_error():
    model = Centaurus(2, 2)
    with pytest.raises(ValueError, match="order"):
        model.forward_contraction(np.zeros((1, 3, 2)), order="fastest")
    with pytest.raises(ValueError, match="u"):
        model.forward_contraction(np.zeros((1, 3, 5)))
    model.params.E = np.ones((2, 16))
    with pytest.raises(ValueError, match="params.E"):
        model.ssm()
    model = Centaurus(2, 2, mode="neck", sub_state_dim=3)
    model.params.B = np.ones((3, 2))
    with pytest.raises(ValueError, match="params.B"):
        model.kernel(4)
