"""Mamba's selective scan as a fused Triton kernel, forward and backward (twin of ``reference.selective_scan``).

For every batch row b, channel d and state n (D channels, N states per channel):

    A_bar[t, d, n], B_bar[t, d, n] = rule(A[d, n], dt[t, d], tau[t])         (any LTV rule, reference/README.md §async)
    x[t, d, n] = A_bar[t, d, n] * x[t-1, d, n] + B_bar[t, d, n] * B[t, n] * u[t, d]
    y[t, d]    = (sum_n C[t, n] x[t, d, n] + D[d] u[t, d]) * SiLU(z[t, d])      (D and z optional)

Glossary (code name -> symbol; Gu & Dao, "Mamba", arXiv 2312.00752, §3.2 and Algorithm 2; reference/README.md §Mamba):
``u`` x (the SSM input), ``dt`` Delta, ``A`` A (real, one diagonal per channel), ``B``/``C`` the token's
input/output matrices (``Bm``/``Cm`` in the kernels), ``D`` the skip (``Dv`` in the kernels), ``z`` the gate,
``tau`` the event gaps (``integration_timesteps``), ``lam`` one eigenvalue A[d, n], ``s_a``/``s_b`` the steps
of the state decay and of the input (``dt`` or ``dt * tau``; "async" gives the input the nominal ``dt``),
``a`` = A_bar, ``g`` = gamma (B_bar = gamma * B), ``T`` = ``CHUNK`` (steps per chunk), ``h`` the state carried
between chunks.

The rules (reference/README.md §zoh to §async; ``reference.discretization``), for one eigenvalue and steps s_a, s_b:

    method     a                                 g
    mamba      exp(s_a lam)                      s_b
    zoh        exp(s_a lam)                      s_b phi1(s_b lam),   phi1(x) = (e^x - 1) / x
    async      (zoh with s_a = dt tau, s_b = dt)
    dirac      exp(s_a lam)                      1
    bilinear   (1 + s_a lam/2) / (1 - s_a lam/2)  s_b / (1 - s_b lam/2)

``phi1`` is evaluated by its Taylor series for |x| < 1/2 and in closed form elsewhere, so that it (and its
derivative) keep full precision as s lam -> 0 and at lam = 0 (Triton has no ``expm1`` in its interpreter).

Forward kernel: one program per (batch row, block of ``BLOCK_D`` channels); it walks along L one chunk of T
steps at a time and, inside a chunk, loops over the N states. For one state it discretizes the whole
``(T, BLOCK_D)`` tile, scans it along time with ``tl.associative_scan`` (operator of reference/README.md
§Scan), adds the
carried state, and accumulates ``C x`` into the output tile. The state of every (d, n) stays in registers
(a ``(BLOCK_D, BLOCK_N)`` tile): no ``(B, L, D, N)`` tensor is ever written. When gradients are needed it also
writes the state entering every chunk, ``(B, L/T, D, N)``.

Backward kernel (the states are recomputed, not stored): the chunks are visited from last to first. In a
chunk, for each state n, it recomputes x_{t-1} by scanning the steps t-1 from the saved state entering the
chunk (rows shifted by one: Triton cannot shift a register tile), then x_t = a_t x_{t-1} + g_t B_t u_t; it runs
the adjoint recurrence backwards in time,

    G_t = dLoss/dx_t = dy_t C_t + a_{t+1} G_{t+1},        (dy = dLoss/d(C x + D u))

with ``tl.associative_scan(..., reverse=True)`` (a_{t+1} from the steps shifted the other way; the last row of
a chunk takes the carry K = a_{t+1} G_{t+1} from the later chunk instead), and collects

    du_t += G_t g_t B_t,   dB_t += sum_d G_t g_t u_t,   dC_t += sum_d dy_t x_t,
    dA    += sum_t (G_t x_{t-1} da/dlam + G_t B_t u_t dg/dlam),
    d dt_t, d tau_t from G_t x_{t-1} da/ds_a and G_t B_t u_t dg/ds_b through s_a, s_b,
    d initial_state = a_0 G_0 (the carry after the first chunk).

Sums over channels (dB, dC, dtau) are written per channel block and summed by torch; sums over the batch
(dA, dD) likewise: no atomics, so the gradients are deterministic.

Only a real ``A`` is supported, as in the reference. Triton is imported on first use (``_kernels``).
"""

