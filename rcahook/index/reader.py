"""Read access to the index: commits, their changes, culprit links, and rev-list over the
index (no git walk), which is what investigate, backtest and scan all build on."""
from __future__ import annotations

import heapq
import itertools
import json
import sqlite3
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rcahook.errors import NotFoundError, UnknownRevisionError
from rcahook.index import store

if TYPE_CHECKING:
    from rcahook.index.gitrepo import Repo
    from rcahook.progress import Progress


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
    # the stored format writes four numbers a hunk
    return tuple(tuple(int(x) for x in h.split(",")) for h in text.split(";"))  # type: ignore[misc]


# a row of _COMMIT_COLS: CommitView's fields but its paths
_CommitRow = tuple[int, str, str, str, int, int, int, str, str, int, int, int, int, str, str, int]
_COMMIT_COLS = ("id, sha, author_name, author_email, author_time, author_offset, committer_time,"
                " subject, body, n_parents, n_files, added, deleted, idents_added, idents_removed, code_lines")


@dataclass(frozen=True, slots=True)
class Node:
    """What a walk needs of a commit."""
    committer_time: int
    n_parents: int
    generation: int  # see store.SCHEMA: reachable from another commit means a smaller one
    parents: tuple[str, ...]


class _LRU(OrderedDict):
    """A dict that forgets its least recently used entries past `size`."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_fresh(self, key):
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def put(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


# One run of `rcahook index` inserts commits children first, so rows with nearby ids are
# nearby in history: a walk that needs one commit reads the block of rows after it in one
# query, and the next hundreds of steps are served from memory.
GRAPH_BLOCK = 512
GRAPH_CACHE = 100_000  # walk nodes kept (about 40 MB at most), whatever the history's length
COMMIT_CACHE = 20_000  # CommitViews kept


class History:
    def __init__(self, conn: sqlite3.Connection, *, repo: Repo | None = None):
        self.conn = conn
        # the repository indexed: with it, the touched definitions of a commit that
        # `rcahook index --touched-depth` left for later are computed when asked for
        self.repo = repo
        self._nodes: _LRU = _LRU(GRAPH_CACHE)
        self._cache: _LRU = _LRU(COMMIT_CACHE)
        # commit id -> touched definitions computed here and not stored (a read-only or busy
        # index): at most what this process asked for
        self._touched_here: dict[int, list[Touched]] = {}

    @classmethod
    def open(cls, db_path: Path, *, repo: Repo | None = None) -> History:
        """The index as it is; read-only when this process cannot write it (see `read_only`)."""
        return cls(store.open_index(db_path, create=False), repo=repo)

    @property
    def read_only(self) -> bool:
        """Opened read-only (a read-only repository): nothing may be cached or saved in it."""
        return store.is_read_only(self.conn)

    def close(self) -> None:
        self.conn.close()

    def forget(self) -> None:
        """Drop the caches (another connection, a forked worker: nothing read before is kept)."""
        self._nodes.clear()
        self._cache.clear()

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
        found: dict[str, CommitView] = {}
        for sha in dict.fromkeys(shas):
            view = self._cache.get_fresh(sha)
            if view is not None:
                found[sha] = view
        missing = [s for s in dict.fromkeys(shas) if s not in found]
        for i in range(0, len(missing), 500):
            chunk = missing[i:i + 500]
            marks = ",".join("?" * len(chunk))
            rows: list[_CommitRow] = self.conn.execute(
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
                found[r[1]] = view = CommitView(*r, paths=tuple(paths[r[0]]))
                self._cache.put(r[1], view)
        return [found[s] for s in shas if s in found]

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
        view = self.commit(sha)
        return self.touched_many([view.sha])[view.sha]

    def touched_many(self, shas: Sequence[str]) -> dict[str, list[Touched]]:
        """The definitions each commit touched. A commit not done yet (see `ensure_touched`) is
        computed now when the History has its repository; without one, what is stored."""
        views = {c.id: c.sha for c in self.commits(shas)}
        out: dict[str, list[Touched]] = {s: [] for s in views.values()}
        ids = list(views)
        computed = self._computed_touched(ids) if self.repo is not None else {}
        for cid, *rest in store.rows_in(
                self.conn, "SELECT commit_id, path, name, qualname, kind, side FROM touched"
                " WHERE commit_id IN ({marks})", [cid for cid in ids if cid not in computed]):
            out[views[cid]].append(Touched(*rest))
        for cid, rows in computed.items():
            out[views[cid]] = list(rows)
        return out

    def ensure_touched(self, shas: Sequence[str] | None = None, *, jobs: int | None = None,
                       progress: Progress | None = None) -> int:
        """Compute the touched definitions of these commits (every commit when None) that are
        not done yet, in parallel, and store them: what a long job over all of history does
        first, so that its worker processes only read. A read-only or busy index keeps them
        in this History (forked workers inherit them). Returns how many were computed."""
        if self.repo is None:
            return 0
        ids = None if shas is None else [c.id for c in self.commits(shas)]
        from rcahook.codegraph import touched as tm
        from rcahook.errors import IndexLockedError, PermissionDeniedError

        db = tm.db_file(self.conn)
        if not self.read_only and not self.conn.in_transaction and db is not None:
            try:
                with store.index_lock(db, wait=tm.LAZY_WAIT):
                    return tm.update_touched(self.conn, self.repo, commits=ids, progress=progress, jobs=jobs)
            except (IndexLockedError, PermissionDeniedError):
                pass  # `rcahook index` is running, or the lock cannot be taken: compute them here
        todo = [cid for cid in tm.pending(self.conn, ids) if cid not in self._touched_here]
        self._computed_touched(todo, jobs=jobs)
        return len(todo)

    def _computed_touched(self, ids: list[int], *, jobs: int | None = None) -> dict[int, list[Touched]]:
        """Those of `ids` not done in the index, computed now (or earlier by this History)."""
        found = {cid: self._touched_here[cid] for cid in ids if cid in self._touched_here}
        from rcahook.codegraph import touched as tm

        todo = [cid for cid in tm.pending(self.conn, ids) if cid not in found] if len(found) < len(ids) else []
        if todo:
            assert self.repo is not None
            rows, stored = tm.touched_rows(self.conn, self.repo, todo, jobs=jobs)
            for cid, commit_rows in rows.items():
                found[cid] = [Touched(*r) for r in commit_rows]
                if not stored:
                    self._touched_here[cid] = found[cid]
        return found

    # -- the commit graph --------------------------------------------------------------------
    def node(self, sha: str) -> Node | None:
        """The commit's walk data, or None when it is not indexed (a parent beyond a shallow
        boundary or a graft, or a commit the index has not seen)."""
        node = self._nodes.get_fresh(sha)
        if node is not None:
            return node
        row = self.conn.execute("SELECT id FROM commits WHERE sha=?", (sha,)).fetchone()
        if row is None:
            return None
        self._load_block(row[0])
        return self._nodes.get(sha)

    def _load_block(self, first: int) -> None:
        rows: dict[str, tuple[int, int, int, list[str]]] = {}
        for sha, t, n, gen, shallow, parent in self.conn.execute(
                "SELECT c.sha, c.committer_time, c.n_parents, c.generation, c.shallow, p.parent_sha"
                " FROM commits c LEFT JOIN parents p ON p.commit_id = c.id WHERE c.id >= ? AND c.id < ?"
                " ORDER BY c.id, p.idx", (first, first + GRAPH_BLOCK)):
            # a shallow clone's boundary commit is a root to git (a merge among them too)
            entry = rows.setdefault(sha, (t, 0 if shallow else n, gen, []))
            if parent is not None and not shallow:
                entry[3].append(parent)
        for sha, (t, n, gen, parents) in rows.items():
            if sha not in self._nodes:
                self._nodes.put(sha, Node(t, n, gen, tuple(parents)))

    def parents(self, sha: str) -> tuple[str, ...]:
        node = self.node(sha)
        return node.parents if node else ()

    def rev_list(self, start: str, *, max_count: int | None = None, since: int | None = None,
                 no_merges: bool = True, hide: str | None = None) -> list[str]:
        """`git rev-list [--no-merges] [--max-count=N] [--since=T] start [--not hide]`, in git's
        own order.

        git's default walk pops commits from a queue ordered by committer date, ties in
        insertion order, and reaches a commit's parents only once it is popped; the same
        here, so windows match the protocol's `git rev-list` exactly. Parents are read from
        the index as the walk reaches them: the work and memory follow the window, not the
        history. A parent that is not indexed (shallow boundary, graft) ends that line, as
        it does for git.
        """
        first = self.node(start)
        if first is None:
            raise NotFoundError(f"commit {start} is not in the index; run `rcahook index`")
        tick = itertools.count()
        queue = [(-first.committer_time, next(tick), start, first)]
        seen = {start}
        out: list[str] = []
        while queue:
            neg_time, _, sha, node = heapq.heappop(queue)
            if since is not None and -neg_time < since:
                break
            if not no_merges or node.n_parents <= 1:
                out.append(sha)
                if max_count is not None and hide is None and len(out) >= max_count:
                    break
            for p in node.parents:
                if p not in seen:
                    seen.add(p)
                    parent = self.node(p)
                    if parent is not None:
                        heapq.heappush(queue, (-parent.committer_time, next(tick), p, parent))
        if hide is not None:
            if self.node(hide) is None:
                raise NotFoundError(f"commit {hide} is not in the index; run `rcahook index`")
            hidden = self.reachable(hide, out)
            out = [s for s in out if s not in hidden]
            if max_count is not None:
                out = out[:max_count]
        return out

    def reachable(self, tip: str, shas: Sequence[str]) -> set[str]:
        """Which of `shas` are reachable from `tip`: a walk that never goes below the smallest
        generation among them, so it stays within their stretch of history."""
        nodes = [self.node(s) for s in shas]
        floor = min((n.generation for n in nodes if n is not None), default=0)
        wanted = set(shas)
        found: set[str] = set()
        stack = [tip] if self.node(tip) is not None else []
        seen = set(stack)
        while stack and len(found) < len(wanted):
            sha = stack.pop()
            if sha in wanted:
                found.add(sha)
            for p in self.parents(sha):
                node = self.node(p)
                if p not in seen and node is not None and node.generation >= floor:
                    seen.add(p)
                    stack.append(p)
        return found

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """`git merge-base --is-ancestor`, over the index (a commit is its own ancestor)."""
        return ancestor in self.reachable(descendant, [ancestor])

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

    def _links_of_fixes(self, fixes: Iterable[str]) -> list[Link]:
        """links(), for these fixes only, in the same order (by the fix's author time, sha, seq)."""
        rows = list(store.rows_in(
            self.conn, "SELECT c.author_time, c.sha, l.culprit_sha, l.kind, l.ref, l.status, l.seq FROM links l"
            " JOIN commits c ON c.id = l.fix_id WHERE c.sha IN ({marks})", fixes))
        rows.sort(key=lambda r: (r[0], r[1], r[6]))
        return [Link(*r[1:]) for r in rows]

    def culprit_of(self, fixes: Iterable[str] | None = None) -> dict[str, str]:
        """fix sha -> culprit sha, by the protocol: the first culprit reference that resolves
        (reverts excluded). With `fixes`, for those commits only (a window reads its own links,
        not every link of the history), in the same order."""
        out: dict[str, str] = {}
        links = self.links() if fixes is None else self._links_of_fixes(fixes)
        for link in links:
            if link.kind not in ("fixes", "regression", "introduced"):
                continue
            if link.status == "resolved" and link.fix not in out:
                out[link.fix] = link.culprit  # type: ignore[assignment]  # a resolved link has its culprit
        return out


def resolve_commit(repo: Repo, index_path: Path, given: str, *, where: str = "the repository") -> str:
    """A full sha for what a responder or a pipeline gave: the index first, then git itself."""
    from rcahook.errors import RcahookError

    try:
        history = History.open(index_path)
    except RcahookError:
        history = None
    if history is not None:
        try:
            return history.resolve(given)
        except RcahookError:
            pass
        finally:
            history.close()
    try:
        return repo.resolve(given)
    except RcahookError:
        raise NotFoundError(f"commit {given!r} is not among the investigation's candidates, in the index or "
                            f"in {where}; check the sha (`git rev-parse <sha>`)") from None
