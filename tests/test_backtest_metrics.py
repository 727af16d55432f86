from __future__ import annotations

from fractions import Fraction

import pytest

from rcahook.backtest.metrics import (
    THRESHOLDS,
    Outcome,
    abstention_table,
    catch_key,
    catch_rate,
    coverage_curve,
    harmonic,
    mrr,
    percentile,
    random_summary,
    summarize,
    threshold_for_precision,
    top_k,
)

RANKS = [1, 3, None, 10, 6]


def outcomes(ranks, **extra):
    return [Outcome(f"fix{i}", "features", r, 500, **extra) for i, r in enumerate(ranks)]


def test_top_k_and_mrr_on_hand_made_ranks():
    assert top_k(RANKS, 1) == pytest.approx(1 / 5)
    assert top_k(RANKS, 5) == pytest.approx(2 / 5)
    assert top_k(RANKS, 10) == pytest.approx(4 / 5)
    # 1 + 1/3 + 0 (missing from the list) + 1/10 + 1/6 = 1.6
    assert mrr(RANKS) == pytest.approx(1.6 / 5)


def test_summarize_counts_missing_culprits_as_not_found():
    s = summarize(outcomes(RANKS))
    assert s.n == 5
    assert s.top == pytest.approx({1: 0.2, 5: 0.4, 10: 0.8})
    assert s.mrr == pytest.approx(0.32)
    assert s.stage1_recall is None and s.retrieved_mean is None
    assert s.curve[0] == pytest.approx(0.2) and s.curve[4] == pytest.approx(0.4)
    assert s.curve[5] == pytest.approx(0.6) and s.curve[19] == pytest.approx(0.8)
    assert len(s.curve) == 20


def test_stage1_recall_and_retrieved_mean():
    rows = [Outcome("a", "features", 1, 500, retrieved=300, stage1=True),
            Outcome("b", "features", None, 500, retrieved=300, stage1=False),
            Outcome("c", "features", 250, 500, retrieved=120, stage1=True),
            Outcome("d", "features", None, 500, retrieved=100, stage1=True)]
    s = summarize(rows)
    assert s.stage1_recall == pytest.approx(3 / 4)
    assert s.retrieved_mean == pytest.approx(205)


def test_seconds_mean_and_nearest_rank_p90():
    seconds = [0.1 * i for i in range(1, 11)]  # 0.1 .. 1.0
    s = summarize([Outcome(f"f{i}", "features", 1, 500, seconds=t) for i, t in enumerate(seconds)])
    assert s.seconds_mean == pytest.approx(0.55)
    assert s.seconds_p90 == pytest.approx(0.9)
    assert percentile([3.0, 1.0, 2.0, 5.0, 4.0], 0.9) == 5.0
    assert percentile([], 0.9) == 0.0


def test_random_is_the_exact_expectation():
    s = random_summary([4, 10])
    assert s.top[1] == pytest.approx((1 / 4 + 1 / 10) / 2)
    assert s.top[5] == pytest.approx((1 + 5 / 10) / 2)
    assert s.top[10] == pytest.approx(1.0)
    h4 = Fraction(25, 12)
    h10 = Fraction(7381, 2520)
    assert harmonic(4) == pytest.approx(float(h4)) and harmonic(10) == pytest.approx(float(h10))
    assert s.mrr == pytest.approx(float((h4 / 4 + h10 / 10) / 2))
    assert s.curve[19] == pytest.approx(1.0)


def test_random_expectation_matches_brute_force_over_permutations():
    from itertools import permutations

    w = 5
    ranks = []
    for perm in permutations(range(w)):
        ranks.append(perm.index(0) + 1)  # candidate 0 is the culprit
    s = random_summary([w])
    assert s.top[1] == pytest.approx(top_k(ranks, 1))
    assert s.mrr == pytest.approx(mrr(ranks))


CONF = [0.95, 0.85, 0.5, 0.3, 0.05]
HITS = [True, True, False, True, False]


