"""The conformance kit pointed at third-party implementations: adapters, their parameter converters, the report.

One module per peer, each importable without its peer installed (the peer is imported inside the adapters'
methods), each saying exactly which code path of the peer its adapters run and how it gets there on a CPU:

    lrnnx_adapters           lrnnx 1.0.0.post1: its discretization functions, selective_scan_ref, Mamba, LRU
    mamba_ssm_adapters       mamba-ssm 2.3.2.post1: selective_scan_ref, the Mamba module (non-fused path)
    mambapy_adapters         mambapy 1.2.0: MambaBlock (float32, and as a float64 module)
    recurrentgemma_adapters  recurrentgemma 1.0.1: the torch recurrent block with the RG-LRU
    s5_pytorch_adapters      s5-pytorch 0.2.1: the S5 layer (zoh and bilinear)

``converters`` holds the public parameter converters (state dict <-> reference params, ``load_*`` into a ``fast``
model). ``make peers`` builds ``.venv-peers`` from ``equivalence_tests/peers/constraints.txt`` and runs
``python -m equivalence_tests.peers``, which runs ``equivalence_tests.conformance.check`` on every adapter of every
importable peer and writes ``equivalence_tests/peers/REPORT.md`` (with ``explanations.EXPLANATIONS`` for each
failure).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

__all__ = ["PEERS", "Peer"]


@dataclass(frozen=True)
class Peer:
    """A third-party implementation: its distribution, pinned version, top-level package, adapter module."""

    name: str
    version: str
    package: str
    module: str

    def adapters(self) -> tuple:
        return importlib.import_module(self.module).ADAPTERS

    def unavailable(self) -> str | None:
        """Why the peer cannot be run here (None when it can): not installed, another version, or its import
        route failing."""
        from importlib import metadata

        from equivalence_tests.peers._loading import available

        if not available(self.package):
            return f"{self.name} is not installed (make peers installs {self.name}=={self.version} in .venv-peers)"
        try:
            installed = metadata.version(self.name)
        except metadata.PackageNotFoundError:
            installed = "unknown"
        if installed != self.version:
            return f"{self.name} {installed} is installed; these adapters were written for {self.version}"
        try:
            importlib.import_module(self.module).load()
        except Exception as exc:  # noqa: BLE001 - any import failure is the reason to skip the peer
            return f"{self.name} does not import through the adapter's route: {type(exc).__name__}: {exc}"
        return None


PEERS = (
    Peer("lrnnx", "1.0.0.post1", "lrnnx", "equivalence_tests.peers.lrnnx_adapters"),
    Peer("mamba-ssm", "2.3.2.post1", "mamba_ssm", "equivalence_tests.peers.mamba_ssm_adapters"),
    Peer("mambapy", "1.2.0", "mambapy", "equivalence_tests.peers.mambapy_adapters"),
    Peer("recurrentgemma", "1.0.1", "recurrentgemma", "equivalence_tests.peers.recurrentgemma_adapters"),
    Peer("s5-pytorch", "0.2.1", "s5", "equivalence_tests.peers.s5_pytorch_adapters"),
)
