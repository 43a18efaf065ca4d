"""Score-call latency through the gateway + job, against a per-request scorer in
the style of a per-request reference server (rules + scikit-learn Isolation Forest evaluated inside
the request, history in the server's memory), at fixed request rates.

    python -m bench gateway [--quick] [--rates 200,1000] [--duration 10] [--json F] [--markdown F]

The load is open-loop: request i is sent at t0 + i/rate whether or not earlier
ones have answered, so a server that falls behind shows it in its latency.
Both servers run on the same machine in the same run; the gateway's numbers
include the broker, the job's micro-batch and the decisions topic.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi import Request

from apps.replay.workload import generate
from bench.harness import isolated_settings
from bench.job import PARTITIONS, _percentiles, embedded_stack, machine_facts, run_job, train_models
from flows.launcher import start_gateway, stop_process
from infra.stack import free_port

__all__ = ["main", "seed_style_app"]


def seed_style_app(training: list[Any]) -> Any:
    """The per-request way: one event per request, features from an in-memory history,
    rules, then ``IsolationForest.decision_function`` on that one row."""
    from fastapi import FastAPI
    from sklearn.ensemble import IsolationForest

    from flows.config import Settings
    from models.training import replay_features
    from operators.ensemble import combine
    from operators.events import TransactionEvent, decode_event
    from operators.features import feature_matrix, update_profile
    from operators.rules import RuleContext, evaluate_rules
    from operators.state import StateLimits, UserState
    from operators.validation import Accepted

    cfg = Settings()
    x = np.nan_to_num(feature_matrix(*replay_features(training)))
    forest = IsolationForest(n_estimators=100, random_state=0).fit(x)
    lo, hi = np.percentile(forest.decision_function(x), [1, 99])
    history: dict[str, UserState] = {}
    lock = threading.Lock()
    app = FastAPI()

    @app.post("/score")
    async def score(request: Request) -> Any:
        began = time.perf_counter()
        ev = decode_event(await request.body())
        if not isinstance(ev, TransactionEvent):
            return {"error": ev.error}
        with lock:
            state = history.setdefault(ev.user_id, UserState())
            ts = ev.timestamp.timestamp()
            f = update_profile(state, Accepted(ev, ts, None, ts), StateLimits()).features
        hits = evaluate_rules(ev, f, RuleContext(cfg.rules, _EMPTY))
        raw = float(forest.decision_function(np.nan_to_num(feature_matrix([f], [ev])))[0])
        iso = float(np.clip((hi - raw) / (hi - lo) * 100, 0, 100))
        v = combine(hits, {"isolation_forest": iso}, cfg.ensemble)
        return {
            "transaction_id": ev.event_id,
            "fraud_score": v.fraud_score,
            "risk_level": v.risk_level,
            "is_blocked": v.is_blocked,
            "triggered_rules": [h.rule for h in hits],
            "processing_time_ms": (time.perf_counter() - began) * 1000,
        }

    return app


class _Empty:
    countries: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()


_EMPTY: Any = _Empty()


async def _load(url: str, bodies: list[bytes], rate: float, headers: dict[str, str]) -> dict[str, Any]:
    latencies: list[float] = []
    sources: dict[str, int] = {}
    errors = 0
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(headers=headers, timeout=30, limits=limits) as client:

        async def one(body: bytes) -> None:
            nonlocal errors
            began = time.perf_counter()
            try:
                r = await client.post(url, content=body, headers={"content-type": "application/json"})
            except httpx.HTTPError:
                errors += 1
                return
            latencies.append((time.perf_counter() - began) * 1000)
            if r.status_code != 200:
                errors += 1
                return
            src = r.json().get("source", "in-request")
            sources[src] = sources.get(src, 0) + 1

        tasks = []
        t0 = time.perf_counter()
        for i, body in enumerate(bodies):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(body)))
        offered = len(bodies) / (time.perf_counter() - t0)
        await asyncio.gather(*tasks)
    return {"offered_per_s": offered, "ms": _percentiles(latencies), "errors": errors, "sources": sources}


def _serve(app: Any, port: int) -> threading.Thread:
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"http://127.0.0.1:{port}/score", content=b"{}", timeout=1)
            return thread
        time.sleep(0.1)
    raise RuntimeError("seed-style server did not start")


def run(args: argparse.Namespace, say: Any) -> dict[str, Any]:
    from operators.events import TransactionEvent, decode_event

    result: dict[str, Any] = {"started": datetime.now(UTC).isoformat(timespec="seconds")}
    with tempfile.TemporaryDirectory(prefix="fraudstream-bench-gw-") as tmp_s:
        tmp = Path(tmp_s)
        with embedded_stack(tmp / "stack") as info:
            result["machine"] = machine_facts(info.env()["DATABASE_URL"])
            history = generate(events=20_000, users=2_000, malformed=0, seed=3)
            models = train_models(history, tmp / "models", args.quick)
            training = [
                e for e in (decode_event(v) for _, v in history.messages) if isinstance(e, TransactionEvent)
            ]
            seed_port = free_port()
            _serve(seed_style_app(training), seed_port)
            settings = isolated_settings(info, "gw", PARTITIONS)
            job = run_job(settings, 1, models, tmp)
            gateway, gw_url = start_gateway(
                settings,
                tmp,
                FRAUDSTREAM__GATEWAY__REQUIRE_AUTH="false",
                FRAUDSTREAM__GATEWAY__SCORE_BUDGET_MS=str(args.budget_ms),
                FRAUDSTREAM__GATEWAY__RATE_PER_S="1000000",
                FRAUDSTREAM__GATEWAY__RATE_BURST="1000000",
            )
            try:
                rows = []
                for rate in args.rates:
                    n = int(rate * args.duration)
                    work = generate(events=n, users=max(50, n // 10), malformed=0, seed=rate)
                    bodies = [v for _, v in work.messages if v is not None]
                    say(f"{rate:,} req/s for {args.duration:g} s: gateway + job")
                    g = asyncio.run(_load(f"{gw_url}/v1/transactions/score", bodies, rate, {}))
                    say(f"{rate:,} req/s: seed-style per-request scorer")
                    s = asyncio.run(_load(f"http://127.0.0.1:{seed_port}/score", bodies, rate, {}))
                    rows.append({"rate": rate, "requests": len(bodies), "gateway": g, "seed_style": s})
                result["rates"] = rows
                result["budget_ms"] = args.budget_ms
            finally:
                stop_process(gateway)
                job.stop()
    return result


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"### Gateway score calls, {r['started']} ({m['cores']} cores, {m['cpu']})",
        "",
        f"Command: `{r['command']}`. Score budget {r['budget_ms']:g} ms; open-loop load from the same "
        "machine. Latency in ms, client side; `stream` = answered with the job's decision, "
        "`fallback` = budget ran out.",
        "",
        "| rate | target | achieved | p50 | p95 | p99 | max | answers | errors | p50 ratio gateway/seed |",
        "|---:|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in r["rates"]:
        g, s = row["gateway"], row["seed_style"]
        for name, d in (("gateway + job", g), ("seed-style in-request", s)):
            ms = d["ms"]
            ratio = f"{g['ms']['p50'] / s['ms']['p50']:.2f}" if name.startswith("gateway") and s["ms"] else ""
            answers = ", ".join(f"{k} {v:,}" for k, v in sorted(d["sources"].items()))
            lines.append(
                f"| {row['rate']:,}/s | {name} | {d['offered_per_s']:,.0f}/s | {ms.get('p50', 0):,.1f} | "
                f"{ms.get('p95', 0):,.1f} | {ms.get('p99', 0):,.1f} | {ms.get('max', 0):,.1f} | {answers} | "
                f"{d['errors']:,} | {ratio} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench gateway", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rates", default="200,1000")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--budget-ms", type=float, default=250.0)
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    args = parser.parse_args(argv)
    if args.quick:
        args.rates, args.duration = "100", 2.0
    args.rates = [int(x) for x in str(args.rates).split(",")]

    def say(msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    result = run(args, say)
    result["command"] = "python -m bench gateway " + " ".join(argv if argv is not None else sys.argv[2:])
    text = markdown(result)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write("\n" + text)
    return result
