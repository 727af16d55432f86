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

import json
import multiprocessing
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rcahook import store
from rcahook.errors import RcahookError, RepositoryReadError
from rcahook.gitrepo import CommitRecord, Repo
from rcahook.links import ShaResolver, find_references
from rcahook.progress import Progress

BATCH = 128
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
    graph_files: int = 0
    graph_rev: str | None = None
    unavailable_changes: int = 0  # file changes of the new commits whose blobs are missing
    notes: list[str] = field(default_factory=list)


def _hunks_text(hunks) -> str:
    return ";".join(f"{h.old_start},{h.old_lines},{h.new_start},{h.new_lines}" for h in hunks)


def _rows(rec: CommitRecord) -> tuple:
    """A commit as plain tuples, ready for executemany (also what workers send back)."""
    added = sum(f.added for f in rec.files)
    deleted = sum(f.deleted for f in rec.files)
    commit = (
        rec.sha, rec.author.name, rec.author.email, rec.author.time, rec.author.offset,
        rec.committer.name, rec.committer.email, rec.committer.time, rec.committer.offset,
        rec.subject, rec.body, json.dumps(rec.trailers), len(rec.parents),
        len(rec.files), added, deleted, " ".join(rec.idents_added),
        " ".join(rec.idents_removed), int(rec.shallow), rec.code_lines,
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
    global _worker_repo
    path, shas = args
    try:
        if _worker_repo is None or _worker_repo.path != path:
            _worker_repo = Repo(path)
        return [_rows(_worker_repo.commit_record(sha)) for sha in shas]
    except RcahookError:
        raise
    except Exception as e:  # noqa: BLE001 (any error: what matters is that it crosses back)
        # whatever it is, it must cross back to the parent: a plain message always can
        raise RepositoryReadError(f"indexing {path} failed in a worker process: {type(e).__name__}: {e} "
                                  "(run with --jobs 1 for the full error; please report it)") from None


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


def _record_batches(repo: Repo, shas: Sequence[str], jobs: int) -> Iterator[list[tuple]]:
    if jobs <= 1 or len(shas) < PARALLEL_MIN:
        for chunk in _chunks(shas, BATCH):
            yield [_rows(repo.commit_record(sha)) for sha in chunk]
        return
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        yield from pool.map(_worker_rows, ((repo.path, c) for c in _chunks(shas, BATCH)))


def resolve_links(conn: sqlite3.Connection) -> tuple[int, int]:
    """Resolve pending (and previously unknown) prefixes against every indexed commit."""
    todo = conn.execute(
        "SELECT fix_id, seq, ref FROM links WHERE status IN ('pending', 'unknown')").fetchall()
    if todo:
        resolver = ShaResolver(sha for (sha,) in conn.execute("SELECT sha FROM commits"))
        updates = []
        for fix_id, seq, ref in todo:
            status, sha = resolver.resolve(ref)
            updates.append((status, sha, fix_id, seq))
        with store.transaction(conn):
            conn.executemany("UPDATE links SET status=?, culprit_sha=? WHERE fix_id=? AND seq=?", updates)
    total, unresolved = conn.execute(
        "SELECT COUNT(*), SUM(status != 'resolved') FROM links").fetchone()
    return total, unresolved or 0


def index_repository(repo: Repo, db_path: Path, *, revs: Sequence[str] = (), graph: bool = True,
                     graph_at: str | None = None, jobs: int | None = None, progress: Progress | None = None,
                     say: Callable[[str], None] = lambda msg: None) -> IndexResult:
    started = time.perf_counter()
    progress = progress or Progress(enabled=False)
    result = IndexResult(db_path=db_path, shallow=repo.is_shallow)
    with store.index_lock(db_path):
        conn = store.open_index(db_path, say=say)
        try:
            tips = [repo.resolve(r) for r in revs] if revs else [sha for _, sha in repo.default_tips()]
            done_tips = json.loads(store.get_meta(conn, "tips", "[]"))
            known = {sha for (sha,) in conn.execute("SELECT sha FROM commits")}
            todo = [sha for sha in repo.walk(tips, hide=done_tips) if sha not in known]
            jobs = jobs or min(os.cpu_count() or 1, 8)
            with progress.task("indexing commits", total=len(todo)) as advance:
                for batch in _record_batches(repo, todo, jobs):
                    with store.transaction(conn):
                        result.new_commits += _insert(conn, batch)
                    result.unavailable_changes += sum(c[-1] for _, _, changes, _ in batch for c in changes)
                    advance(len(batch))
            result.links_total, result.links_unresolved = resolve_links(conn)
            with store.transaction(conn):
                # every ancestor of these is indexed now: later walks stop there
                store.set_meta(conn, "tips", json.dumps(sorted(set(tips) | set(done_tips))))
                store.set_meta(conn, "repo", str(repo.path))
                store.set_meta(conn, "indexed_at", str(int(time.time())))
            if graph:
                from rcahook.codegraph import build, history
                result.touched_commits = history.update_touched(conn, repo, progress=progress, jobs=jobs)
                state = build.update_graph(conn, repo, graph_at or "HEAD", progress=progress)
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
