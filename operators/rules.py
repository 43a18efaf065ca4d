"""Explainable fraud rules: pure functions returning a hit with points and a reason.

Thresholds and points come from the ``rules`` section of the YAML config and are
validated at start-up. Each rule is ``rule(event, features, context) -> RuleHit | None``.

>>> from datetime import datetime, timezone
>>> from operators.events import TransactionEvent, Location
>>> ev = TransactionEvent("e1", "u1", 10.0, datetime(2024, 1, 1, 12, tzinfo=timezone.utc),
...                       location=Location(39.0, 125.7, "KP"))
>>> ctx = RuleContext(RulesConfig(), Blocklists())
>>> country_blacklist(ev, None, ctx).reason
'transaction from KP, a blocked country'
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from operators.entity_risk import RiskConfig, risk_feature_names
from operators.events import TransactionEvent
from operators.features import Features

__all__ = [
    "RULES",
    "Blocklists",
    "RuleContext",
    "RuleHit",
    "RulesConfig",
    "allow_listed",
    "evaluate_rules",
]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True
    points: int = Field(ge=0, le=100)
    force_high: bool = False


class VelocityCheck(_Rule):
    """More than ``max_events`` events in ``window_s`` seconds (the current one included).

    The count is the feature ``velocity_events``, taken over this window (the
    settings pass it to the user state's limits); it must fit in ``state.window_s``.
    """

    points: int = Field(25, ge=0, le=100)
    max_events: int = Field(5, ge=1)
    window_s: float = Field(600.0, gt=0)


class HighAmount(_Rule):
    """Amount above ``multiplier`` times the user's mean once ``min_history`` events are known."""

    points: int = Field(20, ge=0, le=100)
    multiplier: float = Field(3.0, gt=1.0)
    min_history: int = Field(3, ge=1)


class ImpossibleTravel(_Rule):
    """More than ``max_km`` from the previous located event less than ``within_s`` earlier."""

    points: int = Field(30, ge=0, le=100)
    max_km: float = Field(500.0, gt=0)
    within_s: float = Field(3600.0, gt=0)


class UnusualHours(_Rule):
    """Local hour (the event's own UTC offset) in ``[start_hour, end_hour)``."""

    points: int = Field(10, ge=0, le=100)
    start_hour: int = Field(0, ge=0, le=23)
    end_hour: int = Field(5, ge=1, le=24)


class NewDevice(_Rule):
    """A device the user has not used before, for more than ``min_amount``.

    A user's very first event has no devices to compare with and is not flagged.
    """

    points: int = Field(15, ge=0, le=100)
    min_amount: float = Field(500.0, ge=0)


class CountryBlacklist(_Rule):
    """Country in the configured list or the Redis set ``fraud:blocklist:countries``."""

    points: int = Field(85, ge=0, le=100)
    force_high: bool = True
    countries: frozenset[str] = frozenset({"KP", "IR", "SY"})

    @field_validator("countries")
    @classmethod
    def _alpha2(cls, value: frozenset[str]) -> frozenset[str]:
        bad = sorted(c for c in value if len(c) != 2 or not c.isalpha() or not c.isupper())
        if bad:
            raise ValueError(f"not ISO 3166 alpha-2 codes: {bad}")
        return value

    @field_serializer("countries")
    def _sorted(self, value: frozenset[str]) -> list[str]:
        """Sorted, so a rule set's YAML and digest do not depend on set iteration order."""
        return sorted(value)


class Blacklisted(_Rule):
    """Device or user in the Redis blocklist sets."""

    points: int = Field(85, ge=0, le=100)
    force_high: bool = True


class CompromisedMerchant(_Rule):
    """The merchant (terminal) had at least ``min_frauds`` confirmed frauds, and at least
    ``min_share`` of its events were fraud, in the ``window_days`` window that ends a label
    delay ago (``entity_risk``): every card used there is at risk, however normal it looks."""

    points: int = Field(40, ge=0, le=100)
    window_days: int = Field(7, ge=1, le=365)
    min_frauds: int = Field(2, ge=1)
    min_share: float = Field(0.05, gt=0, le=1)


class RulesConfig(BaseModel):
    """The ``rules`` section of the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    velocity_check: VelocityCheck = VelocityCheck()
    high_amount: HighAmount = HighAmount()
    impossible_travel: ImpossibleTravel = ImpossibleTravel()
    unusual_hours: UnusualHours = UnusualHours()
    new_device: NewDevice = NewDevice()
    country_blacklist: CountryBlacklist = CountryBlacklist()
    device_blacklist: Blacklisted = Blacklisted()
    user_blacklist: Blacklisted = Blacklisted()
    compromised_merchant: CompromisedMerchant = CompromisedMerchant()


@dataclass(frozen=True, slots=True)
class Blocklists:
    """Live lists (from Redis): blocked countries (merged with the configured
    ones), devices and users, and the allow list of users and devices whose
    events are approved whatever fires (:func:`allow_listed`)."""

    countries: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    allowed_users: frozenset[str] = frozenset()
    allowed_devices: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class RuleContext:
    config: RulesConfig
    blocklists: Blocklists = field(default_factory=Blocklists)
    enabled: tuple[Rule, ...] = field(init=False, repr=False, compare=False)
    """The enabled rules in ``RULES`` order, looked up once per context (once per batch)."""

    def __post_init__(self) -> None:
        enabled = tuple(rule for name, rule in RULES.items() if getattr(self.config, name).enabled)
        object.__setattr__(self, "enabled", enabled)


class RuleHit(msgspec.Struct, frozen=True):
    """One rule that fired: its name, points and a sentence for analysts."""

    rule: str
    points: int
    reason: str
    force_high: bool = False


def _hit(ctx: RuleContext, name: str, reason: str) -> RuleHit:
    rule: _Rule = getattr(ctx.config, name)
    return RuleHit(name, rule.points, reason, rule.force_high)


def duration_text(seconds: float) -> str:
    """A window length as analysts read it.

    >>> [duration_text(s) for s in (600, 90, 3600, 5400, 86400, 45.5)]
    ['10 minutes', '90 seconds', '1 hour', '90 minutes', '24 hours', '45.5 seconds']
    """
    for unit, size in (("hour", 3600.0), ("minute", 60.0)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"


def velocity_check(ev: TransactionEvent, f: Features, ctx: RuleContext) -> RuleHit | None:
    cfg = ctx.config.velocity_check
    if f.velocity_events > cfg.max_events:
        return _hit(
            ctx,
            "velocity_check",
            f"{f.velocity_events} transactions in {duration_text(cfg.window_s)} (limit {cfg.max_events})",
        )
    return None


def high_amount(ev: TransactionEvent, f: Features, ctx: RuleContext) -> RuleHit | None:
    cfg = ctx.config.high_amount
    mean = f.user_mean_amount
    if f.user_event_count >= cfg.min_history and mean and ev.amount > cfg.multiplier * mean:
        return _hit(
            ctx,
            "high_amount",
            f"amount {ev.amount:.2f} {ev.currency} is {ev.amount / mean:.1f}x "
            f"the user's average of {mean:.2f}",
        )
    return None


def impossible_travel(ev: TransactionEvent, f: Features, ctx: RuleContext) -> RuleHit | None:
    cfg = ctx.config.impossible_travel
    if (
        f.distance_km is not None
        and f.seconds_since_last_location is not None
        and f.distance_km > cfg.max_km
        and f.seconds_since_last_location <= cfg.within_s
    ):
        minutes = f.seconds_since_last_location / 60.0
        return _hit(
            ctx,
            "impossible_travel",
            f"{f.distance_km:.0f} km from the previous transaction {minutes:.0f} minutes earlier",
        )
    return None


def unusual_hours(ev: TransactionEvent, f: Features, ctx: RuleContext) -> RuleHit | None:
    cfg = ctx.config.unusual_hours
    if cfg.start_hour <= f.hour_of_day < cfg.end_hour:
        return _hit(ctx, "unusual_hours", f"made at {ev.timestamp.strftime('%H:%M')} local time")
    return None


def new_device(ev: TransactionEvent, f: Features, ctx: RuleContext) -> RuleHit | None:
    cfg = ctx.config.new_device
    if f.device_known is False and f.known_devices > 0 and ev.amount > cfg.min_amount:
        return _hit(
            ctx, "new_device", f"first use of device {ev.device_id!r} for {ev.amount:.2f} {ev.currency}"
        )
    return None


def country_blacklist(ev: TransactionEvent, f: Features | None, ctx: RuleContext) -> RuleHit | None:
    country = ev.location.country if ev.location else None
    if country and (country in ctx.config.country_blacklist.countries or country in ctx.blocklists.countries):
        return _hit(ctx, "country_blacklist", f"transaction from {country}, a blocked country")
    return None


def device_blacklist(ev: TransactionEvent, f: Features, ctx: RuleContext) -> RuleHit | None:
    if ev.device_id and ev.device_id in ctx.blocklists.devices:
        return _hit(ctx, "device_blacklist", f"device {ev.device_id!r} is on the blocklist")
    return None


def user_blacklist(ev: TransactionEvent, f: Features, ctx: RuleContext) -> RuleHit | None:
    if ev.user_id in ctx.blocklists.users:
        return _hit(ctx, "user_blacklist", "user is on the blocklist")
    return None


@functools.cache
def _merchant_window(days: int) -> tuple[str, ...]:
    """The merchant risk features of a ``days`` window: events, frauds, fraud share."""
    return risk_feature_names("merchant", RiskConfig(windows=(days,)))


def compromised_merchant(ev: TransactionEvent, f: Features, ctx: RuleContext) -> RuleHit | None:
    cfg = ctx.config.compromised_merchant
    w = cfg.window_days
    events_name, frauds_name, share_name = _merchant_window(w)
    risk = f.risk
    frauds, share = risk.get(frauds_name), risk.get(share_name)
    if frauds is not None and share is not None and frauds >= cfg.min_frauds and share >= cfg.min_share:
        merchant = ev.merchant_id or ev.merchant_name
        events = risk.get(events_name) or 0
        return _hit(
            ctx,
            "compromised_merchant",
            f"merchant {merchant!r}: {frauds:.0f} of {events:.0f} transactions in its {w}-day "
            f"risk window were confirmed fraud ({share:.0%})",
        )
    return None


Rule = Callable[[TransactionEvent, Features, RuleContext], RuleHit | None]

RULES: dict[str, Rule] = {
    "velocity_check": velocity_check,
    "high_amount": high_amount,
    "impossible_travel": impossible_travel,
    "unusual_hours": unusual_hours,
    "new_device": new_device,
    "country_blacklist": country_blacklist,
    "device_blacklist": device_blacklist,
    "user_blacklist": user_blacklist,
    "compromised_merchant": compromised_merchant,
}
"""Every rule by its contract name (the names in ``triggered_rules``)."""


def allow_listed(ev: TransactionEvent, lists: Blocklists) -> RuleHit | None:
    """The ``allow_list`` hit (0 points) when the event's user or device is on the
    allow list: its verdict becomes approve (``operators.ensemble.allowed``).

    >>> from datetime import datetime, timezone
    >>> ev = TransactionEvent("e1", "u1", 10.0, datetime(2024, 1, 1, 12, tzinfo=timezone.utc), device_id="d9")
    >>> allow_listed(ev, Blocklists(allowed_devices=frozenset({"d9"}))).reason
    "device 'd9' is on the allow list"
    >>> allow_listed(ev, Blocklists()) is None
    True
    """
    if ev.user_id in lists.allowed_users:
        return RuleHit("allow_list", 0, "user is on the allow list")
    if ev.device_id and ev.device_id in lists.allowed_devices:
        return RuleHit("allow_list", 0, f"device {ev.device_id!r} is on the allow list")
    return None


def evaluate_rules(ev: TransactionEvent, f: Features, ctx: RuleContext) -> list[RuleHit]:
    """All enabled rules that fire for ``ev``, in ``RULES`` order."""
    hits = []
    for rule in ctx.enabled:
        hit = rule(ev, f, ctx)
        if hit is not None:
            hits.append(hit)
    return hits