from __future__ import annotations

import functools

import torch

from fast.discretization import rule_steps
from fast.selective_scan import SelectiveScanArgs, check_selective_scan_args
from fast.triton._tiles import next_power_of_2, power_of_two

__all__ = ["selective_scan", "run_checked", "unsupported", "METHODS", "DEFAULT_CHUNK_SIZE", "DEFAULT_BLOCK_SIZE"]

#: The rules the kernel implements, and their codes inside the kernels.
METHODS = {"mamba": 0, "zoh": 1, "bilinear": 2, "dirac": 3, "async": 4}

#: Steps per chunk. Untuned: no GPU was available when these kernels were written.
DEFAULT_CHUNK_SIZE = 32
#: Channels per program. Untuned, as above.
DEFAULT_BLOCK_SIZE = 16

# Bound by _kernels() on first use: Triton is imported lazily (``import fast`` never imports it).
triton = None
tl = None


# ------------------------------------------------------------------------------------------------
# Device functions (plain functions here; _kernels() compiles them with triton.jit on first use).
# METHOD codes: 0 mamba, 1 zoh, 2 bilinear, 3 dirac, 4 async (METHODS).
# ------------------------------------------------------------------------------------------------


def _combine(a1, x1, a2, x2):
    # (a1, x1) summarizes the earlier steps, (a2, x2) the later ones: apply the earlier map first.
    return a1 * a2, a2 * x1 + x2


def _row(tile, rows, r):
    # row r of a (T, BLOCK) register tile, as a (BLOCK,) vector
    return tl.sum(tl.where(rows[:, None] == r, tile, 0.0), axis=0)


def _col(tile, cols, n):
    # column n of a (BLOCK_D, BLOCK_N) register tile, as a (BLOCK_D,) vector
    return tl.sum(tl.where(cols[None, :] == n, tile, 0.0), axis=1)


def _phi(x):
    # phi1(x) = (e^x - 1)/x and its derivative phi1'(x) = (x e^x - e^x + 1)/x^2.
    # |x| < 1/2: series. phi2(x) = sum_k x^k/(k+2)! = 1/2 (1 + x/3 (1 + x/4 (1 + ...))) (Horner, 15 terms,
    # truncation < 1e-20), phi1 = 1 + x phi2, phi1' = phi1 - phi2 (coefficients 1/(k+1)! - 1/(k+2)!).
    small = tl.abs(x) < 0.5
    xs = tl.where(small, x, 0.0)
    r = xs * 0.0 + 1.0
    for k in tl.static_range(15):
        r = 1.0 + xs * r / (17 - k)  # divisors 17, 16, ..., 3
    phi2 = 0.5 * r
    phi1_s = 1.0 + xs * phi2
    dphi1_s = phi1_s - phi2
    # elsewhere: closed forms, with no cancellation for |x| >= 1/2
    xl = tl.where(small, 1.0, x)
    e = tl.exp(xl)
    phi1_l = (e - 1.0) / xl
    dphi1_l = (e * (xl - 1.0) + 1.0) / (xl * xl)
    return tl.where(small, phi1_s, phi1_l), tl.where(small, dphi1_s, dphi1_l)


def _decay(lam, s, METHOD: tl.constexpr):
    # a = A_bar for eigenvalue lam and step s
    if METHOD == 2:
        a = (1.0 + s * lam / 2.0) / (1.0 - s * lam / 2.0)
    else:
        a = tl.exp(s * lam)
    return a


def _decay_grads(lam, s, a, METHOD: tl.constexpr):
    # (da/ds, da/dlam)
    if METHOD == 2:
        w = 1.0 - s * lam / 2.0
        da_ds = lam / (w * w)
        da_dlam = s / (w * w)
    else:
        da_ds = lam * a
        da_dlam = s * a
    return da_ds, da_dlam


