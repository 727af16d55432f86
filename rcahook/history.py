"""Read access to the index: commits, their changes, culprit links, and rev-list over the
index (no git walk), which is what investigate, backtest and scan all build on."""
from __future__ import annotations

import heapq
import itertools
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rcahook import store
from rcahook.errors import NotFoundError, UnknownRevisionError


@dataclass(frozen=True)
class CommitView:
    id: int
    sha: str
    author_name: str
    author_email: str
    author_time: int
    author_offset: int
    committer_time: int
    subject: str
    body: str
    n_parents: int
    n_files: int
    added: int
    deleted: int
    idents_added: str  # space-separated
    idents_removed: str
    code_lines: int
    paths: tuple[str, ...]

    @property
    def size(self) -> int:
        return self.added + self.deleted


@dataclass(frozen=True)
class Change:
    path: str
    old_path: str | None
    status: str
    added: int
    deleted: int
    binary: bool
    hunks: tuple[tuple[int, int, int, int], ...]  # (old_start, old_lines, new_start, new_lines)
    old_blob: str | None
    new_blob: str | None
    unavailable: bool = False  # its blobs are not in the clone (partial clone): no lines, no hunks


@dataclass(frozen=True)
class Link:
    fix: str
    culprit: str | None
    kind: str
    ref: str
    status: str
    seq: int


@dataclass(frozen=True)
class Touched:
    path: str
    name: str
    qualname: str
    kind: str
    side: str


def parse_hunks(text: str) -> tuple[tuple[int, int, int, int], ...]:
    if not text:
        return ()
    return tuple(tuple(int(x) for x in h.split(",")) for h in text.split(";"))  # type: ignore[misc]


_COMMIT_COLS = ("id, sha, author_name, author_email, author_time, author_offset, committer_time,"
                " subject, body, n_parents, n_files, added, deleted, idents_added, idents_removed, code_lines")


