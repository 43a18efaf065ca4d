"""Shared fixtures: the real embedded stack (one per test session) and per-test
factories for unique topics and fresh databases, so tests never share data."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from flows.config import Settings
from infra.stack import EmbeddedStack, StackInfo
from tests.support import new_settings


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    """Tansu, PostgreSQL and Redis from wheels, on free loopback ports."""
    root = tmp_path_factory.mktemp("stack")
    embedded = EmbeddedStack(root, {"kafka": 0, "postgres": 0, "redis": 0})
    info = embedded.start()
    yield info
    embedded.stop()


@pytest.fixture
def make_settings(stack: StackInfo, request: pytest.FixtureRequest) -> Callable[..., Settings]:
    """Factory of settings with unique topics and a fresh database for this test."""
    return lambda **overrides: new_settings(stack, request.node.name, **overrides)


os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