def _gain(lam, s, METHOD: tl.constexpr):
    # g = gamma, B_bar = g * B
    if METHOD == 2:
        g = s / (1.0 - s * lam / 2.0)
    elif METHOD == 1 or METHOD == 4:
        phi1, _ = _phi(s * lam)
        g = s * phi1
    elif METHOD == 3:
        g = s * 0.0 + 1.0
    else:
        g = s + lam * 0.0
    return g


def _gain_grads(lam, s, METHOD: tl.constexpr):
    # (dg/ds, dg/dlam)
    if METHOD == 2:
        v = 1.0 - s * lam / 2.0
        dg_ds = 1.0 / (v * v)
        dg_dlam = s * s / (2.0 * v * v)
    elif METHOD == 1 or METHOD == 4:
        _, dphi1 = _phi(s * lam)
        dg_ds = tl.exp(s * lam)
        dg_dlam = s * s * dphi1
    elif METHOD == 3:
        dg_ds = s * lam * 0.0
        dg_dlam = s * lam * 0.0
    else:
        dg_ds = s * lam * 0.0 + 1.0
        dg_dlam = s * lam * 0.0
    return dg_ds, dg_dlam


def _steps(dt, tau, HAS_TAU: tl.constexpr, METHOD: tl.constexpr):
    # (s_a, s_b): the steps of the decay and of the input; tau is (T,) and dt (T, BLOCK_D)
    if HAS_TAU:
        s_a = dt * tau[:, None]
        if METHOD == 4:
            s_b = dt
        else:
            s_b = s_a
    else:
        s_a = dt
        s_b = dt
    return s_a, s_b


# ------------------------------------------------------------------------------------------------
# Kernels
# ------------------------------------------------------------------------------------------------


def _selective_scan_fwd_kernel(
    U, DT, A, Bm, Cm, Dv, Z, TAU, H0,  # u, dt, z (B, L, D); A (D, N); B, C (B, L, N); D (D,); tau (B, L); h0 (B, D, N)
    Y, HN, HC,  # y (B, L, D); final state (B, D, N); state entering each chunk (B, NUM_CHUNKS, D, N)
    L, D, N, NUM_CHUNKS,
    METHOD: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_TAU: tl.constexpr,
    HAS_H0: tl.constexpr, SAVE_STATES: tl.constexpr,
    CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    chans = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)  # (BLOCK_D,)
    chan_ok = chans < D
    rows = tl.arange(0, CHUNK)  # (T,)
    cols = tl.arange(0, BLOCK_N)  # (BLOCK_N,)
    b64 = pid_b.to(tl.int64)
    st = (b64 * D + chans[:, None]) * N + cols[None, :]  # (BLOCK_D, BLOCK_N) index into (B, D, N)
    st_ok = chan_ok[:, None] & (cols < N)[None, :]

    H = tl.zeros([BLOCK_D, BLOCK_N], dtype=Y.dtype.element_ty)  # (BLOCK_D, BLOCK_N): the carried state
    if HAS_H0:
        H = tl.load(H0 + st, mask=st_ok, other=0.0)
    if HAS_D:
        skip = tl.load(Dv + chans, mask=chan_ok, other=0.0)  # (BLOCK_D,)

    for c in range(0, NUM_CHUNKS):
        t = c * CHUNK + rows  # (T,)
        t_ok = t < L
        ok = t_ok[:, None] & chan_ok[None, :]  # (T, BLOCK_D)
        idx = (b64 * L + t[:, None]) * D + chans[None, :]  # (T, BLOCK_D) index into (B, L, D)
        u = tl.load(U + idx, mask=ok, other=0.0)  # (T, BLOCK_D); padded rows: dt = 0, u = 0 (identity)
        dt = tl.load(DT + idx, mask=ok, other=0.0)
        tau = dt  # placeholder when there are no gaps
        if HAS_TAU:
            tau = tl.load(TAU + b64 * L + t, mask=t_ok, other=0.0)  # (T,)
        s_a, s_b = _steps(dt, tau, HAS_TAU, METHOD)  # (T, BLOCK_D)
        y = tl.zeros([CHUNK, BLOCK_D], dtype=Y.dtype.element_ty)  # (T, BLOCK_D)
        for n in range(0, N):
            lam = tl.load(A + chans * N + n, mask=chan_ok, other=-1.0)[None, :]  # (1, BLOCK_D)
            b_n = tl.load(Bm + (b64 * L + t) * N + n, mask=t_ok, other=0.0)  # (T,)
            c_n = tl.load(Cm + (b64 * L + t) * N + n, mask=t_ok, other=0.0)  # (T,)
            a = _decay(lam, s_a, METHOD)  # (T, BLOCK_D)
            bu = _gain(lam, s_b, METHOD) * b_n[:, None] * u  # (T, BLOCK_D)
            p, s = tl.associative_scan((a, bu), 0, _combine)  # decay products and states from 0
            h = _col(H, cols, n)  # (BLOCK_D,) state entering the chunk
            if SAVE_STATES:
                tl.store(HC + ((b64 * NUM_CHUNKS + c) * D + chans) * N + n, h, mask=chan_ok)
            x = s + p * h[None, :]  # (T, BLOCK_D)
            y += c_n[:, None] * x
            H = tl.where(cols[None, :] == n, _row(x, rows, CHUNK - 1)[:, None], H)  # padded rows keep it
        if HAS_D:
            y += skip[None, :] * u
        if HAS_Z:
            z = tl.load(Z + idx, mask=ok, other=0.0)
            y = y * z * tl.sigmoid(z)
        tl.store(Y + idx, y, mask=ok)

    tl.store(HN + st, H, mask=st_ok)


