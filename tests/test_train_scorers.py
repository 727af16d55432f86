"""The learned features weights' calibration: a time split, written beside the weights."""
import json

import numpy as np
import pytest

from rcahook.rca.confidence import fit_platt, load_calibration
from rcahook.rca.features import FEATURE_NAMES
from rcahook.train.scorers import MIN_CALIBRATION, Fitted, fit_calibration, save_scorers


def _examples(n: int, *, noise: float, seed: int = 0):
    """n investigations of 50 candidates; column 0 marks the root cause, blurred by noise."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        X = rng.normal(size=(50, len(FEATURE_NAMES)))
        y = int(rng.integers(50))
        X[y, 0] += 3.0
        X[:, 0] += rng.normal(scale=noise, size=50)
        out.append((1_700_000_000 + t * 3600, X, y))
    return out


def _top5(weights, X):
    """(the top-5 softmax mass, whether the root cause is among those five) as investigate reads them."""
    from rcahook.rca.model import order, softmax

    s = X @ weights.aligned()
    top = list(order(s))[:5]
    return float(softmax(s)[top].sum()), top


def _per_quartile(predicted: np.ndarray, hit: np.ndarray) -> list[tuple[float, float]]:
    """(mean predicted, observed hit rate) in each quarter of the predictions."""
    bins = np.digitize(predicted, np.quantile(predicted, [0.25, 0.5, 0.75]))
    return [(float(predicted[bins == i].mean()), float(hit[bins == i].mean())) for i in range(4)]


def test_platt_scaling_recovers_a_known_hit_rate_per_bin():
    """Masses whose true hit rate is known, sigmoid(1.5 logit(mass) - 0.5): the fitted
    calibration predicts, per bin, the rate observed there and the true one."""
    rng = np.random.default_rng(3)
    mass = rng.uniform(0.02, 0.98, size=20_000)
    logit = np.log(mass / (1 - mass))
    true_rate = 1 / (1 + np.exp(-(1.5 * logit - 0.5)))
    hit = rng.random(mass.size) < true_rate
    cal = fit_platt(mass.tolist(), hit.tolist())
    assert abs(cal.a - 1.5) < 0.1 and abs(cal.b + 0.5) < 0.1
    predicted = np.array([cal(m) for m in mass])
    rows = _per_quartile(predicted, hit)
    truth = _per_quartile(predicted, true_rate)
    for (pred, observed), (_, true) in zip(rows, truth):
        assert abs(pred - observed) < 0.02 and abs(pred - true) < 0.02, rows
    assert rows[-1][1] - rows[0][1] > 0.5  # the bins differ: a constant could not pass


def test_calibration_is_fitted_on_the_newest_quarter_and_tracks_accuracy():
    from rcahook.rca.model import fit

    examples = _examples(2000, noise=1.5)
    cal = fit_calibration(examples)
    assert cal is not None
    assert cal.info["n"] == 500  # the newest quarter, never the weights' own training data
    # the weights it calibrates: fitted on the older three quarters, as fit_calibration does
    weights = fit([(X, y) for _, X, y in sorted(examples, key=lambda e: e[0])[:1500]])
    held = [_top5(weights, X) + (y,) for _, X, y in sorted(examples, key=lambda e: e[0])[1500:]]
    assert sum(y in top for _, top, y in held) == cal.info["hits"]
    # on the held-out quarter, the mean calibrated confidence is the hit rate (what Platt fits)
    assert np.mean([cal(mass) for mass, _, _ in held]) == pytest.approx(cal.info["hits"] / 500, abs=0.01)
    # on investigations it never saw, each quarter of the confidences is right about its own hit rate
    fresh = [_top5(weights, X) + (y,) for _, X, y in _examples(4000, noise=1.5, seed=7)]
    predicted = np.array([cal(mass) for mass, _, _ in fresh])
    hit = np.array([y in top for _, top, y in fresh])
    rows = _per_quartile(predicted, hit)
    for pred, observed in rows:
        assert abs(pred - observed) < 0.08, rows
    assert [observed for _, observed in rows] == sorted(observed for _, observed in rows)
    assert rows[-1][1] - rows[0][1] > 0.2, rows  # it separates likely hits from unlikely ones


def test_too_few_investigations_keep_the_shipped_calibration():
    assert fit_calibration(_examples(MIN_CALIBRATION * 2, noise=1.0)) is None


def test_saved_calibration_is_what_investigate_loads(tmp_path):
    cal = fit_calibration(_examples(200, noise=2.0, seed=1))
    written = save_scorers(Fitted(calibration=cal), tmp_path)
    assert written == [tmp_path / "calibration.json"]
    loaded = load_calibration("features", tmp_path)
    assert (loaded.a, loaded.b) == (cal.a, cal.b)
    assert json.loads((tmp_path / "calibration.json").read_text())["features"]["info"]["n"] == 50
    shipped = load_calibration("features", None)
    assert (shipped.a, shipped.b) != (cal.a, cal.b)
