"""How fast `rcahook index` is, side by side with `git log --numstat` on the same repository.

    python bench/bench_index.py /path/to/repo.git [/path/to/other.git ...] [--runs 3] [--graph]

Per repository, in one run (so machine noise hits both alike):
- a full index without the code graph, against `git log --all --numstat` (the same commits
  and diffs, as git itself computes them): median of --runs each, and the ratio;
- an incremental run after one new commit, process start to exit (`rcahook index`), in a
  throw-away clone that gets one extra commit (median of 5);
- with --graph: the touched-definitions pass and the HEAD code graph, and the database
  size per 10k commits.
Prints a rich table. Nothing is written into the repositories themselves.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

RCAHOOK = [sys.executable, "-m", "rcahook"]


def timed(cmd: list[str], **kw) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t


def bench_repo(repo: str, runs: int, graph: bool) -> dict:
    out: dict = {"repo": Path(repo).resolve().parent.name if Path(repo).name == "repo" else Path(repo).name}
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "index.sqlite"
        git_times, idx_times = [], []
        for _ in range(runs):
            git_times.append(timed(["git", "-C", repo, "log", "--all", "--numstat", "--format=%H"]))
            for f in Path(tmp).glob("index.sqlite*"):
                f.unlink()
            idx_times.append(timed([*RCAHOOK, "index", "--repo", repo, "--db", str(db), "--no-graph", "-q"]))
        out["git_log"] = statistics.median(git_times)
        out["index"] = statistics.median(idx_times)
        import sqlite3
        with sqlite3.connect(db) as conn:
            out["commits"] = conn.execute("SELECT COUNT(*) FROM commits").fetchone()[0]
        if graph:
            t = time.perf_counter()
            subprocess.run([*RCAHOOK, "index", "--repo", repo, "--db", str(db), "-q"], check=True)
            out["graph_pass"] = time.perf_counter() - t
            out["db_mb_per_10k"] = db.stat().st_size / 1e6 / max(out["commits"] or 1, 1) * 10_000
        # incremental: a clone with one new commit on top, indexed from a copy of the db
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", "--no-checkout", repo, str(clone)], check=True)
        clone_db = Path(tmp) / "clone.sqlite"
        subprocess.run([*RCAHOOK, "index", "--repo", str(clone), "--db", str(clone_db), "-q",
                        *([] if graph else ["--no-graph"])], check=True)
        inc = []
        env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@example.com",
               "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@example.com"}
        for i in range(5):
            tree = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD^{tree}"],
                                  capture_output=True, text=True, check=True).stdout.strip()
            head = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"],
                                  capture_output=True, text=True, check=True).stdout.strip()
            new = subprocess.run(["git", "-C", str(clone), "commit-tree", tree, "-p", head, "-m", f"bench {i}"],
                                 capture_output=True, text=True, check=True, env=env).stdout.strip()
            subprocess.run(["git", "-C", str(clone), "update-ref", "HEAD", new], check=True)
            inc.append(timed([*RCAHOOK, "index", "--repo", str(clone), "--db", str(clone_db), "-q",
                              *([] if graph else ["--no-graph"])]))
        out["incremental"] = statistics.median(inc)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("repos", nargs="+")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--graph", action="store_true")
    args = ap.parse_args()
    table = Table(title="rcahook index vs git log --all --numstat (medians, seconds)")
    for col in ("repository", "commits", "git log", "index (no graph)", "ratio", "incremental (1 commit)",
                *(("graph pass", "MB / 10k commits") if args.graph else ())):
        table.add_column(col, justify="right")
    for repo in args.repos:
        r = bench_repo(repo, args.runs, args.graph)
        row = [r["repo"], str(r["commits"]), f"{r['git_log']:.2f}", f"{r['index']:.2f}",
               f"{r['index'] / r['git_log']:.2f}x", f"{r['incremental']:.2f}"]
        if args.graph:
            row += [f"{r['graph_pass']:.1f}", f"{r['db_mb_per_10k']:.0f}"]
        table.add_row(*row)
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
