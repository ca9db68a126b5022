"""The command line: ``python -m figures impulse|frequency|poles|compare|async|gallery ...``.

    python -m figures impulse   --model s4d --discretization zoh bilinear --out f.png
    python -m figures frequency --model s5 --d-state 16 --dt 0.05
    python -m figures poles     --model lru --discretization native zoh
    python -m figures compare   --model s4d --dt 0.5          (zoh / bilinear / dirac on one continuous system)
    python -m figures impulse   --model mamba --times 8 32    (LTV: the frozen systems at tokens 8 and 32)
    python -m figures async     --model s7                    (LTV: irregular event times)
    python -m figures gallery                                 (every figure of the gallery)
    python -m figures gallery --out-dir pics                  (into ./pics)

``--dt`` sets every step of an LTI model (``set_step``); for an LTV model it is the mean event gap: the
input's tokens get gaps dt (irregular ones under "async" and in the async example). Bad arguments end
the program with status 2 and one line on stderr that names the flag and lists the valid choices, never a
traceback. A plot command prints the file it wrote and the channel pairs it drew (with ``--d-model`` above
4, the first four diagonal pairs of impulse and frequency plots, and one pair of the others).

Where ``gallery`` writes: ``--out-dir`` when given; otherwise ``figures/gallery/`` of a source checkout (the
committed gallery), or ``./gallery`` in the current directory when the package is an installed copy (never
into site-packages). It prints the folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from figures.plots import (
    LTI_MODELS,
    LTV_MODELS,
    MODELS,
    default_gaps,
    make_model,
    plot_async_example,
    plot_discretization_comparison,
    plot_frequency_response,
    plot_frozen_responses,
    plot_impulse_response,
    plot_irregular_sampling,
    plot_poles,
    set_step,
)
from reference.discretization import TIME_VARYING_ONLY

__all__ = ["GALLERY_DIR", "default_gallery_dir", "gallery_figures", "main", "write_gallery"]

#: The committed gallery of a source checkout (where ``python -m figures gallery`` writes there).
GALLERY_DIR = Path(__file__).parent / "gallery"


def _is_source_checkout(package_dir: Path) -> bool:
    """Whether the figures package sits in the project's own tree (editable install or checkout), not in an
    installed copy: a ``pyproject.toml`` beside it, and no site-packages / dist-packages on its path."""
    installed = any(part in ("site-packages", "dist-packages") for part in package_dir.resolve().parts)
    return not installed and (package_dir.parent / "pyproject.toml").is_file()


def default_gallery_dir(package_dir: Path | None = None, cwd: Path | None = None) -> Path:
    """``figures/gallery`` of a source checkout; ``./gallery`` in the current directory for an installed copy."""
    package_dir = Path(__file__).parent if package_dir is None else Path(package_dir)
    if _is_source_checkout(package_dir):
        return package_dir / "gallery"
    return (Path.cwd() if cwd is None else Path(cwd)) / "gallery"
#: Resolution of every saved PNG: modest, so that the committed gallery stays small.
DPI = 80

KINDS = ("impulse", "frequency", "poles", "compare", "async", "gallery")


class UsageError(Exception):
    """A bad command-line argument; its message is printed on one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, no usage block
        raise UsageError(f"{message} (see python -m figures --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m figures", description="Plot the responses of the reference models.")
    sub = parser.add_subparsers(dest="kind", metavar="{" + ",".join(KINDS) + "}")
    sub.required = True
    helps = {
        "impulse": "impulse responses per channel (LTV: of the frozen systems at --times)",
        "frequency": "Bode-style magnitude (dB) and phase against omega in [0, pi] (LTV: frozen systems)",
        "poles": "eigenvalues of A_bar against the unit circle (LTV: frozen systems)",
        "compare": "zoh / bilinear / dirac on the same continuous system (LTI), with the frequency warping",
        "async": "an LTV model on irregular event times (integration_timesteps)",
        "gallery": "regenerate every PNG of the gallery",
    }
    for kind in KINDS:
        p = sub.add_parser(kind, help=helps[kind], description=helps[kind])
        p.error = parser.error  # subparsers are plain ArgumentParsers: route their errors too
        if kind == "gallery":
            p.add_argument("--model", nargs="+", metavar="MODEL", help="only these models (default: all eight)")
            p.add_argument("--out-dir", "--out", dest="out", default=None,
                           help="output folder (default: figures/gallery of a source checkout, ./gallery for an "
                           "installed copy)")
            continue
        p.add_argument("--model", required=True, metavar="MODEL", help=f"one of: {', '.join(_valid_models(kind))}")
        p.add_argument("--discretization", nargs="+", metavar="RULE",
                       help="one or several of the model's rules (default: the model's default; compare: "
                       "zoh bilinear dirac)")
        p.add_argument("--d-model", type=int, default=2, help="channels H (default 2)")
        p.add_argument("--d-state", type=int, default=None, help="state size N (default: a small one per model)")
        p.add_argument("--dt", type=float, default=None,
                       help="LTI: one step for every state; LTV: the mean gap between events")
        p.add_argument("--seed", type=int, default=0, help="parameter seed (default 0)")
        p.add_argument("--length", type=int, default=None,
                       help="LTI: the impulse response length; LTV: the input length (default 64)")
        if kind in ("impulse", "frequency", "poles"):
            p.add_argument("--times", type=int, nargs="+", default=None,
                           help="LTV: the tokens at which to freeze the system")
        p.add_argument("--out", default=None, help="PNG to write (default: <kind>_<model>.png)")
    return parser


