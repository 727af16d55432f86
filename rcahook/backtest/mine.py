"""Investigations mined from history exactly as protocol v1 says."""
from __future__ import annotations

from dataclasses import dataclass

from rcahook.index.reader import History
from rcahook.text import strip_incident_title

PROTOCOL_VERSION = 1


@dataclass(frozen=True)
class Investigation:
    fix: str
    culprit: str
    parent: str  # F^: everything the ranker may see is reachable from here
    title: str  # F's subject, cleaned: no quoted subjects, hex strings or #refs
    time: int  # F's author time: when the investigation opens
    paths: tuple[str, ...]  # what F modifies: the "paths" track's impacted locations
    candidates: tuple[str, ...]  # the window: first W of rev-list --no-merges F^
    own_title: str | None = None  # null track: F's own title, replaced by `title` from elsewhere

    def rank_of(self, ordering: list[str]) -> int | None:
        try:
            return ordering.index(self.culprit) + 1
        except ValueError:
            return None


def mine_investigations(history: History, head: str, *, window: int = 500) -> list[Investigation]:
    """Newest first. `head` is a full sha present in the index."""
    culprit_of = history.culprit_of()
    fixes = [s for s in history.rev_list(head) if s in culprit_of]
    out: list[Investigation] = []
    for view in history.commits(fixes):
        culprit = culprit_of[view.sha]
        parents = history.parents(view.sha)
        if view.subject.startswith("Revert") or not parents or culprit == view.sha:
            continue
        window_shas = history.rev_list(parents[0], max_count=window)
        if culprit not in window_shas:
            continue
        out.append(Investigation(
            fix=view.sha, culprit=culprit, parent=parents[0],
            title=strip_incident_title(view.subject), time=view.author_time,
            paths=view.paths, candidates=tuple(window_shas)))
    return out