def _selective_scan_bwd_kernel(
    U, DT, A, Bm, Cm, Dv, Z, TAU, HC, DOUT, DHN,  # inputs as in the forward; dLoss/dy (B, L, D); dLoss/dfinal
    DU, DDT, DZ, DH0,  # (B, L, D) x 3, (B, D, N)
    DA_PART, DD_PART, DB_PART, DC_PART, DTAU_PART,  # (B, D, N), (B, D), (NDB, B, L, N) x 2, (NDB, B, L)
    Bsz, L, D, N, NUM_CHUNKS,
    METHOD: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_TAU: tl.constexpr,
    WANT_DTAU: tl.constexpr,
    CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    chans = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)  # (BLOCK_D,)
    chan_ok = chans < D
    rows = tl.arange(0, CHUNK)  # (T,)
    cols = tl.arange(0, BLOCK_N)  # (BLOCK_N,)
    b64 = pid_b.to(tl.int64)
    part = pid_d.to(tl.int64) * Bsz + b64  # row of this program in the per-channel-block partial sums
    st = (b64 * D + chans[:, None]) * N + cols[None, :]  # (BLOCK_D, BLOCK_N)
    st_ok = chan_ok[:, None] & (cols < N)[None, :]

    # K = dLoss/dx_{t-1} through step t, carried from the later chunk; at the end: d final state
    K = tl.load(DHN + st, mask=st_ok, other=0.0)  # (BLOCK_D, BLOCK_N)
    dA_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=K.dtype)  # (BLOCK_D, BLOCK_N)
    dD_acc = tl.zeros([BLOCK_D], dtype=K.dtype)  # (BLOCK_D,)
    if HAS_D:
        skip = tl.load(Dv + chans, mask=chan_ok, other=0.0)  # (BLOCK_D,)

    for i in range(0, NUM_CHUNKS):
        c = NUM_CHUNKS - 1 - i  # last chunk first
        t = c * CHUNK + rows  # (T,)
        t_ok = t < L
        prev_t_ok = (rows >= 1) & (t - 1 < L)  # step t-1 inside this chunk (row 0: the carried state)
        next_t_ok = (rows + 1 < CHUNK) & (t + 1 < L)  # step t+1 inside this chunk (last row: the carry)
        ok = t_ok[:, None] & chan_ok[None, :]  # (T, BLOCK_D)
        prev_ok = prev_t_ok[:, None] & chan_ok[None, :]
        next_ok = next_t_ok[:, None] & chan_ok[None, :]
        idx = (b64 * L + t[:, None]) * D + chans[None, :]  # (T, BLOCK_D)
        u = tl.load(U + idx, mask=ok, other=0.0)  # (T, BLOCK_D)
        dt = tl.load(DT + idx, mask=ok, other=0.0)
        dout = tl.load(DOUT + idx, mask=ok, other=0.0)
        u_prev = tl.load(U + idx - D, mask=prev_ok, other=0.0)  # (T, BLOCK_D): step t-1
        dt_prev = tl.load(DT + idx - D, mask=prev_ok, other=0.0)
        dt_next = tl.load(DT + idx + D, mask=next_ok, other=0.0)  # (T, BLOCK_D): step t+1
        tau = dt  # placeholders when there are no gaps
        tau_prev = dt
        tau_next = dt
        if HAS_TAU:
            tau = tl.load(TAU + b64 * L + t, mask=t_ok, other=0.0)  # (T,)
            tau_prev = tl.load(TAU + b64 * L + t - 1, mask=prev_t_ok, other=0.0)
            tau_next = tl.load(TAU + b64 * L + t + 1, mask=next_t_ok, other=0.0)
        s_a, s_b = _steps(dt, tau, HAS_TAU, METHOD)  # (T, BLOCK_D)
        s_a_prev, s_b_prev = _steps(dt_prev, tau_prev, HAS_TAU, METHOD)
        s_a_next, _ = _steps(dt_next, tau_next, HAS_TAU, METHOD)
        dy = dout  # dLoss/d(C x + D u)
        if HAS_Z:
            z = tl.load(Z + idx, mask=ok, other=0.0)
            sig = tl.sigmoid(z)
            dy = dout * z * sig

        y_acc = tl.zeros([CHUNK, BLOCK_D], dtype=K.dtype)  # C x, for dz
        du_acc = tl.zeros([CHUNK, BLOCK_D], dtype=K.dtype)
        ddt_acc = tl.zeros([CHUNK, BLOCK_D], dtype=K.dtype)
        dtau_acc = tl.zeros([CHUNK], dtype=K.dtype)
        for n in range(0, N):
            lam = tl.load(A + chans * N + n, mask=chan_ok, other=-1.0)[None, :]  # (1, BLOCK_D)
            bn_off = (b64 * L + t) * N + n  # (T,)
            b_n = tl.load(Bm + bn_off, mask=t_ok, other=0.0)  # (T,)
            c_n = tl.load(Cm + bn_off, mask=t_ok, other=0.0)
            b_prev = tl.load(Bm + bn_off - N, mask=prev_t_ok, other=0.0)

            # x_{t-1}: scan of the steps t-1 (row 0 is an identity step) from the state entering the chunk
            a_prev = _decay(lam, s_a_prev, METHOD)  # (T, BLOCK_D)
            bu_prev = _gain(lam, s_b_prev, METHOD) * b_prev[:, None] * u_prev
            p, s = tl.associative_scan((a_prev, bu_prev), 0, _combine)
            h = tl.load(HC + ((b64 * NUM_CHUNKS + c) * D + chans) * N + n, mask=chan_ok, other=0.0)
            x_prev = s + p * h[None, :]  # (T, BLOCK_D)
            a = _decay(lam, s_a, METHOD)
            g = _gain(lam, s_b, METHOD)
            Bu = b_n[:, None] * u  # (T, BLOCK_D)
            x = a * x_prev + g * Bu  # (T, BLOCK_D)

            # G_t = dy_t C_t + a_{t+1} G_{t+1}, run backwards; the carry enters at the last row
            a_next = _decay(lam, s_a_next, METHOD)  # (T, BLOCK_D); 1 at the last row and past L
            q, r = tl.associative_scan((a_next, dy * c_n[:, None]), 0, _combine, reverse=True)
            k = _col(K, cols, n)  # (BLOCK_D,)
            G = r + q * k[None, :]  # (T, BLOCK_D)
            K = tl.where(cols[None, :] == n, _row(a * G, rows, 0)[:, None], K)

            y_acc += c_n[:, None] * x
            tl.store(DC_PART + (part * L + t) * N + n, tl.sum(dy * x, axis=1), mask=t_ok)
            du_acc += G * g * b_n[:, None]
            tl.store(DB_PART + (part * L + t) * N + n, tl.sum(G * g * u, axis=1), mask=t_ok)
            da = G * x_prev  # dLoss/da_t
            dg = G * Bu  # dLoss/dg_t
            da_ds, da_dlam = _decay_grads(lam, s_a, a, METHOD)
            dg_ds, dg_dlam = _gain_grads(lam, s_b, METHOD)
            ds_a = da * da_ds  # (T, BLOCK_D)
            ds_b = dg * dg_ds
            dlam = tl.sum(da * da_dlam + dg * dg_dlam, axis=0)  # (BLOCK_D,)
            dA_acc = tl.where(cols[None, :] == n, dA_acc + dlam[:, None], dA_acc)
            if HAS_TAU:
                if METHOD == 4:  # async: s_a = dt tau, s_b = dt
                    ddt_acc += ds_a * tau[:, None] + ds_b
                    dtau_acc += tl.sum(ds_a * dt, axis=1)
                else:  # s_a = s_b = dt tau
                    ddt_acc += (ds_a + ds_b) * tau[:, None]
                    dtau_acc += tl.sum((ds_a + ds_b) * dt, axis=1)
            else:
                ddt_acc += ds_a + ds_b

        if HAS_D:
            du_acc += dy * skip[None, :]
            dD_acc += tl.sum(dy * u, axis=0)
            y_acc += skip[None, :] * u
        if HAS_Z:
            tl.store(DZ + idx, dout * y_acc * sig * (1.0 + z * (1.0 - sig)), mask=ok)
        tl.store(DU + idx, du_acc, mask=ok)
        tl.store(DDT + idx, ddt_acc, mask=ok)
        if WANT_DTAU:
            tl.store(DTAU_PART + part * L + t, dtau_acc, mask=t_ok)

    tl.store(DH0 + st, K, mask=st_ok)  # K = a_0 G_0 = dLoss/d initial state
    tl.store(DA_PART + st, dA_acc, mask=st_ok)
    if HAS_D:
        tl.store(DD_PART + b64 * D + chans, dD_acc, mask=chan_ok)


