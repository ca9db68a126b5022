"""Hypothesis profiles and the Triton interpreter switch.

Profiles: ``dev`` (default), ``ci`` (chosen when the CI environment variable is set: bounded, so that
``make test`` stays well inside the CI limit on 2 cores), ``thorough`` (a long local run:
``HYPOTHESIS_PROFILE=thorough make test``). Deadlines are off: the reference is slow by design.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Triton runs on a CPU machine only in interpreter mode, which must be chosen before the first
# `import triton` in the process.
if "TRITON_INTERPRET" not in os.environ:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a test dependency
        has_cuda = False
    if not has_cuda:
        os.environ["TRITON_INTERPRET"] = "1"

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=25, **_common)
settings.register_profile("ci", max_examples=15, derandomize=True, print_blob=True, **_common)
settings.register_profile("thorough", max_examples=500, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
