"""Conformance adapter for s5-pytorch 0.2.1 (i404788/s5-pytorch), a PyTorch port of S5 that users pick from PyPI.

s5-pytorch imports on a CPU as it ships (torch, einops, scipy): no stub, no rebinding. The adapter runs the wrapper
``s5.S5(width, state_width, block_count, dt_min, dt_max, bcInit="dense")``: its ``forward(signal, state=...,
return_state=True)`` vmaps ``S5SSM.forward`` (zoh or bilinear discretization, then its associative scan
``jax_compat.associative_scan``) over the batch; ``step`` vmaps the library's per-token ``S5SSM.forward_rnn`` over
the batch. s5-pytorch stores every one of the P modes (no conjugate symmetry) and reads Re(C x): the reference S5
with ``conj_sym=False`` (``options``), and its "dense" B/C initialization is the reference's
``C_init="lecun_normal"``. The S5 wrapper always builds the zoh rule; for "bilinear" the adapter sets
``module.seq.discretize = s5.s5_model.discretize_bilinear``, which is what ``S5SSM.__init__`` does for
``discretization="bilinear"``. Parameters are complex64 (``Module.to(torch.float64)`` would drop their imaginary
parts): ``dtype = "float32"``. Event gaps (its ``step_scale``) are not mapped (the kit checks gaps on LTV models).

``S5.initial_state`` fails in 0.2.1 (it reads ``self.C_tilde``, which ``S5SSM`` does not have), so the adapter's
``initial_state`` is the zero state of the shape and dtype that ``forward`` returns, ``(B, P)`` complex64.
Parameters cross through ``converters.reference_to_s5_pytorch_state_dict``.
"""

from __future__ import annotations

import importlib

import numpy as np

import equivalence_tests.conformance as cf
from equivalence_tests.peers import converters

PEER = "s5-pytorch"
VERSION = "0.2.1"

__all__ = ["S5PytorchS5", "ADAPTERS", "load"]


def load():
    """``s5.s5_model`` (imports as it ships)."""
    return importlib.import_module("s5.s5_model")


def _np(x):
    x = x.detach().cpu()
    return x.resolve_conj().numpy().astype(np.complex128) if x.is_complex() else x.double().numpy()


class S5PytorchS5(cf.ModelAdapter):
    """``s5.S5`` (s5-pytorch 0.2.1; complex64; module docstring)."""

    model = "S5"
    discretizations = ("zoh", "bilinear")
    options = {"conj_sym": False, "C_init": "lecun_normal", "bidirectional": False, "step_rescale": 1.0,
               "clip_eigs": False}
    dtype = "float32"

    def _new(self, config):
        s5m = load()
        module = s5m.S5(config["d_model"], config["d_state"], block_count=config["blocks"],
                        dt_min=config["dt_min"], dt_max=config["dt_max"], bcInit="dense")
        if config["discretization"] == "bilinear":
            module.seq.discretize = s5m.discretize_bilinear  # as S5SSM.__init__(discretization="bilinear")
        elif config["discretization"] != "zoh":
            raise cf.Unsupported(f"s5-pytorch has zoh and bilinear, not {config['discretization']!r}")
        return module

    def build(self, ref):
        import torch

        module = self._new(ref.config)
        sd = converters.reference_to_s5_pytorch_state_dict(ref.params)
        module.load_state_dict({k: torch.as_tensor(v).to(torch.complex64 if np.iscomplexobj(v) else torch.float32)
                                for k, v in sd.items()})
        return module.eval()

    def _u(self, u):
        import torch

        return torch.as_tensor(np.asarray(u), dtype=torch.float32)

    def forward(self, impl, u, *, initial_state=None, integration_timesteps=None):
        import torch

        if integration_timesteps is not None:
            raise cf.Unsupported("the adapter does not map s5-pytorch's step_scale to integration_timesteps")
        with torch.no_grad():
            if initial_state is None:
                y, state = impl(self._u(u), return_state=True)
            else:
                y, state = impl(self._u(u), state=initial_state, return_state=True)
        return _np(y), state  # (B, L, H), (B, P) complex64

    def step(self, impl, u_t, state, *, integration_timesteps=None):
        import torch

        if integration_timesteps is not None:
            raise cf.Unsupported("the adapter does not map s5-pytorch's step_scale to integration_timesteps")
        with torch.no_grad():
            y, state = torch.vmap(impl.seq.forward_rnn)(self._u(u_t), state)  # (B, H), (B, P)
        return _np(y), state

    def initial_state(self, impl, batch_size):
        import torch

        return torch.zeros(batch_size, impl.seq.Lambda.shape[0], dtype=torch.complex64)

    def state_to_reference(self, impl, state):
        return _np(state)  # (B, P): the reference S5's state with conj_sym=False

    def initial_params(self, ref, seed):
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = self._new(ref.config)
        return converters.s5_pytorch_state_dict_to_reference(module.state_dict(), ref.config)

    def grad_input(self, impl, u, grad_y, *, integration_timesteps=None):
        if integration_timesteps is not None:
            raise cf.Unsupported("the adapter does not map s5-pytorch's step_scale to integration_timesteps")
        ut = self._u(u).requires_grad_(True)
        (impl(ut) * self._u(grad_y)).sum().backward()
        return _np(ut.grad)


ADAPTERS = (S5PytorchS5,)