@functools.cache
def _kernels():
    """Import Triton and compile the kernels of this module (once).

    On a GPU every device function is compiled with ``triton.jit`` (and inlined into the kernels). Under the
    interpreter the device functions other than the scan operator run as plain Python inside the interpreted
    kernels (same code, same ``tl`` calls): the interpreter re-patches ``triton.language`` on every call of a
    nested jit function, which made these calls most of the test time.
    """
    global triton, tl, _combine, _row, _col, _phi, _decay, _decay_grads, _gain, _gain_grads, _steps
    global _selective_scan_fwd_kernel, _selective_scan_bwd_kernel
    from fast.triton import import_triton, interpreting

    triton, tl = import_triton()
    device_fn = (lambda fn: fn) if interpreting() else triton.jit
    _combine = triton.jit(_combine)  # tl.associative_scan takes a jit function
    _row, _col, _phi, _decay, _decay_grads, _gain, _gain_grads, _steps = map(
        device_fn, (_row, _col, _phi, _decay, _decay_grads, _gain, _gain_grads, _steps)
    )
    _selective_scan_fwd_kernel = triton.jit(_selective_scan_fwd_kernel)
    _selective_scan_bwd_kernel = triton.jit(_selective_scan_bwd_kernel)
    return _selective_scan_fwd_kernel, _selective_scan_bwd_kernel


