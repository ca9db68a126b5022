"""Conformance adapter for RecurrentGemma 1.0.1 (google-deepmind/recurrentgemma): the torch RG-LRU block.

How the code is reached without JAX: ``recurrentgemma/__init__.py`` imports ``recurrentgemma.jax`` (JAX and flax,
not installed), and ``recurrentgemma/torch/__init__.py`` imports the sampler (sentencepiece). Both packages are
registered without running their ``__init__`` (``equivalence_tests.peers._loading.package_without_init``), and the
adapter imports ``recurrentgemma.torch.modules`` (``RecurrentBlock``: linear_y + GELU, linear_x, ``Conv1D``,
``RGLRU``, linear_out) and ``recurrentgemma.common`` directly. No stub, no rebinding: the block's own torch code
runs, as it ships, on the CPU (on a GPU too: it has no custom kernel).

``RecurrentGemmaRGLRU`` runs ``RecurrentBlock.forward(x, segment_pos, cache)``: segment_pos = arange(L) for a fresh
sequence (one document from t = 0, the training forward), and the state's next position onwards when it continues
from a cache; ``step`` is ``forward`` on one token with the cache (RecurrentGemma's decoding path; its Conv1D
continues a cache one token at a time only, so a continued ``forward`` of more than one token is unsupported). The
opaque state is ``(RecurrentBlockCache, next segment_pos (B,))``; ``state_to_reference`` gives the reference
``RGLRUState``. The module is built in float32, and ``rnn_scan`` accumulates in float32 whatever the module
dtype (``acc_dtype``): ``dtype = "float32"``. RecurrentGemma fixes c = 8 and always resets at segment_pos == 0:
``options`` hold the reference to c = 8.0 and segment_reset=True. It takes no event gaps (integration_timesteps: skip).

Parameters cross through ``converters.reference_to_recurrentgemma_state_dict`` (the reference RGLRU keeps
RecurrentGemma's names and layouts).
"""

from __future__ import annotations

import importlib

import numpy as np

import equivalence_tests.conformance as cf
from equivalence_tests.peers import converters
from equivalence_tests.peers._loading import package_without_init, parameter_gradients

PEER = "recurrentgemma"
VERSION = "1.0.1"

__all__ = ["RecurrentGemmaRGLRU", "RecurrentGemmaRGLRUConvWidth1", "ADAPTERS", "load"]


def load():
    """``recurrentgemma.torch.modules`` without the JAX-importing package ``__init__`` (module docstring)."""
    package_without_init("recurrentgemma.torch")
    return importlib.import_module("recurrentgemma.torch.modules")


def _np(x):
    return x.detach().cpu().double().numpy()


