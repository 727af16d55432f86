"""Investigations mined from history exactly as protocol v1 says (or v1.1: v1's, plus the
wordings rcahook.backtest.protocol adds, docs/backtest.md#protocol-v11)."""
from __future__ import annotations

from dataclasses import dataclass

from rcahook.backtest.protocol import RULE_V1, V1, V1_1, added_culprits, subject_names
from rcahook.errors import BadInputError
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
    rule: str = RULE_V1  # what named the culprit: "v1", or a v1.1 addition ("v1.1:fixes", "v1.1:follow-up")
    subject_named: bool = False  # F's subject carries the culprit's sha: a title with little left in it

    def rank_of(self, ordering: list[str]) -> int | None:
        try:
            return ordering.index(self.culprit) + 1
        except ValueError:
            return None


def mine_investigations(history: History, head: str, *, window: int = 500,
                        protocol: str = V1) -> list[Investigation]:
    """Newest first. `head` is a full sha present in the index. Under v1.1, v1's
    investigations are kept as they are and those of the added wordings join them, in the
    same newest-first order."""
    if protocol not in (V1, V1_1):
        raise BadInputError(f"protocol {protocol!r}: expected 1 or 1.1")
    culprit_of = history.culprit_of()
    found = {fix: (culprit, RULE_V1) for fix, culprit in culprit_of.items()}
    order = history.rev_list(head)
    if protocol == V1_1:
        found.update(added_culprits(history.conn, order, culprit_of))
    fixes = [s for s in order if s in found]
    out: list[Investigation] = []
    for view in history.commits(fixes):
        culprit, rule = found[view.sha]
        parents = history.parents(view.sha)
        if view.subject.startswith("Revert") or not parents or culprit == view.sha:
            continue
        window_shas = history.rev_list(parents[0], max_count=window)
        if culprit not in window_shas:
            continue
        out.append(Investigation(
            fix=view.sha, culprit=culprit, parent=parents[0],
            title=strip_incident_title(view.subject), time=view.author_time,
            paths=view.paths, candidates=tuple(window_shas), rule=rule,
            subject_named=subject_names(view.subject, culprit)))
    return out
