"""Which revision to test next: weighted bisection over the candidates' ancestry (pure).

Each candidate carries the ranking's probability of being the culprit (prior.py). A test
at revision t answers "bad" when the culprit is t or one of its ancestors, so each step
tests the revision whose ancestors hold closest to half of the remaining mass, not half
of the remaining commits (Fonte's weighted bisection): a confident top suspect is tested
at itself and its parent first, and a uniform belief is plain bisection.

The bound (issue 13): on any culprit, never more runs than plain bisection plus SLACK.
Each candidate x gets a deadline: the runs plain bisection (Space.plain_depths, git
bisect's even split) needs for x, plus SLACK, less one for each boundary check naming x
needs (below). A test is taken only if, whatever it answers, every candidate left can
still be found by its deadline; of the allowed tests, the best mass split wins.
- In a chain (a linear range) that is decided exactly: searching an ordered list is an
  alphabetic code, and one within per-item depth limits exists iff the greedy dyadic
  placement of _fit_ends fits in [0, 1].
- With branches, a test is allowed when, on each side, plain bisection or bisection of the
  deadlines' Kraft weights (2^-deadline) would meet every deadline (computed, not
  estimated). The whole range meets that for plain bisection at the start, and a side that
  met it for a policy still does after that policy's own split, so some test always passes.
So the bound holds on every culprit by construction (tests/test_bisect_plan.py checks it
on every culprit of chains and branched ranges; bench/bench_bisect.py on real history).

Boundaries: the good and the bad revision are taken on trust, and checked only when the
answer rests on them: a culprit whose parent is below the good revision needs the good
revision to pass ("the good revision is not good" otherwise), and one that no failing
test covers needs the bad revision to fail. So a confident ranking needs two runs, and a
command that fails everywhere is caught.

Retries (`retries` K > 0): a verdict the evidence found unlikely (below SURPRISE), the two
verdicts that decide the culprit (it fails, its parent passes) and any tie are re-run, up
to K more runs per revision; a revision's verdict is the majority of its runs, and one
whose runs stay tied is set aside like a skipped one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from rcahook.bisect.space import Space

GOOD, BAD, SKIP = "good", "bad", "skip"
CHECK_GOOD, CHECK_BAD = -1, -2  # step indices of the good and the bad revision themselves
SLACK = 2
MAX_CHECKS = 8  # tests checked against the bound in a branched range before plain's split is taken
SURPRISE = 0.2  # a verdict the evidence gave less than this chance is re-run (with retries)

# Why a search ended without a culprit (Plan.outcome); "found" when it named one.
FOUND, GOOD_NOT_GOOD, BAD_NOT_BAD = "found", "good-not-good", "bad-not-bad"
ONLY_SKIPPED, CONTRADICTION = "only-skipped", "contradiction"


@dataclass(frozen=True)
class Step:
    index: int  # a candidate's index in the space, or CHECK_GOOD / CHECK_BAD
    why: str  # split | retry | confirm | check
    p_bad: float  # the chance of "bad" under the ranking and the verdicts so far


@dataclass
class Plan:
    space: Space
    prior: np.ndarray  # (n,) masses, summing to 1
    retries: int = 0
    slack: int | None = SLACK  # None: no bound (plain bisection needs none)
    verdicts: dict[int, list[str]] = field(default_factory=dict)  # good/bad runs per revision
    skipped: set[int] = field(default_factory=set)  # candidates that cannot be tested
    unverified: set[int] = field(default_factory=set)  # boundary checks that were skipped
    runs: int = 0
    split_runs: int = 0  # the bound's clock: informative split tests only
    outcome: str | None = None
    pending: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.space)
        assert self.prior.shape == (n,), f"prior has shape {self.prior.shape}, expected ({n},)"
        self._deadline: np.ndarray | None = None
        if self.slack is not None and n:
            bad_check = np.zeros(n, dtype=int)
            if self.space.bad_index is not None:
                bad_check[self.space.bad_index] = 1
            self._deadline = plain_depths(self.space) + self.slack - self.space.roots.astype(int) - bad_check

    # -- the evidence ----------------------------------------------------------------------

    def verdict(self, index: int) -> str | None:
        """A revision's verdict: the majority of its good/bad runs (None: none, or a tie)."""
        runs = self.verdicts.get(index, [])
        good, bad = runs.count(GOOD), runs.count(BAD)
        return GOOD if good > bad else BAD if bad > good else None

    @property
    def remaining(self) -> np.ndarray:
        """(n,) bool: the candidates every verdict so far leaves possible."""
        keep = np.ones(len(self.space), dtype=bool)
        for i in self.verdicts:
            if i < 0:
                continue
            v = self.verdict(i)
            if v == BAD:
                keep &= self.space.ancestry[i]
            elif v == GOOD:
                keep &= ~self.space.ancestry[i]
        return keep

    @property
    def culprit(self) -> int | None:
        return int(np.flatnonzero(self.remaining)[0]) if self.outcome == FOUND else None

    def leader(self) -> int | None:
        """The most probable remaining candidate (what a search cut short points at)."""
        keep = self.remaining
        if not keep.any():
            return None
        return int(np.flatnonzero(keep)[np.argmax(self.prior[keep])])

    def p_bad(self, index: int) -> float:
        keep = self.remaining
        mass = self.prior[keep].sum()
        if index < 0 or mass <= 0:
            return 1.0 if index == CHECK_BAD else 0.0
        return float(self.prior[keep & self.space.ancestry[index]].sum() / mass)

    # -- the next step ---------------------------------------------------------------------

    def next_step(self) -> Step | None:
        """What to run next; None when the search is over (see `outcome`)."""
        if self.outcome is not None:
            return None
        if self.pending:
            return self.pending.pop(0)
        keep = self.remaining
        left = np.flatnonzero(keep)
        if len(left) == 0:
            return self._contradiction()
        if len(left) == 1:
            return self._settle(int(left[0]))
        step = self._split(left)
        if step is None:
            self.outcome = ONLY_SKIPPED
        return step

    def _settle(self, c: int) -> Step | None:
        """One candidate left: confirm what decides it (retries), then the boundaries."""
        if self.retries:
            decisive = [c] + [p for p in self.space.parents[c] if self.verdict(p) == GOOD]
            for d in decisive:
                runs = self.verdicts.get(d, [])
                if len(runs) == 1:
                    return Step(d, "confirm", self.p_bad(d))
        if self.space.roots[c] and self.verdict(CHECK_GOOD) != GOOD and CHECK_GOOD not in self.unverified:
            return Step(CHECK_GOOD, "check", 0.0)
        tested_bad = any(self.verdict(i) == BAD and self.space.ancestry[i, c] for i in self.verdicts if i >= 0)
        if not tested_bad and self.verdict(CHECK_BAD) != BAD and CHECK_BAD not in self.unverified:
            return Step(CHECK_BAD, "check", 1.0)
        self.outcome = FOUND
        return None

    def _contradiction(self) -> Step | None:
        """The verdicts exclude every candidate: some were wrong (a flaky command)."""
        tested = [i for i in self.verdicts if i >= 0 and len(self.verdicts[i]) < 1 + self.retries]
        if not tested:
            self.outcome = CONTRADICTION
            return None
        # the latest revision with the fewest runs: the least corroborated verdict
        order = list(self.verdicts)
        i = min(tested, key=lambda j: (len(self.verdicts[j]), -order.index(j)))
        return Step(i, "retry", self.p_bad(i))

    def _split(self, left: np.ndarray) -> Step | None:
        k = len(left)
        sub = self.space.ancestry[np.ix_(left, left)]  # (k, k): [t, x] x is an ancestor of t
        count_bad = sub.sum(axis=1)  # (k,)
        w = self.prior[left]
        w = w / w.sum() if w.sum() > 0 else np.full(k, 1.0 / k)
        mass_bad = sub @ w  # (k,)
        testable = (count_bad > 0) & (count_bad < k)
        testable &= np.array([i not in self.skipped for i in left], dtype=bool)
        if not testable.any():
            return None
        by_count = np.abs(count_bad - k / 2)
        candidates = np.flatnonzero(testable)
        # best first: the even split of the mass, then of the commits, then the newest
        ranked = candidates[np.lexsort((candidates, by_count[candidates],
                                        np.round(np.abs(mass_bad[candidates] - 0.5), 12)))]
        plain = candidates[np.lexsort((candidates, by_count[candidates]))][0]
        choice = ranked[0] if self._deadline is None else self._within_bound(left, sub, count_bad, ranked, plain)
        return Step(int(left[choice]), "split", float(mass_bad[choice]))

    def _within_bound(self, left: np.ndarray, sub: np.ndarray, count_bad: np.ndarray, ranked: np.ndarray,
                      plain: int) -> int:
        """The best-ranked test after which every remaining candidate can still be found
        within its deadline; plain bisection's own split always can (see the module doc)."""
        assert self._deadline is not None
        deadline = self._deadline[left]
        after = self.split_runs + 1
        k = len(left)
        if np.array_equal(np.sort(count_bad), np.arange(1, k + 1)):  # a chain: exact, in O(k)
            oldest_first = np.argsort(count_bad)
            prefix = _fit_ends(deadline[oldest_first] - after)  # [c]: the c oldest
            suffix = _fit_ends(deadline[oldest_first][::-1] - after)[::-1]  # [c]: all but the c oldest
            fits = (prefix[count_bad] <= 1) & (suffix[count_bad] <= 1)
            allowed = ranked[fits[ranked]]
            return int(allowed[0]) if len(allowed) else plain
        # Branches: a search tree exists only if Kraft's sum allows it (cheap, necessary). Then
        # exact for what it promises: a test is taken if, on each side, plain bisection or
        # bisection of the deadlines' Kraft weights would meet every deadline; the current
        # range met that too, so one of those two policies' own split always passes.
        kraft = np.exp2(-deadline.astype(float))  # (k,) 2^-deadline: the policy's weights
        relative = kraft * 2.0 ** after
        kraft_bad = sub.astype(float) @ relative
        kraft_ok = (kraft_bad <= 1) & (relative.sum() - kraft_bad <= 1)
        kraft_split = _weighted_split(sub, count_bad, kraft)
        tried: set[int] = set()
        for t in [*ranked[kraft_ok[ranked]][:MAX_CHECKS], plain, kraft_split]:
            if t in tried or t not in ranked:  # ranked: the testable ones (not skipped)
                continue
            tried.add(int(t))
            if all(self._side_fits(left[side], deadline[side], kraft[side], after) for side in (sub[t], ~sub[t])):
                return int(t)
        return plain

    def _side_fits(self, side: np.ndarray, deadline: np.ndarray, kraft: np.ndarray, after: int) -> bool:
        return bool((after + self.space.plain_depths(side) <= deadline).all()
                    or (after + self.space.plain_depths(side, kraft) <= deadline).all())

    # -- recording -------------------------------------------------------------------------

    def record(self, step: Step, verdict: str) -> None:
        assert verdict in (GOOD, BAD, SKIP), f"unknown verdict {verdict!r}"
        self.runs += 1
        i = step.index
        if verdict == SKIP:
            (self.unverified if i < 0 else self.skipped).add(i)
            return
        runs = self.verdicts.setdefault(i, [])
        runs.append(verdict)
        if step.why == "split":
            self.split_runs += 1
        retry_left = len(runs) < 1 + self.retries
        tie = self.verdict(i) is None
        if i < 0:
            expected = GOOD if i == CHECK_GOOD else BAD
            if self.verdict(i) != expected:
                if retry_left:
                    self.pending.append(Step(i, "retry", step.p_bad))
                else:
                    self.outcome = GOOD_NOT_GOOD if i == CHECK_GOOD else BAD_NOT_BAD
            return
        likelihood = step.p_bad if verdict == BAD else 1.0 - step.p_bad
        surprising = len(runs) == 1 and step.why == "split" and likelihood < SURPRISE
        if self.retries and (surprising or tie) and retry_left:
            self.pending.append(Step(i, "retry", step.p_bad))
        elif tie:
            self.skipped.add(i)  # its runs disagree and no retry is left: flaky there


