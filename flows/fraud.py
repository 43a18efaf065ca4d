"""The fraud-scoring dataflow.

``build_flow(source, sinks, settings)`` wires the steps; ``kafka_flow()`` calls it
with the real Kafka source and sinks, for ``python -m bytewax.run
"flows.fraud:kafka_flow()"`` (``fraudstream run`` does the same, plus start-up
checks and metrics).

    transactions (one batch per partition poll)
      -> validate -+-> dead letters -> DLQ topic
                   +-> user shards: first of each event_id (re-used ids: dead letters),
                       user state + features, user risk window   <- labels (stored, resolved)
                   -> merchant shards, device shards: risk windows <- labels
                   -> score what each activation brings (rules, models, ensemble)
                   -> Postgres, Redis, alerts and decisions topics

Every item after the source is a list of events; a stateful step is keyed by a
shard of users (or merchants, devices), never by one user, so Bytewax's
per-item and per-key costs are paid per batch (see docs/architecture.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import DynamicSink, Sink
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

from flows.blocklists import RedisBlocklists
from flows.config import Settings, load_settings
from flows.rulesets import LiveRuleSets
from infra.topics import reach_kafka
from models.artifacts import ActiveModels
from models.base import RULES_ONLY, ModelSet
from operators.labels import KnownLabel, LabelStore
from operators.records import encode_alert, encode_decision
from operators.rules import Blocklists
from operators.rulesets import RuleSet
from operators.scoring import ScoredEvent
from operators.shards import shard_names
from operators.sinks import DeliveredKafkaSink, KafkaRoute, PostgresSink, RiskSink
from operators.sinks.fanout import Fanout
from operators.sinks.labels import PostgresLabelStore
from operators.sinks.lists import Flattened
from operators.sources import KafkaEventSource
from operators.steps.labels import resolve_labels, validate_labels
from operators.steps.output import overlapped_output
from operators.steps.scoring import ScoringStep, score
from operators.steps.shards import entity_shards, user_shards
from operators.steps.validation import validate
from operators.validation import DeadLetter

__all__ = [
    "FlowSinks",
    "Providers",
    "build_flow",
    "challenger_provider",
    "kafka_flow",
    "kafka_label_source",
    "kafka_sinks",
    "kafka_source",
    "model_provider",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlowSinks:
    """Where the job's outputs go (``decisions``: every decision, for the gateway)."""

    scored: DynamicSink[ScoredEvent]
    alerts: DynamicSink[ScoredEvent] | None
    """The alerts alone; None where ``decisions`` writes them too (:func:`kafka_sinks` sends
    both through one producer, one acknowledged round trip per batch)."""
    risk: DynamicSink[ScoredEvent]
    dead_letters: Sink[DeadLetter]
    decisions: DynamicSink[ScoredEvent] | None = None


@dataclass(frozen=True)
class Providers:
    """Things that change while the job runs, read once per batch."""

    models: Callable[[], ModelSet] = field(default=lambda: RULES_ONLY)
    challenger: Callable[[], ModelSet | None] = field(default=lambda: None)
    """The model version scoring in shadow (champion/challenger), if any."""
    blocklists: Callable[[], Blocklists] = field(default=Blocklists)
    rules: Callable[[], tuple[RuleSet, RuleSet | None]] | None = None
    """The active rule set and the shadow one; None: the settings' rules, fixed."""
    clock: Callable[[], float] = time.time
    label_store: Callable[[], LabelStore] | None = None
    """Opens the labels table and event lookup; needed with a labels source."""


