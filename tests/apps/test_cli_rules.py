"""`fraudstream rules` against the real embedded Postgres: apply, list, show, activate,
shadow, diff, and the one-line errors of bad input."""

from __future__ import annotations

import os

import pytest
import yaml
from typer.testing import CliRunner

from apps.cli import app

pytestmark = pytest.mark.integration

STRICT = """
rules:
  high_amount: {points: 35, multiplier: 2.0}
custom:
  - name: big_jewelry
    when: amount > 3 * user_mean_amount and merchant_category in ["jewelry", "watches"]
    points: 30
    reason: "{amount} on {merchant_category}"
"""


@pytest.fixture
def rules(make_settings, monkeypatch):
    monkeypatch.delenv("FRAUDSTREAM_CONFIG", raising=False)
    env = {"DATABASE_URL": make_settings().database_url, "FRAUDSTREAM_USER": "ana", "COLUMNS": "200"}
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, ["rules", *args], env={**os.environ, **env})

    return run


def test_the_rule_set_workflow(rules, tmp_path):
    shown = rules("show")
    assert shown.exit_code == 0 and "config file's rules" in shown.output
    base = tmp_path / "base.yaml"
    base.write_text(shown.stdout)  # what show prints, apply accepts unchanged
    assert "stored as version 1" in rules("apply", str(base), "--comment", "baseline", "--activate").output
    again = rules("apply", str(base), "--comment", "same")
    assert again.exit_code == 0 and "identical to existing version 1" in again.output
    strict = tmp_path / "strict.yaml"
    strict.write_text(STRICT)
    assert "version 2 (shadow)" in rules("apply", str(strict), "--comment", "stricter", "--shadow").output
    listed = rules("list").output
    assert "active" in listed and "shadow" in listed and "stricter" in listed and "ana" in listed
    diff = rules("diff", "1", "2").output
    assert "-    points: 20" in diff and "+    points: 35" in diff and "+- name: big_jewelry" in diff
    assert rules("activate", "2").stdout.strip() == "active rule set: version 2 (was 1)"
    doc = yaml.safe_load(rules("show").stdout)
    assert doc["custom"][0]["name"] == "big_jewelry" and doc["rules"]["high_amount"]["points"] == 35
    assert "no shadow" in rules("shadow", "--clear").output


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("custom: [{name: x, points: 5, when: 'amount >> 2'}]", "custom[0] (x).when: position"),
        ("custom: [{name: x, points: 5, when: 'amout > 2'}]", "unknown name 'amout'"),
        ("rules: {velocity_check: {points: 500}}", "rules.velocity_check.points"),
        ("rulez: {}", "rulez"),
        ("custom: [unclosed", "not YAML"),
    ],
)
def test_bad_rule_sets_are_refused_in_one_line(rules, tmp_path, content, expected):
    f = tmp_path / "bad.yaml"
    f.write_text(content)
    result = rules("apply", str(f), "--comment", "x")
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split()) and "Traceback" not in result.output


def test_unknown_versions_and_misuse(rules):
    assert rules("activate", "9").exit_code == 2
    assert rules("show", "9").exit_code == 2
    assert rules("shadow").exit_code == 2
