"""The features benchmark runs and reports every figure (never how fast anything is)."""

from __future__ import annotations

from bench.features import main


def test_reports_every_cost_per_event():
    r = main(["--events", "3000", "--users", "100", "--repeats", "1"])
    assert r["events"] > 2000
    for key in (
        "us_per_event",
        "rules_builtin_us_per_event",
        "rules_custom3_us_per_event",
        "pickle_accepted_us_per_event",
        "pickle_featured_us_per_event",
    ):
        assert r[key] > 0, key
    assert r["pickle_featured_us_per_event"] > r["pickle_accepted_us_per_event"], (
        "a featured event carries more"
    )
    for name in ("accepted", "featured"):
        one, many = r[f"pickle_{name}_in_1_us_per_event"], r[f"pickle_{name}_in_64_us_per_event"]
        assert one > many > 0, "one event per item costs more per event than 64"
