from prometheus_client import CollectorRegistry, Histogram

from operators.metrics import observe_many


def _samples(h: Histogram) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value
        for m in h.collect()
        for s in m.samples
        if "created" not in s.name
    }


def test_observe_many_equals_observing_one_by_one():
    values = [0.0, 0.5, 1.0, 1.0000001, 2.5, 10.0, 99.0, 1e9, 3.0]
    one = Histogram("one", "x", buckets=(1, 2.5, 10, 50), registry=CollectorRegistry())
    many = Histogram("many", "x", buckets=(1, 2.5, 10, 50), registry=CollectorRegistry())
    for v in values:
        one.observe(v)
    observe_many(many, values)
    observe_many(many, [])
    assert {k[1]: v for k, v in _samples(one).items()} == {k[1]: v for k, v in _samples(many).items()}
    assert _samples(many)[("many_bucket", "1.0")] == 3  # 0.0, 0.5 and 1.0 (le is inclusive)
