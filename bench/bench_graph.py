"""Seconds for the code graph and touched definitions on a real repository.

Indexes the repository's history into a fresh database (no code graph), then times: the full
touched-definitions pass, the HEAD graph cold (empty parse cache) and warm (all cached), one
incremental update (the newest non-merge commit, its files not cached), loading the graph into
networkx, and the graph at a revision 50 commits back. Wall and CPU seconds (this process and
its workers) are both shown: on a shared machine the CPU column is the steadier one.
Run: python bench/bench_graph.py PATH [--jobs N] [--keep DB]
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from rcahook.codegraph import build, graph
from rcahook.codegraph.grammars import language_for
from rcahook.codegraph.touched import update_touched
from rcahook.index import store
from rcahook.index.gitrepo import Repo
from rcahook.index.indexer import index_repository


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(fn: Callable):
    wall, cpu = time.perf_counter(), _cpu()
    result = fn()
    return result, time.perf_counter() - wall, _cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: cores, at most 8)")
    parser.add_argument("--keep", default=None, help="write the database here instead of a temporary file")
    args = parser.parse_args()
    jobs = args.jobs or min(os.cpu_count() or 1, 8)
    repo = Repo(args.repo)
    tmp = tempfile.TemporaryDirectory()
    db = Path(args.keep) if args.keep else Path(tmp.name) / "index.sqlite"
    rows: list[tuple[str, str, float, float]] = []

    def row(label: str, detail: str, wall: float, cpu: float) -> None:
        rows.append((label, detail, wall, cpu))
        Console(stderr=True).print(f"[dim]{label}: {wall:.2f}s[/dim]")

    result, wall, cpu = _timed(lambda: index_repository(repo, db, graph=False, jobs=jobs))
    row("index commits (no graph)", f"{result.new_commits} commits", wall, cpu)
    conn = store.open_index(db)

    n, wall, cpu = _timed(lambda: update_touched(conn, repo, jobs=jobs))
    parsed = conn.execute("SELECT COUNT(*) FROM blob_parse").fetchone()[0]
    touched = conn.execute("SELECT COUNT(*) FROM touched").fetchone()[0]
    row("touched definitions, full history", f"{n} commits, {parsed} blobs parsed, {touched} rows", wall, cpu)

    state, wall, cpu = _timed(lambda: build.update_graph(conn, repo, "HEAD", jobs=jobs))
    row("HEAD graph, cold", f"{state.files} files, {state.defs} defs, {state.edges} edges", wall, cpu)

    def rebuild_warm():
        with store.transaction(conn):
            conn.execute("DELETE FROM graph_files")
            conn.execute("DELETE FROM meta WHERE key = 'graph_rev'")
        return build.update_graph(conn, repo, "HEAD", jobs=jobs)

    state, wall, cpu = _timed(rebuild_warm)
    row("HEAD graph, warm (all cached)", f"{state.parsed} parsed", wall, cpu)

    # one commit: the newest non-merge one that changes source, its new blobs dropped from the
    # cache so that they are parsed
    for newest in repo.rev_list("HEAD", max_count=500):
        parent = repo.resolve(f"{newest}~1")
        changed = [b for path, _, b in repo.changed_paths(parent, newest) if b and language_for(path)]
        if changed:
            break
    with store.transaction(conn):
        conn.executemany("DELETE FROM blob_parse WHERE blob = ?", [(b,) for b in changed])
    build.update_graph(conn, repo, parent, jobs=jobs)
    state, wall, cpu = _timed(lambda: build.update_graph(conn, repo, newest, jobs=jobs))
    row("incremental update, one commit", f"{newest[:10]}: {len(changed)} source files, {state.parsed} parsed",
        wall, cpu)

    graph.forget_loaded(conn)
    g, wall, cpu = _timed(lambda: graph.load_graph(conn))
    row("load graph into networkx", f"{g.graph.number_of_nodes()} nodes, {g.graph.number_of_edges()} edges",
        wall, cpu)

    back = repo.rev_list("HEAD", max_count=51)[-1]
    before = conn.execute("SELECT COUNT(*) FROM blob_parse WHERE full = 1").fetchone()[0]
    g, wall, cpu = _timed(lambda: graph.graph_at(conn, repo, back))
    after = conn.execute("SELECT COUNT(*) FROM blob_parse WHERE full = 1").fetchone()[0]
    row("graph_at, 50 commits back", f"{back[:10]}: {after - before} parsed, {g.stats()['definitions']} defs",
        wall, cpu)
    back2 = repo.rev_list(back, max_count=2)[-1]
    g, wall, cpu = _timed(lambda: graph.graph_at(conn, repo, back2))
    row("graph_at, the commit before that", f"{back2[:10]}", wall, cpu)

    g = graph.load_graph(conn)
    path = next(d["path"] for _, d in g.graph.nodes(data=True) if d["kind"] == "file" and g.definitions_in(d["path"]))
    impacted = g.definitions_in(path)[:3]
    _, wall, cpu = _timed(lambda: [g.distances_from(impacted, 4) for _ in range(100)])
    row("distances_from, depth 4 (x100)", f"from {len(impacted)} definitions", wall, cpu)

    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cache_bytes = conn.execute("SELECT SUM(LENGTH(data)) FROM blob_parse").fetchone()[0] or 0
    conn.close()
    size = db.stat().st_size

    table = Table(title=f"code graph on {args.repo} ({jobs} jobs, {os.cpu_count()} cores)")
    for column in ("step", "detail", "wall s", "cpu s"):
        table.add_column(column, justify="right" if column.endswith(" s") else "left")
    for label, detail, wall, cpu in rows:
        table.add_row(label, detail, f"{wall:.2f}", f"{cpu:.2f}")
    console = Console()
    console.print(table)
    console.print(f"database: {size / 1e6:.1f} MB, of which parse cache {cache_bytes / 1e6:.1f} MB; "
                  f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
