"""Configuration: one YAML file plus environment variables, validated at start-up.

The YAML file is the first of: ``--config`` (the ``path`` argument), the
``FRAUDSTREAM_CONFIG`` variable, ``fraudstream.yaml`` in the current directory;
with none of them the built-in defaults apply (:func:`find_config` says which).
Precedence: built-in defaults < YAML file < contract environment variables
(``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL``, ``REDIS_URL``, ``METRICS_PORT``)
< nested overrides ``FRAUDSTREAM__SECTION__KEY``.
Any invalid value stops start-up with :class:`ConfigError` naming the field.
Sections turn into the domain objects the code uses in one place, here, and
one way: ``settings.<section>.config()`` (e.g. ``settings.state.config()`` is
the :class:`~operators.state.StateLimits`).

>>> load_settings(env={"METRICS_PORT": "9999"}).metrics.port
9999
>>> load_settings(env={"METRICS_PORT": "x"})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
flows.config.ConfigError: invalid configuration (environment): metrics.port: ... (got 'x')
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from operators.dedup import DedupConfig
from operators.ensemble import EnsembleConfig
from operators.entity_risk import RiskConfig
from operators.events import ValidationLimits
from operators.rules import RulesConfig
from operators.shards import UserShardConfig
from operators.sinks.retry import RetryPolicy
from operators.state import StateLimits

__all__ = [
    "CONFIG_FILE",
    "ENV_VARS",
    "ConfigError",
    "ConfigSource",
    "Settings",
    "find_config",
    "load_config",
    "load_settings",
    "redact_url",
    "redacted",
]

log = logging.getLogger(__name__)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:19092"
    transactions_topic: str = Field("transactions", min_length=1)
    alerts_topic: str = Field("alerts", min_length=1)
    dlq_topic: str = Field("transactions.dlq", min_length=1)
    decisions_topic: str = Field(
        "decisions",
        min_length=1,
        description="Every decision, keyed by event_id (the gateway's replies); compact it in production.",
    )
    publish_decisions: bool = True
    labels_topic: str = Field(
        "labels", min_length=1, description="Fraud labels keyed by event_id (chargebacks, analysts)."
    )
    partitions: int = Field(4, ge=1, description="Partitions of topics the job creates.")
    start_offset: Literal["earliest", "latest"] = "earliest"
    source_batch_size: int = Field(1000, ge=1)
    fetch_wait_max_ms: int = Field(
        10,
        ge=0,
        le=5_000,
        description="Longest the broker may hold the job's fetch when no data is ready (librdkafka "
        "fetch.wait.max.ms, default 500): the latency floor when traffic is light.",
    )
    client_config: dict[str, str] = Field(
        default_factory=dict, description="Extra librdkafka settings for every client (SASL, TLS, ...)."
    )


class MetricsSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535, description="Process i of the job serves /metrics on port + i.")


class StateSettings(_Section):
    ttl_s: float = Field(
        7 * 86_400.0, gt=0, description="Idle time (wall clock) before a user's state is dropped."
    )
    window_s: float = Field(
        172_800.0,
        ge=3600.0,
        description="Look-back of a user's recent events: the 48-hour counts (large_48h, odd_hour_48h) "
        "and spend windows see at most this far back.",
    )
    max_events: int = Field(64, ge=8)
    max_devices: int = Field(16, ge=1)
    shards: int = Field(
        64,
        ge=1,
        le=4096,
        description="State shards (Bytewax keys) of the user and risk-window steps: each processes whole "
        "batches; more shards spread over more workers, fewer make larger batches.",
    )
    shard_names: Literal["balanced", "numbers"] = Field(
        "balanced",
        description="The shards' Bytewax keys: names that spread evenly over up to 16, 32 or 64 "
        "workers, or the numbers 0..shards-1 (which put 5 to 13 of 64 shards on each of 8 workers). "
        "A recovery directory keeps the names its state was written under.",
    )

    def config(self) -> StateLimits:
        return StateLimits(self.window_s, self.max_events, self.max_devices)


class ValidationSettings(_Section):
    max_bytes: int = Field(65_536, ge=256)
    max_future_skew_s: float = Field(86_400.0, ge=0)
    max_dead_letter_bytes: int = Field(
        16_384,
        ge=256,
        le=262_144,
        description="Payload bytes a dead letter keeps; longer ones keep this prefix, their length and "
        "SHA-256 (base64 adds a third: keep it well under the DLQ topic's max.message.bytes).",
    )

    def config(self) -> ValidationLimits:
        return ValidationLimits(
            max_bytes=self.max_bytes,
            max_future_skew=timedelta(seconds=self.max_future_skew_s),
            dead_letter_bytes=self.max_dead_letter_bytes,
        )


class DedupSettings(_Section):
    window_s: float = Field(
        3600.0,
        gt=0,
        description="How long (wall clock) the job remembers an event_id: a later message with the same "
        "id is a duplicate and changes nothing (it goes to the DLQ with both payloads' hashes).",
    )
    max_ids: int = Field(
        2_000_000,
        ge=1_000,
        description="At most this many ids remembered in all (the oldest are forgotten first); "
        "about 150 bytes each.",
    )

    def config(self) -> DedupConfig:
        return DedupConfig(self.window_s, self.max_ids)


class ScoringSettings(_Section):
    max_batch_size: int = Field(4096, ge=1)
    max_wait_ms: float = Field(
        0.0, ge=0, le=10_000, description="0: score what each activation brings, without waiting."
    )
    rules_refresh_s: float = Field(
        2.0, gt=0, le=3600, description="How often the job re-reads the active and shadow rule-set versions."
    )


class LabelSettings(_Section):
    enabled: bool = Field(
        True, description="Consume kafka.labels_topic into the labels table and risk windows."
    )
    pending_s: float = Field(
        120.0,
        ge=0,
        description="How long a label waits for its event to be scored before it counts as unknown.",
    )
    retry_s: float = Field(1.0, gt=0, description="How often waiting labels look for their events again.")
    maturity_days: int = Field(
        7,
        ge=0,
        le=365,
        description="Training and promotion use events at least this old (relative to the newest label): "
        "younger ones may still get their chargeback.",
    )


class EntityRiskSettings(_Section):
    enabled: bool = True
    entities: tuple[Literal["merchant", "device", "user"], ...] = ("merchant", "device", "user")
    label_delay_days: int = Field(
        2,
        ge=0,
        le=365,
        description="Risk windows end this many days before the event's day (only labels known at the "
        "event's time count either way; the recent days, mostly unlabelled yet, would dilute the shares).",
    )
    windows_days: tuple[int, ...] = Field((1, 7, 30), min_length=1)
    max_frauds: int = Field(4096, ge=16, description="Labelled frauds kept per entity.")
    ttl_s: float = Field(
        45 * 86_400.0, gt=0, description="Idle time (wall clock) before an entity's window is dropped."
    )

    @field_validator("windows_days")
    @classmethod
    def _windows(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 1 <= w <= 365 for w in value) or len(set(value)) != len(value):
            raise ValueError("windows must be distinct whole days in [1, 365]")
        return tuple(sorted(value))

    def config(self) -> RiskConfig:
        return RiskConfig(self.label_delay_days, self.windows_days, self.max_frauds)


class RedisSettings(_Section):
    risk_ttl_s: int = Field(86_400, ge=1)
    blocklist_refresh_s: float = Field(1.0, gt=0)


class SinkSettings(_Section):
    retry_backoff_s: float = Field(0.5, gt=0, description="First retry delay; doubles per failure.")
    max_backoff_s: float = Field(5.0, gt=0)
    give_up_after_s: float = Field(
        600.0, gt=0, description="An outage longer than this fails the job loudly (it waits until then)."
    )
    delivery_timeout_s: float = Field(30.0, gt=0, description="Kafka delivery timeout per attempt.")
    overlap_min_events: int = Field(
        500,
        ge=0,
        description="A batch of at least this many verdicts is stored while the job computes the "
        "next one (finished by it, after `overlap_hold_ms`, or at the epoch's close); smaller ones "
        "are stored before the next is read. 0: never overlap.",
    )
    overlap_hold_ms: float = Field(
        20.0, gt=0, description="Longest an overlapped write waits for the next batch before it is finished."
    )

    def config(self) -> RetryPolicy:
        return RetryPolicy(None, self.retry_backoff_s, self.max_backoff_s, self.give_up_after_s)


class RecoverySettings(_Section):
    dir: str | None = Field(None, description="Bytewax recovery directory (a persistent volume in k8s).")
    partitions: int = Field(4, ge=1, description="Recovery partitions created in an empty directory.")
    snapshot_interval_s: float = Field(5.0, gt=0, description="Epoch length: how often state is snapshot.")
    backup_interval_s: float = Field(0.0, ge=0, description="Keep superseded snapshots this long (backups).")


class ModelSettings(_Section):
    path: str | None = Field(None, description="Model directory (versions + `active` pointer).")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    cpu_threads: int = Field(
        1,
        ge=1,
        le=256,
        description="Threads of each job process's CPU thread pools (PyTorch, OpenMP, BLAS). Scale "
        "with processes: more threads per process only spin on the job's small batches.",
    )
    gpu_min_rows: int = Field(
        2048,
        ge=0,
        description="On a GPU, score the autoencoder on the CPU for batches of fewer rows (0: always "
        "the GPU). A GPU call costs a fixed few hundred µs, several ms when processes share the GPU; "
        "the CPU scores 163 rows in 0.1 ms.",
    )
    refresh_s: float = Field(2.0, gt=0, description="How often the `active` pointer is re-read.")


class ExplainerSettings(_Section):
    model: str = Field("claude-haiku-4-5", min_length=1)
    max_tokens: int = Field(220, ge=16, le=4096)
    timeout_s: float = Field(10.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10, description="SDK retries with backoff (honours retry-after).")
    requests_per_s: float = Field(5.0, gt=0)
    daily_token_budget: int = Field(500_000, ge=0, description="Input + output tokens per UTC day.")
    levels: tuple[Literal["MEDIUM", "HIGH"], ...] = ("HIGH",)

    concurrency: int = Field(4, ge=1, le=64)
    output_topic: str = Field("alerts.explained", min_length=1)
    group_id: str = Field("fraudstream-explainer", min_length=1)
    max_chars: int = Field(800, ge=80)
    history_events: int = Field(5, ge=0, le=50)
    metrics_port: int = Field(
        9120,
        ge=0,
        le=65535,
        description="The explainer's /metrics port (METRICS_PORT, when set, overrides it; 0: none): "
        "not the job's metrics.port, so both run on one host.",
    )


class GatewaySettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    score_budget_ms: float = Field(
        250.0, gt=0, le=10_000, description="How long a score call waits for the job's decision."
    )
    max_budget_ms: float = Field(2_000.0, gt=0, le=60_000, description="Cap on a caller's ?budget_ms.")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Larger requests get 413.")
    max_batch: int = Field(1_000, ge=1, description="Events per ingestion request.")
    require_auth: bool = True
    allow_example_key: bool = Field(
        False, description="Accept the public key of infra/gateway-keys.example.yaml (demos only)."
    )
    keys_file: str | None = Field(
        None,
        description="YAML list of API keys by name and SHA-256 (fraudstream gateway-key); re-read on change. "
        "Required while require_auth is true.",
    )
    rate_per_s: float = Field(
        1_000.0, gt=0, description="Events per second per API key (per replica); a batch counts each event."
    )
    rate_burst: int = Field(2_000, ge=1, description="Events a key may send at once; at least max_batch.")

    @model_validator(mode="after")
    def _burst_holds_a_batch(self) -> GatewaySettings:
        if self.rate_burst < self.max_batch:
            raise ValueError(
                f"rate_burst: {self.rate_burst} is below max_batch {self.max_batch}, so a full batch "
                "could never pass the rate limit"
            )
        return self


class RetentionSettings(_Section):
    keep_days: int | None = Field(
        None,
        ge=1,
        description="Days of scored_events kept by `fraudstream retention` (by event day, UTC; labelled "
        "rows are kept for training). None: keep everything.",
    )


class ConsoleSettings(_Section):
    """``fraudstream console``: the analysts' review queue (docs/console.md)."""

    host: str = "127.0.0.1"
    port: int = Field(8090, ge=0, le=65535)
    group_id: str = Field(
        "fraudstream-console",
        min_length=1,
        description="Consumer group reading kafka.alerts_topic into cases.",
    )
    sla_minutes: dict[str, float] = Field(
        default_factory=lambda: {"HIGH": 60.0, "MEDIUM": 480.0},
        description="Time from the decision until a case of that level is due.",
    )
    label_source: str = Field(
        "analyst",
        pattern=r"^[a-z0-9_.-]{1,64}$",
        description="`source` of the labels a resolution publishes.",
    )
    secure_cookie: bool = Field(
        False, description="Send the session cookie over HTTPS only (set true behind TLS)."
    )

    @field_validator("sla_minutes", mode="before")
    @classmethod
    def _level_names(cls, v: Any) -> Any:
        return {str(k).upper(): m for k, m in v.items()} if isinstance(v, Mapping) else v

    @field_validator("sla_minutes")
    @classmethod
    def _every_level(cls, v: dict[str, float]) -> dict[str, float]:
        missing, unknown = {"MEDIUM", "HIGH"} - set(v), set(v) - {"MEDIUM", "HIGH"}
        if unknown:
            raise ValueError(f"levels are MEDIUM and HIGH, not {', '.join(sorted(unknown))}")
        if missing:
            raise ValueError(f"needs a time for {', '.join(sorted(missing))}")
        if any(m <= 0 for m in v.values()):
            raise ValueError("minutes must be greater than 0")
        return v


