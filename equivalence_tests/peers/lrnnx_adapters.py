"""Conformance adapters for lrnnx 1.0.0.post1 (SforAiDl/lrnnx), a library of linear RNNs.

How the code is reached on a CPU machine: installed with ``CUDA_HOME`` unset (``--no-build-isolation --no-deps``),
lrnnx builds without its CUDA extensions, yet ``lrnnx/ops/selective_scan.py``, ``s7_scan.py``, ``rglru_scan.py``
import ``selective_scan_cuda`` and ``lrnnx/ops/simplified_scan.py`` imports ``simplified_scan_cuda`` at their top
(and ``lrnnx/models/ltv/__init__.py`` imports all of them). Absent-extension stubs
(``equivalence_tests.peers._loading.stub_extension``) stand in for both modules, so the packages import; any call
into a stub raises. Then:

- ``LrnnxDiscretization``: ``lrnnx.core.discretization.DISCRETIZE_FNS`` (``zoh``, ``bilinear``, ``dirac``,
  ``async``), the functions lrnnx's models call through ``discretize_fn`` (its LTI S5, for one). Each returns
  ``(A_bar, gamma_bar)`` for a diagonal A; the adapter forms ``B_bar = gamma_bar * B`` as lrnnx's models do.
  float64 in, float64 out. Only ``async`` reads the event gaps (the others ignore them: unsupported there).
- ``LrnnxSelectiveScanRef``: ``lrnnx.ops.selective_scan.selective_scan_ref``, lrnnx's pure-torch reference of its
  selective-scan kernel, with its rules ``mamba``, ``zoh``, ``bilinear``, ``dirac``, and ``async`` through its
  ``deltaA`` argument (the step of A alone: ``deltaA = dt * tau``, rule ``zoh`` for B). It casts u, delta, B, C to
  float32: ``dtype = "float32"``. No initial state.
- ``LrnnxMamba``: ``lrnnx.models.ltv.Mamba`` with ``use_fast_path=False`` (``causal_conv1d`` is not installed);
  on a CPU machine its module globals ``selective_scan_fn`` (CUDA) and ``selective_state_update`` (Triton) are
  rebound during each call to ``selective_scan_ref`` (same signature) and None (``step``'s own torch branch).
  float32 (``dtype = "float32"``). The state comes from its ``inference_cache``; its forward cannot start from a
  given state. Its event mode (``integration_timesteps``) is a different model (a separate, input-independent
  step for A; reference/README.md §Mamba): inputs with event gaps are unsupported.
- ``LrnnxLRU`` / ``LrnnxLRU64``: ``lrnnx.models.lti.LRU`` (no CUDA path at all: ``opt_ssm_forward``, FFT
  convolution), in float32 and as a float64 module (``.double()``).
- ``LrnnxRGLRU``: ``lrnnx.models.ltv.RGLRU`` (``bias=True`` so that it holds every bias of the reference block,
  ``use_fast_path=False``); during each call its module globals ``rglru_scan_fn`` (CUDA) and
  ``selective_state_update`` (Triton) are rebound to ``lrnnx.ops.rglru_scan.rglru_scan_ref`` (same signature) and
  None. Its gates are dense and it never resets, so ``options`` hold the reference to ``num_heads=1``,
  ``segment_reset=False``; its width is ``expand * d_model``. float32. Its erf-GELU is a declared deviation.

On a CUDA machine with the extensions built, nothing is stubbed or rebound (the same adapters then run the CUDA
selective scan inside ``Mamba``).

Not covered, and why: lrnnx's S4 and S4D are whole S4 blocks (GELU, a GLU output projection, dropout) around
the kernel, not the SSM core the reference models, and their parameters live in the S4 kernel machinery;
lrnnx's LTI S5 is a different parametrization (real B, a dense (H, H) D, no HiPPO initialization) whose
parameters the reference's S5 cannot hold; its Centaurus (another eigenvalue parametrization), LTV S5 and S7
(their own layouts and scans; reference/README.md §Other-libraries) are not mapped here yet.
"""

from __future__ import annotations

import contextlib
import importlib

import numpy as np

import equivalence_tests.conformance as cf
from equivalence_tests.peers import converters
from equivalence_tests.peers._loading import extension_built, parameter_gradients, replaced, stub_extension

PEER = "lrnnx"
VERSION = "1.0.0.post1"

__all__ = ["LrnnxDiscretization", "LrnnxSelectiveScanRef", "LrnnxMamba", "LrnnxLRU", "LrnnxLRU64", "LrnnxRGLRU",
           "ADAPTERS", "load"]


