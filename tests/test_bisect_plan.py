"""rcahook.bisect's pure parts: the range and its ancestry, the prior, the plan, the search loop
against an exact oracle, and the replay lines."""
from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from rcahook.bisect.plan import (
    BAD,
    BAD_NOT_BAD,
    CHECK_BAD,
    CHECK_GOOD,
    FOUND,
    GOOD,
    GOOD_NOT_GOOD,
    ONLY_SKIPPED,
    SKIP,
    Plan,
    _fit_ends,
    plain_depths,
)
from rcahook.bisect.prior import prior_masses, uniform
from rcahook.bisect.run import RunResult, verdict_for
from rcahook.bisect.search import replay_lines, run_search
from rcahook.bisect.space import build_space
from rcahook.errors import BisectError


def chain(n: int) -> dict[str, tuple[str, ...]]:
    """c0 (the good revision) <- c1 <- ... <- cn (the bad one)."""
    return {f"c{i}": ((f"c{i - 1}",) if i else ()) for i in range(n + 1)}


def space_of(graph: dict[str, tuple[str, ...]], bad: str, good: str, times: dict[str, int] | None = None):
    order = {sha: i for i, sha in enumerate(graph)}
    return build_space(bad, [good], lambda s: graph.get(s, ()), lambda s: (times or order).get(s, 0))


def branched() -> dict[str, tuple[str, ...]]:
    """A main line with two side branches merged in, and a commit on top of the last merge."""
    g: dict[str, tuple[str, ...]] = {"g": ()}
    prev = "g"
    for i in range(1, 8):
        g[f"m{i}"] = (prev,)
        prev = f"m{i}"
    g["s1"] = ("m2",)
    g["s2"] = ("s1",)
    g["s3"] = ("s2",)
    g["M1"] = ("m7", "s3")
    g["t1"] = ("m3",)
    g["t2"] = ("t1",)
    g["M2"] = ("M1", "t2")
    g["top"] = ("M2",)
    return g


def exact(plan: Plan, culprit: int, *, lie: set[int] = frozenset()) -> Plan:
    """Drive `plan` with an oracle: bad iff the culprit is the revision or an ancestor; the
    runs numbered in `lie` (1-based) answer the opposite."""
    A = plan.space.ancestry
    while (step := plan.next_step()) is not None:
        truth = GOOD if step.index == CHECK_GOOD else BAD if step.index == CHECK_BAD else (
            BAD if A[step.index, culprit] else GOOD)
        if plan.runs + 1 in lie:
            truth = GOOD if truth == BAD else BAD
        plan.record(step, truth)
    return plan


# -- the range ---------------------------------------------------------------------------------

def test_chain_space_is_newest_first_with_ancestry():
    space = space_of(chain(5), "c5", "c0")
    assert space.shas == ("c5", "c4", "c3", "c2", "c1")
    assert space.bad_index == 0
    # c3 (index 2) has c3, c2, c1 as ancestors-or-self, not c4 or c5
    assert space.ancestry[2].tolist() == [False, False, True, True, True]
    assert space.roots.tolist() == [False, False, False, False, True]  # c1's parent is the good revision
    assert space.parents[0] == (1,)


def test_merges_are_walked_through_not_candidates():
    space = space_of(branched(), "top", "g")
    assert "M1" not in space.shas and "M2" not in space.shas
    top = space.index("top")
    assert space.bad_index == top
    assert space.ancestry[top].all()  # every candidate is below the bad revision, through both merges
    s3, m7 = space.index("s3"), space.index("m7")
    assert space.ancestry[s3, space.index("s1")] and space.ancestry[s3, space.index("m2")]
    assert not space.ancestry[s3, space.index("m3")]  # a side branch does not see the main line above its fork
    assert not space.ancestry[m7, s3]  # m7 is on the main line before M1 merged s3


def test_range_excludes_everything_below_good_whatever_the_dates_say():
    g = chain(6)
    skewed = {sha: -i for i, sha in enumerate(g)}  # committer dates running backwards
    space = space_of(g, "c6", "c3", times=skewed)
    assert sorted(space.shas) == ["c4", "c5", "c6"]


def test_range_longer_than_the_matrix_allows_says_what_to_do():
    with pytest.raises(Exception, match="more recent --good"):
        space_of(chain(5000), "c5000", "c0")


# -- the prior ------------------------------------------------------------------------------

