"""The real gateway (uvicorn subprocess) in front of the real job on the embedded
stack, called over HTTP."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from apps.gateway.keys import (
    KeyRing,
    KeysFileError,
    RateLimiter,
    append_key,
    hash_key,
    keys_file_text,
    new_key,
)
from flows.config import Settings
from flows.launcher import JobProcess as Job
from flows.launcher import job_env, start_gateway, start_job, stop_process
from infra.topics import ensure_topics
from tests.support import consume, event, new_settings

KEY, OTHER = new_key(), new_key()


# --- pure parts ---------------------------------------------------------------------------------


def test_keys_are_stored_hashed_several_and_revocable(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text(
        yaml.safe_dump(
            {"keys": [{"name": "a", "sha256": hash_key(KEY)}, {"name": "b", "sha256": hash_key(OTHER)}]}
        )
    )
    ring = KeyRing(path)
    assert (ring.name_of(KEY), ring.name_of(OTHER), ring.name_of("nope"), ring.name_of(None)) == (
        "a",
        "b",
        None,
        None,
    )
    assert KEY not in path.read_text()
    time.sleep(0.01)
    path.write_text(yaml.safe_dump({"keys": [{"name": "a", "sha256": hash_key(KEY), "revoked": True}]}))
    os.utime(path, (time.time() + 5, time.time() + 5))
    assert ring.name_of(KEY) is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("- name: pos\n  sha256: " + "ab" * 32 + "\n", "holds a list, expected a mapping `keys:`"),
        ("just words\n", "holds a plain value, expected a mapping"),
        ("keys:\n  name: pos\n", "`keys` holds a mapping"),
        ("keys:\n- name: pos\n", "keys[0] needs a name and a sha256"),
        ("keys:\n- name: pos\n  sha256: nothex\n", "keys[0].sha256 is not a SHA-256"),
        ("keys: [\n", "is not YAML"),
    ],
)
def test_a_malformed_keys_file_is_a_clear_error_naming_the_setting(tmp_path, text, says):
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(KeysFileError) as err:
        KeyRing(path)
    assert str(err.value).startswith(f"gateway.keys_file: {path}") and says in str(err.value)


def test_keys_are_appended_to_a_keys_file_created_when_missing(tmp_path):
    path = tmp_path / "keys.yaml"
    assert append_key(path, "a", KEY) == 1
    assert append_key(path, "b", OTHER) == 2
    ring = KeyRing(path)
    assert (ring.name_of(KEY), ring.name_of(OTHER)) == ("a", "b")
    assert KEY not in path.read_text()
    assert yaml.safe_load(keys_file_text([])) == {"keys": []}


def test_rate_limiter_allows_the_burst_then_the_rate():
    now = [0.0]
    limiter = RateLimiter(rate=10, burst=3, clock=lambda: now[0])
    assert [limiter.acquire("k") for _ in range(3)] == [0, 0, 0]
    assert limiter.acquire("k") == pytest.approx(0.1)
    assert limiter.acquire("other") == 0
    now[0] += 0.1
    assert limiter.acquire("k") == 0


# --- the real thing -----------------------------------------------------------------------------


@dataclass
class Gateway:
    url: str
    settings: Settings
    job: Job | None
    proc: subprocess.Popen[bytes]
    keys_file: Path

    def client(self, key: str | None = KEY) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": key} if key else {}, timeout=10)


def _start_gateway(
    settings: Settings, tmp: Path, keys_file: Path, **env: str
) -> tuple[subprocess.Popen[bytes], str]:
    return start_gateway(settings, tmp, FRAUDSTREAM__GATEWAY__KEYS_FILE=str(keys_file), **env)


@pytest.fixture(scope="module")
def gw(stack, tmp_path_factory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("gateway")
    settings = new_settings(stack, "gateway")
    keys_file = tmp / "keys.yaml"
    keys_file.write_text(
        yaml.safe_dump(
            {
                "keys": [
                    {"name": "main", "sha256": hash_key(KEY)},
                    {"name": "other", "sha256": hash_key(OTHER)},
                ]
            }
        )
    )
    job = start_job(settings, 1, tmp)
    proc, url = _start_gateway(settings, tmp, keys_file, FRAUDSTREAM__GATEWAY__SCORE_BUDGET_MS="3000")
    try:
        yield Gateway(url, settings, job, proc, keys_file)
    finally:
        stop_process(proc)
        job.stop()


def _ev(**changes: Any) -> dict[str, Any]:
    return event(
        f"gw-{uuid.uuid4().hex[:10]}", changes.pop("user_id", f"gu-{uuid.uuid4().hex[:6]}"), **changes
    )


pytestmark = pytest.mark.integration


def test_ingestion_lands_on_the_transactions_topic_keyed_by_user(gw):
    batch = [_ev() for _ in range(3)]
    with gw.client() as c:
        r = c.post("/v1/transactions", json=batch)
        one = c.post("/v1/transactions", json=_ev())
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 3, "event_ids": [e["event_id"] for e in batch]}
    assert one.status_code == 202 and one.json()["accepted"] == 1
    k = gw.settings.kafka
    wanted = {e["event_id"]: e["user_id"] for e in batch}
    got = [(key, v) for key, v in consume(k.bootstrap_servers, k.transactions_topic, k.partitions, 10**6, 5)]
    seen = {v["event_id"]: key for key, v in got if v["event_id"] in wanted}
    assert seen == {eid: uid.encode() for eid, uid in wanted.items()}


def test_score_call_returns_the_jobs_own_decision(gw):
    ev = _ev(location={"latitude": 39.0, "longitude": 125.7, "country": "KP"})
    with gw.client() as c:
        r = c.post("/v1/transactions/score", json=ev)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == "stream" and body["transaction_id"] == ev["event_id"]
    with psycopg.connect(gw.settings.database_url) as conn:
        row = conn.execute(
            "SELECT fraud_score, risk_level, decision, is_blocked, triggered_rules, model_version"
            " FROM scored_events WHERE event_id = %s",
            (ev["event_id"],),
        ).fetchone()
    assert row is not None
    assert (body["fraud_score"], body["risk_level"], body["decision"], body["is_blocked"]) == pytest.approx(
        row[:4]
    )
    assert body["triggered_rules"] == row[4] and "country_blacklist" in row[4]
    assert body["model_version"] == row[5] and body["explanation"] and body["processing_time_ms"] > 0
    # ...and the user's latest risk is readable from Redis through the gateway.
    with gw.client() as c:
        risk = c.get(f"/v1/users/{ev['user_id']}/risk")
        missing = c.get("/v1/users/nobody-here/risk")
    assert risk.status_code == 200 and risk.json()["risk_level"] == row[1]
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"event_id": "x", "user_id": "u", "timestamp": "2025-06-02T10:00:00Z"}, "amount"),
        ({"event_id": "x", "user_id": "u", "amount": -3, "timestamp": "2025-06-02T10:00:00Z"}, "amount"),
        ({"event_id": "x", "user_id": "u", "amount": 3, "timestamp": "2025-06-02T10:00:00"}, "timestamp"),
        (
            [
                {"event_id": "ok", "user_id": "u", "amount": 3, "timestamp": "2025-06-02T10:00:00Z"},
                {"amount": 1},
            ],
            None,
        ),
    ],
)
def test_bad_input_gets_422_with_the_field_and_the_reason_and_nothing_is_produced(gw, payload, field):
    with gw.client() as c:
        r = c.post("/v1/transactions", json=payload)
        s = c.post("/v1/transactions/score", content=b"{not json")
    assert r.status_code == 422, r.text
    (problem,) = r.json()["detail"]
    assert problem["reason"]
    if field:
        assert problem["field"] == field
    else:
        assert problem["index"] == 1
    assert s.status_code == 422 and s.json()["detail"][0]["field"] == "payload"


def test_auth_size_limit_and_rate_limit(gw, tmp_path):
    ev = _ev()
    with gw.client(None) as anon, gw.client("fsk_wrong") as wrong:
        assert anon.post("/v1/transactions", json=ev).status_code == 401
        assert wrong.post("/v1/transactions", json=ev).status_code == 401
    with gw.client() as c:
        big = c.post(
            "/v1/transactions",
            content=b"[" + b" " * 1_100_000 + b"]",
            headers={"content-type": "application/json"},
        )
    assert big.status_code == 413
    # 'other' is revoked by editing the file: the running gateway stops accepting it.
    with gw.client(OTHER) as c:
        assert c.post("/v1/transactions", json=_ev()).status_code == 202
        gw.keys_file.write_text(
            yaml.safe_dump(
                {
                    "keys": [
                        {"name": "main", "sha256": hash_key(KEY)},
                        {"name": "other", "sha256": hash_key(OTHER), "revoked": True},
                    ]
                }
            )
        )
        later = time.time() + 2
        os.utime(gw.keys_file, (later, later))
        assert c.post("/v1/transactions", json=_ev()).status_code == 401


def test_rate_limit_per_key_counts_events_and_answers_429_with_retry_after(gw, tmp_path):
    third = new_key()
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(
        yaml.safe_dump(
            {
                "keys": [
                    {"name": "main", "sha256": hash_key(KEY)},
                    {"name": "third", "sha256": hash_key(third)},
                ]
            }
        )
    )
    proc, url = _start_gateway(
        gw.settings,
        tmp_path,
        keys_file,
        FRAUDSTREAM__GATEWAY__RATE_PER_S="1",
        FRAUDSTREAM__GATEWAY__RATE_BURST="3",
        FRAUDSTREAM__GATEWAY__MAX_BATCH="3",
    )
    try:
        with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=10) as c:
            codes = [c.post("/v1/transactions", json=_ev()).status_code for _ in range(5)]
            last = c.post("/v1/transactions", json=_ev())
        with httpx.Client(base_url=url, headers={"X-API-Key": third}, timeout=10) as c:
            batch = c.post("/v1/transactions", json=[_ev() for _ in range(3)])
            after_batch = c.post("/v1/transactions", json=_ev())
    finally:
        stop_process(proc)
    assert codes[:3] == [202, 202, 202] and 429 in codes[3:]
    assert last.status_code == 429 and float(last.headers["retry-after"]) > 0
    # a batch of three spends three events of the burst, not one request
    assert batch.status_code == 202 and after_batch.status_code == 429, after_batch.text


def test_a_one_event_batch_is_a_batch_and_deep_nesting_is_a_422(gw):
    ev = _ev()
    deep = b'{"event_id":"d","user_id":"u","amount":1,"timestamp":"2025-06-02T10:00:00Z","x":' + (
        b"[" * 5000 + b"]" * 5000 + b"}"
    )
    with gw.client() as c:
        one = c.post("/v1/transactions", json=[ev])
        nested = [
            c.post(path, content=deep, headers={"content-type": "application/json"})
            for path in ("/v1/transactions", "/v1/transactions/score")
        ]
    assert one.status_code == 202 and one.json() == {"accepted": 1, "event_ids": [ev["event_id"]]}, one.text
    for r in nested:
        assert r.status_code == 422 and "nested too deeply" in r.json()["detail"][0]["reason"], r.text


def test_concurrent_score_calls_with_one_event_id_never_get_each_others_answer(gw):
    """Same id, different payloads, at once: one gets its own decision, the other a 409."""
    import concurrent.futures

    small = _ev(amount=10.0)
    big = {**small, "amount": 5000.0, "location": {"latitude": 39.0, "longitude": 125.7, "country": "KP"}}
    with gw.client() as c, concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda body: c.post("/v1/transactions/score", json=body), [small, big]))
    codes = sorted(r.status_code for r in answers)
    assert codes == [200, 409], [r.text for r in answers]
    (won,) = [(body, r.json()) for body, r in zip([small, big], answers, strict=True) if r.status_code == 200]
    with psycopg.connect(gw.settings.database_url) as conn:
        row = conn.execute(
            "SELECT amount, risk_level FROM scored_events WHERE event_id = %s", (small["event_id"],)
        ).fetchone()
    # the answer describes the payload of the request that got it, and the system of record agrees
    assert row is not None and float(row[0]) == won[0]["amount"] and row[1] == won[1]["risk_level"]


def test_fallback_when_no_job_answers_and_the_event_is_not_lost(stack, tmp_path, gw):
    settings = new_settings(stack, "gw-nojob")  # nobody scores this topic
    k = settings.kafka
    ensure_topics(k.bootstrap_servers, {k.transactions_topic: k.partitions, k.decisions_topic: k.partitions})
    proc, url = _start_gateway(settings, tmp_path, gw.keys_file, FRAUDSTREAM__GATEWAY__SCORE_BUDGET_MS="200")
    try:
        ev = _ev(
            timestamp="2025-06-02T02:30:00Z", location={"latitude": 39.0, "longitude": 125.7, "country": "KP"}
        )
        began = time.perf_counter()
        with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=10) as c:
            r = c.post("/v1/transactions/score", json=ev)
            metrics = c.get("/metrics").text
        elapsed = time.perf_counter() - began
    finally:
        stop_process(proc)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == "fallback" and body["fallback_reason"] == "timeout"
    assert {"country_blacklist", "unusual_hours"} <= set(body["triggered_rules"])
    assert body["decision"] in {"review", "block"} and body["model_version"] == "fallback-rules"
    assert 0.2 <= elapsed < 2.0
    assert 'fraudstream_gateway_fallbacks_total{reason="timeout"} 1.0' in metrics
    got = consume(k.bootstrap_servers, k.transactions_topic, k.partitions, 1, 10)
    assert [v["event_id"] for _, v in got] == [ev["event_id"]]


def test_config_errors_stop_the_gateway_naming_the_field(gw, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "apps.cli", "gateway"],
        env={**job_env(gw.settings, 0), "FRAUDSTREAM__GATEWAY__KEYS_FILE": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "gateway.keys_file" in result.stdout + result.stderr


def test_the_public_example_key_is_refused_outside_a_demo(gw):
    example = Path(__file__).resolve().parents[2] / "infra" / "gateway-keys.example.yaml"
    env = {**job_env(gw.settings, 0), "FRAUDSTREAM__GATEWAY__KEYS_FILE": str(example)}
    result = subprocess.run(
        [sys.executable, "-m", "apps.cli", "gateway"], env=env, capture_output=True, text=True, timeout=60
    )
    out = result.stdout + result.stderr
    assert result.returncode == 2 and "public example key" in out and "Traceback" not in out


@pytest.mark.skipif(shutil.which("schemathesis") is None, reason="schemathesis is in the test extra")
def test_schemathesis_finds_no_server_errors(gw, tmp_path):
    """Its own gateway, on the same job, with a short budget: a call the job gives no
    decision (the coverage phase repeats event ids) waits out the budget, and at the
    module's 2 s that was 2 of this test's 2.7 minutes."""
    proc, url = _start_gateway(
        gw.settings,
        tmp_path,
        gw.keys_file,
        FRAUDSTREAM__GATEWAY__SCORE_BUDGET_MS="250",
        FRAUDSTREAM__GATEWAY__MAX_BUDGET_MS="250",
    )
    try:
        result = _schemathesis(url, tmp_path)
    finally:
        stop_process(proc)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "Tested: 3" in result.stdout and " passed" in result.stdout and "failed" not in result.stdout


def _schemathesis(url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "schemathesis",
            "run",
            f"{url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--header",
            f"X-API-Key: {KEY}",
            "--max-examples",
            "30",
            "--phases",
            "examples,coverage,fuzzing",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1"},
    )


def test_the_router_answers_a_waiter_only_with_its_own_requests_decision(stack):
    """A decision made on another request's payload (another replica, a plain ingestion)
    resolves the waiter as a conflict, never as its answer."""
    import asyncio
    import json

    from confluent_kafka import Producer

    from apps.gateway import CONFLICT, DecisionRouter

    settings = new_settings(stack, "gw-router")
    k = settings.kafka
    ensure_topics(k.bootstrap_servers, {k.decisions_topic: 1})
    router = DecisionRouter(k.bootstrap_servers, k.decisions_topic, {})
    router.start()
    producer = Producer({"bootstrap.servers": k.bootstrap_servers})

    async def wait_for(event_id: str, echoed: str | None) -> dict:
        expected = router.expect(event_id)
        assert expected is not None
        token, fut = expected
        assert router.expect(event_id) is None  # a second caller here would get 409
        record = {"event_id": event_id, "risk_level": "LOW"}
        if echoed is not None:
            record["request_id"] = token if echoed == "own" else echoed
        producer.produce(k.decisions_topic, json.dumps(record).encode(), event_id.encode())
        producer.flush(10)
        try:
            return await asyncio.wait_for(fut, 10)
        finally:
            router.forget(event_id, token)

    try:
        own = asyncio.run(wait_for("r-1", "own"))
        other = asyncio.run(wait_for("r-2", "someone-else"))
        untagged = asyncio.run(wait_for("r-3", None))
    finally:
        router.close()
    assert own["risk_level"] == "LOW" and CONFLICT not in own
    assert CONFLICT in other and CONFLICT in untagged


def test_the_explanation_names_the_models_that_scored_high_and_never_calls_them_normal():
    from apps.gateway.answers import _explanation

    scores = {"rules": 0.0, "isolation_forest": 24.9, "autoencoder": 100.0, "supervised": None}
    text = _explanation([], scores, 40.0)
    assert "autoencoder 100" in text and "isolation forest" not in text and "normal" not in text
    assert _explanation([], {**scores, "autoencoder": 39.9}, 40.0) == (
        "no rule fired and no model score reached the review threshold (40 of 100)"
    )
    with_rule = _explanation(["device 'd9' is blocked"], scores, 40.0)
    assert with_rule.startswith("device 'd9' is blocked; ") and "autoencoder 100" in with_rule
