"""HTTP gateway: ingestion into the stream and synchronous score calls.

``POST /v1/transactions`` validates one event or a list with the job's own
decoder, produces them to the transactions topic with delivery confirmed and
answers 202. ``POST /v1/transactions/score`` does the same for one event and
then waits (``gateway.score_budget_ms``) for the job's decision, which the job
publishes to the decisions topic keyed by ``event_id``. One consumer per
gateway replica reads every partition of that topic and completes the waiting
request, so any number of replicas work side by side.

When the budget runs out the answer is the documented fallback: the rules that
need no per-user history (unusual hours, blocked countries, devices and users,
with the live blocklists from Redis) through the same ensemble, flagged
``"source": "fallback"`` and counted. The event is on the topic either way and
the stream still scores it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field

from flows.config import ConfigError, Settings
from operators.apikeys import KeyRing, RateLimiter
from operators.blocklists import RedisBlocklists
from operators.ensemble import combine
from operators.events import InvalidEvent, TransactionEvent, decode_event, event_json_schema
from operators.features import compute_features
from operators.rules import RuleContext, evaluate_rules
from operators.sinks.redis import RISK_KEY
from operators.state import UserState
from operators.validation import REQUEST_ID_HEADER, error_field

__all__ = ["DecisionRouter", "create_app", "run_gateway"]

log = logging.getLogger(__name__)

REQUESTS = Counter(
    "fraudstream_gateway_requests", "Gateway requests, by route and status.", ["route", "status"]
)
SCORE_SECONDS = Histogram(
    "fraudstream_gateway_score_seconds",
    "Score call latency, by source of the answer (stream or fallback).",
    ["source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
FALLBACKS = Counter(
    "fraudstream_gateway_fallbacks", "Score calls answered by the fallback, by reason.", ["reason"]
)
KEY_HEADER = "X-API-Key"


# --- replies -------------------------------------------------------------------------------------


CONFLICT = "__conflict__"
"""Marks a decision for the same ``event_id`` made on another request's payload."""


