"""Every code block in README.md and docs/*.md marked ```python or ```bash runs as written.

A page's Python blocks run in order in one fresh interpreter (a later block may use an
earlier one's names), in a temporary folder, so what they write lands there. A marker on the
line before a fence says what else to do with the block:

    <!-- docs-test: skip: REASON -->           not run (needs a GPU, data, or is the set-up itself)
    <!-- docs-test: excerpt of PATH -->        each top-level def/class is in PATH, verbatim

Nothing downloads: keras.applications is called with weights=None."""
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"(?:<!-- docs-test: (?P<marker>[^>]*?) -->\n)?```(?P<lang>python|bash)\n(?P<code>.*?)```", re.S)


# `parity` as a user of this interpreter's environment has it, activated or not
SCRIPTS_ON_PATH = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}


def blocks(page: Path):
    """[(language, marker or "", code)] of the page's Python and shell blocks, in order."""
    return [(m["lang"], m["marker"] or "", m["code"]) for m in FENCE.finditer(page.read_text())]


def runnable(page: Path, lang: str) -> list[str]:
    return [code for language, marker, code in blocks(page) if language == lang and not marker]


def top_level_pieces(code: str) -> list[str]:
    """The block split at each unindented line that follows a blank line."""
    return [piece.strip("\n") for piece in re.split(r"\n\n+(?=\S)", code) if piece.strip()]


def pages_with(lang):
    return [pytest.param(page, id=page.relative_to(REPO).as_posix()) for page in PAGES if runnable(page, lang)]


def test_every_marker_is_known_and_every_skip_says_why():
    for page in PAGES:
        for _, marker, _ in blocks(page):
            assert not marker or re.fullmatch(r"skip: .{10,}|excerpt of \S+", marker), (page.name, marker)


@pytest.mark.parametrize("page", pages_with("python"))
def test_python_blocks_run(page, tmp_path):
    source = "\n".join(runnable(page, "python"))
    run = subprocess.run([sys.executable, "-c", source], cwd=tmp_path, capture_output=True, text=True, timeout=540)
    assert run.returncode == 0, f"{page.name}:\n{run.stderr[-3000:]}"


@pytest.mark.parametrize("page", pages_with("bash"))
def test_shell_blocks_run(page, tmp_path):
    for code in runnable(page, "bash"):
        run = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=REPO, capture_output=True, text=True,
                             timeout=540, env=SCRIPTS_ON_PATH)
        assert run.returncode == 0, f"{page.name}: {code}\n{run.stderr[-3000:]}"


def test_excerpts_match_their_source():
    checked = 0
    for page in PAGES:
        for _, marker, code in blocks(page):
            if marker.startswith("excerpt of "):
                source = (REPO / marker.removeprefix("excerpt of ")).read_text()
                for piece in top_level_pieces(code):
                    assert piece in source, f"{page.name}: not in {marker[11:]}:\n{textwrap.shorten(piece, 200)}"
                    checked += 1
    assert checked >= 3  # docs/idioms.md's three bottlenecks at least
