import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from apps.cli import app
from apps.replay.workload import generate
from flows.config import Settings


def test_train_then_list_and_activate(tmp_path):
    events = tmp_path / "events.jsonl"
    w = generate(events=1500, users=150, malformed=4, seed=2)
    events.write_text("".join(v.decode(errors="replace") + "\n" for _, v in w.messages))
    runner = CliRunner()
    result = runner.invoke(
        app, ["train", "-s", str(events), "-o", str(tmp_path / "m"), "--epochs", "2", "--activate"]
    )
    assert result.exit_code == 0, result.output
    assert "4 invalid" in result.output and "(active)" in result.output
    version = (tmp_path / "m" / "active").read_text().strip()
    meta = json.loads((tmp_path / "m" / version / "metadata.json").read_text())
    assert meta["training"]["events"] == w.valid
    listed = runner.invoke(app, ["models", "list", str(tmp_path / "m")])
    assert f"* {version}" in listed.output
    bad = runner.invoke(app, ["models", "activate", str(tmp_path / "m"), "nope"])
    assert bad.exit_code == 2 and "no metadata.json" in " ".join(bad.output.split())


def test_train_reports_unreadable_sources(tmp_path):
    result = CliRunner().invoke(app, ["train", "-s", str(tmp_path / "x.xlsx"), "-o", str(tmp_path / "m")])
    assert result.exit_code == 2 and "unknown format" in result.output


def test_train_refuses_activating_a_supervised_model_and_unknown_calibrations(tmp_path):
    runner = CliRunner()
    sup = runner.invoke(app, ["train", "--supervised", "--activate", "-o", str(tmp_path / "m")])
    assert sup.exit_code == 2 and "challenger" in sup.output and "promote" in sup.output
    assert not (tmp_path / "m").exists()
    cal = runner.invoke(
        app, ["train", "-s", "x.jsonl", "-o", str(tmp_path / "m"), "--calibration", "sigmoid"]
    )
    assert cal.exit_code == 2 and "--calibration" in cal.output and "percentile" in cal.output


def test_cluster_member_options_go_together_and_the_id_must_index_the_addresses():
    runner = CliRunner()
    alone = runner.invoke(app, ["run", "--process-id", "0"], env={"METRICS_PORT": "0"})
    assert alone.exit_code == 2 and "go together" in alone.output
    beyond = runner.invoke(app, ["run", "-i", "2", "-a", "h0:2101,h1:2101"], env={"METRICS_PORT": "0"})
    assert beyond.exit_code == 2 and "only 2 addresses" in beyond.output


