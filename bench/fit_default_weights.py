"""Fit the shipped default weights of the `features` ranker, and say honestly how they do.

    python bench/fit_default_weights.py iproute2=/path/to/iproute2.git:/tmp/ip.sqlite \
        drgn=/path/to/drgn.git:/tmp/dg.sqlite meson=/path/to/meson.git:/tmp/ms.sqlite [--write]

For each repository: mine protocol-v1 investigations (window 500) and compute the feature
matrix of every investigation on the title and the paths track, exactly as the backtest
does. Then leave-one-repository-out: fit on the others, test on the held-out one; those
are the figures to quote for the defaults on a repository they were not fitted on. With
--write, the weights fitted on all of them (both tracks) go to rcahook/data/default_weights.json
and a Platt calibration of the held-out top-5 probability mass to rcahook/data/calibration.json.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from rcahook.backtest.mine import mine_investigations
from rcahook.confidence import fit_platt, reliability
from rcahook.features import Query, normalized_matrix
from rcahook.gitrepo import Repo
from rcahook.history import History
from rcahook.retrieve import feature_matrix, graph_hints, needs_graph
from rcahook.scorer import fit, order, softmax

DATA = Path(__file__).resolve().parent.parent / "rcahook" / "data"


def matrices(repo_path: str, db: str, *, window: int, track: str) -> list[tuple[np.ndarray, int]]:
    from rcahook.codegraph.graph import graph_at

    history = History.open(Path(db))
    repo = Repo(repo_path)
    head = repo.resolve("HEAD")
    culprits = history.culprit_of()
    out = []
    for inv in mine_investigations(history, head, window=window):
        query = Query(title=inv.title, time=inv.time,
                      impacted_paths=inv.paths if track == "paths" else ())
        # the code graph as of F^, as the backtest replays it
        graph = graph_at(history.conn, repo, inv.parent) if needs_graph(query) else None
        _, X, _, _ = feature_matrix(history, query, inv.candidates, inv.parent, culprits=culprits,
                                    graph=graph_hints(query, graph))
        out.append((normalized_matrix(X), inv.candidates.index(inv.culprit)))
    return out


def evaluate(examples, weights) -> dict:
    ranks, masses = [], []
    for X, y in examples:
        s = X @ weights.aligned()
        o = list(order(s))
        ranks.append(o.index(y) + 1)
        masses.append(float(softmax(s)[o[:5]].sum()))
    r = np.array(ranks)
    return {"n": len(r), "top1": (r <= 1).mean(), "top5": (r <= 5).mean(), "top10": (r <= 10).mean(),
            "mrr": (1 / r).mean(), "ranks": ranks, "masses": masses}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("repos", nargs="+", help="name=repo_path:index_db")
    ap.add_argument("--window", type=int, default=500)
    ap.add_argument("--cache", default="/tmp/rcahook-fit-cache")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    console = Console()
    data: dict[tuple[str, str], list] = {}
    for spec in args.repos:
        name, _, rest = spec.partition("=")
        repo_path, _, db = rest.rpartition(":")
        for track in ("title", "paths"):
            cache = Path(args.cache) / f"{name}-{track}-{args.window}.pkl"
            if cache.exists():
                data[name, track] = pickle.loads(cache.read_bytes())
                continue
            t = time.perf_counter()
            data[name, track] = matrices(repo_path, db, window=args.window, track=track)
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_bytes(pickle.dumps(data[name, track]))
            console.print(f"{name} {track}: {len(data[name, track])} investigations, "
                          f"{time.perf_counter() - t:.0f}s")
    names = sorted({n for n, _ in data})
    table = Table(title=f"features ranker, leave-one-repository-out (window {args.window})")
    for col in ("held out", "track", "n", "top-1", "top-5", "top-10", "MRR"):
        table.add_column(col)
    raw, hit = [], []
    for held in names:
        train = [x for (n, _), xs in data.items() if n != held for x in xs]
        w = fit(train)
        for track in ("title", "paths"):
            m = evaluate(data[held, track], w)
            table.add_row(held, track, str(m["n"]), f"{m['top1']:.3f}", f"{m['top5']:.3f}",
                          f"{m['top10']:.3f}", f"{m['mrr']:.3f}")
            raw += m["masses"]
            hit += [r <= 5 for r in m["ranks"]]
    console.print(table)
    calibration = fit_platt(raw, hit)
    console.print(f"Platt calibration of held-out top-5 mass: a={calibration.a:.3f} b={calibration.b:.3f}")
    for row in reliability(raw, hit, calibration):
        console.print(row)
    if args.write:
        everything = [x for xs in data.values() for x in xs]
        info = {"source": "bench/fit_default_weights.py",
                "fitted_on": {n: len(data[n, "title"]) for n in names},
                "tracks": ["title", "paths"], "window": args.window}
        weights = fit(everything, info=info)
        DATA.mkdir(exist_ok=True)
        weights.save(DATA / "default_weights.json")
        calibration.info.update({"source": "leave-one-repository-out on " + ", ".join(names),
                                 "window": args.window})
        (DATA / "calibration.json").write_text(json.dumps({"features": calibration.to_json()}, indent=1))
        console.print(f"wrote {DATA / 'default_weights.json'} and calibration.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