# ------------------------------------------------------------------------------------------------
# Launchers and autograd
# ------------------------------------------------------------------------------------------------


class SelectiveScanFunction(torch.autograd.Function):
    """``(y, final_state)`` of the selective scan on contiguous tensors of one real dtype, with the Triton
    backward. ``D``, ``z``, ``tau (B, L)`` and ``h0 (B, D, N)`` may be None."""

    @staticmethod
    def forward(ctx, u, dt, A, Bm, Cm, Dv, z, tau, h0, method, chunk, block):
        fwd, _ = _kernels()
        Bsz, L, D = u.shape
        N = A.shape[1]
        num_chunks = triton.cdiv(L, chunk)
        save = any(ctx.needs_input_grad)
        y = torch.empty_like(u)  # (B, L, D)
        hN = torch.empty((Bsz, D, N), dtype=u.dtype, device=u.device)  # (B, D, N)
        hc = torch.empty((Bsz, num_chunks, D, N) if save else (1,), dtype=u.dtype, device=u.device)
        fwd[(Bsz, triton.cdiv(D, block))](
            u, dt, A, Bm, Cm, Dv, z, tau, h0, y, hN, hc, L, D, N, num_chunks,
            METHOD=METHODS[method], HAS_D=Dv is not None, HAS_Z=z is not None, HAS_TAU=tau is not None,
            HAS_H0=h0 is not None, SAVE_STATES=save, CHUNK=chunk, BLOCK_D=block, BLOCK_N=next_power_of_2(N),
        )  # fmt: skip
        ctx.save_for_backward(u, dt, A, Bm, Cm, Dv, z, tau, hc)
        ctx.method, ctx.chunk, ctx.block, ctx.has_h0 = method, chunk, block, h0 is not None
        return y, hN

    @staticmethod
    def backward(ctx, dout, dhN):
        _, bwd = _kernels()
        u, dt, A, Bm, Cm, Dv, z, tau, hc = ctx.saved_tensors
        Bsz, L, D = u.shape
        N = A.shape[1]
        block = ctx.block
        ndb = triton.cdiv(D, block)  # channel blocks
        want_dtau = tau is not None and ctx.needs_input_grad[7]
        opts = dict(dtype=u.dtype, device=u.device)
        du, ddt = torch.empty_like(u), torch.empty_like(u)  # (B, L, D)
        dz = torch.empty_like(u) if z is not None else None
        dh0 = torch.empty((Bsz, D, N), **opts)  # (B, D, N)
        dA_part = torch.empty((Bsz, D, N), **opts)  # (B, D, N), summed over B below
        dD_part = torch.empty((Bsz, D), **opts) if Dv is not None else None
        dB_part = torch.empty((ndb, Bsz, L, N), **opts)  # summed over channel blocks below
        dC_part = torch.empty((ndb, Bsz, L, N), **opts)
        dtau_part = torch.empty((ndb, Bsz, L), **opts) if want_dtau else None
        bwd[(Bsz, ndb)](
            u, dt, A, Bm, Cm, Dv, z, tau, hc, dout.contiguous(), dhN.contiguous(),
            du, ddt, dz, dh0, dA_part, dD_part, dB_part, dC_part, dtau_part,
            Bsz, L, D, N, triton.cdiv(L, ctx.chunk),
            METHOD=METHODS[ctx.method], HAS_D=Dv is not None, HAS_Z=z is not None, HAS_TAU=tau is not None,
            WANT_DTAU=want_dtau, CHUNK=ctx.chunk, BLOCK_D=block, BLOCK_N=next_power_of_2(N),
        )  # fmt: skip
        dA = dA_part.sum(0)  # (D, N)
        dD = dD_part.sum(0) if dD_part is not None else None  # (D,)
        dB, dC = dB_part.sum(0), dC_part.sum(0)  # (B, L, N)
        dtau = dtau_part.sum(0) if want_dtau else None  # (B, L)
        return du, ddt, dA, dB, dC, dD, dz, dtau, (dh0 if ctx.has_h0 else None), None, None, None


