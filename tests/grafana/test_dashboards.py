"""Grafana dashboards: generated from infra/dashboards.py, linted, and every panel
query run against a real Prometheus scraping the real job (and the real
Postgres schema with data in it). Grafana itself cannot run here."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from flows.config import Settings
from infra import dashboards
from infra.stack import free_port
from operators import metrics as job_metrics
from tests.support import new_settings

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
PROM_DIR = ROOT / "infra" / "prometheus"

COUNTER_SUFFIXES = ("_total", "_bucket", "_sum", "_count")
RATE_FUNCTIONS = {"rate", "irate", "increase"}
PER_ENTITY_LABELS = {"user_id", "event_id", "device_id", "ip_address", "card", "merchant_name"}
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "$instance": ".*"}


def _dashboards() -> dict[str, dict[str, Any]]:
    return {f.stem: json.loads(f.read_text()) for f in sorted((GRAFANA / "dashboards").glob("*.json"))}


def _panels() -> list[tuple[str, dict[str, Any]]]:
    return [(name, p) for name, d in _dashboards().items() for p in d["panels"]]


def _prom_queries() -> list[tuple[str, str, str]]:
    return [
        (name, f"{p['title']} [{t['refId']}]", t["expr"])
        for name, p in _panels()
        for t in p["targets"]
        if t["datasource"]["type"] == "prometheus"
    ]


def _sql_queries() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (name, f"{p['title']} [{t['refId']}]", t)
        for name, p in _panels()
        for t in p["targets"]
        if t["datasource"]["type"] == "grafana-postgresql-datasource"
    ]


# --- static -----------------------------------------------------------------------------------


def test_committed_dashboards_are_what_the_code_generates():
    committed = {f.stem: f.read_text() for f in (GRAFANA / "dashboards").glob("*.json")}
    generated = {name: dashboards.render(d) for name, d in dashboards.DASHBOARDS.items()}
    assert committed == generated, "run: python -m infra.dashboards"


def test_the_four_dashboards_exist_with_unique_uids():
    ds = _dashboards()
    assert set(ds) == {"overview", "rules-models", "pipeline-health", "fraud-operations"}
    assert len({d["uid"] for d in ds.values()}) == 4


def test_panels_use_provisioned_datasources_and_have_units_descriptions_and_thresholds():
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "fraudstream.yml").read_text())
    uids = {d["uid"]: d["type"] for d in provisioned["datasources"]}
    for name, p in _panels():
        where = f"{name}: {p['title']}"
        for ref in [p["datasource"], *(t["datasource"] for t in p["targets"])]:
            assert uids.get(ref["uid"]) == ref["type"], f"{where}: datasource {ref} is not provisioned"
        defaults = p["fieldConfig"]["defaults"]
        assert defaults["unit"], f"{where}: no unit"
        assert len(p["description"]) > 20, f"{where}: no description"
        assert defaults["thresholds"]["steps"][0]["value"] is None, f"{where}: thresholds need a base step"
        assert p["targets"], f"{where}: no query"
        assert p["gridPos"]["x"] >= 0 and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24


def test_dashboard_provider_path_is_where_compose_mounts_the_dashboards():
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "fraudstream.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert f"./grafana/dashboards:{path}:ro" in compose["services"]["grafana"]["volumes"]


def _unwrapped_counters(expr: str) -> list[str]:
    """Raw counter series (not recording rules) not directly inside rate/irate/increase."""
    bad = []
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        name = m.group()
        if ":" in name or not name.endswith(COUNTER_SUFFIXES) or expr[m.end() : m.end() + 1] == "(":
            continue
        depth, i = 0, m.start() - 1
        while i >= 0:
            if expr[i] == ")":
                depth += 1
            elif expr[i] == "(":
                if depth == 0:
                    break
                depth -= 1
            i -= 1
        func = re.search(r"([a-z_]+)\s*$", expr[: max(i, 0)])
        if i < 0 or func is None or func.group(1) not in RATE_FUNCTIONS:
            bad.append(name)
    return bad


def test_the_counter_lint_catches_a_bare_counter():
    assert _unwrapped_counters("sum(fraudstream_events_total)") == ["fraudstream_events_total"]
    assert _unwrapped_counters('sum by (x) (rate(fraudstream_events_total{a="b"}[5m]))') == []


@pytest.mark.parametrize(("dashboard", "panel", "expr"), _prom_queries())
def test_prometheus_queries_rate_counters_and_carry_no_per_entity_labels(dashboard, panel, expr):
    assert _unwrapped_counters(expr) == [], f"{dashboard}/{panel}: wrap counters in rate()/increase()"
    labels = set(re.findall(r"\b([a-z_]+)\s*(?:=~|!=|!~|=)", expr)) | set(
        w for grp in re.findall(r"\bby\s*\(([^)]*)\)", expr) for w in re.split(r"\s*,\s*", grp)
    )
    assert not labels & PER_ENTITY_LABELS


def _known_series() -> set[str]:
    names = set()
    for collector in vars(job_metrics).values():
        name = getattr(collector, "_name", None)
        kind = getattr(collector, "_type", None)
        if isinstance(name, str) and kind:
            names |= {name, f"{name}_total", f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    for group in yaml.safe_load((PROM_DIR / "rules" / "recording.yml").read_text())["groups"]:
        names |= {r["record"] for r in group["rules"]}
    return names | {
        "up",
        "bytewax_kafka_consumer_lag",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    }


def test_every_series_a_panel_reads_exists_in_the_job_or_the_recording_rules():
    known = _known_series()
    keywords = {"sum", "by", "rate", "increase", "max", "count", "histogram_quantile", "sort_desc", "le"}
    for dashboard, panel, expr in _prom_queries():
        stripped = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"|\bby\s*\([^)]*\)", "", expr)
        for name in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", stripped):
            if name not in keywords:
                assert name in known, f"{dashboard}/{panel}: unknown series {name}"


# --- live: a real Prometheus scraping the real job ------------------------------------------

requires_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="prometheus missing: install the Debian package prometheus (.ci/run does)",
)


@dataclass
class Live:
    prometheus: str
    settings: Settings

    def query(self, expr: str) -> dict[str, Any]:
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        return json.load(urllib.request.urlopen(url, timeout=10))

    def api(self, path: str) -> Any:
        return json.load(urllib.request.urlopen(f"{self.prometheus}{path}", timeout=10))["data"]


def _finite(result: dict[str, Any]) -> bool:
    data = result["data"]
    if data["resultType"] == "scalar":
        return math.isfinite(float(data["result"][1]))
    return any(math.isfinite(float(s["value"][1])) for s in data["result"])


def _prometheus_config(tmp: Path, job_ports: list[int], explainer_port: int) -> Path:
    """The repository's config and rules with loopback targets and 1 s intervals."""
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    targets = {"fraudstream": job_ports, "fraudstream-explainer": [explainer_port]}
    config["scrape_configs"] = [s for s in config["scrape_configs"] if s["job_name"] in targets]
    for scrape in config["scrape_configs"]:
        scrape["static_configs"] = [{"targets": [f"127.0.0.1:{p}" for p in targets[scrape["job_name"]]]}]
    rule_files = []
    for name in config["rule_files"]:
        rules = yaml.safe_load((PROM_DIR / name).read_text())
        for group in rules["groups"]:
            group["interval"] = "1s"
        out = tmp / Path(name).name
        out.write_text(yaml.safe_dump(rules))
        rule_files.append(str(out))
    config["rule_files"] = rule_files
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _wait(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def live(stack, tmp_path_factory) -> Iterator[Live]:
    from apps.produce import produce_all
    from apps.replay.workload import generate
    from flows.launcher import start_job
    from infra.topics import ensure_topics
    from models.training import TrainingConfig, train
    from operators.events import TransactionEvent, decode_event
    from tests.fake_anthropic import FakeAnthropic

    tmp = tmp_path_factory.mktemp("dashboards")
    settings = new_settings(stack, "dashboards")
    k = settings.kafka
    history = generate(events=3000, users=300, malformed=0, seed=3)
    events = [e for e in (decode_event(v) for _, v in history.messages) if isinstance(e, TransactionEvent)]
    train(events, tmp / "models", TrainingConfig(epochs=2, n_estimators=20, device="cpu"), activate=True)

    start = datetime.now(UTC) - timedelta(days=15)  # all in the past: no future-skew dead letters
    first = generate(events=4000, users=300, fraud_share=0.25, malformed=20, seed=11, start=start)
    later = generate(events=12000, users=300, fraud_share=0.25, malformed=60, seed=12, start=start)
    ensure_topics(k.bootstrap_servers, {t: k.partitions for t in (k.transactions_topic, k.alerts_topic)})
    produce_all(k.bootstrap_servers, k.transactions_topic, first.messages)
    job = start_job(settings, 2, tmp, FRAUDSTREAM_MODEL_DIR=str(tmp / "models"))
    api = FakeAnthropic()
    explainer_port = free_port()
    explainer_log = open(tmp / "explainer.log", "wb")  # noqa: SIM115
    explainer = subprocess.Popen(
        [sys.executable, "-m", "apps.cli", "explain"],
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": k.bootstrap_servers,
            "DATABASE_URL": settings.database_url,
            "METRICS_PORT": str(explainer_port),
            "FRAUDSTREAM__KAFKA__ALERTS_TOPIC": k.alerts_topic,
            "FRAUDSTREAM__EXPLAINER__OUTPUT_TOPIC": f"explained-{k.alerts_topic}",
            "ANTHROPIC_API_KEY": "sk-test",
            "ANTHROPIC_BASE_URL": api.url,
        },
        stdout=explainer_log,
        stderr=subprocess.STDOUT,
    )
    prometheus_log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115
    prom_port = free_port()
    config = _prometheus_config(tmp, [job.metrics_port, job.metrics_port + 1], explainer_port)
    prometheus = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=prometheus_log,
    )
    stop = threading.Event()

    def trickle() -> None:  # keep the job live while the queries run
        msgs = later.messages
        for i in range(0, len(msgs), 40):
            if stop.wait(0.2):
                return
            produce_all(k.bootstrap_servers, k.transactions_topic, msgs[i : i + 40])

    feeder = threading.Thread(target=trickle, daemon=True)
    try:
        assert job.wait_rows(first.valid) >= first.valid
        feeder.start()
        result = Live(f"http://127.0.0.1:{prom_port}", settings)

        def explained() -> bool:
            with psycopg.connect(settings.database_url) as conn:
                return bool(conn.execute("SELECT count(*) FROM alert_explanations").fetchone()[0])  # type: ignore[index]

        _wait(explained, 90, "explanations in Postgres")

        def ready() -> bool:
            try:
                series = (
                    "fraudstream:latency_slo_errors:ratio_rate5m",
                    "rate(fraudstream_explanations_total[1m])",
                )
                return all(_finite(result.query(q)) for q in series)
            except OSError:
                return False

        _wait(ready, 60, "Prometheus to scrape the job and evaluate the rules")
        time.sleep(3)  # a few more scrapes, so every rate() has two samples
        yield result
    finally:
        stop.set()
        feeder.join(10) if feeder.is_alive() else None
        prometheus.terminate()
        explainer.terminate()
        job.stop()
        for p in (prometheus, explainer):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        api.close()
        explainer_log.close()
        prometheus_log.close()