class Settings(_Section):
    """Everything the job reads at start-up."""

    kafka: KafkaSettings = KafkaSettings()
    database_url: str = "postgresql://postgres@127.0.0.1:15432/fraudstream"
    redis_url: str = "redis://127.0.0.1:16379/0"
    metrics: MetricsSettings = MetricsSettings()
    state: StateSettings = StateSettings()
    validation: ValidationSettings = ValidationSettings()
    dedup: DedupSettings = DedupSettings()
    scoring: ScoringSettings = ScoringSettings()
    redis: RedisSettings = RedisSettings()
    sinks: SinkSettings = SinkSettings()
    rules: RulesConfig = RulesConfig()
    ensemble: EnsembleConfig = EnsembleConfig()
    models: ModelSettings = ModelSettings()
    recovery: RecoverySettings = RecoverySettings()
    explainer: ExplainerSettings = ExplainerSettings()
    gateway: GatewaySettings = GatewaySettings()
    console: ConsoleSettings = ConsoleSettings()
    retention: RetentionSettings = RetentionSettings()
    labels: LabelSettings = LabelSettings()
    entity_risk: EntityRiskSettings = EntityRiskSettings()

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, v: str) -> str:
        from psycopg import ProgrammingError
        from psycopg.conninfo import conninfo_to_dict

        try:
            conninfo_to_dict(v)
        except ProgrammingError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
            raise ValueError(
                f"not a PostgreSQL URL (postgresql://user@host:port/db) nor key=value settings: {reason}"
            ) from None
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str) -> str:
        scheme = v.partition("://")[0] if "://" in v else ""
        if scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("a Redis URL starts with redis://, rediss:// or unix://")
        return v

    def user_shards(self) -> UserShardConfig:
        """The user shards' configuration: state bounds, the id memory, the user risk window."""
        risk = self.entity_risk
        return UserShardConfig(
            dataclasses.replace(self.state.config(), velocity_window_s=self.rules.velocity_check.window_s),
            dataclasses.replace(self.dedup.config(), shards=self.state.shards),
            risk.config() if risk.enabled and "user" in risk.entities else None,
            self.validation.max_dead_letter_bytes,
        )

    @model_validator(mode="after")
    def _rule_windows(self) -> Settings:
        velocity = self.rules.velocity_check
        if velocity.window_s > self.state.window_s:
            raise ValueError(
                f"rules.velocity_check.window_s: {velocity.window_s:g} is longer than state.window_s "
                f"{self.state.window_s:g}, the look-back the user state keeps"
            )
        rule = self.rules.compromised_merchant
        risk = self.entity_risk
        if rule.enabled and not (risk.enabled and "merchant" in risk.entities):
            raise ValueError(
                "rules.compromised_merchant needs entity_risk.enabled with 'merchant' in "
                "entity_risk.entities (or set rules.compromised_merchant.enabled: false)"
            )
        if rule.enabled and rule.window_days not in risk.windows_days:
            raise ValueError(
                f"rules.compromised_merchant.window_days: {rule.window_days} is not one of "
                f"entity_risk.windows_days {list(risk.windows_days)}"
            )
        return self


