"""The examples in docs/api.md run as doctests, one test per section.

The document reads top to bottom, so a section's test first runs the sections before
it (in the same namespace and folder, one that holds sample_data/). Sections that
import torch skip cleanly without it and are not run as set-up for later ones.
"""

from __future__ import annotations

import doctest
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API_DOC = ROOT / "docs" / "api.md"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _sections() -> list[tuple[str, str, int]]:
    """(title, text, first line number) of every '## ' section (subsections included)."""
    text = API_DOC.read_text()
    out, title, start, lines = [], "introduction", 0, []
    for i, line in enumerate(text.splitlines(keepends=True)):
        if line.startswith("## "):
            out.append((title, "".join(lines), start))
            title, start, lines = line[3:].strip(), i + 1, []
        else:
            lines.append(line)
    out.append((title, "".join(lines), start))
    return [s for s in out if ">>> " in s[1]]


SECTIONS = _sections()


def _uses_torch(body: str) -> bool:
    return re.search(r"^>>> import torch\b", body, re.MULTILINE) is not None


def _run(title, body, lineno, globs) -> tuple[int, str]:
    test = doctest.DocTestParser().get_doctest(body, globs, f"docs/api.md: {title}", str(API_DOC), lineno)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    out = []
    runner.run(test, out=out.append, clear_globs=False)
    globs.update(test.globs)  # DocTest works on a copy; later sections build on this one
    return runner.failures, "".join(out)


def test_the_document_has_examples_in_every_part():
    titles = [t for t, _, _ in SECTIONS]
    assert any("Writing" in t for t in titles) and any("Serving" in t for t in titles)
    assert any(_uses_torch(b) for _, b, _ in SECTIONS), "the PyTorch worked example lost its examples"


@pytest.mark.parametrize("index", range(len(SECTIONS)), ids=[t for t, _, _ in SECTIONS])
def test_api_doc_examples_run(index, tmp_path, monkeypatch):
    title, body, lineno = SECTIONS[index]
    if _uses_torch(body):
        pytest.importorskip("torch")
    (tmp_path / "sample_data").symlink_to(ROOT / "sample_data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # an example may extend it
    globs = {"__name__": "api_doc"}
    for t, b, n in SECTIONS[:index]:
        if not _uses_torch(b):
            failures, report = _run(t, b, n, globs)
            assert failures == 0, f"set-up section {t!r} failed:\n{report}"
    failures, report = _run(title, body, lineno, globs)
    assert failures == 0, report
