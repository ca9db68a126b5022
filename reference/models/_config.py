"""What every reference model shares: its configuration as a dict (``model.config``)."""

from __future__ import annotations

import inspect


class Configured:
    """Mixin: ``config`` is the constructor's arguments as the model holds them (every argument but ``seed``),
    so that ``type(model)(**model.config, seed=s)`` rebuilds the same configuration with another
    initialization. Each constructor argument is kept as the attribute of the same name."""

    @property
    def config(self) -> dict:
        signature = inspect.signature(type(self).__init__)
        names = [p for p in signature.parameters if p not in ("self", "seed")]
        return {name: getattr(self, name) for name in names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args}, seed={self.seed!r})"
