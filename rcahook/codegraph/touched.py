"""Which definitions each indexed commit touched, from its diff hunks and the parsed blobs.

The new side of a hunk names the definitions as they are after the commit, the old side as
they were before (so a deleted function counts too). Work is grouped by path and ordered
old to new, so a worker parses successive versions of one file in a row and tree-sitter
re-parses only the edited region; each blob version is parsed once (`blob_parse`), whatever
the commit or run. Results are written as they come; a commit is marked done when all its
files are, so a killed run resumes where it stopped.

`rcahook index` does the newest commits only (`--touched-depth`); a reader that needs an
older one computes it then (`touched_rows`, through History.touched_many and
risk.facts.load_facts) and stores it: a first index does not parse every version of every
file, and each commit is still parsed once.
"""
from __future__ import annotations

import sqlite3
import time
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from rcahook.codegraph.build import (
    PARALLEL_MIN_BLOBS,
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
# (changes old -> new, {blob: cached parse, as blob_parse holds it}, {blob: language} of the
# blobs to parse in full (references too) for the code graph, [(path, blob)] that only the graph wants)
_Task = tuple[list[_Change], dict[str, bytes | str], dict[str, str], list[tuple[str, str]]]
_GRAPH_CHUNK = 16  # graph files per task, for those no commit of the pass reaches


def _touched_in_task(task: _Task) -> tuple[list[int], int, list[tuple], list[tuple], int]:
    """(commit ids, changes, touched rows, new blob_parse rows, oversize blobs) for one task."""
    from rcahook.codegraph.parse import ParsedFile, Spans, definitions_touching, parse_source, spans

    changes, cached, full, graph_only = task
    repo = worker_repo()
    memo: OrderedDict[str, Spans | None] = OrderedDict()  # blob -> its definitions (None: none)
    last_parsed: dict[str, str] = {}  # path -> blob of the parser's cached tree for it
    parses: list[tuple[str, str, int, bytes]] = []  # (blob, language, full, packed parse)
    oversize = 0

    def definitions(blob: str, path: str, hunks=None, previous: str | None = None) -> Spans | None:
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
                # a blob the code graph wants whole (references too): read from the tree at hand
                # here, instead of parsed again from nothing by update_graph
                whole = full.get(blob) == language_for(path)  # as the graph's path reads it
                parsed = parse_source(path, data, with_references=whole, hunks=reuse)
                last_parsed[path] = blob
                if parsed is not None:  # None only for a path of no known language: callers check first
                    defs = parsed.definitions
                    parses.append((blob, parsed.lang, int(whole), pack_parse(parsed)))
        memo[blob] = found = spans(defs) if defs else None
        if len(memo) > _MEMO:
            memo.popitem(last=False)
        return found

    rows: list[tuple] = []
    for commit_id, path, old_path, hunks_text, old_blob, new_blob in changes:
        hunks = parse_hunks(hunks_text)
        before = old_path or path
        # old before new: the order in which the parser re-uses the previous tree
        old_defs = definitions(old_blob, before) if old_blob and language_for(before) else None
        new_defs = (definitions(new_blob, path, hunks, old_blob if before == path else None)
                    if new_blob and language_for(path) else None)
        seen: set[str] = set()
        for side, defs, ranges in (("new", new_defs, [(h[2], h[3]) for h in hunks]),
                                   ("old", old_defs, [(h[0], h[1]) for h in hunks])):
            for d in definitions_touching(defs, ranges) if defs else ():
                if d.qualname not in seen:
                    seen.add(d.qualname)
                    rows.append((commit_id, path, d.name, d.qualname, d.kind, side))
    for path, blob in graph_only:
        data = read_source(repo, blob)
        parsed = None if isinstance(data, str) else parse_source(path, data)  # else build says why
        if parsed is not None:
            parses.append((blob, parsed.lang, 1, pack_parse(parsed)))
    return list(dict.fromkeys(c[0] for c in changes)), len(changes), rows, parses, oversize


def _pending_changes(conn: sqlite3.Connection, todo: list[int]) -> list[_Change]:
    # the commits still to do come from a partial index (store.WORK_INDEXES), then their
    # changes by key: an update after one commit reads that commit, not every change row
    rows = list(store.rows_in(
        conn,
        "SELECT c.committer_time, ch.idx, ch.commit_id, ch.path, ch.old_path, ch.hunks, ch.old_blob, ch.new_blob"
        " FROM commits c JOIN changes ch ON ch.commit_id = c.id"
        # a change whose blobs are missing (partial clone) has nothing to parse
        " WHERE c.id IN ({marks}) AND ch.binary=0 AND ch.unavailable=0 AND ch.hunks != ''", todo))
    # Old to new: commit time, then ids (a run numbers its commits newest first).
    rows.sort(key=lambda r: (r[0], -r[2], r[1]))
    return [r[2:] for r in rows if language_for(r[3]) or (r[4] and language_for(r[4]))]


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


def _tasks(conn: sqlite3.Connection, groups: list[list[_Change]], full: Mapping[str, str]) -> list[_Task]:
    blobs = {b for changes in groups for c in changes for b in c[4:] if b}
    data: dict[str, bytes | str] = dict(store.rows_in(
        conn, "SELECT blob, data FROM blob_parse WHERE blob IN ({marks})", sorted(blobs)))
    lang = {blob: language_for(path) or "" for blob, path in full.items()}
    tasks: list[_Task] = [(changes, {b: data[b] for c in changes for b in c[4:] if b in data},
                           {b: lang[b] for c in changes for b in c[4:] if b in lang and b not in data}, [])
                          for changes in groups]
    # Longest first: one long file history should not be what the last worker is left with.
    tasks.sort(key=lambda t: -len(t[0]))
    # The graph's files no commit here reaches: at the end of the task holding the latest
    # versions of their path (re-parsed from the last of them, a line diff apart: 4 to 6 times
    # cheaper than from nothing), the others last, in small tasks that fill the workers' tails.
    # The graph then finds every file parsed (one reached through a commit could still be
    # under another path's language: the graph parses those itself).
    reached = {blob for task in tasks for blob in task[2]}
    latest = {change[1]: task for task in tasks for change in task[0]}  # pieces run old to new
    rest = []
    for blob, path in sorted(full.items(), key=lambda item: item[1]):
        if blob in reached:
            continue
        if path in latest:
            latest[path][3].append((path, blob))
        else:
            rest.append((path, blob))
    tasks += [([], {}, {}, rest[i:i + _GRAPH_CHUNK]) for i in range(0, len(rest), _GRAPH_CHUNK)]
    return tasks


def pending(conn: sqlite3.Connection, commits: Iterable[int] | None) -> list[int]:
    """The commits not done yet: all of them, or those of `commits` (ids)."""
    if commits is None:
        return [cid for (cid,) in conn.execute("SELECT id FROM commits WHERE defs_done=0")]
    return sorted(cid for (cid,) in store.rows_in(
        conn, "SELECT id FROM commits WHERE id IN ({marks}) AND defs_done=0", commits))


def newest_commits(conn: sqlite3.Connection, depth: int | None) -> list[int] | None:
    """The ids of the `depth` newest commits (by generation, then committer time): the ones
    `rcahook index --touched-depth` does now; None for all. The newest of the whole history,
    not the newest not done: an update after a few new commits does those few, not another
    slice of old history."""
    if depth is None:
        return None
    if depth <= 0:
        return []
    return [cid for (cid,) in conn.execute(
        "SELECT id FROM commits ORDER BY generation DESC, committer_time DESC, id LIMIT ?", (depth,))]


def culprit_commits(conn: sqlite3.Connection, among: Sequence[str] | None = None) -> list[int]:
    """The commits that resolved culprit links name, not done yet: the risk scan learns what each touched
    (risk.state.history_state, which reads them without a repository), however old. With
    `among` (shas), only the links these commits make or that name one of them."""
    sql = ("SELECT DISTINCT c.id FROM links l JOIN commits c ON c.sha = l.culprit_sha"
           " WHERE l.status = 'resolved' AND c.defs_done = 0")
    if among is None:
        return [cid for (cid,) in conn.execute(sql)]
    by_fix = store.rows_in(conn, sql + " AND l.fix_id IN (SELECT id FROM commits WHERE sha IN ({marks}))", among)
    by_culprit = store.rows_in(conn, sql + " AND l.culprit_sha IN ({marks})", among)
    return sorted({cid for (cid,) in [*by_fix, *by_culprit]})


def _computed(conn: sqlite3.Connection, repo: Repo, todo: list[int], *, jobs: int | None,
              progress: Progress, full: Mapping[str, str] | None = None,
              ) -> Iterator[tuple[list[int], list[tuple], list[tuple], int]]:
    """(commits now complete, touched rows, new blob_parse rows, oversize blobs), as tasks come back."""
    changes = _pending_changes(conn, todo)
    groups = _group(changes)
    remaining: dict[int, int] = defaultdict(int)  # commit id -> tasks still to do
    for group in groups:
        for cid in {c[0] for c in group}:
            remaining[cid] += 1
    tasks = _tasks(conn, groups, full or {})
    if len(changes) + len(full or ()) < PARALLEL_MIN_BLOBS:
        jobs = 1
    yield [cid for cid in todo if cid not in remaining], [], [], 0  # nothing to parse: done already
    with repo_pool(repo, jobs=jobs, tasks=len(tasks)) as pool, \
            progress.task("recording touched definitions", total=len(changes)) as advance:
        for commit_ids, task_changes, task_rows, task_parses, task_oversize in pool.map(
                _touched_in_task, tasks, ordered=False):
            done = []
            for cid in commit_ids:
                remaining[cid] -= 1
                if not remaining[cid]:
                    done.append(cid)
            yield done, task_rows, task_parses, task_oversize
            advance(task_changes)


def update_touched(conn: sqlite3.Connection, repo: Repo, *, commits: Iterable[int] | None = None,
                   progress: Progress | None = None, jobs: int | None = None,
                   full: Mapping[str, str] | None = None) -> int:
    """Record the touched definitions of every commit not done yet, or of those among
    `commits` (ids); returns how many commits.

    `full` ({blob: path}, build.graph_blobs_wanted): the files the code graph is about to
    parse, parsed here too and cached with their references, so that the graph finds them
    done: those a commit's diff reaches from the tree at hand (re-parsed from the version
    before), the others alongside, in the same workers."""
    progress = progress or Progress(enabled=False)
    todo = pending(conn, commits)
    with store.transaction(conn):
        # rows of a run killed half-way through a commit: that commit is redone whole
        if commits is None:
            conn.execute("DELETE FROM touched WHERE commit_id IN (SELECT id FROM commits WHERE defs_done=0)")
        else:
            _delete_rows(conn, todo)
    if not todo:
        return 0
    rows: list[tuple] = []
    parses: list[tuple] = []
    done: list[int] = []
    oversize = 0

    def flush() -> None:
        with store.transaction(conn):
            _write(conn, rows, parses, done, oversize)
        rows.clear()
        parses.clear()
        done.clear()

    last_flush = time.monotonic()
    for task_done, task_rows, task_parses, task_oversize in _computed(conn, repo, todo, jobs=jobs,
                                                                      progress=progress, full=full):
        rows.extend(task_rows)
        parses.extend(task_parses)
        done.extend(task_done)
        oversize += task_oversize
        if time.monotonic() - last_flush > _FLUSH_SECONDS:
            flush()
            oversize = 0
            last_flush = time.monotonic()
    flush()
    return len(todo)


def _delete_rows(conn: sqlite3.Connection, ids: list[int]) -> None:
    for _ in store.rows_in(conn, "DELETE FROM touched WHERE commit_id IN ({marks})", ids):
        pass  # a DELETE returns no rows: iterating runs each chunk


def _write(conn: sqlite3.Connection, rows: list[tuple], parses: list[tuple], done: list[int], oversize: int) -> None:
    # a full parse replaces a definitions-only one, never the other way round
    conn.executemany("INSERT INTO blob_parse VALUES (?, ?, ?, ?) ON CONFLICT(blob) DO UPDATE"
                     " SET full = excluded.full, data = excluded.data WHERE excluded.full > blob_parse.full",
                     parses)
    conn.executemany("INSERT INTO touched VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.executemany("UPDATE commits SET defs_done=1 WHERE id=?", [(c,) for c in done])
    if oversize:
        total = int(store.get_meta(conn, "touched_oversize_blobs", "0")) + oversize
        store.set_meta(conn, "touched_oversize_blobs", str(total))


# (path, name, qualname, kind, side): a touched row without its commit id
TouchedRow = tuple[str, str, str, str, str]
LAZY_WAIT = 0.5  # seconds a reader waits for another writer before it keeps what it computed to itself


def touched_rows(conn: sqlite3.Connection, repo: Repo, commits: Iterable[int], *,
                 jobs: int | None = None) -> tuple[dict[int, list[TouchedRow]], bool]:
    """The touched definitions of those of `commits` (ids) not done yet, computed now (what a
    reader asks of a commit that `rcahook index --touched-depth` left for later).

    They are stored too, so each is computed once; not when the index is read-only or busy
    (`rcahook index` running, another writer past LAZY_WAIT): then they are only returned.
    Commits already done are not in the answer: their rows are the stored ones. Returns
    ({commit id: rows}, whether they were stored).
    """
    todo = pending(conn, commits)
    if not todo:
        return {}, True
    out: dict[int, list[TouchedRow]] = {cid: [] for cid in todo}
    rows: list[tuple] = []
    parses: list[tuple] = []
    oversize = 0
    for _, task_rows, task_parses, task_oversize in _computed(conn, repo, todo, jobs=jobs,
                                                              progress=Progress(enabled=False)):
        rows += task_rows
        parses += task_parses
        oversize += task_oversize
    for cid, *row in rows:
        out[cid].append(tuple(row))
    return out, not store.is_read_only(conn) and _store_quietly(conn, rows, parses, todo, oversize)


def _store_quietly(conn: sqlite3.Connection, rows: list[tuple], parses: list[tuple], todo: list[int],
                   oversize: int) -> bool:
    """Store what a reader computed, unless someone else writes the index now; True if stored."""
    from rcahook.errors import IndexLockedError, PermissionDeniedError

    path = db_file(conn)
    if path is None or conn.in_transaction:  # inside a reader's snapshot (store.read_snapshot): keep it
        return False
    try:
        # `rcahook index` holds this lock while it runs: it may be recording these very commits
        with store.index_lock(path, wait=LAZY_WAIT), store.transaction(conn, busy_timeout=LAZY_WAIT):
            # only those still not done: another reader may have stored some meanwhile
            still = set(pending(conn, todo))
            if still:
                _delete_rows(conn, sorted(still))  # a killed run's partial rows
                _write(conn, [r for r in rows if r[0] in still], parses, sorted(still), oversize)
        return True
    except (IndexLockedError, PermissionDeniedError):  # `rcahook index` runs, or not writable after all
        return False
    except sqlite3.OperationalError as e:
        if store.is_read_only_error(e) or "locked" in str(e) or "busy" in str(e):
            return False
        raise


def db_file(conn: sqlite3.Connection) -> Path | None:
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main" and file:
            return Path(file)
    return None
