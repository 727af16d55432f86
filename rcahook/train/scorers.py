"""The two small models every `rcahook train` run fits besides the language model:
the features ranker's weights (`rca.model.fit`, conditional logit) and the pre-push risk
model (`risk.training.fit_risk`), both from the history before the cut-off only, and a calibration
of the features ranker's confidence on those weights (Platt scaling on a time split)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rcahook.backtest.mine import Investigation
from rcahook.backtest.run import query_for
from rcahook.errors import ConfigError
from rcahook.index.reader import History
from rcahook.progress import Progress
from rcahook.train.card import Cutoff

if TYPE_CHECKING:  # numpy, networkx: kept off this module's import
    import numpy as np

    from rcahook.codegraph.graph import CodeGraph
    from rcahook.rca.confidence import Calibration
    from rcahook.rca.model import Weights
    from rcahook.risk.model import RiskModel

    Example = tuple[float, np.ndarray, int]  # (time, normalized feature matrix, index of the root cause)

TRACKS = ("title", "paths")  # one weight vector serves incidents with and without impacted paths
CALIBRATION_SHARE = 0.25  # the newest quarter of the investigations calibrates weights fitted on the rest
MIN_CALIBRATION = 20  # fewer held-out investigations than this: keep the shipped calibration


@dataclass
class Fitted:
    weights: Weights | None = None
    risk: RiskModel | None = None
    calibration: Calibration | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.weights is not None:
            info = self.weights.info
            out["features"] = {"file": "weights.json", "summary":
                               f"conditional logit on {info['n_investigations']} investigations x "
                               f"{len(info['tracks'])} tracks ({info['n_examples']} examples)", **info}
        if self.risk is not None:
            info = self.risk.info
            out["risk"] = {"file": "risk.json", "summary":
                           f"logistic regression on {info.get('n_commits')} commits, "
                           f"{info.get('n_culprits')} root causes", **info}
        if self.calibration is not None:
            info = self.calibration.info
            out["calibration"] = {"file": "calibration.json", "summary":
                                  f"Platt a={self.calibration.a:.3f} b={self.calibration.b:.3f} on the newest "
                                  f"{info['n']} investigations, weights fitted on the older ones", **info}
        if self.notes:
            out["notes"] = {"summary": "; ".join(self.notes)}
        return out


def _examples(history: History, investigations: Sequence[Investigation], *,
              graph_at: Callable[[str], CodeGraph] | None, progress: Progress | None) -> list[Example]:
    """(time, normalized feature matrix, index of the root cause) per investigation and track."""
    from rcahook.rca.features import normalized_matrix
    from rcahook.rca.retrieve import feature_matrix, graph_hints, needs_graph

    culprits = history.culprit_of()
    examples: list[Example] = []
    progress = progress or Progress(enabled=False)
    with progress.task(f"features ({len(investigations)} investigations)", total=len(investigations)) as advance:
        for inv in investigations:
            for track in TRACKS:
                query = query_for(inv, track)
                # the code graph as of F^, exactly as the backtest replays it
                graph = graph_at(inv.parent) if graph_at is not None and needs_graph(query) else None
                commits, X, _, _ = feature_matrix(history, query, inv.candidates, inv.parent, culprits=culprits,
                                                  graph=graph_hints(query, graph))
                shas = [c.sha for c in commits]
                if inv.culprit in shas:
                    examples.append((inv.time, normalized_matrix(X), shas.index(inv.culprit)))
            advance(1)
    return examples


def fit_calibration(examples: Sequence[Example]) -> Calibration | None:
    """Platt scaling of the top-5 mass on the newest investigations, weights fitted on the older ones.

    A calibration fitted on the weights' own training data would be over-confident; a time
    split is what a responder meets: incidents newer than anything the weights saw."""
    from rcahook.rca.confidence import fit_platt
    from rcahook.rca.model import fit, order, softmax

    ordered = sorted(examples, key=lambda e: e[0])
    cut = int(len(ordered) * (1 - CALIBRATION_SHARE))
    held = ordered[cut:]
    if len(held) < MIN_CALIBRATION or cut < MIN_CALIBRATION:
        return None
    weights = fit([(X, y) for _, X, y in ordered[:cut]])
    raw: list[float] = []
    hit: list[bool] = []
    for _, X, y in held:
        s = X @ weights.aligned()
        top = list(order(s))[:5]
        raw.append(float(softmax(s)[top].sum()))
        hit.append(y in top)
    calibration = fit_platt(raw, hit)
    calibration.info.update({"n": len(held), "hits": int(sum(hit)),
                             "source": "rcahook train: newest quarter of the investigations before the cut-off"})
    return calibration


def fit_feature_weights(history: History, investigations: Sequence[Investigation], *, cut: Cutoff,
                        window: int, repository: str, progress: Progress | None = None,
                        graph_at: Callable[[str], CodeGraph] | None = None,
                        ) -> tuple[Weights | None, Calibration | None]:
    """The features ranker fitted on the investigations before the cut-off, both tracks,
    and its calibration (None where there are too few investigations)."""
    from rcahook.rca.model import fit

    examples = _examples(history, investigations, graph_at=graph_at, progress=progress)
    info = {"source": "rcahook train", "repository": repository, "cutoff_time": cut.time,
            "cutoff_sha": cut.sha, "cutoff_rule": cut.rule, "window": window, "tracks": list(TRACKS),
            "code_graph": graph_at is not None,
            "n_investigations": len(investigations), "n_examples": len(examples)}
    if not examples:
        return None, None
    return fit([(X, y) for _, X, y in examples], info=info), fit_calibration(examples)


def fit_scorers(history: History, investigations: Sequence[Investigation], *, cut: Cutoff, window: int,
                repository: str, progress: Progress | None = None,
                graph_at: Callable[[str], CodeGraph] | None = None) -> Fitted:
    out = Fitted()
    if investigations:
        out.weights, out.calibration = fit_feature_weights(history, investigations, cut=cut, window=window,
                                                           repository=repository, progress=progress,
                                                           graph_at=graph_at)
        if out.weights is not None and out.calibration is None:
            out.notes.append("too few investigations to calibrate the learned weights: the shipped calibration "
                             "stays in use")
        if len(investigations) < 20:
            out.notes.append(f"features weights fitted on only {len(investigations)} investigations: "
                             "expect them to be noisy")
    else:
        out.notes.append("no investigation before the cut-off: the features ranker keeps the default weights")
    try:
        from rcahook.risk.training import fit_risk
    except ImportError:  # the risk scorer is optional in this build
        out.notes.append("rcahook.risk.training.fit_risk is not available: the risk model keeps its defaults")
        return out
    try:
        # fit_risk's bound is exclusive; the cut-off time is inclusive
        out.risk = fit_risk(history, until_time=cut.time + 1)
        out.risk.info.update({"cutoff_sha": cut.sha, "cutoff_rule": cut.rule})
    except ConfigError as e:
        out.notes.append(f"risk model not fitted ({e})")
    return out


def save_scorers(fitted: Fitted, *directories: Path) -> list[Path]:
    import json

    from rcahook.rca.confidence import CALIBRATION_FILE, calibration_document
    from rcahook.rca.model import WEIGHTS_FILE

    written = []
    for d in directories:
        if fitted.weights is not None:
            fitted.weights.save(d / WEIGHTS_FILE)
            written.append(d / WEIGHTS_FILE)
        if fitted.calibration is not None:
            (d / CALIBRATION_FILE).write_text(
                json.dumps(calibration_document({"features": fitted.calibration}), indent=1) + "\n")
            written.append(d / CALIBRATION_FILE)
        if fitted.risk is not None:
            from rcahook.risk.model import RISK_FILE

            fitted.risk.save(d / RISK_FILE)
            written.append(d / RISK_FILE)
    return written