def load():
    """Import the lrnnx modules the adapters use (module docstring). Returns a namespace of them and ``kernels``
    (True where the CUDA extension exists and a GPU is present)."""
    import types

    import torch

    stub_extension("selective_scan_cuda")
    stub_extension("simplified_scan_cuda")
    ns = types.SimpleNamespace(
        discretization=importlib.import_module("lrnnx.core.discretization"),
        selective_scan=importlib.import_module("lrnnx.ops.selective_scan"),
        mamba=importlib.import_module("lrnnx.models.ltv.mamba"),
        lru=importlib.import_module("lrnnx.models.lti.lru"),
        rglru=importlib.import_module("lrnnx.models.ltv.rglru"),
        rglru_scan=importlib.import_module("lrnnx.ops.rglru_scan"),
    )
    ns.kernels = extension_built("selective_scan_cuda") and torch.cuda.is_available()
    return ns


def _np(x):
    x = x.detach().cpu()
    return x.resolve_conj().numpy().astype(np.complex128) if x.is_complex() else x.double().numpy()


def _torch(x, dtype):
    import torch

    if x is None:
        return None
    x = np.asarray(x)
    if np.iscomplexobj(x):
        return torch.as_tensor(x, dtype=torch.complex128 if dtype == torch.float64 else torch.complex64)
    return torch.as_tensor(x, dtype=dtype)


# ------------------------------------------------------------------------------------------------
# ops
# ------------------------------------------------------------------------------------------------


class LrnnxDiscretization(cf.DiscretizationAdapter):
    """``lrnnx.core.discretization.DISCRETIZE_FNS`` (diagonal A; float64; module docstring)."""

    methods = ("zoh", "bilinear", "dirac", "async")
    dense = False

    def discretize(self, A, B, dt, method, *, integration_timesteps=None):
        import torch

        fns = load().discretization.DISCRETIZE_FNS
        if method not in fns:
            raise cf.Unsupported(f"lrnnx has no discretization {method!r}")
        if integration_timesteps is not None and method != "async":
            raise cf.Unsupported(f"lrnnx's {method} ignores integration_timesteps (only async reads them)")
        A_t = _torch(A, torch.float64)  # (N,)
        B_t = _torch(B, torch.float64)  # (N, H)
        delta = _torch(dt, torch.float64)  # () or (N,)
        tau = None if integration_timesteps is None else _torch(integration_timesteps, torch.float64)[..., None]
        with torch.no_grad():
            A_bar, gamma = fns[method](A_t, delta, tau)  # (..., N), (..., N) or a float
        gamma = torch.as_tensor(gamma, dtype=A_bar.dtype) if isinstance(gamma, float) else gamma
        B_bar = gamma[..., None] * B_t  # (..., N, H): lrnnx's models form B_bar = gamma_bar * B
        return _np(A_bar), _np(B_bar)


class LrnnxSelectiveScanRef(cf.SelectiveScanAdapter):
    """``lrnnx.ops.selective_scan.selective_scan_ref`` (float32; module docstring)."""

    methods = ("mamba", "zoh", "bilinear", "dirac", "async")
    dtype = "float32"

    def selective_scan(self, u, dt, A, B, C, D=None, z=None, *, method, integration_timesteps=None,
                       initial_state=None):
        import torch

        if initial_state is not None:
            raise cf.Unsupported("lrnnx's selective_scan_ref has no initial-state argument (it starts from zero)")
        deltaA = None
        rule = method
        if method == "async":
            if integration_timesteps is None:
                raise cf.Unsupported("async needs integration_timesteps")
            tau = np.asarray(integration_timesteps)  # (B, L) or (L,)
            tau = np.broadcast_to(tau, np.shape(dt)[:2])[..., None]  # (B, L, 1)
            deltaA, rule = np.asarray(dt) * tau, "zoh"  # A decays over dt * tau, B takes one step dt
        elif integration_timesteps is not None:
            raise cf.Unsupported(f"lrnnx's selective_scan_ref has no event gaps for rule {method!r} (only async, "
                                 "through deltaA)")
        ns = load()
        f32 = torch.float32

        def t(x):  # (B, L, X) -> lrnnx's (B, X, L)
            if x is None:
                return None
            x = torch.as_tensor(np.asarray(x), dtype=f32)
            return x.transpose(1, 2).contiguous() if x.ndim == 3 else x

        with torch.no_grad():
            y, last = ns.selective_scan.selective_scan_ref(
                t(u), t(dt), t(A), t(B), t(C), t(D), t(z), deltaA=t(deltaA), return_last_state=True,
                discretization=rule,
            )  # (B, D, L), (B, D, N)
        return _np(y).transpose(0, 2, 1), _np(last)