def build_flow(
    source: Source[Any],
    sinks: FlowSinks,
    settings: Settings,
    providers: Providers | None = None,
    workers: int = 1,
    labels: Source[Any] | None = None,
) -> Dataflow:
    """The dataflow over any source of Kafka messages and any sinks.

    ``workers`` (processes x workers per process) sets the micro-batch shards
    when ``scoring.max_wait_ms`` > 0. ``labels``, a source of label messages,
    feeds the entity risk windows (with ``providers.label_store``).
    """
    p = providers or Providers()
    snapshots = settings.recovery.dir is not None
    st = settings.state
    shards = shard_names(st.shards, balanced=st.shard_names == "balanced")
    flow = Dataflow("fraudstream")
    raw = op.input("transactions", flow, source)
    checked = validate("validate", raw, settings.validation.config(), p.clock)
    known = _known_labels(flow, labels, sinks, settings, p)
    risk = settings.entity_risk
    users = user_shards(
        "users", checked.oks, known, settings.user_shards(), shards, st.ttl_s, risk.ttl_s, snapshots, p.clock
    )
    op.output("dead_letters", op.merge("rejected", checked.errs, users.dups), sinks.dead_letters)
    featured = users.oks
    if risk.enabled:
        for kind in (k for k in risk.entities if k != "user"):
            featured = entity_shards(
                f"{kind}_risk", featured, known, kind, risk.config(), shards, risk.ttl_s, snapshots, p.clock
            )
    s = settings.scoring
    rules = p.rules or _fixed_rules(RuleSet.from_config(settings.rules))
    scorer = ScoringStep(p.models, p.blocklists, rules, settings.ensemble, p.clock, p.challenger)
    scored = score("score", featured, scorer, s.max_batch_size, s.max_wait_ms, workers, p.clock)
    # one output, the sinks' waits overlapped (operators/sinks/fanout.py): Postgres
    # first, as it takes longest to finish; Redis runs its scripts while the decisions
    # are produced; a large batch is finished while the next is computed
    # (operators/steps/output.py)
    verdicts = [sinks.scored, sinks.risk, *([sinks.decisions] if sinks.decisions is not None else [])]
    out = settings.sinks
    overlapped_output(
        "verdicts", scored, Fanout(verdicts), out.overlap_min_events, out.overlap_hold_ms / 1000.0, workers
    )
    if sinks.alerts is not None:
        alerts = op.filter("has_alerts", op.map("alerts_only", scored, _alerts), bool)
        op.output("alerts", alerts, Flattened(sinks.alerts))
    return flow


def _fixed_rules(rules: RuleSet) -> Callable[[], tuple[RuleSet, RuleSet | None]]:
    return lambda: (rules, None)


def _alerts(scored: list[ScoredEvent]) -> list[ScoredEvent]:
    return [s for s in scored if s.is_alert]


def _known_labels(
    flow: Dataflow, labels: Source[Any] | None, sinks: FlowSinks, settings: Settings, p: Providers
) -> Stream[KnownLabel] | None:
    """Labels in: validated, stored, and resolved to their events' entities (or None without labels)."""
    if labels is None:
        return None
    if p.label_store is None:
        raise ValueError("build_flow: a labels source needs providers.label_store")
    checked = validate_labels("validate_labels", op.input("labels", flow, labels), p.clock)
    op.output("label_dead_letters", checked.errs, sinks.dead_letters)
    s = settings.labels
    return resolve_labels("resolve_labels", checked.oks, p.label_store, s.pending_s, s.retry_s, p.clock)


_JSON = msgspec.json.Encoder()


def _encode_dead_letter(d: DeadLetter) -> tuple[bytes | None, bytes, int | None]:
    return (d.key.encode() if d.key is not None else None), _JSON.encode(d), None


def kafka_source(settings: Settings, stopping: Callable[[], bool] = lambda: False) -> KafkaEventSource:
    k = settings.kafka
    return KafkaEventSource(
        [k.bootstrap_servers],
        [k.transactions_topic],
        starting_offset=OFFSET_BEGINNING if k.start_offset == "earliest" else OFFSET_END,
        add_config={"fetch.wait.max.ms": str(k.fetch_wait_max_ms), **k.client_config},
        batch_size=k.source_batch_size,
        raise_on_errors=False,
        stopping=stopping,
        batches=True,
    )


def kafka_label_source(settings: Settings, stopping: Callable[[], bool] = lambda: False) -> KafkaEventSource:
    """The labels topic, from its beginning: labels are few and every one counts."""
    k = settings.kafka
    return KafkaEventSource(
        [k.bootstrap_servers],
        [k.labels_topic],
        starting_offset=OFFSET_BEGINNING,
        add_config={"fetch.wait.max.ms": "500", **k.client_config},
        batch_size=k.source_batch_size,
        raise_on_errors=False,
        stopping=stopping,
    )