def _valid_models(kind: str) -> dict:
    """The models a command takes: compare the LTI ones, async the LTV ones, the others all eight."""
    return {"compare": LTI_MODELS, "async": LTV_MODELS}.get(kind, MODELS)


def _check_model(name: str, kind: str) -> None:
    if name not in MODELS:
        raise UsageError(f"unknown --model {name!r}; valid choices: {', '.join(_valid_models(kind))}")
    if kind == "compare" and name not in LTI_MODELS:
        raise UsageError(f"compare needs an LTI model; valid choices: {', '.join(LTI_MODELS)}")
    if kind == "async" and name not in LTV_MODELS:
        raise UsageError(f"async needs an LTV model; valid choices: {', '.join(LTV_MODELS)}")


def _check_discretizations(name: str, rules) -> list[str] | None:
    if rules is None:
        return None
    valid = MODELS[name].discretizations
    for rule in rules:
        if rule not in valid:
            raise UsageError(f"--discretization {rule!r} is not supported by {name}; valid choices: {', '.join(valid)}")
    if len(set(rules)) != len(rules):
        raise UsageError(f"--discretization: a rule is repeated in {rules}")
    return list(rules)


#: Internal argument names in the models' and plots' messages -> the flag a user typed.
_FLAGS = {"d_model": "--d-model", "d_state": "--d-state", "dt": "--dt", "L": "--length", "times": "--times",
          "integration_timesteps": "--dt", "seed": "--seed", "discretizations": "--discretization",
          "discretization": "--discretization"}


def _flag_message(message: str) -> str:
    """A message that starts with an internal argument name (``"dt: ..."``) restated with the flag (``"--dt: ..."``)."""
    head, sep, rest = message.partition(":")
    return f"{_FLAGS[head]}{sep}{rest}" if sep and head in _FLAGS else message


def _check_numbers(args) -> None:
    """The numeric flags, named as typed."""
    if args.dt is not None and not (np.isfinite(args.dt) and args.dt > 0):
        raise UsageError(f"--dt: expected a finite step > 0, got {args.dt!r}")
    if args.length is not None and args.length < 1:
        raise UsageError(f"--length: expected a positive integer, got {args.length!r}")
    if args.d_model < 1:
        raise UsageError(f"--d-model: expected a positive integer, got {args.d_model!r}")
    if args.d_state is not None and args.d_state < 1:
        raise UsageError(f"--d-state: expected a positive integer, got {args.d_state!r}")


def _drawn_pairs(fig) -> list[tuple[int, int]]:
    """The (out, in) channel pairs the figure's curves draw (curve protocol of ``figures.plots``)."""
    pairs = set()
    for ax in fig.axes:
        for line in ax.get_lines():
            parts = (line.get_gid() or "").split("|")
            if len(parts) == 4 and parts[1].isdigit() and parts[2].isdigit():
                pairs.add((int(parts[1]), int(parts[2])))
    return sorted(pairs)


def _figure_for(args):
    """Build the figure a plotting command asks for."""
    name, kind = args.model, args.kind
    _check_numbers(args)
    rules = _check_discretizations(name, args.discretization)
    size = {"d_model": args.d_model, "d_state": args.d_state, "seed": args.seed}
    if kind == "compare":
        if args.length is not None:
            raise UsageError("--length: compare draws frequency responses; it has no length")
        dt = 0.5 if args.dt is None else args.dt
        fig, _ = plot_discretization_comparison(name, rules, dt=dt, **size)
        return fig
    if rules is None:
        rules = [MODELS[name].default_discretization]
    if name in LTI_MODELS and getattr(args, "times", None) is not None:
        raise UsageError(f"--times freezes an LTV model at chosen tokens; {name} is time-invariant")
    if name in LTI_MODELS and args.length is not None and kind != "impulse":
        raise UsageError(f"--length sets the impulse response length of an LTI model; {kind} has none")
    models = {rule: make_model(name, rule, **size) for rule in rules}
    if name in LTI_MODELS:
        if args.dt is not None:
            for m in models.values():
                set_step(m, args.dt)
        L = 64 if args.length is None else args.length
        if kind == "impulse":
            return plot_impulse_response(models, L)[0]
        if kind == "frequency":
            return plot_frequency_response(models)[0]
        return plot_poles(models)[0]
    # LTV
    L = 64 if args.length is None else args.length
    gaps = None
    if args.dt is not None:
        gaps = default_gaps(L, args.seed, args.dt) if "async" in rules else np.full(L, args.dt)
    if kind == "async":
        if len(models) != 1:
            raise UsageError("async: give one --discretization")
        model = next(iter(models.values()))
        gaps = default_gaps(L, args.seed, 1.0 if args.dt is None else args.dt)
        return plot_async_example(model, integration_timesteps=gaps, seed=args.seed, L=L)[0]
    show = {"impulse": ("impulse",), "frequency": ("frequency",), "poles": ("poles",)}[kind]
    return plot_frozen_responses(models, times=args.times, L=L, integration_timesteps=gaps, show=show,
                                 seed=args.seed)[0]


