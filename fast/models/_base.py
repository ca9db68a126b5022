"""What every fast model shares: the constructor, parameters copied from (and back into) its reference twin,
stored so that torch keeps them.

Initialization is math done once, in float64, by the reference model (the layout rule: fast may import
reference for parameter containers and init, never for computation). A fast model therefore builds its
reference twin with the same arguments and copies ``ref.params`` into ``nn.Parameter``s of the same names.

Constructor (torch's conventions, as ``nn.Linear``, mamba_ssm and lrnnx have them)::

    Model(d_model, d_state=<model default>, *, discretization=None, seed=None, backend="auto",
          device=None, dtype=None, **options)

Everything after ``d_state`` is keyword-only (``Mamba(64, 16, 4)`` is a ``TypeError``, never a misread option).
``dtype=None`` is ``torch.get_default_dtype()`` (float32 unless changed), so ``Model(H)(torch.randn(B, L, H))``
just works; ``device`` is where the parameters live. ``seed=None`` draws the initialization from torch's global
(CPU) generator: one integer is drawn with ``torch.randint`` (so ``torch.manual_seed`` governs it and layers
built one after another differ) and the reference twin is initialized with it; an int ``seed`` gives exactly
the reference model's initialization with that seed. Either way the integer used is ``model.seed``. The
initial values are computed in float64 and then rounded once to ``dtype``.

``Model.from_reference(ref, *, dtype=None, device=None, backend="auto")`` copies a reference model's
parameters exactly (float64 unless ``dtype`` is given); ``model.to_reference()`` copies the current
parameters back (float64) into a reference model of the same class and configuration, so that a trained fast
model can be plotted and checked; ``model.config`` is the reference's ``config`` (constructor arguments but
the seed), and ``repr(model)`` shows it.

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

import reference.discretization as reference_rules
from fast import discretization as fast_rules
from fast._checks import no_half, resolve_backend

__all__ = ["FastModel", "draw_seed"]


def draw_seed() -> int:
    """An integer seed drawn from torch's global (CPU) generator (consumes it, as ``nn.init`` would)."""
    return int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))


def _check_dtype(dtype, default: torch.dtype) -> torch.dtype:
    if dtype is None:
        return default
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(
            f"dtype: expected a real floating-point torch.dtype (torch.float32, torch.float64, ...) or None, "
            f"got {dtype!r}"
        )
    return dtype


def _check_device(device) -> torch.device | None:
    if device is None:
        return None
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device: expected a torch.device, a device string or None, got {device!r}") from err


