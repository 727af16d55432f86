"""Fitting the risk model: features of every commit from the history before it (`build_data`,
one `replay` walk), then a penalised logistic regression (numeric.fit_logistic).

Used by `rcahook train`, the risk backtest and bench/fit_default_risk.py; never by the hook.
"""
from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rcahook.errors import ConfigError
from rcahook.numeric import fit_logistic
from rcahook.risk.facts import CommitFacts, load_facts
from rcahook.risk.model import LEVEL_QUANTILES, RiskModel
from rcahook.risk.state import RISK_FEATURES, RiskHistory, culprit_events, replay


def fit_standardized(X: np.ndarray, y: np.ndarray, *, l2: float = 30.0, max_iter: int = 50,
                     ) -> tuple[np.ndarray, float, bool]:
    """(coef, intercept, converged) maximising log-likelihood - l2/2 |coef|^2 (the intercept is
    not penalized).

    X: (N, F) standardized, y: (N,) in {0, 1}. Starts from the base rate's log-odds.
    """
    rate = min(max(float(np.mean(y)), 1e-4), 1 - 1e-4) if len(y) else 0.5
    coef, intercept, result = fit_logistic(X, y, l2=l2, intercept=math.log(rate / (1 - rate)), max_iter=max_iter)
    return coef, intercept, result.converged


def fit_model(X: np.ndarray, y: np.ndarray, *, l2: float = 30.0, info: dict | None = None) -> RiskModel:
    """Standardize, fit, and put the level thresholds at LEVEL_QUANTILES of the training commits."""
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-9] = 1.0
    coef, intercept, converged = fit_standardized((X - mean) / scale, y.astype(np.float64), l2=l2)
    model = RiskModel(RISK_FEATURES, mean, scale, coef, intercept, info=dict(info or {}))
    if not converged:  # the best point found is kept; say so in the file
        model.info["converged"] = False
    p = model.probability(X)
    medium, high = (float(np.quantile(p, q)) for q in LEVEL_QUANTILES)
    model.thresholds = (medium, max(high, medium))
    model.info.update({"l2": l2, "n_commits": int(len(y)), "n_culprits": int(y.sum()),
                       "level_quantiles": list(LEVEL_QUANTILES)})
    return model


@dataclass
class RiskData:
    """Commits of a history, oldest first, with their features and when each was first named
    as a root cause (None: never)."""

    commits: list[CommitFacts]
    X: np.ndarray  # (N, F)
    named_at: list[int | None]

    def labels(self, *, known_by: int | None = None) -> np.ndarray:
        """(N,): 1 for commits named as a root cause (by a fix made before `known_by`, if given)."""
        return np.array([t is not None and (known_by is None or t < known_by) for t in self.named_at],
                        dtype=np.float64)

    def times(self) -> np.ndarray:
        return np.array([c.time for c in self.commits], dtype=np.int64)


def build_data(conn: sqlite3.Connection, *, only: set[str] | None = None,
               callers: Callable[[str], int] | None = None, repo=None) -> RiskData:
    """Features of every non-merge commit (or those in `only`), each from the history before it.

    With `only`, history is that set alone: statistics count its commits and root causes are
    learned from its fixes, so a branch the repository did not keep cannot leak in.
    """
    facts = load_facts(conn, repo=repo)  # repo: touched definitions the index left for later, computed
    if only is not None:
        facts = {s: f for s, f in facts.items() if s in only}
    events = [e for e in culprit_events(conn) if e.fix in facts]
    named_at: dict[str, int] = {}
    for e in events:
        named_at.setdefault(e.culprit, e.time)
    commits, rows = [], []
    for c, x in replay(list(facts.values()), events, facts, state=RiskHistory(callers=callers)):
        commits.append(c)
        rows.append(x)
    X = np.vstack(rows) if rows else np.zeros((0, len(RISK_FEATURES)))
    return RiskData(commits, X, [named_at.get(c.sha) for c in commits])


def fit_risk(history, *, until_time: int, l2: float = 30.0, callers: Callable[[str], int] | None = None,
             data: RiskData | None = None) -> RiskModel:
    """A repository's own risk model from what was known at `until_time` (epoch seconds).

    Training rows: the commits made before then; a commit counts as a root cause when a fix
    made before then named it. `history` is a `rcahook.index.reader.History`; `data` reuses
    features already built from it (the backtest builds them once for several fits).
    """
    data = data or build_data(history.conn, callers=callers, repo=history.repo)
    keep = data.times() < until_time
    y = data.labels(known_by=until_time)[keep]
    if not y.any():
        raise ConfigError(f"no commit made before {until_time} was named as a root cause: the risk model "
                          "needs culprit links (Fixes: <sha>, reverts); the default model stays in use")
    return fit_model(data.X[keep], y, l2=l2, info={"source": "fitted", "until_time": int(until_time)})
