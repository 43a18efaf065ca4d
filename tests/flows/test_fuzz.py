"""Hostile input never crashes the dataflow: every bad event reaches the DLQ with a
reason and every good event is scored (in-process, a fixed hypothesis budget)."""

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operators.events import TransactionEvent, decode_event
from tests.fuzz_corpus import corpus, mutate, valid_event
from tests.support import run_flow as run


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.lists(st.binary(max_size=300), max_size=10))
def test_hostile_payloads_are_dead_lettered_and_good_ones_scored(seed, noise):
    payloads = corpus(seed, 40) + [(None, raw) for raw in noise]
    out = run(payloads, batch_size=7)
    valid = {e.event_id for e in (decode_event(v) for _, v in payloads) if isinstance(e, TransactionEvent)}
    scored_ids = [s.event.event_id for s in out["scored"]]
    assert len(scored_ids) + len(out["dlq"]) == len(payloads)
    assert set(scored_ids) == valid
    assert all(d.error and ": " in d.error for d in out["dlq"])


def test_every_mutation_kind_is_handled():
    rng = random.Random(0)
    payloads = [(None, mutate(rng, valid_event(rng, i))) for i in range(600)]
    out = run(payloads)
    assert len(out["scored"]) + len(out["dlq"]) == 600
    assert len({d.error.split(":")[0] for d in out["dlq"]}) >= 8
