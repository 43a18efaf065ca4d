"""Shared fixtures: the real embedded stack (one per test session) and per-test
factories for unique topics and fresh databases, so tests never share data."""

from __future__ import annotations

import itertools
import json
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from flows.config import Settings, load_settings
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


_counter = itertools.count()


def new_settings(stack: StackInfo, name: str, **overrides: Any) -> Settings:
    """Settings with unique topic names and a fresh database."""
    tag = f"{name[:30]}-{next(_counter)}-{uuid.uuid4().hex[:6]}"
    tag = "".join(c if c.isalnum() or c in "-." else "-" for c in tag).lower()
    db = "t_" + uuid.uuid4().hex[:12]
    env = stack.env()
    admin = env["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    env["DATABASE_URL"] = env["DATABASE_URL"].rsplit("/", 1)[0] + f"/{db}"
    env["METRICS_PORT"] = "0"
    data = load_settings(env=env).model_dump()
    data["kafka"].update(
        transactions_topic=f"tx-{tag}",
        alerts_topic=f"alerts-{tag}",
        dlq_topic=f"dlq-{tag}",
        decisions_topic=f"decisions-{tag}",
        partitions=4,
    )
    for key, value in overrides.items():
        node = data
        *path, last = key.split("__")
        for part in path:
            node = node[part]
        node[last] = value
    return Settings.model_validate(data)


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
