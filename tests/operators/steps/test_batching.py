from datetime import UTC, datetime

from bytewax.operators import StatefulBatchLogic

from operators.events import TransactionEvent
from operators.features import Featured, compute_features
from operators.state import UserState
from operators.steps.batching import BatchLogic
from operators.validation import Accepted


def item(i: int) -> Featured:
    ev = TransactionEvent(f"e{i}", "u", 1.0, datetime(2025, 1, 1, tzinfo=UTC))
    return Featured(Accepted(ev, 0.0, None, 0.0), compute_features(UserState(), ev, 0.0))


def test_full_batches_leave_at_once_and_the_rest_waits_for_the_deadline():
    now = {"t": 100.0}
    logic = BatchLogic([], max_size=3, max_wait_s=0.05, clock=lambda: now["t"])
    out, _ = logic.on_batch([item(i) for i in range(7)])
    assert [len(b) for b in out] == [3, 3]
    assert logic.notify_at() == datetime.fromtimestamp(100.05, UTC)
    now["t"] = 100.02
    out, _ = logic.on_batch([item(7)])
    assert out == [] and logic.notify_at() == datetime.fromtimestamp(100.05, UTC)  # deadline of the oldest
    out, discard = logic.on_notify()
    assert [[f.accepted.event.event_id for f in b] for b in out] == [["e6", "e7"]]
    assert discard is StatefulBatchLogic.DISCARD and logic.notify_at() is None


def test_pending_events_survive_a_snapshot_and_flush_at_eof():
    logic = BatchLogic([], 10, 1.0, lambda: 0.0)
    logic.on_batch([item(1), item(2)])
    restored = BatchLogic(logic.snapshot(), 10, 1.0, lambda: 0.0)
    assert restored.notify_at() is not None
    out, _ = restored.on_eof()
    assert [f.accepted.event.event_id for f in out[0]] == ["e1", "e2"]
