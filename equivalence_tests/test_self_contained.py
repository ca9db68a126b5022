"""The project stands on its own: it cites its own equation sheet, ``reference/README.md``, and nothing outside
the repository.

* No tracked file (outside virtual environments) cites the developers' source notes (the design file, the
  equations file) or their discrepancy marks; a citation is ``reference/README.md §<section>``.
* Every model module of ``reference.models`` cites its own section of the sheet in its docstring.
* Every section that any file cites exists in the sheet (a ``##`` heading whose first word is the name).
* The defaults the sheet states for each model are the constructor's (signature and default rule).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
from pathlib import Path

import pytest

import reference.models
from reference.models.lti._base import LTIModel
from reference.models.ltv._base import LTVModel

ROOT = Path(__file__).resolve().parents[1]
SHEET = ROOT / "reference" / "README.md"

# Built from parts so that this file does not match itself.
FORBIDDEN = [re.compile(re.escape("EQUATIONS" + ".md")), re.compile(re.escape("DESIGN" + ".md")),
             re.compile("FLAG" + r" D\d")]

#: model class name -> (its module, its section of the sheet)
MODEL_SECTIONS = {
    "S4": ("reference.models.lti.s4", "S4"),
    "S4D": ("reference.models.lti.s4d", "S4D"),
    "S5": ("reference.models.lti.s5", "S5"),
    "LRU": ("reference.models.lti.lru", "LRU"),
    "Centaurus": ("reference.models.lti.centaurus", "Centaurus"),
    "Mamba": ("reference.models.ltv.mamba", "Mamba"),
    "RGLRU": ("reference.models.ltv.rglru", "RG-LRU"),
    "S7": ("reference.models.ltv.s7", "S7"),
}
RULE_SECTIONS = ["zoh", "bilinear", "dirac", "mamba-rule", "async", "native", "rglru-rule"]
SECTION_REF = re.compile(r"§([A-Za-z][A-Za-z0-9-]*)")


def tracked_text_files() -> list[Path]:
    """The repository's tracked files (``git ls-files``; without git, every file under the root), outside
    virtual environments, that decode as UTF-8 text."""
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        paths = [ROOT / n for n in names.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):  # an unpacked distribution: no git metadata
        paths = [p for p in ROOT.rglob("*") if p.is_file()]
    out = []
    for p in paths:
        rel = p.relative_to(ROOT).parts
        if not p.is_file() or any(part.startswith(".venv") or part in (".git", "__pycache__") for part in rel):
            continue
        try:
            p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary (the gallery's PNGs)
        out.append(p)
    return out


def sheet_sections() -> set[str]:
    return {m.group(1) for m in re.finditer(r"^##\s+(\S+)", SHEET.read_text(encoding="utf-8"), flags=re.M)}


def section_text(name: str) -> str:
    text = SHEET.read_text(encoding="utf-8")
    match = re.search(rf"^##\s+{re.escape(name)}\b.*?(?=^##\s|\Z)", text, flags=re.M | re.S)
    assert match, f"reference/README.md has no section {name!r}"
    return match.group(0)


def test_no_tracked_file_cites_the_developers_notes_or_their_flag_marks():
    files = tracked_text_files()
    assert len(files) > 50 and SHEET in files  # the scan sees the repository
    found = []
    for path in files:
        for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(p.search(line) for p in FORBIDDEN):
                found.append(f"{path.relative_to(ROOT)}:{k}: {line.strip()[:100]}")
    assert not found, "cite reference/README.md §<section> instead:\n" + "\n".join(found)


def test_the_sheet_has_a_section_for_every_model_and_every_rule():
    sections = sheet_sections()
    for name in [s for _, s in MODEL_SECTIONS.values()] + RULE_SECTIONS + ["Conventions", "Glossary"]:
        assert name in sections, f"reference/README.md lacks the section {name!r}"
    bases = (LTIModel, LTVModel)
    models = {n for n, obj in vars(reference.models).items() if inspect.isclass(obj) and issubclass(obj, bases)}
    assert models - {"LTIModel", "LTVModel"} == set(MODEL_SECTIONS)  # every model of the package has a section


@pytest.mark.parametrize("name", sorted(MODEL_SECTIONS))
def test_every_model_docstring_cites_its_section_of_the_sheet(name):
    module_name, section = MODEL_SECTIONS[name]
    doc = importlib.import_module(module_name).__doc__ or ""
    assert re.search(rf"reference/README\.md §{re.escape(section)}(?![A-Za-z0-9-])", doc), (
        f"{module_name}'s docstring does not cite reference/README.md §{section}"
    )


def test_every_cited_section_exists_in_the_sheet():
    sections = sheet_sections()
    missing = []
    for path in tracked_text_files():
        for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if path != SHEET and "README.md" not in line:
                continue  # only citations of the sheet (and the sheet's own links) name its sections
            if path != SHEET and "reference/README.md" not in line and "README.md`" not in line:
                continue
            for m in SECTION_REF.finditer(line):
                if m.group(1) not in sections:
                    missing.append(f"{path.relative_to(ROOT)}:{k}: §{m.group(1)}")
    assert not missing, "cited sections missing from reference/README.md:\n" + "\n".join(missing)


def _stated_defaults(section: str) -> tuple[str, dict]:
    """The ``Defaults: `Model(...)` `` call of a model's section: (class name, {argument: value})."""
    text = section_text(section)
    match = re.search(r"Defaults: `(\w+)\((.*?)\)`", text, flags=re.S)
    assert match, f"§{section} states no defaults as `Model(...)`"
    call = f"f({' '.join(match.group(2).split())})".replace("*, ", "").replace("d_model, ", "")
    tree = ast.parse(call, mode="eval").body
    assert isinstance(tree, ast.Call) and not tree.args, call
    return match.group(1), {kw.arg: ast.literal_eval(kw.value) for kw in tree.keywords}


@pytest.mark.parametrize("name", sorted(MODEL_SECTIONS))
def test_the_defaults_the_sheet_states_are_the_constructors(name):
    cls = getattr(reference.models, name)
    stated_class, stated = _stated_defaults(MODEL_SECTIONS[name][1])
    assert stated_class == name
    params = inspect.signature(cls.__init__).parameters
    actual = {k: p.default for k, p in params.items() if k not in ("self", "d_model")}
    discretization = stated.pop("discretization")
    assert discretization == cls.default_discretization, f"{name}: default rule"
    assert actual.pop("discretization") is None  # None means the model's default
    assert stated == actual, f"{name}: the sheet states {stated}, the constructor has {actual}"
