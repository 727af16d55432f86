"""Time `rcahook investigate` as a responder runs it: a fresh process, start-up included.

    python bench/bench_investigate.py REPO [--db PATH] [--no-update] [--runs 5] [--llm-runs 2]

Incidents are the repository's own (protocol v1: the newest fixes that name their
culprit, investigated at the fix's parent with its cleaned subject as the title); a
repository without any gets its newest subjects at HEAD instead. Each investigation runs
as `rcahook investigate --window 500 --no-save --format json` with the features ranker,
then with election and logprob over the top 40 on the embedded model. Wall time is
process start to exit; peak memory is the child's maximum resident set (getrusage of
the reaped child, via os.wait4). Targets: features under 2 s, LLM rankers under 60 s.
Never writes into REPO (--no-save; pass --db for a mirror whose git dir is read-only).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

TARGETS = {"features": 2.0, "election": 60.0, "logprob": 60.0}


def incidents(repo: str, db: str | None, n: int, window: int) -> list[dict]:
    from rcahook.backtest.mine import mine_investigations
    from rcahook.commands.common import index_path, open_repo
    from rcahook.index.reader import History

    r = open_repo(repo)
    history = History.open(index_path(r, db))
    try:
        head = r.resolve("HEAD")
        mined = mine_investigations(history, head, window=window)[:n]
        if mined:
            return [{"title": m.title, "at": m.parent, "time": m.time, "culprit": m.culprit} for m in mined]
        views = history.commits(history.rev_list(head, max_count=n))
        return [{"title": v.subject, "at": head, "time": None, "culprit": None} for v in views]
    finally:
        history.close()


def run_one(args: list[str]) -> tuple[float, int, dict | None, str]:
    """(seconds, peak RSS in KiB, the JSON report or None, stderr tail) of one process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read().decode()
        doc = json.loads(text) if proc.returncode == 0 and text.strip() else None
        return seconds, usage.ru_maxrss, doc, err.read().decode()[-300:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo")
    parser.add_argument("--db", default=None)
    parser.add_argument("--no-update", action="store_true")
    parser.add_argument("--runs", type=int, default=5, help="investigations with the features ranker")
    parser.add_argument("--llm-runs", type=int, default=2, help="investigations per LLM ranker (0: skip)")
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--llm-top", type=int, default=40)
    opts = parser.parse_args()

    cases = incidents(opts.repo, opts.db, max(opts.runs, opts.llm_runs), opts.window)
    base = [sys.executable, "-m", "rcahook", "investigate", "--repo", opts.repo, "--no-save", "--format", "json",
            "--window", str(opts.window), "--llm-top", str(opts.llm_top)]
    if opts.db:
        base += ["--db", opts.db]
    if opts.no_update:
        base += ["--no-update"]
    if opts.llm_runs:
        from rcahook.llm.embedded import embedded_model_dir

        embedded_model_dir()  # the one-time de-quantization of the embedded model is not timed
    rows = []
    for ranker, runs in (("features", opts.runs), ("election", opts.llm_runs), ("logprob", opts.llm_runs)):
        times, peaks, hits, failures = [], [], 0, []
        for case in cases[:runs]:
            args = [*base, "--ranker", ranker, "--title", case["title"], "--at", case["at"]]
            if case["time"]:
                args += ["--time", datetime.fromtimestamp(case["time"], timezone.utc).isoformat()]
            seconds, peak, doc, err = run_one(args)
            if doc is None:
                failures.append(err.strip().splitlines()[-1] if err.strip() else "no output")
                continue
            times.append(seconds)
            peaks.append(peak)
            hits += case["culprit"] in [s["sha"] for s in doc["suggestions"]]
            print(f"{ranker:9} {seconds:6.2f}s {peak / 1024:7.0f} MiB  {case['title'][:70]}", file=sys.stderr)
        if times:
            rows.append((ranker, len(times), statistics.median(times), max(times), max(peaks) / 1024, hits,
                         TARGETS[ranker]))
        for f in failures:
            print(f"{ranker}: failed: {f}", file=sys.stderr)

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"rcahook investigate on {Path(opts.repo).resolve()} (window {opts.window}, "
                        f"LLM top {opts.llm_top}, {os.cpu_count()} CPUs)")
    for column in ("ranker", "runs", "median s", "max s", "peak MiB", "culprit in top 5", "target s", "met"):
        table.add_column(column, justify="left" if column == "ranker" else "right")
    for ranker, n, median, worst, peak, hits, target in rows:
        table.add_row(ranker, str(n), f"{median:.2f}", f"{worst:.2f}", f"{peak:.0f}", f"{hits}/{n}", f"{target:g}",
                      "yes" if worst < target else "NO")
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
