"""Benchmark and test harness: settings isolated per run (unique topics, a fresh
database) against a running stack."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import psycopg

from flows.config import Settings, load_settings
from infra.stack import StackInfo

__all__ = ["drop_database", "isolated_settings"]

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


def drop_database(settings: Settings) -> None:
    """Drop the database :func:`isolated_settings` made for ``settings`` once its rows are
    counted: left behind, a run's hundreds of thousands of fresh rows are vacuumed and
    analysed by Postgres in the background while the next run is measured (on the 2-core
    box Postgres used 0.40 cores during a 1,000 events/s latency run that followed the
    throughput runs, 0.10 on a fresh stack)."""
    url = settings.database_url
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    if not name.startswith("t_"):
        raise ValueError(f"not a database of isolated_settings: {name!r}")
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
