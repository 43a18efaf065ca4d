"""The overlapped output: a large batch finished by the next one, after the hold, at the
epoch's close or at the end; a small one before the step returns; every batch written on
the worker that computed it."""

import threading
import time
from collections.abc import Callable
from datetime import timedelta

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, cluster_main, run_main

from operators.sinks.fanout import Fanout
from operators.steps import home
from operators.steps.output import Writer, overlapped_output


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.written: list[tuple[int, int]] = []  # (item, thread that wrote it)
        self.finished = threading.Event()
        self.lock = threading.Lock()

    def add(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)


class _Split(StatelessSinkPartition[int]):
    def __init__(self, log: _Log) -> None:
        self.log = log

    def begin(self, items: list[int]) -> Callable[[], None]:
        self.log.add(f"begin {items}")

        def finish() -> None:
            self.log.add(f"finish {items}")
            with self.log.lock:
                self.log.written.extend((i, threading.get_ident()) for i in items)
            self.log.finished.set()

        return finish

    def write_batch(self, items: list[int]) -> None:
        self.begin(items)()

    def close(self) -> None:
        self.log.add("close")


class _Sink(DynamicSink[int]):
    def __init__(self, log: _Log) -> None:
        self.log = log

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Split:
        return _Split(self.log)


def _writer(log: _Log, min_events: int = 3, hold_s: float = 0.5, now: float = 100.0) -> Writer[int]:
    return Writer(Fanout([_Sink(log)]).build("v", 0, 1), min_events, hold_s, lambda: now)


def test_a_large_batch_is_finished_by_the_next_one_before_it_begins():
    log = _Log()
    w = _writer(log)
    w.write([1, 2, 3])
    assert log.lines == ["begin [1, 2, 3]"] and w.due == 100.5
    w.write([4, 5, 6, 7])
    assert log.lines == ["begin [1, 2, 3]", "finish [1, 2, 3]", "begin [4, 5, 6, 7]"]
    w.close()
    assert log.lines[-2:] == ["finish [4, 5, 6, 7]", "close"] and w.due is None


def test_a_notify_before_the_hold_is_over_leaves_the_write_pending():
    # Bytewax fires the stale notify time of the previous write right after the next
    # on_batch: it must not finish the write that batch just began.
    log = _Log()
    clock = [100.0]
    w = Writer(Fanout([_Sink(log)]).build("v", 0, 1), 3, 0.5, lambda: clock[0])
    w.write([1, 2, 3])
    w.finish_due()
    assert log.lines == ["begin [1, 2, 3]"] and w.due == 100.5
    clock[0] = 100.5
    w.finish_due()
    assert log.lines[-1] == "finish [1, 2, 3]" and w.due is None


def test_a_small_batch_is_written_before_write_returns():
    log = _Log()
    w = _writer(log)
    w.write([1, 2, 3])
    w.write([4])
    assert log.lines == ["begin [1, 2, 3]", "finish [1, 2, 3]", "begin [4]", "finish [4]"]
    assert w.pending is None and w.due is None
    w.write([])
    w.finish()
    assert len(log.lines) == 4


def _flow(source: object, log: _Log, min_events: int, hold_s: float, workers: int = 1) -> Dataflow:
    flow = Dataflow("overlap")
    lists: Stream[list[int]] = op.input("in", flow, source)  # type: ignore[arg-type]
    # a keyed step first, as in the job: its key, noted, brings every list back to its worker
    keyed = op.key_on("key", op.flat_map("items", lists, lambda xs: xs), lambda x: str(x % 5))
    ran = op.stateful_map("pass", keyed, lambda s, x: (s, (x, threading.get_ident())))

    def noted(items: list[tuple[str, tuple[int, int]]]) -> list[list[int]]:
        for key, (x, thread) in items:
            home.note(key)
            log.add(f"computed {x} on {thread}")
        return [[x for _, (x, _) in items]]

    out = op.flat_map_batch("noted", ran, noted)
    overlapped_output("verdicts", out, Fanout([_Sink(log)]), min_events, hold_s, workers)
    return flow


def test_every_item_is_written_once_on_the_worker_that_computed_it():
    log = _Log()
    batches = [list(range(i, i + 7)) for i in range(0, 70, 7)]
    cluster_main(_flow(TestingSource(batches), log, 3, 3600.0, 2), [], 0, worker_count_per_proc=2)
    assert sorted(i for i, _ in log.written) == list(range(70))
    computed = {
        int(x): int(t) for x, _, t in (line[9:].split(" ", 2) for line in log.lines if "computed" in line)
    }
    assert all(computed[i] == thread for i, thread in log.written)
    assert len({t for _, t in log.written}) == 2 and log.lines.count("close") == 2


class _Quiet(StatelessSourcePartition[list[int]]):
    """One batch, then nothing until the log shows it finished (or 5 s), then the end."""

    def __init__(self, log: _Log) -> None:
        self.log, self.sent, self.deadline = log, False, time.monotonic() + 5.0

    def next_batch(self) -> list[list[int]]:
        if not self.sent:
            self.sent = True
            return [[1, 2, 3, 4]]
        if self.log.finished.is_set() or time.monotonic() > self.deadline:
            self.log.add("end of input")
            raise StopIteration
        time.sleep(0.01)
        return []


class _QuietSource(DynamicSource[list[int]]):
    def __init__(self, log: _Log) -> None:
        self.log = log

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Quiet:
        return _Quiet(self.log)


def test_with_no_next_batch_the_epochs_close_finishes_the_write():
    log = _Log()
    run_main(_flow(_QuietSource(log), log, 3, 3600.0), epoch_interval=timedelta(milliseconds=50))
    assert log.lines.index("finish [1, 2, 3, 4]") < log.lines.index("end of input")


def test_with_no_next_batch_the_hold_finishes_the_write():
    log = _Log()
    run_main(_flow(_QuietSource(log), log, 3, 0.05), epoch_interval=timedelta(seconds=3600))
    assert log.lines.index("finish [1, 2, 3, 4]") < log.lines.index("end of input")


def test_min_events_zero_is_a_plain_output():
    log = _Log()
    run_main(_flow(TestingSource([[1, 2, 3, 4], [5]]), log, 0, 3600.0))
    assert [line for line in log.lines if not line.startswith("computed")] == [
        "begin [1, 2, 3, 4]",
        "finish [1, 2, 3, 4]",
        "begin [5]",
        "finish [5]",
        "close",
    ]
