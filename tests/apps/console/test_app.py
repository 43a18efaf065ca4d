"""The console's API against the real stack: alerts from the real job become cases;
resolutions become labels on the labels topic that the job stores; lists reach the
job through Redis; every write is an audit row."""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import psycopg
import pytest
import redis

from apps.console.kafka import AlertIngest, LabelPublisher
from operators.redis_keys import LIST_KEYS
from tests.apps.console.conftest import Console, serve
from tests.support import consume

pytestmark = pytest.mark.integration


def tag() -> str:
    return uuid.uuid4().hex[:8]


def test_alerts_become_cases_highest_priority_first(console: Console):
    t = tag()
    console.produce([*console.medium_pair(t), console.high(t)])
    high, medium = console.wait_case(f"kp-{t}"), console.wait_case(f"ny-{t}")
    assert (high["risk_level"], high["status"], medium["risk_level"]) == ("HIGH", "open", "MEDIUM")
    assert high["priority"] > medium["priority"]
    with console.client() as http:
        queue = [c["event_id"] for c in http.get("/api/cases", params={"limit": 500}).json()]
        highs = http.get("/api/cases", params={"level": "HIGH", "limit": 500}).json()
    assert queue.index(f"kp-{t}") < queue.index(f"ny-{t}")
    assert f"tk-{t}" not in queue  # LOW: no case
    assert {c["risk_level"] for c in highs} == {"HIGH"}
    # The SLA per level: due = decided + 60 min (HIGH), 480 min (MEDIUM).
    for case, minutes in ((high, 60), (medium, 480)):
        decided, due = (
            time.mktime(time.strptime(case[k][:19], "%Y-%m-%dT%H:%M:%S")) for k in ("decided_at", "due_at")
        )
        assert due - decided == minutes * 60


def test_a_case_holds_what_an_analyst_needs(console: Console):
    t = tag()
    console.produce([*console.medium_pair(t)])
    case = console.wait_case(f"ny-{t}")
    assert case["alert"]["triggered_rules"] == ["impossible_travel", "unusual_hours"]
    assert any("km" in r for r in case["alert"]["reasons"])
    assert case["features"]["distance_km"] > 10_000
    assert {"user_events_7d", "user_frauds_7d", "user_fraud_share_7d"} <= set(case["risk_windows"])
    assert [e["event_id"] for e in case["recent_events"]] == [f"ny-{t}", f"tk-{t}"]
    assert [(h["actor"], h["action"]) for h in case["history"]] == [("system", "opened")]
    assert case["explanation"] is None and case["labels"] == []


def test_restarted_ingest_catches_up_and_adds_nothing_twice(console: Console):
    t = tag()
    console.produce([console.high(t)])
    console.wait_case(f"kp-{t}")
    with psycopg.connect(console.settings.database_url) as conn:
        before = conn.execute("SELECT count(*) FROM cases").fetchone()[0]
    k = console.settings.kafka
    again = AlertIngest(
        k.bootstrap_servers, k.alerts_topic, f"fresh-{t}", {}, console.store, {"HIGH": 60, "MEDIUM": 480}
    )
    again.consumer.subscribe([k.alerts_topic])
    seen, deadline = 0, time.monotonic() + 30
    try:
        while time.monotonic() < deadline and seen < before:
            again.poll_once(1.0)
            with psycopg.connect(console.settings.database_url) as conn:
                seen = conn.execute("SELECT count(*) FROM cases").fetchone()[0]
            time.sleep(0.1)
    finally:
        again.consumer.close()
    with psycopg.connect(console.settings.database_url) as conn:
        after, opened = conn.execute(
            "SELECT count(*), (SELECT count(*) FROM case_events WHERE action = 'opened') FROM cases"
        ).fetchone()
    assert after == before == opened


def test_sign_in_roles_and_revoked_tokens(console: Console):
    with console.client(None) as anon:
        assert anon.get("/api/cases").status_code == 401
        assert anon.get("/api/cases", headers={"Authorization": "Bearer fsc_nope"}).status_code == 401
        assert (
            anon.get("/api/me", headers={"Authorization": f"Bearer {console.tokens['gone']}"}).status_code
            == 401
        )
        signed = anon.post("/api/session", json={"token": console.tokens["ana"]})
        assert signed.status_code == 200 and "httponly" in signed.headers["set-cookie"].lower()
        assert "samesite=strict" in signed.headers["set-cookie"].lower()
        assert anon.get("/api/me").json() == {"name": "ana", "role": "analyst"}  # the cookie
        anon.delete("/api/session")
        anon.cookies.clear()
        assert anon.get("/api/me").status_code == 401
    t = tag()
    console.produce([console.high(t)])
    console.wait_case(f"kp-{t}")
    with console.client("ana") as ana, console.client("root") as root:
        assert ana.post(f"/api/cases/kp-{t}/assign", json={"assignee": "bob"}).status_code == 403
        assert ana.get("/api/analysts").status_code == 403
        assert ana.post("/api/lists/countries", json={"value": "RU", "reason": "x"}).status_code == 403
        assert root.post(f"/api/cases/kp-{t}/assign", json={"assignee": "bob"}).json()["status"] == "assigned"
        taken = ana.post(f"/api/cases/kp-{t}/assign", json={"assignee": "ana"})
        assert taken.status_code == 403 and taken.json()["detail"].startswith("the case is bob's")
        assert ana.post(f"/api/cases/kp-{t}/assign", json={"assignee": None}).status_code == 403
        assert root.post(f"/api/cases/kp-{t}/assign", json={"assignee": None}).json()["status"] == "open"
        assert ana.post(f"/api/cases/kp-{t}/assign", json={"assignee": "ana"}).json()["assignee"] == "ana"
        assert ana.post(f"/api/cases/kp-{t}/assign", json={"assignee": None}).json()["status"] == "open"
        assert [a["name"] for a in root.get("/api/analysts").json()] == ["ana", "gone", "root"]


