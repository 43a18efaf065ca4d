"""Prometheus metrics of the job (one registry per process; no user ids in labels)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ALERTS",
    "BATCH_SIZE",
    "BLOCKLIST_REFRESH_FAILURES",
    "BLOCKLIST_SIZE",
    "BLOCKLIST_STALE",
    "COMPONENT_SCORE",
    "DLQ_EVENTS",
    "END_TO_END_LATENCY",
    "ENTITY_STATES",
    "EVENTS",
    "EXPLANATIONS",
    "EXPLANATION_FALLBACKS",
    "EXPLANATION_SECONDS",
    "EXPLANATION_TOKENS",
    "FRAUD_SCORE",
    "LABELS",
    "LABELS_PENDING",
    "MODEL_INFO",
    "MODEL_LOAD_FAILURES",
    "MODEL_SECONDS",
    "RULESET_SWITCHES",
    "RULESET_VERSION",
    "RULE_HITS",
    "SINK_DROPPED",
    "SINK_RECORDS",
    "SINK_REFUSED",
    "SINK_RETRIES",
    "SINK_UNAVAILABLE",
    "STAGE_SECONDS",
    "USER_STATES",
    "observe_many",
    "prime",
    "prime_explainer",
]

_SCORE_BUCKETS = tuple(float(b) for b in range(10, 101, 10))
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

EVENTS = Counter("fraudstream_events", "Input events by outcome (scored, dead_lettered).", ["outcome"])
DLQ_EVENTS = Counter("fraudstream_dlq_events", "Events sent to the dead-letter topic, by field.", ["field"])
ALERTS = Counter("fraudstream_alerts", "Scored events at MEDIUM or HIGH risk, by level.", ["level"])
RULE_HITS = Counter("fraudstream_rule_hits", "Rule hits, by rule.", ["rule"])
RULESET_VERSION = Gauge(
    "fraudstream_ruleset_version", "The active rule-set version (-1: the config file's rules)."
)
RULESET_SWITCHES = Counter("fraudstream_ruleset_switches", "Switches of the active rule-set version.")
FRAUD_SCORE = Histogram("fraudstream_fraud_score", "Ensemble fraud score (0-100).", buckets=_SCORE_BUCKETS)
COMPONENT_SCORE = Histogram(
    "fraudstream_component_score", "Component scores (0-100).", ["component"], buckets=_SCORE_BUCKETS
)
END_TO_END_LATENCY = Histogram(
    "fraudstream_end_to_end_latency_seconds",
    "From the broker's message timestamp to the record being written by a sink.",
    ["sink"],
    buckets=_LATENCY_BUCKETS,
)
STAGE_SECONDS = Histogram(
    "fraudstream_stage_seconds", "Wall time of one batch in a stage.", ["stage"], buckets=_LATENCY_BUCKETS
)
BATCH_SIZE = Histogram(
    "fraudstream_batch_size",
    "Records per batch, by stage.",
    ["stage"],
    buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384),
)
USER_STATES = Gauge("fraudstream_user_states", "Users with live state in this process.")
ENTITY_STATES = Gauge(
    "fraudstream_entity_states", "Entities with a live risk window in this process, by kind.", ["kind"]
)
LABELS = Counter(
    "fraudstream_labels",
    "Fraud labels by outcome: stored (new), duplicate, applied (event known), unknown (never scored), "
    "dead_lettered.",
    ["outcome"],
)
LABELS_PENDING = Gauge(
    "fraudstream_labels_pending",
    "Labels waiting for their event to be scored (retried for labels.pending_s).",
)
SINK_RECORDS = Counter("fraudstream_sink_records", "Records delivered, by sink.", ["sink"])
SINK_DROPPED = Counter(
    "fraudstream_sink_dropped", "Records a sink dropped by design (bounded buffers).", ["sink"]
)
SINK_REFUSED = Counter(
    "fraudstream_sink_refused",
    "Records the broker refused for good (too large, invalid) that a sink dropped, by sink.",
    ["sink"],
)
SINK_RETRIES = Counter("fraudstream_sink_retries", "Retried sink writes, by sink.", ["sink"])
SINK_UNAVAILABLE = Gauge(
    "fraudstream_sink_unavailable", "1 while a sink is failing and being retried.", ["sink"]
)
BLOCKLIST_SIZE = Gauge("fraudstream_blocklist_entries", "Entries in live blocklists.", ["list"])
BLOCKLIST_STALE = Gauge(
    "fraudstream_blocklist_stale", "1 when the last blocklist refresh from Redis failed (last lists kept)."
)
BLOCKLIST_REFRESH_FAILURES = Counter(
    "fraudstream_blocklist_refresh_failures", "Failed blocklist refreshes from Redis."
)
EXPLANATIONS = Counter("fraudstream_explanations", "Alert explanations written, by source.", ["source"])
EXPLANATION_FALLBACKS = Counter(
    "fraudstream_explanation_fallbacks", "Template fallbacks, by reason.", ["reason"]
)
EXPLANATION_SECONDS = Histogram(
    "fraudstream_explanation_seconds", "Time to get one explanation.", ["source"], buckets=_LATENCY_BUCKETS
)
EXPLANATION_TOKENS = Counter("fraudstream_explanation_tokens", "Tokens used by explanations.", ["kind"])
MODEL_INFO = Gauge(
    "fraudstream_model_info", "1 for the model version in use, 0 for replaced ones.", ["version"]
)
MODEL_LOAD_FAILURES = Counter(
    "fraudstream_model_load_failures", "Model versions that could not be activated."
)
MODEL_SECONDS = Histogram(
    "fraudstream_model_seconds", "Model inference time per batch.", ["component"], buckets=_LATENCY_BUCKETS
)


SINKS = ("postgres", "alerts", "dead_letters", "redis", "decisions")
STAGES = (
    "validate",
    "users",
    "risk_windows",
    "score",
    "sink_postgres",
    "sink_redis",
    "sink_alerts",
    "sink_decisions",
    "sink_dead_letters",
)
COMPONENTS = ("rules", "isolation_forest", "autoencoder", "supervised")
MODEL_COMPONENTS = ("isolation_forest", "autoencoder", "supervised")
LABEL_OUTCOMES = ("stored", "duplicate", "applied", "unknown", "dead_lettered")
ENTITY_KINDS = ("merchant", "device", "user")


def prime(rules: tuple[str, ...] = ()) -> None:
    """Create every known label set at zero, so that dashboards and alerts see
    ``0`` rather than "no data" before the first hit (a missing series also
    breaks ``rate()`` on the first increment)."""
    for outcome in ("scored", "dead_lettered", "duplicate", "consumer_error"):
        EVENTS.labels(outcome)
    for level in ("MEDIUM", "HIGH"):
        ALERTS.labels(level)
    for rule in rules:
        RULE_HITS.labels(rule)
    for sink in SINKS:
        SINK_RECORDS.labels(sink)
        SINK_RETRIES.labels(sink)
        SINK_DROPPED.labels(sink)
        SINK_REFUSED.labels(sink)
        SINK_UNAVAILABLE.labels(sink).set(0)
    for sink in ("postgres", "alerts"):
        END_TO_END_LATENCY.labels(sink)
    for stage in STAGES:
        STAGE_SECONDS.labels(stage)
    for stage in ("score", "sink_postgres"):
        BATCH_SIZE.labels(stage)
    for component in COMPONENTS:
        COMPONENT_SCORE.labels(component)
    for component in MODEL_COMPONENTS:
        MODEL_SECONDS.labels(component)
    for outcome in LABEL_OUTCOMES:
        LABELS.labels(outcome)
    LABELS_PENDING.set(0)
    for kind in ENTITY_KINDS:
        ENTITY_STATES.labels(kind)


def prime_explainer() -> None:
    """Zero series for the explainer's labels (see :func:`prime`)."""
    for source in ("claude", "template"):
        EXPLANATIONS.labels(source)
        EXPLANATION_SECONDS.labels(source)
    for kind in ("input", "output"):
        EXPLANATION_TOKENS.labels(kind)
    for reason in ("no_api_key", "over_budget", "api_error", "timeout", "connection_error", "empty_response"):
        EXPLANATION_FALLBACKS.labels(reason)


def observe_many(histogram: Histogram, values: Iterable[float]) -> None:
    """``histogram.observe(v)`` for every value, with one lock round per bucket
    instead of one per value (per-event ``observe`` was a measurable share of the
    job's time). Falls back to ``observe`` if prometheus_client's internals differ."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for v in values:
            histogram.observe(v)
        return
    counts = [0] * len(bounds)
    acc = 0.0
    for v in values:
        counts[bisect.bisect_left(bounds, v)] += 1
        acc += v
    for i, n in enumerate(counts):
        if n:
            buckets[i].inc(n)
    total.inc(acc)
