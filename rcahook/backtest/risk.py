"""The risk (pre-push) track of protocol v1: would the scanner have flagged the commits that
later turned out to be root causes?

Labels: a non-merge commit reachable from HEAD is a root cause when a later commit names it
(the culprit patterns, or `This reverts commit <sha>`; resolved links of the index). Time
split: the models train on commits older than the split and are measured on the commits
between the split and 180 days before HEAD (younger commits' labels are incomplete). The
default split is the time by which 70% of the commits older than HEAD - 180 days were made.
Features are built in one walk, each commit from the history before it; the repository's
own model also only knows the root causes named before the split.

Metrics (pure functions below): ROC AUC; Recall@20%Effort and Popt, with effort = changed
lines (at least 1); catch rates at 5%, 10% and 50% of commits flagged (the share of root
causes among the riskiest commits by count, the figure Meta reports for its diff risk score;
rcahook.backtest.metrics.catch_rate). Rows: `rcahook` (a model fitted on this repository's
training commits), `rcahook-default` (the shipped default model), LApredict (lines added) and ManualUp
(smallest change first, the classic effort-aware baseline). Effort-aware figures rank each
model by probability per changed line (risk density), LApredict by lines added.
"""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from rcahook.backtest.metrics import CATCH_SHARES, catch_key, catch_rate
from rcahook.errors import BadInputError, ConfigError, NotFoundError
from rcahook.index.reader import History
from rcahook.risk.model import default_risk_model
from rcahook.risk.training import RiskData, build_data, fit_risk
from rcahook.untrusted import md_text, term_text

SCHEMA = "rcahook.backtest.risk/1"
LABEL_DELAY_DAYS = 180
TRAIN_SHARE = 0.7
EFFORT_SHARE = 0.2


# --- metrics ------------------------------------------------------------------------------------

