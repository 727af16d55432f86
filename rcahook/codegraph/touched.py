"""Which definitions each indexed commit touched, from its diff hunks and the parsed blobs.

The new side of a hunk names the definitions as they are after the commit, the old side as
they were before (so a deleted function counts too). Work is grouped by path and ordered
old to new, so a worker parses successive versions of one file in a row and tree-sitter
re-parses only the edited region; each blob version is parsed once (`blob_parse`), whatever
the commit or run. Results are written as they come; a commit is marked done when all its
files are, so a killed run resumes where it stopped.
"""
from __future__ import annotations

import sqlite3
import time
from collections import OrderedDict, defaultdict

from rcahook.codegraph.build import (
    PARALLEL_MIN_BLOBS,
    cached_blobs,
    pack_parse,
    read_source,
    repo_pool,
    unpack_parse,
    worker_repo,
)
from rcahook.codegraph.grammars import language_for
from rcahook.index import store
from rcahook.index.gitrepo import Repo
from rcahook.index.reader import parse_hunks
from rcahook.progress import Progress

_FLUSH_SECONDS = 2.0  # write what came back at least this often (what a kill -9 can lose)
_MEMO = 8  # definitions of the last few blobs: branches interleave versions, copies share them
_SHARED_MAX = 4  # a blob in at most this many paths ties their histories into one task
_TASK_MAX = 256  # changes per task

# (commit id, path, old path or None, hunks text, old blob, new blob): one file of one commit
_Change = tuple[int, str, str | None, str, str | None, str | None]
# (changes old -> new, {blob: cached parse, as blob_parse holds it})
_Task = tuple[list[_Change], dict[str, bytes | str]]


def _touched_in_task(task: _Task) -> tuple[list[int], int, list[tuple], list[tuple], int]:
    """(commit ids, changes, touched rows, new blob_parse rows, oversize blobs) for one task."""
    from rcahook.codegraph.parse import ParsedFile, definitions_touching, parse_source

    changes, cached = task
    repo = worker_repo()
    memo: OrderedDict[str, tuple] = OrderedDict()
    last_parsed: dict[str, str] = {}  # path -> blob of the parser's cached tree for it
    parses: list[tuple[str, str, bytes]] = []  # (blob, language, packed parse)
    oversize = 0

    def definitions(blob: str, path: str, hunks=None, previous: str | None = None) -> tuple:
        nonlocal oversize
        if blob in memo:
            memo.move_to_end(blob)
            return memo[blob]
        defs: tuple = ()
        if blob in cached:
            defs = ParsedFile.from_json(unpack_parse(cached[blob])).definitions
        else:
            data = read_source(repo, blob)
            if isinstance(data, str):
                oversize += data == "oversize"
            else:
                # the hunks lead from the previous version: only of use if that is the cached tree
                reuse = hunks if previous and last_parsed.get(path) == previous else None
                parsed = parse_source(path, data, with_references=False, hunks=reuse)
                last_parsed[path] = blob
                if parsed is not None:  # None only for a path of no known language: callers check first
                    defs = parsed.definitions
                    parses.append((blob, parsed.lang, pack_parse(parsed)))
        memo[blob] = defs
        if len(memo) > _MEMO:
            memo.popitem(last=False)
        return defs

    rows: list[tuple] = []
    for commit_id, path, old_path, hunks_text, old_blob, new_blob in changes:
        hunks = parse_hunks(hunks_text)
        before = old_path or path
        # old before new: the order in which the parser re-uses the previous tree
        old_defs = definitions(old_blob, before) if old_blob and language_for(before) else ()
        new_defs = (definitions(new_blob, path, hunks, old_blob if before == path else None)
                    if new_blob and language_for(path) else ())
        seen: set[str] = set()
        for side, defs, ranges in (("new", new_defs, [(h[2], h[3]) for h in hunks]),
                                   ("old", old_defs, [(h[0], h[1]) for h in hunks])):
            for d in definitions_touching(defs, ranges) if defs else ():
                if d.qualname not in seen:
                    seen.add(d.qualname)
                    rows.append((commit_id, path, d.name, d.qualname, d.kind, side))
    return list(dict.fromkeys(c[0] for c in changes)), len(changes), rows, parses, oversize


def _pending_changes(conn: sqlite3.Connection) -> tuple[list[int], list[_Change]]:
    # the commits still to do come from a partial index (store.WORK_INDEXES), then their
    # changes by key: an update after one commit reads that commit, not every change row
    todo = [cid for (cid,) in conn.execute("SELECT id FROM commits WHERE defs_done=0")]
    rows: list[tuple] = []
    for i in range(0, len(todo), 500):
        chunk = todo[i:i + 500]
        rows += conn.execute(
            "SELECT c.committer_time, ch.idx, ch.commit_id, ch.path, ch.old_path, ch.hunks, ch.old_blob, ch.new_blob"
            " FROM commits c JOIN changes ch ON ch.commit_id = c.id"
            # a change whose blobs are missing (partial clone) has nothing to parse
            f" WHERE c.id IN ({','.join('?' * len(chunk))}) AND ch.binary=0 AND ch.unavailable=0 AND ch.hunks != ''",
            chunk).fetchall()
    # Old to new: commit time, then ids (a run numbers its commits newest first).
    rows.sort(key=lambda r: (r[0], -r[2], r[1]))
    changes = [r[2:] for r in rows if language_for(r[3]) or (r[4] and language_for(r[4]))]
    return todo, changes


