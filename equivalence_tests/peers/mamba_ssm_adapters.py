"""Conformance adapters for mamba-ssm 2.3.2.post1 (state-spaces/mamba), the official Mamba code.

How the code is reached on a CPU machine (``equivalence_tests.peers._loading``): ``mamba_ssm/__init__.py`` imports
Mamba2/Mamba3 (CUDA-only kernels), so the package is registered without running its ``__init__``;
``mamba_ssm/ops/selective_scan_interface.py`` imports the CUDA extension ``selective_scan_cuda`` at its top, so an
absent-extension stub stands in for it (any use of it raises). Then:

- ``MambaSsmSelectiveScanRef`` runs ``mamba_ssm.ops.selective_scan_interface.selective_scan_ref``, the library's
  pure-torch reference of its kernel (the function its own tests compare the kernel with). It casts u, delta, B,
  C to float32 and computes in float32: ``dtype = "float32"``. It has no initial-state argument and no event gaps.
- ``MambaSsmMamba`` runs ``mamba_ssm.modules.mamba_simple.Mamba`` with ``use_fast_path=False`` (the fused path
  needs ``causal_conv1d``, not installed, and CUDA). Its non-fused ``forward`` calls the CUDA
  ``selective_scan_fn``; on a CPU machine the adapter rebinds that module global to ``selective_scan_ref`` (same
  signature) during the call, and rebinds ``selective_state_update`` (a Triton kernel) to None during ``step``, so
  that ``Mamba.step`` takes its own torch branch. Everything else (projections, convolution, softplus, gating) is
  the module's own code. The module is built in float32 (mamba-ssm keeps ``A_log`` and ``D`` in float32 and its
  scan upcasts to float32 anyway): ``dtype = "float32"``. The final state comes from ``forward``'s inference
  cache (``inference_params``, as in generation); ``forward`` cannot start from a given state (only ``step``
  continues one), so the chunked-forward property reports skip.

On a CUDA machine with the extension built, nothing is stubbed or rebound and the same adapters run the real
kernels (``selective_scan_fn``, ``selective_state_update``) on the GPU.

Parameters cross through ``converters.reference_to_mamba_state_dict`` / ``mamba_state_dict_to_reference``.
"""

from __future__ import annotations

import contextlib
import importlib

import numpy as np

import equivalence_tests.conformance as cf
from equivalence_tests.peers import converters
from equivalence_tests.peers._loading import (
    extension_built,
    package_without_init,
    parameter_gradients,
    replaced,
    stub_extension,
)

PEER = "mamba-ssm"
VERSION = "2.3.2.post1"

__all__ = ["MambaSsmMamba", "MambaSsmSelectiveScanRef", "ADAPTERS", "load"]


def load():
    """Import mamba-ssm's selective-scan interface and ``Mamba`` module (see the module docstring). Returns
    ``(selective_scan_interface, mamba_simple, kernels)``; ``kernels`` is True where the CUDA extension exists and
    a GPU is present (then the real kernels run)."""
    import torch

    stub_extension("selective_scan_cuda")
    package_without_init("mamba_ssm")
    ssi = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
    simple = importlib.import_module("mamba_ssm.modules.mamba_simple")
    kernels = extension_built("selective_scan_cuda") and torch.cuda.is_available()
    return ssi, simple, kernels


def _device(kernels):
    return "cuda" if kernels else "cpu"


def _np(x):
    return x.detach().cpu().double().numpy()


class MambaSsmSelectiveScanRef(cf.SelectiveScanAdapter):
    """``mamba_ssm.ops.selective_scan_interface.selective_scan_ref`` (float32; rule "mamba"; module docstring)."""

    methods = ("mamba",)
    dtype = "float32"

    def selective_scan(self, u, dt, A, B, C, D=None, z=None, *, method, integration_timesteps=None,
                       initial_state=None):
        import torch

        if integration_timesteps is not None:
            raise cf.Unsupported("selective_scan_ref takes no integration_timesteps (event gaps)")
        if initial_state is not None:
            raise cf.Unsupported("selective_scan_ref has no initial-state argument (it starts from zero)")
        if method != "mamba":
            raise cf.Unsupported(f"selective_scan_ref implements only the 'mamba' rule, not {method!r}")
        ssi, _, kernels = load()
        scan = ssi.selective_scan_fn if kernels else ssi.selective_scan_ref
        dev = _device(kernels)

        def t(x, layout="b l d -> b d l"):  # (B, L, X) -> the library's (B, X, L)
            if x is None:
                return None
            x = torch.as_tensor(np.asarray(x), dtype=torch.float32, device=dev)
            return x.transpose(1, 2).contiguous() if x.ndim == 3 else x

        with torch.no_grad():
            y, last = scan(t(u), t(dt), t(A), t(B), t(C), t(D), t(z), return_last_state=True)  # (B, D, L), (B, D, N)
        return _np(y).transpose(0, 2, 1), _np(last)


