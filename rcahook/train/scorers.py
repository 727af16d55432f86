"""The two small models every `rcahook train` run fits besides the language model:
the features ranker's weights (`scorer.fit`, conditional logit) and the pre-push risk
model (`risk.fit_risk`), both from the history before the cut-off only."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rcahook.backtest.mine import Investigation
from rcahook.backtest.run import query_for
from rcahook.errors import ConfigError
from rcahook.history import History
from rcahook.progress import Progress
from rcahook.train.card import Cutoff

TRACKS = ("title", "paths")  # one weight vector serves incidents with and without impacted paths


@dataclass
class Fitted:
    weights: object | None = None  # rcahook.scorer.Weights
    risk: object | None = None  # rcahook.risk.RiskModel
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        out: dict = {}
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
        if self.notes:
            out["notes"] = {"summary": "; ".join(self.notes)}
        return out


def fit_feature_weights(history: History, investigations: Sequence[Investigation], *, cut: Cutoff,
                        window: int, repository: str, progress: Progress | None = None):
    """The features ranker fitted on the investigations before the cut-off, both tracks."""
    from rcahook.features import normalized_matrix
    from rcahook.retrieve import feature_matrix
    from rcahook.scorer import fit

    culprits = history.culprit_of()
    examples = []
    progress = progress or Progress(enabled=False)
    with progress.task(f"features ({len(investigations)} investigations)", total=len(investigations)) as advance:
        for inv in investigations:
            for track in TRACKS:
                commits, X, _, _ = feature_matrix(history, query_for(inv, track), inv.candidates, inv.parent,
                                                  culprits=culprits)
                shas = [c.sha for c in commits]
                if inv.culprit in shas:
                    examples.append((normalized_matrix(X), shas.index(inv.culprit)))
            advance(1)
    info = {"source": "rcahook train", "repository": repository, "cutoff_time": cut.time,
            "cutoff_sha": cut.sha, "cutoff_rule": cut.rule, "window": window, "tracks": list(TRACKS),
            "n_investigations": len(investigations), "n_examples": len(examples)}
    return fit(examples, info=info) if examples else None


def fit_scorers(history: History, investigations: Sequence[Investigation], *, cut: Cutoff, window: int,
                repository: str, progress: Progress | None = None) -> Fitted:
    out = Fitted()
    if investigations:
        out.weights = fit_feature_weights(history, investigations, cut=cut, window=window,
                                          repository=repository, progress=progress)
        if len(investigations) < 20:
            out.notes.append(f"features weights fitted on only {len(investigations)} investigations: "
                             "expect them to be noisy")
    else:
        out.notes.append("no investigation before the cut-off: the features ranker keeps the default weights")
    try:
        from rcahook.risk import fit_risk
    except ImportError:  # the risk scorer is optional in this build
        out.notes.append("rcahook.risk.fit_risk is not available: the risk model keeps its defaults")
        return out
    try:
        # fit_risk's bound is exclusive; the cut-off time is inclusive
        out.risk = fit_risk(history, until_time=cut.time + 1)
        out.risk.info.update({"cutoff_sha": cut.sha, "cutoff_rule": cut.rule})
    except ConfigError as e:
        out.notes.append(f"risk model not fitted ({e})")
    return out


def save_scorers(fitted: Fitted, *directories: Path) -> list[Path]:
    from rcahook.scorer import WEIGHTS_FILE

    written = []
    for d in directories:
        if fitted.weights is not None:
            fitted.weights.save(d / WEIGHTS_FILE)
            written.append(d / WEIGHTS_FILE)
        if fitted.risk is not None:
            from rcahook.risk import RISK_FILE

            fitted.risk.save(d / RISK_FILE)
            written.append(d / RISK_FILE)
    return written
