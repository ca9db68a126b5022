"""How the peer adapters reach the pure-torch code paths of libraries that, as they ship, cannot be imported on a
CPU machine, and the small torch helpers they share.

Three obstacles, three tools (each adapter's docstring says which it uses):

- ``stub_extension(name)``: lrnnx imports its CUDA extension modules (``selective_scan_cuda``,
  ``simplified_scan_cuda``) at the top of ``lrnnx/ops/*.py``, and mamba-ssm imports ``selective_scan_cuda`` at the
  top of ``mamba_ssm/ops/selective_scan_interface.py``. Where the extension was not built (no ``CUDA_HOME`` at
  install), an empty module of that name is put in ``sys.modules`` first; touching any of its attributes raises
  ``AttributeError`` saying that the CUDA kernel is absent, so a code path that would have run the kernel fails
  loudly instead of silently doing something else. Where the extension exists (a CUDA install), nothing is stubbed.
- ``package_without_init(name)``: ``mamba_ssm/__init__.py`` imports Mamba2/Mamba3 (tilelang, CUDA-only kernels)
  and ``recurrentgemma/__init__.py`` imports JAX. The package is registered in ``sys.modules`` as a bare package
  object whose ``__path__`` is the installed folder, so that ``import mamba_ssm.ops.selective_scan_interface``
  loads that submodule (and the submodules it imports) without running the package's ``__init__``.
- ``replaced(module, name, value)``: a context manager that rebinds one module global for the duration of a
  call (for example ``mamba_ssm.modules.mamba_simple.selective_scan_fn`` -> ``selective_scan_ref``, the library's
  own reference scan with the same signature) and restores it afterwards.

Nothing here copies third-party code: the peers' own functions run, only the import route differs.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types

__all__ = [
    "available",
    "extension_built",
    "package_without_init",
    "replaced",
    "stub_extension",
    "to_numpy",
    "to_torch",
]


class _AbsentExtension(types.ModuleType):
    """Stands in for a CUDA extension module that was not built: any attribute access fails with the reason."""

    def __getattr__(self, attr):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        raise AttributeError(
            f"{self.__name__}.{attr}: the CUDA extension {self.__name__!r} was not built in this install (CPU "
            "machine); the peer adapters only run the library's pure-torch reference path here"
        )


def extension_built(name: str) -> bool:
    """Whether a real (compiled) module ``name`` can be imported."""
    module = sys.modules.get(name)
    if module is not None:
        return not isinstance(module, _AbsentExtension)
    return importlib.util.find_spec(name) is not None


def stub_extension(name: str) -> bool:
    """Put an ``_AbsentExtension`` named ``name`` in ``sys.modules`` unless the real one exists. Returns True
    when it stubbed (the extension is absent)."""
    if extension_built(name):
        return False
    sys.modules.setdefault(name, _AbsentExtension(name))
    return True


def available(distribution_module: str) -> bool:
    """Whether the top-level package ``distribution_module`` is installed (without importing it)."""
    try:
        return importlib.util.find_spec(distribution_module) is not None
    except (ImportError, ValueError):
        return False


def package_without_init(name: str) -> types.ModuleType:
    """Register package ``name`` (dotted names allowed; parents first) without running its ``__init__``.

    A package already imported (for real) is returned as it is.
    """
    parent, _, last = name.rpartition(".")
    if parent:
        package_without_init(parent)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(f"{name}: not an installed package")
    module = types.ModuleType(name)
    module.__path__ = list(spec.submodule_search_locations)
    module.__package__ = name
    module.__spec__ = spec
    module.__file__ = spec.origin
    sys.modules[name] = module
    if parent:
        setattr(sys.modules[parent], last, module)
    return module


@contextlib.contextmanager
def replaced(module, name: str, value):
    """Rebind ``module.name`` to ``value`` inside the ``with`` block."""
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def to_torch(x, dtype, device=None):
    """A NumPy array (or None) as a torch tensor of ``dtype`` (a torch dtype) on ``device``."""
    import numpy as np
    import torch

    if x is None:
        return None
    return torch.as_tensor(np.asarray(x), device=device).to(dtype)


def to_numpy(x):
    """A torch tensor (or None) as a NumPy array, upcast to float64 / complex128."""
    import numpy as np

    if x is None:
        return None
    if hasattr(x, "detach"):
        import torch

        x = x.detach().cpu()
        x = x.resolve_conj().to(torch.complex128) if x.is_complex() else x.to(torch.float64)
        return x.numpy().copy()
    return np.asarray(x)


def parameter_gradients(module, convert, drop=()) -> dict:
    """The gradients accumulated in ``module``'s parameters, in the reference's layout: ``convert`` maps a state
    dict (here of gradients, same keys and shapes) to the reference params; fields in ``drop`` (or None) are left
    out. A parameter the loss does not reach counts as a zero gradient."""
    import dataclasses

    import torch

    grads = {k: (p.grad if p.grad is not None else torch.zeros_like(p)) for k, p in module.named_parameters()}
    params = convert(grads)
    return {f.name: getattr(params, f.name) for f in dataclasses.fields(params)
            if f.name not in drop and getattr(params, f.name) is not None}
