"""The job process's runtime set-up (the processes themselves are exercised by the
end-to-end, recovery and benchmark tests)."""

from __future__ import annotations

import gc
import json

import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from flows.config import Settings
from flows.runner import (
    GC_THRESHOLDS,
    LAYOUT_FILE,
    RecoveryMismatch,
    limit_cpu_threads,
    prepare_recovery,
    recorded_layout,
    tune_gc,
)


def test_tune_gc_freezes_start_up_objects_and_collects_less_often():
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > before[0]
        assert gc.get_freeze_count() > 0, "start-up objects are still scanned"
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_limit_cpu_threads_caps_every_thread_pool_the_process_loaded():
    import sklearn.ensemble  # noqa: F401  (loads OpenMP and BLAS, as the job's models do)

    before = torch.get_num_threads()
    with threadpool_limits():  # restores the pools' sizes afterwards
        try:
            limit_cpu_threads(1)
            assert torch.get_num_threads() == 1
            pools = threadpool_info()
            assert pools, "no thread pool found to limit"
            assert all(p["num_threads"] == 1 for p in pools), pools
        finally:
            torch.set_num_threads(before)


def _recovering(folder, shards: int) -> Settings:
    return Settings.model_validate({"recovery": {"dir": str(folder)}, "state": {"shards": shards}})


def test_a_recovery_directory_refuses_another_shard_count_naming_the_setting(tmp_path):
    folder = tmp_path / "recovery"
    prepare_recovery(_recovering(folder, 64))
    layout = {"state.shards": 64, "state.shard_names": "balanced"}
    assert json.loads((folder / LAYOUT_FILE).read_text()) == layout
    prepare_recovery(_recovering(folder, 64))  # a restart with the same settings resumes
    with pytest.raises(RecoveryMismatch, match=r"^state\.shards: .* holds state in 64 shards .* asks for 16"):
        prepare_recovery(_recovering(folder, 16))
    assert json.loads((folder / LAYOUT_FILE).read_text()) == layout, "the record stays"


def test_a_recovery_directory_from_before_the_record_keeps_numbered_shards_and_is_recorded(tmp_path):
    folder = tmp_path / "recovery"
    prepare_recovery(_recovering(folder, 32))
    (folder / LAYOUT_FILE).unlink()
    prepare_recovery(_recovering(folder, 32))
    assert json.loads((folder / LAYOUT_FILE).read_text()) == {
        "state.shards": 32,
        "state.shard_names": "numbers",
    }
    assert recorded_layout(_recovering(folder, 32)).state.shard_names == "numbers"


def test_a_record_from_before_the_names_keeps_numbered_shards_whatever_the_settings_say(tmp_path):
    folder = tmp_path / "recovery"
    prepare_recovery(_recovering(folder, 32))
    (folder / LAYOUT_FILE).write_text(json.dumps({"state.shards": 32}))
    settings = _recovering(folder, 32)
    assert settings.state.shard_names == "balanced"
    prepare_recovery(settings)
    assert recorded_layout(settings).state.shard_names == "numbers"
    assert recorded_layout(_recovering(tmp_path / "elsewhere", 32)).state.shard_names == "balanced"
    fresh = tmp_path / "fresh"
    numbered = Settings.model_validate(
        {"recovery": {"dir": str(fresh)}, "state": {"shards": 8, "shard_names": "numbers"}}
    )
    prepare_recovery(numbered)
    assert json.loads((fresh / LAYOUT_FILE).read_text())["state.shard_names"] == "numbers"
    assert recorded_layout(_recovering(fresh, 8)).state.shard_names == "numbers"


def test_the_names_are_recorded_before_the_partitions_a_cluster_member_waits_for(tmp_path, monkeypatch):
    import bytewax.recovery

    real = bytewax.recovery.init_db_dir
    seen = []

    def init_db_dir(folder, partitions):
        seen.append(json.loads((folder / LAYOUT_FILE).read_text()))
        real(folder, partitions)

    monkeypatch.setattr(bytewax.recovery, "init_db_dir", init_db_dir)
    folder = tmp_path / "recovery"
    settings = _recovering(folder, 16)
    assert recorded_layout(settings) is settings, "no partitions yet: the settings' names"
    prepare_recovery(settings)
    assert seen == [{"state.shards": 16, "state.shard_names": "balanced"}]
    assert recorded_layout(settings).state.shard_names == "balanced"


def test_a_member_that_reads_an_old_directory_before_process_0_records_it_takes_the_numbers(tmp_path):
    folder = tmp_path / "recovery"
    prepare_recovery(_recovering(folder, 32))
    (folder / LAYOUT_FILE).unlink()
    assert recorded_layout(_recovering(folder, 32)).state.shard_names == "numbers"
    (folder / LAYOUT_FILE).write_text(json.dumps({"state.shards": 32}))
    assert recorded_layout(_recovering(folder, 32)).state.shard_names == "numbers"


def test_a_shard_mismatch_is_one_line_and_exit_status_1(tmp_path, capsys):
    import typer

    from apps.cli_data import service_errors

    folder = tmp_path / "recovery"
    prepare_recovery(_recovering(folder, 64))
    with pytest.raises(typer.Exit) as exit_info, service_errors(_recovering(folder, 8)):
        prepare_recovery(_recovering(folder, 8))
    assert exit_info.value.exit_code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: state.shards:") and err.count("\n") == 1 and "Traceback" not in err


def test_start_up_says_how_the_shards_spread_over_the_workers(caplog):
    import logging

    from flows.runner import _log_shard_spread

    with caplog.at_level(logging.INFO, logger="flows.runner"):
        _log_shard_spread(Settings(), 8)  # 8 each: nothing to say
        _log_shard_spread(Settings(), 1)
        _log_shard_spread(Settings.model_validate({"state": {"shards": 64}}), 6)
        _log_shard_spread(Settings.model_validate({"state": {"shard_names": "numbers"}}), 8)
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert said[0] == ("INFO", "state: 64 shards over 6 workers, 10 to 11 each")
    assert said[1][0] == "WARNING" and said[1][1].startswith("state: 64 numbers shards over 8 workers")
    assert len(said) == 2
