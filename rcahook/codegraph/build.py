"""The code graph's files at a revision, read from git objects (no checkout), and the parse cache.

`blob_parse` caches one parse per blob id, so a file version is parsed once whatever the
revision, path or caller (touched definitions, the indexed graph, graphs at old revisions).
Parsing runs in worker processes when there is enough of it; only this process writes.
"""
from __future__ import annotations

import json
import posixpath
import sqlite3
import sys
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from rcahook.codegraph.grammars import language_for
from rcahook.index import store
from rcahook.index.gitrepo import Repo
from rcahook.pool import WorkerPool, default_jobs
from rcahook.progress import Progress

if TYPE_CHECKING:
    from rcahook.codegraph.parse import ParsedFile

# Generated sources, amalgamations and data tables: slow to parse and useless in a graph.
MAX_BLOB_BYTES = 1_000_000
_BINARY_PROBE = 8000  # git's own heuristic: a NUL byte in the first 8000 bytes means binary
PARALLEL_MIN_BLOBS = 64  # below this, starting workers costs more than it saves
# Files that are not parsed but that import resolution needs (a Go module's root).
AUX_BASENAMES = frozenset({"go.mod"})
_CHUNK = 16  # blobs per worker task: large enough to amortize pickling, small enough to balance


@dataclass(frozen=True)
class GraphState:
    rev: str
    files: int
    defs: int
    edges: int | None  # None: not counted (`rcahook graph stats` builds the graph to count them)
    parsed: int = 0  # blobs parsed by this update; the others came from the cache
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> files (unsupported, oversize, binary)


# --- reading and parsing one blob ---------------------------------------------------------------

def read_source(repo: Repo, blob: str) -> bytes | str:
    """The blob's bytes, or why it is not parsed: "oversize", "binary" or "missing"."""
    try:
        data = repo.read_blob(blob)
    except (KeyError, ValueError, AttributeError):  # absent object, or a submodule's commit id
        return "missing"
    if len(data) > MAX_BLOB_BYTES:
        return "oversize"
    if b"\0" in data[:_BINARY_PROBE]:
        return "binary"
    return data


def pack_parse(parsed: ParsedFile) -> bytes:
    # Every version of every file is cached: compressed, the cache is about 4 times smaller
    # (195 MB -> 45 MB over meson's history) for 0.1 ms a row.
    return zlib.compress(parsed.to_json().encode(), 6)


def unpack_parse(data: bytes | str) -> str:
    """blob_parse.data to ParsedFile JSON (text rows, as plain JSON, are read too)."""
    return data if isinstance(data, str) else zlib.decompress(data).decode()


def parse_blob(repo: Repo, path: str, blob: str, *, full: bool) -> bytes | str:
    """The packed parse (for blob_parse), or why the blob is not parsed (see read_source)."""
    from rcahook.codegraph.parse import parse_source  # tree-sitter only where parsing happens

    data = read_source(repo, blob)
    if isinstance(data, str):
        return data
    parsed = parse_source(path, data, with_references=full)
    assert parsed is not None, f"{path} has no supported language"
    return pack_parse(parsed)


# --- worker processes ---------------------------------------------------------------------------
_worker_repo: Repo | None = None


def _init_worker(repo_path: str) -> None:
    global _worker_repo
    _worker_repo = Repo(repo_path)


def worker_repo() -> Repo:
    assert _worker_repo is not None, "called outside a worker started by repo_pool"
    return _worker_repo


@contextmanager
def repo_pool(repo: Repo, *, jobs: int | None, tasks: int) -> Iterator[WorkerPool]:
    """Workers with a Repo each for `tasks` tasks, started now: create it before the progress
    bar (see rcahook.pool). With one job, or one task, the work runs here, on `repo`."""
    global _worker_repo
    saved, _worker_repo = _worker_repo, repo  # what worker_repo() is when the work runs here
    try:
        with WorkerPool(min(jobs or default_jobs(), tasks), what="building the code graph",
                        initializer=_init_worker, initargs=(repo.path,)) as pool:
            yield pool
    finally:
        _worker_repo = saved


def _parse_full_chunk(items: list[tuple[str, str]]) -> list[tuple[str, str, bytes | str]]:
    repo = worker_repo()
    return [(path, blob, parse_blob(repo, path, blob, full=True)) for path, blob in items]


