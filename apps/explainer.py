"""`fraudstream explain`: analyst explanations for alerts, written by Claude, off the scoring path.

A separate consumer group reads the alerts topic; the scoring job never waits
for it. For each alert at a configured level it builds a prompt from the alert
and the user's recent rows in ``scored_events``, calls the Anthropic Messages
API through the official SDK (model, max tokens, timeout and retries with
backoff configurable; the SDK honours ``retry-after``), and writes the text to
``alert_explanations`` and the ``alerts.explained`` topic. It is rate-limited
(requests/s) and held to a daily token budget; an event already explained is
not paid for twice. With no ``ANTHROPIC_API_KEY``, after failed retries, or
over budget, a deterministic template is written instead (``source =
template``) and the reason is stored and counted.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import anthropic
import psycopg

from apps.explanations import SYSTEM_PROMPT, build_prompt, clean_output, template_explanation
from flows.config import ExplainerSettings, Settings
from operators import metrics

__all__ = ["Explainer", "Explanation", "TokenBucket", "run_explainer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Explanation:
    event_id: str
    text: str
    model: str | None
    source: str
    fallback_reason: str | None
    latency_ms: float
    input_tokens: int = 0
    output_tokens: int = 0


class TokenBucket:
    """Requests per second with a small burst; ``acquire`` blocks until a token is free."""

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate, self.capacity, self.clock, self.sleep = rate, float(burst), clock, sleep
        self.tokens, self.stamp = float(burst), clock()
        self.lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self.lock:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                wait = (1 - self.tokens) / self.rate
            self.sleep(wait)


class Explainer:
    """Explains batches of alerts (no Kafka here: :func:`run_explainer` feeds it)."""

    def __init__(
        self,
        cfg: ExplainerSettings,
        database_url: str,
        api_key: str | None = None,
        base_url: str | None = None,
    ) -> None:
        self.cfg, self.database_url = cfg, database_url
        key = api_key if api_key is not None else os.environ.get("ANTHROPIC_API_KEY")
        self.client = (
            anthropic.Anthropic(
                api_key=key, base_url=base_url, timeout=cfg.timeout_s, max_retries=cfg.max_retries
            )
            if key
            else None
        )
        self.bucket = TokenBucket(cfg.requests_per_s, cfg.concurrency)
        self.lock = threading.Lock()
        self.day, self.tokens_used = self._today(), self._tokens_spent_today()

    # -- budget ------------------------------------------------------------------
    @staticmethod
    def _today() -> str:
        return datetime.now(UTC).date().isoformat()

    def _tokens_spent_today(self) -> int:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(
                "SELECT coalesce(sum(input_tokens + output_tokens), 0) FROM alert_explanations "
                "WHERE created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
            ).fetchone()
        return int(row[0]) if row else 0

    def _over_budget(self) -> bool:
        with self.lock:
            if self._today() != self.day:
                self.day, self.tokens_used = self._today(), 0
            return self.tokens_used >= self.cfg.daily_token_budget

    # -- one alert -----------------------------------------------------------------
    def _fallback(self, alert: dict[str, Any], reason: str, began: float) -> Explanation:
        metrics.EXPLANATION_FALLBACKS.labels(reason.split(":", maxsplit=1)[0]).inc()
        return Explanation(
            alert["event_id"],
            template_explanation(alert),
            None,
            "template",
            reason,
            (time.perf_counter() - began) * 1000,
        )

    def explain(self, alert: dict[str, Any], history: list[dict[str, Any]]) -> Explanation:
        began = time.perf_counter()
        if self.client is None:
            return self._fallback(alert, "no_api_key", began)
        if self._over_budget():
            return self._fallback(alert, "over_budget", began)
        self.bucket.acquire()
        try:
            message = self.client.messages.create(
                model=self.cfg.model,
                max_tokens=self.cfg.max_tokens,
                system=SYSTEM_PROMPT,
                messages=[{"role": "user", "content": build_prompt(alert, history)}],
            )
        except anthropic.APIStatusError as exc:
            return self._fallback(alert, f"api_error:{exc.status_code}", began)
        except anthropic.APITimeoutError:
            return self._fallback(alert, "timeout", began)
        except anthropic.APIConnectionError:
            return self._fallback(alert, "connection_error", began)
        text = clean_output(
            " ".join(b.text for b in message.content if isinstance(b, anthropic.types.TextBlock)),
            self.cfg.max_chars,
        )
        if not text:
            return self._fallback(alert, "empty_response", began)
        used_in, used_out = message.usage.input_tokens, message.usage.output_tokens
        with self.lock:
            self.tokens_used += used_in + used_out
        metrics.EXPLANATION_TOKENS.labels("input").inc(used_in)
        metrics.EXPLANATION_TOKENS.labels("output").inc(used_out)
        return Explanation(
            alert["event_id"],
            text,
            message.model,
            "claude",
            None,
            (time.perf_counter() - began) * 1000,
            used_in,
            used_out,
        )

    # -- a batch -------------------------------------------------------------------
    def handle(self, alerts: Iterable[dict[str, Any]]) -> list[Explanation]:
        """Explain the alerts not explained yet; store them; return the new explanations."""
        wanted: dict[str, dict[str, Any]] = {}
        for alert in alerts:
            if alert.get("risk_level") in self.cfg.levels:
                wanted.setdefault(alert["event_id"], alert)
        if not wanted:
            return []
        with psycopg.connect(self.database_url) as conn:
            done = {
                r[0]
                for r in conn.execute(
                    "SELECT event_id FROM alert_explanations WHERE event_id = ANY(%s)", (list(wanted),)
                )
            }
            todo = [a for e, a in wanted.items() if e not in done]
            history = self._history(conn, todo)
        with ThreadPoolExecutor(self.cfg.concurrency) as pool:
            out = list(pool.map(lambda a: self.explain(a, history.get(a["user_id"], [])), todo))
        self._store(out)
        for e in out:
            metrics.EXPLANATIONS.labels(e.source).inc()
            metrics.EXPLANATION_SECONDS.labels(e.source).observe(e.latency_ms / 1000)
        return out

    def _history(
        self, conn: psycopg.Connection, alerts: list[dict[str, Any]]
    ) -> dict[str, list[dict[str, Any]]]:
        if not alerts or not self.cfg.history_events:
            return {}
        rows = conn.execute(
            "SELECT user_id, event_time, amount::float8, merchant_name, city, country, risk_level, "
            "triggered_rules FROM (SELECT *, row_number() OVER "
            "(PARTITION BY user_id ORDER BY event_time DESC) AS n FROM scored_events "
            "WHERE user_id = ANY(%s)) recent WHERE n <= %s ORDER BY user_id, event_time",
            (list({a["user_id"] for a in alerts}), self.cfg.history_events),
        ).fetchall()
        out: dict[str, list[dict[str, Any]]] = {}
        for user, when, amount, merchant, city, country, level, rules in rows:
            out.setdefault(user, []).append(
                {
                    "time": when.isoformat(),
                    "amount": amount,
                    "merchant": merchant,
                    "city": city,
                    "country": country and country.strip(),
                    "risk_level": level,
                    "rules": rules,
                }
            )
        return out

    def _store(self, explanations: list[Explanation]) -> None:
        if not explanations:
            return
        with psycopg.connect(self.database_url) as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO alert_explanations (event_id, text, model, source, fallback_reason, latency_ms, "
                "input_tokens, output_tokens) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (event_id) DO NOTHING",
                [
                    (
                        e.event_id,
                        e.text,
                        e.model,
                        e.source,
                        e.fallback_reason,
                        e.latency_ms,
                        e.input_tokens,
                        e.output_tokens,
                    )
                    for e in explanations
                ],
            )


def run_explainer(settings: Settings, stop: threading.Event, idle_exit_s: float | None = None) -> int:
    """Consume alerts until ``stop`` is set (or idle for ``idle_exit_s``); return how many were explained."""
    from confluent_kafka import Consumer, Producer

    from infra.migrations import apply_migrations
    from infra.topics import ensure_topics

    k, cfg = settings.kafka, settings.explainer
    apply_migrations(settings.database_url)
    ensure_topics(
        k.bootstrap_servers, {k.alerts_topic: k.partitions, cfg.output_topic: k.partitions}, k.client_config
    )
    explainer = Explainer(cfg, settings.database_url)
    if explainer.client is None:
        log.warning("ANTHROPIC_API_KEY is not set: writing template explanations")
    consumer = Consumer(
        {
            "bootstrap.servers": k.bootstrap_servers,
            "group.id": cfg.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            **k.client_config,
        }
    )
    producer = Producer({"bootstrap.servers": k.bootstrap_servers, "acks": "all", **k.client_config})
    consumer.subscribe([k.alerts_topic])
    explained, idle_since = 0, time.monotonic()
    try:
        while not stop.is_set():
            msgs = [m for m in consumer.consume(200, 0.5) if m.error() is None]
            if not msgs:
                if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                    break
                continue
            idle_since = time.monotonic()
            alerts = [json.loads(m.value() or b"{}") for m in msgs]
            new = explainer.handle(alerts)
            failed: list[Any] = []

            def delivered(err: Any, _msg: Any, failed: list[Any] = failed) -> None:
                if err is not None:
                    failed.append(err)

            for e in new:
                producer.produce(
                    cfg.output_topic,
                    key=e.event_id.encode(),
                    value=json.dumps(asdict(e)).encode(),
                    on_delivery=delivered,
                )
            if producer.flush(30) or failed:
                raise RuntimeError(f"could not deliver explanations to {cfg.output_topic!r}: {failed[:1]}")
            consumer.commit(asynchronous=False)
            explained += len(new)
    finally:
        consumer.close()
    return explained
