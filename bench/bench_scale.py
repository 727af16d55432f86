"""Scale figures (issue 11): what rcahook costs as history grows, one table.

    python bench/bench_scale.py REPO [REPO ...] [--graph] [--jobs N] [--read-index 1000000]
                                [--in-place GENERATED_REPO:DB]

Per repository (a throw-away clone under /tmp: nothing is written into REPO), in one run:
- `git log --all --numstat` against a first `rcahook index --no-graph`, and with --graph a
  first full `rcahook index` (graph included, as a newcomer runs it), each from nothing,
  wall time and CPU time (user + system of the process and its workers: on a loaded
  machine the CPU ratio is the steadier one);
- the database size;
- an incremental `rcahook index` after one new commit (process start to exit);
- `rcahook investigate --window 500` (features ranker, bringing the index up to date first
  as a user's run does): wall time and the process's peak RSS;
- the first `rcahook scan` of the index (it builds the risk state from all of history and
  saves it), then a scan of 10 pushed commits, and of a new branch of 100 commits (all
  zeros base), each after the index is up to date, as the pre-push hook runs it.
Without --graph, the investigate and scan work from the no-graph index. With --graph, they
use the full one: `rcahook index` records the touched definitions of the newest 500
commits (its default --touched-depth) and investigate computes any older commit of its
window it needs.

--in-place REPO:DB: the figures after the first index only, on a generated repository
already indexed into DB (a 1M-commit one takes hours to index on two cores); commits are
added to REPO itself.

--read-index N: also the read path on a synthetic index of N commits (a chain with a merge
every 20 commits, written straight into SQLite: building it with `rcahook index` would take
hours on two cores): `History.rev_list(head, max_count=500)` and `is_ancestor` across the
window, in a fresh process, wall time and peak RSS.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RCAHOOK = [sys.executable, "-m", "rcahook"]
ZERO = "0" * 40


CPU: dict[str, float] = {}  # command label -> CPU seconds of the last run (process and its workers)


def run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        label: str | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (MiB) of one process; its CPU seconds (user + system, its
    worker processes included: wait4 counts the children it reaped) go to CPU[label]."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) not in (0, 3):  # 3: scan's verdict, a normal outcome
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    if label:
        CPU[label] = usage.ru_utime + usage.ru_stime
    return wall, usage.ru_maxrss // 1024


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def commit(clone: Path, n: int, tag: str) -> None:
    for i in range(n):
        path = clone / f"bench_scale_{tag}_{i}.c"
        # a new body each run: --in-place adds commits to the same repository again
        path.write_text(f"int bench_{tag}_{i}(int x) {{\n    return x + {i} + {time.time_ns() % 100_000};\n}}\n")
        git(clone, "add", path.name)
        git(clone, "commit", "-q", "-m", f"bench: {tag} {i}",
            env={**os.environ, "GIT_AUTHOR_NAME": "B", "GIT_AUTHOR_EMAIL": "b@example.com",
                 "GIT_COMMITTER_NAME": "B", "GIT_COMMITTER_EMAIL": "b@example.com"})


def bench_repo(source: str, *, graph: bool, jobs: int | None) -> dict:
    name = Path(source).resolve().parent.name if Path(source).name == "repo" else Path(source).name
    row: dict = {"repo": name}
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        clone = Path(tmp) / "clone"
        git(Path(tmp), "clone", "-q", str(Path(source).resolve()), str(clone))
        db = Path(tmp) / "index.sqlite"
        row["commits"] = int(git(clone, "rev-list", "--all", "--count"))
        row["git_log"], _ = run(["git", "log", "--all", "--numstat", "--format=%H"], cwd=clone, label="git_log")
        jobs_flag = ["--jobs", str(jobs)] if jobs else []
        plain = Path(tmp) / "no-graph.sqlite"
        row["index"], row["index_rss"] = run([*RCAHOOK, "index", "--repo", str(clone), "--db", str(plain),
                                              "--no-graph", "-q", *jobs_flag], label="index")
        if graph:  # a first full index as a newcomer runs it (graph included), from nothing
            row["full"], row["full_rss"] = run([*RCAHOOK, "index", "--repo", str(clone), "--db", str(db), "-q",
                                                *jobs_flag], label="full")
        else:
            db = plain
        row["cpu"] = dict(CPU)
        row.update(after_index(clone, db, graph=graph, jobs_flag=jobs_flag))
    return row


def after_index(clone: Path, db: Path, *, graph: bool, jobs_flag: list[str] | None = None) -> dict:
    """What follows the first index: an incremental update, an investigation, two scans.
    Commits are added to `clone` (a throw-away clone, or a generated repository)."""
    jobs_flag = jobs_flag or []
    row: dict = {"db_mib": db.stat().st_size / 2**20}
    commit(clone, 1, "one")
    graph_flag = [] if graph else ["--no-graph"]
    row["incremental"], _ = run([*RCAHOOK, "index", "--repo", str(clone), "--db", str(db), "-q",
                                 *graph_flag, *jobs_flag])
    title = git(clone, "log", "-1", "--skip=40", "--format=%s")
    row["investigate"], row["investigate_rss"] = run(
        [*RCAHOOK, "investigate", "--repo", str(clone), "--db", str(db), "--title", f"regression: {title}",
         "--window", "500", "--format", "json"])
    # The first scan of an index builds the risk state from all of history (saved in the
    # index, then brought up to date by each scan): timed apart from the scan of 10 new ones.
    row["first_scan"], _ = run([*RCAHOOK, "scan", "--repo", str(clone), "--db", str(db),
                                "--from", "HEAD~1", "--to", "HEAD", "--format", "json"])
    before = git(clone, "rev-parse", "HEAD")
    commit(clone, 10, "ten")
    run([*RCAHOOK, "index", "--repo", str(clone), "--db", str(db), "-q", *graph_flag])
    row["scan10"], _ = run([*RCAHOOK, "scan", "--repo", str(clone), "--db", str(db),
                            "--from", before, "--to", "HEAD", "--format", "json"])
    branch = f"bench-new-branch-{int(time.time())}"
    git(clone, "checkout", "-q", "-b", branch)
    commit(clone, 100, "branch")
    row["branch100"], _ = run([*RCAHOOK, "scan", "--repo", str(clone), "--db", str(db),
                               "--from", ZERO, "--to", "HEAD", "--format", "json"])
    return row


READ_PROBE = """
import resource, sys, time
from pathlib import Path
from rcahook.index.reader import History
h = History.open(Path(sys.argv[1]))
head = h.conn.execute("SELECT sha FROM commits ORDER BY id LIMIT 1").fetchone()[0]
t = time.perf_counter()
window = h.rev_list(head, max_count=500)
walk = time.perf_counter() - t
t = time.perf_counter()
assert h.is_ancestor(window[-1], head) and not h.is_ancestor(head, window[-1])
anc = time.perf_counter() - t
print(len(window), walk, anc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def _insert(conn, rows: list[tuple], parents: list[tuple]) -> None:
    conn.executemany("INSERT INTO commits (id, sha, author_name, author_email, author_time,"
                     " author_offset, committer_name, committer_email, committer_time,"
                     " committer_offset, subject, body, trailers, n_parents, n_files, added,"
                     " deleted, idents_added, idents_removed, generation)"
                     " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    conn.executemany("INSERT INTO parents VALUES (?,?,?)", parents)


def synthetic_index(db: Path, n: int) -> None:
    """A chain of n commits (newest first by id, as `rcahook index` writes them) with a merge
    of a one-commit side branch every 20 commits."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from rcahook.index import store

    conn = store.open_index(db)
    sha = lambda i: f"{i:040x}"  # noqa: E731
    with store.transaction(conn):
        rows, parents = [], []
        for i in range(n):  # i = 0 is the newest
            merge = i % 20 == 0 and i + 2 < n
            rows.append((i + 1, sha(i), "a", "a@x", 1_000_000_000 + (n - i) * 60, 0, "a", "a@x",
                         1_000_000_000 + (n - i) * 60, 0, f"commit {i}", "", "[]", 2 if merge else int(i + 1 < n),
                         1, 1, 0, "", "", n - i))
            if i + 1 < n:
                parents.append((i + 1, 0, sha(i + 1)))
            if merge:
                parents.append((i + 1, 1, sha(i + 2)))
            if len(rows) >= 50_000:
                _insert(conn, rows, parents)
                rows, parents = [], []
        _insert(conn, rows, parents)
    conn.close()


def bench_read(n: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_scale_read_") as tmp:
        db = Path(tmp) / "index.sqlite"
        started = time.perf_counter()
        synthetic_index(db, n)
        build = time.perf_counter() - started
        out = subprocess.run([sys.executable, "-c", READ_PROBE, str(db)], check=True, capture_output=True,
                             text=True).stdout.split()
        return {"repo": f"synthetic index {n // 1000}k", "commits": n, "build": build, "window": int(out[0]),
                "rev_list": float(out[1]), "is_ancestor": float(out[2]), "read_rss": int(out[3]),
                "db_mib": db.stat().st_size / 2**20}


def fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _index_cell(r: dict, key: str) -> str:
    if key not in r:
        return "-"
    cpu = r.get("cpu", {})
    cell = f"{r[key]:.1f} s ({r[key] / r['git_log']:.1f}x)" if r.get("git_log") else f"{r[key]:.1f} s"
    if key in cpu and cpu.get("git_log"):
        cell += f"; CPU {cpu[key]:.0f} s ({cpu[key] / cpu['git_log']:.1f}x)"
    return cell


def table(rows: list[dict], reads: list[dict]) -> str:
    lines = ["| repository | commits | git log --numstat | index, graph included | index, no graph | database |"
             " incremental (1 commit) | investigate | investigate peak RSS | first scan | scan 10 | new branch 100 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        git_log = (f"{r['git_log']:.1f} s; CPU {r['cpu']['git_log']:.1f} s" if r.get("cpu", {}).get("git_log")
                   else fmt(r.get("git_log")) + (" s" if r.get("git_log") else ""))
        lines.append(
            f"| {r['repo']} | {r['commits']:,} | {git_log} | {_index_cell(r, 'full')} "
            f"| {_index_cell(r, 'index')} |"
            f" {r['db_mib']:.0f} MiB | {r['incremental']:.2f} s | {r['investigate']:.2f} s |"
            f" {r['investigate_rss']} MiB | {fmt(r.get('first_scan'), '.2f')} s | {r['scan10']:.2f} s |"
            f" {r['branch100']:.2f} s |")
    if reads:
        lines += ["", "| read path | commits | rev_list(head, max_count=500) | is_ancestor across it |"
                      " peak RSS | database |", "|---|---|---|---|---|---|"]
        for r in reads:
            lines.append(f"| {r['repo']} | {r['commits']:,} | {r['rev_list'] * 1000:.0f} ms |"
                         f" {r['is_ancestor'] * 1000:.0f} ms | {r['read_rss']} MiB | {r['db_mib']:.0f} MiB |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("repos", nargs="*")
    ap.add_argument("--graph", action="store_true", help="also time the code-graph pass")
    ap.add_argument("--jobs", type=int)
    ap.add_argument("--read-index", type=int, action="append", default=[],
                    help="commits of a synthetic index for the read-path figures (repeatable)")
    ap.add_argument("--in-place", action="append", default=[], metavar="REPO:DB",
                    help="a generated repository already indexed into DB (hours at 1M commits): only the"
                         " figures after the first index, adding commits to REPO itself (repeatable)")
    args = ap.parse_args(argv)
    rows = []
    for repo in args.repos:
        rows.append(bench_repo(repo, graph=args.graph, jobs=args.jobs))
        print(rows[-1], file=sys.stderr, flush=True)
    for spec in args.in_place:
        repo, _, db = spec.rpartition(":")
        row = {"repo": Path(repo).name, "commits": int(git(Path(repo), "rev-list", "--all", "--count"))}
        row.update(after_index(Path(repo), Path(db), graph=args.graph))
        rows.append(row)
        print(rows[-1], file=sys.stderr, flush=True)
    reads = [bench_read(n) for n in args.read_index]
    for r in reads:
        print(r, file=sys.stderr, flush=True)
    print(table(rows, reads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
