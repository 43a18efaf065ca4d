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
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from apps.gateway.answers import (
    IngestAccepted,
    Problem,
    ScoreResponse,
    UserRisk,
    fallback_answer,
    stream_answer,
)
from apps.gateway.keys import KeyRing, RateLimiter
from apps.gateway.replies import CONFLICT, DecisionRouter, DeliveringProducer
from flows.blocklists import RedisBlocklists
from flows.config import ConfigError, Settings
from operators.events import InvalidEvent, TransactionEvent, decode_event, event_json_schema
from operators.redis_keys import RISK_KEY
from operators.validation import error_field

__all__ = ["create_app", "run_gateway"]

log = logging.getLogger(__name__)

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


class _Context:
    """What every route shares: settings, the reply router, the producer, keys,
    the rate limiter, the live blocklists and a Redis client."""

    def __init__(
        self,
        settings: Settings,
        router: DecisionRouter,
        producer: DeliveringProducer,
        keys: KeyRing | None,
        clock: Callable[[], float],
    ) -> None:
        self.settings, self.router, self.producer, self.keys, self.clock = (
            settings,
            router,
            producer,
            keys,
            clock,
        )
        self.g, self.limits = settings.gateway, settings.validation.config()
        self.limiter = RateLimiter(self.g.rate_per_s, self.g.rate_burst)
        self.blocklists = RedisBlocklists(settings.redis_url, settings.redis.blocklist_refresh_s)
        self.redis = aioredis.Redis.from_url(
            settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0
        )

    def authorise(self, request: Request) -> str | JSONResponse:
        """The key's name, or the 401 answer."""
        if self.keys is None:
            return "anonymous"
        found = self.keys.name_of(request.headers.get(KEY_HEADER))
        if found is None:
            return _problem(
                401, f"missing, unknown or revoked {KEY_HEADER}", {"WWW-Authenticate": KEY_HEADER}
            )
        return found

    def throttle(self, name: str, events: int) -> JSONResponse | None:
        """The 429 answer when ``events`` more events exceed the key's rate."""
        wait = self.limiter.acquire(name, events)
        if wait:
            return _problem(
                429,
                f"rate limit of {self.g.rate_per_s:g} events/s for this key ({events} in this request)",
                {"Retry-After": f"{wait:.3f}"},
            )
        return None

    async def decode(
        self, request: Request, many: bool
    ) -> list[tuple[TransactionEvent, bytes]] | JSONResponse:
        """The request's events with their bytes, or the 413/422 answer."""
        g = self.g
        body = await _read_body(request, g.max_body_bytes)
        if body is None:
            return _problem(413, f"body over {g.max_body_bytes} bytes")
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return _problem(422, [_invalid(None, f"payload: not JSON ({exc})")])
        except RecursionError:
            return _problem(422, [_invalid(None, "payload: JSON is nested too deeply")])
        batch = many and isinstance(parsed, list)
        items = parsed if batch else [parsed]
        if batch and not 1 <= len(items) <= g.max_batch:
            return _problem(422, [_invalid(None, f"payload: a batch holds 1 to {g.max_batch} events")])
        now = datetime.fromtimestamp(self.clock(), UTC)
        out, problems = [], []
        for i, item in enumerate(items):
            try:
                raw = json.dumps(item, separators=(",", ":")).encode() if batch else body
            except RecursionError:
                problems.append(_invalid(i if batch else None, "payload: JSON is nested too deeply"))
                continue
            result = decode_event(raw, self.limits, now)
            if isinstance(result, InvalidEvent):
                problems.append(_invalid(i if batch else None, result.error))
            else:
                out.append((result, raw))
        if problems:
            return _problem(422, problems)
        return out

    async def produce(
        self, events: list[tuple[TransactionEvent, bytes]], request_id: str | None = None
    ) -> JSONResponse | None:
        """None once the broker acknowledged every event, else the 503 answer."""
        topic = self.settings.kafka.transactions_topic
        try:
            await asyncio.gather(
                *(self.producer.send(topic, ev.user_id.encode(), raw, request_id) for ev, raw in events)
            )
        except RuntimeError as exc:
            log.warning("produce failed: %s", exc)
            return _problem(503, "the broker did not acknowledge the event(s); retry with the same event_id")
        return None


def _invalid(i: int | None, error: str) -> dict[str, Any]:
    out: dict[str, Any] = {"field": error_field(error), "reason": error}
    if i is not None:
        out["index"] = i
    return out


_ERRORS: dict[int | str, dict[str, Any]] = {
    "401": {"description": "missing, unknown or revoked API key", "model": Problem},
    "413": {"description": "body over gateway.max_body_bytes", "model": Problem},
    "422": {"description": "invalid event: the field and the reason", "model": Problem},
    "429": {"description": "rate limit for this key (Retry-After)", "model": Problem},
    "503": {"description": "the broker did not acknowledge the event", "model": Problem},
}
_EVENT_REF = {"$ref": "#/components/schemas/TransactionEvent"}