def test_resolving_publishes_a_label_the_job_stores_and_audits_it(console: Console):
    t = tag()
    console.produce([console.high(t)])
    console.wait_case(f"kp-{t}")
    with console.client() as http:
        assert http.post(f"/api/cases/kp-{t}/assign", json={"assignee": "ana"}).status_code == 200
        out = http.post(
            f"/api/cases/kp-{t}/resolve", json={"disposition": "fraud", "reason": "card reported stolen"}
        )
        assert out.status_code == 200, out.text
        assert out.json()["status"] == "closed"
        again = http.post(f"/api/cases/kp-{t}/resolve", json={"disposition": "legitimate"})
        assert again.status_code == 409 and again.json()["detail"] == "a closed case cannot be resolved"
        assert http.post("/api/cases/nope/resolve", json={"disposition": "fraud"}).status_code == 404
        assert http.post(f"/api/cases/kp-{t}/resolve", json={"disposition": "maybe"}).status_code == 422
        case = http.get(f"/api/cases/kp-{t}").json()
        audit = http.get("/api/audit", params={"subject": f"case/kp-{t}"}).json()
    k = console.settings.kafka
    labels = [
        v
        for key, v in consume(k.bootstrap_servers, k.labels_topic, k.partitions, 1_000, timeout_s=5)
        if key == f"kp-{t}".encode()
    ]
    assert len(labels) == 1
    assert labels[0]["is_fraud"] is True and labels[0]["source"] == "analyst"
    assert labels[0]["label_time"][:19] == case["resolved_at"][:19]
    assert console.wait_label(f"kp-{t}") == [(True, "analyst")]  # the job consumed it into the labels table
    assert (case["status"], case["disposition"], case["resolved_by"], case["resolution"]) == (
        "closed",
        "fraud",
        "ana",
        "card reported stolen",
    )
    assert [h["action"] for h in case["history"]] == ["opened", "assign", "resolve"]
    assert [(a["actor"], a["action"]) for a in audit] == [("ana", "case.resolve"), ("ana", "case.assign")]
    assert audit[0]["before"] == {"status": "assigned", "assignee": "ana"}
    assert audit[0]["after"]["disposition"] == "fraud"


def test_a_label_the_broker_does_not_confirm_changes_nothing(console: Console):
    t = tag()
    console.produce([console.high(t)])
    console.wait_case(f"kp-{t}")
    dead = LabelPublisher(
        "127.0.0.1:9", "labels", {"message.timeout.ms": 1000, "log_level": 0}, timeout_s=2.0
    )
    server, url = serve(console.settings, console.store, dead, f"dead-{t}")
    try:
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {console.tokens['ana']}"}, timeout=15
        ) as http:
            out = http.post(f"/api/cases/kp-{t}/resolve", json={"disposition": "fraud"})
            assert out.status_code == 503 and "the case is unchanged" in out.json()["detail"]
            case = http.get(f"/api/cases/kp-{t}").json()
            assert case["status"] == "open" and [h["action"] for h in case["history"]] == ["opened"]
            assert http.get("/api/audit", params={"subject": f"case/kp-{t}"}).json() == []
    finally:
        server.should_exit = True


