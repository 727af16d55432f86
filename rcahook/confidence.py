"""A calibrated probability that the root cause is among the suggestions shown.

Raw signal: the features model's probability mass on the top five (softmax over the whole
search space). Calibration: Platt scaling of its logit, fitted on backtest results (the
share of investigations whose root cause really was in the top five), per ranker. The
method and the curve are in docs/confidence.md; `rcahook backtest` refits and reports it.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

CALIBRATION_FILE = "calibration.json"
_EPS = 1e-6


def _logit(p: float) -> float:
    p = min(max(p, _EPS), 1 - _EPS)
    return math.log(p / (1 - p))


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def raw_confidence(probabilities: Sequence[float]) -> float:
    """Model probability that one of these candidates is the root cause."""
    return min(1.0, max(0.0, float(sum(probabilities))))


@dataclass
class Calibration:
    a: float = 1.0
    b: float = 0.0
    info: dict = field(default_factory=dict)

    def __call__(self, raw: float) -> float:
        return _sigmoid(self.a * _logit(raw) + self.b)

    def to_json(self) -> dict:
        return {"a": self.a, "b": self.b, "info": self.info}


def fit_platt(raw: Sequence[float], hit: Sequence[bool], *, l2: float = 1e-3) -> Calibration:
    """Logistic regression of hit on logit(raw), by Newton's method (two parameters)."""
    xs = [_logit(r) for r in raw]
    ys = [1.0 if h else 0.0 for h in hit]
    a, b = 1.0, 0.0
    for _ in range(50):
        ga = gb = haa = hab = hbb = 0.0
        for x, y in zip(xs, ys):
            p = _sigmoid(a * x + b)
            ga += (p - y) * x
            gb += p - y
            w = p * (1 - p)
            haa += w * x * x
            hab += w * x
            hbb += w
        ga += 2 * l2 * a
        haa += 2 * l2
        hbb += 1e-9
        det = haa * hbb - hab * hab
        if abs(det) < 1e-12:
            break
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        a, b = a - da, b - db
        if abs(da) + abs(db) < 1e-9:
            break
    return Calibration(a, b, {"n": len(xs), "hits": int(sum(ys))})


def reliability(raw: Sequence[float], hit: Sequence[bool], calibration: Calibration, *, bins: int = 5
                ) -> list[dict]:
    """Per bin of calibrated confidence: mean confidence vs observed hit rate."""
    rows: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for r, h in zip(raw, hit):
        c = calibration(r)
        rows[min(int(c * bins), bins - 1)].append((c, h))
    out = []
    for i, row in enumerate(rows):
        if row:
            out.append({"bin": f"{i / bins:.1f}-{(i + 1) / bins:.1f}", "n": len(row),
                        "confidence": sum(c for c, _ in row) / len(row),
                        "observed": sum(h for _, h in row) / len(row)})
    return out


def load_calibration(ranker: str, index_dir: Path | None = None) -> Calibration:
    """The repository's own calibration (written by `rcahook train`) or the shipped one."""
    sources = []
    if index_dir is not None:
        sources.append(index_dir / CALIBRATION_FILE)
    sources.append(resources.files("rcahook") / "data" / CALIBRATION_FILE)
    for path in sources:
        try:
            doc = json.loads(Path(str(path)).read_text())
        except (OSError, ValueError):
            continue
        entry = doc.get(ranker) or doc.get("features")
        if entry:
            return Calibration(entry["a"], entry["b"], entry.get("info", {}))
    return Calibration(info={"source": "uncalibrated"})
