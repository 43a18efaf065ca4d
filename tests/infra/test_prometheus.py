"""Prometheus config and rules, checked by the real promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "infra" / "prometheus"

promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool missing: install the Debian package prometheus (.ci/run does)",
)


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=PROM_DIR, capture_output=True, text=True, timeout=120)


@promtool
def test_config_is_valid_and_loads_the_rule_files():
    result = _promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout + result.stderr


@promtool
def test_rules_are_valid():
    result = _promtool("check", "rules", "rules/recording.yml", "rules/alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@promtool
def test_alert_unit_tests_pass():
    result = _promtool("test", "rules", "tests/alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@promtool
def test_promtool_catches_a_broken_rule(tmp_path):
    """The checks above can fail: a rule with a PromQL syntax error is refused."""
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [{"record": "a:b", "expr": "sum(("}]}]}))
    assert _promtool("check", "rules", str(bad)).returncode != 0


def _rules() -> list[dict]:
    out = []
    for name in ("recording.yml", "alerts.yml"):
        for group in yaml.safe_load((PROM_DIR / "rules" / name).read_text())["groups"]:
            out += group["rules"]
    return out


def test_every_alert_has_a_unit_test_a_runbook_entry_and_a_severity():
    alerts = [r for r in _rules() if "alert" in r]
    tested = (PROM_DIR / "tests" / "alerts_test.yml").read_text()
    runbook = (ROOT / "docs" / "operations.md").read_text()
    assert {a["alert"] for a in alerts} >= {
        "FraudstreamJobDown",
        "FraudstreamConsumerLagGrowing",
        "FraudstreamDeadLetterRateHigh",
        "FraudstreamLatencySLOFastBurn",
        "FraudstreamSinkFailing",
    }
    for a in alerts:
        assert f"alertname: {a['alert']}" in tested, a["alert"]
        assert a["alert"] in runbook, f"{a['alert']} missing from docs/operations.md"
        assert a["labels"]["severity"] in {"warning", "critical"}
        assert a["annotations"]["summary"] and a["annotations"]["description"]


def test_recording_rule_names_follow_the_convention():
    for r in _rules():
        if "record" in r:
            level, _metric, _ops = r["record"].split(":")
            assert level == "fraudstream", r["record"]


def test_compose_scrapes_every_job_process():
    """The compose job runs N processes on METRICS_PORT + i: Prometheus needs N targets."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    job = compose["services"]["job"]
    processes = int(job["command"][job["command"].index("--processes") + 1])
    port = int(job["environment"]["METRICS_PORT"])
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    (scrape,) = [s for s in config["scrape_configs"] if s["job_name"] == "fraudstream"]
    targets = [t for sc in scrape["static_configs"] for t in sc["targets"]]
    assert targets == [f"job:{port + i}" for i in range(processes)]
    (explainer,) = [s for s in config["scrape_configs"] if s["job_name"] == "fraudstream-explainer"]
    assert explainer["static_configs"][0]["targets"] == [
        f"explainer:{compose['services']['explainer']['environment']['METRICS_PORT']}"
    ]
