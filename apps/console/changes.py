"""Live case changes: Postgres announces every insert and update of ``cases`` on
the ``fraudstream_cases`` channel (migration 006); one listener thread per
console process hands them to every open ``/api/stream`` connection.

Because the announcement comes from the database at commit, every replica sees
every change, whoever made it (another replica, the ingest, ``psql``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import psycopg

__all__ = ["CHANNEL", "CaseFeed", "Subscription"]

CHANNEL = "fraudstream_cases"
log = logging.getLogger(__name__)


class Subscription:
    """One stream's queue of changes; ``lost`` turns true when it fell too far behind."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize)
        self.lost = False

    def _put(self, payload: str) -> None:
        try:
            self.queue.put_nowait(payload)
        except asyncio.QueueFull:
            self.lost = True


class CaseFeed:
    """LISTENs on :data:`CHANNEL` (reconnecting when Postgres goes away) and fans
    each payload (JSON text) out to the subscriptions."""

    def __init__(self, database_url: str, maxsize: int = 1000) -> None:
        self.url, self.maxsize = database_url, maxsize
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-feed", daemon=True)
        self.listening = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def subscribe(self) -> Subscription:
        sub = Subscription(asyncio.get_running_loop(), self.maxsize)
        with self._lock:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def publish(self, payload: str) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub._put, payload)
            except RuntimeError:  # its loop is closed: the stream is gone
                self.unsubscribe(sub)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("console: case feed lost Postgres (%s); reconnecting", type(exc).__name__)
                self._stop.wait(1.0)

    def _listen(self) -> None:
        conn: psycopg.Connection[Any]
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self.listening.set()
            self.publish('{"change": "resync"}')  # changes made while not listening: re-read
            while not self._stop.is_set():
                for note in conn.notifies(timeout=0.5):
                    self.publish(note.payload)
