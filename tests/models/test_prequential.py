import numpy as np
import pytest

from models.evaluation import ranking_metrics
from models.prequential import RETRAINED, PrequentialConfig, prequential

DAY = 86_400.0


def history(days=70, per_day=200, seed=0):
    """A feature that reveals fraud (once labels can teach it) and a served score that does not."""
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.uniform(0, days * DAY, days * per_day)) + 1_700_006_400.0  # a UTC midnight
    y = (rng.random(len(ts)) < 0.03).astype(int)
    x = np.column_stack([y * 2.0 + rng.normal(0, 1, len(ts)), rng.normal(0, 1, len(ts))]).astype(np.float32)
    known = np.where(y == 1, ts + 7 * DAY, np.inf)
    served = rng.uniform(0, 100, len(ts))
    return ts, x, y, known, served


class Spy:
    """Records what every fold trained on; scores with the first column."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, y, seed):
        self.calls.append((x.copy(), y.copy()))
        spy = self

        class Model:
            def score_batch(self, xt):
                spy.last = xt
                return xt[:, 0] * 10.0

        return Model()


def test_each_fold_trains_on_the_past_with_only_the_labels_known_then():
    ts, x, y, known, served = history()
    # the label of an event becomes known at a random delay of 0-20 days
    known = np.where(y == 1, ts + np.random.default_rng(1).uniform(0, 20, len(ts)) * DAY, np.inf)
    spy = Spy()
    cfg = PrequentialConfig(delay_days=7, test_days=7, min_train_frauds=1)
    report = prequential(ts, x, y, known, {"served": served}, cfg, fit=spy)
    tested = [f for f in report["folds"] if f["skipped"] is None]
    assert len(tested) == len(spy.calls) >= 7
    from datetime import datetime

    for fold, (x_train, y_train) in zip(tested, spy.calls, strict=True):
        t = datetime.fromisoformat(fold["test_from"]).timestamp()
        rows = np.flatnonzero(ts < t - 7 * DAY)
        assert len(x_train) == len(rows) == fold["train_events"]
        assert (x_train == x[rows]).all()
        # fraud in training only where the label was known at T: no future label leaks in
        assert (y_train == ((y[rows] == 1) & (known[rows] <= t))).all()
        assert y_train.sum() < y[rows].sum()  # some labels were still on their way
        assert fold["test_events"] == int(((ts >= t) & (ts < t + 7 * DAY)).sum())


def test_a_training_window_bounds_the_history():
    ts, x, y, known, _served = history()
    spy = Spy()
    prequential(ts, x, y, known, {}, PrequentialConfig(delay_days=7, test_days=7, train_days=14), fit=spy)
    assert spy.calls and all(len(xt) <= 14 * 200 * 1.1 for xt, _ in spy.calls)


def test_summary_pools_every_tested_window():
    ts, x, y, known, served = history()
    report = prequential(ts, x, y, known, {"served": served}, PrequentialConfig(), fit=Spy())
    s = report["summary"]
    assert set(s) == {"served", RETRAINED}
    tested = np.zeros(len(ts), dtype=bool)
    for f in report["folds"]:
        if f["skipped"] is None:
            from datetime import datetime

            t = datetime.fromisoformat(f["test_from"]).timestamp()
            tested |= (ts >= t) & (ts < t + 7 * DAY)
    assert report["tested_events"] == tested.sum()
    assert s[RETRAINED]["pooled_ap"] == pytest.approx(
        ranking_metrics(y[tested], x[tested, 0] * 10.0)["average_precision"]
    )
    assert (
        s[RETRAINED]["pooled_ap"] > 0.3 > s["served"]["pooled_ap"]
    )  # the feature tells, the served score not


def test_real_supervised_model_learns_the_signal_and_blends_are_scored():
    ts, x, y, known, served = history(days=42)
    calls = []

    def blend(idx, retrained):
        calls.append((idx, retrained))
        return 0.5 * served[idx] + 0.5 * retrained

    report = prequential(ts, x, y, known, {"served": served}, PrequentialConfig(), {"mix": blend})
    assert report["summary"][RETRAINED]["pooled_ap"] > 0.3
    assert report["summary"]["served"]["pooled_ap"] < report["summary"]["mix"]["pooled_ap"]
    assert calls and all(len(i) == len(r) for i, r in calls)


def test_missing_scores_are_left_out_and_unusable_windows_are_skipped():
    ts, x, y, known, served = history(days=30)
    partial = served.copy()
    partial[ts < 1_700_006_400.0 + 21 * DAY] = np.nan  # a challenger that started on day 21
    report = prequential(ts, x, y, known, {"challenger": partial}, PrequentialConfig(min_train_frauds=10**6))
    assert report["summary"] == {} and all("known frauds" in f["skipped"] for f in report["folds"])
    report = prequential(ts, x, y, known, {"challenger": partial}, PrequentialConfig(), fit=Spy())
    first, second = report["folds"][:2]
    assert first["ap"]["challenger"] is None and second["ap"]["challenger"] is not None
    assert report["summary"]["challenger"]["folds"] == len(report["folds"]) - 1 == 2


def test_bad_input_is_refused():
    ts, x, y, known, _served = history(days=20)
    with pytest.raises(ValueError, match="ascending"):
        prequential(ts[::-1], x, y, known, {})
    with pytest.raises(ValueError, match="test_days"):
        PrequentialConfig(test_days=0)
    with pytest.raises(ValueError, match="delay_days"):
        PrequentialConfig(delay_days=-1)


def test_ap_per_scenario_sets_each_scenario_against_all_legitimate_rows():
    ts, x, y, known, served = history()
    groups = ["easy" if i % 2 else "hard" for i in range(len(ts))]
    # the served score ranks "easy" frauds on top and "hard" ones at the bottom
    score = np.where(y == 1, np.where(np.arange(len(ts)) % 2 == 1, 1000.0, -1000.0), served)
    report = prequential(ts, x, y, known, {"served": score}, PrequentialConfig(), fit=Spy(), groups=groups)
    by = report["summary"]["served"]["pooled_ap_by_group"]
    assert by["easy"] == pytest.approx(1.0) and by["hard"] < 0.05