@requires_prometheus
@pytest.mark.integration
@pytest.mark.parametrize(("dashboard", "panel", "expr"), _prom_queries())
def test_every_prometheus_panel_query_parses_and_returns_data(live, dashboard, panel, expr):
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    result = live.query(expr)
    assert result["status"] == "success", result
    assert result["data"]["result"], f"{dashboard}/{panel}: no data for {expr}"
    assert _finite(result), f"{dashboard}/{panel}: only NaN/Inf for {expr}: {result['data']['result']}"


@requires_prometheus
@pytest.mark.integration
def test_prometheus_scrapes_every_process_and_every_rule_is_healthy(live):
    targets = live.api("/api/v1/targets")["activeTargets"]
    assert sorted(t["labels"]["job"] for t in targets) == [
        "fraudstream",
        "fraudstream",
        "fraudstream-explainer",
    ]
    # A target's health is its last scrape's, and a scrape times out after the 1 s interval:
    # on a loaded 2-core box one slow answer marked the explainer down for a second.
    seen: list[Any] = []

    def all_up() -> bool:
        seen[:] = live.api("/api/v1/targets")["activeTargets"]
        return all(t["health"] == "up" for t in seen)

    try:
        _wait(all_up, 15, "every target up")
    except AssertionError:
        raise AssertionError([(t["labels"], t["health"], t.get("lastError")) for t in seen]) from None
    rules = [r for g in live.api("/api/v1/rules")["groups"] for r in g["rules"]]
    assert len(rules) == 29
    assert all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]
    firing = [r["name"] for r in rules if r.get("state") == "firing"]
    assert firing == [], f"a healthy run fires {firing}"
    # The instance variable's query lists both processes.
    params = urllib.parse.urlencode({"match[]": 'up{job="fraudstream"}'})
    assert len(live.api(f"/api/v1/label/instance/values?{params}")) == 2