def test_replay_expands_folders_to_their_trip_files(tmp_path):
    import pytest
    import typer

    from apps.cli_data import expand_folders

    for name in ("b.parquet", "a.csv.gz", "notes.txt", "c.csv"):
        (tmp_path / name).write_text("x")
    assert [p.name for p in expand_folders([tmp_path])] == ["a.csv.gz", "b.parquet", "c.csv"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(typer.BadParameter, match=r"holds no \.csv"):
        expand_folders([tmp_path / "empty"])


# --- the real command, as a new user runs it: one clear line, never a traceback -----------------

ROOT = Path(__file__).resolve().parents[2]


def fraudstream(args, cwd=None, stdin=None, **env):
    clean = {
        k: v for k, v in os.environ.items() if k != "FRAUDSTREAM_CONFIG" and not k.startswith("FRAUDSTREAM__")
    }
    return subprocess.run(
        [sys.executable, "-m", "apps.cli", *args],
        cwd=cwd or ROOT,
        env={**clean, "PYTHONPATH": str(ROOT), "COLUMNS": "250", "METRICS_PORT": "0", **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_error_line(result, *expected):
    """The command failed with ``error: ...`` on one stderr line holding every ``expected`` part."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for part in expected:
        assert part in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def taken_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("args", [["produce"], ["run"], ["alerts"], ["dlq"]])
def test_a_broker_that_is_down_is_one_line_within_seconds(args):
    address = f"127.0.0.1:{closed_port()}"
    began = time.monotonic()
    result = fraudstream(args, stdin='{"event_id": "e1"}\n', KAFKA_BOOTSTRAP_SERVERS=address)
    assert time.monotonic() - began < 30
    one_error_line(result, f"cannot reach Kafka at {address} (", "Connection refused")
    assert result.returncode == 1
    assert "rdkafka" not in result.stderr and "FAIL" not in result.stderr
    assert len(result.stderr.splitlines()) <= 3, result.stderr  # config line, error line


def test_explainer_and_job_have_their_own_metrics_ports_and_a_taken_one_is_named(taken_port):
    s = Settings()
    assert s.explainer.metrics_port not in range(s.metrics.port, s.metrics.port + 8)
    explainer = fraudstream(["explain"], METRICS_PORT=str(taken_port))
    one_error_line(
        explainer, f"metrics port 127.0.0.1:{taken_port} is already in use", "explainer.metrics_port"
    )
    job = fraudstream(["run"], METRICS_PORT=str(taken_port), KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    one_error_line(job, f"metrics port 127.0.0.1:{taken_port} is already in use", "METRICS_PORT")


def test_a_taken_gateway_port_is_named(taken_port):
    result = fraudstream(["gateway", "--port", str(taken_port)], FRAUDSTREAM__GATEWAY__REQUIRE_AUTH="false")
    one_error_line(result, f"gateway port 127.0.0.1:{taken_port} is already in use", "gateway.port")


def test_gateway_key_prints_a_complete_keys_file_the_gateway_reads(tmp_path):
    from apps.gateway.keys import KeyRing

    made = fraudstream(["gateway-key", "pos-terminals"])
    assert made.returncode == 0, made.stderr
    key = made.stderr.rsplit(": ", 1)[1].strip()
    assert key.startswith("fsk_") and key not in made.stdout
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(made.stdout)
    assert KeyRing(keys_file).name_of(key) == "pos-terminals"

    appended = tmp_path / "new" / "gateway-keys.yaml"
    appended.parent.mkdir()
    first = fraudstream(["gateway-key", "pos", "--append", str(appended)])
    second = fraudstream(["gateway-key", "batch-loader", "--append", str(appended)])
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "(2 keys)" in second.stderr and not second.stdout
    ring = KeyRing(appended)
    keys = [r.stderr.rsplit(": ", 1)[1].strip() for r in (first, second)]
    assert [ring.name_of(k) for k in keys] == ["pos", "batch-loader"]


def test_a_malformed_keys_file_is_one_line_naming_the_setting(tmp_path):
    only_the_item = tmp_path / "keys.yaml"
    only_the_item.write_text(
        "  - name: pos-terminals\n    sha256: " + "ab" * 32 + "\n"
    )  # what gateway-key printed
    result = fraudstream(
        ["gateway", "--port", str(closed_port())], FRAUDSTREAM__GATEWAY__KEYS_FILE=str(only_the_item)
    )
    one_error_line(
        result, "gateway.keys_file", str(only_the_item), "holds a list, expected a mapping `keys:`"
    )
    assert result.returncode == 2
    appended = fraudstream(["gateway-key", "x", "--append", str(only_the_item)])
    one_error_line(appended, "gateway.keys_file", "holds a list")


TRIPS = (
    "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,RatecodeID,"
    "store_and_fwd_flag,PULocationID,DOLocationID,payment_type,fare_amount,extra,mta_tax,tip_amount,"
    "tolls_amount,improvement_surcharge,total_amount\n"
    "1,2019-01-15 03:36:12,2019-01-15 03:42:19,1,1.5,1,N,151,1,1,7,0.5,0.5,1.65,0,0.3,9.95\n"
)


def test_replay_with_centroids_in_feet_or_a_missing_column_is_one_line(tmp_path):
    trips = tmp_path / "yellow_tripdata_2019-01.csv"
    trips.write_text(TRIPS)
    feet = tmp_path / "centroids.csv"
    feet.write_text(
        "LocationID,zone,borough,lat,lon\n1,Newark Airport,EWR,191376.749530832,935996.8210162064\n"
    )
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}  # refused before anything is produced
    in_feet = fraudstream(["replay", str(trips), "--centroids", str(feet)], **env)
    one_error_line(
        in_feet, str(feet), "'lat'/'lon'", "not in degrees", "latitude and longitude in WGS84 degrees"
    )
    assert in_feet.returncode == 2
    no_location = tmp_path / "zones.csv"
    no_location.write_text(
        "LocationID,zone,borough,centroid_x_ft,centroid_y_ft\n1,Newark Airport,EWR,935996.8,191376.7\n"
    )
    one_error_line(
        fraudstream(["replay", str(trips), "--centroids", str(no_location)], **env),
        str(no_location),
        "no column lat, lon",
        "latitude and longitude",
    )
    labelled = tmp_path / "cards.csv"
    labelled.write_text("cc_num,trans_date_trans_time,amt,is_fraud\n42,2020-06-21 12:14:25,2.86,0\n")
    missing = fraudstream(
        ["replay", str(labelled), "--map", "user=cc_num,time=trans_date_trans_time,amount=amount"], **env
    )
    one_error_line(missing, str(labelled), "no column 'amount' (--map amount=amount)", "cc_num")
    assert missing.returncode == 2
    bad_map = fraudstream(["replay", str(labelled), "--map", "user=cc_num,amount"], **env)
    one_error_line(bad_map, "--map: expected KEY=COLUMN")


@pytest.mark.integration
def test_a_database_that_is_down_is_one_line_without_its_password(make_settings):
    from flows.launcher import job_env

    url = f"postgresql://app:pg-s3cret@127.0.0.1:{closed_port()}/fraud"
    result = fraudstream(["run"], **job_env(make_settings(), 0, DATABASE_URL=url))
    one_error_line(result, "cannot reach PostgreSQL at postgresql://app:***@127.0.0.1:", "Connection refused")
    assert "s3cret" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["label", "-f", "/nonexistent/labels.csv"], "/nonexistent/labels.csv: No such file or directory"),
        (["label", "-f", "/tmp"], "/tmp: Is a directory"),
        (["evaluate", "--labels", "/nonexistent.jsonl"], "/nonexistent.jsonl: No such file or directory"),
        (["models", "list", "/nonexistent"], "/nonexistent: no such folder"),
        (["backtest", "-o", "/tmp/bt", "--models", "/nonexistent"], "--models: /nonexistent: no such folder"),
    ],
)
def test_a_file_or_folder_that_is_not_there_is_one_line(args, expected):
    result = fraudstream(args)
    one_error_line(result, expected)
    assert result.returncode == 2


def test_a_label_file_that_is_not_labels_names_its_line(tmp_path):
    (tmp_path / "strict.yaml").write_text("rules:\n  high_amount: 1\n")
    (tmp_path / "half.jsonl").write_text('{"event_id": "e1", "is_fraud": true}\n{"event_id": "e2"}\n')
    for name, expected in (
        ("strict.yaml", "strict.yaml:1: not JSON"),
        ("half.jsonl", "half.jsonl:2: a label needs"),
    ):
        result = fraudstream(["evaluate", "--labels", str(tmp_path / name)])
        one_error_line(result, expected)
        assert result.returncode == 2


def test_a_backtest_with_a_model_folder_holding_no_active_version_is_refused(tmp_path):
    result = fraudstream(["backtest", "-o", str(tmp_path / "bt"), "--models", str(tmp_path)])
    one_error_line(result, f"--models: {tmp_path} has no active model version")


@pytest.mark.parametrize(
    ("env", "field"),
    [({"DATABASE_URL": "notaurl"}, "database_url"), ({"REDIS_URL": "http://x"}, "redis_url")],
)
def test_a_malformed_service_url_stops_check_config_naming_the_field(env, field):
    result = fraudstream(["check-config"], **env)
    one_error_line(result, f"{field}: ")
    assert result.returncode == 2


def test_a_malformed_database_url_does_not_print_its_password():
    result = fraudstream(
        ["check-config"], DATABASE_URL="postgresql://app:pg-s3cret@db:5432/fraud?sslmode=bogus x"
    )
    assert "s3cret" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "args", [["replay", "--synthetic", "-5"], ["replay", "--synthetic", "5", "--speed", "-1"]]
)
def test_negative_replay_counts_and_speeds_are_refused(args):
    result = fraudstream(args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "greater than or equal to 0" in result.stderr


def test_train_refuses_to_write_into_its_own_models_package(tmp_path):
    result = fraudstream(["train", "-s", str(tmp_path / "events.jsonl"), "-o", "models/"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "fraudstream's own models package" in " ".join(result.stderr.split())
    assert not (ROOT / "models" / "active").exists()


def test_the_plain_bytewax_entry_point_stops_within_seconds_when_no_broker_answers():
    address = f"127.0.0.1:{closed_port()}"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM")}
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "flows.fraud:kafka_flow()"],
        cwd=ROOT,
        env={**clean, "PYTHONPATH": str(ROOT), "KAFKA_BOOTSTRAP_SERVERS": address, "METRICS_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - began < 30 and result.returncode != 0
    assert f"KafkaUnreachable: cannot reach Kafka at {address}" in result.stderr.strip().splitlines()[-1]
    assert result.stderr.count("FAIL|rdkafka") < 5, result.stderr[-2000:]
