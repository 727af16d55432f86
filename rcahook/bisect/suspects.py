"""What a bisection starts from: the investigation's search space and the ranking's belief.

Either a live investigation (rcahook.rca.investigate.investigate, the very call `rcahook
investigate` makes, saved the same way so the culprit can be recorded against it), or a
saved one (`--investigation ID`): its ranked candidates are in the state database and its
search space is recomputed from its incident, at its revision.
"""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rcahook.errors import BadInputError, RcahookError
from rcahook.index.gitrepo import Repo
from rcahook.index.reader import History
from rcahook.rca import feedback
from rcahook.rca.incident import incident_from_mapping

if TYPE_CHECKING:
    from rcahook.rca.investigate import Result


@dataclass(frozen=True)
class Suspects:
    at: str  # the investigated revision: the default bad revision
    space: list[str]  # the search space, newest first
    ranked: list[tuple[str, float]]  # (sha, probability), best first
    title: str
    investigation_id: str | None  # saved: feedback can be recorded against it
    window: int | None  # the search space as asked for: N commits, or
    since: str | None  # a time span

    def rank_of(self, sha: str) -> int | None:
        return next((i + 1 for i, (s, _) in enumerate(self.ranked) if s == sha), None)


def from_result(result: Result, inv_id: str | None) -> Suspects:
    space = result.space
    return Suspects(space.at, list(space.shas), [(c.sha, c.probability) for c in result.ranking.candidates],
                    result.incident.title, inv_id, space.window,
                    None if space.window else _span(space.until - (space.since or space.until)))


def from_saved(history: History, common_dir: Path, inv_id: str) -> Suspects:
    """From an investigation saved by `rcahook investigate` (or an earlier bisect)."""
    from rcahook.rca.investigate import epoch, window_for

    conn = feedback.open_state(feedback.state_path(common_dir), create=False)
    try:
        saved = feedback.get_investigation(conn, inv_id)
    finally:
        conn.close()
    incident = incident_from_mapping(saved.incident, source=f"saved investigation {saved.id}")
    space = window_for(history, saved.at, incident, until=epoch(incident.time))
    ranked = [(c["sha"], float(c.get("probability", 0.0))) for c in saved.results.get("candidates", [])]
    if not ranked:
        raise BadInputError(f"saved investigation {saved.id} has no ranked candidates to bisect by; run "
                            "`rcahook bisect` with the incident's flags instead")
    return Suspects(saved.at, list(space.shas), ranked, incident.title, saved.id, space.window,
                    None if space.window else _span(space.until - (space.since or space.until)))


def save(repo: Repo, result: Result, *, say: Callable[[str], None]) -> str | None:
    """Save a live investigation for feedback, as `rcahook investigate` does; a state database
    that cannot be written costs the id (and the recorded verdict), not the bisection."""
    from rcahook.rca import report

    created = int(time.time())
    doc = report.to_json(result, inv_id=None, created=created)
    path = feedback.state_path(repo.common_dir)
    try:
        return report.save_result(path, repo=str(repo.common_dir), doc=doc, result=result, created=created)
    except (OSError, sqlite3.Error, RcahookError) as e:
        say(f"warning: could not save the investigation in {path} ({e}); the culprit will not be recorded "
            "as feedback (pass --no-feedback to skip saving)")
        return None


def record_culprit(repo: Repo, inv_id: str, culprit: str, *, note: str) -> feedback.Verdict:
    """The culprit as the responder's verdict, through the API `rcahook feedback` uses."""
    conn = feedback.open_state(feedback.state_path(repo.common_dir), create=False)
    try:
        saved = feedback.get_investigation(conn, inv_id)
        return feedback.record_verdicts(conn, saved, root_cause=culprit, not_causes=(), note=note,
                                        resolve=lambda given: repo.resolve(given))[-1]
    finally:
        conn.close()


def _span(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    return f"{days}d" if not rest else f"{seconds // 3600}h"
