from datetime import UTC, datetime

from bytewax.operators import StatefulBatchLogic

from operators import metrics
from operators.events import TransactionEvent
from operators.features import update_profile
from operators.state import StateLimits, UserState
from operators.steps.expiring import ExpiringLogic
from operators.validation import Accepted


def accepted(ts: float, amount: float = 10.0) -> Accepted:
    return Accepted(TransactionEvent("e", "u", amount, datetime.fromtimestamp(ts, UTC)), ts, None, ts)


def UserProfileLogic(state, limits, ttl_s, clock):
    def apply(st, values):
        return [update_profile(st, acc, limits) for acc in values]

    return ExpiringLogic(state, apply, ttl_s, clock, metrics.USER_STATES)


def test_state_expires_after_the_ttl_of_idleness_on_the_injected_clock():
    now = {"t": 1000.0}
    logic = UserProfileLogic(UserState(), StateLimits(), ttl_s=60.0, clock=lambda: now["t"])
    out, discard = logic.on_batch([accepted(1.0), accepted(2.0)])
    assert discard is StatefulBatchLogic.RETAIN
    assert [o.features.user_event_count for o in out] == [0, 1]
    assert logic.notify_at() == datetime.fromtimestamp(1060.0, UTC)
    now["t"] = 1030.0
    logic.on_batch([accepted(3.0)])
    assert logic.notify_at() == datetime.fromtimestamp(1090.0, UTC)
    before = metrics.USER_STATES._value.get()
    assert logic.on_notify() == ([], StatefulBatchLogic.DISCARD)
    assert metrics.USER_STATES._value.get() == before - 1


def test_snapshot_restores_the_same_features():
    logic = UserProfileLogic(UserState(), StateLimits(), 60.0, lambda: 0.0)
    logic.on_batch([accepted(1.0, 10.0), accepted(2.0, 30.0)])
    restored = UserProfileLogic(logic.snapshot(), StateLimits(), 60.0, lambda: 0.0)
    a, _ = logic.on_batch([accepted(3.0, 50.0)])
    b, _ = restored.on_batch([accepted(3.0, 50.0)])
    assert a[0].features == b[0].features