class _InferenceParams:
    """The two fields of mamba-ssm's ``InferenceParams`` that ``Mamba.forward`` reads."""

    def __init__(self):
        self.seqlen_offset = 0
        self.key_value_memory_dict = {}


class MambaSsmMamba(cf.ModelAdapter):
    """``mamba_ssm.modules.mamba_simple.Mamba`` (non-fused path, float32; module docstring)."""

    model = "Mamba"
    discretizations = ("mamba",)
    dtype = "float32"

    # -- building -------------------------------------------------------------------------------
    def _new(self, config, kernels):
        import torch

        _, simple, _ = load()
        return simple.Mamba(
            config["d_model"], d_state=config["d_state"], d_conv=config["d_conv"], expand=config["expand"],
            dt_rank=config["dt_rank"], dt_min=config["dt_min"], dt_max=config["dt_max"],
            dt_init=config["dt_init"], dt_scale=config["dt_scale"], dt_init_floor=config["dt_init_floor"],
            conv_bias=config["conv_bias"], bias=config["bias"], use_fast_path=False, layer_idx=0,
            device=_device(kernels), dtype=torch.float32,
        )

    def build(self, ref):
        import torch

        _, _, kernels = load()
        module = self._new(ref.config, kernels)
        module.reference_config = dict(ref.config)  # for grad_params' converter
        sd = converters.reference_to_mamba_state_dict(ref.params, layout="mamba_ssm")
        module.load_state_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in sd.items()})
        module.eval()
        return module

    @contextlib.contextmanager
    def _cpu_paths(self):
        """On a CPU machine: the non-fused forward's ``selective_scan_fn`` -> ``selective_scan_ref``, and ``step``'s
        Triton ``selective_state_update`` -> None (its torch branch)."""
        ssi, simple, kernels = load()
        if kernels:
            yield
            return
        with replaced(simple, "selective_scan_fn", ssi.selective_scan_ref), replaced(
            simple, "selective_state_update", None
        ):
            yield

    def _u(self, impl, u):
        import torch

        return torch.as_tensor(np.asarray(u), dtype=torch.float32, device=impl.out_proj.weight.device)

    # -- running --------------------------------------------------------------------------------
    def forward(self, impl, u, *, initial_state=None, integration_timesteps=None):
        import torch

        if integration_timesteps is not None:
            raise cf.Unsupported("mamba-ssm's Mamba takes no integration_timesteps (event gaps)")
        if initial_state is not None:
            raise cf.Unsupported("mamba-ssm's Mamba.forward always starts from the zero state (only step continues "
                                 "a state)")
        params = _InferenceParams()
        with torch.no_grad(), self._cpu_paths():
            y = impl(self._u(impl, u), inference_params=params)  # (B, L, H)
        conv_state, ssm_state = params.key_value_memory_dict[0]  # (B, D, W), (B, D, N)
        return _np(y), (conv_state.clone(), ssm_state.clone())

    def step(self, impl, u_t, state, *, integration_timesteps=None):
        import torch

        if integration_timesteps is not None:
            raise cf.Unsupported("mamba-ssm's Mamba.step takes no integration_timesteps (event gaps)")
        conv_state, ssm_state = (s.clone() for s in state)  # Mamba.step updates them in place
        with torch.no_grad(), self._cpu_paths():
            y, conv_state, ssm_state = impl.step(self._u(impl, u_t)[:, None, :], conv_state, ssm_state)
        return _np(y[:, 0]), (conv_state, ssm_state)

    def initial_state(self, impl, batch_size):
        return impl.allocate_inference_cache(batch_size, 1)

    def state_to_reference(self, impl, state):
        from reference.models.ltv.mamba import MambaState

        return MambaState(_np(state[0]), _np(state[1]))

    def initial_params(self, ref, seed):
        import torch

        _, _, kernels = load()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = self._new(ref.config, kernels)
        return converters.mamba_state_dict_to_reference(module.state_dict(), ref.config, layout="mamba_ssm")

    def grad_input(self, impl, u, grad_y, *, integration_timesteps=None):
        if integration_timesteps is not None:
            raise cf.Unsupported("mamba-ssm's Mamba takes no integration_timesteps (event gaps)")
        ut = self._u(impl, u).requires_grad_(True)
        with self._cpu_paths():
            y = impl(ut)
        (y * self._u(impl, grad_y)).sum().backward()
        return _np(ut.grad)

    def grad_params(self, impl, u, grad_y, *, integration_timesteps=None):
        if integration_timesteps is not None:
            raise cf.Unsupported("mamba-ssm's Mamba takes no integration_timesteps (event gaps)")
        impl.zero_grad()
        with self._cpu_paths():
            y = impl(self._u(impl, u))
        (y * self._u(impl, grad_y)).sum().backward()
        config = impl.reference_config
        return parameter_gradients(
            impl, lambda sd: converters.mamba_state_dict_to_reference(sd, config, layout="mamba_ssm"))


ADAPTERS = (MambaSsmSelectiveScanRef, MambaSsmMamba)
