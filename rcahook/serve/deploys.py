"""Deploy events: what ran where, from when; they narrow an investigation to what shipped.

A deploy is (environment, sha, time), recorded by a pipeline with `rcahook deploy record`
or `POST /api/deploys`, kept append-only in the repository's state database (the
`deploys` table of rcahook.rca.feedback's schema, beside saved investigations and verdicts).

When deploys are known for the incident's environment, the suspects are what the last
deploy before the incident added to the one before it: `git rev-list LAST --not PREVIOUS`,
committed before the incident (rcahook.rca.investigate.Scope). Each suggestion then says when it
went live there. With one deploy known, or none, the search is the usual window (ending at
that deploy's revision when there is one). The backtest never reads deploys.
"""
from __future__ import annotations

import sqlite3
import time as _time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from rcahook.errors import BadInputError
from rcahook.index import store
from rcahook.index.reader import History
from rcahook.rca.investigate import Scope
from rcahook.rca.retrieve import search_space

MAX_DEPLOYS = 20  # the newest deploys before an incident that "deployed at" looks through
_ENVIRONMENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:")


@dataclass(frozen=True)
class Deploy:
    seq: int
    environment: str
    sha: str
    time: int  # epoch seconds: when it went live
    recorded: int

    def to_json(self) -> dict[str, Any]:
        return {"environment": self.environment, "sha": self.sha, "time": _iso(self.time),
                "recorded": _iso(self.recorded)}


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


def check_environment(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 100 or not set(name) <= _ENVIRONMENT_CHARS:
        raise BadInputError(f"environment {name!r} must be 1-100 letters, digits or . _ - / : "
                            "(e.g. prod, staging, prod/billing)")
    return name


def record_deploy(conn: sqlite3.Connection, *, environment: str, sha: str, time: int,
                  now: int | None = None) -> Deploy:
    """Append one deploy (fsync'd, like verdicts). `sha` is a full sha the caller resolved."""
    now = int(_time.time()) if now is None else now
    with store.transaction(conn):
        cur = conn.execute("INSERT INTO deploys (environment, sha, time, recorded) VALUES (?,?,?,?)",
                           (check_environment(environment), sha, time, now))
    return Deploy(cur.lastrowid, environment, sha, time, now)  # type: ignore[arg-type]  # set by the INSERT


def deploys(conn: sqlite3.Connection, environment: str | None = None, *, until: int | None = None,
            limit: int | None = None) -> list[Deploy]:
    """Newest first (by time, then by when recorded). None in a state database too old to
    have the table (opened read-only, so not upgraded): no deploys known."""
    sql = "SELECT seq, environment, sha, time, recorded FROM deploys WHERE 1=1"
    args: list[object] = []
    if environment is not None:
        sql += " AND environment = ?"
        args.append(environment)
    if until is not None:
        sql += " AND time <= ?"
        args.append(until)
    sql += " ORDER BY time DESC, seq DESC"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    try:
        return [Deploy(*row) for row in conn.execute(sql, args)]
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return []
        raise


def environment_for(conn: sqlite3.Connection, given: str | None, services: tuple[str, ...]) -> str | None:
    """The environment whose deploys apply: the one given, else the first of the incident's
    services that has deploys recorded under its name."""
    if given:
        return check_environment(given)
    for name in services:
        if deploys(conn, name, limit=1):
            return name
    return None


@dataclass(frozen=True)
class DeployScope:
    environment: str
    last: Deploy  # the last deploy before the incident (what was running)
    previous: Deploy | None  # the one before it; None: the usual window, ending at last.sha
    history: list[Deploy]  # up to MAX_DEPLOYS before the incident, newest first (for "deployed at")
    notes: list[str]

    @property
    def scope(self) -> Scope:
        return Scope(at=self.last.sha, hide=self.previous.sha if self.previous else None)

    def to_json(self) -> dict[str, Any]:
        return {"environment": self.environment, "last": self.last.to_json(),
                "previous": self.previous.to_json() if self.previous else None,
                "range": f"{self.last.sha[:12]} --not {self.previous.sha[:12]}" if self.previous else None}


def scope_for(history: History, known: list[Deploy], *, environment: str, until: int) -> DeployScope | None:
    """The search space that the deploys before `until` (newest first) give, or None when
    none of them is usable (not in the index yet)."""
    notes: list[str] = []
    before = [d for d in known if d.time <= until][:MAX_DEPLOYS]
    indexed = {c.sha for c in history.commits({d.sha for d in before})}
    usable = []
    for d in before:
        if d.sha in indexed:
            usable.append(d)
        else:
            notes.append(f"the deploy of {d.sha[:12]} to {environment} at {_iso(d.time)} is not in the index "
                         "yet (or not on a branch rcahook indexes); left out")
    if not usable:
        return None
    last = usable[0]
    previous = next((d for d in usable[1:] if d.sha != last.sha), None)
    if previous is not None and not search_space(history, last.sha, until=until, hide=previous.sha):
        # a rollback (last is an ancestor of previous), or a redeploy: nothing new shipped
        notes.append(f"the last deploy to {environment} ({last.sha[:12]}) added no commit to the one before it "
                     f"({previous.sha[:12]}, a rollback?); searching the usual window ending at {last.sha[:12]}")
        previous = None
    return DeployScope(environment, last, previous, usable, notes)


def deployed_at(history: History, scope: DeployScope, shas: list[str]) -> dict[str, dict[str, Any]]:
    """For each sha, the first of the scope's deploys that contained it: {"time", "sha",
    "exact"}; `exact` is False when the oldest deploy looked at already had it (it went live
    then or earlier)."""
    out: dict[str, dict[str, Any]] = {}
    todo = set(shas)
    oldest = scope.history[-1]
    for d in reversed(scope.history):  # oldest first
        if not todo:
            break
        reach = history.reachable(d.sha, sorted(todo))  # bounded by generation, not the whole history
        for sha in [s for s in todo if s in reach]:
            out[sha] = {"environment": scope.environment, "time": _iso(d.time), "sha": d.sha,
                        "exact": d is not oldest}
            todo.discard(sha)
    return out
