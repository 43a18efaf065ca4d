"""The examples in docstrings are tests too."""

import doctest
import importlib
import pkgutil

import pytest

import apps
import flows
import infra
import models
import operators

MODULES = sorted(
    m.name
    for pkg in (operators, models, flows, apps, infra)
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")
    if m.name not in {"flows.worker"}
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
