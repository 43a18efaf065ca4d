"""Start the console: migrations, topics, the alert ingest, the live feed and the
HTTP server (blocks until stopped)."""

from __future__ import annotations

import secrets

from apps.console.app import ConsoleMetrics, create_app
from apps.console.changes import CaseFeed
from apps.console.kafka import AlertIngest, LabelPublisher
from apps.console.store import CaseStore
from flows.config import Settings
from infra.migrations import apply_migrations
from infra.topics import ensure_topics

__all__ = ["first_admin", "new_token", "run_console"]


def new_token() -> str:
    """An analyst's bearer token: 256 random bits."""
    return "fsc_" + secrets.token_urlsafe(32)


def first_admin(store: CaseStore) -> str | None:
    """With no analyst at all, create ``admin`` (role admin) and return its token (shown once)."""
    if store.analysts():
        return None
    token = new_token()
    return token if store.add_analyst("admin", "admin", token, "console (first start)") else None


def run_console(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    import uvicorn

    apply_migrations(settings.database_url)
    k, cfg = settings.kafka, settings.console
    ensure_topics(
        k.bootstrap_servers,
        {k.alerts_topic: k.partitions, k.labels_topic: k.partitions},
        dict(k.client_config),
    )
    store = CaseStore(settings.database_url)
    metrics = ConsoleMetrics(store)
    publisher = LabelPublisher(k.bootstrap_servers, k.labels_topic, dict(k.client_config))
    ingest = AlertIngest(
        k.bootstrap_servers,
        k.alerts_topic,
        cfg.group_id,
        dict(k.client_config),
        store,
        cfg.sla_minutes,
        on_added=metrics.ingested.inc,
        on_invalid=lambda field: metrics.invalid.labels(field).inc(),
    )
    app = create_app(settings, store, publisher.publish, metrics, CaseFeed(settings.database_url), ingest)
    try:
        uvicorn.run(
            app,
            host=host or cfg.host,
            port=port or cfg.port,
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
    finally:
        publisher.close()
