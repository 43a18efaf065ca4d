"""The console's Kafka side: alerts become cases (a consumer group of its own,
at least once, idempotent on ``event_id``), and resolutions become labels.

>>> decode_alert(b'{"event_id": "e1"')
'payload: not JSON (JSONDecodeError)'
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer

from apps.console.cases import InvalidAlert, NewCase, new_case
from apps.console.store import CaseStore
from operators.labels import Label, encode_label

__all__ = ["AlertIngest", "LabelNotDelivered", "LabelPublisher", "decode_alert"]

log = logging.getLogger(__name__)


def decode_alert(raw: bytes | None) -> dict[str, Any] | str:
    """The alert as a dict, or why it is not one."""
    if raw is None:
        return "payload: message has no value"
    try:
        alert = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"payload: not JSON ({type(exc).__name__})"
    return alert if isinstance(alert, dict) else "payload: not a JSON object"


class AlertIngest:
    """Reads the alerts topic into cases until :meth:`stop`; offsets are committed
    after the cases are in Postgres, so a restart catches up and adds nothing twice."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group_id: str,
        client_config: Mapping[str, Any],
        store: CaseStore,
        sla_minutes: Mapping[str, float],
        on_added: Callable[[int], None] = lambda n: None,
        on_invalid: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.store, self.sla, self.on_added, self.on_invalid = store, dict(sla_minutes), on_added, on_invalid
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                **client_config,
            }
        )
        self.topic = topic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-ingest", daemon=True)

    def start(self) -> None:
        self.consumer.subscribe([self.topic])
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # Postgres or the broker away: keep the offsets, try again
                log.exception("console: cannot ingest alerts; retrying in 2 s")
                self._stop.wait(2.0)

    def poll_once(self, timeout_s: float = 0.5) -> int:
        """One batch of alerts into cases; the number of new cases."""
        messages = [m for m in self.consumer.consume(500, timeout_s) if m.error() is None]
        if not messages:
            return 0
        cases: list[NewCase] = []
        for m in messages:
            alert = decode_alert(m.value())
            case = new_case(alert, self.sla) if isinstance(alert, dict) else InvalidAlert(alert)
            if isinstance(case, InvalidAlert):
                log.warning(
                    "console: alert at %s[%d]@%d skipped: %s",
                    m.topic(),
                    m.partition(),
                    m.offset(),
                    case.error,
                )
                self.on_invalid(case.error.split(":", 1)[0])
            else:
                cases.append(case)
        added = self.store.add(cases)
        self.consumer.commit(asynchronous=False)
        if added:
            self.on_added(len(added))
        return len(added)


class LabelNotDelivered(Exception):
    """The broker did not confirm a label in time; the resolution is not recorded."""


class LabelPublisher:
    """Produces one label at a time and waits for the broker's confirmation, within
    ``timeout_s``: an analyst is waiting on the answer. One producer lives as long as
    the console (``apps.produce.produce_all`` makes one per call and waits up to 60 s)."""

    def __init__(self, bootstrap: str, topic: str, client_config: Mapping[str, Any], timeout_s: float = 10.0):
        self.topic, self.timeout_s = topic, timeout_s
        self.producer: Producer | None = Producer(
            {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, **client_config}
        )

    def publish(self, label: Label) -> None:
        if self.producer is None:
            raise LabelNotDelivered("the console is stopping")
        errors: list[Any] = []
        key, value = encode_label(label)
        try:
            self.producer.produce(self.topic, value, key, on_delivery=lambda err, msg: errors.append(err))
        except (KafkaException, BufferError) as exc:
            raise LabelNotDelivered(f"labels topic {self.topic!r}: {exc}") from exc
        self.producer.flush(self.timeout_s)
        if not errors:
            raise LabelNotDelivered(f"labels topic {self.topic!r}: not confirmed within {self.timeout_s:g} s")
        if errors[0] is not None:
            raise LabelNotDelivered(f"labels topic {self.topic!r}: {errors[0]}")

    def close(self) -> None:
        """Deliver what is pending, then let the client go (it stops reconnecting)."""
        if self.producer is not None:
            self.producer.flush(self.timeout_s)
            self.producer = None
