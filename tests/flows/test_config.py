from pathlib import Path

import pytest

from flows.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_yaml_is_valid_and_equals_the_defaults():
    assert load_settings(ROOT / "fraudstream.yaml", env={}) == Settings()
    text = (ROOT / "fraudstream.yaml").read_text()
    for section in Settings.model_fields:
        if section not in {"database_url", "redis_url"}:
            assert f"\n{section}:" in text, f"fraudstream.yaml does not show the {section} section"


def test_contract_environment_variables_override_the_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka:\n  bootstrap_servers: file:9092\nmetrics:\n  port: 1000\n")
    s = load_settings(
        cfg,
        env={
            "KAFKA_BOOTSTRAP_SERVERS": "env:9092",
            "DATABASE_URL": "postgresql://x/y",
            "REDIS_URL": "redis://r:1/0",
            "METRICS_PORT": "2000",
        },
    )
    assert s.kafka.bootstrap_servers == "env:9092"
    assert (s.database_url, s.redis_url, s.metrics.port) == ("postgresql://x/y", "redis://r:1/0", 2000)


def test_config_path_from_environment_and_nested_overrides(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("rules:\n  velocity_check:\n    max_events: 9\n")
    s = load_settings(
        env={
            "FRAUDSTREAM_CONFIG": str(cfg),
            "FRAUDSTREAM__RULES__HIGH_AMOUNT__MULTIPLIER": "4.5",
            "FRAUDSTREAM__KAFKA__ALERTS_TOPIC": "my-alerts",
        }
    )
    assert s.rules.velocity_check.max_events == 9
    assert s.rules.high_amount.multiplier == 4.5
    assert s.kafka.alerts_topic == "my-alerts"


@pytest.mark.parametrize(
    ("yaml_text", "field"),
    [
        ("rules:\n  velocity_check:\n    max_events: 0\n", "rules.velocity_check.max_events"),
        ("rules:\n  velocity_chek: {}\n", "rules.velocity_chek"),
        ("ensemble:\n  medium_threshold: 90\n", "ensemble"),
        ("kafka:\n  start_offset: middle\n", "kafka.start_offset"),
        ("rules:\n  country_blacklist:\n    countries: [xx1]\n", "rules.country_blacklist.countries"),
        ("scoring:\n  max_batch_size: -1\n", "scoring.max_batch_size"),
    ],
)
def test_bad_config_names_the_field(tmp_path, yaml_text, field):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    assert field in str(err.value)
    assert str(cfg) in str(err.value)


def test_unreadable_or_non_mapping_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "missing.yaml", env={})
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_settings(bad, env={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("kafka: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(broken, env={})


def test_bad_environment_value_names_the_field():
    with pytest.raises(ConfigError, match=r"\(environment\): metrics.port"):
        load_settings(env={"METRICS_PORT": "not-a-port"})


def test_cli_refuses_to_start_with_a_bad_config(tmp_path):
    from typer.testing import CliRunner

    from apps.cli import app

    cfg = tmp_path / "bad.yaml"
    cfg.write_text("rules:\n  high_amount:\n    multiplier: zero\n")
    result = CliRunner().invoke(app, ["check-config", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "rules.high_amount.multiplier" in result.output


def test_secrets_never_printed_by_check_config():
    from typer.testing import CliRunner

    from apps.cli import app

    env = {
        "DATABASE_URL": "postgresql://app:pg-s3cret@db:5432/fraud",
        "REDIS_URL": "redis://:rd-s3cret@r:6379/0",
        "FRAUDSTREAM__KAFKA__CLIENT_CONFIG": '{"sasl.password": "kf-s3cret", "security.protocol": "SASL_SSL"}',
    }
    result = CliRunner(env=env).invoke(app, ["check-config"])
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    assert "SASL_SSL" in result.output and "postgresql://app:***@db:5432/fraud" in result.output


def test_domain_defaults_equal_the_settings_defaults():
    """Each section's ``config()`` is the domain object's own default: no drift between the two."""
    from operators.dedup import DedupConfig
    from operators.entity_risk import RiskConfig
    from operators.events import ValidationLimits
    from operators.sinks.retry import RetryPolicy
    from operators.state import StateLimits

    s = Settings()
    assert s.validation.config() == ValidationLimits()
    assert s.state.config() == StateLimits()
    assert s.dedup.config() == DedupConfig()
    assert s.entity_risk.config() == RiskConfig()
    policy, default = s.sinks.config(), RetryPolicy()
    assert (policy.backoff_s, policy.max_backoff_s, policy.give_up_after_s, policy.max_retries) == (
        default.backoff_s,
        default.max_backoff_s,
        default.give_up_after_s,
        default.max_retries,
    )


def test_config_file_is_the_option_then_the_variable_then_the_current_directory(tmp_path):
    from flows.config import find_config

    here = tmp_path / "project"
    here.mkdir()
    assert str(find_config(env={}, cwd=here)) == "built-in defaults"
    (here / "fraudstream.yaml").write_text("kafka:\n  alerts_topic: from-cwd\n")
    found = find_config(env={}, cwd=here)
    assert (found.path, found.origin, str(found)) == (
        here / "fraudstream.yaml",
        "current directory",
        "./fraudstream.yaml",
    )
    assert load_settings(env={}, cwd=here).kafka.alerts_topic == "from-cwd"
    named = tmp_path / "named.yaml"
    named.write_text("kafka:\n  alerts_topic: from-env\n")
    assert load_settings(env={"FRAUDSTREAM_CONFIG": str(named)}, cwd=here).kafka.alerts_topic == "from-env"
    assert (
        str(find_config(env={"FRAUDSTREAM_CONFIG": str(named)}, cwd=here)) == f"{named} (FRAUDSTREAM_CONFIG)"
    )
    option = tmp_path / "option.yaml"
    option.write_text("kafka:\n  alerts_topic: from-option\n")
    s = load_settings(option, env={"FRAUDSTREAM_CONFIG": str(named)}, cwd=here)
    assert s.kafka.alerts_topic == "from-option"


def _cli(args, cwd, **env):
    import os
    import subprocess
    import sys

    clean = {
        k: v for k, v in os.environ.items() if k != "FRAUDSTREAM_CONFIG" and not k.startswith("FRAUDSTREAM__")
    }
    return subprocess.run(
        [sys.executable, "-m", "apps.cli", *args],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(ROOT), "COLUMNS": "250", "METRICS_PORT": "0", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_commands_read_fraudstream_yaml_in_the_current_directory_and_say_so(tmp_path):
    import json

    empty = _cli(["check-config"], tmp_path)
    assert empty.returncode == 0, empty.stderr
    assert "config: built-in defaults" in empty.stderr
    assert json.loads(empty.stdout)["kafka"]["alerts_topic"] == "alerts"

    (tmp_path / "fraudstream.yaml").write_text("kafka:\n  alerts_topic: team-alerts\n")
    local = _cli(["check-config"], tmp_path)
    assert local.returncode == 0, local.stderr
    assert "config: ./fraudstream.yaml" in local.stderr
    assert json.loads(local.stdout)["kafka"]["alerts_topic"] == "team-alerts"

    other = tmp_path / "other.yaml"
    other.write_text("kafka:\n  alerts_topic: other-alerts\n")
    by_env = _cli(["check-config"], tmp_path, FRAUDSTREAM_CONFIG=str(other))
    assert f"config: {other} (FRAUDSTREAM_CONFIG)" in by_env.stderr
    assert json.loads(by_env.stdout)["kafka"]["alerts_topic"] == "other-alerts"


def test_run_reads_fraudstream_yaml_in_the_current_directory(tmp_path):
    """A bad local file stops `fraudstream run` before it touches anything: so it was read."""
    (tmp_path / "fraudstream.yaml").write_text("rules:\n  velocity_check:\n    max_events: 0\n")
    result = _cli(["run"], tmp_path, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    assert result.returncode == 2
    assert "rules.velocity_check.max_events" in result.stderr and "fraudstream.yaml" in result.stderr
    assert "Traceback" not in result.stderr


def test_velocity_window_is_a_validated_setting_that_reaches_the_user_state():
    s = load_settings(env={"FRAUDSTREAM__RULES__VELOCITY_CHECK__WINDOW_S": "120"})
    assert s.rules.velocity_check.window_s == 120.0
    assert s.user_shards().limits.velocity_window_s == 120.0
    assert Settings().user_shards().limits.velocity_window_s == 600.0
    for bad in ("0", "-5"):
        with pytest.raises(ConfigError, match=r"rules\.velocity_check\.window_s"):
            load_settings(env={"FRAUDSTREAM__RULES__VELOCITY_CHECK__WINDOW_S": bad})
    with pytest.raises(
        ConfigError, match=r"rules.velocity_check.window_s: 200000 is longer than state.window_s"
    ):
        load_settings(env={"FRAUDSTREAM__RULES__VELOCITY_CHECK__WINDOW_S": "200000"})
