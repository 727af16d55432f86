"""Latency of `rcahook serve`: creating investigations with 1, 5 and 20 concurrent clients,
and rendering an investigation's page.

    python bench/bench_serve.py [--mirror PATH] [--index PATH] [--work DIR] [--requests 40] [--page-runs 30]

The service runs as a real process (`rcahook serve --no-update`) on a free loopback port;
clients are threads, each sending its share of `--requests` one after the other over its
own HTTP connection; latency is request start to response end, as the client sees it.
Incidents are the repository's own (protocol v1: the newest fixes that name their culprit,
each investigated at the fix's parent, `window` 500, its cleaned subject as the title),
cycled. The page is GET /investigations/<id>: the saved report, the diffs of the five
suspects read from git, the template.

The repository is a bare `git clone --shared` of the mirror under --work (objects are read
from the mirror, nothing is written there) with a copy of the index at --index, brought up
to date by `rcahook index` (a stale schema is rebuilt there, in the copy).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

RCAHOOK = [sys.executable, "-m", "rcahook"]


def prepare(mirror: Path, index: Path | None, work: Path) -> Path:
    clone = work / f"{mirror.parent.name.split('+')[-1] or 'repo'}.git"
    if not clone.exists():
        work.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "clone", "-q", "--bare", "--shared", str(mirror), str(clone)], check=True)
    db = clone / "rcahook" / "index.sqlite"
    if not db.exists() and index and index.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(index, db)
    started = time.perf_counter()
    subprocess.run([*RCAHOOK, "index", "--repo", str(clone), "-q"], check=True)
    print(f"index ready in {time.perf_counter() - started:.0f}s: {db}", file=sys.stderr)
    return clone


def incidents(clone: Path, n: int) -> list[dict]:
    from rcahook.backtest.mine import mine_investigations
    from rcahook.index.gitrepo import Repo
    from rcahook.index.reader import History
    from rcahook.index.store import default_db_path

    repo = Repo(str(clone))
    history = History.open(default_db_path(repo.common_dir))
    try:
        mined = mine_investigations(history, repo.resolve("HEAD"), window=500)[:n]
    finally:
        history.close()
    return [{"title": m.title, "at": m.parent, "window": 500,
             "time": datetime.fromtimestamp(m.time, timezone.utc).isoformat()} for m in mined]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url: str, body: dict | None = None) -> tuple[float, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        payload = r.read()
    return time.perf_counter() - start, payload


def start_service(clone: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    with open(Path(clone).with_suffix(".serve.log"), "w") as log:  # the service writes to its own copy
        proc = subprocess.Popen([*RCAHOOK, "serve", "--repo", f"bench={clone}", "--port", str(port), "--no-update",
                                 "--log-level", "warning"], stderr=log)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if json.loads(_call(f"{base}/api/health")[1])["status"] == "ok":
                return proc, base
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("rcahook serve did not start")


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def concurrent_creates(base: str, cases: list[dict], clients: int, total: int) -> dict:
    per_client = max(1, total // clients)
    jobs = [[cases[(c * per_client + i) % len(cases)] for i in range(per_client)] for c in range(clients)]
    ids: list[str] = []

    def client(incidents: list[dict]) -> list[float]:
        out = []
        for incident in incidents:
            seconds, payload = _call(f"{base}/api/investigations", incident)
            ids.append(json.loads(payload)["id"])
            out.append(seconds)
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [s for batch in pool.map(client, jobs) for s in batch]
    wall = time.perf_counter() - start
    return {"clients": clients, "requests": len(latencies), "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95), "max": max(latencies), "throughput": len(latencies) / wall,
            "ids": ids}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, default=Path("/work/.mirror/iproute2+iproute2/repo"))
    parser.add_argument("--index", type=Path, default=Path("/work/idx/iproute2.sqlite"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/rcahook-bench-serve"))
    parser.add_argument("--requests", type=int, default=40, help="investigations per concurrency level")
    parser.add_argument("--page-runs", type=int, default=30)
    args = parser.parse_args(argv)

    clone = prepare(args.mirror, args.index, args.work)
    cases = incidents(clone, 20)
    proc, base = start_service(clone)
    try:
        _call(f"{base}/api/investigations", cases[0])  # warm: imports, the commit graph, the code graph
        rows = [concurrent_creates(base, cases, c, args.requests) for c in (1, 5, 20)]
        pages = [_call(f"{base}/investigations/{inv_id}")[0] for inv_id in
                 (rows[0]["ids"] * args.page_runs)[: args.page_runs]]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"\n{clone.name}: {len(cases)} incidents (protocol v1, window 500), features ranker, "
          f"{os.cpu_count()} cores\n")
    print("| concurrent clients | requests | p50 (s) | p95 (s) | max (s) | investigations/s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['clients']} | {r['requests']} | {r['p50']:.2f} | {r['p95']:.2f} | {r['max']:.2f} | "
              f"{r['throughput']:.2f} |")
    print(f"\npage render (GET /investigations/<id>, {len(pages)} runs): p50 {percentile(pages, 50) * 1000:.0f} ms, "
          f"p95 {percentile(pages, 95) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
