"""The tutorials run: every ```python block of every tutorial in tutorials/*.md is executed, in order, in one
namespace per tutorial (from the repository root, as a reader would run them). Each derivation in a tutorial is
followed by a block that asserts it numerically, so a wrong identity, or a change in the code a tutorial
describes, fails here with the tutorial, the block number and its line. Also: the tutorials exist, each has
asserting code, their figures exist in the gallery, and their display math is balanced (GitHub renders $$ pairs).
"""

from __future__ import annotations

import re
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.md"))
PYTHON_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
INLINE_MATH = re.compile(r"\$(.+?)\$")


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """``[(line number of the opening fence, code), ...]`` in file order."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in PYTHON_BLOCK.finditer(text)]


def test_there_are_at_least_six_tutorials_each_with_asserting_code():
    assert len(TUTORIALS) >= 6, [p.name for p in TUTORIALS]
    for path in TUTORIALS:
        blocks = python_blocks(path)
        assert blocks, f"{path.name} has no python block"
        assert sum("assert" in code for _, code in blocks) >= 3, f"{path.name} checks fewer than 3 of its claims"


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_code_blocks_run_in_order(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the tutorials read files relative to the repository root
    namespace = {"__name__": f"tutorial_{path.stem}"}
    blocks = python_blocks(path)
    for k, (line, code) in enumerate(blocks, 1):
        try:
            exec(compile(code, f"{path.name}:block{k}", "exec"), namespace)
        except Exception:
            pytest.fail(
                f"{path.name}: block {k} of {len(blocks)} (line {line}) failed:\n{traceback.format_exc()}",
                pytrace=False,
            )


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_figures_exist_and_math_is_balanced(path):
    text = path.read_text(encoding="utf-8")
    outside_code = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    images = IMAGE.findall(outside_code)
    assert images, f"{path.name} embeds no figure"
    for link in images:
        assert (path.parent / link).resolve().is_file(), f"{path.name}: missing figure {link}"
    assert outside_code.count("$$") % 2 == 0, f"{path.name}: unbalanced $$"
    for line in outside_code.splitlines():
        inline = line.replace("$$", "").replace(r"\$", "")
        assert inline.count("$") % 2 == 0, f"{path.name}: unbalanced $ (outside code) in: {line}"
        for span in INLINE_MATH.findall(inline):
            # GitHub takes $ x$ or $x $ for text, not math; and \\ inside a line breaks its math parser
            assert not (span[0].isspace() or span[-1].isspace()), f"{path.name}: space inside $...$ in: {line}"
        assert "\\\\" not in line, f"{path.name}: a \\\\ outside a ```math block in: {line}"
