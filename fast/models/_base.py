"""What every fast model shares: parameters copied from its reference twin, stored so that torch keeps them.

Initialization is math done once, in float64, by the reference model (DESIGN.md §1: fast may import
reference for parameter containers and init, never for computation). A fast model therefore builds its
reference twin with the same arguments and copies ``ref.params`` into ``nn.Parameter``s of the same names.

Complex parameters. ``Module.to(torch.float64)`` silently drops the imaginary part of a complex parameter,
so a complex array ``X`` of shape ``s`` is stored as a real parameter of shape ``s + (2,)`` (real and
imaginary parts last, ``torch.view_as_real`` layout) and read back with ``self.param("X")``, which returns
the complex view. ``.to(dtype)`` then converts both parts, and ``state_dict`` round-trips exactly.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from fast._checks import resolve_backend


class FastModel(nn.Module):
    """Base class of the fast models. Subclasses set ``reference_class`` and implement ``forward``/``step``."""

    reference_class: ClassVar[type]
    #: Why the model has no Triton path (``backend="triton"`` is then refused), or None when it has one.
    no_triton: ClassVar[str | None] = None

    def __init__(self, d_model: int, d_state: int | None = None, *, discretization: str | None = None,
                 seed: int = 0, backend: str = "auto", **options):
        super().__init__()
        args = (d_model,) if d_state is None else (d_model, d_state)
        reference_model = self.reference_class(*args, discretization=discretization, seed=seed, **options)
        self._copy_from(reference_model, backend)

    @classmethod
    def from_reference(cls, reference_model, *, backend: str = "auto"):
        """A fast model holding exactly the parameters of ``reference_model`` (float64; then ``.to(...)``)."""
        if not isinstance(reference_model, cls.reference_class):
            raise ValueError(
                f"reference_model: expected a reference {cls.reference_class.__name__}, "
                f"got {type(reference_model).__name__}"
            )
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model._copy_from(reference_model, backend)
        return model

    def _copy_from(self, reference_model, backend: str) -> None:
        # validates the name; refuses "triton" where the model has no kernel or Triton cannot run here
        resolve_backend(backend, type(self).__name__, no_kernel=self.no_triton)
        self.backend = backend
        self.d_model = reference_model.d_model
        self.d_state = getattr(reference_model, "d_state", None)
        self.discretization = reference_model.discretization
        self._complex_params: set[str] = set()
        for field in dataclasses.fields(reference_model.params):
            value = getattr(reference_model.params, field.name)
            if isinstance(value, np.ndarray):
                self._register_array(field.name, value)
            else:  # a non-array setting carried by the params container
                setattr(self, field.name, value)
        self.setup(reference_model)

    def setup(self, reference_model) -> None:
        """Model-specific settings taken from the reference model (options, fixed buffers). Override."""

    def _register_array(self, name: str, value: np.ndarray) -> None:
        tensor = torch.from_numpy(np.array(value))  # float64 / complex128, a copy
        if tensor.is_complex():
            self._complex_params.add(name)
            tensor = torch.view_as_real(tensor).clone()  # (..., 2)
        self.register_parameter(name, nn.Parameter(tensor))

    def param(self, name: str) -> torch.Tensor:
        """The parameter ``name``, as a complex tensor if it was complex in the reference."""
        p = getattr(self, name)
        return torch.view_as_complex(p) if name in self._complex_params else p

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def resolved_backend(self, *tensors) -> str:
        """What runs a call on ``tensors``: ``"torch"`` or ``"triton"`` (``fast._checks.resolve_backend``)."""
        return resolve_backend(self.backend, type(self).__name__, tensors, no_kernel=self.no_triton)

    def check_input(self, u, name: str = "u") -> torch.Tensor:
        """``u`` as a ``(B, L, H)`` or ``(L, H)`` tensor of the module's dtype and device (no silent cast)."""
        if not isinstance(u, torch.Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor, got {type(u).__name__}")
        if u.ndim not in (2, 3) or u.shape[-1] != self.d_model or u.shape[-2] == 0:
            raise ValueError(
                f"{name}: expected shape (B, L, {self.d_model}) or (L, {self.d_model}), got {tuple(u.shape)}"
            )
        if u.dtype != self.dtype:
            raise ValueError(f"{name}: dtype {u.dtype} does not match the module's {self.dtype}; use .to()")
        if u.device != self.device:
            raise ValueError(f"{name}: device {u.device} does not match the module's {self.device}")
        return u
