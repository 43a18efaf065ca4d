"""A rule set: the built-in rules' settings plus custom rules, as one versioned document.

A document is what ``fraudstream rules apply FILE`` takes and ``rules show``
prints (YAML): the ``rules`` section of the config file and a list of custom
rules, each a safe expression (:mod:`operators.expressions`) over the event and
its features. Every expression is compiled when the document is validated, so
a bad one is refused at ``apply`` with its position, never in the job.

>>> doc = RuleSetDocument.model_validate({"custom": [{"name": "big_jewelry", "points": 30,
...     "when": 'amount > 1000 and merchant_category == "jewelry"', "reason": "{amount} on jewelry"}]})
>>> rs = RuleSet.build(doc, version=3)
>>> (rs.version, [c.name for c in rs.document.custom])
(3, ['big_jewelry'])
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from operators.events import TransactionEvent
from operators.expressions import Compiled, ExpressionError, compile_expression, render_reason
from operators.features import Features
from operators.rules import RULES, RuleContext, RuleHit, RulesConfig, evaluate_rules

__all__ = ["VARIABLES", "CustomRule", "RuleSet", "RuleSetDocument", "event_variables"]

_EVENT_FIELDS = (
    "amount",
    "currency",
    "merchant_name",
    "merchant_category",
    "merchant_id",
    "device_id",
    "ip_address",
    "user_id",
)
_LOCATION_FIELDS = ("country", "city", "latitude", "longitude")
_FEATURE_FIELDS = tuple(f for f in Features.__struct_fields__ if f not in ("risk", "amount"))
_RISK = re.compile(r"(merchant|device|user)_(events|frauds|fraud_share)_[0-9]+d")

VARIABLES: frozenset[str] = frozenset((*_EVENT_FIELDS, *_LOCATION_FIELDS, *_FEATURE_FIELDS))
"""Names a custom rule can use: the event's fields, its location's, every feature;
entity risk features (``merchant_fraud_share_7d``, ...) too."""


class CustomRule(BaseModel):
    """One declarative rule: when ``when`` is true, add ``points`` with ``reason``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    when: str = Field(min_length=1, max_length=2000)
    points: int = Field(ge=0, le=100)
    reason: str = Field("", max_length=500)
    """``{name}`` placeholders take the variables' values (e.g. ``{amount}``)."""
    enabled: bool = True
    force_high: bool = False

    @field_validator("name")
    @classmethod
    def _not_built_in(cls, value: str) -> str:
        if value in RULES:
            raise ValueError(f"{value!r} is a built-in rule: configure it under rules")
        return value


class RuleSetDocument(BaseModel):
    """What a rule-set version holds (``rules apply`` input, ``rules show`` output)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rules: RulesConfig = RulesConfig()
    custom: tuple[CustomRule, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> RuleSetDocument:
        names = [c.name for c in self.custom]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"custom: rule names must be unique, repeated: {dup}")
        for i, rule in enumerate(self.custom):
            try:
                _compile(rule.when)
            except ExpressionError as exc:
                raise ValueError(f"custom[{i}] ({rule.name}).when: {exc}") from None
        return self

    def canonical(self) -> dict[str, Any]:
        """The document as plain data, every default spelled out (what a version stores)."""
        data: dict[str, Any] = self.model_dump(mode="json")
        return data

    def digest(self) -> str:
        """SHA-256 of the canonical JSON: two equal documents have one digest."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


class _KnownNames:
    """Names a custom rule may use: :data:`VARIABLES` plus any entity risk feature."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in VARIABLES or _RISK.fullmatch(name) is not None)


_NAMES = _KnownNames()


def _compile(text: str) -> Compiled:
    return compile_expression(text, _NAMES)


def event_variables(ev: TransactionEvent, f: Features) -> dict[str, Any]:
    """The values a custom rule sees for one event."""
    values: dict[str, Any] = {name: getattr(ev, name) for name in _EVENT_FIELDS}
    loc = ev.location
    for name in _LOCATION_FIELDS:
        values[name] = getattr(loc, name) if loc is not None else None
    for name in _FEATURE_FIELDS:
        values[name] = getattr(f, name)
    values.update(f.risk)
    return values


@dataclass(frozen=True)
class RuleSet:
    """A document compiled for scoring; ``version`` None: the config file's rules."""

    document: RuleSetDocument
    version: int | None = None
    compiled: tuple[tuple[CustomRule, Compiled], ...] = field(default=(), repr=False)

    @classmethod
    def build(cls, document: RuleSetDocument, version: int | None = None) -> RuleSet:
        compiled = tuple((c, _compile(c.when)) for c in document.custom if c.enabled)
        return cls(document, version, compiled)

    @classmethod
    def from_config(cls, rules: RulesConfig) -> RuleSet:
        return cls.build(RuleSetDocument(rules=rules))

    @property
    def config(self) -> RulesConfig:
        return self.document.rules

    def evaluate(self, ev: TransactionEvent, f: Features, ctx: RuleContext) -> list[RuleHit]:
        """Built-in rules (``RULES`` order), then the custom rules that fire (document order)."""
        hits = evaluate_rules(ev, f, ctx)
        if self.compiled:
            hits += self.custom_hits(ev, f)
        return hits

    def custom_hits(self, ev: TransactionEvent, f: Features) -> list[RuleHit]:
        """The custom rules that fire, in document order."""
        hits = []
        values = event_variables(ev, f)
        for rule, test in self.compiled:
            if test(values):
                reason = render_reason(rule.reason, values) if rule.reason else f"custom rule {rule.name}"
                hits.append(RuleHit(rule.name, rule.points, reason, rule.force_high))
        return hits