class FastModel(nn.Module):
    """Base class of the fast models. Subclasses set ``reference_class`` and implement ``forward``/``step``."""

    reference_class: ClassVar[type]
    #: Why the model has no Triton path (``backend="triton"`` is then refused), or None when it has one.
    no_triton: ClassVar[str | None] = None
    #: Whether the model runs in float16 / bfloat16 (the complex LTI models do not: ``dtype=`` is refused).
    half_precision: ClassVar[bool] = True

    def __init__(self, d_model: int, d_state: int | None = None, *, discretization: str | None = None,
                 seed: int | None = None, backend: str = "auto", device=None, dtype=None, **options):
        super().__init__()
        dtype = _check_dtype(dtype, torch.get_default_dtype())
        device = _check_device(device)
        resolve_backend(backend, type(self).__name__, no_kernel=self.no_triton)  # before any work
        if seed is None:
            seed = draw_seed()
        args = (d_model,) if d_state is None else (d_model, d_state)
        reference_model = self.reference_class(*args, discretization=discretization, seed=seed, **options)
        self._copy_from(reference_model, backend, dtype, device)

    @classmethod
    def from_reference(cls, reference_model, *, dtype=None, device=None, backend: str = "auto"):
        """A fast model holding exactly the parameters of ``reference_model``: float64 (an exact copy) unless
        ``dtype`` is given (then rounded once to it), on ``device`` (default: the CPU)."""
        if not isinstance(reference_model, cls.reference_class):
            raise ValueError(
                f"reference_model: expected a reference {cls.reference_class.__name__}, "
                f"got {type(reference_model).__name__}"
            )
        dtype = _check_dtype(dtype, torch.float64)
        device = _check_device(device)
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model._copy_from(reference_model, backend, dtype, device)
        return model

    def _copy_from(self, reference_model, backend: str, dtype: torch.dtype, device: torch.device | None) -> None:
        if not self.half_precision:  # refused at construction, not only in the first forward
            no_half(dtype, type(self).__name__)
        # validates the name; refuses "triton" where the model has no kernel or Triton cannot run here
        resolve_backend(backend, type(self).__name__, no_kernel=self.no_triton)
        _check_rule_registered(type(self).__name__, reference_model.discretization)
        self.backend = backend
        self.seed = reference_model.seed
        self.config = dict(reference_model.config)
        self.d_model = reference_model.d_model
        self.d_state = getattr(reference_model, "d_state", None)
        self.discretization = reference_model.discretization
        self._complex_params: set[str] = set()
        for field in dataclasses.fields(reference_model.params):
            value = getattr(reference_model.params, field.name)
            if isinstance(value, np.ndarray):
                self._register_array(field.name, value, dtype, device)
            else:  # a non-array setting carried by the params container (or None: an option that is off)
                setattr(self, field.name, value)
        self.setup(reference_model)

    @classmethod
    def supported_discretizations(cls) -> tuple[str, ...]:
        """The rules the model accepts: its reference twin's (built-in ones and the registered rules its family
        can run; a registered rule must be registered in both packages)."""
        return cls.reference_class.supported_discretizations()

    def setup(self, reference_model) -> None:
        """Model-specific settings taken from the reference model (options, fixed buffers). Override."""

    def _register_array(self, name: str, value: np.ndarray, dtype: torch.dtype, device) -> None:
        tensor = torch.from_numpy(np.array(value))  # float64 / complex128, a copy
        if tensor.is_complex():
            self._complex_params.add(name)
            tensor = torch.view_as_real(tensor)  # (..., 2)
        tensor = tensor.to(device=device, dtype=dtype, copy=True)  # rounded once from float64
        self.register_parameter(name, nn.Parameter(tensor))

    def param(self, name: str) -> torch.Tensor:
        """The parameter ``name``, as a complex tensor if it was complex in the reference."""
        p = getattr(self, name)
        return torch.view_as_complex(p) if name in self._complex_params else p

    def to_reference(self):
        """A reference model of the same class and configuration holding the current parameters, in float64
        (complex ones rebuilt from their real/imaginary pairs): to plot or check a trained model."""
        if self.device.type == "meta":
            raise ValueError("to_reference: the parameters are on the meta device, which holds no values; "
                             "move the model to a real device first")
        reference_model = self.reference_class(**self.config, seed=self.seed)
        values = {}
        for field in dataclasses.fields(reference_model.params):
            p = self._parameters.get(field.name)
            if p is None:  # a non-array setting (or an option that is off): as the fast model holds it
                values[field.name] = getattr(self, field.name)
                continue
            array = p.detach().to(device="cpu", dtype=torch.float64).numpy().copy()
            values[field.name] = array[..., 0] + 1j * array[..., 1] if field.name in self._complex_params else array
        reference_model.params = type(reference_model.params)(**values)
        return reference_model

    def extra_repr(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self.config.items()]
        if self.backend != "auto":
            parts.append(f"backend={self.backend!r}")
        if self.dtype != torch.get_default_dtype():
            parts.append(f"dtype={self.dtype}")
        if self.device.type != "cpu":
            parts.append(f"device={str(self.device)!r}")
        return ", ".join(parts)

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


def _check_rule_registered(model: str, discretization: str) -> None:
    """A rule registered in ``reference`` (which accepted it) must be registered in ``fast`` too."""
    if discretization in reference_rules.custom_discretizations() and (
        discretization not in fast_rules.custom_discretizations()
    ):
        raise ValueError(
            f"{model}: discretization {discretization!r} is registered in reference but not in fast; register "
            "its torch version with fast.register_discretization (the fast model runs the torch rule)"
        )