# ------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------


_EVENT_MODE = (
    "lrnnx's Mamba with integration_timesteps (its event mode) is another model: A decays over tau * "
    "softplus(dtA_proj.bias), an input-independent step of a separate projection, while B keeps the selective step; "
    "the reference scales the selective step itself (reference/README.md §Mamba)"
)


class LrnnxMamba(cf.ModelAdapter):
    """``lrnnx.models.ltv.Mamba`` (non-fused path, float32; module docstring)."""

    model = "Mamba"
    discretizations = ("mamba", "zoh", "bilinear", "dirac")
    dtype = "float32"
    def _new(self, config, discretization):
        import torch

        ns = load()
        return ns.mamba.Mamba(
            config["d_model"], d_state=config["d_state"], d_conv=config["d_conv"], expand=config["expand"],
            dt_rank=config["dt_rank"], dt_min=config["dt_min"], dt_max=config["dt_max"],
            dt_init=config["dt_init"], dt_scale=config["dt_scale"], dt_init_floor=config["dt_init_floor"],
            conv_bias=config["conv_bias"], bias=config["bias"], use_fast_path=False, layer_idx=0,
            device="cuda" if ns.kernels else "cpu", dtype=torch.float32, discretization=discretization,
        )

    def build(self, ref):
        import torch

        module = self._new(ref.config, ref.discretization)
        module.reference_config = dict(ref.config)  # for grad_params' converter
        sd = converters.reference_to_mamba_state_dict(ref.params, layout="lrnnx")
        module.load_state_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in sd.items()})
        return module.eval()

    @contextlib.contextmanager
    def _cpu_paths(self):
        ns = load()
        if ns.kernels:
            yield
            return
        with replaced(ns.mamba, "selective_scan_fn", ns.selective_scan.selective_scan_ref), replaced(
            ns.mamba, "selective_state_update", None
        ):
            yield

    def _t(self, impl, x):
        import torch

        return None if x is None else torch.as_tensor(np.asarray(x), dtype=torch.float32,
                                                      device=impl.out_proj.weight.device)

    def forward(self, impl, u, *, initial_state=None, integration_timesteps=None):
        import torch

        if initial_state is not None:
            raise cf.Unsupported("lrnnx's Mamba.forward always starts from the zero state (only step continues a "
                                 "state)")
        if integration_timesteps is not None:
            raise cf.Unsupported(_EVENT_MODE)
        u_t = self._t(impl, u)
        cache = impl.allocate_inference_cache(u_t.shape[0], 1)
        with torch.no_grad(), self._cpu_paths():
            y = impl(u_t, inference_cache=cache)  # (B, L, H)
        return _np(y), {k: (v.clone() if hasattr(v, "clone") else v) for k, v in cache.items()}

    def step(self, impl, u_t, state, *, integration_timesteps=None):
        import torch

        if integration_timesteps is not None:
            raise cf.Unsupported(_EVENT_MODE)
        cache = {k: (v.clone() if hasattr(v, "clone") else v) for k, v in state.items()}  # step works in place
        with torch.no_grad(), self._cpu_paths():
            y, cache = impl.step(self._t(impl, u_t)[:, None, :], cache)
        return _np(y.reshape(y.shape[0], -1)), cache

    def initial_state(self, impl, batch_size):
        return impl.allocate_inference_cache(batch_size, 1)

    def state_to_reference(self, impl, state):
        from reference.models.ltv.mamba import MambaState

        return MambaState(_np(state["conv_state"]), _np(state["lrnn_state"]))

    def initial_params(self, ref, seed):
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = self._new(ref.config, ref.discretization)
        return converters.mamba_state_dict_to_reference(module.state_dict(), ref.config, layout="lrnnx")

    def grad_input(self, impl, u, grad_y, *, integration_timesteps=None):
        if integration_timesteps is not None:
            raise cf.Unsupported(_EVENT_MODE)
        ut = self._t(impl, u).requires_grad_(True)
        with self._cpu_paths():
            y = impl(ut)
        (y * self._t(impl, grad_y)).sum().backward()
        return _np(ut.grad)

    def grad_params(self, impl, u, grad_y, *, integration_timesteps=None):
        if integration_timesteps is not None:
            raise cf.Unsupported(_EVENT_MODE)
        impl.zero_grad()
        with self._cpu_paths():
            y = impl(self._t(impl, u))
        (y * self._t(impl, grad_y)).sum().backward()
        config = impl.reference_config
        return parameter_gradients(impl, lambda sd: converters.mamba_state_dict_to_reference(sd, config,
                                                                                             layout="lrnnx"))


