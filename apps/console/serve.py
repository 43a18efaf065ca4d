"""Start the console: migrations, topics, the alert ingest, the live feed and the
HTTP server (blocks until stopped)."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from fastapi import FastAPI

from apps.console.app import ConsoleMetrics, create_app
from apps.console.changes import CaseFeed
from apps.console.kafka import AlertIngest, LabelPublisher
from apps.console.store import CaseStore
from flows.config import Settings
from infra.migrations import apply_migrations
from infra.topics import ensure_topics
from operators.labels import Label

__all__ = ["console_app", "first_admin", "new_token", "run_console"]


def new_token() -> str:
    """An analyst's bearer token: 256 random bits."""
    return "fsc_" + secrets.token_urlsafe(32)


def first_admin(store: CaseStore) -> str | None:
    """With no analyst at all, create ``admin`` (role admin) and return its token (shown once)."""
    if store.analysts():
        return None
    token = new_token()
    return token if store.add_analyst("admin", "admin", token, "console (first start)") else None


def console_app(
    settings: Settings, store: CaseStore, publish: Callable[[Label], None], group_id: str | None = None
) -> FastAPI:
    """The console with its alert ingest (consumer group ``group_id``, default
    ``console.group_id``), live feed and metrics, ready to serve."""
    k, cfg = settings.kafka, settings.console
    metrics = ConsoleMetrics(store)
    ingest = AlertIngest(
        k.bootstrap_servers,
        k.alerts_topic,
        group_id or cfg.group_id,
        dict(k.client_config),
        store,
        cfg.sla_minutes,
        on_added=metrics.ingested.inc,
        on_invalid=lambda field: metrics.invalid.labels(field).inc(),
    )
    return create_app(settings, store, publish, metrics, CaseFeed(settings.database_url), ingest)


def run_console(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Migrations, topics, then the console on ``host:port`` (blocks until stopped)."""
    import uvicorn

    apply_migrations(settings.database_url)
    k, cfg = settings.kafka, settings.console
    ensure_topics(
        k.bootstrap_servers,
        {k.alerts_topic: k.partitions, k.labels_topic: k.partitions},
        dict(k.client_config),
    )
    store = CaseStore(settings.database_url)
    publisher = LabelPublisher(k.bootstrap_servers, k.labels_topic, dict(k.client_config))
    try:
        uvicorn.run(
            console_app(settings, store, publisher.publish),
            host=host or cfg.host,
            port=port or cfg.port,
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
    finally:
        publisher.close()
