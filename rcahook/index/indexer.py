"""`rcahook index`: walk history into the SQLite index, incrementally and resumably.

Each batch of commits is written in one transaction, so a Ctrl-C or kill -9 leaves a
consistent database; the next run walks again from the recorded tips, skips the commits
already present and carries on. Diffs are computed in worker processes (libgit2's patch
generation is most of the cost), rows are written by this process alone.

A file change whose blobs this clone lacks (a partial clone) is recorded with its path and
status and marked unavailable; nothing is fetched. Workers send back rcahook's own errors
only: a library exception may not survive pickling on its way back.
"""
from __future__ import annotations

import heapq
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rcahook.index import store
from rcahook.index.gitrepo import CommitRecord, Repo
from rcahook.index.links import find_references
from rcahook.pool import WorkerPool, default_jobs
from rcahook.progress import Progress

BATCH = 512  # commits per transaction and per `git diff-tree` run (each starts a git process)
# Newest commits whose touched definitions `rcahook index` records at once: the backtest
# protocol's window (docs/benchmarks.md), which also covers the default investigation (14
# days) of most repositories; a window reaching older ones computes them then, and stores
# them. 1000 made the first index of a 7,000-commit repository 3.1x `git log --numstat`.
TOUCHED_DEPTH = 500
PARALLEL_MIN = 400  # below this many new commits, a worker pool costs more than it saves


@dataclass
class IndexResult:
    db_path: Path
    new_commits: int = 0
    total_commits: int = 0
    links_total: int = 0
    links_unresolved: int = 0
    shallow: bool = False
    seconds: float = 0.0
    touched_commits: int = 0
    touched_pending: int = 0  # commits whose touched definitions wait for a reader (--touched-depth)
    graph_files: int = 0
    graph_rev: str | None = None
    unavailable_changes: int = 0  # file changes of the new commits whose blobs are missing
    notes: list[str] = field(default_factory=list)


def _hunks_text(hunks) -> str:
    return ";".join(f"{h.old_start},{h.old_lines},{h.new_start},{h.new_lines}" for h in hunks)


def _rows(rec: CommitRecord, boundary: frozenset[str] = frozenset()) -> tuple:
    """A commit as plain tuples, ready for executemany (also what workers send back).
    `boundary`: the shallow clone's boundary commits, which git reads as roots (a merge among
    them too): marked shallow, so walks over the index see what git sees."""
    added = sum(f.added for f in rec.files)
    deleted = sum(f.deleted for f in rec.files)
    commit = (
        rec.sha, rec.author.name, rec.author.email, rec.author.time, rec.author.offset,
        rec.committer.name, rec.committer.email, rec.committer.time, rec.committer.offset,
        rec.subject, rec.body, json.dumps(rec.trailers), len(rec.parents),
        len(rec.files), added, deleted, " ".join(rec.idents_added),
        " ".join(rec.idents_removed), int(rec.shallow or rec.sha in boundary), rec.code_lines,
    )
    changes = [
        (i, f.path, f.old_path, f.status, f.added, f.deleted, int(f.binary),
         _hunks_text(f.hunks), f.old_blob, f.new_blob, int(f.unavailable))
        for i, f in enumerate(rec.files)
    ]
    links = [(r.seq, r.kind, r.ref) for r in find_references(rec.subject, rec.body)]
    return commit, rec.parents, changes, links


_worker_repo: Repo | None = None


def _worker_rows(args: tuple[str, Sequence[str]]) -> list[tuple]:
    """In a worker process (the pool turns its errors into ones that cross back)."""
    global _worker_repo
    path, shas = args
    if _worker_repo is None or _worker_repo.path != path:
        _worker_repo = Repo(path)
    boundary = _worker_repo.shallow_boundary()
    return [_rows(rec, boundary) for rec in _worker_repo.commit_records(shas)]


