"""The console against the real stack: a real job scores events into alerts, the
console (served by uvicorn in this process, on a free port) ingests them into cases.
One job and one console per test package; tests use their own users and events."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn

from apps.console.kafka import LabelPublisher
from apps.console.serve import console_app, new_token
from apps.console.store import CaseStore
from apps.produce import produce_all
from flows.config import Settings
from flows.launcher import JobProcess, start_job
from infra.migrations import apply_migrations
from infra.stack import StackInfo, free_port
from infra.topics import ensure_topics
from tests.support import encode, event, new_settings

KP = {"latitude": 39.03, "longitude": 125.75, "country": "KP", "city": "Pyongyang"}
TOKYO = {"latitude": 35.68, "longitude": 139.69, "country": "JP", "city": "Tokyo"}
NEW_YORK = {"latitude": 40.71, "longitude": -74.0, "country": "US", "city": "New York"}


@dataclass
class Console:
    url: str
    settings: Settings
    store: CaseStore
    job: JobProcess
    tokens: dict[str, str]

    def client(self, who: str | None = "ana") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=15)

    def produce(self, events: list[dict[str, Any]]) -> None:
        k = self.settings.kafka
        produce_all(
            k.bootstrap_servers, k.transactions_topic, [(e["user_id"].encode(), encode(e)) for e in events]
        )

    def high(self, tag: str, amount: float = 950.0) -> dict[str, Any]:
        """An event the job decides HIGH (a blocked country)."""
        return event(
            f"kp-{tag}",
            f"user-{tag}",
            amount,
            ts="2025-06-02T14:00:00+09:00",
            location=KP,
            device_id=f"d-{tag}",
        )

    def medium_pair(self, tag: str) -> list[dict[str, Any]]:
        """Two events of one user; the second is MEDIUM (impossible travel at 3 a.m.)."""
        return [
            event(f"tk-{tag}", f"user-{tag}", 40.0, ts="2025-06-02T02:30:00+09:00", location=TOKYO),
            event(f"ny-{tag}", f"user-{tag}", 60.0, ts="2025-06-02T03:00:00+09:00", location=NEW_YORK),
        ]

    def wait_case(self, event_id: str, timeout_s: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        with self.client() as http:
            while time.monotonic() < deadline:
                self.job.check_alive()
                answer = http.get(f"/api/cases/{event_id}")
                if answer.status_code == 200:
                    return answer.json()
                time.sleep(0.2)
        raise AssertionError(f"no case for {event_id} within {timeout_s} s")

    def wait_label(self, event_id: str, timeout_s: float = 60) -> list[tuple[Any, ...]]:
        """The job's rows in the labels table for ``event_id`` (it consumes the labels topic)."""
        deadline = time.monotonic() + timeout_s
        with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                rows = conn.execute(
                    "SELECT is_fraud, source FROM labels WHERE event_id = %s", (event_id,)
                ).fetchall()
                if rows:
                    return rows
                time.sleep(0.2)
        return []


def serve(
    settings: Settings, store: CaseStore, publisher: LabelPublisher, group: str
) -> tuple[uvicorn.Server, str]:
    """The console app with its ingest and live feed, on a free port, in a thread."""
    app = console_app(settings, store, publisher.publish, group)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1)
    )
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "console did not start"
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="package")
def console(stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    settings = new_settings(stack, f"console-{uuid.uuid4().hex[:6]}")
    k = settings.kafka
    ensure_topics(
        k.bootstrap_servers, {t: k.partitions for t in (k.transactions_topic, k.alerts_topic, k.labels_topic)}
    )
    apply_migrations(settings.database_url)
    store = CaseStore(settings.database_url)
    tokens = {"ana": new_token(), "root": new_token(), "gone": new_token()}
    store.add_analyst("ana", "analyst", tokens["ana"], "test")
    store.add_analyst("root", "admin", tokens["root"], "test")
    store.add_analyst("gone", "analyst", tokens["gone"], "test")
    store.revoke_analyst("gone", "root")
    job = start_job(
        settings,
        1,
        tmp_path_factory.mktemp("console-job"),
        FRAUDSTREAM__REDIS__BLOCKLIST_REFRESH_S="0.2",
        FRAUDSTREAM__LABELS__PENDING_S="30",
    )
    publisher = LabelPublisher(k.bootstrap_servers, k.labels_topic, {})
    server, url = serve(settings, store, publisher, f"console-{uuid.uuid4().hex[:6]}")
    try:
        yield Console(url, settings, store, job, tokens)
    finally:
        server.should_exit = True
        job.stop()
        publisher.close()
