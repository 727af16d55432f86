"""The `features` ranker: a conditional-logit model over the stage-1 features.

P(candidate i caused the incident) = softmax_i(w · x_i) over the search space, fitted by
maximum likelihood on investigations (one root cause among its candidates). Default
weights ship in rcahook/data/; `rcahook train` fits a repository's own, saved in the
index directory and picked up automatically. The pre-push risk scanner reuses the same
features through its own small model (risk/model.py).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from rcahook.errors import ConfigError
from rcahook.numeric import fit_conditional_logit
from rcahook.rca.features import all_feature_names

WEIGHTS_FILE = "weights.json"  # in <git dir>/rcahook/, written by `rcahook train`


@dataclass
class Weights:
    names: tuple[str, ...]
    values: np.ndarray  # (F,)
    info: dict = field(default_factory=dict)  # where they came from: data, cut-off, counts

    def aligned(self) -> np.ndarray:
        """Values in the current feature order; features unknown to this file weigh 0."""
        current = all_feature_names()
        if self.names == current:
            return self.values
        lookup = dict(zip(self.names, self.values, strict=True))
        return np.array([lookup.get(n, 0.0) for n in current])

    def to_json(self) -> dict:
        return {"names": list(self.names), "values": [round(float(v), 6) for v in self.values],
                "info": self.info}

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path | str) -> Weights:
        try:
            doc = json.loads(Path(path).read_text())
            names, values = tuple(doc["names"]), np.array(doc["values"], dtype=np.float64)
            if values.shape != (len(names),):
                raise ValueError(f"{len(names)} names but values of shape {values.shape}")
            return cls(names, values, doc.get("info", {}))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"cannot read feature weights from {path} ({e}); re-run `rcahook train` "
                              "or delete the file to use the defaults") from e


def default_weights() -> Weights:
    path = resources.files("rcahook") / "data" / "default_weights.json"
    if path.is_file():
        return Weights.load(str(path))
    # hand-set fallback: text match first, then the structural priors (see docs/ranking.md)
    hand = {"bm25_text/max": 3.0, "bm25_subject/max": 1.0, "bm25_paths/max": 1.0,
            "bm25_idents": 0.2, "same_component": 0.6, "log_size": 0.5, "recency": 0.4,
            "exact_ident": 1.0, "component_files": 1.5, "impacted_overlap": 3.0, "impacted_dir": 1.0,
            "touched_named": 1.0, "graph_near": 1.0, "doc_share": -0.3}
    names = all_feature_names()
    return Weights(names, np.array([hand.get(n, 0.0) for n in names]), {"source": "hand-set"})


def load_weights(index_dir: Path | None) -> Weights:
    """The repository's learned weights when `rcahook train` fitted them, else the defaults."""
    if index_dir is not None and (index_dir / WEIGHTS_FILE).is_file():
        return Weights.load(index_dir / WEIGHTS_FILE)
    return default_weights()


def score(X: np.ndarray, weights: Weights) -> np.ndarray:
    """X: (N, F) normalized feature matrix -> (N,) scores."""
    return X @ weights.aligned()


def softmax(scores: np.ndarray) -> np.ndarray:
    if scores.size == 0:
        return scores
    z = scores - scores.max()
    e = np.exp(z)
    return e / e.sum()


def order(scores: np.ndarray) -> np.ndarray:
    """Indices best first; ties go to the earlier (newer) candidate."""
    return np.lexsort((np.arange(len(scores)), -scores))


def fit(examples: Sequence[tuple[np.ndarray, int]], *, l2: float = 1e-3, max_iter: int = 50,
        names: tuple[str, ...] | None = None, info: dict | None = None) -> Weights:
    """Maximum-likelihood conditional logit with an L2 penalty (numeric.fit_conditional_logit).

    examples: (X (N_k, F), index of the root cause in X). The log-likelihood is concave, so
    Newton converges in a handful of steps; F is small, so the (F, F) Hessian is cheap.
    Not converging (the line search found no decrease) is noted in `info`.
    """
    result = fit_conditional_logit(examples, l2=l2, max_iter=max_iter)
    info = dict(info or {})
    if not result.converged:
        info["converged"] = False
    return Weights(names or all_feature_names(), result.w, info)
