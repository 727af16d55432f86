"""The one numeric core (rcahook/numeric.py) and the three models fitted with it: known
weights recovered from simulated data, a line search that never goes uphill, clear errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rcahook import numeric
from rcahook.numeric import fit_conditional_logit, fit_logistic, newton
from rcahook.rca.confidence import fit_platt
from rcahook.rca.model import fit as fit_features_ranker
from rcahook.risk.state import RISK_FEATURES
from rcahook.risk.training import fit_model

N = 20_000  # simulated examples per model: enough for ~0.05 standard errors on each weight


def _bernoulli(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    return (rng.random(len(logits)) < 1 / (1 + np.exp(-logits))).astype(np.float64)


# --- recovering known weights -------------------------------------------------------------------

def test_conditional_logit_recovers_known_weights():
    rng = np.random.default_rng(11)
    true = np.array([1.5, -1.0, 0.5, 0.0])
    examples = []
    for _ in range(N // 5):  # 4,000 choice sets of 5 candidates: 20,000 rows
        X = rng.normal(size=(5, len(true)))
        p = np.exp(X @ true)
        examples.append((X, int(rng.choice(5, p=p / p.sum()))))
    weights = fit_features_ranker(examples, l2=0.0, names=("a", "b", "c", "d"))
    assert weights.values == pytest.approx(true, abs=0.12)
    assert "converged" not in weights.info  # converged: nothing to note
    result = fit_conditional_logit(examples, l2=0.0)
    assert result.converged and result.iterations < 15
    assert np.array_equal(result.w, weights.values)


def test_risk_model_recovers_known_weights():
    rng = np.random.default_rng(12)
    n = len(RISK_FEATURES)
    X = rng.normal(size=(N, n)) * 2.0 + 1.0  # fit_model standardizes: weights per standard deviation
    true = np.zeros(n)
    true[0], true[3], true[7] = 0.8, -0.6, 0.4
    y = _bernoulli(rng, (X - X.mean(axis=0)) / X.std(axis=0) @ true - 2.0)
    model = fit_model(X, y, l2=1e-6)
    assert model.coef == pytest.approx(true, abs=0.08)
    assert model.intercept == pytest.approx(-2.0, abs=0.08)


def test_platt_scaling_recovers_known_weights():
    rng = np.random.default_rng(13)
    raw = rng.uniform(0.02, 0.98, size=N)
    a, b = 1.7, -0.4  # P(hit) = sigmoid(a logit(raw) + b)
    hit = _bernoulli(rng, a * np.log(raw / (1 - raw)) + b) == 1
    cal = fit_platt(raw.tolist(), hit.tolist(), l2=0.0)
    assert cal.a == pytest.approx(a, abs=0.08) and cal.b == pytest.approx(b, abs=0.08)


def test_weighted_logistic_equals_repeated_rows():
    rng = np.random.default_rng(14)
    X = rng.normal(size=(300, 2))
    y = _bernoulli(rng, X @ np.array([1.0, -2.0]))
    reps = rng.integers(1, 4, size=300)
    weighted = fit_logistic(X, y, l2=0.5, weight=reps.astype(float))
    repeated = fit_logistic(np.repeat(X, reps, axis=0), np.repeat(y, reps), l2=0.5)
    assert weighted[0] == pytest.approx(repeated[0], abs=1e-8) and weighted[1] == pytest.approx(repeated[1], abs=1e-8)


# --- the line search ----------------------------------------------------------------------------

def _overshooting() -> tuple[numeric.Objective, list[float]]:
    """f(w) = sqrt(1 + w^2): from |w| > 1 the full Newton step w(1 + w^2) lands further out."""
    accepted: list[float] = []

    def objective(w: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        r = math.sqrt(1 + float(w[0]) ** 2)
        accepted.append(r)  # the full objective is evaluated at accepted points only
        return r, np.array([w[0] / r]), np.array([[r ** -3]])

    return objective, accepted


def test_line_search_never_increases_the_loss_when_newton_overshoots():
    objective, accepted = _overshooting()
    start = np.array([3.0])
    full_step = start - np.linalg.solve(objective(start)[2], objective(start)[1])
    accepted.clear()
    assert math.sqrt(1 + full_step[0] ** 2) > math.sqrt(1 + 3.0 ** 2)  # the full step is uphill

    result = newton(objective, start, loss_only=lambda w: math.sqrt(1 + float(w[0]) ** 2), tol=1e-14)
    assert all(b <= a for a, b in zip(accepted, accepted[1:], strict=False)), accepted
    assert result.converged and abs(result.w[0]) < 1e-6 and result.loss == pytest.approx(1.0)


def test_failed_line_search_stops_where_it_is_and_says_so():
    """A gradient with the wrong sign: every step along the Newton direction goes uphill."""

    def lying(w: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        return float(w @ w), -2 * w, 2 * np.eye(len(w))

    start = np.array([1.0, -2.0])
    result = newton(lying, start)
    assert not result.converged
    assert np.array_equal(result.w, start) and result.loss == 5.0  # never a worse point


def test_max_iter_reached_is_not_converged():
    objective, _ = _overshooting()
    result = newton(objective, np.array([50.0]), max_iter=1)
    assert not result.converged and result.iterations == 1 and abs(result.w[0]) < 50


# --- bad inputs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("examples, match", [
    ([], "at least one example"),
    ([(np.zeros((3, 2)), 0), (np.zeros((3, 3)), 0)], "example 1 has 3 columns"),
    ([(np.zeros((3, 2)), 3)], "not a row of X"),
    ([(np.array([[np.nan, 0.0]]), 0)], "finite"),
    ([(np.zeros(3), 0)], "non-empty matrix"),
])
def test_conditional_logit_rejects_bad_input(examples, match):
    with pytest.raises(ValueError, match=match):
        fit_features_ranker(examples)


@pytest.mark.parametrize("X, y, kwargs, match", [
    (np.zeros((0, 2)), np.zeros(0), {}, "at least one row"),
    (np.zeros((3, 2)), np.zeros(2), {}, "one label per row"),
    (np.zeros(3), np.zeros(3), {}, "matrix"),
    (np.array([[np.inf], [0.0]]), np.zeros(2), {}, "finite"),
    (np.zeros((2, 1)), np.array([0.0, 2.0]), {}, r"\[0, 1\]"),
    (np.zeros((2, 1)), np.zeros(2), {"l2": -1.0}, "penalties"),
    (np.zeros((2, 1)), np.zeros(2), {"weight": np.array([1.0, -1.0])}, "weights"),
])
def test_logistic_rejects_bad_input(X, y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_logistic(X, y, **{"l2": 1.0, **kwargs})


def test_platt_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="one label per row"):
        fit_platt([0.5, 0.6, 0.7], [True, False])


def test_newton_rejects_a_non_finite_start():
    with pytest.raises(ValueError, match="not finite"):
        newton(lambda w: (math.inf, w, np.eye(1)), np.zeros(1))
