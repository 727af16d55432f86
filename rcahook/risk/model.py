"""The logistic risk model: probability that a commit will later be named as a root cause.

A logistic regression on standardized RISK_FEATURES (risk/state.py), with two level
thresholds. The shipped default is rcahook/data/default_risk.json; `rcahook train` fits a
repository's own (risk/training.py) into <git dir>/rcahook/risk.json, used automatically.

numpy only: this module is on the pre-push hook's path, which must start fast.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from rcahook.errors import ConfigError
from rcahook.numeric import sigmoid
from rcahook.risk.state import RISK_FEATURES

RISK_FILE = "risk.json"  # in <git dir>/rcahook/, written by `rcahook train`
LEVELS = ("low", "medium", "high")
LEVEL_QUANTILES = (0.80, 0.95)  # medium: riskier than 80% of the training commits; high: 95%


@dataclass
class RiskModel:
    """Logistic regression on standardized features; the file describes itself (info)."""

    names: tuple[str, ...]
    mean: np.ndarray  # (F,) feature means over the training commits
    scale: np.ndarray  # (F,) their standard deviations (1 where constant)
    coef: np.ndarray  # (F,) weights of the standardized features
    intercept: float
    thresholds: tuple[float, float] = (0.1, 0.3)  # probability for "medium", for "high"
    info: dict = field(default_factory=dict)  # data, cut-off, counts

    def _aligned(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """mean, scale and coef in RISK_FEATURES order; features unknown to the file weigh 0."""
        if self.names == RISK_FEATURES:
            return self.mean, self.scale, self.coef
        idx = {n: i for i, n in enumerate(self.names)}

        def pick(values: np.ndarray, default: float) -> np.ndarray:
            return np.array([values[idx[n]] if n in idx else default for n in RISK_FEATURES])

        return pick(self.mean, 0.0), pick(self.scale, 1.0), pick(self.coef, 0.0)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """X (N, F) -> (N, F): each feature's term of the log-odds, against an average commit."""
        mean, scale, coef = self._aligned()
        return (X - mean) / scale * coef

    def probability(self, X: np.ndarray) -> np.ndarray:
        """X (N, F) in RISK_FEATURES order -> (N,) probabilities."""
        return sigmoid(self.contributions(X).sum(axis=1) + self.intercept)

    def level(self, p: float) -> str:
        medium, high = self.thresholds
        return "high" if p >= high else "medium" if p >= medium else "low"

    def to_json(self) -> dict:
        def r(a: Iterable[float]) -> list[float]:
            return [round(float(v), 6) for v in a]

        return {"format": "rcahook.risk/1", "names": list(self.names), "mean": r(self.mean),
                "scale": r(self.scale), "coef": r(self.coef), "intercept": round(float(self.intercept), 6),
                "thresholds": r(self.thresholds), "info": self.info}

    def save(self, path: Path | str) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path | str) -> RiskModel:
        try:
            doc = json.loads(Path(path).read_text())
            names = tuple(doc["names"])
            mean, scale, coef = (np.array(doc[k], dtype=np.float64) for k in ("mean", "scale", "coef"))
            if not mean.shape == scale.shape == coef.shape == (len(names),):
                raise ValueError("expected one mean, scale and coef per name")
            medium, high = (float(t) for t in doc["thresholds"])
            return cls(names, mean, scale, coef, float(doc["intercept"]), (medium, high), doc.get("info", {}))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"cannot read the risk model {path} ({e}); re-run `rcahook train` "
                              "or delete the file to use the default model") from e


def hand_set_model() -> RiskModel:
    """Only when the shipped default_risk.json is missing: size first, then past root causes."""
    hand = {"log_added": 0.6, "log_files": 0.1, "file_culprits": 0.2, "word_risk": 0.2,
            "def_culprits": 0.1, "blast_radius": 0.1, "author_file_exp": -0.1, "doc_share": -0.2}
    n = len(RISK_FEATURES)
    mean = np.zeros(n)
    mean[RISK_FEATURES.index("log_added")] = 3.0
    return RiskModel(RISK_FEATURES, mean, np.ones(n), np.array([hand.get(f, 0.0) for f in RISK_FEATURES]),
                     -3.0, (0.1, 0.3), {"source": "hand-set"})


def default_risk_model() -> RiskModel:
    path = resources.files("rcahook") / "data" / "default_risk.json"
    if path.is_file():
        return RiskModel.load(str(path))
    return hand_set_model()


def load_risk_model(index_dir: Path | None) -> tuple[RiskModel, str]:
    """(model, where from): the repository's own when `rcahook train` fitted one, else the default."""
    if index_dir is not None and (index_dir / RISK_FILE).is_file():
        return RiskModel.load(index_dir / RISK_FILE), str(index_dir / RISK_FILE)
    model = default_risk_model()
    return model, model.info.get("source", "default")
