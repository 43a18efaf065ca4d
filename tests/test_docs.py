"""The README is the first page a new user reads: every command is in its table,
and the docs speak to users, not to this repository's history."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from apps.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_command_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    missing = [name for name in commands if not re.search(rf"fraudstream {re.escape(name)}(?![\w-])", readme)]
    assert not missing, f"README does not show: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_use_no_tracker_shorthand_or_private_paths(doc):
    text = doc.read_text()
    for pattern in (r"\bissue #?\d+", r"\bseed[- ]?0\d\d", r"\bthe seeds'", r"D=\.\./shared"):
        assert not re.search(pattern, text, re.I), f"{doc.name}: {pattern}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_point_at_files_that_exist(doc):
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
        assert (doc.parent / target).exists(), f"{doc.name} links to {target}, which does not exist"
