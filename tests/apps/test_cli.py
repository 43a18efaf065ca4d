import json

from typer.testing import CliRunner

from apps.cli import app
from apps.replay.workload import generate


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
