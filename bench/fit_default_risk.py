"""Fit rcahook/data/default_risk.json, the risk model used until `rcahook train` fits a
repository's own, from the training split of public repositories' histories.

    python bench/fit_default_risk.py --index-dir /tmp/risk-idx \\
        /path/to/iproute2.git /path/to/drgn.git /path/to/meson.git

For each repository: bring its index (kept in --index-dir, never inside the repository)
up to date with touched definitions, build the risk features of every non-merge commit
reachable from HEAD, and keep the commits older than the risk track's default split
(protocol v1: the time by which 70% of the commits older than HEAD - 180 days were made),
labelled with the root causes named before the split. The pooled rows are fitted once
(deterministic: Newton's method from zeros), so the same repositories at the same HEADs
give the same file. The test commits of each repository stay unseen, so
`rcahook backtest --task risk` on them measures the default model honestly.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from rcahook.backtest.risk import LABEL_DELAY_DAYS, default_split
from rcahook.index import store
from rcahook.index.gitrepo import Repo
from rcahook.index.indexer import index_repository
from rcahook.index.reader import History
from rcahook.risk.model import LEVEL_QUANTILES
from rcahook.risk.training import build_data, fit_model

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "rcahook" / "data" / "default_risk.json"


def _touched(db: Path, repo: Repo) -> None:
    from rcahook.codegraph.touched import update_touched

    with store.index_lock(db):
        conn = store.open_index(db, create=False)
        try:
            update_touched(conn, repo)
        finally:
            conn.close()


def training_rows(repo_path: str, index_dir: Path, *, update: bool) -> tuple[np.ndarray, np.ndarray, dict]:
    repo = Repo(repo_path)
    db = index_dir / f"{repo.slug()}.sqlite"
    if update or not db.exists():
        index_repository(repo, db, graph=False, say=lambda m: print(f"  {m}", file=sys.stderr))
        _touched(db, repo)
    history = History.open(db)
    try:
        head = repo.resolve("HEAD")
        head_time = history.commit(head).committer_time
        data = build_data(history.conn, only=set(history.rev_list(head)))
    finally:
        history.close()
    times = data.times()
    split = default_split(times, head_time - LABEL_DELAY_DAYS * 86400)
    keep = times < split
    y = data.labels(known_by=split)[keep]
    info = {"repository": repo.slug(), "head": head, "split_time": split,
            "commits": int(keep.sum()), "culprits": int(y.sum())}
    return data.X[keep], y, info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repos", nargs="+", help="git repositories (bare or not)")
    parser.add_argument("--index-dir", type=Path, required=True, help="where the indexes are kept")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--l2", type=float, default=30.0)
    parser.add_argument("--no-update", action="store_true", help="use the indexes as they are")
    args = parser.parse_args(argv)
    args.index_dir.mkdir(parents=True, exist_ok=True)
    Xs, ys, sources = [], [], []
    for path in args.repos:
        started = time.perf_counter()
        X, y, info = training_rows(path, args.index_dir, update=not args.no_update)
        print(f"{info['repository']}: {info['commits']} training commits, {info['culprits']} root causes "
              f"({time.perf_counter() - started:.1f}s)")
        Xs.append(X)
        ys.append(y)
        sources.append(info)
    model = fit_model(np.vstack(Xs), np.concatenate(ys), l2=args.l2,
                      info={"source": "default", "fitted_by": "bench/fit_default_risk.py",
                            "data": "training split of the risk track (protocol v1) of each repository",
                            "repositories": sources})
    # Levels: each repository's own 80th / 95th percentile, the median over repositories, so
    # that the largest history (and its share of root causes) does not set them alone.
    per_repo = np.array([[np.quantile(model.probability(X), q) for q in LEVEL_QUANTILES] for X in Xs])
    medium, high = (float(v) for v in np.median(per_repo, axis=0))
    model.thresholds = (medium, max(high, medium))
    model.info["thresholds"] = "median over repositories of each one's training percentiles"
    model.save(args.output)
    print(f"wrote {args.output}: {model.info['n_commits']} commits, {model.info['n_culprits']} root causes; "
          f"levels medium >= {model.thresholds[0]:.3f}, high >= {model.thresholds[1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
