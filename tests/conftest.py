"""Shared fixtures: the real embedded stack (one per test session) and per-test
factories for unique topics and fresh databases, so tests never share data."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flows.config import Settings
from infra.jobproc import isolated_settings
from infra.stack import EmbeddedStack, StackInfo

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    """Tansu, PostgreSQL and Redis from wheels, on free loopback ports."""
    root = tmp_path_factory.mktemp("stack")
    embedded = EmbeddedStack(root, {"kafka": 0, "postgres": 0, "redis": 0})
    info = embedded.start()
    yield info
    embedded.stop()


def new_settings(stack: StackInfo, name: str, **overrides: Any) -> Settings:
    """Settings with unique topic names and a fresh database."""
    return isolated_settings(stack, name, **overrides)


@pytest.fixture
def make_settings(stack: StackInfo, request: pytest.FixtureRequest) -> Callable[..., Settings]:
    """Factory of settings with unique topics and a fresh database for this test."""
    return lambda **overrides: new_settings(stack, request.node.name, **overrides)


def event(
    event_id: str,
    user_id: str = "u1",
    amount: float = 25.0,
    ts: str | datetime = "2025-06-02T12:00:00+00:00",
    **extra: Any,
) -> dict[str, Any]:
    """A valid input event as a dict (tests tweak it)."""
    if isinstance(ts, datetime):
        ts = ts.astimezone(UTC).isoformat() if ts.tzinfo else ts.isoformat()
    return {"event_id": event_id, "user_id": user_id, "amount": amount, "timestamp": ts, **extra}


def encode(ev: dict[str, Any]) -> bytes:
    return json.dumps(ev).encode()


def shared_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (../shared/data is absent on a fresh clone)")
    return path


os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
