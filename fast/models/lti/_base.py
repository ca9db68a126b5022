"""What every fast LTI model shares (the torch twin of ``reference/models/lti/_base.py``).

Once discretized, each model is the linear time-invariant system

    x_k = A_bar x_{k-1} + B_bar u_k,      y_k = read(C x_k) + D u_k,      x_{-1} = x0

and this base class runs it the way the reference's ``"convolution"`` mode does, without a Python loop
over time:

    y = K * u + D u  +  read(C A_bar^{k+1} x0)              (FFT convolution + initial-state response)
    x_{L-1} = A_bar^L x0 + sum_j A_bar^{L-1-j} B_bar u_j      (final state)

Glossary (code name -> symbol):

    K            the kernel K_l = read(C A_bar^l B_bar), l = 0..L-1 (without D)
    read         the readout of the complex state: Re (``scale`` 1) or 2 Re (``scale`` 2)
    lanes        the diagonal entries of A_bar, grouped as ``(G, M)``: G groups of M lanes
    a_bar        A_bar's diagonal, ``(G, M)``
    b, c         the input and output weights of each lane, ``(G, M)``
    P_in, P_out  the projections between the H channels and the G groups, ``(G, H)`` / ``(H, G)``;
                 ``None`` means the identity (one group per channel: a depthwise model)
    T, I         the two levels of the Vandermonde powers: a^l = (a^T)^i a^t for l = T i + t

Lane systems. Every diagonal model here is one ``LaneSystem``: the state is a set of complex lanes,
lane (g, m) decays by a_bar[g, m], reads b[g, m] v_g with v = P_in u, and the output is
y = read(P_out sum_m c[:, m] x[:, m]) + D u. S4D is H groups of N/2 lanes with identity projections,
S5 and LRU are P lanes of one each with P_in = B_bar and P_out = C, Centaurus is its state channels
with real projections. The flat state ``(B, S)`` is the lanes in row-major ``(G, M)`` order, which is
the layout of each reference model's ``DiscreteSSM``. S4 (a dense A_bar) brings its own system.

Powers without a loop over time or an ``(L, S)`` tensor: with T = ceil(sqrt(L)) and I = ceil(L / T),
the T "inner" powers a^0..a^{T-1} and the I "outer" powers (a^T)^0..(a^T)^{I-1} are running products
(``torch.cumprod``, never exp(l log a)); a Vandermonde sum sum_m w_m a_m^l for all l is then one
batched matrix product ``(w * outer) @ inner^T`` of shape ``(I, T)`` per group, and the final-state
sum is the transposed product. Memory is O(L + sqrt(L) S) per group, and the rounding error of a
power grows with T + I ~ 2 sqrt(L) products instead of L.

Backends. ``"torch"`` (and ``"auto"`` on CPU tensors) runs the convolution above. ``"triton"`` (and
``"auto"`` on CUDA tensors where Triton can run) runs the recurrence itself: B_bar u_k in lanes
``(B, L, G, M)`` through the Triton diagonal scan kernel ``fast.triton.linear_scan``, then the readout --
the scan path that S5 and LRU are defined by. S4's dense A_bar has no such path (``no_triton``).

Convolution layout. The FFTs run along the last axis of a channels-first view (``fast.convolution``:
``conv_depthwise``, ``conv_projected``), a complex projection is one real matrix product on interleaved
real and imaginary parts (``_into_lanes``, ``_read_lanes``), and the skip term D u is added into the
fresh contiguous output (``_plus_skip``). The kernel's spectrum is made once per call; on the CPU, where
the kernel has one spectrum per filtered signal, the batch then goes through in blocks of rows whose FFT
buffers stay near 2 MiB (``_batch_rows``: larger buffers are page-faulted in afresh by every call).

Caching. In training the kernel is computed on the fly, so that gradients reach the parameters. In
eval mode, when no gradient can reach a parameter (``torch.no_grad()``, ``torch.inference_mode()`` or
frozen parameters), the discrete system and the kernels' spectra at the FFT length (what ``forward``
multiplies by; the last few lengths, and the time-domain kernels that ``kernel`` returns) are cached.
The cache is keyed on every parameter's identity, version counter (bumped by in-place updates:
optimizer steps, ``load_state_dict``), dtype and device, so it is never stale; ``train()`` and ``.to()``
drop it. In eval mode with gradients enabled the kernel is recomputed (a cached kernel
would either carry a spent autograd graph or silently cut the gradient).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from fast._checks import complex_dtype, no_half, positive_int, real_dtype, records_grad, validating, values_ok
from fast.convolution import (
    conv_depthwise,
    conv_full,
    conv_projected,
    depthwise_spectrum,
    fft_length,
    full_spectrum,
)
from fast.models._base import FastModel
from fast.response import frequency_response as _frequency_response

__all__ = ["FastLTIModel", "LaneSystem", "DiscreteSystem", "vandermonde", "reverse_vandermonde"]

_MAX_CACHED_KERNELS = 4


class LaneSystem(NamedTuple):
    """A discretized diagonal LTI core in lanes (module docstring)."""

    a_bar: torch.Tensor  # (G, M) complex
    b: torch.Tensor  # (G, M) complex: lane (g, m) reads b[g, m] v_g
    c: torch.Tensor  # (G, M): y reads sum_m c[g, m] x[g, m] through P_out
    P_in: torch.Tensor | None  # (G, H_in) real or complex; None: identity
    P_out: torch.Tensor | None  # (H_out, G) real or complex; None: identity
    D: torch.Tensor | None  # (H,) diagonal feed-through; None: none
    scale: float  # readout: 1.0 "re", 2.0 "2re"


class DiscreteSystem(NamedTuple):
    """The core as flat matrices, the layout of the reference's ``DiscreteSSM`` (for responses)."""

    A_bar: torch.Tensor  # (S,) diagonal or (S, S) dense
    B_bar: torch.Tensor  # (S, H_in)
    C: torch.Tensor  # (H_out, S)
    D: torch.Tensor  # (H_out, H_in)
    readout: str  # "plain", "re" or "2re"


