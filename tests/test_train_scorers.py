"""The learned features weights' calibration: a time split, written beside the weights."""
import json

import numpy as np

from rcahook.rca.confidence import load_calibration
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


def test_calibration_is_fitted_on_the_newest_quarter_and_tracks_accuracy():
    examples = _examples(200, noise=2.0)
    cal = fit_calibration(examples)
    assert cal is not None
    assert cal.info["n"] == 50  # the newest quarter, never the weights' own training data
    # the calibrated mean confidence matches the held-out hit rate (what Platt scaling fits)
    hits = cal.info["hits"] / cal.info["n"]
    assert 0.05 < hits < 0.95


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
