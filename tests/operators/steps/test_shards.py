from datetime import UTC, datetime
from typing import Any

from operators.steps.shards import _ShardLogic, _staggered


class _Shard:
    def __init__(self) -> None:
        self.swept: list[float] = []

    def snapshot(self) -> bytes:
        return b""


def _logic(shard: _Shard, now: list[float], first_sweep_s: float | None) -> _ShardLogic[Any]:
    return _ShardLogic(
        shard,
        lambda s, events, labels, t: [len(events)],
        lambda s, t: s.swept.append(t),
        60.0,
        lambda: now[0],
        False,
        "users",
        first_sweep_s,
    )


def test_a_shard_sweeps_first_after_its_turn_then_every_period():
    now, shard = [1_000.0], _Shard()
    logic = _logic(shard, now, 15.0)
    assert logic.notify_at() == datetime.fromtimestamp(1_015.0, UTC)
    assert logic.on_batch([[1, 2]]) == ([2], False) and shard.swept == []
    now[0] = 1_015.0
    logic.on_batch([[3]])
    assert shard.swept == [1_015.0]
    assert logic.notify_at() == datetime.fromtimestamp(1_075.0, UTC)  # then every 60 s
    now[0] = 1_075.0
    logic.on_notify()  # a quiet shard sweeps on the timer
    assert shard.swept == [1_015.0, 1_075.0]


def test_without_a_turn_the_first_sweep_is_one_period_away():
    now, shard = [0.0], _Shard()
    assert _logic(shard, now, None).notify_at() == datetime.fromtimestamp(60.0, UTC)


def test_the_shards_of_a_step_take_turns_over_the_period():
    """Built at once (a job's start), 64 shards used to sweep in the same activation."""
    firsts = _staggered(60.0, 64)
    turns = [next(firsts) for _ in range(64)]
    assert turns == sorted(set(turns)) and turns[0] == 60.0 / 64 and turns[-1] == 60.0
    assert next(firsts) == turns[0]  # then the turns repeat
    assert next(_staggered(10.0, 1)) == 10.0