# ------------------------------------------------------------------------------------------------
# Entry point
# ------------------------------------------------------------------------------------------------


def unsupported(dtype: torch.dtype, method: str) -> tuple[str, str] | None:
    """``(argument, reason)`` when the kernel cannot take a call of this precision and discretization, else None
    (``fast.ops.selective_scan`` asks before it picks a backend)."""
    if method not in METHODS:
        return "method", f"the Triton kernel implements {list(METHODS)}, not {method!r}"
    if dtype not in (torch.float32, torch.float64):
        return "selective_scan", f"the Triton kernels run in float32 or float64, got {dtype}"
    return None


def selective_scan(
    u,
    dt,
    A,
    B,
    C,
    D=None,
    z=None,
    *,
    method="mamba",
    integration_timesteps=None,
    initial_state=None,
    return_state=False,
    chunk_size: int | None = None,
    block_size: int | None = None,
):
    """Mamba's selective SSM with the fused Triton kernels (module docstring); the arguments and results of
    ``reference.selective_scan``, checked by the code of the torch path
    (``fast.selective_scan.check_selective_scan_args``) and then for what the kernel needs (``run_checked``).

    Args:
        u: ``(B, L, D)`` input; float32 or float64 (every tensor of a call shares the precision).
        dt: ``(B, L, D)`` steps > 0, used as given.
        A: ``(D, N)`` real continuous-time eigenvalues.
        B, C: ``(B, L, N)``.
        D: ``(D,)`` skip, or None.
        z: ``(B, L, D)`` gate (the output is multiplied by SiLU(z)), or None.
        method: "mamba", "zoh", "bilinear", "dirac" or "async" (a rule registered with
            ``register_discretization`` has no kernel).
        integration_timesteps: event gaps ``(L,)`` or ``(B, L)``, >= 0 (> 0 for zoh, bilinear, mamba);
            required by "async". A tensor of the working precision or a NumPy array / number.
        initial_state: ``(B, D, N)`` or None (zeros).
        return_state: also return the final state ``(B, D, N)``.
        chunk_size: steps per chunk (a power of two >= 2); results do not depend on it beyond rounding.
        block_size: channels per program (a power of two).

    Returns:
        ``y (B, L, D)``, or ``(y, final_state)`` when ``return_state``; differentiable in every tensor argument
        (``integration_timesteps`` included).
    """
    args = check_selective_scan_args(u, dt, A, B, C, D, z, method, integration_timesteps, initial_state)
    return run_checked(args, method, return_state=return_state, chunk_size=chunk_size, block_size=block_size)