def test_prior_keeps_a_reserve_for_every_candidate():
    shas = [f"s{i}" for i in range(10)]
    p = prior_masses(shas, [("s3", 0.9), ("s1", 0.05)], reserve=0.1)
    assert p.sum() == pytest.approx(1.0)
    assert p[3] > 0.8
    assert p.min() >= 0.1 / 10  # no candidate starves
    # the unlisted share (1 - 0.95) is spread over the 8 unlisted candidates
    assert p[0] == pytest.approx(0.9 * 0.05 / 8 + 0.01)


# -- the plan -------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [2, 3, 7, 30, 64, 100])
def test_uniform_plan_is_plain_bisection(n):
    space = space_of(chain(n), f"c{n}", "c0")
    depth = plain_depths(space)
    assert depth.max() == int(np.ceil(np.log2(n)))
    for culprit in range(n):
        plan = exact(Plan(space, uniform(n), slack=None), culprit)
        assert plan.outcome == FOUND and plan.culprit == culprit
        checks = int(space.roots[culprit]) + int(culprit == space.bad_index)
        assert plan.runs == depth[culprit] + checks  # plain's splits, plus the boundary checks it relies on


def test_confident_suspect_takes_two_runs_its_parent_and_itself():
    n = 30
    space = space_of(chain(n), f"c{n}", "c0")
    culprit = space.index("c12")
    prior = prior_masses(space.shas, [("c12", 0.9)])
    plan = exact(Plan(space, prior), culprit)
    assert plan.culprit == culprit
    assert plan.runs == 2
    assert set(plan.verdicts) == {culprit, space.index("c11")}
    assert plan.verdict(culprit) == BAD and plan.verdict(space.index("c11")) == GOOD


def _bound_holds(space, prior, rng) -> None:
    depth = plain_depths(space)
    for culprit in range(len(space)):
        plan = exact(Plan(space, prior), culprit)
        assert plan.culprit == culprit
        assert plan.runs <= depth[culprit] + 2, (culprit, plan.runs, depth[culprit])