class LrnnxLRU(cf.ModelAdapter):
    """``lrnnx.models.lti.LRU`` in float32 (module docstring)."""

    model = "LRU"
    discretizations = ("native",)
    dtype = "float32"

    @property
    def _torch_dtype(self):
        import torch

        return {"float32": torch.float32, "float64": torch.float64}[self.dtype]

    def _new(self, config):
        ns = load()
        return ns.lru.LRU(config["d_model"], config["d_state"], r_min=config["r_min"], r_max=config["r_max"],
                          max_phase=config["max_phase"]).to(self._torch_dtype)

    def build(self, ref):
        import torch

        module = self._new(ref.config)
        module.reference_config = dict(ref.config)  # for grad_params' converter
        sd = converters.reference_to_lrnnx_lru_state_dict(ref.params)
        module.load_state_dict({k: torch.as_tensor(v, dtype=self._torch_dtype) for k, v in sd.items()})
        return module.eval()

    def forward(self, impl, u, *, initial_state=None, integration_timesteps=None):
        import torch

        if integration_timesteps is not None:
            raise cf.Unsupported("lrnnx's LRU is time-invariant (no integration_timesteps)")
        if initial_state is not None:
            raise cf.Unsupported("lrnnx's LRU.forward takes no initial state")
        with torch.no_grad():
            return _np(impl(_torch(u, self._torch_dtype))), None

    def step(self, impl, u_t, state, *, integration_timesteps=None):
        import torch

        cache = dict(state, lrnn_state=state["lrnn_state"].clone())  # LRU.step writes the state in place
        with torch.no_grad():
            y, cache = impl.step(_torch(u_t, self._torch_dtype), cache)
        return _np(y), cache

    def initial_state(self, impl, batch_size):
        import torch

        with torch.no_grad():
            return impl.allocate_inference_cache(batch_size)

    def initial_params(self, ref, seed):
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = self._new(ref.config)
        return converters.lrnnx_lru_state_dict_to_reference(module.state_dict(), ref.config)

    def grad_input(self, impl, u, grad_y, *, integration_timesteps=None):
        ut = _torch(u, self._torch_dtype).requires_grad_(True)
        (impl(ut) * _torch(grad_y, self._torch_dtype)).sum().backward()
        return _np(ut.grad)

    def grad_params(self, impl, u, grad_y, *, integration_timesteps=None):
        impl.zero_grad()
        (impl(_torch(u, self._torch_dtype)) * _torch(grad_y, self._torch_dtype)).sum().backward()
        config = impl.reference_config
        # log_dt: the reference's own step, which lrnnx's LRU does not have (and "native" does not read). At L = 1
        # the output does not depend on lambda (y_0 = Re(C gamma B u_0) + D u_0): the twin's autograd graph then has
        # no gradient for nu_log and theta_log, and they are left out here too
        drop = ("log_dt",) + (("nu_log", "theta_log") if np.shape(u)[1] == 1 else ())
        return parameter_gradients(impl, lambda sd: converters.lrnnx_lru_state_dict_to_reference(sd, config),
                                   drop=drop)


class LrnnxLRU64(LrnnxLRU):
    """``lrnnx.models.lti.LRU`` converted to float64 (``.double()``)."""

    dtype = "float64"


_ERF_GELU = (
    "documented deviation: lrnnx's RG-LRU block applies torch's exact (erf) GELU to its gate branch "
    "(`F.gelu(self.gate_proj(x))` in lrnnx/models/ltv/rglru.py), where Griffin and RecurrentGemma use the tanh "
    "approximation (reference/README.md §RG-LRU); outputs differ by up to ~1e-3 of the gate"
)