def test_abstention_table():
    rows = {r.threshold: r for r in abstention_table(CONF, HITS)}
    assert tuple(rows) == THRESHOLDS
    assert (rows[0.1].answered, rows[0.1].accuracy) == (pytest.approx(0.8), pytest.approx(0.75))
    assert (rows[0.3].answered, rows[0.3].accuracy) == (pytest.approx(0.8), pytest.approx(0.75))
    assert (rows[0.4].answered, rows[0.4].accuracy) == (pytest.approx(0.6), pytest.approx(2 / 3))
    assert (rows[0.6].answered, rows[0.6].accuracy) == (pytest.approx(0.4), pytest.approx(1.0))
    assert (rows[0.9].answered, rows[0.9].n_answered) == (pytest.approx(0.2), 1)


def test_threshold_for_precision():
    assert threshold_for_precision(abstention_table(CONF, HITS)) == 0.6
    assert threshold_for_precision(abstention_table([0.95, 0.2], [False, True])) is None
    # nothing answered is not "precise"
    assert threshold_for_precision(abstention_table([0.05], [True])) is None


def flat(points):
    return [x for point in points for x in point]


def test_coverage_curve_answers_ties_together():
    assert flat(coverage_curve(CONF, HITS)) == pytest.approx(
        flat([(0.2, 1.0), (0.4, 1.0), (0.6, 2 / 3), (0.8, 0.75), (1.0, 0.6)]))
    assert flat(coverage_curve([0.5, 0.5, 0.2], [True, False, True])) == pytest.approx(
        flat([(2 / 3, 0.5), (1.0, 2 / 3)]))


def test_hit_is_top_five():
    assert Outcome("a", "x", 5, 10).hit() and not Outcome("a", "x", 6, 10).hit()
    assert not Outcome("a", "x", None, 10).hit()


def test_catch_rate_by_hand_with_ties():
    # Ten commits, three root causes (positions 2, 5, 9). Scores by position:
    #   0:0.9  1:0.8  2:0.8  3:0.7  4:0.5  5:0.5  6:0.5  7:0.2  8:0.1  9:0.1
    score = [0.9, 0.8, 0.8, 0.7, 0.5, 0.5, 0.5, 0.2, 0.1, 0.1]
    y = [0, 0, 1, 0, 0, 1, 0, 0, 0, 1]
    # 5% of 10 flags ceil(0.5) = 1 commit: position 0, no root cause.
    assert catch_rate(score, y, 0.05) == 0.0
    # 10% flags 1 as well (ceil(1.0) = 1, not 2 from float error).
    assert catch_rate(score, y, 0.10) == 0.0
    # 20% flags 2: 0, then the 0.8 tie goes to the earlier position 1 -> nothing caught...
    assert catch_rate(score, y, 0.20) == 0.0
    # ...unless the tiebreak (changed lines, smaller first) puts position 2 first: 1 of 3.
    effort = [5, 40, 3, 1, 9, 2, 9, 1, 1, 1]
    assert catch_rate(score, y, 0.20, tiebreak=effort) == pytest.approx(1 / 3)
    # 50% flags 5: 0, 1, 2, 3 and the first of the 0.5 tie (4; with effort 5 -> position 5).
    assert catch_rate(score, y, 0.50) == pytest.approx(1 / 3)
    assert catch_rate(score, y, 0.50, tiebreak=effort) == pytest.approx(2 / 3)
    assert catch_rate(score, y, 1.0) == 1.0
    # All scores tied: position order decides; the label never does.
    assert catch_rate([1.0] * 10, y, 0.30) == pytest.approx(1 / 3)
    assert catch_rate(score, [0] * 10, 0.5) is None and catch_rate([], [], 0.5) is None


def test_catch_rate_counts_commits_not_lines_and_rounds_up():
    # 30 commits: 5% flags ceil(1.5) = 2, 10% flags exactly 3 (0.1 * 30 = 3.0000000000000004).
    score = list(range(30, 0, -1))
    y = [1, 0, 1, 1] + [0] * 25 + [1]
    assert catch_rate(score, y, 0.05) == pytest.approx(1 / 4)
    assert catch_rate(score, y, 0.10) == pytest.approx(2 / 4)
    assert catch_rate(score, y, 0.50) == pytest.approx(3 / 4)
    assert [catch_key(s) for s in (0.05, 0.10, 0.50)] == ["catch_5", "catch_10", "catch_50"]
