"""The job process's runtime set-up (the processes themselves are exercised by the
end-to-end, recovery and benchmark tests)."""

from __future__ import annotations

import gc

import torch
from threadpoolctl import threadpool_info, threadpool_limits

from flows.runner import GC_THRESHOLDS, limit_cpu_threads, tune_gc


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
