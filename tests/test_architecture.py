"""Imports run one way (docs/architecture.md): apps -> flows -> models -> operators;
Bytewax steps, sources and sinks are wired only by flows; infra deploys and
imports none of them. A new import against the grain fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "operators": ("models", "flows", "apps", "bench", "infra"),
    "models": (
        "flows",
        "apps",
        "bench",
        "bytewax",
        "operators.steps",
        "operators.sources",
        "operators.sinks",
    ),
    "flows": ("apps", "bench", "fastapi", "typer", "anthropic", "uvicorn"),
    "infra": ("flows", "apps", "bench", "operators", "models"),
}
"""Package -> modules it must never import."""

PURE_OPERATORS_FORBIDDEN = ("bytewax", "operators.steps", "operators.sources", "operators.sinks")
"""The pure domain logic in ``operators/*.py`` (outside steps, sources, sinks) knows no Bytewax."""

WIRED_BY_FLOWS_ONLY = ("operators.steps", "operators.sources", "operators.sinks")


_CYTHON_IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+c?import|c?import\s+([\w.]+))", re.MULTILINE)


def imports(path: Path) -> list[str]:
    if path.suffix == ".pyx":  # Cython: not Python's grammar, but its imports are
        return [
            a or b for a, b in _CYTHON_IMPORT.findall(path.read_text()) if not (a or b).startswith("cpython")
        ]
    tree = ast.parse(path.read_text())
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def sources(folder: Path, recursive: bool = True) -> list[Path]:
    """The Python and Cython files of ``folder``."""
    find = folder.rglob if recursive else folder.glob
    return sorted([*find("*.py"), *find("*.pyx")])


def violations(package: str, banned: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sources(ROOT / package)
        for module in imports(path)
        if any(_under(module, b) for b in banned)
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_run_one_way(package):
    assert violations(package, FORBIDDEN[package]) == []


def test_pure_operators_know_no_bytewax():
    bad = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in [*sources(ROOT / "operators", recursive=False), *sources(ROOT / "operators" / "kernels")]
        for module in imports(path)
        if any(_under(module, b) for b in PURE_OPERATORS_FORBIDDEN)
    ]
    assert bad == []


def test_steps_sources_and_sinks_are_wired_only_by_flows():
    bad = []
    for package in ("apps", "models", "infra", "bench"):
        for path in sorted((ROOT / package).rglob("*.py")):
            bad += [
                f"{path.relative_to(ROOT)} imports {m}"
                for m in imports(path)
                if any(_under(m, w) for w in WIRED_BY_FLOWS_ONLY)
            ]
    assert bad == []


def test_the_checker_reads_cython_imports(tmp_path):
    kernel = tmp_path / "k.pyx"
    kernel.write_text(
        "from cpython.bytes cimport PyBytes_AS_STRING\nfrom operators.features import Features\nimport bytewax.operators as op\n"
    )
    assert imports(kernel) == ["operators.features", "bytewax.operators"]


def test_the_checker_sees_a_violation(tmp_path):
    """The scan is not vacuous: an import against the grain is found."""
    bad = tmp_path / "x.py"
    bad.write_text("from models.base import ModelSet\nimport operators.steps.dedup\n")
    assert imports(bad) == ["models.base", "operators.steps.dedup"]
    assert any(_under(m, "models") for m in imports(bad))