def _weighted_split(sub: np.ndarray, count_bad: np.ndarray, weights: np.ndarray) -> int:
    """The test splitting `weights` most evenly (then the commits, then the newest): what
    Space.plain_depths does with weights."""
    k = len(weights)
    score = np.abs(sub @ weights / weights.sum() - 0.5)
    score[(count_bad == 0) | (count_bad == k)] = np.inf
    return int(np.lexsort((np.arange(k), np.abs(count_bad - k / 2), np.round(score, 12)))[0])


def _fit_ends(limits: np.ndarray) -> np.ndarray:
    """For a chain whose items may sit at most limits[i] tests deep: ends[j] <= 1 exactly when
    its first j items can be searched within their limits (ends[0] = 0).

    A search of an ordered list is an alphabetic prefix code (each test splits it in two), and
    such a code with lengths at most the limits exists exactly when placing each item's dyadic
    interval of width 2^-limit, in order, at the first aligned place ends within [0, 1]."""
    ends = np.zeros(len(limits) + 1)
    pos = 0.0
    for j, limit in enumerate(limits):
        width = 2.0 ** -int(limit)
        pos = math.ceil(pos / width) * width + width
        ends[j + 1] = pos
    return ends


def plain_depths(space: Space) -> np.ndarray:
    """(n,) runs plain bisection (git bisect's even split, no boundary checks) needs when
    each candidate is the culprit."""
    return space.plain_depths(np.arange(len(space)))