def _insert(conn: sqlite3.Connection, batch: Iterable[tuple]) -> int:
    n = 0
    for commit, parents, changes, links in batch:
        cur = conn.execute(
            "INSERT OR IGNORE INTO commits (sha, author_name, author_email, author_time, author_offset,"
            " committer_name, committer_email, committer_time, committer_offset, subject, body,"
            " trailers, n_parents, n_files, added, deleted, idents_added, idents_removed, shallow,"
            " code_lines) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", commit)
        if cur.rowcount == 0:
            continue
        cid = cur.lastrowid
        conn.executemany("INSERT INTO parents VALUES (?,?,?)",
                         [(cid, i, p) for i, p in enumerate(parents)])
        conn.executemany("INSERT INTO changes VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                         [(cid, *c) for c in changes])
        conn.executemany("INSERT INTO links VALUES (?,?,?,?,NULL,'pending')",
                         [(cid, *link) for link in links])
        n += 1
    return n


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _missing_parents(conn: sqlite3.Connection, shas: Sequence[str]) -> int:
    """How many parents named by these commits are not indexed."""
    n = 0
    for chunk in _chunks(shas, 500):
        n += conn.execute(
            f"SELECT COUNT(*) FROM parents p JOIN commits c ON c.id = p.commit_id"
            f" LEFT JOIN commits pc ON pc.sha = p.parent_sha"
            f" WHERE c.sha IN ({','.join('?' * len(chunk))}) AND pc.id IS NULL", list(chunk)).fetchone()[0]
    return n


def _record_pool(repo: Repo, shas: Sequence[str], jobs: int) -> WorkerPool:
    """Workers for the diffs, started now: before the progress bar's thread (see rcahook.pool)."""
    return WorkerPool(jobs if len(shas) >= PARALLEL_MIN else 1, what=f"indexing {repo.path}")


def _record_batches(repo: Repo, shas: Sequence[str], pool: WorkerPool) -> Iterator[list[tuple]]:
    if not pool.parallel:
        for chunk in _chunks(shas, BATCH):
            yield [_rows(rec, repo.shallow_boundary()) for rec in repo.commit_records(chunk)]
        return
    yield from pool.map(_worker_rows, ((repo.path, c) for c in _chunks(shas, BATCH)))


def _lookup(conn: sqlite3.Connection, prefix: str) -> tuple[str, str | None]:
    """What ShaResolver says of `prefix` against every indexed commit, by the sha index."""
    prefix = prefix.lower()
    rows = conn.execute("SELECT sha FROM commits WHERE sha >= ? AND sha < ? LIMIT 2",
                        (prefix, prefix + "g")).fetchall()
    if len(rows) == 1:
        return "resolved", rows[0][0]
    return ("ambiguous" if rows else "unknown"), None


def resolve_links(conn: sqlite3.Connection, new_shas: Sequence[str] | None = None) -> tuple[int, int]:
    """Resolve the pending references, and those previously unknown that one of `new_shas`
    (the commits this run added) may now answer; None: every unknown one.

    Commits are never removed from the index, so a resolved or ambiguous reference stays
    so: only new commits can change an unknown one, and only when it is a prefix of one.
    """
    todo = conn.execute("SELECT fix_id, seq, ref FROM links WHERE status = 'pending'").fetchall()
    unknown = conn.execute("SELECT COUNT(*) FROM links WHERE status = 'unknown'").fetchone()[0]
    if unknown and (new_shas is None or len(new_shas) * 34 > unknown):
        todo += conn.execute("SELECT fix_id, seq, ref FROM links WHERE status = 'unknown'").fetchall()
    elif unknown and new_shas:
        # the references (7 to 40 hex digits) that are prefixes of a new sha, by the ref index
        for sha in new_shas:
            prefixes = [sha[:n] for n in range(4, 41)]
            todo += conn.execute(
                f"SELECT fix_id, seq, ref FROM links WHERE status = 'unknown'"
                f" AND ref IN ({','.join('?' * len(prefixes))})", prefixes).fetchall()
    if todo:
        updates = [(*_lookup(conn, ref), fix_id, seq) for fix_id, seq, ref in dict.fromkeys(todo)]
        with store.transaction(conn):
            conn.executemany("UPDATE links SET status=?, culprit_sha=? WHERE fix_id=? AND seq=?", updates)
    total, unresolved = conn.execute(
        "SELECT COUNT(*), SUM(status != 'resolved') FROM links").fetchone()
    return total, unresolved or 0


def _new_only(conn: sqlite3.Connection, shas: Sequence[str]) -> list[str]:
    """The shas not in the index yet, in the order given (a query per chunk, not every sha
    of the index in memory)."""
    out: list[str] = []
    for chunk in _chunks(shas, 500):
        have = {sha for (sha,) in conn.execute(
            f"SELECT sha FROM commits WHERE sha IN ({','.join('?' * len(chunk))})", list(chunk))}
        out += [sha for sha in chunk if sha not in have]
    return out


def _new_commits(repo: Repo, conn: sqlite3.Connection, tips: Sequence[str], done_tips: Sequence[str], *,
                 complete: bool) -> list[str]:
    """The commits reachable from `tips` that the index lacks, children before parents.

    libgit2's walk hiding the tips of the last run costs as much as the history when commit
    times go backwards (6 s for one new commit at 1M commits): it walks in date order until
    it is sure. When every indexed commit's ancestors are indexed too (`complete`: the last
    run finished, and no earlier interrupted one left a commit without its parents), the
    walk instead follows parents from the tips and stops at indexed commits: work in
    proportion to what is new."""
    if not done_tips or not complete:
        return _new_only(conn, list(repo.walk(tips, hide=done_tips)))
    parents_of: dict[str, tuple[str, ...]] = {}
    stack = list(dict.fromkeys(tips))
    while stack:
        sha = stack.pop()
        if sha in parents_of or conn.execute("SELECT 1 FROM commits WHERE sha = ?", (sha,)).fetchone():
            continue
        parents = repo.walk_parents(sha)
        parents_of[sha] = parents
        stack.extend(parents)
    return _children_first(parents_of, repo)


def _children_first(parents_of: dict[str, tuple[str, ...]], repo: Repo) -> list[str]:
    """These commits ordered as libgit2's topological walk orders them: a commit before its
    parents, the most recently committed first among those ready."""
    waiting = dict.fromkeys(parents_of, 0)  # commit -> children in the set not yet emitted
    for parents in parents_of.values():
        for p in parents:
            if p in waiting:
                waiting[p] += 1
    ready = [(-repo.commit_time(sha), sha) for sha, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    out: list[str] = []
    while ready:
        _, sha = heapq.heappop(ready)
        out.append(sha)
        for p in parents_of[sha]:
            if p in waiting:
                waiting[p] -= 1
                if waiting[p] == 0:
                    heapq.heappush(ready, (-repo.commit_time(p), p))
    return out


def _orphans(conn: sqlite3.Connection, repo: Repo) -> bool:
    """Whether an indexed commit has a parent the repository has but the index lacks (what an
    interrupted run leaves until a later one walks through it)."""
    missing = conn.execute("SELECT DISTINCT p.parent_sha FROM parents p LEFT JOIN commits c ON c.sha = p.parent_sha"
                           " WHERE c.id IS NULL").fetchall()
    return any(repo.has_commit(sha) for (sha,) in missing)


def fill_generations(conn: sqlite3.Connection) -> int:
    """Give every commit without one its generation number (see store.SCHEMA).

    The commits of one run were inserted children first, so the newest rows, taken from the
    highest id down, mostly come after their parents; one whose indexed parent has no number
    yet waits for the next pass. Returns how many commits were numbered.
    """
    done = 0
    while True:
        ids = [cid for (cid,) in conn.execute("SELECT id FROM commits WHERE generation = 0 ORDER BY id DESC")]
        if not ids:
            return done
        progressed = 0
        with store.transaction(conn):
            for cid in ids:
                gens = [g for (g,) in conn.execute(
                    "SELECT c.generation FROM parents p JOIN commits c ON c.sha = p.parent_sha"
                    " WHERE p.commit_id = ?", (cid,))]
                if 0 in gens:
                    continue  # a parent still to number: next pass
                conn.execute("UPDATE commits SET generation = ? WHERE id = ?", (1 + max(gens, default=0), cid))
                progressed += 1
        done += progressed
        if not progressed:  # cannot happen in a git history (no cycles); never loop forever
            conn.execute("UPDATE commits SET generation = 1 WHERE generation = 0")
            return done


def _renumber_if_parents_arrived(conn: sqlite3.Connection, new_shas: Sequence[str]) -> bool:
    """A commit indexed before its parent (shallow boundary, then `git fetch --deepen`):
    its generation was counted without that parent, so number everything again."""
    for chunk in _chunks(new_shas, 500):
        hit = conn.execute(
            f"SELECT 1 FROM parents p JOIN commits c ON c.id = p.commit_id WHERE c.generation > 0"
            f" AND p.parent_sha IN ({','.join('?' * len(chunk))}) LIMIT 1", list(chunk)).fetchone()
        if hit:
            with store.transaction(conn):
                conn.execute("UPDATE commits SET generation = 0")
            return True
    return False


def _forget_deepened(conn: sqlite3.Connection, repo: Repo) -> bool:
    """Drop the rows of commits indexed at a shallow boundary whose parents the repository now
    has: recorded without their parents' trees, they are indexed again as new. True if any."""
    stale = []
    for (cid,) in conn.execute("SELECT id FROM commits WHERE shallow = 1").fetchall():
        parents = [p for (p,) in conn.execute("SELECT parent_sha FROM parents WHERE commit_id = ?", (cid,))]
        if parents and all(repo.has_commit(p) for p in parents):
            stale.append(cid)
    if not stale:
        return False
    with store.transaction(conn):
        for table, column in (("parents", "commit_id"), ("changes", "commit_id"), ("links", "fix_id"),
                              ("touched", "commit_id"), ("commits", "id")):
            conn.executemany(f"DELETE FROM {table} WHERE {column} = ?", [(cid,) for cid in stale])
        conn.execute("UPDATE commits SET generation = 0")  # counted without the parents that arrived
    return True


MAX_TIPS = 256  # tips remembered to hide from the next walk: current ones first


def _next_tips(repo: Repo, tips: Sequence[str], done_tips: Sequence[str]) -> list[str]:
    """The tips to hide next time: these, then earlier ones git still has (a deleted or
    rewritten branch's old tip drops out once git drops it), at most MAX_TIPS."""
    out = list(dict.fromkeys(tips))
    for sha in done_tips:
        if len(out) >= MAX_TIPS:
            break
        if sha not in out and repo.has_commit(sha):
            out.append(sha)
    return out


def touched_now(conn: sqlite3.Connection, depth: int | None, new_shas: Sequence[str] | None = None
                ) -> list[int] | None:
    """The commits (ids) whose touched definitions an index records at once: the `depth`
    newest, and the culprits that links name (the risk scan learns from those without a
    repository at hand); None: every commit. The others wait for a reader that needs them
    (History.touched_many): over a long history most are never asked for."""
    from rcahook.codegraph import touched

    if depth is None:
        return None
    if not depth:
        return []
    newest = touched.newest_commits(conn, depth) or []
    if store.get_meta(conn, "culprits_touched") == "1":
        # every culprit named before is done (index_repository records it): only links of the
        # new commits, or resolving to them, can name a new one; without their list, those of
        # the `depth` newest (59k culprits at 1M: 0.3 s a run otherwise)
        if new_shas is None:
            new_shas = [sha for (sha,) in store.rows_in(conn, "SELECT sha FROM commits WHERE id IN ({marks})", newest)]
        return newest + touched.culprit_commits(conn, new_shas)
    return newest + touched.culprit_commits(conn)


def index_repository(repo: Repo, db_path: Path, *, revs: Sequence[str] = (), graph: bool = True,
                     graph_at: str | None = None, jobs: int | None = None, progress: Progress | None = None,
                     say: Callable[[str], None] = lambda msg: None,
                     touched_depth: int | None = TOUCHED_DEPTH) -> IndexResult:
    """Index new commits; with `graph`, the touched definitions of the `touched_depth` newest
    (None: all; see touched_now) and the code graph at `graph_at`."""
    started = time.perf_counter()
    progress = progress or Progress(enabled=False)
    result = IndexResult(db_path=db_path, shallow=repo.is_shallow)
    with store.index_lock(db_path):
        conn = store.open_index(db_path, say=say)
        try:
            tips = [repo.resolve(r) for r in revs] if revs else [sha for _, sha in repo.default_tips()]
            done_tips = json.loads(store.get_meta(conn, "tips", "[]"))
            if _forget_deepened(conn, repo):
                say("the shallow boundary moved (git fetch --deepen/--unshallow): re-reading the commits "
                    "that were at it, and walking from the tips again")
                done_tips = []  # the old tips hide the history that just arrived
            complete = store.get_meta(conn, "walk_complete") == "1"
            todo = _new_commits(repo, conn, tips, done_tips, complete=complete)
            with store.transaction(conn):
                store.set_meta(conn, "walk_complete", "0")  # until this run has indexed all of it
            jobs = jobs or default_jobs()
            with _record_pool(repo, todo, jobs) as pool, \
                    progress.task("indexing commits", total=len(todo)) as advance:
                for batch in _record_batches(repo, todo, pool):
                    with store.transaction(conn):
                        result.new_commits += _insert(conn, batch)
                    result.unavailable_changes += sum(c[-1] for _, _, changes, _ in batch for c in changes)
                    advance(len(batch))
            _renumber_if_parents_arrived(conn, todo)
            fill_generations(conn)
            missing = 0 if repo.is_shallow else _missing_parents(conn, todo)  # shallow: its own note below
            if missing:
                result.notes.append(
                    f"{missing} parent commit(s) of the new commits are not in the repository (a shallow "
                    "boundary or grafts): history stops there, as it does for git; `git fetch --unshallow` "
                    "(or removing the grafts) and `rcahook index` again brings the rest in")
            result.links_total, result.links_unresolved = resolve_links(conn, todo)
            with store.transaction(conn):
                # every ancestor of these is indexed now: later walks stop there
                store.set_meta(conn, "tips", json.dumps(_next_tips(repo, tips, done_tips)))
                # after an interrupted run (or on an index older than this flag), only once no
                # indexed commit lacks a parent the repository has (see _new_commits)
                store.set_meta(conn, "walk_complete", "1" if complete or not _orphans(conn, repo) else "0")
                store.set_meta(conn, "repo", str(repo.path))
                store.set_meta(conn, "indexed_at", str(int(time.time())))
            if graph:
                from rcahook.codegraph import build
                from rcahook.codegraph import touched as history
                graph_rev = graph_at or "HEAD"
                result.touched_commits = history.update_touched(
                    conn, repo, commits=touched_now(conn, touched_depth, todo), progress=progress, jobs=jobs,
                    full=build.graph_blobs_wanted(conn, repo, graph_rev))
                if touched_depth:  # the culprits are done (update_touched returns when all are)
                    with store.transaction(conn):
                        store.set_meta(conn, "culprits_touched", "1")
                result.touched_pending = conn.execute("SELECT COUNT(*) FROM commits WHERE defs_done=0").fetchone()[0]
                state = build.update_graph(conn, repo, graph_rev, progress=progress)
                result.graph_rev, result.graph_files = state.rev, state.files
            result.total_commits = conn.execute("SELECT COUNT(*) FROM commits").fetchone()[0]
            if repo.is_shallow:
                result.notes.append(
                    "shallow clone: indexed what is there; history beyond the shallow boundary is "
                    "missing (run `git fetch --unshallow` for all of it)")
        finally:
            conn.close()
    result.seconds = time.perf_counter() - started
    return result