def run_checked(
    args: SelectiveScanArgs, method: str, *, return_state=False, chunk_size: int | None = None,
    block_size: int | None = None,
):
    """``selective_scan`` on arguments already checked by ``fast.selective_scan.check_selective_scan_args`` (the
    entry point of ``fast.ops.selective_scan(..., backend="triton")``): only what is particular to the kernel is
    checked here."""
    from fast.triton import check_runnable

    u, dt, A, B, C, D, z, h0, tau, dtype = args
    chunk = power_of_two(DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size, "chunk_size", 2)
    block = power_of_two(DEFAULT_BLOCK_SIZE if block_size is None else block_size, "block_size", 1)
    why = unsupported(dtype, method)
    if why is not None:
        raise ValueError(f"{why[0]}: {why[1]}")
    if method == "bilinear" and bool((A > 0).any()):
        # 1 - s lam / 2 = 0 is possible only for lam > 0; the reference refuses that singular map
        s, _ = rule_steps(method, dt, None if tau is None else tau[..., None])  # (B, L, D): bilinear's step
        if bool((1.0 - s[..., None] * A / 2.0 == 0).any()):
            raise ValueError("bilinear: 1 - dt*lambda/2 = 0 for some eigenvalue (the map is singular there)")
    tensors = {"u": u, "dt": dt, "A": A, "B": B, "C": C, "D": D, "z": z, "initial_state": h0,
               "integration_timesteps": tau}  # fmt: skip
    check_runnable(tensors, "selective_scan")

    def c(x):
        return None if x is None else x.contiguous()

    y, final = SelectiveScanFunction.apply(
        c(u), c(dt), c(A), c(B), c(C), c(D), c(z), c(tau), c(h0), method, chunk, block
    )
    return (y, final) if return_state else y
