"""S4 in torch: the twin of ``reference.models.lti.s4`` (same parameters, state layout and kernel).

Paper: Gu, Goel, Re, "Efficiently Modeling Long Sequences with Structured State Spaces" (ICLR 2022):
the DPLR state matrix (§3.1), the bilinear rule (eq. 3) and the kernel by truncated generating
function, Cauchy kernel and Woodbury identity (Algorithm 1); official code: state-spaces/s4
``models/s4/s4.py`` (``SSMKernelDPLR``). The definition, the initialization and every deliberate
deviation are in the reference module's docstring; this module only runs the same system.

Each channel h is the full conjugate-paired system of real size N = ``d_state``:

    A_f = diag(Lambda_f) - P_f P_f^*,    Lambda_f = [Lambda, conj(Lambda)], ...      (N x N complex)
    A_bar, B_bar = discretize(A_f, B_f, dt_h)        (the rules of fast.discretize, all channels at once;
                                                       bilinear by Sherman-Morrison on the rank-1 part)
    y_h = Re(C_f x) + D_h u_h

Kernel (``kernel(L)``, Algorithm 1): the generating function at the L-th roots of unity omega_j,
K_hat(omega) = C_tilde (I - omega A_bar)^{-1} B_bar with C_tilde = C_f (I - A_bar^L), then an inverse
real FFT. Bilinear: the resolvent by four Cauchy sums over the conjugate pairs and the rank-1 Woodbury
identity, k_hat = r_CB - r_CP r_QB / (1 + r_QP), K_hat = 2 / (1 + omega) k_hat; zoh and dirac: dense
solves of (I - omega A_bar) (the reference's documented extras). C_tilde by doubling on the binary digits
of L, in the real coordinates [Re x, Im x] of the paired state (``real_form``).

State: the dense paired state ``(B, H * N)`` complex, h-major (entries h*N + n, n < N/2, the stored
modes of channel h, then their conjugate partners), as the reference's ``ssm()``. The initial-state
response and the final state use the powers A_bar^l x by doubling (log2 L batched matrix products,
memory O(L H N B)); ``step`` multiplies by the cached dense A_bar, and ``step_linear`` is the O(N)
bilinear step on the stored half, as in the reference.

Glossary: ``log_A_real``, ``A_imag`` (H, N/2); ``P``, ``B``, ``C`` (H, N/2) complex, stored as real
``(H, N/2, 2)`` parameters; ``log_dt``, ``D`` (H,); ``omega``, ``z`` the nodes and their bilinear
images z = 2 (1 - omega) / (1 + omega).
"""

from __future__ import annotations

import functools
import math

import torch

from fast._checks import positive_int, validating
from fast.discretization import cond_limit, matrix_exp
from fast.models.lti._base import DiscreteSystem, FastLTIModel
from reference.models.lti.s4 import S4 as _ReferenceS4

__all__ = ["S4", "DenseSystem", "cauchy_conjugate_pairs", "paired_form", "real_form"]


class DenseSystem:
    """The discrete S4 core, one dense paired system per channel.

    A_bar is held as the real form (``real_form``) of A_bar - I, ``A_real_minus_I (H, N, N)`` real, which is
    all the training kernel needs; the complex paired matrices ``A_bar_minus_I`` and ``A_bar (H, N, N)`` are
    built from it on first use (the recurrence, the initial-state response, the zoh and dirac kernels)."""

    def __init__(self, A_real_minus_I, B_bar, C, D, A_bar_minus_I=None):
        self.A_real_minus_I = A_real_minus_I  # (H, N, N) real: A_bar - I on [Re x, Im x]
        self.B_bar = B_bar  # (H, N) complex
        self.C = C  # (H, N) complex: C_f, the paired output row
        self.D = D  # (H,)
        if A_bar_minus_I is not None:
            self.__dict__["A_bar_minus_I"] = A_bar_minus_I  # known already: the cached_property is skipped

    @functools.cached_property
    def A_bar_minus_I(self) -> torch.Tensor:
        """A_bar - I, ``(H, N, N)`` complex paired, from its real form (``paired_form``)."""
        return paired_form(self.A_real_minus_I)

    @functools.cached_property
    def A_bar(self) -> torch.Tensor:
        """``(H, N, N)`` complex paired."""
        N = self.B_bar.shape[-1]
        return torch.eye(N, dtype=self.B_bar.dtype, device=self.B_bar.device) + self.A_bar_minus_I


