"""Benchmark and test harness: settings isolated per run (unique topics, a fresh
database) against a running stack."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import psycopg

from flows.config import Settings, load_settings
from infra.stack import StackInfo

__all__ = ["isolated_settings"]

_counter = itertools.count()


def isolated_settings(info: StackInfo, name: str, partitions: int = 4, **overrides: Any) -> Settings:
    """Settings with unique topic names and a fresh database; ``overrides`` by
    ``section__key`` path (e.g. ``scoring__max_wait_ms=50``)."""
    tag = f"{name[:30]}-{next(_counter)}-{uuid.uuid4().hex[:6]}"
    tag = "".join(c if c.isalnum() or c in "-." else "-" for c in tag).lower()
    db = "t_" + uuid.uuid4().hex[:12]
    env = info.env()
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
        labels_topic=f"labels-{tag}",
        partitions=partitions,
    )
    for key, value in overrides.items():
        node = data
        *path, last = key.split("__")
        for part in path:
            node = node[part]
        node[last] = value
    return Settings.model_validate(data)
