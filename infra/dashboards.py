"""The Grafana dashboards, as code.

``python -m infra.dashboards`` writes ``grafana/dashboards/*.json``; a test
checks that the committed JSON is what this module generates, lints every
panel and runs every query against a real Prometheus and Postgres. Edit here,
never in the JSON.

Datasources have fixed uids (``grafana/provisioning/datasources``), so the
dashboards work unchanged in docker-compose and Kubernetes.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DASHBOARDS", "PG", "PROM", "build", "main"]

PROM = {"type": "prometheus", "uid": "fraudstream-prometheus"}
PG = {"type": "grafana-postgresql-datasource", "uid": "fraudstream-postgres"}
OUT = Path(__file__).resolve().parents[1] / "grafana" / "dashboards"

Json = dict[str, Any]


def _steps(*pairs: tuple[str, float | None]) -> Json:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in pairs]}


OK_ONLY = _steps(("green", None))


def prom(expr: str, legend: str = "", fmt: str = "time_series") -> Json:
    return {"datasource": PROM, "expr": expr, "legendFormat": legend, "format": fmt, "range": True}


def sql(query: str, fmt: str = "table") -> Json:
    return {"datasource": PG, "rawSql": " ".join(query.split()), "format": fmt, "rawQuery": True}


@dataclass
class Panel:
    title: str
    kind: str  # timeseries | stat | bargauge | heatmap | table | state-timeline
    targets: list[Json]
    unit: str
    description: str
    width: int = 12
    height: int = 8
    thresholds: Json = field(default_factory=lambda: OK_ONLY)
    options: Json = field(default_factory=dict)
    mappings: list[Json] = field(default_factory=list)
    custom: Json = field(default_factory=dict)


def _panel(p: Panel, pid: int, x: int, y: int) -> Json:
    datasource = p.targets[0]["datasource"]
    targets = [{"refId": chr(ord("A") + i), **t} for i, t in enumerate(p.targets)]
    if datasource is PG:
        targets = [{**t, "editorMode": "code"} for t in targets]
    return {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": datasource,
        "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {
                "unit": p.unit,
                "thresholds": p.thresholds,
                "mappings": p.mappings,
                "custom": p.custom,
            },
            "overrides": [],
        },
        "options": p.options,
        "targets": targets,
    }


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list[Panel]
    time_from: str = "now-1h"
    variables: list[Json] = field(default_factory=list)


def build(d: Dashboard) -> Json:
    panels, x, y, row_h = [], 0, 0, 0
    for i, p in enumerate(d.panels, start=1):
        if x + p.width > 24:
            x, y, row_h = 0, y + row_h, 0
        panels.append(_panel(p, i, x, y))
        x, row_h = x + p.width, max(row_h, p.height)
    return {
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": ["fraudstream"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "time": {"from": d.time_from, "to": "now"},
        "annotations": {"list": []},
        "links": [
            {"type": "dashboards", "tags": ["fraudstream"], "asDropdown": True, "title": "fraudstream"}
        ],
        "templating": {"list": d.variables},
        "panels": panels,
    }


SCORED = 'outcome="scored"'
HEATMAP = "heatmap"
COMPONENT_RATE = "fraudstream:component_score_bucket:rate5m"

OVERVIEW = Dashboard(
    uid="fraudstream-overview",
    title="fraudstream / Overview",
    description="Is the job keeping up, how much is it flagging, and how fast?",
    panels=[
        Panel(
            "Events scored /s",
            "stat",
            [prom(f"sum(fraudstream:events:rate1m{{{SCORED}}})")],
            "ops",
            "Events scored per second over the last minute, all processes.",
            width=5,
            height=5,
        ),
        Panel(
            "Alert share",
            "stat",
            [prom(f"sum(fraudstream:alerts:rate1m) / sum(fraudstream:events:rate1m{{{SCORED}}})")],
            "percentunit",
            "Share of scored events at MEDIUM or HIGH risk. A jump usually means a fraud wave or a "
            "broken upstream field; compare with Rule hits.",
            width=5,
            height=5,
            thresholds=_steps(("green", None), ("orange", 0.02), ("red", 0.05)),
        ),
        Panel(
            "Dead-letter share",
            "stat",
            [prom("sum(fraudstream:dlq_events:rate5m) / sum(rate(fraudstream_events_total[5m]))")],
            "percentunit",
            "Share of input events that failed validation (5 minutes). Alert FraudstreamDeadLetterRateHigh "
            "fires above 1%.",
            width=5,
            height=5,
            thresholds=_steps(("green", None), ("orange", 0.001), ("red", 0.01)),
        ),
        Panel(
            "p99 latency to Postgres",
            "stat",
            [prom('fraudstream:end_to_end_latency_seconds:p99_5m{sink="postgres"}')],
            "s",
            "99th percentile from the broker timestamp to the row written (5 minutes). SLO: 99% within 1 s.",
            width=5,
            height=5,
            thresholds=_steps(("green", None), ("orange", 0.25), ("red", 1.0)),
        ),
        Panel(
            "Processes up",
            "stat",
            [prom('count(up{job="fraudstream"} == 1)')],
            "none",
            "Job processes answering scrapes. Fewer than configured means part of the partitions is idle.",
            width=4,
            height=5,
            thresholds=_steps(("red", None), ("green", 1)),
        ),
        Panel(
            "Events /s by outcome",
            "timeseries",
            [prom("fraudstream:events:rate1m", "{{outcome}}")],
            "ops",
            "Input events per second: scored, dead-lettered, or unreadable from the broker.",
        ),
        Panel(
            "Alerts /s by level",
            "timeseries",
            [prom("fraudstream:alerts:rate1m", "{{level}}")],
            "ops",
            "Scored events at MEDIUM (review) and HIGH (block) risk per second.",
        ),
        Panel(
            "End-to-end latency",
            "timeseries",
            [
                prom("fraudstream:end_to_end_latency_seconds:p50_5m", "p50 {{sink}}"),
                prom("fraudstream:end_to_end_latency_seconds:p95_5m", "p95 {{sink}}"),
                prom("fraudstream:end_to_end_latency_seconds:p99_5m", "p99 {{sink}}"),
            ],
            "s",
            "From the broker timestamp of the input event to the row in Postgres (sink=postgres) or the "
            "alert delivered (sink=alerts). Includes micro-batch waiting (scoring.max_wait_ms).",
            thresholds=_steps(("green", None), ("orange", 0.25), ("red", 1.0)),
        ),
        Panel(
            "Fraud score distribution",
            "heatmap",
            [
                prom(
                    "sum by (le) (increase(fraudstream_fraud_score_bucket[$__rate_interval]))",
                    "{{le}}",
                    HEATMAP,
                )
            ],
            "none",
            "Ensemble scores (0-100) per bucket over time. Mass moving up without a fraud wave is drift.",
            options={"calculate": False, "yAxis": {"unit": "none"}, "color": {"scheme": "Oranges"}},
        ),
        Panel(
            "Dead letters /s by field",
            "timeseries",
            [prom("fraudstream:dlq_events:rate5m", "{{field}}")],
            "ops",
            "Validation failures by the field named in the dead letter's reason.",
            width=24,
            height=7,
        ),
    ],
)

RULES_MODELS = Dashboard(
    uid="fraudstream-rules-models",
    title="fraudstream / Rules & models",
    description="Which rules fire, what the models score, which model version is live, and explanations.",
    panels=[
        Panel(
            "Model version in use",
            "stat",
            [prom("max by (version) (fraudstream_model_info) == 1", "{{version}}")],
            "none",
            "The artifact version scoring now (fraudstream models activate). Hot-swapped without a restart.",
            width=8,
            height=5,
            options={"textMode": "name", "colorMode": "none", "reduceOptions": {"calcs": ["lastNotNull"]}},
        ),
        Panel(
            "Model load failures (24 h)",
            "stat",
            [prom("sum(increase(fraudstream_model_load_failures_total[24h]))")],
            "short",
            "Artifacts refused at activation (bad checksum, wrong columns); the previous version scores on.",
            width=8,
            height=5,
            thresholds=_steps(("green", None), ("red", 1)),
        ),
        Panel(
            "Mean batch size",
            "stat",
            [
                prom(
                    'sum(rate(fraudstream_batch_size_sum{stage="score"}[5m]))'
                    ' / sum(rate(fraudstream_batch_size_count{stage="score"}[5m]))'
                )
            ],
            "short",
            "Events per scoring micro-batch. Small batches under load mean max_wait_ms is too short.",
            width=8,
            height=5,
        ),
        Panel(
            "Rule hits /s",
            "timeseries",
            [prom("fraudstream:rule_hits:rate5m", "{{rule}}")],
            "ops",
            "Hits per rule per second (5 minutes). One rule jumping alone points at that rule's input.",
        ),
        Panel(
            "Rule hits, last hour",
            "bargauge",
            [prom("sort_desc(sum by (rule) (increase(fraudstream_rule_hits_total[1h])))", "{{rule}}")],
            "short",
            "Hits per rule over the last hour.",
            options={"orientation": "horizontal", "displayMode": "basic"},
        ),
        Panel(
            "Component scores p50 / p95",
            "timeseries",
            [
                prom(f"histogram_quantile(0.5, {COMPONENT_RATE})", "p50 {{component}}"),
                prom(f"histogram_quantile(0.95, {COMPONENT_RATE})", "p95 {{component}}"),
            ],
            "none",
            "Scores (0-100) of the rules, the Isolation Forest and the autoencoder before the ensemble.",
        ),
        Panel(
            "Score drift (median, 5 min vs 6 h)",
            "timeseries",
            [
                prom(
                    "histogram_quantile(0.5, fraudstream:component_score_bucket:rate5m)"
                    " - histogram_quantile(0.5, sum by (component, le)"
                    " (rate(fraudstream_component_score_bucket[6h])))",
                    "{{component}}",
                )
            ],
            "none",
            "Median component score of the last 5 minutes minus that of the last 6 hours. Sustained "
            "moves beyond 10 points mean the input has drifted from training: retrain.",
            thresholds=_steps(("green", None), ("orange", 10), ("red", 20)),
        ),
        Panel(
            "Inference time per batch p95",
            "timeseries",
            [
                prom(
                    "histogram_quantile(0.95, sum by (component, le)"
                    " (rate(fraudstream_model_seconds_bucket[$__rate_interval])))",
                    "{{component}}",
                )
            ],
            "s",
            "Wall time of one model call on one micro-batch (CPU or GPU).",
            thresholds=_steps(("green", None), ("orange", 0.05), ("red", 0.25)),
        ),
        Panel(
            "Explanations /s by source",
            "timeseries",
            [prom("sum by (source) (rate(fraudstream_explanations_total[5m]))", "{{source}}")],
            "ops",
            "Alert explanations written by `fraudstream explain`: by Claude or by the offline template.",
            width=8,
        ),
        Panel(
            "Explanation fallbacks, last hour",
            "bargauge",
            [prom("sum by (reason) (increase(fraudstream_explanation_fallbacks_total[1h]))", "{{reason}}")],
            "short",
            "Why the template was used instead of Claude (no key, budget, API errors, timeouts).",
            width=8,
            options={"orientation": "horizontal", "displayMode": "basic"},
        ),
        Panel(
            "Claude tokens /min",
            "timeseries",
            [prom("sum by (kind) (rate(fraudstream_explanation_tokens_total[5m])) * 60", "{{kind}}")],
            "short",
            "Input and output tokens per minute; the daily budget is explainer.daily_token_budget.",
            width=8,
        ),
    ],
)

INSTANCE = {
    "name": "instance",
    "label": "Process",
    "type": "query",
    "datasource": PROM,
    "definition": 'label_values(up{job="fraudstream"}, instance)',
    "query": {"query": 'label_values(up{job="fraudstream"}, instance)', "refId": "instance"},
    "refresh": 2,
    "includeAll": True,
    "multi": True,
    "allValue": ".*",
    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
}
INST = 'instance=~"$instance"'

PIPELINE = Dashboard(
    uid="fraudstream-pipeline-health",
    title="fraudstream / Pipeline health",
    description="Is the job keeping up, where does the time go, and is any dependency failing?",
    variables=[INSTANCE],
    panels=[
        Panel(
            "Processes up",
            "stat",
            [prom('count(up{job="fraudstream"} == 1)')],
            "none",
            "Processes answering scrapes. Scale with processes, not threads (docs/operations.md).",
            width=6,
            height=5,
            thresholds=_steps(("red", None), ("green", 1)),
        ),
        Panel(
            "Users with state",
            "stat",
            [prom(f"sum(fraudstream_user_states{{{INST}}})")],
            "short",
            "Per-user state entries held in memory (about 840 bytes each); expired after state.ttl.",
            width=6,
            height=5,
        ),
        Panel(
            "Consumer lag",
            "stat",
            [prom("sum(fraudstream:consumer_lag:sum)")],
            "short",
            "Events on the transactions topic not yet read by the job.",
            width=6,
            height=5,
            thresholds=_steps(("green", None), ("orange", 10_000), ("red", 100_000)),
        ),
        Panel(
            "Outages",
            "state-timeline",
            [
                prom(f"max by (sink) (fraudstream_sink_unavailable{{{INST}}})", "{{sink}}"),
                prom(f"max(fraudstream_blocklist_stale{{{INST}}})", "blocklists stale"),
            ],
            "none",
            "1 while a sink is failing and being retried, or while blocklists could not be refreshed.",
            width=6,
            height=5,
            thresholds=_steps(("green", None), ("red", 1)),
            mappings=[
                {"type": "value", "options": {"0": {"text": "ok", "color": "green"}}},
                {"type": "value", "options": {"1": {"text": "failing", "color": "red"}}},
            ],
        ),
        Panel(
            "Consumer lag by partition",
            "timeseries",
            [
                prom(
                    f"sum by (topic, partition) (bytewax_kafka_consumer_lag{{{INST}}})",
                    "{{topic}} {{partition}}",
                )
            ],
            "short",
            "Bytewax's per-partition lag (log end minus position). Growing lag: add processes.",
            thresholds=_steps(("green", None), ("orange", 10_000)),
        ),
        Panel(
            "Busy share by stage",
            "timeseries",
            [
                prom(
                    f"sum by (stage) (rate(fraudstream_stage_seconds_sum{{{INST}}}[$__rate_interval]))",
                    "{{stage}}",
                )
            ],
            "percentunit",
            "Seconds per second spent in each stage: where the time goes. 100% is one whole process.",
        ),
        Panel(
            "Time per batch by stage",
            "timeseries",
            [prom("fraudstream:stage_seconds:mean5m", "{{stage}}")],
            "s",
            "Mean wall time of one batch in each stage (validate, score, Postgres and Redis sinks).",
            thresholds=_steps(("green", None), ("orange", 0.1), ("red", 0.5)),
        ),
        Panel(
            "Sink records /s",
            "timeseries",
            [prom("fraudstream:sink_records:rate1m", "{{sink}}")],
            "ops",
            "Records delivered per second by each sink.",
        ),
        Panel(
            "Sink retries and drops /s",
            "timeseries",
            [
                prom(
                    f"sum by (sink) (rate(fraudstream_sink_retries_total{{{INST}}}[$__rate_interval]))",
                    "retries {{sink}}",
                ),
                prom(
                    f"sum by (sink) (rate(fraudstream_sink_dropped_total{{{INST}}}[$__rate_interval]))",
                    "dropped {{sink}}",
                ),
            ],
            "ops",
            "Retried writes (the target is failing or slow), and records dropped by design (Redis only).",
            thresholds=_steps(("green", None), ("orange", 1)),
        ),
        Panel(
            "Blocklist entries",
            "timeseries",
            [prom(f"max by (list) (fraudstream_blocklist_entries{{{INST}}})", "{{list}}")],
            "short",
            "Entries in the live device, user and country blocklists loaded from Redis.",
        ),
        Panel(
            "Memory per process",
            "timeseries",
            [prom(f'process_resident_memory_bytes{{job="fraudstream", {INST}}}', "{{instance}}")],
            "bytes",
            "Resident memory of each job process (state, models, buffers).",
        ),
        Panel(
            "CPU per process",
            "timeseries",
            [
                prom(
                    f'rate(process_cpu_seconds_total{{job="fraudstream", {INST}}}[$__rate_interval])',
                    "{{instance}}",
                )
            ],
            "percentunit",
            "CPU seconds per second of each process. Near 100%: the process is the bottleneck; add one.",
            thresholds=_steps(("green", None), ("orange", 0.8), ("red", 0.95)),
        ),
    ],
)

WINDOW = "$__timeFilter(s.event_time)"
OPERATIONS = Dashboard(
    uid="fraudstream-fraud-operations",
    title="fraudstream / Fraud operations",
    description="For fraud analysts: what was flagged, where, how much money, and why (from Postgres).",
    time_from="now-7d",
    variables=[
        {
            "name": "min_events",
            "label": "Min events per merchant",
            "type": "custom",
            "query": "5,20,100,1000",
            "current": {"selected": True, "text": "20", "value": "20"},
            "options": [],
        }
    ],
    panels=[
        Panel(
            "Alerts per hour",
            "timeseries",
            [
                sql(
                    f"""SELECT $__timeGroupAlias(s.event_time, 1h),
                    count(*) FILTER (WHERE s.risk_level = 'MEDIUM') AS "MEDIUM",
                    count(*) FILTER (WHERE s.risk_level = 'HIGH') AS "HIGH"
                    FROM scored_events s WHERE {WINDOW} GROUP BY 1 ORDER BY 1""",
                    "time_series",
                )
            ],
            "short",
            "Alerts per hour of event time, by level.",
            width=16,
        ),
        Panel(
            "Blocked amount by currency",
            "table",
            [
                sql(
                    f"""SELECT s.currency, count(*) AS blocked, sum(s.amount) AS amount
                    FROM scored_events s WHERE s.is_blocked AND {WINDOW}
                    GROUP BY s.currency ORDER BY amount DESC"""
                )
            ],
            "none",
            "Money in blocked transactions in the time range, per currency (amounts are not converted).",
            width=8,
        ),
        Panel(
            "Top merchants by alert rate",
            "table",
            [
                sql(
                    f"""SELECT s.merchant_name AS merchant, count(*) AS events,
                    count(*) FILTER (WHERE s.risk_level <> 'LOW') AS alerts,
                    round(avg((s.risk_level <> 'LOW')::int), 4) AS alert_rate
                    FROM scored_events s WHERE {WINDOW} AND s.merchant_name IS NOT NULL
                    GROUP BY s.merchant_name HAVING count(*) >= $min_events
                    ORDER BY alert_rate DESC, alerts DESC LIMIT 20"""
                )
            ],
            "none",
            "Merchants with at least $min_events events, by share of their events that alerted.",
            custom={"align": "auto"},
        ),
        Panel(
            "Top categories by alert rate",
            "table",
            [
                sql(
                    f"""SELECT coalesce(s.merchant_category, '(none)') AS category, count(*) AS events,
                    count(*) FILTER (WHERE s.risk_level <> 'LOW') AS alerts,
                    round(avg((s.risk_level <> 'LOW')::int), 4) AS alert_rate
                    FROM scored_events s WHERE {WINDOW}
                    GROUP BY 1 ORDER BY alert_rate DESC LIMIT 20"""
                )
            ],
            "none",
            "Merchant categories by share of their events that alerted.",
            custom={"align": "auto"},
        ),
        Panel(
            "7-day trend",
            "timeseries",
            [
                sql(
                    """SELECT $__timeGroupAlias(s.event_time, 1d), count(*) AS events,
                    count(*) FILTER (WHERE s.risk_level <> 'LOW') AS alerts,
                    count(*) FILTER (WHERE s.is_blocked) AS blocked
                    FROM scored_events s WHERE s.event_time > now() - interval '7 days'
                    GROUP BY 1 ORDER BY 1""",
                    "time_series",
                )
            ],
            "short",
            "Daily events, alerts and blocks over the last 7 days, whatever the time picker says.",
            width=24,
        ),
        Panel(
            "Latest HIGH alerts",
            "table",
            [
                sql(
                    f"""SELECT s.event_time AS time, s.event_id, s.user_id, s.amount, s.currency,
                    s.merchant_name AS merchant, round(s.fraud_score::numeric, 1) AS score, s.decision,
                    array_to_string(ARRAY(SELECT jsonb_array_elements_text(s.reasons)), '; ') AS reasons,
                    e.text AS explanation, e.source AS explained_by
                    FROM scored_events s LEFT JOIN alert_explanations e USING (event_id)
                    WHERE s.risk_level = 'HIGH' AND {WINDOW}
                    ORDER BY s.event_time DESC LIMIT 100"""
                )
            ],
            "none",
            "The latest HIGH-risk events with the rules' reasons and the analyst explanation "
            "(Claude or template) when `fraudstream explain` has written one.",
            width=24,
            height=12,
            custom={"align": "auto", "cellOptions": {"type": "auto", "wrapText": True}},
        ),
    ],
)

DASHBOARDS = {
    "overview": OVERVIEW,
    "rules-models": RULES_MODELS,
    "pipeline-health": PIPELINE,
    "fraud-operations": OPERATIONS,
}


def render(d: Dashboard) -> str:
    return json.dumps(build(d), indent=2, sort_keys=True) + "\n"


def main(out: Path = OUT) -> int:
    out.mkdir(parents=True, exist_ok=True)
    for name, d in DASHBOARDS.items():
        (out / f"{name}.json").write_text(render(d))
    print(f"wrote {len(DASHBOARDS)} dashboards to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