class DecisionRouter:
    """Reads every partition of the decisions topic from its end and completes
    the future registered for each ``event_id`` (one consumer per replica, not
    one per request). Replies are matched by the request token the job echoes
    (``request_id``): a decision made on another request's payload never
    answers this one."""

    def __init__(self, bootstrap: str, topic: str, client_config: dict[str, str]) -> None:
        self.topic = topic
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "fraudstream-gateway",  # unused: partitions are assigned, offsets never committed
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
                **client_config,
            }
        )
        self._waiting: dict[str, tuple[str, asyncio.AbstractEventLoop, asyncio.Future[dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decisions", daemon=True)
        self.ready = threading.Event()

    def start(self) -> None:
        md = self._consumer.list_topics(self.topic, timeout=10)
        parts = md.topics[self.topic].partitions if self.topic in md.topics else {}
        if not parts:
            raise RuntimeError(f"decisions topic {self.topic!r} has no partitions (is the job bootstrapped?)")
        assignment = []
        for p in parts:
            _low, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
            assignment.append(TopicPartition(self.topic, p, max(high, 0)))
        self._consumer.assign(assignment)
        self.ready.set()
        self._thread.start()

    def expect(self, event_id: str) -> tuple[str, asyncio.Future[dict[str, Any]]] | None:
        """A fresh request token and the future its decision completes; None when
        a score call for ``event_id`` is already waiting here (the caller answers 409)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        token = uuid.uuid4().hex
        with self._lock:
            if event_id in self._waiting:
                return None
            self._waiting[event_id] = (token, loop, fut)
        return token, fut

    def forget(self, event_id: str, token: str) -> None:
        with self._lock:
            if self._waiting.get(event_id, ("",))[0] == token:
                del self._waiting[event_id]

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(500, 0.05):
                if msg.error() is not None or msg.key() is None:
                    continue
                with self._lock:
                    waiter = self._waiting.pop(msg.key().decode(errors="replace"), None)  # type: ignore[union-attr]
                if waiter is None:
                    continue
                token, loop, fut = waiter
                with contextlib.suppress(ValueError):
                    record = json.loads(msg.value() or b"{}")
                    if record.get("request_id") != token:
                        record = {CONFLICT: record.get("request_id")}
                    loop.call_soon_threadsafe(_resolve, fut, record)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._consumer.close()


def _resolve(fut: asyncio.Future[dict[str, Any]], value: dict[str, Any]) -> None:
    if not fut.done():
        fut.set_result(value)


class DeliveringProducer:
    """A producer whose ``send`` returns once the broker acknowledged the record."""

    def __init__(self, bootstrap: str, client_config: dict[str, str]) -> None:
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 1,
                "message.timeout.ms": 10_000,
                **client_config,
            }
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="producer-poll", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def send(self, topic: str, key: bytes, value: bytes, request_id: str | None = None) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            loop.call_soon_threadsafe(_deliver, fut, err)

        headers: list[tuple[str, str | bytes | None]] | None = (
            [(REQUEST_ID_HEADER, request_id.encode())] if request_id else None
        )
        self._producer.produce(topic, value, key, on_delivery=delivered, headers=headers)
        await fut

    def ready(self) -> bool:
        try:
            self._producer.list_topics(timeout=2)
        except Exception:
            return False
        return True

    def close(self) -> None:
        self._producer.flush(10)
        self._stop.set()
        self._thread.join(5)


def _deliver(fut: asyncio.Future[None], err: KafkaError | None) -> None:
    if fut.done():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(RuntimeError(f"not delivered: {err.str()}"))


# --- answers -------------------------------------------------------------------------------------


class ScoreResponse(BaseModel):
    """Seed-000's answer shape plus the job's decision details."""

    transaction_id: str
    fraud_score: float = Field(ge=0, le=100)
    risk_level: str
    is_blocked: bool
    decision: str = Field(description="approve | review | block (pending is never returned: see source)")
    triggered_rules: list[str]
    reasons: list[str]
    scores: dict[str, float | None]
    model_version: str
    explanation: str
    processing_time_ms: float
    source: str = Field(description="stream: the job's own decision; fallback: budget ran out (see docs)")
    fallback_reason: str | None = None


class Accepted(BaseModel):
    accepted: int
    event_ids: list[str]


class UserRisk(BaseModel):
    """The latest decision for a user, as the job left it in Redis (``fraud:risk:<user_id>``)."""

    user_id: str
    fraud_score: float
    risk_level: str
    decision: str
    event_id: str
    event_time: str
    updated_at: str


class Problem(BaseModel):
    detail: list[dict[str, Any]] | str


def _explanation(reasons: list[str]) -> str:
    return "; ".join(reasons) if reasons else "no rule fired and the model scores are in the normal range"


def stream_answer(event_id: str, d: dict[str, Any], began: float) -> ScoreResponse:
    return ScoreResponse(
        transaction_id=event_id,
        fraud_score=d["fraud_score"],
        risk_level=d["risk_level"],
        is_blocked=d["is_blocked"],
        decision=d["decision"],
        triggered_rules=d["triggered_rules"],
        reasons=d["reasons"],
        scores=d["scores"],
        model_version=d["model_version"],
        explanation=_explanation(d["reasons"]),
        processing_time_ms=round((time.perf_counter() - began) * 1000, 3),
        source="stream",
    )


def fallback_answer(
    ev: TransactionEvent, settings: Settings, blocklists: RedisBlocklists, reason: str, began: float
) -> ScoreResponse:
    """Rules that need no history, on an empty profile, through the same ensemble."""
    features = compute_features(UserState(), ev, ev.timestamp.timestamp())
    hits = evaluate_rules(ev, features, RuleContext(settings.rules, blocklists.current()))
    verdict = combine(hits, {}, settings.ensemble)
    reasons = [h.reason for h in hits]
    return ScoreResponse(
        transaction_id=ev.event_id,
        fraud_score=verdict.fraud_score,
        risk_level=verdict.risk_level,
        is_blocked=verdict.is_blocked,
        decision=verdict.decision,
        triggered_rules=[h.rule for h in hits],
        reasons=reasons,
        scores=verdict.scores,
        model_version="fallback-rules",
        explanation=_explanation(reasons),
        processing_time_ms=round((time.perf_counter() - began) * 1000, 3),
        source="fallback",
        fallback_reason=reason,
    )


# --- the app -------------------------------------------------------------------------------------


def _problem(
    status: int, detail: list[dict[str, Any]] | str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it exceeds ``limit`` (checked before and while reading)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(  # noqa: PLR0915 - one closure per route, sharing the app's state
    settings: Settings,
    router: DecisionRouter,
    producer: DeliveringProducer,
    keys: KeyRing | None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    g, k = settings.gateway, settings.kafka
    limits = settings.validation.limits()
    limiter = RateLimiter(g.rate_per_s, g.rate_burst)
    blocklists = RedisBlocklists(settings.redis_url, settings.redis.blocklist_refresh_s)
    redis_client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await redis_client.aclose()

    app = FastAPI(
        title="fraudstream gateway",
        version="1",
        description="Ingest transactions into the fraudstream job and get its decision synchronously.",
        lifespan=lifespan,
    )
    event_schema = event_json_schema()
    event_schema.pop("$schema", None)
    defs = event_schema.pop("$defs", {})
    body_one = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TransactionEvent"}}}
    }
    body_many = {
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/TransactionEvent"},
                        {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/TransactionEvent"},
                            "maxItems": g.max_batch,
                        },
                    ]
                }
            }
        },
        "required": True,
    }
    errors: dict[int | str, dict[str, Any]] = {
        "401": {"description": "missing, unknown or revoked API key", "model": Problem},
        "413": {"description": "body over gateway.max_body_bytes", "model": Problem},
        "422": {"description": "invalid event: the field and the reason", "model": Problem},
        "429": {"description": "rate limit for this key (Retry-After)", "model": Problem},
        "503": {"description": "the broker did not acknowledge the event", "model": Problem},
    }

    @app.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        REQUESTS.labels(getattr(route, "path", "other"), str(response.status_code)).inc()
        return response

    def authorise(request: Request) -> str | JSONResponse:
        """The key's name, or the 401 answer."""
        if keys is None:
            return "anonymous"
        found = keys.name_of(request.headers.get(KEY_HEADER))
        if found is None:
            return _problem(
                401, f"missing, unknown or revoked {KEY_HEADER}", {"WWW-Authenticate": KEY_HEADER}
            )
        return found

    def throttle(name: str, events: int) -> JSONResponse | None:
        """The 429 answer when ``events`` more events exceed the key's rate."""
        wait = limiter.acquire(name, events)
        if wait:
            return _problem(
                429,
                f"rate limit of {g.rate_per_s:g} events/s for this key ({events} in this request)",
                {"Retry-After": f"{wait:.3f}"},
            )
        return None

    def invalid(i: int | None, error: str) -> dict[str, Any]:
        out: dict[str, Any] = {"field": error_field(error), "reason": error}
        if i is not None:
            out["index"] = i
        return out

    async def decode(request: Request, many: bool) -> list[tuple[TransactionEvent, bytes]] | JSONResponse:
        body = await _read_body(request, g.max_body_bytes)
        if body is None:
            return _problem(413, f"body over {g.max_body_bytes} bytes")
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return _problem(422, [invalid(None, f"payload: not JSON ({exc})")])
        except RecursionError:
            return _problem(422, [invalid(None, "payload: JSON is nested too deeply")])
        batch = many and isinstance(parsed, list)
        items = parsed if batch else [parsed]
        if batch and not 1 <= len(items) <= g.max_batch:
            return _problem(422, [invalid(None, f"payload: a batch holds 1 to {g.max_batch} events")])
        now = datetime.fromtimestamp(clock(), UTC)
        out, problems = [], []
        for i, item in enumerate(items):
            try:
                raw = json.dumps(item, separators=(",", ":")).encode() if batch else body
            except RecursionError:
                problems.append(invalid(i if batch else None, "payload: JSON is nested too deeply"))
                continue
            result = decode_event(raw, limits, now)
            if isinstance(result, InvalidEvent):
                problems.append(invalid(i if batch else None, result.error))
            else:
                out.append((result, raw))
        if problems:
            return _problem(422, problems)
        return out

    async def produce(
        events: list[tuple[TransactionEvent, bytes]], request_id: str | None = None
    ) -> JSONResponse | None:
        try:
            await asyncio.gather(
                *(
                    producer.send(k.transactions_topic, ev.user_id.encode(), raw, request_id)
                    for ev, raw in events
                )
            )
        except RuntimeError as exc:
            log.warning("produce failed: %s", exc)
            return _problem(503, "the broker did not acknowledge the event(s); retry with the same event_id")
        return None

    @app.post(
        "/v1/transactions",
        status_code=202,
        response_model=Accepted,
        responses=errors,
        openapi_extra={"requestBody": body_many},
        summary="Ingest one event or a batch (JSON array) into the stream",
    )
    async def ingest(request: Request) -> Any:
        if isinstance(name := authorise(request), JSONResponse):
            return name
        decoded = await decode(request, many=True)
        if isinstance(decoded, JSONResponse):
            return decoded
        if (limited := throttle(name, len(decoded))) is not None:
            return limited
        if (failed := await produce(decoded)) is not None:
            return failed
        return JSONResponse(
            {"accepted": len(decoded), "event_ids": [ev.event_id for ev, _ in decoded]}, status_code=202
        )

    @app.post(
        "/v1/transactions/score",
        response_model=ScoreResponse,
        responses={
            **errors,
            "409": {
                "description": "a call for this event_id is in flight, or was decided on another payload",
                "model": Problem,
            },
        },
        openapi_extra={"requestBody": {**body_one, "required": True}},
        summary="Ingest one event and wait for the job's decision (fallback when the budget runs out)",
    )
    async def score(request: Request, budget_ms: float | None = None) -> Any:
        began = time.perf_counter()
        if isinstance(name := authorise(request), JSONResponse):
            return name
        decoded = await decode(request, many=False)
        if isinstance(decoded, JSONResponse):
            return decoded
        if (limited := throttle(name, 1)) is not None:
            return limited
        ((ev, raw),) = decoded
        budget = min(budget_ms if budget_ms and budget_ms > 0 else g.score_budget_ms, g.max_budget_ms) / 1000
        expected = router.expect(ev.event_id)
        if expected is None:
            return _problem(409, f"a score call for event_id {ev.event_id!r} is already waiting")
        token, waiter = expected
        try:
            if (failed := await produce([(ev, raw)], token)) is not None:
                return failed
            try:
                decision = await asyncio.wait_for(waiter, max(0.0, budget - (time.perf_counter() - began)))
            except TimeoutError:
                FALLBACKS.labels("timeout").inc()
                answer = await asyncio.to_thread(fallback_answer, ev, settings, blocklists, "timeout", began)
                SCORE_SECONDS.labels("fallback").observe(time.perf_counter() - began)
                return answer
            if CONFLICT in decision:
                return _problem(409, f"event_id {ev.event_id!r} was decided on another request's payload")
            SCORE_SECONDS.labels("stream").observe(time.perf_counter() - began)
            return stream_answer(ev.event_id, decision, began)
        finally:
            router.forget(ev.event_id, token)

    @app.get(
        "/v1/users/{user_id}/risk",
        response_model=UserRisk,
        responses={
            "401": errors["401"],
            "404": {"description": "no recent risk for this user", "model": Problem},
        },
        summary="The user's latest risk from Redis (written by the job)",
    )
    async def user_risk(request: Request, user_id: str) -> Any:
        if isinstance(name := authorise(request), JSONResponse):
            return name
        if (limited := throttle(name, 1)) is not None:
            return limited
        try:
            raw = await redis_client.hgetall(RISK_KEY.format(user_id=user_id))
        except (aioredis.RedisError, OSError):
            return _problem(503, "Redis is unavailable")
        if not raw:
            return _problem(404, "no recent risk for this user")
        r = {_text(k): _text(v) for k, v in raw.items()}
        return UserRisk(
            user_id=user_id,
            fraud_score=float(r.get("score", "nan")),
            risk_level=r.get("level", ""),
            decision=r.get("decision", ""),
            event_id=r.get("event_id", ""),
            event_time=r.get("event_time", ""),
            updated_at=r.get("updated_at", ""),
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        ok = router.ready.is_set() and await asyncio.to_thread(producer.ready)
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["TransactionEvent"] = _rewrite_refs(event_schema)
            for name, d in defs.items():
                components[name] = _rewrite_refs(d)
            schema["components"]["securitySchemes"] = {
                "apiKey": {"type": "apiKey", "in": "header", "name": KEY_HEADER}
            }
            schema["security"] = [{"apiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _text(v: bytes | str) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else v


def _rewrite_refs(node: Any) -> Any:
    """msgspec's ``#/$defs/X`` references as OpenAPI component references."""
    if isinstance(node, dict):
        return {
            k: (v.replace("#/$defs/", "#/components/schemas/") if k == "$ref" else _rewrite_refs(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def run_gateway(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Start the gateway (blocks). Config errors stop it with the field named."""
    import uvicorn

    g, k = settings.gateway, settings.kafka
    keys = None
    if g.require_auth:
        if not g.keys_file:
            raise ConfigError("gateway.keys_file: required while gateway.require_auth is true")
        keys = KeyRing(Path(g.keys_file))
        if not len(keys):
            raise ConfigError(f"gateway.keys_file: {g.keys_file} holds no active key")
    if not k.publish_decisions:
        raise ConfigError("kafka.publish_decisions: the gateway needs the job to publish decisions")
    router = DecisionRouter(k.bootstrap_servers, k.decisions_topic, dict(k.client_config))
    from infra.topics import ensure_topics

    ensure_topics(k.bootstrap_servers, {k.decisions_topic: k.partitions, k.transactions_topic: k.partitions})
    router.start()
    producer = DeliveringProducer(k.bootstrap_servers, dict(k.client_config))
    app = create_app(settings, router, producer, keys)
    try:
        uvicorn.run(app, host=host or g.host, port=port or g.port, log_level="warning", access_log=False)
    finally:
        producer.close()
        router.close()
