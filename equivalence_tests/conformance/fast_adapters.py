"""The project's own adapters: every ``fast`` model and op, in float64 and float32 (``make test`` runs the kit on
each and expects no failure). They are also the worked example of an adapter for a torch implementation:
NumPy in, a tensor of the adapter's dtype to the implementation, the result back out; states stay opaque
(the module's own tensors or NamedTuples) and ``state_to_reference`` turns them into NumPy arrays.

``python -m equivalence_tests.conformance equivalence_tests.conformance.fast_adapters:FastS4D`` runs one.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

import fast
import fast.models
import fast.ops
import reference.models
from equivalence_tests.conformance import adapters as cf

TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def to_torch(x, dtype: torch.dtype):
    """A NumPy array (real or complex) as a tensor of ``dtype``'s precision; None stays None."""
    if x is None:
        return None
    x = np.asarray(x)
    if np.iscomplexobj(x):
        return torch.as_tensor(x, dtype=torch.complex128 if dtype == torch.float64 else torch.complex64)
    return torch.as_tensor(x, dtype=dtype)


def to_numpy(x):
    """Tensors (or tuples of them) as NumPy arrays, detached."""
    if isinstance(x, tuple):
        return type(x)(*(to_numpy(v) for v in x)) if hasattr(x, "_fields") else tuple(to_numpy(v) for v in x)
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return x.resolve_conj().numpy() if x.is_complex() else x.numpy()
    return x


class _Torch:
    """The precision shared by the torch adapters."""

    dtype = "float64"

    @property
    def torch_dtype(self) -> torch.dtype:
        return TORCH_DTYPES[self.dtype]


class FastModelAdapter(_Torch, cf.ModelAdapter):
    """Any ``fast.models`` model: set ``model`` (and ``dtype``); it claims every rule of the reference model."""

    def build(self, ref):
        return getattr(fast.models, self.model).from_reference(ref).to(self.torch_dtype)

    def _kwargs(self, integration_timesteps):
        return {} if integration_timesteps is None else {"integration_timesteps": to_torch(integration_timesteps,
                                                                                            self.torch_dtype)}

    def forward(self, impl, u, *, initial_state=None, integration_timesteps=None):
        with torch.no_grad():
            y, state = impl(to_torch(u, self.torch_dtype), initial_state=initial_state, return_state=True,
                            **self._kwargs(integration_timesteps))
        return to_numpy(y), state

    def step(self, impl, u_t, state, *, integration_timesteps=None):
        with torch.no_grad():
            y, state = impl.step(to_torch(u_t, self.torch_dtype), state, **self._kwargs(integration_timesteps))
        return to_numpy(y), state

    def initial_state(self, impl, batch_size):
        return impl.initial_state(batch_size)

    def state_to_reference(self, impl, state):
        return to_numpy(state)

    def initial_params(self, ref, seed):
        model = getattr(fast.models, self.model)(**ref.config, seed=seed, dtype=self.torch_dtype)
        values = {}
        for field in dataclasses.fields(ref.params):
            if isinstance(getattr(ref.params, field.name), np.ndarray):
                values[field.name] = to_numpy(model.param(field.name))
        return type("InitialParams", (), values)

    def grad_input(self, impl, u, grad_y, *, integration_timesteps=None):
        ut = to_torch(u, self.torch_dtype).requires_grad_(True)
        y = impl(ut, **self._kwargs(integration_timesteps))
        (y * to_torch(grad_y, self.torch_dtype)).sum().backward()
        return to_numpy(ut.grad)


    def grad_params(self, impl, u, grad_y, *, integration_timesteps=None):
        impl.zero_grad()
        y = impl(to_torch(u, self.torch_dtype), **self._kwargs(integration_timesteps))
        (y * to_torch(grad_y, self.torch_dtype)).sum().backward()
        grads = {}
        for name, p in impl.named_parameters():
            if p.grad is not None:
                g = p.grad.detach().double().numpy()
                grads[name] = g[..., 0] + 1j * g[..., 1] if name in impl._complex_params else g
        return grads


class FastLTIModelAdapter(FastModelAdapter):
    """A fast LTI model, with its kernel and frequency response."""

    def kernel(self, impl, L):
        with torch.no_grad():
            return to_numpy(impl.kernel(L))

    def frequency_response(self, impl, w):
        with torch.no_grad():
            return to_numpy(impl.frequency_response(torch.as_tensor(w, dtype=self.torch_dtype)))


def _model_adapters() -> dict[str, type]:
    made = {}
    for name in ("S4", "S4D", "S5", "LRU", "Centaurus", "Mamba", "RGLRU", "S7"):
        base = FastLTIModelAdapter if name in ("S4", "S4D", "S5", "LRU", "Centaurus") else FastModelAdapter
        rules = tuple(getattr(reference.models, name).discretizations)
        for dtype, suffix in (("float64", ""), ("float32", "32")):
            cls = type(f"Fast{name}{suffix}", (base,), {"model": name, "discretizations": rules, "dtype": dtype,
                                                        "__module__": __name__,
                                                        "__doc__": f"fast.models.{name} in {dtype}."})
            made[cls.__name__] = cls
    return made


MODEL_ADAPTERS = _model_adapters()
globals().update(MODEL_ADAPTERS)


class FastDiscretization(_Torch, cf.DiscretizationAdapter):
    """``fast.discretize`` (diagonal and dense A, every built-in rule)."""

    methods = ("zoh", "bilinear", "dirac", "mamba", "async")
    dense = True

    def discretize(self, A, B, dt, method, *, integration_timesteps=None):
        tau = to_torch(integration_timesteps, self.torch_dtype)
        return to_numpy(fast.discretize(to_torch(A, self.torch_dtype), to_torch(B, self.torch_dtype),
                                        to_torch(dt, self.torch_dtype), method, integration_timesteps=tau))


class FastLinearScan(_Torch, cf.LinearScanAdapter):
    """``fast.ops.linear_scan`` (torch backend)."""

    def linear_scan(self, a, b, initial_state=None):
        return to_numpy(fast.ops.linear_scan(to_torch(a, self.torch_dtype), to_torch(b, self.torch_dtype),
                                             to_torch(initial_state, self.torch_dtype), backend="torch"))


class FastSelectiveScan(_Torch, cf.SelectiveScanAdapter):
    """``fast.ops.selective_scan`` (torch backend), every built-in rule."""

    methods = ("mamba", "zoh", "bilinear", "dirac", "async")

    def selective_scan(self, u, dt, A, B, C, D=None, z=None, *, method, integration_timesteps=None,
                       initial_state=None):
        t = self.torch_dtype
        return to_numpy(fast.ops.selective_scan(
            to_torch(u, t), to_torch(dt, t), to_torch(A, t), to_torch(B, t), to_torch(C, t), to_torch(D, t),
            to_torch(z, t), method=method, integration_timesteps=to_torch(integration_timesteps, t),
            initial_state=to_torch(initial_state, t), return_state=True, backend="torch"))


class FastDiscretization32(FastDiscretization):
    dtype = "float32"


class FastLinearScan32(FastLinearScan):
    dtype = "float32"


class FastSelectiveScan32(FastSelectiveScan):
    dtype = "float32"


OP_ADAPTERS = {c.__name__: c for c in (FastDiscretization, FastDiscretization32, FastLinearScan, FastLinearScan32,
                                       FastSelectiveScan, FastSelectiveScan32)}
ALL_ADAPTERS = {**MODEL_ADAPTERS, **OP_ADAPTERS}