def _transactions(ctx: _Context) -> APIRouter:
    """``POST /v1/transactions`` (ingest) and ``POST /v1/transactions/score``."""
    api = APIRouter(prefix="/v1/transactions")
    body_one = {"content": {"application/json": {"schema": _EVENT_REF}}, "required": True}
    many = {"oneOf": [_EVENT_REF, {"type": "array", "items": _EVENT_REF, "maxItems": ctx.g.max_batch}]}
    body_many = {"content": {"application/json": {"schema": many}}, "required": True}

    @api.post(
        "",
        status_code=202,
        response_model=IngestAccepted,
        responses=_ERRORS,
        openapi_extra={"requestBody": body_many},
        summary="Ingest one event or a batch (JSON array) into the stream",
    )
    async def ingest(request: Request) -> Any:
        if isinstance(name := ctx.authorise(request), JSONResponse):
            return name
        decoded = await ctx.decode(request, many=True)
        if isinstance(decoded, JSONResponse):
            return decoded
        if (limited := ctx.throttle(name, len(decoded))) is not None:
            return limited
        if (failed := await ctx.produce(decoded)) is not None:
            return failed
        return JSONResponse(
            {"accepted": len(decoded), "event_ids": [ev.event_id for ev, _ in decoded]}, status_code=202
        )

    @api.post(
        "/score",
        response_model=ScoreResponse,
        responses={
            **_ERRORS,
            "409": {
                "description": "a call for this event_id is in flight, or was decided on another payload",
                "model": Problem,
            },
        },
        openapi_extra={"requestBody": body_one},
        summary="Ingest one event and wait for the job's decision (fallback when the budget runs out)",
    )
    async def score(request: Request, budget_ms: float | None = None) -> Any:
        began = time.perf_counter()
        if isinstance(name := ctx.authorise(request), JSONResponse):
            return name
        decoded = await ctx.decode(request, many=False)
        if isinstance(decoded, JSONResponse):
            return decoded
        if (limited := ctx.throttle(name, 1)) is not None:
            return limited
        ((ev, raw),) = decoded
        g = ctx.g
        budget = min(budget_ms if budget_ms and budget_ms > 0 else g.score_budget_ms, g.max_budget_ms) / 1000
        expected = ctx.router.expect(ev.event_id)
        if expected is None:
            return _problem(409, f"a score call for event_id {ev.event_id!r} is already waiting")
        token, waiter = expected
        try:
            if (failed := await ctx.produce([(ev, raw)], token)) is not None:
                return failed
            try:
                decision = await asyncio.wait_for(waiter, max(0.0, budget - (time.perf_counter() - began)))
            except TimeoutError:
                FALLBACKS.labels("timeout").inc()
                answer = await asyncio.to_thread(
                    fallback_answer, ev, ctx.settings, ctx.blocklists, "timeout", began
                )
                SCORE_SECONDS.labels("fallback").observe(time.perf_counter() - began)
                return answer
            if CONFLICT in decision:
                return _problem(409, f"event_id {ev.event_id!r} was decided on another request's payload")
            SCORE_SECONDS.labels("stream").observe(time.perf_counter() - began)
            return stream_answer(ev.event_id, decision, began, ctx.settings.ensemble.medium_threshold)
        finally:
            ctx.router.forget(ev.event_id, token)

    return api


def _users(ctx: _Context) -> APIRouter:
    """``GET /v1/users/{user_id}/risk``: the user's latest risk from Redis."""
    api = APIRouter(prefix="/v1/users")

    @api.get(
        "/{user_id}/risk",
        response_model=UserRisk,
        responses={
            "401": _ERRORS["401"],
            "404": {"description": "no recent risk for this user", "model": Problem},
        },
        summary="The user's latest risk from Redis (written by the job)",
    )
    async def user_risk(request: Request, user_id: str) -> Any:
        if isinstance(name := ctx.authorise(request), JSONResponse):
            return name
        if (limited := ctx.throttle(name, 1)) is not None:
            return limited
        try:
            raw = await ctx.redis.hgetall(RISK_KEY.format(user_id=user_id))
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

    return api


def _operations(ctx: _Context) -> APIRouter:
    """Health, readiness and ``/metrics`` (not in the OpenAPI document)."""
    api = APIRouter(include_in_schema=False)

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz() -> Response:
        ok = ctx.router.ready.is_set() and await asyncio.to_thread(ctx.producer.ready)
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @api.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return api


def create_app(
    settings: Settings,
    router: DecisionRouter,
    producer: DeliveringProducer,
    keys: KeyRing | None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The gateway app: the transactions, users and operations routers over one shared context."""
    ctx = _Context(settings, router, producer, keys, clock)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await ctx.redis.aclose()

    app = FastAPI(
        title="fraudstream gateway",
        version="1",
        description="Ingest transactions into the fraudstream job and get its decision synchronously.",
        lifespan=lifespan,
    )

    @app.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        REQUESTS.labels(getattr(route, "path", "other"), str(response.status_code)).inc()
        return response

    for api in (_transactions(ctx), _users(ctx), _operations(ctx)):
        app.include_router(api)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document with the job's own event schema as a component."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        event_schema = event_json_schema()
        event_schema.pop("$schema", None)
        defs = event_schema.pop("$defs", {})
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
        if keys.holds_example_key() and not g.allow_example_key:
            raise ConfigError(
                f"gateway.keys_file: {g.keys_file} holds the public example key; make your own with "
                "`fraudstream gateway-key NAME --append FILE` (or set gateway.allow_example_key: true "
                "for a demo)"
            )
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