def _group(changes: list[_Change]) -> list[list[_Change]]:
    """Changes in tasks: a path's history, joined with the paths it was renamed from or shares
    blobs with (copies), so each version is parsed once, right after the one before it."""
    parent: dict[str, str] = {}

    def find(path: str) -> str:
        parent.setdefault(path, path)
        while parent[path] != path:
            parent[path] = parent[parent[path]]
            path = parent[path]
        return path

    paths_of: dict[str, set[str]] = defaultdict(set)
    for _, path, old_path, _, old_blob, new_blob in changes:
        find(path)
        if old_path:
            parent[find(old_path)] = find(path)
        for blob in (old_blob, new_blob):
            if blob:
                paths_of[blob].add(path)
    for paths in paths_of.values():
        if 1 < len(paths) <= _SHARED_MAX:  # an empty file's blob would tie everything together
            first, *rest = paths
            for other in rest:
                parent[find(other)] = find(first)
    groups: dict[str, list[_Change]] = defaultdict(list)
    for change in changes:
        groups[find(change[1])].append(change)
    # A long history in pieces: workers share it out, and a kill loses less. Each piece costs
    # one parse from scratch.
    return [group[i:i + _TASK_MAX] for group in groups.values() for i in range(0, len(group), _TASK_MAX)]


def _tasks(conn: sqlite3.Connection, groups: list[list[_Change]]) -> list[_Task]:
    blobs = {b for changes in groups for c in changes for b in c[4:] if b}
    have = sorted(cached_blobs(conn, blobs, full=False))
    data: dict[str, bytes | str] = {}
    for i in range(0, len(have), 500):
        chunk = have[i:i + 500]
        data.update(conn.execute(
            f"SELECT blob, data FROM blob_parse WHERE blob IN ({','.join('?' * len(chunk))})", chunk))
    tasks = [(changes, {b: data[b] for c in changes for b in c[4:] if b in data}) for changes in groups]
    # Longest first: one long file history should not be what the last worker is left with.
    tasks.sort(key=lambda t: -len(t[0]))
    return tasks


def update_touched(conn: sqlite3.Connection, repo: Repo, *, progress: Progress | None = None,
                   jobs: int | None = None) -> int:
    """Record the touched definitions of every commit not done yet; returns how many commits."""
    progress = progress or Progress(enabled=False)
    with store.transaction(conn):
        # rows of a run killed half-way through a commit: that commit is redone whole
        conn.execute("DELETE FROM touched WHERE commit_id IN (SELECT id FROM commits WHERE defs_done=0)")
    todo, changes = _pending_changes(conn)
    if not todo:
        return 0
    groups = _group(changes)
    remaining: dict[int, int] = defaultdict(int)  # commit id -> tasks still to do
    for group in groups:
        for cid in {c[0] for c in group}:
            remaining[cid] += 1
    tasks = _tasks(conn, groups)
    n_changes = len(changes)
    if n_changes < PARALLEL_MIN_BLOBS:
        jobs = 1
    rows: list[tuple] = []
    parses: list[tuple] = []
    done = [cid for cid in todo if cid not in remaining]
    oversize = 0

    def flush() -> None:
        with store.transaction(conn):
            conn.executemany("INSERT OR IGNORE INTO blob_parse VALUES (?, ?, 0, ?)", parses)
            conn.executemany("INSERT INTO touched VALUES (?, ?, ?, ?, ?, ?)", rows)
            conn.executemany("UPDATE commits SET defs_done=1 WHERE id=?", [(c,) for c in done])
            if oversize:
                total = int(store.get_meta(conn, "touched_oversize_blobs", "0")) + oversize
                store.set_meta(conn, "touched_oversize_blobs", str(total))
        rows.clear()
        parses.clear()
        done.clear()

    last_flush = time.monotonic()
    with repo_pool(repo, jobs=jobs, tasks=len(tasks)) as pool, \
            progress.task("recording touched definitions", total=n_changes) as advance:
        for commit_ids, task_changes, task_rows, task_parses, task_oversize in pool.map(
                _touched_in_task, tasks, ordered=False):
            rows.extend(task_rows)
            parses.extend(task_parses)
            oversize += task_oversize
            for cid in commit_ids:
                remaining[cid] -= 1
                if not remaining[cid]:
                    done.append(cid)
            advance(task_changes)
            if time.monotonic() - last_flush > _FLUSH_SECONDS:
                flush()
                oversize = 0
                last_flush = time.monotonic()
        flush()
    return len(todo)
