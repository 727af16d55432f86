"""One `rcahook bisect`, from the suspects to the report: the range and the belief over it
(prepare), the runs in a scratch worktree (execute), then the replay file, the culprit
recorded as feedback and the report (finish)."""
from __future__ import annotations

import signal
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import numpy as np

from rcahook.bisect import report
from rcahook.bisect.plan import CHECK_BAD, CHECK_GOOD
from rcahook.bisect.prior import prior_masses, uniform
from rcahook.bisect.run import RunResult, command_env, run_command
from rcahook.bisect.search import CommandRun, Search, plain_estimate, run_search
from rcahook.bisect.space import Space, build_space
from rcahook.bisect.suspects import Suspects, record_culprit
from rcahook.bisect.worktree import scratch_root, scratch_worktree
from rcahook.errors import BadInputError, NotFoundError, RcahookError
from rcahook.index.gitrepo import Repo, status_porcelain
from rcahook.index.reader import History
from rcahook.rca.feedback import iso


@dataclass
class Setup:
    space: Space
    prior: np.ndarray
    good: str
    bad: str
    good_given: bool  # False: the parent of the search space's oldest commit
    suspects: Suspects | None  # None: no incident, plain bisection
    warnings: list[str] = field(default_factory=list)


def prepare(repo: Repo, history: History, suspects: Suspects | None, *, good: str | None,
            bad: str | None) -> Setup:
    """The good and bad revisions (given, or the search space's ends), the candidates between
    them and the ranking's belief over them."""
    if bad:
        bad_sha = repo.resolve(bad)
        if not history.commits([bad_sha]):
            raise NotFoundError(f"--bad {bad} ({bad_sha[:12]}) is not in the index; run `rcahook index --rev {bad}` "
                                "(or drop --no-update)")
    else:
        assert suspects is not None, "without suspects the caller requires --bad or defaults it"
        bad_sha = suspects.at
    if good:
        good_sha = repo.resolve(good)
    else:
        assert suspects is not None, "without suspects the caller requires --good"
        oldest = suspects.space[-1]
        parents = history.parents(oldest)
        if not parents:
            raise BadInputError(f"the search space reaches the repository's first commit {oldest[:12]}: there is no "
                                "older revision to call good; pass --good REV (a revision where the command passes)")
        good_sha = parents[0]
    if good_sha == bad_sha or repo.is_ancestor(bad_sha, good_sha):
        raise BadInputError(f"no commit lies between the good revision {good_sha[:12]} and the bad one "
                            f"{bad_sha[:12]}: --good must be an older revision than --bad")

    def commit_time(sha: str) -> int:
        found = history.commits([sha])
        return found[0].committer_time if found else 0

    space = build_space(bad_sha, [good_sha], history.parents, commit_time)
    if not len(space):
        raise BadInputError(f"only merges lie between {good_sha[:12]} and {bad_sha[:12]}: nothing to bisect")
    setup = Setup(space, uniform(len(space)), good_sha, bad_sha, good is not None or suspects is None, suspects)
    if suspects is not None:
        setup.prior = prior_masses(space.shas, suspects.ranked)
        outside = len(set(space.shas) - set(suspects.space))
        if outside:
            setup.warnings.append(f"{outside} of the {len(space)} commits between the good and the bad revision are "
                                  "outside the investigation's search space: the ranking says nothing of them")
    else:
        setup.warnings.append("no incident given: plain bisection (pass --title, or --investigation ID, to test the "
                              "likeliest commits first)")
    if repo.workdir is not None and status_porcelain(repo.workdir):
        setup.warnings.append("your working tree has uncommitted changes: the command runs on clean checkouts of each "
                              "revision, without them (a reproduction script that is not committed is reachable "
                              "as $RCAHOOK_SOURCE/...)")
    return setup


def execute(repo: Repo, setup: Setup, *, cmd: str, timeout: float | None, max_runs: int | None, retries: int,
            say: Callable[[str], None]) -> Search:
    """Run the search in a scratch worktree, removed however this ends (SIGTERM included)."""
    say(f"bisecting {len(setup.space)} commits between {setup.good[:12]} (good) and {setup.bad[:12]} (bad); plain "
        f"bisection needs about {plain_estimate(len(setup.space))} runs")

    def on_run(e: CommandRun) -> None:
        code = "timed out" if e.exit_code is None else f"exit {e.exit_code}"
        say(f"run {e.run}: {e.verdict} at {e.sha[:12]} ({e.role}, {e.why}; {code}, {e.seconds:.1f} s)")

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with scratch_worktree(repo.common_dir, setup.bad, say=say) as scratch:
            def runner(sha: str) -> RunResult:
                scratch.checkout(sha)
                return run_command(cmd, cwd=scratch.path, env=command_env(rev=sha, source=repo.workdir),
                                   timeout=timeout)

            return run_search(setup.space, setup.prior, good=setup.good, bad=setup.bad, runner=runner,
                              retries=retries, max_runs=max_runs, good_given=setup.good_given, on_run=on_run)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds through the worktree's clean-up, as Ctrl-C does


def finish(repo: Repo, history: History, setup: Setup, search: Search, *, cmd: str, record: bool) -> dict[str, Any]:
    """Write the replay file, record the culprit as feedback (when asked and saved), and
    return the report's JSON document."""
    def info(sha: str) -> dict[str, Any]:
        found = history.commits([sha])
        if not found:
            return {"subject": "", "author": "", "committed": None}
        return {"subject": found[0].subject, "author": found[0].author_name,
                "committed": iso(found[0].committer_time)}

    replay = report.write_replay(search, scratch_root(repo.common_dir), subject=lambda sha: info(sha)["subject"])
    suspects = setup.suspects
    inv_id = suspects.investigation_id if suspects else None
    feedback = None
    if search.culprit and inv_id and record:
        try:
            v = record_culprit(repo, inv_id, search.culprit,
                               note=f"proven by rcahook bisect in {search.runs} runs with: {cmd}")
            where = f"rank {v.rank}" if v.in_candidates else "not among its candidates"
            feedback = {"recorded": True, "investigation": inv_id,
                        "message": f"recorded for {inv_id}: {v.sha[:12]} root cause ({where})"}
        except (RcahookError, sqlite3.Error, OSError) as e:  # the proof stands; the report says why
            feedback = {"recorded": False, "investigation": inv_id,
                        "message": f"could not record the culprit for {inv_id}: {e}"}
    warnings = list(setup.warnings)
    for index, name in ((CHECK_GOOD, f"the good revision {setup.good[:12]}"),
                        (CHECK_BAD, f"the bad revision {setup.bad[:12]}")):
        if search.culprit and index in search.plan.unverified:
            warnings.append(f"{name} could not be tested (skipped): the answer takes it on trust")
    return report.to_json(search, cmd=cmd, title=suspects.title if suspects else "", investigation=inv_id,
                          info=info, rank_of=suspects.rank_of if suspects else (lambda sha: None),
                          replay=replay, feedback=feedback, warnings=warnings)
