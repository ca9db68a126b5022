"""The kit's results: one ``Result`` per property, gathered in a ``Report`` (table, Markdown, JSON)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

VERDICTS = ("pass", "fail", "skip", "xfail", "xpass", "error")


@dataclass
class Result:
    """One property's outcome. ``message``: for a failure the shrunk example, the worst error against the
    tolerance and a line that reproduces it; for a skip the reason."""

    name: str
    verdict: str
    message: str = ""
    claim: str = ""
    examples: int = 0
    example: dict | None = None
    repro: str = ""

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict: expected one of {list(VERDICTS)}, got {self.verdict!r}")


@dataclass
class Report:
    """What ``check`` found for one adapter. ``passed``: no result is ``"fail"`` or ``"error"``."""

    adapter: str
    kind: str
    dtype: str
    results: list[Result] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not any(r.verdict in ("fail", "error") for r in self.results)

    def __getitem__(self, name: str) -> Result:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no property named {name!r} in this report; it has {[r.name for r in self.results]}")

    def verdicts(self) -> dict[str, str]:
        """``{property name: verdict}``."""
        return {r.name: r.verdict for r in self.results}

    def counts(self) -> dict[str, int]:
        counts = {v: sum(r.verdict == v for r in self.results) for v in VERDICTS}
        return {v: n for v, n in counts.items() if n}

    def summary(self) -> str:
        counts = ", ".join(f"{n} {v}" for v, n in self.counts().items())
        return f"{self.adapter} ({self.kind}, {self.dtype}): {'PASSED' if self.passed else 'FAILED'} ({counts})"

    def table(self) -> str:
        """A plain-text table for a terminal: property, verdict, and the first line of each message."""
        width = max([len(r.name) for r in self.results] + [8])
        lines = [self.summary(), f"  {'property'.ljust(width)}  verdict  detail"]
        for r in self.results:
            first = r.message.splitlines()[0] if r.message else ""
            lines.append(f"  {r.name.ljust(width)}  {r.verdict.ljust(7)}  {first}")
        details = [r for r in self.results if r.verdict in ("fail", "error")]
        for r in details:
            lines += ["", f"--- {r.name}: {r.verdict}", r.message]
        return "\n".join(lines)

    def to_markdown(self, heading_level: int = 2) -> str:
        h = "#" * heading_level
        counts = ", ".join(f"{n} {v}" for v, n in self.counts().items())
        lines = [f"{h} {self.adapter}", "", f"{self.kind}, computes in {self.dtype}: "
                 f"**{'passed' if self.passed else 'failed'}** ({counts})", "",
                 "| property | verdict | examples | detail |", "|---|---|---|---|"]
        for r in self.results:
            first = (r.message.splitlines()[0] if r.message else "").replace("|", "\\|")
            lines.append(f"| `{r.name}` | {r.verdict} | {r.examples} | {first} |")
        for r in self.results:
            if r.verdict in ("fail", "error", "xfail"):
                lines += ["", f"{h}# `{r.name}`: {r.verdict}", "", f"Claim: {r.claim}", "", "```", r.message, "```"]
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        return json.dumps({"adapter": self.adapter, "kind": self.kind, "dtype": self.dtype, "passed": self.passed,
                           "results": [asdict(r) for r in self.results]}, indent=2, default=str)
