"""`rcahook verify`: does undoing the suspect fix the failure?

In a scratch worktree at the bad revision, the command must fail first (otherwise there is
nothing to fix and the answer would mean nothing); then the suspect is reverted on top
(`git revert --no-commit`, the first parent as mainline for a merge) and the command runs
again: it passes (fixed), it still fails (not fixed), or the revert does not apply because
later changes build on the suspect (then bisect, which needs no revert, is the way).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rcahook.bisect.plan import BAD, GOOD, SKIP
from rcahook.bisect.run import RunResult, command_env, run_command
from rcahook.bisect.worktree import scratch_worktree
from rcahook.errors import BadInputError, BisectError
from rcahook.index import gitrepo
from rcahook.index.gitrepo import Repo

FIXED, NOT_FIXED, DOES_NOT_APPLY, UNDECIDED = "fixed", "not-fixed", "does-not-apply", "undecided"
EXIT_CODES = {FIXED: 0, NOT_FIXED: 1, DOES_NOT_APPLY: 3, UNDECIDED: 3}


@dataclass
class Verification:
    suspect: str
    bad: str
    outcome: str  # fixed | not-fixed | does-not-apply | undecided
    at_bad: RunResult
    reverted: RunResult | None = None
    conflicts: list[str] = field(default_factory=list)


def verify(repo: Repo, suspect: str, bad: str, *, cmd: str, timeout: float | None,
           say: Callable[[str], None] = lambda m: None) -> Verification:
    if not repo.is_ancestor(suspect, bad):
        raise BadInputError(f"{suspect[:12]} is not in the history of the bad revision {bad[:12]}, so it cannot have "
                            "caused a failure there; pass --bad REV, a revision that contains it")
    if suspect == bad and not repo.parents(suspect):
        raise BadInputError(f"{suspect[:12]} is the repository's first commit: reverting it leaves nothing to test")
    source = repo.workdir

    def run(cwd: Path, label: str) -> RunResult:
        say(f"running the command {label}")
        return run_command(cmd, cwd=cwd, env=command_env(rev=bad, source=source), timeout=timeout)

    with scratch_worktree(repo.common_dir, bad, say=say) as scratch:
        at_bad = run(scratch.path, f"at the bad revision {bad[:12]}")
        if at_bad.verdict == GOOD:
            raise BisectError(f"the command passes at the bad revision {bad[:12]} (exit 0): it does not reproduce the "
                              "failure, so reverting a suspect proves nothing; check --cmd, or pass --bad REV")
        if at_bad.verdict == SKIP:
            what = "timed out" if at_bad.timed_out else "exited 125 (cannot test)"
            raise BisectError(f"the command {what} at the bad revision {bad[:12]}; fix that first (or raise --timeout)")
        mainline = 1 if len(repo.parents(suspect)) > 1 else None
        conflicts = gitrepo.revert_no_commit(scratch.path, suspect, mainline=mainline)
        if conflicts:
            return Verification(suspect, bad, DOES_NOT_APPLY, at_bad, conflicts=conflicts)
        reverted = run(scratch.path, f"with {suspect[:12]} reverted")
    outcome = {GOOD: FIXED, BAD: NOT_FIXED}.get(reverted.verdict, UNDECIDED)
    return Verification(suspect, bad, outcome, at_bad, reverted)


def bisect_hint(v: Verification, cmd: str) -> str:
    """The bisect that proves what a revert could not."""
    import shlex

    return f"rcahook bisect --cmd {shlex.quote(cmd)} --good {v.suspect[:12]}^ --bad {v.bad[:12]}"


def _run_json(run: RunResult | None, label: str) -> dict[str, Any] | None:
    if run is None:
        return None
    return {"label": label, "verdict": run.verdict, "exit_code": run.exit_code, "timed_out": run.timed_out,
            "seconds": round(run.seconds, 3), "output_tail": run.tail}


def verdict_line(v: Verification) -> str:
    s, b = v.suspect[:12], v.bad[:12]
    if v.outcome == FIXED:
        return (f"fixed: the command fails at {b} and passes with {s} reverted on top: reverting {s} fixes it")
    if v.outcome == NOT_FIXED:
        return f"not fixed: the command still fails at {b} with {s} reverted: {s} is not (alone) the cause"
    if v.outcome == DOES_NOT_APPLY:
        return (f"the revert of {s} does not apply on top of {b} ({len(v.conflicts)} file(s) in conflict): later "
                "changes build on it; bisect instead, which needs no revert")
    what = "timed out" if v.reverted and v.reverted.timed_out else "exited 125 (cannot test)"
    return f"undecided: with {s} reverted the command {what}"


def to_json(repo: Repo, v: Verification, *, cmd: str) -> dict[str, Any]:
    from rcahook.bisect.report import VERIFY_SCHEMA

    return {
        "schema": VERIFY_SCHEMA,
        "suspect": {"sha": v.suspect, "short_sha": v.suspect[:12], "subject": repo.commit_record(v.suspect).subject},
        "bad": v.bad,
        "command": cmd,
        "outcome": v.outcome,
        "verdict_line": verdict_line(v),
        "at_bad": _run_json(v.at_bad, f"at {v.bad[:12]}"),
        "reverted": _run_json(v.reverted, f"with {v.suspect[:12]} reverted"),
        "conflicts": v.conflicts,
        "next": bisect_hint(v, cmd) if v.outcome in (NOT_FIXED, DOES_NOT_APPLY, UNDECIDED) else None,
    }