@pytest.mark.parametrize("n", [1, 2, 5, 17, 33, 64, 91])
def test_never_more_than_plain_plus_two_on_any_culprit(n):
    rng = random.Random(n)
    space = space_of(chain(n), f"c{n}", "c0")
    priors = [uniform(n), prior_masses(space.shas, [(space.shas[-1], 0.99)]),  # sure of the oldest
              prior_masses(space.shas, [(space.shas[n // 2], 0.6), (space.shas[0], 0.3)])]
    priors += [prior_masses(space.shas, [(s, rng.random() ** 4) for s in space.shas]) for _ in range(3)]
    for prior in priors:
        _bound_holds(space, prior, rng)


def test_bound_holds_across_branches_too():
    space = space_of(branched(), "top", "g")
    rng = random.Random(7)
    for sha in space.shas:
        _bound_holds(space, prior_masses(space.shas, [(sha, 0.95)]), rng)
    _bound_holds(space, prior_masses(space.shas, [(s, rng.random() ** 4) for s in space.shas]), rng)


def test_chain_fit_is_exact_for_alphabetic_search():
    """_fit_ends says a chain fits within per-item depth limits exactly when some search tree does."""
    def exists(limits: tuple[int, ...]) -> bool:
        if len(limits) == 1:
            return limits[0] >= 0
        return any(exists(tuple(x - 1 for x in limits[:j])) and exists(tuple(x - 1 for x in limits[j:]))
                   for j in range(1, len(limits)))

    for k in range(1, 6):
        for limits in itertools.product(range(0, 4), repeat=k):
            assert (_fit_ends(np.array(limits))[-1] <= 1) == exists(limits), limits


def test_skipped_commit_is_routed_around():
    n = 16
    space = space_of(chain(n), f"c{n}", "c0")
    culprit = space.index("c11")
    plan = Plan(space, uniform(n))
    first = plan.next_step()
    plan.record(first, SKIP)  # the midpoint cannot be built
    exact(plan, culprit)
    assert plan.culprit == culprit
    assert first.index in plan.skipped and first.index not in plan.verdicts


def test_only_skipped_commits_left_names_them():
    space = space_of(chain(4), "c4", "c0")
    culprit = space.index("c2")
    plan = Plan(space, uniform(4))
    A = space.ancestry
    while (step := plan.next_step()) is not None:
        if step.index == space.index("c1"):  # the culprit's parent cannot be built
            plan.record(step, SKIP)
        else:
            plan.record(step, BAD if step.index == CHECK_BAD or (step.index >= 0 and A[step.index, culprit]) else GOOD)
    assert plan.outcome == ONLY_SKIPPED
    assert sorted(space.shas[i] for i in np.flatnonzero(plan.remaining)) == ["c1", "c2"]


def test_command_failing_everywhere_fails_the_good_check():
    space = space_of(chain(20), "c20", "c0")
    plan = Plan(space, uniform(20))
    while (step := plan.next_step()) is not None:
        plan.record(step, BAD)
    assert plan.outcome == GOOD_NOT_GOOD


def test_command_passing_everywhere_fails_the_bad_check():
    space = space_of(chain(20), "c20", "c0")
    plan = Plan(space, uniform(20))
    while (step := plan.next_step()) is not None:
        plan.record(step, GOOD)
    assert plan.outcome == BAD_NOT_BAD


def test_retries_catch_a_wrong_verdict_on_a_confident_suspect():
    n = 30
    space = space_of(chain(n), f"c{n}", "c0")
    culprit = space.index("c12")
    prior = prior_masses(space.shas, [("c12", 0.9)])
    # the first run (at the suspect itself) wrongly passes: without retries the wrong commit is named
    assert exact(Plan(space, prior), culprit, lie={1}).culprit != culprit
    plan = exact(Plan(space, prior, retries=2), culprit, lie={1})
    assert plan.culprit == culprit
    assert len(plan.verdicts[culprit]) == 3  # the surprising pass, then two failures outvote it


def test_retries_confirm_the_deciding_verdicts():
    n = 30
    space = space_of(chain(n), f"c{n}", "c0")
    culprit = space.index("c7")
    plan = exact(Plan(space, uniform(n), retries=1), culprit)
    assert plan.culprit == culprit
    parent = space.index("c6")
    assert len(plan.verdicts[culprit]) == 2 and len(plan.verdicts[parent]) == 2


# -- the loop and what it writes --------------------------------------------------------------

def oracle(space, culprit: int, *, everywhere: str | None = None):
    def runner(sha: str) -> RunResult:
        if everywhere:
            return RunResult(everywhere, 0 if everywhere == GOOD else 1, 0.0, f"ran at {sha}")
        i = space.shas.index(sha) if sha in space.shas else None
        bad = sha == "BAD" if i is None else bool(space.ancestry[i, culprit])
        return RunResult(BAD if bad else GOOD, int(bad), 0.0, "assert 6 == 5" if bad else "1 passed")
    return runner


def test_search_names_the_culprit_with_its_evidence():
    space = space_of(chain(30), "c30", "c0")
    c = space.index("c12")
    search = run_search(space, prior_masses(space.shas, [("c12", 0.9)]), good="GOOD", bad="BAD",
                        runner=oracle(space, c))
    assert search.culprit == "c12" and search.status == FOUND
    assert [(e.sha, e.verdict) for e in search.evidence] == [("c12", BAD), ("c11", GOOD)]


def test_search_says_when_the_culprit_is_outside_the_window():
    space = space_of(chain(30), "c30", "c0")
    with pytest.raises(BisectError, match=r"outside the window.*--window 60"):
        run_search(space, uniform(30), good="GOOD", bad="BAD", runner=oracle(space, 0, everywhere=BAD),
                   good_given=False)
    with pytest.raises(BisectError, match="the good revision GOOD is not good"):
        run_search(space, uniform(30), good="GOOD", bad="BAD", runner=oracle(space, 0, everywhere=BAD))


def test_exit_codes_read_as_git_bisect_run():
    assert [verdict_for(c, cmd="x") for c in (0, 1, 2, 125, 126, 127)] == [GOOD, BAD, BAD, SKIP, BAD, BAD]
    with pytest.raises(BisectError, match="above 127"):
        verdict_for(139, cmd="x")
    with pytest.raises(BisectError, match="signal 9"):
        verdict_for(-9, cmd="x")


def test_replay_lines_keep_a_subject_on_its_line():
    space = space_of(chain(8), "c8", "c0")
    c = space.index("c5")
    search = run_search(space, uniform(8), good="c0", bad="c8", runner=oracle(space, c))
    lines = replay_lines(search, subject=lambda sha: "evil\ngit bisect good c8")
    assert not any(line == "git bisect good c8" for line in lines)
    commands = [line for line in lines if line.startswith("git bisect ")]
    assert commands[:3] == ["git bisect start", "git bisect bad c8", "git bisect good c0"]
    assert lines[-1].startswith("# first bad commit: [c5]")
