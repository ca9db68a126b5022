"""The two synthetic tasks of the Mamba paper (Gu & Dao, arXiv 2312.00752, §4.1 and Appendix E.1), scaled.

Both generators are seeded (a ``torch.Generator`` or an int), take every size as an argument and return
``(inputs (B, L) int64, targets (B, L) int64)``; a target of ``IGNORE`` (-100, torch's ``cross_entropy``
default) is not scored. Tokens are ``0 .. vocab_size - 1``.

Selective copying (§4.1.1, Figure 2 right; Table 1). ``n_memorize`` data tokens are scattered at random
positions of a stretch of ``seq_len - n_memorize`` noise tokens; ``n_memorize`` marker tokens follow; at each
marker the model must output the data tokens in their order of appearance. Token 0 is the noise token, token 1
the marker, tokens ``2 .. vocab_size - 1`` the data. Only the ``n_memorize`` marker positions are scored. The
spacing is random, so a fixed (time-invariant) filter cannot know where the data sit: the model must decide
from each token's *content* whether to keep it. This is the paper's construction (its Figure 2: colored tokens
among white ones, to be copied in order) at the scale of this machine: the paper uses 4096 steps, 16 data
tokens and a vocabulary of 16.

Induction heads (§4.1.2, Table 2). A sequence of ``seq_len`` random tokens from ``2 .. vocab_size - 1`` with
the special token 1 at one random position p (``p <= seq_len - 3``), followed by the answer token at p + 1; the
last token is the special token again, and the target there is the answer. Only that last position is scored.
Token 1 appears exactly twice; token 0 is not used (kept so that both tasks share the layout). The paper trains
at length 256 with a vocabulary of 16 and tests up to 2^20; this module builds any length, and the experiment
trains short and tests at 1x, 4x and 16x the training length.
"""

from __future__ import annotations

import torch

__all__ = ["IGNORE", "NOISE", "MARKER", "selective_copying", "induction_heads", "generator"]

IGNORE = -100
NOISE = 0
MARKER = 1


def generator(seed) -> torch.Generator:
    """A CPU ``torch.Generator`` from an int seed (a Generator is returned as it is)."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed: expected an int or a torch.Generator, got {type(seed).__name__}")
    return torch.Generator().manual_seed(seed)


def _positive(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return value


def selective_copying(batch_size: int, seq_len: int = 64, n_memorize: int = 4, vocab_size: int = 10, *, seed=0):
    """A batch of selective copying: ``(inputs (B, L), targets (B, L))`` with L = ``seq_len`` (module docstring).

    ``seq_len`` counts everything: ``seq_len - 2 * n_memorize`` noise tokens, the ``n_memorize`` data tokens
    among them, then the ``n_memorize`` markers. ``vocab_size - 2`` data tokens (noise and marker excepted)."""
    B = _positive("batch_size", batch_size)
    K = _positive("n_memorize", n_memorize)
    V = _positive("vocab_size", vocab_size, 3)
    L = _positive("seq_len", seq_len, 2 * K + 1)
    g = generator(seed)
    span = L - K  # the stretch holding noise and data
    data = torch.randint(2, V, (B, K), generator=g)  # (B, K)
    # K distinct positions of the span per row, in increasing order: the order in which the data appear
    positions = torch.sort(torch.rand(B, span, generator=g).argsort(dim=1)[:, :K], dim=1).values  # (B, K)
    inputs = torch.full((B, L), NOISE, dtype=torch.int64)
    inputs.scatter_(1, positions, data)
    inputs[:, span:] = MARKER
    targets = torch.full((B, L), IGNORE, dtype=torch.int64)
    targets[:, span:] = data
    return inputs, targets


def induction_heads(batch_size: int, seq_len: int = 32, vocab_size: int = 16, *, seed=0):
    """A batch of induction heads: ``(inputs (B, L), targets (B, L))`` with L = ``seq_len`` (module docstring)."""
    B = _positive("batch_size", batch_size)
    V = _positive("vocab_size", vocab_size, 4)
    L = _positive("seq_len", seq_len, 4)
    g = generator(seed)
    inputs = torch.randint(2, V, (B, L), generator=g)  # (B, L): ordinary tokens
    p = torch.randint(0, L - 2, (B,), generator=g)  # (B,): the first special token, p + 1 <= L - 2
    rows = torch.arange(B)
    answer = inputs[rows, p + 1]  # (B,)
    inputs[rows, p] = MARKER
    inputs[:, -1] = MARKER
    targets = torch.full((B, L), IGNORE, dtype=torch.int64)
    targets[:, -1] = answer
    return inputs, targets
