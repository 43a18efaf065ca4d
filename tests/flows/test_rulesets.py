"""Rule-set versions in the real embedded Postgres: the store, the audit trail, the live view."""

from __future__ import annotations

import psycopg
import pytest

from flows.rulesets import LiveRuleSets, RuleStore
from infra.migrations import apply_migrations
from operators.rules import RulesConfig
from operators.rulesets import RuleSetDocument

pytestmark = pytest.mark.integration

STRICT = RuleSetDocument.model_validate(
    {
        "rules": {"high_amount": {"points": 35, "multiplier": 2.0}},
        "custom": [{"name": "big", "when": "amount > 5000", "points": 40}],
    }
)


@pytest.fixture
def store(make_settings):
    url = make_settings().database_url
    apply_migrations(url)
    return RuleStore(url)


def test_versions_are_immutable_numbered_and_deduplicated_with_audit_rows(store):
    assert store.apply(RuleSetDocument(), "ana", "baseline") == (1, True)
    assert store.apply(STRICT, "bo", "stricter amounts") == (2, True)
    assert store.apply(RuleSetDocument.model_validate(STRICT.canonical()), "cy", "again") == (2, False)
    assert [(v.version, v.author, v.comment) for v in store.versions()] == [
        (1, "ana", "baseline"),
        (2, "bo", "stricter amounts"),
    ]
    assert store.get(2).document == STRICT
    assert store.point("active", 2, "bo") is None
    assert store.point("active", 1, "cy") == 2
    store.point("shadow", 2, "cy")
    assert store.pointers() == {"active": 1, "shadow": 2}
    store.point("shadow", None, "cy")
    assert store.pointers() == {"active": 1}
    with pytest.raises(LookupError, match="no rule set version 9"):
        store.point("active", 9, "x")
    with psycopg.connect(store.database_url) as conn:
        audit = conn.execute(
            "SELECT actor, action, subject, before, after FROM audit_log ORDER BY id"
        ).fetchall()
    assert [(a, act, subj) for a, act, subj, _, _ in audit] == [
        ("ana", "rules.apply", "rules/1"),
        ("bo", "rules.apply", "rules/2"),
        ("bo", "rules.activate", "rules/active"),
        ("cy", "rules.activate", "rules/active"),
        ("cy", "rules.shadow", "rules/shadow"),
        ("cy", "rules.shadow", "rules/shadow"),
    ]
    assert audit[3][3:] == ({"version": 2}, {"version": 1})


def test_the_live_view_follows_the_pointers_and_survives_an_unreachable_database(store):
    now = [0.0]
    live = LiveRuleSets(store.database_url, RulesConfig(), refresh_s=2.0, clock=lambda: now[0])
    active, shadow = live()
    assert active.version is None and shadow is None  # no version yet: the config file's rules
    v, _ = store.apply(STRICT, "ana", "strict")
    store.point("active", v, "ana")
    assert live()[0].version is None  # not re-read before refresh_s
    now[0] = 2.0
    active, shadow = live()
    assert active.version == v and active.config.high_amount.points == 35 and shadow is None
    assert [c.name for c, _ in active.compiled] == ["big"]
    live.store = RuleStore("postgresql://nobody@127.0.0.1:1/none")
    now[0] = 4.0
    assert live()[0].version == v  # Postgres gone: keep scoring with the last good version