# --- the cache ----------------------------------------------------------------------------------

def cached_blobs(conn: sqlite3.Connection, blobs: Iterable[str], *, full: bool) -> set[str]:
    """Those of `blobs` whose parse is cached (a full parse also serves a definitions-only need)."""
    sql = "SELECT blob FROM blob_parse WHERE blob IN ({marks})" + (" AND full=1" if full else "")
    return {b for (b,) in store.rows_in(conn, sql, sorted(set(blobs)))}


def ensure_full_parses(conn: sqlite3.Connection, repo: Repo, files: Iterable[tuple[str, str]], *,
                       progress: Progress | None = None, jobs: int | None = None,
                       ) -> tuple[dict[str, str], dict[str, str], int]:
    """Full parses of (path, blob) pairs into the cache.

    Returns ({path: blob} of the files parsed or cached, {path: skip reason}, blobs parsed now).
    """
    blob_of = dict(files)
    have = cached_blobs(conn, blob_of.values(), full=True)
    todo: dict[str, str] = {}  # blob -> one path naming it (its language is what matters)
    for path, blob in blob_of.items():
        if blob not in have:
            todo.setdefault(blob, path)
    skipped_blobs: dict[str, str] = {}
    if todo:
        items = sorted(((p, b) for b, p in todo.items()))  # by path: a directory's files together
        tasks = [items[i:i + _CHUNK] for i in range(0, len(items), _CHUNK)]
        if len(items) < PARALLEL_MIN_BLOBS:
            jobs = 1
        progress = progress or Progress(enabled=False)
        with repo_pool(repo, jobs=jobs, tasks=len(tasks)) as pool, \
                progress.task("parsing the code graph", total=len(items)) as advance:
            for results in pool.map(_parse_full_chunk, tasks, ordered=False):
                rows = []
                for path, blob, data in results:
                    if isinstance(data, str):
                        skipped_blobs[blob] = data
                    else:
                        rows.append((blob, language_for(path), data))
                with store.transaction(conn):
                    conn.executemany("INSERT OR REPLACE INTO blob_parse VALUES (?, ?, 1, ?)", rows)
                advance(len(results))
    kept = {p: b for p, b in blob_of.items() if b not in skipped_blobs}
    skipped = {p: skipped_blobs[b] for p, b in blob_of.items() if b in skipped_blobs}
    return kept, skipped, len(todo)


# --- files of the graph at a revision -----------------------------------------------------------

def _classify(entries: Iterable[tuple[str, str, int | None]]) -> tuple[dict[str, str], dict[str, str], int]:
    """({path: blob} worth parsing, {path: "oversize"}, unsupported count) from (path, blob, size)."""
    files, skipped, unsupported = {}, {}, 0
    for path, blob, size in entries:
        if language_for(path) is None:
            unsupported += 1
        elif size is not None and size > MAX_BLOB_BYTES:
            skipped[path] = "oversize"
        else:
            files[path] = blob
    return files, skipped, unsupported


def tree_at(conn: sqlite3.Connection, repo: Repo, rev: str, *, progress: Progress | None = None,
            jobs: int | None = None) -> tuple[dict[str, str], list[str]]:
    """({path: blob} of the graph's files at rev, the other paths import resolution looks at)."""
    entries = [(e.path, e.blob, e.size) for e in repo.list_tree(repo.resolve(rev))]
    files, _, _ = _classify(entries)
    kept, _, _ = ensure_full_parses(conn, repo, files.items(), progress=progress, jobs=jobs)
    return kept, _aux_paths(path for path, _, _ in entries)


def graph_files_at(conn: sqlite3.Connection, repo: Repo, rev: str, *, progress: Progress | None = None,
                   jobs: int | None = None) -> dict[str, str]:
    """{path: blob} of the graph at any revision, parsing (and caching) what the cache lacks.

    Leaves `graph_files` alone: this is how graphs at old revisions (a fix's parent) are built.
    """
    return tree_at(conn, repo, rev, progress=progress, jobs=jobs)[0]


def _aux_paths(paths: Iterable[str]) -> list[str]:
    return sorted(p for p in paths if posixpath.basename(p) in AUX_BASENAMES)


