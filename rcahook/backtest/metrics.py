"""Backtest metrics: top-k, MRR, stage-1 recall, timing, and abstention (accuracy against
the share of investigations answered). Pure arithmetic on per-investigation results, so
the numbers can be checked by hand (tests/test_backtest_metrics.py)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

KS = (1, 5, 10)
CURVE_K = 20  # the top-k curve in the report runs k = 1..CURVE_K
THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(1, 10))  # 0.1 .. 0.9
TARGET_PRECISION = 0.9
HIT_K = 5  # "answered correctly" = the root cause is among the top five shown


@dataclass(frozen=True)
class Outcome:
    """One investigation replayed by one ranker."""

    fix: str
    ranker: str
    rank: int | None  # 1-based position of the culprit in the final list; None: not in it
    window: int  # candidates the ranker chose from (W)
    retrieved: int | None = None  # stage-1 cut size; None for rankers without a stage 1
    stage1: bool | None = None  # culprit kept by the retriever
    seconds: float = 0.0
    raw: float | None = None  # model probability mass on the top five (features rankers)
    confidence: float | None = None  # raw, calibrated
    signals: dict | None = None  # rcahook.rca.confidence.Signals as JSON (features rankers)
    ballots: tuple[int, int] | None = None  # election: (slots the model filled, slots in all)
    # blend: {"score": features scores, "logp": the model's centred log-probabilities} of the
    # candidates the model saw, features order; "culprit": the root cause's index there or None
    blend: dict | None = None

    def hit(self, k: int = HIT_K) -> bool:
        return self.rank is not None and self.rank <= k


@dataclass(frozen=True)
class Summary:
    n: int
    top: dict[int, float]  # k -> share of investigations with the culprit in the top k
    mrr: float
    stage1_recall: float | None
    retrieved_mean: float | None
    seconds_mean: float
    seconds_p90: float
    curve: tuple[float, ...]  # top-k for k = 1..CURVE_K
    # election: the share of ballot slots the model filled itself; the rest took stage 1's
    # order, so a low share means the figures above are mostly the features ranking's
    model_ballots: float | None = None

    def to_json(self) -> dict:
        out = {"n": self.n, **{f"top{k}": self.top[k] for k in KS}, "mrr": self.mrr,
               "stage1_recall": self.stage1_recall, "retrieved_mean": self.retrieved_mean,
               "seconds_mean": self.seconds_mean, "seconds_p90": self.seconds_p90,
               "topk_curve": list(self.curve)}
        if self.model_ballots is not None:
            out["model_ballots"] = self.model_ballots
        return out


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (the smallest value with at least q of them at or below it)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def top_k(ranks: Sequence[int | None], k: int) -> float:
    return sum(r is not None and r <= k for r in ranks) / len(ranks) if ranks else 0.0


def mrr(ranks: Sequence[int | None]) -> float:
    """Mean reciprocal rank; a culprit missing from the list contributes 0."""
    return sum(1 / r for r in ranks if r is not None) / len(ranks) if ranks else 0.0


def summarize(outcomes: Sequence[Outcome]) -> Summary:
    ranks = [o.rank for o in outcomes]
    staged = [o for o in outcomes if o.stage1 is not None]
    seconds = [o.seconds for o in outcomes]
    voted = [o.ballots for o in outcomes if o.ballots is not None]
    slots = sum(b[1] for b in voted)
    return Summary(
        n=len(outcomes),
        top={k: top_k(ranks, k) for k in KS},
        mrr=mrr(ranks),
        stage1_recall=sum(bool(o.stage1) for o in staged) / len(staged) if staged else None,
        retrieved_mean=sum(o.retrieved or 0 for o in staged) / len(staged) if staged else None,
        seconds_mean=sum(seconds) / len(seconds) if seconds else 0.0,
        seconds_p90=percentile(seconds, 0.9),
        curve=tuple(top_k(ranks, k) for k in range(1, CURVE_K + 1)),
        model_ballots=sum(b[0] for b in voted) / slots if slots else None,
    )


def harmonic(n: int) -> float:
    return sum(1 / i for i in range(1, n + 1))


def random_summary(windows: Sequence[int]) -> Summary:
    """The expected metrics of a uniformly random order of each window (W candidates):
    top-k = min(k, W) / W and MRR = H_W / W, averaged over the investigations."""
    n = len(windows)

    def expected_top(k: int) -> float:
        return sum(min(k, w) / w for w in windows) / n if n else 0.0

    return Summary(
        n=n, top={k: expected_top(k) for k in KS},
        mrr=sum(harmonic(w) / w for w in windows) / n if n else 0.0,
        stage1_recall=None, retrieved_mean=None, seconds_mean=0.0, seconds_p90=0.0,
        curve=tuple(expected_top(k) for k in range(1, CURVE_K + 1)),
    )


# --- abstention ----------------------------------------------------------------------------

@dataclass(frozen=True)
class AbstentionRow:
    threshold: float
    answered: float  # share of investigations whose confidence is >= threshold
    accuracy: float | None  # top-5 hit rate among them; None when none is answered
    n_answered: int

    def to_json(self) -> dict:
        return {"threshold": self.threshold, "answered": self.answered, "accuracy": self.accuracy,
                "n_answered": self.n_answered}


def abstention_table(confidence: Sequence[float], hits: Sequence[bool],
                     thresholds: Sequence[float] = THRESHOLDS) -> list[AbstentionRow]:
    """Answer when confidence >= threshold, abstain otherwise."""
    n = len(confidence)
    rows = []
    for t in thresholds:
        answered = [h for c, h in zip(confidence, hits) if c >= t]
        rows.append(AbstentionRow(t, len(answered) / n if n else 0.0,
                                  sum(answered) / len(answered) if answered else None, len(answered)))
    return rows


def threshold_for_precision(rows: Sequence[AbstentionRow], target: float = TARGET_PRECISION) -> float | None:
    """The lowest threshold whose answered investigations reach `target` accuracy."""
    for row in sorted(rows, key=lambda r: r.threshold):
        if row.accuracy is not None and row.accuracy >= target:
            return row.threshold
    return None


def coverage_curve(confidence: Sequence[float], hits: Sequence[bool]) -> list[tuple[float, float]]:
    """(share answered, accuracy of those answered), answering the most confident first.

    Ties in confidence are answered together, so a point is never split inside a tie.
    """
    pairs = sorted(zip(confidence, hits), key=lambda p: -p[0])
    n = len(pairs)
    out: list[tuple[float, float]] = []
    correct = 0
    for i, (c, h) in enumerate(pairs, start=1):
        correct += h
        if i == n or pairs[i][0] != c:
            out.append((i / n, correct / i))
    return out


# --- risk: catch rate at a share of commits flagged -------------------------------------------

CATCH_SHARES = (0.05, 0.10, 0.50)  # the points Meta's diff risk score reports (18.7/27.9/84.6%)


def catch_rate(score: Sequence[float], y: Sequence[bool], share: float,
               tiebreak: Sequence[float] | None = None) -> float | None:
    """Share of root causes among the riskiest `share` of commits, by count of commits.

    Flags ceil(share * n) commits (so 5% of 30 commits flags 2), highest score first. Ties
    are broken without looking at the labels, so the figure is reproducible: the smaller
    `tiebreak` first (the risk track passes changed lines), then the earlier position.
    None when there is no root cause to catch.
    """
    n, positives = len(score), sum(bool(v) for v in y)
    if not n or not positives:
        return None
    keys = tiebreak if tiebreak is not None else [0.0] * n
    order = sorted(range(n), key=lambda i: (-score[i], keys[i], i))
    flagged = math.ceil(share * n - 1e-9)  # tolerance: 0.1 * 30 is 3.0000000000000004
    return sum(bool(y[i]) for i in order[:flagged]) / positives


def catch_key(share: float) -> str:
    """JSON field name for a share: 0.05 -> 'catch_5', 0.1 -> 'catch_10'."""
    return f"catch_{round(share * 100)}"