def test_lists_reach_the_job_with_who_and_why(console: Console):
    t = tag()
    client = redis.Redis.from_url(console.settings.redis_url, decode_responses=True)
    with console.client("ana") as http:
        added = http.post("/api/lists/users", json={"value": f"user-{t}", "reason": "account takeover"})
        assert added.status_code == 201
        assert (
            http.post(
                "/api/lists/allowed_users", json={"value": f"user-{t}", "reason": "VIP, verified"}
            ).status_code
            == 201
        )
        assert http.post("/api/lists/devices", json={"value": "x\u0000y", "reason": "r"}).status_code == 422
        assert http.post("/api/lists/nope", json={"value": "x", "reason": "r"}).status_code == 404
        assert http.post("/api/lists/users", json={"value": "x", "reason": ""}).status_code == 422
        users = {e["value"]: e for e in http.get("/api/lists/users").json()}
    assert f"user-{t}" in client.smembers(LIST_KEYS["users"])
    assert users[f"user-{t}"]["added_by"] == "ana" and users[f"user-{t}"]["reason"] == "account takeover"
    client.sadd(LIST_KEYS["devices"], f"raw-{t}")
    with console.client("root") as root:
        assert (
            root.post("/api/lists/countries", json={"value": "ru", "reason": "sanctions"}).json()["value"]
            == "RU"
        )
        devices = {e["value"]: e for e in root.get("/api/lists").json()["devices"]}
        assert devices[f"raw-{t}"]["added_by"] is None  # added to Redis directly: shown, without a who
        time.sleep(0.6)  # > the job's blocklist refresh
        # Blocked and allowed: the allow list wins, in the real job.
        console.produce([console.high(f"{t}")])
        with psycopg.connect(console.settings.database_url, autocommit=True) as conn:
            deadline, row = time.monotonic() + 60, None
            while time.monotonic() < deadline and row is None:
                row = conn.execute(
                    "SELECT risk_level, decision, triggered_rules FROM scored_events WHERE event_id = %s",
                    (f"kp-{t}",),
                ).fetchone()
                time.sleep(0.2)
        assert row is not None and row[:2] == ("LOW", "approve") and row[2][-1] == "allow_list"
        assert "user_blacklist" in row[2] and "country_blacklist" in row[2]
        assert root.delete(f"/api/lists/users/user-{t}").status_code == 200
        assert root.delete(f"/api/lists/users/user-{t}").status_code == 404
        assert root.delete("/api/lists/countries/RU").status_code == 200
        audit = root.get("/api/audit", params={"subject": f"list/users/user-{t}"}).json()
    assert f"user-{t}" not in client.smembers(LIST_KEYS["users"])
    assert [(a["actor"], a["action"]) for a in audit] == [("root", "list.remove"), ("ana", "list.add")]
    assert audit[0]["before"] == {"added_by": "ana", "reason": "account takeover"}
    client.srem(LIST_KEYS["allowed_users"], f"user-{t}")
    client.srem(LIST_KEYS["devices"], f"raw-{t}")


def test_transaction_search_by_user_and_time(console: Console):
    t = tag()
    console.produce(console.medium_pair(t))
    console.wait_case(f"ny-{t}")
    with console.client() as http:
        both = http.get("/api/events", params={"user_id": f"user-{t}"}).json()
        late = http.get(
            "/api/events",
            params={"user_id": f"user-{t}", "from": "2025-06-01T17:45:00Z", "to": "2025-06-01T19:00:00Z"},
        ).json()
        naive = http.get("/api/events", params={"from": "2025-06-01T17:45:00"})
    assert [e["event_id"] for e in both] == [f"ny-{t}", f"tk-{t}"]
    assert [e["case_status"] for e in both] == ["open", None]
    assert [e["event_id"] for e in late] == [f"ny-{t}"]  # 03:00+09:00 = 18:00Z the day before
    assert naive.status_code == 422 and "UTC offset" in naive.json()["detail"]


def test_the_stream_announces_new_and_changed_cases(console: Console):
    t = tag()
    got: list[dict] = []

    def listen() -> None:
        with console.client() as http, http.stream("GET", "/api/stream", timeout=30) as answer:
            assert answer.headers["content-type"].startswith("text/event-stream")
            for line in answer.iter_lines():
                if line.startswith("data: "):
                    got.append(json.loads(line[6:]))
                    if any(g.get("event_id") == f"kp-{t}" and g["status"] == "assigned" for g in got):
                        return

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    time.sleep(0.5)
    console.produce([console.high(t)])
    console.wait_case(f"kp-{t}")
    with console.client() as http:
        http.post(f"/api/cases/kp-{t}/assign", json={"assignee": "ana"})
    reader.join(20)
    mine = [(g["change"], g["status"]) for g in got if g.get("event_id") == f"kp-{t}"]
    assert mine == [("insert", "open"), ("update", "assigned")]


def test_metrics_count_the_queue_and_resolutions(console: Console):
    t = tag()
    console.produce([console.high(t)])
    console.wait_case(f"kp-{t}")
    with console.client() as http:
        http.post(f"/api/cases/kp-{t}/resolve", json={"disposition": "legitimate"})
        text = http.get("/metrics").text
    with psycopg.connect(console.settings.database_url) as conn:
        open_high = conn.execute(
            "SELECT count(*) FROM cases WHERE status <> 'closed' AND risk_level = 'HIGH'"
        ).fetchone()[0]
    assert f'fraudstream_console_open_cases{{level="HIGH"}} {float(open_high)}' in text
    assert 'fraudstream_console_resolutions_total{disposition="legitimate"}' in text
    assert "fraudstream_console_oldest_open_case_age_seconds" in text
    assert 'fraudstream_console_overdue_cases{level="HIGH"} 0.0' in text  # due in 60 min
    assert "fraudstream_console_cases_ingested_total" in text