class RecurrentGemmaRGLRU(cf.ModelAdapter):
    """``recurrentgemma.torch.modules.RecurrentBlock`` (float32; module docstring)."""

    model = "RGLRU"
    options = {"c": 8.0, "segment_reset": True}
    dtype = "float32"

    def _new(self, config):
        import torch

        modules = load()
        return modules.RecurrentBlock(
            width=config["d_model"], num_heads=config["num_heads"], lru_width=config["d_state"],
            conv1d_temporal_width=config["conv1d_width"],
            final_w_init_variance_scale=config["final_w_init_variance_scale"], dtype=torch.float32,
        )

    #: conv1d_width = 1 is left to ``RecurrentGemmaRGLRUConvWidth1`` (its Conv1D cannot return a cache there), so
    #: that this adapter's counterexamples show what else holds or fails
    width_one = False

    def build(self, ref):
        import torch

        if (ref.config["conv1d_width"] == 1) != self.width_one:
            raise cf.Unsupported("conv1d_width = 1 is checked by RecurrentGemmaRGLRUConvWidth1 (RecurrentGemma's "
                                 "Conv1D fails to return its cache at temporal_width = 1)" if not self.width_one
                                 else "this adapter checks conv1d_width = 1 only")
        module = self._new(ref.config)
        module.reference_config = dict(ref.config)  # for grad_params' converter
        sd = converters.reference_to_recurrentgemma_state_dict(ref.params)
        module.load_state_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in sd.items()})
        return module.eval()

    def _run(self, impl, u, state):
        import torch

        modules = load()
        u = torch.as_tensor(np.asarray(u), dtype=torch.float32)
        B, L, _ = u.shape
        start = torch.zeros(B, dtype=torch.int64) if state is None else state[1]
        segment_pos = start[:, None] + torch.arange(L)[None, :]  # (B, L)
        cache = None if state is None else state[0]
        if cache is not None and not isinstance(cache, modules.RecurrentBlockCache):
            raise cf.Unsupported(f"expected the adapter's own state, got {type(cache).__name__}")
        with torch.no_grad():
            y, cache = impl(u, segment_pos, cache=cache, return_cache=True)
        return _np(y), (cache, segment_pos[:, -1] + 1)

    def forward(self, impl, u, *, initial_state=None, integration_timesteps=None):
        if integration_timesteps is not None:
            raise cf.Unsupported("RecurrentGemma's RG-LRU takes no integration_timesteps (event gaps)")
        if initial_state is not None and np.shape(u)[1] > 1:
            raise cf.Unsupported("RecurrentGemma continues a cache one token at a time only (Conv1D's decoding "
                                 "mode asserts a single token)")
        return self._run(impl, u, initial_state)

    def step(self, impl, u_t, state, *, integration_timesteps=None):
        if integration_timesteps is not None:
            raise cf.Unsupported("RecurrentGemma's RG-LRU takes no integration_timesteps (event gaps)")
        y, state = self._run(impl, np.asarray(u_t)[:, None, :], state)
        return y[:, 0], state

    def initial_state(self, impl, batch_size):
        import torch

        modules = load()
        cache = modules.RecurrentBlock.init_cache(
            batch_size=batch_size, lru_width=impl.lru_width, dtype=torch.float32,
            conv1d_temporal_width=impl.conv1d_temporal_width,
        )
        return cache, torch.zeros(batch_size, dtype=torch.int64)

    def state_to_reference(self, impl, state):
        from reference.models.ltv.rglru import RGLRUState

        cache, position = state
        return RGLRUState(_np(cache.conv1d_state), _np(cache.rg_lru_state), position.numpy().astype(np.int64))

    def initial_params(self, ref, seed):
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = self._new(ref.config)
        return converters.recurrentgemma_state_dict_to_reference(module.state_dict(), ref.config)

    def grad_input(self, impl, u, grad_y, *, integration_timesteps=None):
        import torch

        if integration_timesteps is not None:
            raise cf.Unsupported("RecurrentGemma's RG-LRU takes no integration_timesteps (event gaps)")
        y, ut = self._grad_run(impl, u)
        (y * torch.as_tensor(np.asarray(grad_y), dtype=torch.float32)).sum().backward()
        return _np(ut.grad)

    def grad_params(self, impl, u, grad_y, *, integration_timesteps=None):
        import torch

        if integration_timesteps is not None:
            raise cf.Unsupported("RecurrentGemma's RG-LRU takes no integration_timesteps (event gaps)")
        impl.zero_grad()
        y, _ = self._grad_run(impl, u)
        (y * torch.as_tensor(np.asarray(grad_y), dtype=torch.float32)).sum().backward()
        config = impl.reference_config
        return parameter_gradients(impl, lambda sd: converters.recurrentgemma_state_dict_to_reference(sd, config))

    def _grad_run(self, impl, u):
        import torch

        ut = torch.as_tensor(np.asarray(u), dtype=torch.float32).requires_grad_(True)
        B, L, _ = ut.shape
        segment_pos = torch.arange(L)[None, :].expand(B, L)
        return impl(ut, segment_pos, cache=None, return_cache=False)[0], ut


class RecurrentGemmaRGLRUConvWidth1(RecurrentGemmaRGLRU):
    """The same block with a convolution of width 1 (``Conv1D(temporal_width=1)``), held apart because its cache
    handling fails there: ``Conv1D.forward`` keeps ``x[:, 1 - temporal_width:]`` as the new cache, which for
    temporal_width = 1 is ``x[:, 0:]``, every input instead of none, and ``_pad_cache`` then asks for a negative
    padding."""

    options = {"c": 8.0, "segment_reset": True, "conv1d_width": 1}
    width_one = True


ADAPTERS = (RecurrentGemmaRGLRU, RecurrentGemmaRGLRUConvWidth1)
