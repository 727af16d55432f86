"""Pre-push hook latency on a real history: process start to exit, median of several runs.

    python bench/bench_scan.py --mirror /path/to/iproute2.git [--work /tmp/bench-scan] [--runs 5]

Makes a non-bare clone of the mirror (main only) under --work, and measures a push of the
10 newest commits (remote-tracking main 10 commits behind local main) through the real
pre-push hook as `rcahook install-hook` writes it (rcahook/data/pre-push, run by this
interpreter), fed the line git would give it:
  (a) index up to date: target under 1 s;
  (b) index 20 commits behind (it was last updated 20 commits ago, before a fetch and the
      new work): the scan indexes those 20 commits and their touched definitions first;
      target under 2 s.
The clone and its index are kept in --work for the next run (the first index takes minutes).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RCAHOOK = Path(sys.executable).parent / "rcahook"
PUSHED = 10
BEHIND = 20
CACHES = ("index.sqlite",)  # the scan's saved state and the graph's terms are in index.sqlite


def git(clone: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=clone, check=True, capture_output=True, text=True).stdout.strip()


def set_refs(clone: Path, *, local: str, remote: str) -> None:
    git(clone, "update-ref", "refs/heads/main", local)
    git(clone, "update-ref", "refs/remotes/origin/main", remote)
    git(clone, "reset", "-q", "--hard", local)


def prepare(mirror: Path, work: Path) -> tuple[Path, str]:
    clone = work / "clone"
    if not clone.exists():
        print(f"cloning {mirror} into {clone}")
        subprocess.run(["git", "clone", "-q", "--single-branch", "--branch", "main", str(mirror), str(clone)],
                       check=True)
    # the mirror's main, not the clone's refs: every run moves those
    tip = subprocess.run(["git", "--git-dir", str(mirror if (mirror / "HEAD").exists() else mirror / ".git"),
                          "rev-parse", "refs/heads/main^{commit}"], check=True, capture_output=True,
                         text=True).stdout.strip()
    saved = work / "behind"
    if not (saved / "index.sqlite").exists():
        set_refs(clone, local=f"{tip}~{BEHIND}", remote=f"{tip}~{BEHIND}")
        shutil.rmtree(clone / ".git" / "rcahook", ignore_errors=True)  # an index of a previous run is ahead
        print(f"indexing {clone} at {BEHIND} commits before the tip (once; minutes)")
        started = time.perf_counter()
        subprocess.run([str(RCAHOOK), "index", "--quiet", "--repo", str(clone)], check=True)
        print(f"  {time.perf_counter() - started:.0f}s")
        # the previous push (of the last commit then) left the caches a regular user has: the
        # state of history and the caller counts
        subprocess.run([str(RCAHOOK), "scan", "--repo", str(clone), "--format", "json",
                        f"{tip}~{BEHIND + 1}..{tip}~{BEHIND}"], check=True, capture_output=True)
        saved.mkdir(exist_ok=True)
        for name in CACHES:
            src = clone / ".git" / "rcahook" / name
            if src.exists():
                shutil.copy2(src, saved / name)
    return clone, tip


def restore_behind(clone: Path, work: Path) -> None:
    index_dir = clone / ".git" / "rcahook"
    for name in CACHES:
        for suffix in ("", "-wal", "-shm"):
            (index_dir / f"{name}{suffix}").unlink(missing_ok=True)
        if (work / "behind" / name).exists():
            shutil.copy2(work / "behind" / name, index_dir / name)


def write_hook(work: Path) -> Path:
    from rcahook.commands.install_hook import hook_source

    hook = work / "pre-push"
    hook.write_bytes(hook_source(sys.executable))
    return hook


def push_once(clone: Path, tip: str, hook: Path) -> tuple[float, str]:
    """The hook as git runs it; returns (seconds, its output)."""
    line = f"refs/heads/main {tip} refs/heads/main {git(clone, 'rev-parse', f'{tip}~{PUSHED}')}\n"
    started = time.perf_counter()
    out = subprocess.run(["sh", str(hook), "origin", "unused-url"], cwd=clone, input=line, capture_output=True,
                         text=True, env=dict(os.environ))
    seconds = time.perf_counter() - started
    assert out.returncode == 0, out.stderr
    return seconds, out.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror", type=Path, required=True, help="a clone or mirror of iproute2")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-scan"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    clone, tip = prepare(args.mirror, args.work)
    set_refs(clone, local=tip, remote=f"{tip}~{PUSHED}")
    hook = write_hook(args.work)

    behind: list[float] = []
    for _ in range(args.runs):
        restore_behind(clone, args.work)
        seconds, output = push_once(clone, tip, hook)
        behind.append(seconds)
    assert f"{PUSHED} commit(s)" in output or "commit(s)" in output, output
    up_to_date = [push_once(clone, tip, hook)[0] for _ in range(args.runs)]

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"pre-push hook, push of {PUSHED} commits, {clone} ({args.runs} runs)")
    for col in ("case", "median s", "min s", "max s", "target s"):
        table.add_column(col, justify="left" if col == "case" else "right")
    for name, values, target in (("(a) index up to date", up_to_date, 1.0),
                                 (f"(b) index {BEHIND} commits behind", behind, 2.0)):
        table.add_row(name, f"{statistics.median(values):.2f}", f"{min(values):.2f}", f"{max(values):.2f}",
                      f"{target:.1f}")
    Console().print(table)
    print(output.splitlines()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