class History:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self._graph: tuple[dict[str, tuple[int, int]], dict[str, tuple[str, ...]]] | None = None
        self._cache: dict[str, CommitView] = {}

    @classmethod
    def open(cls, db_path: Path) -> History:
        """The index as it is; read-only when this process cannot write it (see `read_only`)."""
        return cls(store.open_index(db_path, create=False))

    @property
    def read_only(self) -> bool:
        """Opened read-only (a read-only repository): nothing may be cached or saved in it."""
        return store.is_read_only(self.conn)

    def close(self) -> None:
        self.conn.close()

    # -- commits ---------------------------------------------------------------------------
    def count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM commits").fetchone()[0]

    def resolve(self, rev: str) -> str:
        """A full sha from a full or abbreviated sha in the index."""
        rev = rev.strip().lower()
        rows = self.conn.execute(
            "SELECT sha FROM commits WHERE sha >= ? AND sha < ? LIMIT 2", (rev, rev + "g")).fetchall()
        if len(rows) == 1:
            return rows[0][0]
        if rows:
            raise UnknownRevisionError(f"{rev!r} is ambiguous in the index; give more hex digits")
        raise NotFoundError(f"commit {rev!r} is not in the index; run `rcahook index` (or check the sha)")

    def commits(self, shas: Iterable[str]) -> list[CommitView]:
        """CommitViews in the order given; unknown shas are skipped."""
        shas = list(shas)
        missing = [s for s in dict.fromkeys(shas) if s not in self._cache]
        for i in range(0, len(missing), 500):
            chunk = missing[i:i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT {_COMMIT_COLS} FROM commits WHERE sha IN ({marks})", chunk).fetchall()
            ids = {r[0]: r for r in rows}
            paths: dict[int, list[str]] = {i: [] for i in ids}
            if ids:
                id_marks = ",".join("?" * len(ids))
                for cid, path in self.conn.execute(
                        f"SELECT commit_id, path FROM changes WHERE commit_id IN ({id_marks})"
                        " ORDER BY commit_id, idx", list(ids)):
                    paths[cid].append(path)
            for r in rows:
                self._cache[r[1]] = CommitView(*r, paths=tuple(paths[r[0]]))
        return [self._cache[s] for s in shas if s in self._cache]

    def commit(self, sha: str) -> CommitView:
        found = self.commits([sha])
        if not found:
            raise NotFoundError(f"commit {sha} is not in the index; run `rcahook index`")
        return found[0]

    def changes(self, sha: str) -> list[Change]:
        cid = self.commit(sha).id
        return [
            Change(path, old, status, a, d, bool(b), parse_hunks(h), ob, nb, bool(u))
            for path, old, status, a, d, b, h, ob, nb, u in self.conn.execute(
                "SELECT path, old_path, status, added, deleted, binary, hunks, old_blob, new_blob, unavailable"
                " FROM changes WHERE commit_id=? ORDER BY idx", (cid,))
        ]

    def trailers(self, sha: str) -> list[tuple[str, str]]:
        row = self.conn.execute("SELECT trailers FROM commits WHERE sha=?", (sha,)).fetchone()
        return [tuple(t) for t in json.loads(row[0])] if row else []

    def touched(self, sha: str) -> list[Touched]:
        cid = self.commit(sha).id
        return [Touched(*r) for r in self.conn.execute(
            "SELECT path, name, qualname, kind, side FROM touched WHERE commit_id=?", (cid,))]

    def touched_many(self, shas: Sequence[str]) -> dict[str, list[Touched]]:
        views = {c.id: c.sha for c in self.commits(shas)}
        out: dict[str, list[Touched]] = {s: [] for s in views.values()}
        ids = list(views)
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for cid, *rest in self.conn.execute(
                    f"SELECT commit_id, path, name, qualname, kind, side FROM touched"
                    f" WHERE commit_id IN ({','.join('?' * len(chunk))})", chunk):
                out[views[cid]].append(Touched(*rest))
        return out

    # -- the commit graph --------------------------------------------------------------------
    def _load_graph(self) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[str, ...]]]:
        if self._graph is None:
            info = {sha: (t, n) for sha, t, n in self.conn.execute(
                "SELECT sha, committer_time, n_parents FROM commits")}
            parents: dict[str, list[str]] = {}
            for sha, parent in self.conn.execute(
                    "SELECT c.sha, p.parent_sha FROM parents p JOIN commits c ON c.id = p.commit_id"
                    " ORDER BY p.commit_id, p.idx"):
                parents.setdefault(sha, []).append(parent)
            self._graph = info, {k: tuple(v) for k, v in parents.items()}
        return self._graph

    def parents(self, sha: str) -> tuple[str, ...]:
        return self._load_graph()[1].get(sha, ())

    def rev_list(self, start: str, *, max_count: int | None = None, since: int | None = None,
                 no_merges: bool = True) -> list[str]:
        """`git rev-list [--no-merges] [--max-count=N] [--since=T] start`, in git's own order.

        git's default walk pops commits from a queue ordered by committer date, ties in
        insertion order, and reaches a commit's parents only once it is popped; the same
        here, so windows match the protocol's `git rev-list` exactly.
        """
        info, parents = self._load_graph()
        if start not in info:
            raise NotFoundError(f"commit {start} is not in the index; run `rcahook index`")
        tick = itertools.count()
        queue = [(-info[start][0], next(tick), start)]
        seen = {start}
        out: list[str] = []
        while queue:
            neg_time, _, sha = heapq.heappop(queue)
            if since is not None and -neg_time < since:
                break
            if not no_merges or info[sha][1] <= 1:
                out.append(sha)
                if max_count is not None and len(out) >= max_count:
                    break
            for p in parents.get(sha, ()):
                if p not in seen and p in info:
                    seen.add(p)
                    heapq.heappush(queue, (-info[p][0], next(tick), p))
        return out

    def is_ancestor(self, ancestor: str, descendant: str, *, limit: int = 100_000) -> bool:
        return ancestor in set(self.rev_list(descendant, max_count=limit, no_merges=False))

    # -- culprit links --------------------------------------------------------------------------
    def links(self, *, kinds: Sequence[str] | None = None) -> list[Link]:
        rows = self.conn.execute(
            "SELECT c.sha, l.culprit_sha, l.kind, l.ref, l.status, l.seq FROM links l"
            " JOIN commits c ON c.id = l.fix_id ORDER BY c.author_time, c.sha, l.seq").fetchall()
        return [Link(*r) for r in rows if kinds is None or r[2] in kinds]

    def links_of(self, sha: str) -> tuple[list[Link], list[Link]]:
        """(links this commit makes as a fix, links naming it as a culprit)."""
        as_fix = [Link(*r) for r in self.conn.execute(
            "SELECT c.sha, l.culprit_sha, l.kind, l.ref, l.status, l.seq FROM links l"
            " JOIN commits c ON c.id = l.fix_id WHERE c.sha=? ORDER BY l.seq", (sha,))]
        as_culprit = [Link(*r) for r in self.conn.execute(
            "SELECT c.sha, l.culprit_sha, l.kind, l.ref, l.status, l.seq FROM links l"
            " JOIN commits c ON c.id = l.fix_id WHERE l.culprit_sha=? ORDER BY c.author_time", (sha,))]
        return as_fix, as_culprit

    def culprit_of(self) -> dict[str, str]:
        """fix sha -> culprit sha, by the protocol: the first culprit reference that resolves
        (reverts excluded)."""
        out: dict[str, str] = {}
        for link in self.links(kinds=("fixes", "regression", "introduced")):
            if link.status == "resolved" and link.fix not in out:
                out[link.fix] = link.culprit  # type: ignore[assignment]
        return out