ENV_VARS: dict[str, tuple[str, ...]] = {
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "DATABASE_URL": ("database_url",),
    "REDIS_URL": ("redis_url",),
    "METRICS_PORT": ("metrics", "port"),
    "FRAUDSTREAM_MODEL_DIR": ("models", "path"),
    "FRAUDSTREAM_RECOVERY_DIR": ("recovery", "dir"),
}
"""Contract environment variables and the setting each one overrides."""

_NESTED_PREFIX = "FRAUDSTREAM__"


_SECRET_KEYS = ("password", "secret", "token", "key")


def redact_url(url: str) -> str:
    """Hide the password of a URL.

    >>> redact_url("postgresql://app:s3cret@db:5432/fraud")
    'postgresql://app:***@db:5432/fraud'
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in userinfo else url


def redacted(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with passwords and secret client settings hidden (for printing)."""
    data = settings.model_dump(mode="json")
    data["database_url"] = redact_url(data["database_url"])
    data["redis_url"] = redact_url(data["redis_url"])
    data["kafka"]["client_config"] = {
        k: "***" if any(s in k.lower() for s in _SECRET_KEYS) else v
        for k, v in data["kafka"]["client_config"].items()
    }
    return data


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field."""


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        value = err["input"]
        if loc in {"database_url", "redis_url"} and isinstance(value, str):
            value = redact_url(value)
        got = f" (got {value!r})" if not isinstance(value, dict) else ""
        parts.append(f"{loc}: {err['msg']}{got}")
    return "; ".join(parts)


CONFIG_FILE = "fraudstream.yaml"
"""The config file read from the current directory when neither ``--config`` nor
``FRAUDSTREAM_CONFIG`` names one."""


@dataclasses.dataclass(frozen=True)
class ConfigSource:
    """Which YAML file the settings come from (``path`` None: the built-in defaults),
    and what chose it: ``--config``, ``FRAUDSTREAM_CONFIG`` or the current directory.

    >>> str(ConfigSource(None, "defaults"))
    'built-in defaults'
    >>> str(ConfigSource(Path("/etc/fs.yaml"), "FRAUDSTREAM_CONFIG"))
    '/etc/fs.yaml (FRAUDSTREAM_CONFIG)'
    """

    path: Path | None
    origin: Literal["--config", "FRAUDSTREAM_CONFIG", "current directory", "defaults"]

    def __str__(self) -> str:
        if self.path is None:
            return "built-in defaults"
        if self.origin == "current directory":
            return f"./{CONFIG_FILE}"
        if self.origin == "FRAUDSTREAM_CONFIG":
            return f"{self.path} (FRAUDSTREAM_CONFIG)"
        return str(self.path)


def find_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> ConfigSource:
    """The config file to read: ``path`` (``--config``), else ``$FRAUDSTREAM_CONFIG``,
    else ``./fraudstream.yaml`` if there is one, else none (the built-in defaults).

    >>> find_config(env={}, cwd=Path("/nonexistent"))
    ConfigSource(path=None, origin='defaults')
    """
    env = os.environ if env is None else env
    if path:
        return ConfigSource(Path(path), "--config")
    if env.get("FRAUDSTREAM_CONFIG"):
        return ConfigSource(Path(env["FRAUDSTREAM_CONFIG"]), "FRAUDSTREAM_CONFIG")
    local = (Path.cwd() if cwd is None else cwd) / CONFIG_FILE
    if local.is_file():
        return ConfigSource(local, "current directory")
    return ConfigSource(None, "defaults")


def load_settings(
    path: str | Path | None = None, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Settings:
    """Read and validate the configuration; raise :class:`ConfigError` if it is wrong."""
    return load_config(path, env, cwd)[0]


def load_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> tuple[Settings, ConfigSource]:
    """:func:`load_settings`, and the :class:`ConfigSource` it read (to tell the user)."""
    env = os.environ if env is None else env
    found = find_config(path, env, cwd)
    log.debug("config: %s", found)
    data: dict[str, Any] = {}
    source = "defaults"
    if found.path is not None:
        path, source = found.path, str(found)
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        data = loaded or {}
    try:
        Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration ({source}): {_describe(exc)}") from exc
    for name, target in ENV_VARS.items():
        if env.get(name):
            _set(data, target, env[name])
    for name, value in env.items():
        if name.startswith(_NESTED_PREFIX):
            keys = tuple(k.lower() for k in name[len(_NESTED_PREFIX) :].split("__"))
            _set(data, keys, yaml.safe_load(value))
    try:
        return Settings.model_validate(data), found
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration (environment): {_describe(exc)}") from exc
