"""Conformance adapters for mambapy 1.2.0 (alxndrTL/mamba.py), Mamba in pure PyTorch.

mambapy imports on a CPU as it ships: no stub, no rebinding. The adapters run ``mambapy.mamba.MambaBlock`` (the
Mamba mixer, without the residual block's RMSNorm), built from a ``MambaConfig`` with ``pscan=True`` (its default:
the parallel scan ``mambapy.pscan.pscan`` in ``forward``) and ``use_cuda=False``; ``step`` is
``MambaBlock.step(x, cache)`` with ``cache = (h (B, D, N), inputs (B, D, d_conv - 1))``.

- ``MambapyMamba``: the module in float32, as users run it (``dtype = "float32"``).
- ``MambapyMamba64``: the same module converted with ``.double()``. mambapy computes ``A = -exp(A_log.float())``
  and ``D = D.float()`` in ``MambaBlock.ssm`` / ``ssm_step`` whatever the module's dtype, so a float64 module
  runs with A and D rounded to float32; this adapter claims what a float64 module promises (``dtype =
  "float64"``), so the kit measures that rounding.

``MambaBlock.forward`` takes no state and returns none (the final-state and chunked-forward properties skip), and
neither method takes event gaps. Parameters cross through ``converters.reference_to_mamba_state_dict`` (mambapy's
keys are mamba-ssm's).
"""

from __future__ import annotations

import importlib

import numpy as np

import equivalence_tests.conformance as cf
from equivalence_tests.peers import converters
from equivalence_tests.peers._loading import parameter_gradients

PEER = "mambapy"
VERSION = "1.2.0"

__all__ = ["MambapyMamba", "MambapyMamba64", "ADAPTERS", "load"]


def load():
    """``mambapy.mamba`` (imports as it ships)."""
    return importlib.import_module("mambapy.mamba")


def _np(x):
    return x.detach().cpu().double().numpy()


class MambapyMamba(cf.ModelAdapter):
    """``mambapy.mamba.MambaBlock`` in float32 (module docstring)."""

    model = "Mamba"
    discretizations = ("mamba",)
    dtype = "float32"

    @property
    def _torch_dtype(self):
        import torch

        return {"float32": torch.float32, "float64": torch.float64}[self.dtype]

    def _new(self, config):
        mp = load()
        expand = config["expand"]
        if float(expand) != int(expand):
            raise cf.Unsupported(f"mambapy's expand_factor is an integer, got expand = {expand}")
        cfg = mp.MambaConfig(
            d_model=config["d_model"], n_layers=1, dt_rank=config["dt_rank"], d_state=config["d_state"],
            expand_factor=int(expand), d_conv=config["d_conv"], dt_min=config["dt_min"], dt_max=config["dt_max"],
            dt_init=config["dt_init"], dt_scale=config["dt_scale"], bias=config["bias"],
            conv_bias=config["conv_bias"], pscan=True, use_cuda=False,
        )
        return mp.MambaBlock(cfg).to(self._torch_dtype)

    def build(self, ref):
        import torch

        module = self._new(ref.config)
        module.reference_config = dict(ref.config)  # for grad_params' converter
        sd = converters.reference_to_mamba_state_dict(ref.params, layout="mambapy")
        module.load_state_dict({k: torch.as_tensor(v, dtype=self._torch_dtype) for k, v in sd.items()})
        return module.eval()

    def _u(self, u):
        import torch

        return torch.as_tensor(np.asarray(u), dtype=self._torch_dtype)

    def forward(self, impl, u, *, initial_state=None, integration_timesteps=None):
        import torch

        if integration_timesteps is not None:
            raise cf.Unsupported("mambapy's MambaBlock takes no integration_timesteps (event gaps)")
        if initial_state is not None:
            raise cf.Unsupported("mambapy's MambaBlock.forward takes no initial state")
        with torch.no_grad():
            return _np(impl(self._u(u))), None

    def step(self, impl, u_t, state, *, integration_timesteps=None):
        import torch

        if integration_timesteps is not None:
            raise cf.Unsupported("mambapy's MambaBlock.step takes no integration_timesteps (event gaps)")
        with torch.no_grad():
            y, cache = impl.step(self._u(u_t), state)
        return _np(y), cache

    def initial_state(self, impl, batch_size):
        import torch

        c = impl.config
        return (
            torch.zeros(batch_size, c.d_inner, c.d_state, dtype=self._torch_dtype),  # h
            torch.zeros(batch_size, c.d_inner, c.d_conv - 1, dtype=self._torch_dtype),  # the last d_conv - 1 inputs
        )

    def initial_params(self, ref, seed):
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = self._new(ref.config)
        return converters.mamba_state_dict_to_reference(module.state_dict(), ref.config, layout="mambapy")

    def grad_input(self, impl, u, grad_y, *, integration_timesteps=None):
        if integration_timesteps is not None:
            raise cf.Unsupported("mambapy's MambaBlock takes no integration_timesteps (event gaps)")
        ut = self._u(u).requires_grad_(True)
        (impl(ut) * self._u(grad_y)).sum().backward()
        return _np(ut.grad)

    def grad_params(self, impl, u, grad_y, *, integration_timesteps=None):
        if integration_timesteps is not None:
            raise cf.Unsupported("mambapy's MambaBlock takes no integration_timesteps (event gaps)")
        impl.zero_grad()
        (impl(self._u(u)) * self._u(grad_y)).sum().backward()
        config = impl.reference_config
        return parameter_gradients(
            impl, lambda sd: converters.mamba_state_dict_to_reference(sd, config, layout="mambapy"))


class MambapyMamba64(MambapyMamba):
    """``mambapy.mamba.MambaBlock`` converted to float64 (module docstring: A and D stay float32 inside)."""

    dtype = "float64"


ADAPTERS = (MambapyMamba, MambapyMamba64)