def _skip_counts(skipped: dict[str, str], unsupported: int) -> dict[str, int]:
    counts = {"unsupported": unsupported, "oversize": 0, "binary": 0, "missing": 0}
    for reason in skipped.values():
        counts[reason] = counts.get(reason, 0) + 1
    return counts


class _GraphFiles(NamedTuple):
    files: dict[str, str]  # path -> blob, in the graph
    skipped: dict[str, str]  # path -> reason, supported files left out
    unsupported: int
    aux: set[str]


def update_graph(conn: sqlite3.Connection, repo: Repo, rev: str, *, progress: Progress | None = None,
                 jobs: int | None = None) -> GraphState:
    """Bring `graph_files` to the tree at rev: only files changed since the recorded
    `graph_rev` are looked at (and parsed, unless the cache has them)."""
    from rcahook.codegraph.local import terms_ready, update_terms

    sha = repo.resolve(rev)
    previous = store.get_meta(conn, "graph_rev")
    parsed = 0
    if previous != sha:
        if previous and repo.has_commit(previous):
            state, parsed = _update_files(conn, repo, previous, sha, progress=progress, jobs=jobs)
            files = conn.execute("SELECT COUNT(*) FROM graph_files").fetchone()[0]
        else:
            state, parsed = _list_files(conn, repo, sha, progress=progress, jobs=jobs)
            files = len(state.files)
        # a process that never loaded a graph has none to forget (nor imports networkx for it:
        # a third of an index update at 1M commits)
        loaded = sys.modules.get("rcahook.codegraph.graph")
        if loaded is not None:
            loaded.forget_loaded(conn)
        skipped = _skip_counts(state.skipped, state.unsupported)
    else:  # up to date (every investigate and scan asks): counted, not read (61k rows at 1M)
        if not terms_ready(conn):  # an index written before graph_terms existed
            with store.transaction(conn):
                update_terms(conn, sha)
        files = conn.execute("SELECT COUNT(*) FROM graph_files").fetchone()[0]
        skipped = _skip_counts(json.loads(store.get_meta(conn, "graph_skipped_files", "{}")),
                               int(store.get_meta(conn, "graph_unsupported_files", "0")))
    # Counting edges would mean building the whole graph (seconds on a monorepo, on every
    # update): `rcahook graph stats` does that on request; definitions are counted by terms.
    known = store.get_meta(conn, "graph_defs", "").partition(":")
    if known[0] == sha and known[2].isdigit():
        defs = int(known[2])  # a scan of every term (0.2 s at 1M) once per revision
    else:
        defs = conn.execute("SELECT COALESCE(SUM(n), 0) FROM graph_terms WHERE kind = 0").fetchone()[0]
        with store.transaction(conn):
            store.set_meta(conn, "graph_defs", f"{sha}:{defs}")
    return GraphState(rev=sha, files=files, defs=defs, edges=None, parsed=parsed, skipped=skipped)


def graph_blobs_wanted(conn: sqlite3.Connection, repo: Repo, rev: str) -> dict[str, str]:
    """{blob: path} of what a first `update_graph(rev)` will parse, its full parse not cached
    yet (the touched pass that runs before it parses them: touched.update_touched). Empty once
    a graph exists: an update parses the few files changed since, and listing them here would
    diff the two trees twice (0.2 s each at 1M commits)."""
    previous = store.get_meta(conn, "graph_rev")
    if previous and repo.has_commit(previous):
        return {}
    entries = [(e.path, e.blob, e.size) for e in repo.list_tree(repo.resolve(rev))]
    wanted = {blob: path for path, blob in _classify(entries)[0].items()}
    have = cached_blobs(conn, wanted, full=True)
    return {blob: path for blob, path in wanted.items() if blob not in have}


