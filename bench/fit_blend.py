"""The blend ranker's weight, fitted held out (issue 15): does the model's judgment add to the
features ranking, and by how much?

    python bench/fit_blend.py RESULTS.jsonl [RESULTS.jsonl ...]

Each file is one repository's `rcahook backtest --ranker blend --blend-weight 0` results: the
features ranking itself, with each investigation's features scores and the model's centred
label log-probabilities of the first candidates (what the model saw). The combined ranker
orders those by score + w x logp, one conditional logit; w is fitted by maximum likelihood
(w >= 0: the model may add to the features ranking, never invert itself) on the other
files' investigations and applied to this one's (leave one repository out); with one file,
on its older half and applied to its newer half. At w = 0 the combined ranking is the
features ranking, so a model with nothing to say is fitted to change nothing.

Prints one table: per repository, investigations, the held-out w, top-1 / top-5 of the
features ranking and of the combined one, and the pooled figures; then w fitted on all of
them (in-sample, labelled so).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

W_MAX = 20.0


@dataclass(frozen=True)
class Case:
    score: tuple[float, ...]
    logp: tuple[float, ...]
    culprit: int | None  # index among those the model saw; None: not among them
    rank: int | None  # the features ranking's rank of the culprit (None: not in its list)


def load(path: Path) -> list[Case]:
    cases = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("type") != "result" or row.get("ranker") != "blend" or not isinstance(row.get("blend"), dict):
            continue
        b = row["blend"]
        cases.append(Case(tuple(b["score"]), tuple(b["logp"]), b["culprit"], row["rank"]))
    if not cases:
        sys.exit(f"{path}: no blend results; run `rcahook backtest --ranker blend --blend-weight 0 --output {path}`")
    return cases


def rank_at(case: Case, w: float) -> int | None:
    """The culprit's rank in the combined ranking (the candidates after those the model saw
    keep their places)."""
    if case.culprit is None:
        return case.rank
    combined = [s + w * lp for s, lp in zip(case.score, case.logp)]
    c = case.culprit
    return 1 + sum(1 for j, v in enumerate(combined) if v > combined[c] or (v == combined[c] and j < c))


def loglik(cases: list[Case], w: float) -> float:
    total = 0.0
    for case in cases:
        if case.culprit is None:
            continue
        z = [s + w * lp for s, lp in zip(case.score, case.logp)]
        top = max(z)
        total += z[case.culprit] - top - math.log(sum(math.exp(v - top) for v in z))
    return total


def fit(cases: list[Case]) -> float:
    """argmax over w in [0, W_MAX] of the conditional log-likelihood (concave in w): golden section."""
    lo, hi = 0.0, W_MAX
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = loglik(cases, a), loglik(cases, b)
    for _ in range(60):
        if fa < fb:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = loglik(cases, b)
        else:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = loglik(cases, a)
    w = (lo + hi) / 2
    return 0.0 if loglik(cases, 0.0) >= loglik(cases, w) else w


def tops(cases: list[Case], w: float) -> tuple[float, float]:
    ranks = [rank_at(c, w) for c in cases]
    hits5 = sum(1 for r in ranks if r is not None and r <= 5)
    return sum(1 for r in ranks if r == 1) / len(ranks), hits5 / len(ranks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", type=Path)
    args = ap.parse_args()
    data = {p.stem: load(p) for p in args.results}
    print("| repository | n | held-out w | features top-1 / top-5 | combined top-1 / top-5 |")
    print("|---|---|---|---|---|")
    pooled_f, pooled_c = [], []
    for name, cases in data.items():
        if len(data) > 1:
            train = [c for other, cs in data.items() if other != name for c in cs]
            test = cases
        else:  # newest first in a results file: fit on the older half
            half = len(cases) // 2
            train, test = cases[half:], cases[:half]
        w = fit(train)
        f1, f5 = tops(test, 0.0)
        c1, c5 = tops(test, w)
        pooled_f += [rank_at(c, 0.0) for c in test]
        pooled_c += [rank_at(c, w) for c in test]
        print(f"| {name} | {len(test)} | {w:.3f} | {f1:.3f} / {f5:.3f} | {c1:.3f} / {c5:.3f} |")

    def share(ranks: list[int | None], k: int) -> float:
        return sum(1 for r in ranks if r is not None and r <= k) / len(ranks)

    print(f"| pooled (held out) | {len(pooled_f)} | | {share(pooled_f, 1):.3f} / {share(pooled_f, 5):.3f} | "
          f"{share(pooled_c, 1):.3f} / {share(pooled_c, 5):.3f} |")
    seen = [c for cs in data.values() for c in cs if c.culprit is not None]
    if seen:  # the model on its own, among the candidates it was shown
        alone = [1 + sum(1 for v in c.logp if v > c.logp[c.culprit]) for c in seen]
        chance1 = sum(1 / len(c.logp) for c in seen) / len(seen)
        chance5 = sum(min(5, len(c.logp)) / len(c.logp) for c in seen) / len(seen)
        print(f"\nthe model alone, over the {len(seen)} investigations whose root cause it saw: top-1 "
              f"{sum(r == 1 for r in alone) / len(seen):.3f} (chance {chance1:.3f}), top-5 "
              f"{sum(r <= 5 for r in alone) / len(seen):.3f} (chance {chance5:.3f})")
    everything = [c for cs in data.values() for c in cs]
    w_all = fit(everything)
    print(f"\nw fitted on all {len(everything)} (in-sample): {w_all:.3f}; log-likelihood at 0: "
          f"{loglik(everything, 0.0):.1f}, at the fit: {loglik(everything, w_all):.1f}")


if __name__ == "__main__":
    main()