def roc_auc(score: ArrayLike, y: ArrayLike) -> float | None:
    """Probability that a random root cause scores above a random other commit (ties: half)."""
    s, labels = np.asarray(score, dtype=np.float64), np.asarray(y, dtype=bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if not pos or not neg:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks within ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _inspection_order(score: np.ndarray, effort: np.ndarray) -> np.ndarray:
    """Highest score first; among equal scores the smaller change first."""
    return np.lexsort((effort, -score))


def recall_at_effort(score: ArrayLike, y: ArrayLike, effort: ArrayLike, *,
                     share: float = EFFORT_SHARE) -> float | None:
    """Share of root causes found by inspecting commits in score order until `share` of all
    changed lines have been read (a commit that would cross the line is not read)."""
    s, labels, e = (np.asarray(a, dtype=np.float64) for a in (score, y, effort))
    if not labels.sum():
        return None
    order = _inspection_order(s, e)
    read = np.cumsum(e[order]) <= share * e.sum()
    return float(labels[order][read].sum() / labels.sum())


def _area(order: np.ndarray, y: np.ndarray, effort: np.ndarray) -> float:
    """Area under cumulative root causes found (share) against cumulative effort (share)."""
    x = np.concatenate([[0.0], np.cumsum(effort[order])]) / effort.sum()
    found = np.concatenate([[0.0], np.cumsum(y[order])]) / y.sum()
    return float(np.sum((x[1:] - x[:-1]) * (found[1:] + found[:-1]) / 2))


def popt(score: ArrayLike, y: ArrayLike, effort: ArrayLike) -> float | None:
    """Kamei et al.'s Popt: 1 - (optimal - model) / (optimal - worst) areas of the effort curve.
    Optimal reads root causes first, densest first; worst reads them last, sparsest last."""
    s, labels, e = (np.asarray(a, dtype=np.float64) for a in (score, y, effort))
    if not labels.sum() or labels.sum() == len(labels):
        return None
    density = labels / e
    optimal = _area(np.lexsort((e, -density)), labels, e)
    worst = _area(np.lexsort((-e, density)), labels, e)
    model = _area(_inspection_order(s, e), labels, e)
    return float(1 - (optimal - model) / (optimal - worst)) if optimal > worst else None


# --- the run ------------------------------------------------------------------------------------

def default_split(times: np.ndarray, end: int) -> int:
    """The time by which TRAIN_SHARE of the commits older than `end` were made."""
    older = np.sort(times[times < end])
    if len(older) < 10:
        raise BadInputError(f"only {len(older)} commit(s) are older than {LABEL_DELAY_DAYS} days before HEAD: "
                            "too few for the risk track; use a repository with a longer history")
    return int(older[min(int(TRAIN_SHARE * len(older)), len(older) - 1)])


def _parse_split(split: str | int | None) -> int | None:
    if split is None or isinstance(split, int):
        return split
    from rcahook.rca.incident import parse_time

    return int(parse_time(split).timestamp())


def evaluate(data: RiskData, *, head_time: int, split: int | None = None) -> dict:
    """Fit on the training commits, score the test commits, and measure every row."""
    times = data.times()
    end = head_time - LABEL_DELAY_DAYS * 86400
    split = split if split is not None else default_split(times, end)
    if split >= end:
        raise BadInputError(f"the split {_iso(split)} is not older than HEAD - {LABEL_DELAY_DAYS} days "
                            f"({_iso(end)}): nothing would be left to test")
    train = times < split
    test = (times >= split) & (times < end)
    y = data.labels()[test]
    effort = np.array([max(c.added + c.deleted, 1) for c in data.commits], dtype=np.float64)[test]
    added = np.array([c.added for c in data.commits], dtype=np.float64)[test]
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # row -> (ranking score, effort-aware score)
    notes: list[str] = []
    own = None
    try:
        own = fit_risk(None, until_time=split, data=data)
        p = own.probability(data.X[test])
        scores["rcahook"] = (p, p / effort)
    except ConfigError as e:  # no root cause named before the split: report the other rows
        notes.append(str(e))
    p = default_risk_model().probability(data.X[test])
    scores["rcahook-default"] = (p, p / effort)
    scores["lapredict"] = (added, added)
    scores["manualup"] = (-effort, -effort)
    rows = {}
    for name, (rank_score, effort_score) in scores.items():
        rows[name] = {"auc": roc_auc(rank_score, y), "recall_20_effort": recall_at_effort(effort_score, y, effort),
                      "popt": popt(effort_score, y, effort)}
        # Catch rates rank by the ranking score (like AUC): Meta flags the riskiest diffs by
        # count, not by lines read. Ties: smaller change first, then commit order.
        rows[name].update({catch_key(share): catch_rate(rank_score.tolist(), y.tolist(), share,
                                                        tiebreak=effort.tolist())
                           for share in CATCH_SHARES})
    return {
        "split": {"time": int(split), "date": _iso(split), "end": int(end), "end_date": _iso(end),
                  "label_delay_days": LABEL_DELAY_DAYS, "train_share": TRAIN_SHARE},
        "counts": {"commits": int(len(times)), "train": int(train.sum()),
                   "train_culprits_known": int(data.labels(known_by=split)[train].sum()),
                   "test": int(test.sum()), "test_culprits": int(y.sum())},
        "metrics": rows,
        "model": own.to_json() if own is not None else None,
        "notes": notes,
        "_test": test, "_scores": scores,
    }


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d")


def _db_dir(history: History) -> Path | None:
    for _, name, file in history.conn.execute("PRAGMA database_list"):
        if name == "main" and file:
            return Path(file).parent
    return None


def run_risk(*, repo, history: History, fmt: str, report: str | None, output: str | None,
             split: str | int | None = None) -> int:
    """`rcahook backtest --task risk`: `repo` is a gitrepo.Repo, `split` an ISO date (optional)."""
    head = repo.resolve("HEAD")
    try:
        head_time = history.commit(head).committer_time
    except NotFoundError:
        raise NotFoundError(f"HEAD {head[:12]} is not in the index; run without --no-update "
                            "(or `rcahook index`) first") from None
    data = build_data(history.conn, only=set(history.rev_list(head)), repo=history.repo)
    result = evaluate(data, head_time=head_time, split=_parse_split(split))
    test, scores = result.pop("_test"), result.pop("_scores")
    doc = {"schema": SCHEMA, "repository": str(repo.workdir or repo.git_dir), "head": head,
           "protocol_version": 1, "track": "risk", **result}
    out = Path(output) if output else (_db_dir(history) or Path(".")) / "backtest-risk.jsonl"
    _write_results(out, data, test, scores)
    doc["output"] = str(out)
    if report:
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(render_markdown(doc))
    if fmt == "json":
        print(json.dumps(doc, indent=2))
    else:
        print_text(doc)
    return 0


def _write_results(path: Path, data: RiskData, test: np.ndarray, scores: dict) -> None:
    """One JSON line per test commit: its label, effort and every row's score."""
    path.parent.mkdir(parents=True, exist_ok=True)
    commits = [c for c, t in zip(data.commits, test) if t]
    named = [n for n, t in zip(data.named_at, test) if t]
    with open(path, "w") as f:
        for i, (c, when) in enumerate(zip(commits, named)):
            row = {"sha": c.sha, "time": c.time, "culprit": when is not None, "added": c.added,
                   "effort": c.added + c.deleted,
                   "scores": {k: round(float(v[0][i]), 6) for k, v in scores.items() if k.startswith("rcahook")}}
            f.write(json.dumps(row) + "\n")


ROW_LABELS = {"rcahook": "rcahook (fitted on this repository)", "rcahook-default": "rcahook (default model)",
              "lapredict": "LApredict (lines added)", "manualup": "ManualUp (smallest first)"}


def _fmt(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def table_rows(doc: dict) -> list[list[str]]:
    return [[ROW_LABELS.get(k, k), _fmt(m["auc"]), _fmt(m["recall_20_effort"]), _fmt(m["popt"]),
             *(_fmt(m.get(catch_key(s))) for s in CATCH_SHARES)]
            for k, m in doc["metrics"].items()]


COLUMNS = ("model", "ROC AUC", "Recall@20%Effort", "Popt", *(f"Catch@{round(s * 100)}%" for s in CATCH_SHARES))


def _summary(doc: dict) -> str:
    c, s = doc["counts"], doc["split"]
    return (f"risk track, protocol v{doc['protocol_version']}: {doc['repository']} at {doc['head'][:12]}; "
            f"train {c['train']} commits before {s['date']} ({c['train_culprits_known']} known root causes), "
            f"test {c['test']} commits {s['date']} .. {s['end_date']} ({c['test_culprits']} root causes)")


def print_text(doc: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    console.print(term_text(_summary(doc)), markup=False)
    table = Table(show_edge=False)
    for col in COLUMNS:
        table.add_column(col, justify="left" if col == "model" else "right")
    for row in table_rows(doc):
        table.add_row(*row)
    console.print(table)
    for note in doc["notes"]:
        console.print(term_text(f"note: {note}"), markup=False)


def render_markdown(doc: dict) -> str:
    lines = [f"# Risk backtest: {md_text(Path(doc['repository']).name)}", "", md_text(_summary(doc)) + ".", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(doc)]
    lines += ["", "ROC AUC ranks by probability (LApredict by lines added). Recall@20%Effort and Popt "
              "(effort = changed lines) rank rcahook's models by probability per changed line. Catch@5/10/50% "
              "is the share of root causes among the riskiest 5/10/50% of test commits by count, ranked "
              "like ROC AUC (ties: smaller change first); Meta reports 18.7/27.9/84.6% of severe incidents "
              "for its diff risk score on its own monorepo, a different population.", ""]
    lines += [f"Note: {md_text(n)}" for n in doc["notes"]]
    return "\n".join(lines) + "\n"