class LrnnxRGLRU(cf.ModelAdapter):
    """``lrnnx.models.ltv.RGLRU`` (non-fused path, float32; the reference with one head and no segment reset)."""

    model = "RGLRU"
    options = {"num_heads": 1, "segment_reset": False}
    dtype = "float32"
    expected_failures = {name: _ERF_GELU for name in (
        "forward_matches_reference", "input_gradient_matches_fast_float64", "parameter_gradients_match_fast_float64",
    )}

    def _new(self, config, bias=True):
        import torch

        H, D = config["d_model"], config["d_state"]
        if D % H:
            raise cf.Unsupported(f"lrnnx's RG-LRU width is expand * d_model with an integer expand: {D} is not a "
                                 f"multiple of d_model = {H}")
        ns = load()
        return ns.rglru.RGLRU(H, d_conv=config["conv1d_width"], expand=D // H, c=config["c"],
                              a_init_range=(config["min_rad"], config["max_rad"]), conv_bias=True, bias=bias,
                              use_fast_path=False, layer_idx=0, dtype=torch.float32)

    def build(self, ref):
        import torch

        module = self._new(ref.config)
        module.reference_config = dict(ref.config)  # for grad_params' converter
        sd = converters.reference_to_lrnnx_rglru_state_dict(ref.params)
        module.load_state_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in sd.items()})
        return module.eval()

    @contextlib.contextmanager
    def _cpu_paths(self):
        ns = load()
        if ns.kernels:
            yield
            return
        with replaced(ns.rglru, "rglru_scan_fn", ns.rglru_scan.rglru_scan_ref), replaced(
            ns.rglru, "selective_state_update", None
        ):
            yield

    def _t(self, x):
        import torch

        return torch.as_tensor(np.asarray(x), dtype=torch.float32)

    def forward(self, impl, u, *, initial_state=None, integration_timesteps=None):
        import torch

        if integration_timesteps is not None:
            raise cf.Unsupported("lrnnx's RG-LRU takes no integration_timesteps")
        if initial_state is not None:
            raise cf.Unsupported("lrnnx's RGLRU.forward always starts from the zero state (only step continues one)")
        u_t = self._t(u)
        cache = impl.allocate_inference_cache(u_t.shape[0], 1)
        with torch.no_grad(), self._cpu_paths():
            y = impl(u_t, inference_cache=cache)  # (B, L, H)
        return _np(y), (cache, u_t.shape[1])  # the cache and the tokens seen (the reference's next position)

    def step(self, impl, u_t, state, *, integration_timesteps=None):
        import torch

        if integration_timesteps is not None:
            raise cf.Unsupported("lrnnx's RG-LRU takes no integration_timesteps")
        cache, seen = state
        cache = {k: (v.clone() if hasattr(v, "clone") else v) for k, v in cache.items()}  # step works in place
        with torch.no_grad(), self._cpu_paths():
            y, cache = impl.step(self._t(u_t)[:, None, :], cache)
        return _np(y[:, 0]), (cache, seen + 1)

    def initial_state(self, impl, batch_size):
        return impl.allocate_inference_cache(batch_size, 1), 0

    def state_to_reference(self, impl, state):
        from reference.models.ltv.rglru import RGLRUState

        cache, seen = state
        conv = _np(cache["conv_state"])  # (B, D, W): the last W inputs, newest last
        B = conv.shape[0]
        return RGLRUState(conv[:, :, 1:].transpose(0, 2, 1), _np(cache["lrnn_state"])[..., 0],
                          np.full(B, seen, dtype=np.int64))

    def initial_params(self, ref, seed):
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = self._new(ref.config, bias=False)  # lrnnx's default: no projection biases (zeros)
        sd = dict(module.state_dict())
        for name, rows in (("gate_proj.bias", module.d_inner), ("in_proj.bias", module.d_inner),
                           ("out_proj.bias", module.d_model)):
            sd[name] = torch.zeros(rows)
        return converters.lrnnx_rglru_state_dict_to_reference(sd, ref.config)

    def grad_input(self, impl, u, grad_y, *, integration_timesteps=None):
        if integration_timesteps is not None:
            raise cf.Unsupported("lrnnx's RG-LRU takes no integration_timesteps")
        ut = self._t(u).requires_grad_(True)
        with self._cpu_paths():
            y = impl(ut)
        (y * self._t(grad_y)).sum().backward()
        return _np(ut.grad)

    def grad_params(self, impl, u, grad_y, *, integration_timesteps=None):
        if integration_timesteps is not None:
            raise cf.Unsupported("lrnnx's RG-LRU takes no integration_timesteps")
        impl.zero_grad()
        with self._cpu_paths():
            y = impl(self._t(u))
        (y * self._t(grad_y)).sum().backward()
        config = impl.reference_config
        return parameter_gradients(impl, lambda sd: converters.lrnnx_rglru_state_dict_to_reference(sd, config))


ADAPTERS = (LrnnxDiscretization, LrnnxSelectiveScanRef, LrnnxMamba, LrnnxLRU, LrnnxLRU64, LrnnxRGLRU)