def paired(x: torch.Tensor) -> torch.Tensor:
    """[x, conj(x)] along the last axis: the full conjugate-paired vector of a stored half."""
    return torch.cat([x, x.conj()], dim=-1)


def cauchy_conjugate_pairs(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """sum_n [v_n / (z - w_n) + conj(v_n) / (z - conj(w_n))] for every node and every row of ``v``:
    ``(H, K, J)`` from ``v (H, K, N/2)``, ``w (H, N/2)`` and ``z (J,)`` ([S4-code] ``cauchy_naive``).

    Each conjugate pair is one fraction over the shared denominator (z - w_n)(z - conj(w_n)):

        v / (z - w) + conj(v) / (z - conj(w)) = (2 Re(v) z - 2 Re(v conj(w))) / ((z - w)(z - conj(w))),

    so the N/2 x J reciprocals are computed once for all K rows, and the sums over n are one real
    matrix product. The denominator is a product of two differences (a complex product is accurate
    relative to its modulus), not the expanded quadratic z^2 - 2 Re(w) z + |w|^2, which cancels when
    |z| ~ |w|; at the bilinear nodes z is imaginary, so the numerator has no cancellation either.

    The channels go through in blocks whose ``(rows, N/2, J)`` intermediates stay near 2^18 elements
    (4 MiB in complex128): on the CPU a whole-size intermediate (tens of MiB) is a fresh allocation per
    operation, which measured 1.3-3x slower than the blocked loop at H = 128, N = 64, L = 1024."""
    rows = max(1, _CAUCHY_BLOCK // max(1, w.shape[-1] * z.shape[-1]))
    if v.shape[0] > rows:
        blocks = [cauchy_conjugate_pairs(v[i : i + rows], z, w[i : i + rows]) for i in range(0, v.shape[0], rows)]
        return torch.cat(blocks, dim=0)
    R = torch.reciprocal((z - w[..., None]) * (z - w.conj()[..., None]))  # (H, N/2, J)
    alpha = 2.0 * v.real  # (H, K, N/2)
    beta = -2.0 * (v * w.conj().unsqueeze(-2)).real  # (H, K, N/2)
    coef = torch.cat([alpha, beta], dim=-2)  # (H, 2K, N/2) real
    R_ri = torch.view_as_real(R).flatten(-2)  # (H, N/2, 2J): [Re, Im] interleaved
    S = torch.view_as_complex((coef @ R_ri).unflatten(-1, (-1, 2)))  # (H, 2K, J)
    K = v.shape[-2]
    return z * S[..., :K, :] + S[..., K:, :]  # (H, K, J)


#: Elements of one block of ``cauchy_conjugate_pairs``'s intermediates (rows x N/2 x J).
_CAUCHY_BLOCK = 2**18


def real_form(M: torch.Tensor) -> torch.Tensor:
    """The real ``(..., N, N)`` matrix of a conjugate-paired operator ``M (..., N, N)`` complex.

    A paired M = [[M1, M2], [conj(M2), conj(M1)]] (N/2 x N/2 blocks) maps x_f = [x, conj(x)] to a paired
    vector, x' = M1 x + M2 conj(x); on r = [Re x, Im x] it is the real matrix

        [[Re(M1 + M2), -Im(M1 - M2)],
         [Im(M1 + M2),  Re(M1 - M2)]].

    Only the top N/2 rows of M are read."""
    n = M.shape[-1] // 2
    S = M[..., :n, :n] + M[..., :n, n:]  # (..., N/2, N/2): M1 + M2
    Dm = M[..., :n, :n] - M[..., :n, n:]  # (..., N/2, N/2): M1 - M2
    return torch.cat([torch.cat([S.real, -Dm.imag], dim=-1), torch.cat([S.imag, Dm.real], dim=-1)], dim=-2)


def paired_form(R: torch.Tensor) -> torch.Tensor:
    """The inverse of ``real_form``: the complex paired ``(..., N, N)`` matrix of a real one on
    [Re x, Im x]. With R = [[R11, R12], [R21, R22]], M1 + M2 = R11 + i R21 and M1 - M2 = R22 - i R12."""
    n = R.shape[-1] // 2
    R11, R12, R21, R22 = R[..., :n, :n], R[..., :n, n:], R[..., n:, :n], R[..., n:, n:]
    M1 = torch.complex(R11 + R22, R21 - R12) / 2.0  # (..., N/2, N/2)
    M2 = torch.complex(R11 - R22, R21 + R12) / 2.0  # (..., N/2, N/2)
    return torch.cat([torch.cat([M1, M2], dim=-1), torch.cat([M2.conj(), M1.conj()], dim=-1)], dim=-2)


def _minus_identity_power_row(r: torch.Tensor, E: torch.Tensor, L: int) -> torch.Tensor:
    """r (A^L - I) for a row vector per channel: ``(H, N)`` from ``r (H, N)`` and ``E = A - I (H, N, N)``.

    Doubling on the binary digits of L on E_m = A^m - I itself, which never forms A^m next to I (A^L - I
    is small when A^L ~ I, and the difference A^L - I would cancel):

        E_2m = (A^m - I)(A^m + I) = E_m E_m + 2 E_m,        E_m+1 = E_m A + E_1 = E_m (E_1 + I) + E_1.

    One matrix product per digit but the last, whose doubling (and step) acts on the row instead:
    r E_2m = (r E_m) E_m + 2 r E_m."""
    A = E + torch.eye(E.shape[-1], dtype=E.dtype, device=E.device)  # (H, N, N)
    E_m = E  # (H, N, N): A^m - I, m = 1
    digits = bin(L)[3:]  # the binary digits of L after the leading one
    for bit in digits[:-1]:
        E_m = torch.baddbmm(E_m, E_m, E_m, beta=2.0)  # E_2m
        if bit == "1":
            E_m = torch.baddbmm(E, E_m, A)  # E_2m+1
    t = (r[:, None, :] @ E_m)[:, 0, :]  # (H, N): r E_m
    if digits:
        t = (t[:, None, :] @ E_m)[:, 0, :] + 2.0 * t  # r E_2m
        if digits[-1] == "1":
            t = (t[:, None, :] @ A)[:, 0, :] + (r[:, None, :] @ E)[:, 0, :]  # r E_2m+1
    return t


def _powers_times(A: torch.Tensor, X: torch.Tensor, L: int) -> torch.Tensor:
    """A^l X for l = 0..L-1 by doubling: ``(L, H, N, R)`` from ``A (H, N, N)``, ``X (H, N, R)``."""
    M = X[None]  # (m, H, N, R) with m = 1
    A_m = A  # (H, N, N): A^m
    while M.shape[0] < L:
        M = torch.cat([M, A_m @ M], dim=0)  # (2m, H, N, R)
        if M.shape[0] < L:
            A_m = A_m @ A_m  # (H, N, N)
    return M[:L]


def _check_bilinear(state_matrix, Lambda: torch.Tensor, P: torch.Tensor, dt: torch.Tensor) -> None:
    """The refusal of ``fast.discretize``'s dense bilinear map (cond(I - dt A / 2) over the limit of the
    precision), without a singular value decomposition per channel in the usual case.

    For S4's A = diag(Lambda_f) - P_f P_f^* with Re(Lambda) < 0 (the parametrization), every unit vector
    x has Re(x^* A x) = sum_n Re(Lambda_n) |x_n|^2 - |P_f^* x|^2 < 0, so Re(x^* (I - dt A / 2) x) >= 1:
    the smallest singular value is at least 1, and cond is at most the largest one, itself at most the
    Frobenius norm sqrt(N) + dt / 2 (||Lambda_f|| + ||P_f||^2) (triangle inequality). Only channels where
    that bound fails (absurdly large or non-finite parameters) get the exact test.
    ``state_matrix()`` builds the state matrices ``(H, N, N)`` (only called then), ``Lambda, P (H, N/2)`` are
    their parts, ``dt (H,)``."""
    limit = cond_limit(Lambda.dtype)
    Lambda, P, dt = Lambda.detach(), P.detach(), dt.detach()
    N = 2 * Lambda.shape[-1]
    norm_Lambda = torch.sqrt(2.0 * Lambda.abs().square().sum(-1))  # (H,): ||Lambda_f||
    norm_PP = 2.0 * P.abs().square().sum(-1)  # (H,): ||P_f||^2 = ||P_f P_f^*||_F
    suspect = ~(math.sqrt(N) + dt / 2.0 * (norm_Lambda + norm_PP) <= limit)  # (H,): NaN counts as suspect
    if not validating() or not bool(suspect.any()):  # a value check: with fast.validation on only
        return
    A = state_matrix().detach()[suspect]  # (H', N, N)
    left = torch.eye(N, dtype=A.dtype, device=A.device) - dt[suspect, None, None] * A / 2.0  # (H', N, N)
    if not bool((torch.linalg.cond(left) <= limit).all()):
        raise ValueError("bilinear: I - dt*A/2 is singular (an eigenvalue with dt*lambda = 2)")


class S4(FastLTIModel):
    """S4 (DPLR state matrix per channel, bilinear by default) as a ``torch.nn.Module``.

    Args: those of ``reference.models.S4`` (``d_model, d_state=64, *, discretization="bilinear", dt_min=1e-3,
    dt_max=1e-1, B_clip=2.0``)
    plus ``backend="auto" | "torch" | "triton"``, ``device=None``, ``dtype=None`` (torch's default dtype) and
    ``seed=None`` (drawn from torch's global generator; an int gives the reference's initialization exactly).
    ``"auto"`` and ``"torch"`` run the FFT convolution; S4 has no Triton path (its A_bar is dense), so
    ``"triton"`` raises a ``ValueError``. ``S4.from_reference(ref)`` copies a reference model's parameters
    exactly; ``to_reference()`` copies back.
    """

    reference_class = _ReferenceS4
    no_triton = "its A_bar is a dense (DPLR) matrix per channel, which the diagonal scan kernel cannot run"
    discretizations = _ReferenceS4.discretizations
    readout = "re"

    def state_size(self) -> int:
        return 2 * self.log_A_real.numel()  # H * N

    # -- the continuous and the discrete system --------------------------------------------------
    def eigenvalues(self) -> torch.Tensor:
        """Lambda = -exp(log_A_real) - i A_imag, the stored diagonal part: ``(H, N/2)``."""
        return torch.complex(-torch.exp(self.log_A_real), -self.A_imag)  # (H, N/2)

    def state_matrix(self) -> torch.Tensor:
        """A_f = diag(Lambda_f) - P_f P_f^* of every channel: ``(H, N, N)``."""
        P_f = paired(self.param("P"))  # (H, N)
        return torch.diag_embed(paired(self.eigenvalues())) - P_f[:, :, None] * P_f[:, None, :].conj()  # (H, N, N)

    def discretized(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A_bar (H, N, N), B_bar (H, N))``: each channel discretized densely with its own step."""
        sys = self._build_system()
        return sys.A_bar, sys.B_bar

    def _build_system(self) -> DenseSystem:
        """Every channel at once, by the rules of ``fast.discretize`` on a batch, with A_bar - I computed
        without the cancellation of A_bar's diagonal against I.

        bilinear: with M = I - dt A / 2, A_bar = M^{-1} (I + dt A / 2) = 2 M^{-1} - I, so A_bar - I =
        2 (M^{-1} - I) and B_bar = M^{-1} dt B. S4's M is diagonal plus rank one,
        M = E + (dt / 2) P_f P_f^* with E = I - dt diag(Lambda_f) / 2, so the Sherman-Morrison formula gives

            M^{-1} - I = (E^{-1} - I) - (dt / 2) (E^{-1} P_f)(P_f^* E^{-1}) / (1 + (dt / 2) P_f^* E^{-1} P_f),

        O(N^2) per channel instead of a dense solve, with E^{-1} - I = (dt Lambda_f / 2) / E elementwise (no
        cancellation) and a denominator of real part >= 1 (Re E >= 1 when Re Lambda < 0): no division is
        ill-conditioned. Every factor is a paired vector and the denominator is real, so the real form of
        A_bar - I = 2 diag(delta) - 2 w v^T (delta = E^{-1} - I, w = (dt / 2) E^{-1} P_f / denominator,
        v = conj(P_f) / E) is assembled directly from the stored halves: 2 [[diag(Re delta), -diag(Im delta)],
        [diag(Im delta), diag(Re delta)]] - 4 [Re w; Im w] [Re v, -Im v]. zoh and dirac (whose A_bar is zoh's
        and B_bar = B): the exponential of the block matrix dt [[A, [A, B]], [0, 0]], whose top-right block
        holds A^{-1} (e^{dt A} - I) [A, B] = [A_bar - I, B_bar]."""
        B_f = paired(self.param("B"))  # (H, N)
        C_f, H, N = paired(self.param("C")), B_f.shape[0], B_f.shape[1]
        dt = torch.exp(self.log_dt)[:, None]  # (H, 1)
        if self.discretization == "bilinear":
            Lambda, P = self.eigenvalues(), self.param("P")  # (H, N/2) each
            _check_bilinear(self.state_matrix, Lambda, P, dt[:, 0])
            half_dt_Lambda = dt / 2.0 * Lambda  # (H, N/2)
            E = 1.0 - half_dt_Lambda  # (H, N/2): the stored half of diag(E)
            u, v = P / E, P.conj() / E  # (H, N/2): halves of E^{-1} P_f and of the row P_f^* E^{-1}
            denom = 1.0 + dt * (P.conj() * u).sum(-1, keepdim=True).real  # (H, 1): 1 + (dt/2) P_f^* E^{-1} P_f
            w = dt / 2.0 * u / denom  # (H, N/2)
            delta = half_dt_Lambda / E  # (H, N/2): E^{-1} - I
            left = torch.cat([w.real, w.imag], dim=-1)  # (H, N)
            right = torch.cat([v.real, -v.imag], dim=-1)  # (H, N)
            A_real_minus_I = -4.0 * left[:, :, None] * right[:, None, :]  # (H, N, N): the rank-one part
            # plus the diagonal part, added on the three diagonals it occupies (no dense (H, N, N) blocks)
            n = N // 2
            A_real_minus_I.diagonal(dim1=-2, dim2=-1).add_(2.0 * delta.real.repeat(1, 2))  # (H, N): Re delta twice
            A_real_minus_I.diagonal(n, dim1=-2, dim2=-1).add_(-2.0 * delta.imag)  # (H, N/2): top right
            A_real_minus_I.diagonal(-n, dim1=-2, dim2=-1).add_(2.0 * delta.imag)  # (H, N/2): bottom left
            w_f, v_f = paired(w), paired(v)  # (H, N)
            B_bar = dt * (B_f / paired(E) - w_f * (v_f * B_f).sum(-1, keepdim=True))  # (H, N): M^{-1} dt B_f
            return DenseSystem(A_real_minus_I, B_bar, C_f, self.D)
        A = self.state_matrix()  # (H, N, N)
        R = dt[:, :, None] * torch.cat([A, B_f[:, :, None]], dim=-1)  # (H, N, N + 1): dt [A, B]
        below = torch.zeros(H, N + 1, 2 * N + 1, dtype=A.dtype, device=A.device)  # (H, N + 1, 2N + 1)
        M = torch.cat([torch.cat([dt[:, :, None] * A, R], dim=-1), below], dim=-2)  # (H, 2N + 1, 2N + 1)
        X = matrix_exp(M)[:, :N, N:]  # (H, N, N + 1): the top-right block
        B_bar = B_f if self.discretization == "dirac" else X[..., N]  # (H, N)
        A_bar_minus_I = X[..., :N]  # (H, N, N)
        return DenseSystem(real_form(A_bar_minus_I), B_bar, C_f, self.D, A_bar_minus_I)

    def ssm(self) -> DiscreteSystem:
        """All channels as one block-diagonal dense system (S = H*N, h-major, readout re)."""
        sys = self.system()
        H, N = sys.B_bar.shape
        eye = torch.eye(H, dtype=self.dtype, device=self.device)  # (H, H)
        A_big = torch.block_diag(*sys.A_bar)  # (S, S)
        B_big = (sys.B_bar[:, :, None] * eye[:, None, :]).reshape(H * N, H)  # (S, H): block h reads u_h
        C_big = (eye[:, :, None] * sys.C[None, :, :]).reshape(H, H * N)  # (H, S): y_h reads block h
        return DiscreteSystem(A_big, B_big, C_big, torch.diag(sys.D), "re")

    # -- kernels ---------------------------------------------------------------------------------
    def c_tilde(self, L: int) -> torch.Tensor:
        """C_tilde = C_f (I - A_bar^L) of every channel: ``(H, N)``."""
        sys = self.system()
        return self._c_tilde(sys, positive_int(L, "L"))

    @staticmethod
    def _c_tilde(sys: DenseSystem, L: int) -> torch.Tensor:
        """C_f (I - A_bar^L), as -C_f (A_bar^L - I) by doubling on A_bar^m - I itself
        (``_minus_identity_power_row``): the direct difference I - A_bar^L cancels when L dt is small
        (A_bar^L ~ I), which costs float32 most of its digits.

        Computed in real coordinates: a paired system acts on x_f = [x, conj(x)] as a real linear map of
        r = [Re x, Im x] (``real_form``), and the paired row C_f = [c, conj(c)] reads C_f x_f = r_C . r with
        the real row r_C = [2 Re c, -2 Im c]. The doubling's matrix products are then real (a quarter of the
        complex flops), and C_tilde, paired again, is read back from its real row."""
        n = sys.C.shape[-1] // 2
        c = sys.C[:, :n]  # (H, N/2): the stored half of C_f
        row = torch.cat([2.0 * c.real, -2.0 * c.imag], dim=-1)  # (H, N) real: C_f in real coordinates
        t = -_minus_identity_power_row(row, sys.A_real_minus_I, L)  # (H, N): C_tilde's real row
        return paired(torch.complex(t[:, :n], -t[:, n:]) / 2.0)  # (H, N)

    def _order(self, sys, batch: int) -> str:
        return "depthwise"

    def _conv_kernel(self, sys: DenseSystem, L: int, order: str) -> torch.Tensor:
        """The depthwise kernel ``(H, L)`` (taps last) by the generating function at the roots of unity."""
        N2 = self.d_state // 2
        C_tilde_f = self._c_tilde(sys, L)  # (H, N)
        # The nodes in float64 (then the working precision): omega_j = exp(-2 pi i j / L) and
        # 1 - omega_j = 2 sin^2(theta/2) + i sin(theta), which has no cancellation near omega = 1.
        theta = 2.0 * math.pi * torch.arange(L // 2 + 1, dtype=torch.float64, device=self.device) / L  # (J,)
        omega = torch.polar(torch.ones_like(theta), -theta)  # (J,)
        one_minus_omega = torch.complex(2.0 * torch.sin(theta / 2.0) ** 2, torch.sin(theta))  # (J,)
        if self.discretization == "bilinear":
            dt = torch.exp(self.log_dt)[:, None]  # (H, 1)
            dt_Lambda = dt * self.eigenvalues()  # (H, N/2): poles of the Cauchy sums
            # The computed omega_{L/2} is -1 + O(eps) i, never exactly -1 (see the reference), so z stays
            # finite, and 2 / (1 + omega) cancels the same rounded (1 + omega).
            z = (2.0 * one_minus_omega / (1.0 + omega)).to(sys.B_bar.dtype)  # (J,)
            factor = (2.0 / (1.0 + omega)).to(sys.B_bar.dtype)  # (J,)
            C_tilde = C_tilde_f[:, :N2]  # (H, N/2): the stored half of a conjugate-paired row
            P, B = self.param("P"), self.param("B")  # (H, N/2)
            Q = P.conj()  # (H, N/2)
            rows = torch.stack([C_tilde * B, C_tilde * P, Q * B, Q * P], dim=1)  # (H, 4, N/2)
            r_CB, r_CP, r_QB, r_QP = cauchy_conjugate_pairs(dt[:, :, None] * rows, z, dt_Lambda).unbind(1)  # (H, J)
            k_hat = r_CB - r_CP * r_QB / (1.0 + r_QP)  # (H, J): rank-1 Woodbury
            K_hat = k_hat * factor  # (H, J)
        else:
            # I - omega A_bar = -(A_bar - I) + (1 - omega) A_bar: exact at omega = 1, no cancellation near it
            w = one_minus_omega.to(sys.B_bar.dtype)[:, None, None, None]  # (J, 1, 1, 1)
            M = w * sys.A_bar[None] - sys.A_bar_minus_I[None]  # (J, H, N, N)
            rhs = sys.B_bar[None, :, :, None].expand(M.shape[0], -1, -1, 1)  # (J, H, N, 1)
            X = torch.linalg.solve(M, rhs)[..., 0]  # (J, H, N)
            K_hat = torch.einsum("hn,jhn->hj", C_tilde_f, X)  # (H, J)
        return torch.fft.irfft(K_hat, n=L, dim=-1)  # (H, L)

    def kernel_brute_force(self, L: int) -> torch.Tensor:
        """K_l = Re(C_f A_bar^l B_bar) per channel by powers of the dense A_bar: ``(L, H, H)``."""
        L = positive_int(L, "L")
        sys = self.system()
        M = _powers_times(sys.A_bar, sys.B_bar[:, :, None], L)[..., 0]  # (L, H, N)
        return torch.diag_embed(torch.einsum("hn,lhn->lh", sys.C, M).real)  # (L, H, H)

    # -- the dense recurrence pieces ---------------------------------------------------------------
    def _free_response(self, sys: DenseSystem, x0: torch.Tensor, L: int) -> torch.Tensor:
        """Re(C_f A_bar^{k+1} x0) for k = 0..L-1: ``(B, L, H)``."""
        H, N = sys.B_bar.shape
        X = torch.einsum("hmn,bhn->hmb", sys.A_bar, x0.reshape(-1, H, N))  # (H, N, B): A_bar x0
        M = _powers_times(sys.A_bar, X, L)  # (L, H, N, B): A_bar^{l+1} x0
        return torch.einsum("hn,lhnb->blh", sys.C, M).real  # (B, L, H)

    def _final_state(self, sys: DenseSystem, u: torch.Tensor, x0: torch.Tensor | None) -> torch.Tensor:
        """x_{L-1} = A_bar^L x0 + sum_j A_bar^{L-1-j} B_bar u_j: ``(B, H * N)``."""
        H, N = sys.B_bar.shape
        L = u.shape[1]
        G = _powers_times(sys.A_bar, sys.B_bar[:, :, None], L)[..., 0]  # (L, H, N): A_bar^r B_bar
        x = torch.einsum("lhn,blh->bhn", G, u.flip(1).to(G.dtype))  # (B, H, N)
        if x0 is not None:
            A_L = torch.linalg.matrix_power(sys.A_bar, L)  # (H, N, N)
            x = x + torch.einsum("hmn,bhn->bhm", A_L, x0.reshape(-1, H, N))  # (B, H, N)
        return x.reshape(-1, H * N)

    def _step(self, sys: DenseSystem, u_t: torch.Tensor, x: torch.Tensor):
        H, N = sys.B_bar.shape
        x = torch.einsum("hmn,bhn->bhm", sys.A_bar, x.reshape(-1, H, N)) + sys.B_bar * u_t[:, :, None]  # (B, H, N)
        y = (sys.C * x).sum(-1).real + sys.D * u_t  # (B, H)
        return y, x.reshape(-1, H * N)

    # -- the O(N) step of the bilinear DPLR system ----------------------------------------------
    def initial_state_linear(self, batch_size: int) -> torch.Tensor:
        """Zeros of the stored-half state of ``step_linear``: ``(batch_size, H, N/2)`` complex."""
        B = positive_int(batch_size, "batch_size")
        return torch.zeros(B, self.d_model, self.d_state // 2, dtype=self.state_dtype, device=self.device)

    def step_linear(self, u_t, state):
        """One bilinear step in O(N) on the stored half ([S4-code] ``_step_state_linear``; the reference's
        docstring derives it). ``u_t (B, H)``, ``state (B, H, N/2)`` -> ``(y_t (B, H), state)``."""
        if self.discretization != "bilinear":
            raise ValueError(
                f"discretization: step_linear is the bilinear DPLR step; this model uses {self.discretization!r} "
                "(use step, the dense recurrence)"
            )
        H, N2 = self.d_model, self.d_state // 2
        if not isinstance(u_t, torch.Tensor) or u_t.ndim != 2 or u_t.shape[1] != H:
            raise ValueError(f"u_t: expected a tensor of shape (B, {H}), got {getattr(u_t, 'shape', type(u_t))}")
        self.check_input(u_t[:, None], "u_t")
        if not isinstance(state, torch.Tensor) or tuple(state.shape) != (u_t.shape[0], H, N2):
            raise ValueError(
                f"state: expected a tensor of shape {(u_t.shape[0], H, N2)} (B, H, N/2), "
                f"got {getattr(state, 'shape', type(state))}"
            )
        if state.dtype != self.state_dtype:
            raise ValueError(f"state: dtype {state.dtype} does not match the module's state dtype {self.state_dtype}")
        self.entry_checks(u_t, state, "u_t", "state")
        P, B, C = self.param("P"), self.param("B"), self.param("C")  # (H, N/2)
        Lambda = self.eigenvalues()  # (H, N/2)
        two_over_dt = 2.0 / torch.exp(self.log_dt)[:, None]  # (H, 1)
        E = two_over_dt + Lambda  # (H, N/2)
        D_dt = 1.0 / (two_over_dt - Lambda)  # (H, N/2)

        def full_inner(a, v):  # sum over the full paired system of a_f v_f = 2 Re(sum over the half)
            return 2.0 * (a * v).sum(-1).real

        x = state
        v = E * x - P * full_inner(P.conj(), x)[..., None] + 2.0 * B * u_t[..., None]  # (B, H, N/2)
        denom = 1.0 + full_inner(P.conj() * D_dt * P, 1.0)  # (H,)
        x = D_dt * (v - P * (full_inner(P.conj() * D_dt, v) / denom)[..., None])  # (B, H, N/2)
        y = 2.0 * (C * x).sum(-1).real + self.D * u_t  # (B, H)
        return y, x
