"""``fraudstream console``: the analysts' review queue (docs/console.md).

A FastAPI app with a JSON API under ``/api`` and plain HTML pages that call it.
Analysts sign in with a bearer token (``fraudstream console-user add``); the
pages keep it in an HttpOnly, SameSite=Strict session cookie. Alerts become
cases through :class:`apps.console.kafka.AlertIngest`; resolving a case
publishes a label on the labels topic, which the job applies to its risk windows.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from importlib import resources
from typing import Annotated, Any, Literal, cast

import redis
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field

from apps.console.cases import NotAllowed, Refused
from apps.console.changes import CaseFeed
from apps.console.kafka import AlertIngest, LabelNotDelivered
from apps.console.store import Analyst, CaseStore
from flows.config import Settings
from operators.labels import Label
from operators.redis_keys import LIST_KEYS

__all__ = ["COOKIE", "ConsoleMetrics", "create_app"]

log = logging.getLogger(__name__)

COOKIE = "fraudstream_console"
STATIC = resources.files("apps.console") / "static"
PAGES = {
    "/": "queue.html",
    "/login": "login.html",
    "/lists": "lists.html",
    "/search": "search.html",
    "/audit": "audit.html",
}
ADMIN_LISTS = frozenset({"countries"})
"""Lists only admins change: blocking a country is a policy decision."""
_VALUE = {"countries": re.compile(r"^[A-Z]{2}$")}
_ANY_VALUE = re.compile(r"^[^\x00-\x1f]{1,128}$")


class SessionBody(BaseModel):
    token: str = Field(min_length=1, max_length=256)


class AssignBody(BaseModel):
    assignee: str | None = Field(None, max_length=128, description="null: back to the queue")


class ResolveBody(BaseModel):
    disposition: Literal["fraud", "legitimate"]
    reason: str = Field("", max_length=2000)


class ListEntryBody(BaseModel):
    value: str = Field(min_length=1, max_length=128)
    reason: str = Field(min_length=1, max_length=500)


class ConsoleMetrics(Collector):
    """Queue depth and overdue cases by level and the age of the oldest open case,
    read from Postgres at scrape time, plus counters of what this process did."""

    def __init__(self, store: CaseStore) -> None:
        self.store = store
        self.registry = CollectorRegistry()
        self.resolutions = Counter(
            "fraudstream_console_resolutions",
            "Cases resolved, by disposition.",
            ["disposition"],
            registry=self.registry,
        )
        self.ingested = Counter(
            "fraudstream_console_cases_ingested", "Alerts that became new cases.", registry=self.registry
        )
        self.invalid = Counter(
            "fraudstream_console_alerts_invalid",
            "Alerts that could not become cases, by field.",
            ["field"],
            registry=self.registry,
        )
        self.registry.register(self)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            stats = self.store.queue_stats()
        except Exception as exc:  # a scrape must not fail because Postgres is away
            log.warning("console: queue metrics unavailable (%s)", type(exc).__name__)
            return
        depth = GaugeMetricFamily(
            "fraudstream_console_open_cases", "Cases not closed, by risk level.", labels=["level"]
        )
        overdue = GaugeMetricFamily(
            "fraudstream_console_overdue_cases",
            "Cases not closed past their due time, by level.",
            labels=["level"],
        )
        for level in ("HIGH", "MEDIUM"):
            depth.add_metric([level], stats["open"].get(level, 0))
            overdue.add_metric([level], stats["overdue"].get(level, 0))
        yield depth
        yield overdue
        yield GaugeMetricFamily(
            "fraudstream_console_oldest_open_case_age_seconds",
            "Age of the oldest case not closed (0 when none).",
            value=stats["oldest_age_s"],
        )


def _list_name(name: str) -> str:
    if name not in LIST_KEYS:
        raise HTTPException(404, f"no list {name!r}; lists: {', '.join(LIST_KEYS)}")
    return name


class _Context:
    """What every router shares: settings, the store, metrics, the label
    publisher, the live feed and a Redis client for the lists."""

    def __init__(
        self,
        settings: Settings,
        store: CaseStore,
        publish_label: Callable[[Label], None],
        metrics: ConsoleMetrics,
        feed: CaseFeed | None,
    ) -> None:
        self.cfg, self.store, self.publish_label, self.metrics, self.feed = (
            settings.console,
            store,
            publish_label,
            metrics,
            feed,
        )
        self.redis = redis.Redis.from_url(
            settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0, decode_responses=True
        )

    def analyst(self, request: Request) -> Analyst:
        """The signed-in analyst (bearer token, else the session cookie), or 401."""
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(COOKIE)
        found = self.store.analyst_for(token) if token else None
        if found is None:
            raise HTTPException(
                401,
                "sign in: a bearer token from `fraudstream console-user add`",
                {"WWW-Authenticate": "Bearer"},
            )
        return found

    def entries(self, name: str) -> list[dict[str, Any]]:
        members = sorted(cast("set[str]", self.redis.smembers(LIST_KEYS[name])))
        meta = self.store.list_entries(name)
        return [
            {"value": v, **{k: x for k, x in meta.get(v, {"added_by": None}).items() if k != "value"}}
            for v in members
        ]


def create_app(
    settings: Settings,
    store: CaseStore,
    publish_label: Callable[[Label], None],
    metrics: ConsoleMetrics | None = None,
    feed: CaseFeed | None = None,
    ingest: AlertIngest | None = None,
) -> FastAPI:
    """The console app. ``publish_label`` must return once the broker confirmed
    the label (or raise :class:`LabelNotDelivered`); ``feed`` drives
    ``/api/stream``; ``ingest`` runs with the app."""
    ctx = _Context(settings, store, publish_label, metrics or ConsoleMetrics(store), feed)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for part in (feed, ingest):
            if part is not None:
                part.start()
        try:
            yield
        finally:
            for part in (ingest, feed):
                if part is not None:
                    part.stop()

    app = FastAPI(
        title="fraudstream console",
        version="1",
        description="Review queue, lists, search and audit for fraud analysts (docs/console.md).",
        lifespan=lifespan,
    )
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    for path, page in PAGES.items():
        app.add_api_route(path, _page(page), methods=["GET"], include_in_schema=False)
    app.add_api_route("/cases/{event_id}", _page("case.html"), methods=["GET"], include_in_schema=False)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    for api in (_session(ctx), _cases(ctx), _lists(ctx), _search(ctx), _stream(ctx)):
        app.include_router(api)
    return app


def _session(ctx: _Context) -> APIRouter:
    api = APIRouter(prefix="/api", tags=["session"])
    who_dep = Depends(ctx.analyst)

    @api.post("/session", summary="Sign in: the token becomes an HttpOnly session cookie")
    def sign_in(body: SessionBody) -> JSONResponse:
        found = ctx.store.analyst_for(body.token)
        if found is None:
            raise HTTPException(401, "unknown or revoked token")
        response = JSONResponse(dict(found))
        response.set_cookie(
            COOKIE, body.token, httponly=True, samesite="strict", secure=ctx.cfg.secure_cookie, path="/"
        )
        return response

    @api.delete("/session", summary="Sign out")
    def sign_out() -> JSONResponse:
        response = JSONResponse({"signed_out": True})
        response.delete_cookie(COOKIE, path="/")
        return response

    @api.get("/me")
    def me(who: Analyst = who_dep) -> dict[str, Any]:
        return dict(who)

    @api.get("/analysts")
    def analysts(who: Analyst = who_dep) -> list[dict[str, Any]]:
        if not who.is_admin:
            raise HTTPException(403, "admins only")
        return ctx.store.analysts()

    return api


def _cases(ctx: _Context) -> APIRouter:
    api = APIRouter(prefix="/api/cases", tags=["cases"])
    who_dep = Depends(ctx.analyst)

    @api.get("", summary="The queue: highest priority first, then the soonest due")
    def queue(
        who: Analyst = who_dep,
        status: Annotated[
            Literal["open", "assigned", "closed"] | None, Query(description="default: open and assigned")
        ] = None,
        level: Literal["MEDIUM", "HIGH"] | None = None,
        assignee: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[dict[str, Any]]:
        return ctx.store.queue(status, level, assignee, limit)

    @api.get("/{event_id}", summary="A case with everything needed to decide it")
    def case(event_id: str, who: Analyst = who_dep) -> dict[str, Any]:
        found = ctx.store.case(event_id)
        if found is None:
            raise HTTPException(404, f"no case for event {event_id!r}")
        return found

    @api.post(
        "/{event_id}/assign", summary="Take a free case or release your own (analysts); assign any (admins)"
    )
    def assign(event_id: str, body: AssignBody, who: Analyst = who_dep) -> dict[str, Any]:
        if body.assignee not in (None, who.name) and not who.is_admin:
            raise HTTPException(403, "analysts assign cases to themselves; admins to anyone")
        return _outcome(ctx.store.assign(event_id, body.assignee, who.name, who.is_admin), event_id)

    @api.post("/{event_id}/resolve", summary="Close the case; publishes its label on the labels topic")
    def resolve(event_id: str, body: ResolveBody, who: Analyst = who_dep) -> dict[str, Any]:
        def label_for(now: datetime) -> Label:
            return Label(event_id, body.disposition == "fraud", now, ctx.cfg.label_source)

        try:
            out = ctx.store.resolve(
                event_id, body.disposition, body.reason, who.name, label_for, ctx.publish_label
            )
        except LabelNotDelivered as exc:
            raise HTTPException(503, f"{exc}; the case is unchanged, try again") from exc
        result = _outcome(out, event_id)
        ctx.metrics.resolutions.labels(body.disposition).inc()
        return result

    return api


def _lists(ctx: _Context) -> APIRouter:
    api = APIRouter(prefix="/api/lists", tags=["lists"])
    who_dep = Depends(ctx.analyst)

    def writable(name: str, who: Analyst) -> str:
        name = _list_name(name)
        if name in ADMIN_LISTS and not who.is_admin:
            raise HTTPException(403, f"only admins change the {name} list")
        return name

    @api.get("", summary="Every live list: the blocklists and the allow lists")
    def every_list(who: Analyst = who_dep) -> dict[str, list[dict[str, Any]]]:
        return {name: ctx.entries(name) for name in LIST_KEYS}

    @api.get("/{name}")
    def one_list(name: str, who: Analyst = who_dep) -> list[dict[str, Any]]:
        return ctx.entries(_list_name(name))

    @api.post("/{name}", status_code=201, summary="Add a value; the job applies it within seconds")
    def add(name: str, body: ListEntryBody, who: Analyst = who_dep) -> dict[str, Any]:
        name = writable(name, who)
        value = body.value.strip().upper() if name == "countries" else body.value.strip()
        if not _VALUE.get(name, _ANY_VALUE).match(value):
            what = (
                "an ISO 3166 alpha-2 code"
                if name == "countries"
                else "1-128 characters, no control characters"
            )
            raise HTTPException(422, f"value: {body.value!r} is not {what}")
        ctx.store.put_entry(
            name, value, body.reason, who.name, lambda: ctx.redis.sadd(LIST_KEYS[name], value)
        )
        return {"list": name, "value": value, "reason": body.reason, "added_by": who.name}

    @api.delete("/{name}/{value}")
    def remove(name: str, value: str, who: Analyst = who_dep) -> dict[str, Any]:
        name = writable(name, who)
        if not ctx.redis.sismember(LIST_KEYS[name], value):
            raise HTTPException(404, f"{value!r} is not on the {name} list")
        ctx.store.delete_entry(name, value, who.name, lambda: ctx.redis.srem(LIST_KEYS[name], value))
        return {"list": name, "value": value, "removed_by": who.name}

    return api


def _search(ctx: _Context) -> APIRouter:
    api = APIRouter(prefix="/api", tags=["search"])
    who_dep = Depends(ctx.analyst)

    @api.get("/events", summary="Transaction search, newest first")
    def events(
        who: Analyst = who_dep,
        user_id: str | None = None,
        start: Annotated[datetime | None, Query(alias="from", description="event time, RFC 3339")] = None,
        end: Annotated[
            datetime | None, Query(alias="to", description="event time, RFC 3339, exclusive")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        for name, t in (("from", start), ("to", end)):
            if t is not None and t.tzinfo is None:
                raise HTTPException(422, f"{name}: give a UTC offset, e.g. 2026-11-27T10:00:00Z")
        return ctx.store.events(user_id, start, end, limit)

    @api.get("/audit", summary="The audit trail, newest first")
    def audit(
        who: Analyst = who_dep,
        actor: str | None = None,
        subject: Annotated[str | None, Query(description="prefix, e.g. case/ or list/devices")] = None,
        before_id: int | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        return ctx.store.audit(limit, actor, subject, before_id)

    return api


def _stream(ctx: _Context) -> APIRouter:
    api = APIRouter(prefix="/api", tags=["stream"])
    who_dep = Depends(ctx.analyst)

    @api.get("/stream", summary="Server-sent events: `case` for every new or changed case")
    async def stream(who: Analyst = who_dep) -> StreamingResponse:
        feed = ctx.feed
        if feed is None:
            raise HTTPException(503, "no live feed in this process")
        sub = feed.subscribe()

        async def events() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n: connected\n\n"
                while True:
                    try:
                        payload = await asyncio.wait_for(sub.queue.get(), 15.0)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if sub.lost:
                        sub.lost = False
                        payload = '{"change": "resync"}'
                    yield f"event: case\ndata: {payload}\n\n"
            finally:
                feed.unsubscribe(sub)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return api


def _outcome(out: dict[str, Any] | Refused | NotAllowed | None, event_id: str) -> dict[str, Any]:
    if out is None:
        raise HTTPException(404, f"no case for event {event_id!r}")
    if isinstance(out, NotAllowed):
        raise HTTPException(403, out.reason)
    if isinstance(out, Refused):
        raise HTTPException(409, out.reason)
    return out


def _page(name: str) -> Callable[[], Response]:
    path = STATIC / name

    def page() -> Response:
        return FileResponse(str(path), media_type="text/html", headers={"Cache-Control": "no-store"})

    return page