# ------------------------------------------------------------------------------------------------
# The gallery
# ------------------------------------------------------------------------------------------------


def gallery_figures(models=None):
    """The gallery as ``[(file name, function that returns the figure), ...]``, for the given model names
    (default: all eight). LTI: impulse, frequency, poles for every rule, and the zoh / bilinear / dirac
    comparison; LTV: the frozen systems for every rule and the async example."""
    names = list(MODELS) if models is None else list(models)
    jobs = []
    for name in names:
        if name not in MODELS:
            raise ValueError(f"model: unknown model {name!r}; valid choices: {', '.join(MODELS)}")
        rules = MODELS[name].discretizations
        if name in LTI_MODELS:  # one kernel per rule: the time-varying rules (S5's async) have their own figure
            rules = tuple(r for r in rules if r not in TIME_VARYING_ONLY)

        def every_rule(name=name, rules=rules):
            return {rule: make_model(name, rule) for rule in rules}

        if name in LTI_MODELS:
            jobs += [
                (f"{name}_impulse.png", lambda f=every_rule: plot_impulse_response(f(), 64)[0]),
                (f"{name}_frequency.png", lambda f=every_rule: plot_frequency_response(f())[0]),
                (f"{name}_poles.png", lambda f=every_rule: plot_poles(f())[0]),
                (f"{name}_compare.png", lambda name=name: plot_discretization_comparison(name)[0]),
            ]
            if name == "s5":  # irregular time (integration_timesteps)
                jobs.append(("s5_irregular.png", lambda: plot_irregular_sampling()[0]))
        else:
            async_rule = "async" if "async" in rules else rules[0]
            jobs += [
                (f"{name}_frozen.png", lambda f=every_rule: plot_frozen_responses(f())[0]),
                (f"{name}_async.png", lambda name=name, r=async_rule: plot_async_example(make_model(name, r))[0]),
            ]
    return jobs


def write_gallery(out_dir=None, models=None, *, progress=print) -> list[Path]:
    """Write the gallery PNGs into ``out_dir`` (default ``default_gallery_dir()``), one line of progress per
    figure and a last line naming the folder; returns the paths."""
    out_dir = default_gallery_dir() if out_dir is None else Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = gallery_figures(models)
    written = []
    start = time.perf_counter()
    for k, (file_name, build) in enumerate(jobs, 1):
        t0 = time.perf_counter()
        path = out_dir / file_name
        build().savefig(path, dpi=DPI)
        written.append(path)
        progress(f"[{k:2d}/{len(jobs)}] {path} ({time.perf_counter() - t0:.1f} s)")
    progress(f"{len(jobs)} figures in {out_dir.resolve()} ({time.perf_counter() - start:.1f} s)")
    return written


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0, or 2 for a bad argument)."""
    try:
        args = _parser().parse_args(argv)
        if args.kind == "gallery":
            for name in args.model or []:
                _check_model(name, "gallery")
            write_gallery(default_gallery_dir() if args.out is None else args.out, args.model)
            return 0
        _check_model(args.model, args.kind)
        try:
            fig = _figure_for(args)
        except ValueError as exc:  # the models' own argument checks (d_state, dt, times, ...), named as flags
            raise UsageError(_flag_message(str(exc))) from None
        out = Path(args.out or f"{args.kind}_{args.model}.png")
        if out.suffix == "":
            out = out.with_name(out.name + ".png")  # what matplotlib would write: say that name, not another
        if out.parent != Path("."):
            out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=DPI)
        pairs = _drawn_pairs(fig)
        shown = ", ".join(f"{o}<-{i}" for o, i in pairs)
        note = f" (channel pairs drawn, out<-in: {shown} of d_model = {args.d_model})" if pairs else ""
        print(f"wrote {out}{note}")
        return 0
    except UsageError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        print(f"python -m figures: error: {message}", file=sys.stderr)
        return 2
