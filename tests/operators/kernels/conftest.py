"""The compiled kernels next to their references: every test here runs the compiled
module, and skips with the reason when it is not built (no C compiler at install)."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

import operators.kernels as kernels


def compiled(name: str) -> ModuleType:
    """The compiled module ``operators.kernels.<name>``, current with its source (or a skip)."""
    if name in kernels.STALE:
        pytest.fail(f"operators/kernels/{name}.pyx changed since it was built: run pip install -e . again")
    if name not in kernels.COMPILED:
        pytest.skip(f"operators.kernels.{name} is not compiled (no C compiler at install)")
    return importlib.import_module(f"operators.kernels.{name}")
