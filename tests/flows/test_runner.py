"""The job process's runtime set-up (the processes themselves are exercised by the
end-to-end, recovery and benchmark tests)."""

from __future__ import annotations

import gc

from flows.runner import GC_THRESHOLDS, tune_gc


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