def kafka_sinks(settings: Settings) -> FlowSinks:
    k, s = settings.kafka, settings.sinks
    policy = s.config()

    def to_kafka(
        name: str,
        topic: str,
        encode: Callable[[Any], Any],
        drop_refused: bool = False,
        also: Sequence[KafkaRoute[Any]] = (),
    ) -> DeliveredKafkaSink[Any]:
        return DeliveredKafkaSink(
            name,
            k.bootstrap_servers,
            topic,
            encode,
            policy,
            s.delivery_timeout_s,
            k.client_config,
            drop_refused,
            also,
        )

    alerts = KafkaRoute("alerts", k.alerts_topic, encode_alert, _is_alert)
    return FlowSinks(
        scored=PostgresSink(settings.database_url, policy),
        alerts=None if k.publish_decisions else to_kafka(alerts.name, alerts.topic, alerts.encode),
        risk=RiskSink(settings.redis_url, settings.redis.risk_ttl_s, s.max_backoff_s),
        dead_letters=to_kafka("dead_letters", k.dlq_topic, _encode_dead_letter, drop_refused=True),
        decisions=(
            to_kafka("decisions", k.decisions_topic, encode_decision, also=(alerts,))
            if k.publish_decisions
            else None
        ),
    )


def _is_alert(s: ScoredEvent) -> bool:
    return s.is_alert


def kafka_flow(
    settings: Settings | None = None, workers: int = 1, stopping: Callable[[], bool] = lambda: False
) -> Dataflow:
    """The production flow: Kafka in, Postgres/Redis/Kafka out; once ``stopping()``
    is true the sources end and the flow finishes what is in flight."""
    settings = settings or load_settings()
    # no broker: one KafkaUnreachable within seconds, where librdkafka would log and retry
    # for ever (``python -m bytewax.run "flows.fraud:kafka_flow()"`` has no other check)
    reach_kafka(settings.kafka.bootstrap_servers, settings.kafka.client_config)
    blocklists = RedisBlocklists(settings.redis_url, settings.redis.blocklist_refresh_s)
    policy = settings.sinks.config()
    providers = Providers(
        models=model_provider(settings),
        challenger=challenger_provider(settings),
        blocklists=blocklists.current,
        rules=LiveRuleSets(settings.database_url, settings.rules, settings.scoring.rules_refresh_s),
        label_store=lambda: PostgresLabelStore(settings.database_url, policy),
    )
    labels = kafka_label_source(settings, stopping) if settings.labels.enabled else None
    source = kafka_source(settings, stopping)
    return build_flow(source, kafka_sinks(settings), settings, providers, workers, labels)


def challenger_provider(settings: Settings) -> Callable[[], ModelSet | None]:
    """The ``challenger`` version of ``models.path``, scoring in shadow (None when there is none)."""
    if settings.models.path is None:
        return lambda: None
    m = settings.models
    shadow = ActiveModels(
        Path(settings.models.path), m.device, m.refresh_s, pointer="challenger", gpu_min_rows=m.gpu_min_rows
    )

    def current() -> ModelSet | None:
        models = shadow()
        return None if models is RULES_ONLY else models

    return current


def model_provider(settings: Settings) -> Callable[[], ModelSet]:
    """Hot-swapping models from ``models.path``, or rules only when none is configured."""
    if settings.models.path is None:
        log.warning(
            "no model directory configured (models.path / FRAUDSTREAM_MODEL_DIR): scoring with rules only"
        )
        return lambda: RULES_ONLY
    m = settings.models
    active = ActiveModels(Path(settings.models.path), m.device, m.refresh_s, gpu_min_rows=m.gpu_min_rows)
    models = active()
    if models is RULES_ONLY:
        log.warning(
            "no active model in %s yet: scoring with rules only until one is activated", settings.models.path
        )
    else:
        log.info("scoring with model version %s", models.version)
    return active
