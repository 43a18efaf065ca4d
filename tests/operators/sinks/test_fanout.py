"""The fan-out output: each sink begun in turn, finished in reverse, every write of
``write_batch`` finished before it returns (``begin`` leaves that to its caller); with the
real Postgres and broker, a begun write is invisible until it is finished, then whole."""

from collections.abc import Callable

import psycopg
import pytest
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from infra.migrations import apply_migrations
from infra.topics import ensure_topics
from operators.records import encode_decision
from operators.scoring import ScoredEvent
from operators.sinks import DeliveredKafkaSink, PostgresSink
from operators.sinks.fanout import Fanout, Splittable
from tests.operators.sinks.test_kafka import read_all
from tests.support import scored_events


class _Split(StatelessSinkPartition[int]):
    def __init__(
        self, name: str, log: list[str], fail_begin: bool = False, fail_finish: bool = False
    ) -> None:
        self.name, self.log, self.fail_begin, self.fail_finish = name, log, fail_begin, fail_finish

    def begin(self, items: list[int]) -> Callable[[], None]:
        self.log.append(f"begin {self.name} {items}")
        if self.fail_begin:
            raise RuntimeError(f"{self.name} begin")

        def finish() -> None:
            self.log.append(f"finish {self.name}")
            if self.fail_finish:
                raise RuntimeError(f"{self.name} finish")

        return finish

    def write_batch(self, items: list[int]) -> None:
        self.begin(items)()


class _Whole(StatelessSinkPartition[int]):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def write_batch(self, items: list[int]) -> None:
        self.log.append(f"write whole {items}")


class _Sink(DynamicSink[int]):
    def __init__(self, make: Callable[[], StatelessSinkPartition[int]]) -> None:
        self.make = make

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition[int]:
        return self.make()


def test_sinks_are_begun_in_order_and_finished_in_reverse():
    log: list[str] = []
    out = Fanout(
        [_Sink(lambda: _Split("pg", log)), _Sink(lambda: _Whole(log)), _Sink(lambda: _Split("kafka", log))]
    )
    part = out.build("v", 0, 1)
    part.write_batch([[1, 2], [], [3]])
    part.write_batch([[], []])  # nothing: no sink is called
    assert log == [
        "begin pg [1, 2, 3]",
        "write whole [1, 2, 3]",
        "begin kafka [1, 2, 3]",
        "finish kafka",
        "finish pg",
    ]
    assert isinstance(_Split("x", []), Splittable) and not isinstance(_Whole([]), Splittable)


def test_a_failure_finishes_what_was_begun_and_raises_the_first_error():
    log: list[str] = []
    out = Fanout(
        [
            _Sink(lambda: _Split("pg", log, fail_finish=True)),
            _Sink(lambda: _Split("kafka", log, fail_begin=True)),
        ]
    )
    with pytest.raises(RuntimeError, match="kafka begin"):
        out.build("v", 0, 1).write_batch([[1]])
    assert log == ["begin pg [1]", "begin kafka [1]", "finish pg"]


def test_begin_returns_with_every_sink_begun_and_its_result_finishes_them():
    log: list[str] = []
    out = Fanout([_Sink(lambda: _Split("pg", log, fail_finish=True)), _Sink(lambda: _Split("kafka", log))])
    finish = out.build("v", 0, 1).begin([1, 2])
    assert log == ["begin pg [1, 2]", "begin kafka [1, 2]"]  # nothing finished yet
    with pytest.raises(RuntimeError, match="pg finish"):
        finish()
    assert log[2:] == ["finish kafka", "finish pg"]


@pytest.mark.integration
def test_a_begun_postgres_write_is_invisible_until_finished_then_whole(make_settings):
    settings = make_settings()
    apply_migrations(settings.database_url)
    part = PostgresSink(settings.database_url).build("pg", 0, 1)
    events = scored_events(60)
    part.write_batch(events[:10])  # connects, creates the day's partition
    finish = part.begin(events[10:])
    with psycopg.connect(settings.database_url) as other:
        assert other.execute("SELECT count(*) FROM scored_events").fetchone() == (10,)
        finish()
        assert other.execute("SELECT count(*) FROM scored_events").fetchone() == (60,)
    assert part.paths == {"direct": 2, "staging": 0}
    # a re-delivered batch begun the same way conflicts when finished; staging writes the new rows alone
    finish = part.begin(events[50:] + scored_events(70)[60:])
    finish()
    assert part.paths == {"direct": 2, "staging": 1}
    part.close()
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM scored_events").fetchone()
    assert rows == (70, 70)


@pytest.mark.integration
def test_verdicts_reach_postgres_and_kafka_through_one_fanout(make_settings):
    s = make_settings()
    apply_migrations(s.database_url)
    ensure_topics(s.kafka.bootstrap_servers, {s.kafka.decisions_topic: 2})
    out: Fanout[ScoredEvent] = Fanout(
        [
            PostgresSink(s.database_url),
            DeliveredKafkaSink(
                "decisions", s.kafka.bootstrap_servers, s.kafka.decisions_topic, encode_decision
            ),
        ]
    )
    part = out.build("verdicts", 0, 1)
    events = scored_events(45)
    part.write_batch([events[:20], events[20:]])
    part.write_batch([events[:5]])  # re-delivered
    part.close()
    got = read_all(s.kafka.bootstrap_servers, s.kafka.decisions_topic, 2, 50)
    assert sorted(d["event_id"] for _, d in got) == sorted(e.event.event_id for e in events + events[:5])
    with psycopg.connect(s.database_url) as conn:
        assert conn.execute("SELECT count(DISTINCT event_id), count(*) FROM scored_events").fetchone() == (
            45,
            45,
        )