# ------------------------------------------------------------------------------------------------
# Two-level Vandermonde products
# ------------------------------------------------------------------------------------------------


def _levels(L: int) -> tuple[int, int]:
    T = math.isqrt(L - 1) + 1  # ceil(sqrt(L))
    return T, -(-L // T)


def _running_powers(a: torch.Tensor, n: int) -> torch.Tensor:
    """a^0 .. a^{n-1} along a new axis -2: ``(..., n, M)`` from ``a (..., M)``, by running products."""
    ones = torch.ones_like(a).unsqueeze(-2)  # (..., 1, M)
    if n == 1:
        return ones
    steps = a.unsqueeze(-2).expand(*a.shape[:-1], n - 1, a.shape[-1])  # (..., n-1, M)
    return torch.cat([ones, torch.cumprod(steps, dim=-2)], dim=-2)  # (..., n, M)


def power_blocks(a: torch.Tensor, L: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(inner (..., T, M), outer (..., I, M), a^L (..., M))`` for ``a (..., M)``: a^l = outer[l // T] inner[l % T]."""
    T, I = _levels(L)
    inner = _running_powers(a, T)  # (..., T, M): a^t
    a_T = inner[..., -1, :] * a  # (..., M): a^T
    outer = _running_powers(a_T, I)  # (..., I, M): a^{T i}
    a_L = outer[..., (L - 1) // T, :] * inner[..., (L - 1) % T, :] * a  # (..., M)
    return inner, outer, a_L


def vandermonde(w: torch.Tensor, a: torch.Tensor, L: int, blocks=None) -> torch.Tensor:
    """sum_m w[..., g, m] a[g, m]^l for l = 0..L-1: ``(..., G, L)`` from ``w (..., G, M)``, ``a (G, M)``."""
    inner, outer, _ = power_blocks(a, L) if blocks is None else blocks  # (G, T, M), (G, I, M)
    V = (w.unsqueeze(-2) * outer) @ inner.transpose(-1, -2)  # (..., G, I, T)
    return V.flatten(-2)[..., :L]  # (..., G, L)


def reverse_vandermonde(v: torch.Tensor, a: torch.Tensor, blocks=None) -> torch.Tensor:
    """sum_j v[..., j, g] a[g, m]^{L-1-j}: ``(..., G, M)`` from ``v (..., L, G)``, ``a (G, M)``."""
    L = v.shape[-2]
    inner, outer, _ = power_blocks(a, L) if blocks is None else blocks  # (G, T, M), (G, I, M)
    T, I = inner.shape[-2], outer.shape[-2]
    r = v.flip(-2).transpose(-1, -2)  # (..., G, L): r[..., g, l] = v[..., L-1-l, g]
    r = torch.nn.functional.pad(r, (0, I * T - L)).unflatten(-1, (I, T))  # (..., G, I, T)
    partial = r.to(inner.dtype) @ inner  # (..., G, I, M): sum_t r[i, t] a^t
    return (partial * outer).sum(-2)  # (..., G, M)


# ------------------------------------------------------------------------------------------------
# The base class
# ------------------------------------------------------------------------------------------------


class FastLTIModel(FastModel):
    """Base class of the fast LTI models (S4, S4D, S5, LRU, Centaurus); see the module docstring.

    Subclasses implement ``_build_system()`` (the discrete system from the current parameters) and
    may override the kernel algorithm (``_lane_kernels``) or, for a dense A_bar, the running methods.
    """

    #: the readout of the flat system, as in the reference's ``DiscreteSSM``
    readout: str = "2re"
    #: complex arithmetic throughout: float16 / bfloat16 are refused (torch has no usable complex32)
    half_precision = False

    # -- the discrete system and its cache -----------------------------------------------------------
    def _build_system(self):
        raise NotImplementedError

    def _cache_allowed(self) -> bool:
        if self.training or torch.compiler.is_compiling():  # a compiled graph recomputes (no host-side dict keys)
            return False
        return not records_grad(*self.parameters())

    def _cache_key(self) -> tuple:
        params = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in self.parameters())
        return params + (torch.is_inference_mode_enabled(),)

    def _cache(self) -> dict | None:
        """The cache entry for the current parameters (created empty if stale), or None if not allowed."""
        if not self._cache_allowed():
            return None
        key = self._cache_key()
        cache = self.__dict__.get("_lti_cache")
        if cache is None or cache["key"] != key:
            cache = {"key": key, "system": None, "kernels": {}}
            self.__dict__["_lti_cache"] = cache
        return cache

    def clear_cache(self) -> None:
        """Drop the cached discrete system and kernels (done automatically; see the module docstring)."""
        self.__dict__.pop("_lti_cache", None)

    def train(self, mode: bool = True):
        self.clear_cache()
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        self.clear_cache()
        return super()._apply(fn, *args, **kwargs)

    def system(self):
        """The discrete system used by ``forward`` and ``step`` (cached in eval mode, module docstring)."""
        cache = self._cache()
        if cache is None:
            return self._build_system()
        if cache["system"] is None:
            cache["system"] = self._build_system()
        return cache["system"]

    def _cached(self, key: tuple, compute):
        """``compute()``, kept under ``key`` in eval mode (the last few entries; module docstring)."""
        cache = self._cache()
        if cache is None:
            return compute()
        entries = cache["kernels"]
        if key not in entries:
            if len(entries) >= _MAX_CACHED_KERNELS:
                entries.pop(next(iter(entries)))
            entries[key] = compute()
        return entries[key]

    def _cached_kernel(self, sys, L: int, order: str) -> torch.Tensor:
        """The kernel of ``order`` for length L (``_conv_kernel``), cached in eval mode."""
        return self._cached(("kernel", order, L), lambda: self._conv_kernel(sys, L, order))

    def _cached_spectrum(self, sys, L: int, order: str) -> tuple[torch.Tensor, int]:
        """``(spectrum, n)``: the kernel of ``order`` transformed at the FFT length n of a length-L
        convolution, what ``forward`` multiplies by (cached in eval mode: no kernel transform per call)."""
        return self._cached(("spectrum", order, L), lambda: self._conv_spectrum(sys, L, order))

    def _conv_spectrum(self, sys, L: int, order: str) -> tuple[torch.Tensor, int]:
        n = fft_length(L, L)
        K = self._conv_kernel(sys, L, order)  # (C, L) taps last, or (L, H_out, H_in)
        return (full_spectrum(K, n) if order == "kernel" else depthwise_spectrum(K, n)), n

    # -- kernels of a lane system ----------------------------------------------------------------------
    def _lane_kernels(self, sys: LaneSystem, L: int) -> torch.Tensor:
        """k_g[l] = sum_m c b a_bar^l of every group, complex, before projections and readout: ``(G, L)``."""
        return vandermonde(sys.c * sys.b, sys.a_bar, L)  # (G, L)

    def _order(self, sys, batch: int) -> str:
        """How ``forward`` contracts: "depthwise" (identity projections: a kernel (L, H)), "states"
        (real projections: convolve the G group inputs, project out), "lanes" (complex projections, S5 and
        LRU: project in, convolve every lane with its complex kernel, project out, take the readout) or
        "kernel" (a full (L, H, H)). "lanes" costs G complex convolutions where "kernel" costs H x H real
        ones; Centaurus chooses between "states" and "kernel" by its official rule."""
        if sys.P_in is None and sys.P_out is None:
            return "depthwise"
        if sys.P_in is not None and sys.P_out is not None and (sys.P_in.is_complex() or sys.P_out.is_complex()):
            return "lanes"
        return "kernel"

    def _conv_kernel(self, sys, L: int, order: str) -> torch.Tensor:
        """The kernel that ``order`` convolves with: ``(G, L)`` taps last (one per group: "depthwise",
        "states", "lanes") or ``(L, H_out, H_in)`` ("kernel")."""
        k = self._lane_kernels(sys, L)  # (G, L) complex
        if order == "lanes":
            return k  # (G, L) complex: the readout comes after the output projection
        if order in ("depthwise", "states"):
            return sys.scale * k.real  # (G, L)
        P_in = _identity_if_none(sys.P_in, k)  # (G, H_in)
        P_out = _identity_if_none(sys.P_out, k)  # (H_out, G)
        K = torch.einsum("og,gl,gi->loi", P_out.to(k.dtype), k, P_in.to(k.dtype))  # (L, H_out, H_in)
        return sys.scale * K.real

    def kernel(self, L: int) -> torch.Tensor:
        """K_l = read(C A_bar^l B_bar) by the model's own algorithm: ``(L, H_out, H_in)``, without D."""
        L = positive_int(L, "L")
        sys = self.system()
        K = self._cached_kernel(sys, L, "kernel")
        return K if K.ndim == 3 else torch.diag_embed(K.T)  # (L, H, H) from (L, H, H) or (H, L) (S4)

    # -- responses -------------------------------------------------------------------------------------
    def ssm(self) -> DiscreteSystem:
        """The discrete core as flat matrices in the reference ``DiscreteSSM`` layout."""
        sys = self.system()
        H, G, M = self.d_model, sys.a_bar.shape[0], sys.a_bar.shape[1]
        P_in = _identity_if_none(sys.P_in, sys.a_bar)  # (G, H_in)
        P_out = _identity_if_none(sys.P_out, sys.a_bar)  # (H_out, G)
        B_bar = (sys.b[:, :, None] * P_in[:, None, :].to(sys.b.dtype)).reshape(G * M, -1)  # (S, H_in)
        C = (P_out[:, :, None].to(sys.b.dtype) * sys.c[None].to(sys.b.dtype)).reshape(P_out.shape[0], G * M)  # (H, S)
        D = torch.zeros(H, H, dtype=self.dtype, device=self.device) if sys.D is None else torch.diag(sys.D)
        return DiscreteSystem(sys.a_bar.reshape(G * M), B_bar, C, D, {1.0: "re", 2.0: "2re"}[sys.scale])

    def impulse_response(self, L: int) -> torch.Tensor:
        """The core's response to a unit impulse, K_l + D delta_l: ``(L, H_out, H_in)``."""
        K = self.kernel(L)  # (L, H, H)
        return torch.cat([K[:1] + self.ssm().D, K[1:]], dim=0)

    def frequency_response(self, w) -> torch.Tensor:
        """H(e^{iw}) = read-out of C (I - e^{-iw} A_bar)^{-1} B_bar, plus D: ``(len(w), H_out, H_in)``."""
        s = self.ssm()
        return _frequency_response(s.A_bar, s.B_bar, s.C, s.D, w, readout=s.readout)

    def to_dlti(self):
        """The core as a real ``scipy.signal.dlti`` state-space system (dt = 1) in float64, from the current
        parameters: ``self.to_reference().to_dlti()`` (scipy works on NumPy arrays, so it leaves autograd)."""
        return self.to_reference().to_dlti()

    # -- states ------------------------------------------------------------------------------------------
    @property
    def state_dtype(self) -> torch.dtype:
        return complex_dtype(self.dtype)

    def state_size(self) -> int:
        """S, the number of complex entries of the flat state (each model says how it is laid out)."""
        raise NotImplementedError

    def initial_state(self, batch_size: int) -> torch.Tensor:
        """Zeros of shape ``(batch_size, S)``, complex, of the module's precision and device."""
        B = positive_int(batch_size, "batch_size")
        return torch.zeros(B, self.state_size(), dtype=self.state_dtype, device=self.device)

    def _check_state(self, state, batch: int, name: str) -> torch.Tensor | None:
        if state is None:
            return None
        S = self.state_size()
        if not isinstance(state, torch.Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor of shape ({batch}, {S}), got {type(state).__name__}")
        if tuple(state.shape) != (batch, S):
            raise ValueError(f"{name}: expected shape {(batch, S)} (B, S), got {tuple(state.shape)}")
        if not (state.is_complex() or state.is_floating_point()) or real_dtype(state.dtype) != self.dtype:
            raise ValueError(
                f"{name}: dtype {state.dtype} does not match the module's state dtype {self.state_dtype}; use .to()"
            )
        if state.device != self.device:
            raise ValueError(f"{name}: device {state.device} does not match the module's {self.device}")
        return state.to(self.state_dtype)

    def _refuse_timesteps(self, integration_timesteps) -> None:
        if integration_timesteps is not None:
            raise ValueError(
                f"integration_timesteps: {type(self).__name__} is a time-invariant (LTI) model with one kernel; "
                "it cannot use per-event gaps (only the LTV models Mamba, RGLRU and S7 take them)"
            )

    # -- running it ----------------------------------------------------------------------------------------
    def entry_checks(self, u: torch.Tensor, state, name: str = "u", state_name: str = "initial_state") -> None:
        """What every forward and step checks beyond shapes: a precision the model can run (complex arithmetic:
        no half precision, a ``ValueError`` naming the dtype and what is supported), a batch of at least one,
        and, while ``fast.validation`` is on, the input, the state and every parameter finite in one host sync
        (a NaN parameter is named, ``S4.log_dt: contains NaN ...``, before the discretization can fail on it)."""
        no_half(self.dtype, type(self).__name__)
        if u.shape[0] == 0:
            raise ValueError(f"{name}: expected a batch of at least one, got shape {tuple(u.shape)}")
        if validating():
            what = type(self).__name__
            named = {f"{what}.{k}": p.detach() for k, p in self.named_parameters()}
            values_ok(named | {name: u, state_name: state})

    def forward(self, u, *, integration_timesteps=None, initial_state=None, return_state: bool = False):
        """Run the core on ``u (B, L, H)`` or ``(L, H)`` by FFT convolution (module docstring).

        ``initial_state`` is the flat state ``(B, S)`` (``(S,)`` for an unbatched input), complex or real
        of the module's precision. Returns ``y`` of the input's rank, or ``(y, final_state)`` when
        ``return_state``.
        """
        self._refuse_timesteps(integration_timesteps)
        u = self.check_input(u)
        unbatched = u.ndim == 2
        if unbatched:
            u = u[None]  # (1, L, H)
            if isinstance(initial_state, torch.Tensor):
                initial_state = initial_state[None]
        x0 = self._check_state(initial_state, u.shape[0], "initial_state")  # (B, S) or None
        self.entry_checks(u, x0)
        sys = self.system()
        if self.resolved_backend(u) == "triton":
            y, xL = self._scan_lanes(sys, u, x0)  # (B, L, H), (B, S): the scan ends in the final state
        else:
            y = self._convolve(sys, u)  # (B, L, H)
            if x0 is not None:
                y = y + self._free_response(sys, x0, u.shape[1])  # (B, L, H)
            xL = self._final_state(sys, u, x0) if return_state else None  # (B, S)
        if not return_state:
            return y[0] if unbatched else y
        return (y[0], xL[0]) if unbatched else (y, xL)

    def step(self, u_t, state, *, integration_timesteps=None):
        """One step: ``u_t (B, H)`` and ``state (B, S)`` -> ``(y_t (B, H), state (B, S))`` with the cached
        discrete (A_bar, B_bar) in eval mode. An unbatched ``u_t (H,)`` (as ``forward`` takes ``(L, H)``) with a
        state ``(S,)`` returns ``(y_t (H,), state (S,))``."""
        self._refuse_timesteps(integration_timesteps)
        u_t, state, unbatched = self.step_input(u_t, state)
        x = self._check_state(state, u_t.shape[0], "state")
        self.entry_checks(u_t, x, "u_t", "state")
        if x is None:
            x = self.initial_state(u_t.shape[0])
        y, x = self._step(self.system(), u_t, x)
        return (y[0], x[0]) if unbatched else (y, x)

    def step_input(self, u_t, state):
        """``(u_t (B, H), state, unbatched)``: ``u_t`` checked (shape, dtype, device); an unbatched ``(H,)`` input
        and its state get a batch axis of 1."""
        if not isinstance(u_t, torch.Tensor):
            raise ValueError(f"u_t: expected a torch.Tensor, got {type(u_t).__name__}")
        unbatched = u_t.ndim == 1
        if unbatched:
            u_t = u_t[None]  # (1, H)
            state = state[None] if isinstance(state, torch.Tensor) else state
        if u_t.ndim != 2 or u_t.shape[1] != self.d_model:
            raise ValueError(f"u_t: expected shape (B, {self.d_model}) or ({self.d_model},), got {tuple(u_t.shape)}")
        self.check_input(u_t[:, None], "u_t")  # dtype and device
        return u_t, state, unbatched

    # -- the three computations of a lane system (S4 overrides them) -----------------------------------
    def _convolve(self, sys: LaneSystem, u: torch.Tensor, order: str | None = None) -> torch.Tensor:
        """y = K * u + D u from a zero state: ``(B, L, H)``, contiguous; contracted in ``order`` (default: the
        model's ``_order``). The kernel's spectrum is made once; where it has one spectrum per filtered signal
        ("depthwise", "lanes", narrow "states"), the batch then goes through in blocks of rows (``_batch_rows``:
        on the CPU, blocks whose FFT buffers stay near 2 MiB)."""
        L = u.shape[1]
        order = self._order(sys, u.shape[0]) if order is None else order
        K_f, n = self._cached_spectrum(sys, L, order)  # (C, n_f) or (n_f, H, H)
        per_signal = order in ("depthwise", "lanes") or (order == "states" and not _wide(sys, K_f.shape[0]))
        rows = _batch_rows(u, K_f) if per_signal else u.shape[0]
        if rows >= u.shape[0]:
            return self._convolve_rows(sys, u, K_f, n, order)
        starts = range(0, u.shape[0], rows)
        if records_grad(u, K_f, *self.parameters()):
            return torch.cat([self._convolve_rows(sys, u[i : i + rows], K_f, n, order) for i in starts])
        y = torch.empty(*u.shape[:2], self.d_model, dtype=u.dtype, device=u.device)  # (B, L, H)
        for i in starts:
            y[i : i + rows] = self._convolve_rows(sys, u[i : i + rows], K_f, n, order)
        return y

    def _convolve_rows(self, sys: LaneSystem, u: torch.Tensor, K_f: torch.Tensor, n: int, order: str) -> torch.Tensor:
        """``_convolve`` on one block of batch rows, with the kernel's spectrum ``K_f`` at FFT length n."""
        if order == "states" and _wide(sys, K_f.shape[0]):
            # more groups than channels: the FFTs on the channel sides, the projections on the spectra
            y = conv_projected(u, K_f, n, sys.P_in.to(u.dtype), sys.P_out.to(u.dtype))  # (B, L, H)
        elif order == "states":
            y = _project(conv_depthwise(_project(u, sys.P_in), K_f, n), sys.P_out)  # (B, L, H)
        elif order == "lanes":
            y = _read_lanes(conv_depthwise(_into_lanes(u, sys.P_in), K_f, n), sys.P_out, sys.scale)  # (B, L, H)
        elif order == "depthwise":
            y = conv_depthwise(u, K_f, n)  # (B, L, H)
        else:
            y = conv_full(u, K_f, n)  # (B, L, H)
        return _plus_skip(y, sys.D, u)

    def _free_response(self, sys: LaneSystem, x0: torch.Tensor, L: int) -> torch.Tensor:
        """read(C A_bar^{k+1} x0) for k = 0..L-1: ``(B, L, H)``."""
        G, M = sys.a_bar.shape
        x0 = x0.reshape(-1, G, M)  # (B, G, M)
        z = vandermonde(sys.c * sys.a_bar * x0, sys.a_bar, L)  # (B, G, L)
        z = _project(z.transpose(1, 2), sys.P_out)  # (B, L, H)
        return sys.scale * z.real

    def _final_state(self, sys: LaneSystem, u: torch.Tensor, x0: torch.Tensor | None) -> torch.Tensor:
        """x_{L-1} = A_bar^L x0 + sum_j A_bar^{L-1-j} B_bar u_j: ``(B, S)``."""
        G, M = sys.a_bar.shape
        blocks = power_blocks(sys.a_bar, u.shape[1])  # (G, T, M), (G, I, M), (G, M)
        v = _project(u, sys.P_in)  # (B, L, G)
        x = sys.b * reverse_vandermonde(v, sys.a_bar, blocks)  # (B, G, M)
        if x0 is not None:
            x = x + blocks[2] * x0.reshape(-1, G, M)  # (B, G, M)
        return x.reshape(-1, G * M)

    def _scan_lanes(self, sys: LaneSystem, u: torch.Tensor, x0: torch.Tensor | None):
        """The recurrence itself, every lane at once through the Triton diagonal scan kernel
        (``backend="triton"``): ``y (B, L, H)`` and the final state ``(B, S)``."""
        from fast.triton import linear_scan as triton_linear_scan

        G, M = sys.a_bar.shape
        Bsz = u.shape[0]
        v = _project(u, sys.P_in)  # (B, L, G)
        bu = sys.b * v[..., None]  # (B, L, G, M): B_bar u_k in lanes
        x0 = None if x0 is None else x0.reshape(Bsz, G, M)  # (B, G, M)
        x, xL = triton_linear_scan(sys.a_bar[None, None], bu, x0)  # (B, L, G, M), (B, G, M)
        z = _project((sys.c * x).sum(-1), sys.P_out)  # (B, L, H)
        y = sys.scale * z.real  # (B, L, H)
        if sys.D is not None:
            y = y + sys.D * u
        return y, xL.reshape(Bsz, G * M)

    def _step(self, sys: LaneSystem, u_t: torch.Tensor, x: torch.Tensor):
        G, M = sys.a_bar.shape
        v = _project(u_t, sys.P_in)  # (B, G)
        x = sys.a_bar * x.reshape(-1, G, M) + sys.b * v[:, :, None]  # (B, G, M)
        z = _project((sys.c * x).sum(-1), sys.P_out)  # (B, H)
        y = sys.scale * z.real  # (B, H)
        if sys.D is not None:
            y = y + sys.D * u_t
        return y, x.reshape(-1, G * M)


#: Bytes of one block of batch rows' signal spectra in ``_convolve`` on the CPU (see ``_batch_rows``).
_BATCH_BLOCK_BYTES = 2**21


def _batch_rows(u: torch.Tensor, k_f: torch.Tensor) -> int:
    """How many batch rows ``_convolve`` transforms at once when the kernel has one spectrum per signal it
    filters (``k_f (C, n_f)``: the "depthwise", "lanes" and narrow "states" orders): all of them on an
    accelerator; on the CPU as many as keep one block's spectra (C signals of n_f complex bins per row)
    within ``_BATCH_BLOCK_BYTES``.

    Why on the CPU: glibc serves a buffer of many MiB by mapping fresh pages and hands them back to the
    system when it is freed, so every call page-faults its FFT buffers in again. With a kernel computed in
    the same call (training mode), that measured 4,000-6,000 page faults and 10-15 ms of a 40 ms S4 forward
    at B = 8, L = 1024, H = 128 on the 2-core machine; blocks of 2 MiB are reused from the heap. The "kernel"
    order and the projected spectra go whole: there every block would read the kernel's spectrum again, G / H
    or H times the size of a row's own spectra (measured: Centaurus full at B = 8, L = 1024, H = 128 took 2.4 s
    in blocks of two rows instead of 1.1 s)."""
    if u.device.type != "cpu":
        return u.shape[0]
    channels, n_f = k_f.shape
    per_row = channels * n_f * 2 * u.element_size()  # bytes: complex values of u's precision
    return max(1, _BATCH_BLOCK_BYTES // per_row)


def _wide(sys: LaneSystem, groups: int) -> bool:
    """Whether both projections exist and the G groups outnumber the input and the output channels."""
    if sys.P_in is None or sys.P_out is None:
        return False
    return groups > max(sys.P_in.shape[1], sys.P_out.shape[0])


def _project(z: torch.Tensor, P: torch.Tensor | None) -> torch.Tensor:
    """z @ P^T over the last axis (P None: z itself), as one 2-D product: ``(..., G)`` -> ``(..., H)``.

    Flattening first makes the summation order independent of whether autograd records (torch's
    batched matmul picks different kernels with and without ``requires_grad``), so eval-mode and
    training-mode outputs are bit-identical."""
    if P is None:
        return z
    dtype = torch.promote_types(z.dtype, P.dtype)
    return (z.reshape(-1, z.shape[-1]).to(dtype) @ P.T.to(dtype)).reshape(*z.shape[:-1], P.shape[0])


def _into_lanes(u: torch.Tensor, P_in: torch.Tensor) -> torch.Tensor:
    """v = u @ P_in^T for a real ``u (B, L, H)`` and complex ``P_in (G, H)``: ``(B, L, G)`` complex, by one
    real product with P_in's real and imaginary parts interleaved (half the real multiplications of a complex
    product on u made complex; flattened to 2-D as ``_project``)."""
    G, H = P_in.shape
    W = torch.view_as_real(P_in.T).reshape(H, 2 * G)  # (H, 2G): column 2g + r is part r of P_in[g]
    v = u.reshape(-1, H) @ W.to(u.dtype)  # (B*L, 2G)
    return torch.view_as_complex(v.reshape(*u.shape[:-1], G, 2))  # (B, L, G)


def _read_lanes(z: torch.Tensor, P_out: torch.Tensor, scale: float) -> torch.Tensor:
    """scale * Re(z @ P_out^T) for complex ``z (B, L, G)`` and ``P_out (H, G)``: ``(B, L, H)`` real, by one real
    product, Re(z p) = Re z Re p - Im z Im p, with z's parts interleaved (the imaginary part, which the
    readout drops, is never formed: half the real multiplications of the complex product)."""
    H, G = P_out.shape
    parts = torch.view_as_real(P_out.T)  # (G, H, 2)
    W = torch.stack([parts[..., 0], -parts[..., 1]], dim=1).reshape(2 * G, H)  # (2G, H): row 2g + r
    y = torch.view_as_real(z).reshape(-1, 2 * G) @ (scale * W)  # (B*L, H)
    return y.reshape(*z.shape[:-1], H)  # (B, L, H)


def _plus_skip(y: torch.Tensor, D: torch.Tensor | None, u: torch.Tensor) -> torch.Tensor:
    """y + D u as a fresh contiguous tensor (``y`` may be a transposed view of a channels-first result)."""
    return y.contiguous() if D is None else (D * u).add_(y)


def _identity_if_none(P: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    if P is not None:
        return P
    G = like.shape[0]
    return torch.eye(G, dtype=real_dtype(like.dtype), device=like.device)