def _update_files(conn: sqlite3.Connection, repo: Repo, previous: str, sha: str, *,
                  progress: Progress | None, jobs: int | None) -> tuple[_GraphFiles, int]:
    """The files at `sha`, from those at `previous` and the paths that differ between the two;
    of graph_files only the rows of those paths are read (61k rows at 1M commits: 0.5 s of
    every update). The state returned has the files written now, not all of them."""
    from rcahook.codegraph.local import update_terms  # local.py imports this module

    skipped = json.loads(store.get_meta(conn, "graph_skipped_files", "{}"))
    unsupported = int(store.get_meta(conn, "graph_unsupported_files", "0"))
    aux = set(json.loads(store.get_meta(conn, "graph_aux_paths", "[]")))
    removed: set[str] = set()
    added: list[tuple[str, str, int | None]] = []
    for path, old_blob, new_blob in repo.changed_paths(previous, sha):
        if old_blob:
            removed.add(path)
        elif new_blob is not None:  # changed_paths gives one of the two
            added.append((path, new_blob, None))  # the size is checked when read
    present = {p for (p,) in store.rows_in(conn, "SELECT path FROM graph_files WHERE path IN ({marks})", removed)}
    files: dict[str, str] = {}
    for path in removed:
        if path not in present and skipped.pop(path, None) is None and language_for(path) is None:
            unsupported -= 1
    aux = (aux - removed) | set(_aux_paths(path for path, _, _ in added))
    wanted, oversize, more_unsupported = _classify(added)
    kept, newly_skipped, parsed = ensure_full_parses(conn, repo, wanted.items(), progress=progress, jobs=jobs)
    files.update(kept)
    skipped.update(oversize)
    skipped.update(newly_skipped)
    state = _GraphFiles(files, skipped, unsupported + more_unsupported, aux)
    changed = removed | set(oversize) | set(newly_skipped) | set(kept)
    known = store.get_meta(conn, "graph_defs", "").partition(":")
    with store.transaction(conn):
        before = _defs_in(conn, changed)
        conn.executemany("DELETE FROM graph_files WHERE path=?", [(p,) for p in removed])
        conn.executemany("INSERT OR REPLACE INTO graph_files VALUES (?, ?, ?)",
                         [(p, b, language_for(p)) for p, b in kept.items()])
        update_terms(conn, sha, removed=removed | set(oversize) | set(newly_skipped), added=kept)
        _record(conn, sha, state)
        if known[0] == previous and known[2].isdigit():  # the count moves with the files that changed
            store.set_meta(conn, "graph_defs", f"{sha}:{int(known[2]) - before + _defs_in(conn, changed)}")
    return state, parsed


def _defs_in(conn: sqlite3.Connection, paths: set[str]) -> int:
    return sum(n for (n,) in store.rows_in(
        conn, "SELECT n FROM graph_terms WHERE kind = 0 AND path IN ({marks})", paths))


def _list_files(conn: sqlite3.Connection, repo: Repo, sha: str, *, progress: Progress | None,
                jobs: int | None) -> tuple[_GraphFiles, int]:
    """The files at `sha`, from the whole tree."""
    from rcahook.codegraph.local import update_terms

    entries = [(e.path, e.blob, e.size) for e in repo.list_tree(sha)]
    wanted, skipped, unsupported = _classify(entries)
    files, newly_skipped, parsed = ensure_full_parses(conn, repo, wanted.items(), progress=progress, jobs=jobs)
    skipped.update(newly_skipped)
    state = _GraphFiles(files, skipped, unsupported, set(_aux_paths(path for path, _, _ in entries)))
    with store.transaction(conn):
        conn.execute("DELETE FROM graph_files")
        conn.executemany("INSERT INTO graph_files VALUES (?, ?, ?)",
                         [(p, b, language_for(p)) for p, b in files.items()])
        update_terms(conn, sha)
        _record(conn, sha, state)
    return state, parsed


def _record(conn: sqlite3.Connection, sha: str, state: _GraphFiles) -> None:
    store.set_meta(conn, "graph_rev", sha)
    store.set_meta(conn, "graph_aux_paths", json.dumps(sorted(state.aux)))
    store.set_meta(conn, "graph_skipped_files", json.dumps(state.skipped, sort_keys=True))
    store.set_meta(conn, "graph_unsupported_files", str(state.unsupported))


def graph_skip_counts(conn: sqlite3.Connection) -> dict[str, int]:
    skipped = json.loads(store.get_meta(conn, "graph_skipped_files", "{}"))
    return _skip_counts(skipped, int(store.get_meta(conn, "graph_unsupported_files", "0")))
