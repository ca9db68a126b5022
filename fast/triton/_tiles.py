"""Tile sizes of the Triton kernels: host-side helpers shared by the two kernel modules (no Triton import)."""

from __future__ import annotations

__all__ = ["next_power_of_2", "power_of_two"]


def power_of_two(x, name: str, minimum: int) -> int:
    """``x`` itself if it is a power of two >= ``minimum`` (a Triton tile size), else a ``ValueError``."""
    if isinstance(x, bool) or not isinstance(x, int) or x < minimum or x & (x - 1):
        raise ValueError(f"{name}: expected a power of two >= {minimum} (a Triton tile size), got {x!r}")
    return x


def next_power_of_2(n: int) -> int:
    """The smallest power of two >= n (as ``triton.next_power_of_2``, without importing Triton)."""
    return 1 << max(0, (int(n) - 1).bit_length())