@requires_prometheus
@pytest.mark.integration
def test_no_series_carries_a_per_entity_label(live):
    assert not set(live.api("/api/v1/labels")) & PER_ENTITY_LABELS


def _grafana_sql(raw: str, dashboard: dict[str, Any]) -> str:
    """Grafana's Postgres macros and dashboard variables, as Grafana expands them."""
    days = int(dashboard["time"]["from"].removeprefix("now-").removesuffix("d"))
    raw = re.sub(
        r"\$__timeFilter\(([^)]+)\)",
        lambda m: f"{m.group(1)} BETWEEN now() - interval '{days} days' AND now()",
        raw,
    )
    units = {"1h": 3600, "1d": 86400}
    raw = re.sub(
        r"\$__timeGroupAlias\(([^,]+),\s*(\w+)\)",
        lambda m: (
            f"to_timestamp(floor(extract(epoch from {m.group(1)}) / {units[m.group(2)]})"
            f' * {units[m.group(2)]}) AS "time"'
        ),
        raw,
    )
    for var in dashboard["templating"]["list"]:
        raw = raw.replace(f"${var['name']}", var["current"]["value"])
    assert "$" not in raw, raw
    return raw


@requires_prometheus
@pytest.mark.integration
@pytest.mark.parametrize(("dashboard", "panel", "target"), _sql_queries())
def test_every_postgres_panel_query_runs_on_the_real_schema_and_returns_rows(live, dashboard, panel, target):
    query = _grafana_sql(target["rawSql"], _dashboards()[dashboard])
    with psycopg.connect(live.settings.database_url) as conn:
        cur = conn.execute(query)  # type: ignore[call-overload]
        columns = [c.name for c in cur.description or []]
        rows = cur.fetchall()
    assert rows, f"{dashboard}/{panel}: no rows"
    if target["format"] == "time_series":
        assert columns[0] == "time"
    if panel.startswith("Latest HIGH alerts"):
        assert any(r[columns.index("explanation")] for r in rows), "no explanation joined"
        assert all(r[columns.index("reasons")] for r in rows)
