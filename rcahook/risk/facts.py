"""What the risk features need of each commit, read in bulk from the index (`load_facts`),
and the document "resembles" compares (`similarity_document`).

numpy-free and light: the pre-push hook reads every commit of history through here.
"""
from __future__ import annotations

import itertools
import re
import sqlite3
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple

from rcahook.index import store
from rcahook.text import tokenize

if TYPE_CHECKING:
    from rcahook.index.gitrepo import Repo

MAX_FILES = 30  # a tree-wide rename says nothing about which files break
MAX_IDENTS = 60  # identifiers per commit in the similarity document
_FIX_WORD = re.compile(r"\b(fix\w*|bug\w*|regression|crash\w*|broken|revert\w*)\b", re.IGNORECASE)


class CommitFacts(NamedTuple):
    """What the risk features need of one commit (read in bulk from the index)."""

    sha: str
    time: int  # committer time: when the commit entered history
    email: str  # lower-cased author email
    subject: str
    files: tuple[tuple[str, str, int, int], ...]  # (path, status, added, deleted)
    idents: tuple[str, ...]  # identifiers the diff adds, then those it removes
    n_idents_added: int
    is_fix: bool
    defs: tuple[str, ...]  # names of the definitions it touches
    new_defs: int  # definitions touched on the new side only (created)
    body_words: int
    foreign: bool  # committer differs from author

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(f[0] for f in self.files)

    @property
    def added(self) -> int:
        return sum(f[2] for f in self.files)

    @property
    def deleted(self) -> int:
        return sum(f[3] for f in self.files)



def similarity_document(c: CommitFacts) -> list[str]:
    """What "resembles" compares: subject, paths and the identifiers the diff adds or removes
    (split at `_` and punctuation by the protocol tokenizer; cheap enough for every culprit)."""
    return tokenize(f"{c.subject} {' '.join(c.paths[:MAX_FILES])} {' '.join(c.idents[:MAX_IDENTS])}")


def _computed_touched(conn: sqlite3.Connection, repo: Repo, ids: list[int]) -> dict[int, list[tuple]]:
    """Touched rows of those of `ids` not done yet (see codegraph.touched.touched_rows)."""
    # by key: the hook path must not read every commit an index left for later
    todo = sorted(cid for (cid,) in store.rows_in(
        conn, "SELECT id FROM commits WHERE id IN ({marks}) AND defs_done=0", ids))
    if not todo:
        return {}
    # tree-sitter's side of rcahook only when there is something to parse: the pre-push hook
    # reads facts through here, and a default index leaves its commits done
    from rcahook.codegraph.touched import touched_rows

    return touched_rows(conn, repo, todo)[0]


def load_facts(conn: sqlite3.Connection, shas: Sequence[str] | None = None, *,
               light: bool = False, repo: Repo | None = None) -> dict[str, CommitFacts]:
    """CommitFacts of these commits (every non-merge commit when None), by sha.

    `light` reads only what observing a commit needs (time, author, subject, files): the
    scan reads all history so, and the few commits it describes or learns from in full.
    With `repo`, the touched definitions of a commit `rcahook index --touched-depth` left
    for later are computed now (and stored when the index can be written); without it,
    what is stored.
    """
    cols = "id, sha, committer_time, author_email, committer_email, subject"
    cols += ", '', '', ''" if light else ", body, idents_added, idents_removed"
    if shas is None:
        rows = conn.execute(f"SELECT {cols} FROM commits WHERE n_parents <= 1").fetchall()
    else:
        rows = list(store.rows_in(conn, f"SELECT {cols} FROM commits WHERE sha IN ({{marks}})", shas))

    def per_commit(sql: str, column: str) -> Iterator[tuple]:
        """Rows of `sql` for the commits read above (every row when reading every commit)."""
        if shas is None:
            yield from conn.execute(sql.format(where=""))
            return
        yield from store.rows_in(conn, sql.format(where=f"WHERE {column} IN ({{marks}})"), [r[0] for r in rows])

    files: dict[int, list[tuple[str, str, int, int]]] = defaultdict(list)
    for cid, *change in per_commit(
            "SELECT commit_id, path, status, added, deleted FROM changes {where} ORDER BY commit_id, idx",
            "commit_id"):
        files[cid].append(tuple(change))
    names: dict[int, set[str]] = defaultdict(set)
    sides: dict[int, dict[str, set[str]]] = defaultdict(lambda: {"new": set(), "old": set()})
    fixes: set[int] = set()
    if not light:
        computed = _computed_touched(conn, repo, [r[0] for r in rows]) if repo is not None else {}
        touched_rows = itertools.chain(
            (r for r in per_commit("SELECT commit_id, path, name, qualname, side FROM touched {where}", "commit_id")
             if r[0] not in computed),
            ((cid, path, name, qualname, side) for cid, found in computed.items()
             for path, name, qualname, _, side in found))
        for cid, path, name, qualname, side in touched_rows:
            names[cid].add(name)
            sides[cid][side].add(f"{path}:{qualname}")
        fixes = {cid for (cid,) in per_commit("SELECT DISTINCT fix_id FROM links {where}", "fix_id")}
    out = {}
    for cid, sha, t, email, committer, subject, body, plus, minus in rows:
        plus = plus.split()
        made = sides.get(cid)
        out[sha] = CommitFacts(
            sha=sha, time=t, email=email.lower(), subject=subject, files=tuple(files.get(cid, ())),
            idents=tuple(plus + minus.split()), n_idents_added=len(plus),
            is_fix=cid in fixes or bool(_FIX_WORD.search(subject)), defs=tuple(sorted(names.get(cid, ()))),
            new_defs=len(made["new"] - made["old"]) if made else 0, body_words=len(body.split()),
            foreign=committer.lower() != email.lower())
    return out
