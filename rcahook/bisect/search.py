"""The bisection loop: ask the plan what to test, run the command there, record the verdict,
and keep the chain of evidence that proves (or fails to prove) the culprit.

The runner is given (`runner(sha) -> RunResult`), so the loop knows nothing of worktrees:
the command wires it to a scratch worktree, the tests and the benchmark to an oracle.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rcahook.bisect.plan import (
    BAD,
    BAD_NOT_BAD,
    CHECK_BAD,
    CHECK_GOOD,
    CONTRADICTION,
    FOUND,
    GOOD,
    GOOD_NOT_GOOD,
    ONLY_SKIPPED,
    Plan,
    Step,
)
from rcahook.bisect.run import NOT_RUNNABLE, RunResult
from rcahook.bisect.space import Space
from rcahook.errors import BisectError
from rcahook.untrusted import term_text

MAX_RUNS = "max-runs"  # the search was cut short by --max-runs (Search.status)


@dataclass(frozen=True)
class CommandRun:
    """One run of the test command: on which revision, why, and what it said (the bisection's evidence)."""

    run: int  # 1-based
    sha: str
    role: str  # candidate | good revision | bad revision
    why: str  # split | retry | confirm | check | probe (is the command runnable at all?)
    verdict: str  # good | bad | skip
    exit_code: int | None  # None: timed out
    seconds: float
    tail: str  # the command's last lines
    p_bad: float  # the chance of "bad" the ranking and earlier verdicts gave this run


@dataclass
class Search:
    space: Space
    good: str
    bad: str
    plan: Plan
    status: str = ""  # found | only-skipped | contradiction | max-runs
    evidence: list[CommandRun] = field(default_factory=list)

    @property
    def culprit(self) -> str | None:
        c = self.plan.culprit
        return self.space.shas[c] if c is not None else None

    @property
    def remaining(self) -> list[str]:
        """The candidates the evidence leaves, newest first."""
        return [self.space.shas[i] for i in np.flatnonzero(self.plan.remaining)]

    @property
    def leader(self) -> str | None:
        i = self.plan.leader()
        return self.space.shas[i] if i is not None else None

    @property
    def runs(self) -> int:
        return len(self.evidence)


def plain_estimate(n: int) -> int:
    """What plain bisection needs for n candidates: ceil(log2 n) runs."""
    return math.ceil(math.log2(n)) if n > 1 else 0


def run_search(space: Space, prior: np.ndarray, *, good: str, bad: str, runner: Callable[[str], RunResult],
               retries: int = 0, max_runs: int | None = None, good_given: bool = True,
               on_run: Callable[[CommandRun], None] = lambda e: None) -> Search:
    """Bisect until the culprit is proven, or nothing more can be learned.

    Raises BisectError when the boundaries fail (the good revision fails too: the culprit is
    older; the bad one passes: the command does not reproduce) or the command cannot run."""
    search = Search(space, good, bad, Plan(space, prior, retries=retries))
    plan = search.plan
    probed = False

    def run(step: Step, sha: str, role: str, why: str) -> RunResult:
        result = runner(sha)
        e = CommandRun(len(search.evidence) + 1, sha, role, why, result.verdict, result.exit_code,
                     result.seconds, result.tail, step.p_bad)
        search.evidence.append(e)
        on_run(e)
        return result

    while True:
        step = plan.next_step()
        if step is None:
            break
        if max_runs is not None and search.runs >= max_runs:
            search.status = MAX_RUNS
            return search
        sha, role = _target(step, space, good=good, bad=bad)
        result = run(step, sha, role, step.why)
        if result.exit_code in NOT_RUNNABLE and not probed and step.index != CHECK_GOOD:
            # like `git bisect run`: 126/127 may be a typo in the command rather than a verdict
            probed = True
            check = Step(CHECK_GOOD, "check", 0.0)
            at_good = run(check, good, "good revision", "probe")
            if at_good.exit_code in NOT_RUNNABLE:
                raise BisectError(
                    f"the command cannot be run: it exits {result.exit_code} ({_not_runnable(result.exit_code)}) at "
                    f"{sha[:12]} and at the good revision {good[:12]} too{_last_line(at_good)}; check --cmd (it runs "
                    "with the shell, in a checkout of each revision)")
            plan.record(check, at_good.verdict)
        plan.record(step, result.verdict)
    outcome = plan.outcome
    if outcome == GOOD_NOT_GOOD:
        raise BisectError(_good_not_good(search, good_given=good_given))
    if outcome == BAD_NOT_BAD:
        last = next(e for e in reversed(search.evidence) if e.sha == bad)
        raise BisectError(
            f"the command passes on the bad revision {bad[:12]} (exit 0): it does not reproduce the failure there. "
            f"Check --cmd, or pass --bad REV, a revision where it fails{_last_line(last)}")
    search.status = {FOUND: FOUND, ONLY_SKIPPED: ONLY_SKIPPED, CONTRADICTION: CONTRADICTION}[outcome or FOUND]
    return search


def _target(step: Step, space: Space, *, good: str, bad: str) -> tuple[str, str]:
    if step.index == CHECK_GOOD:
        return good, "good revision"
    if step.index == CHECK_BAD:
        return bad, "bad revision"
    return space.shas[step.index], "candidate"


def _not_runnable(code: int | None) -> str:
    return "not executable" if code == 126 else "command not found"


def _last_line(e: CommandRun | RunResult) -> str:
    lines = [line for line in e.tail.splitlines() if line.strip()]
    return f" (its last line: {lines[-1].strip()[:200]!r})" if lines else ""


def _good_not_good(search: Search, *, good_given: bool) -> str:
    good = search.good
    last = next(e for e in reversed(search.evidence) if e.sha == good)
    code = "timed out" if last.exit_code is None else f"exit {last.exit_code}"
    if good_given:
        return (f"the good revision {good[:12]} is not good: the command fails there too ({code}){_last_line(last)}. "
                "Pass an older --good where it passes, or check that --cmd passes before the regression")
    n = len(search.space)
    return (f"the culprit is outside the window: the command fails ({code}) on {good[:12]}, the parent of the oldest "
            f"of the {n} commits searched, too{_last_line(last)}. Widen the search: --window {2 * n} (or an "
            "earlier --since), or pass --good REV, an older revision where the command passes")


# verdicts as the replay file writes them
_GIT_TERMS = {GOOD: "good", BAD: "bad"}


def replay_lines(search: Search, *, subject: Callable[[str], str]) -> list[str]:
    """A `git bisect log` of the evidence: `git bisect replay FILE` puts git's own bisection
    where this one ended (verdicts by majority, one line per revision)."""
    plan = search.plan
    def title(sha: str) -> str:  # one line, whatever the message holds: replay parses this file
        return term_text(subject(sha))

    lines = ["git bisect start", f"# bad: [{search.bad}] {title(search.bad)}", f"git bisect bad {search.bad}",
             f"# good: [{search.good}] {title(search.good)}", f"git bisect good {search.good}"]
    written: set[str] = {search.good, search.bad}
    for e in search.evidence:
        if e.sha in written or e.role != "candidate":
            continue
        i = search.space.index(e.sha)
        verdict = plan.verdict(i)
        if verdict is None and i in plan.skipped:
            lines += [f"# skip: [{e.sha}] {title(e.sha)}", f"git bisect skip {e.sha}"]
        elif verdict is not None:
            lines += [f"# {_GIT_TERMS[verdict]}: [{e.sha}] {title(e.sha)}", f"git bisect {_GIT_TERMS[verdict]} {e.sha}"]
        else:
            continue
        written.add(e.sha)
    if search.culprit:
        lines.append(f"# first bad commit: [{search.culprit}] {title(search.culprit)}")
    return lines
