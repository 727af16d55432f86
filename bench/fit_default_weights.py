"""Fit the shipped default weights of the `features` ranker and the confidence calibration,
and say honestly how they do.

    python bench/fit_default_weights.py iproute2=/path/to/iproute2.git:/tmp/ip.sqlite \
        drgn=/path/to/drgn.git:/tmp/dg.sqlite meson=/path/to/meson.git:/tmp/ms.sqlite \
        [--write] [--write-weights] [--titles-dir DIR]

For each repository: mine protocol-v1 investigations (window 500) and compute, exactly as
the backtest does, the feature matrix of every investigation on the title track, the
paths track and the null track (its title replaced by one of the other repositories'
investigation titles, dealt as `rcahook backtest --track null --null-titles` deals them;
--titles-dir writes those title files). Then:

- weights, leave-one-repository-out: fit on the others' title and paths examples, test on
  the held-out one; those are the figures to quote for the defaults on a new repository;
- the confidence (rcahook.rca.confidence), its signals computed for every example under the
  weights that did not see its repository, then leave-one-repository-out again: the mass's
  Platt scaling fitted on two repositories' real incidents (title and paths tracks), the
  evidence gate on their real against their null incidents (a null incident's root cause is
  never in the top five), both measured on the third: the answered share at the default
  --min-confidence on each track, beside the mass-only calibration shipped before (v1).

--write writes the calibration fitted on all three to rcahook/data/calibration.json;
--write-weights also refits and writes rcahook/data/default_weights.json (the rankings,
and so every top-k figure, change with it: the confidence alone does not move them).
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
from rcahook.backtest.run import null_investigations, query_for
from rcahook.index.gitrepo import Repo
from rcahook.index.reader import History
from rcahook.rca.confidence import (
    SIGNALS_VERSION,
    Calibration,
    calibration_document,
    compute_signals,
    fit_evidence,
    fit_platt,
    reliability,
    word_rarity,
)
from rcahook.rca.features import FEATURE_NAMES, normalized_matrix
from rcahook.rca.investigate import DEFAULT_MIN_CONFIDENCE
from rcahook.rca.model import fit, order, softmax
from rcahook.rca.retrieve import RetrievalConfig, feature_matrix, graph_hints, needs_graph
from rcahook.text import tokenize

DATA = Path(__file__).resolve().parent.parent / "rcahook" / "data"
TRACKS = ("title", "paths", "null")
# The calibration shipped before the confidence read any evidence (format v1), for the "before" rows.
PLATT_V1 = Calibration(0.657972461201314, 0.6497358872602322, {"source": "calibration v1"})


def examples_of(repo_path: str, db: str, *, window: int, track: str, titles: list[str] | None,
                limit: int | None = None) -> list[dict]:
    """One dict per investigation: what fitting the weights and computing the signals need."""
    from rcahook.codegraph.graph import graph_at

    repo = Repo(repo_path)
    history = History.open(Path(db), repo=repo)
    history.ensure_touched()  # all at once, in parallel: the index may have left old ones for later
    head = repo.resolve("HEAD")
    culprits = history.culprit_of()
    investigations = mine_investigations(history, head, window=window)[:limit]
    if track == "null":
        investigations = null_investigations(investigations, investigations, titles)
    out = []
    for inv in investigations:
        query = query_for(inv, track)
        # the code graph as of F^, as the backtest replays it
        graph = graph_at(history.conn, repo, inv.parent) if needs_graph(query) else None
        _, X, evidence, background = feature_matrix(history, query, inv.candidates, inv.parent, culprits=culprits,
                                                    graph=graph_hints(query, graph))
        words = set(tokenize(query.title))
        out.append({"X": normalized_matrix(X), "y": inv.candidates.index(inv.culprit), "null": track == "null",
                    "matched": [tuple(set(e.matched_words) & words) for e in evidence],
                    "rarity": word_rarity(words, n_commits=background.n_commits,
                                          commits_with=background.word_commits),
                    "unknown": {w for w in words if not background.word_commits.get(w)}})
    history.close()
    return out


def own_titles(repo_path: str, db: str, *, window: int, limit: int | None = None) -> list[str]:
    history = History.open(Path(db))
    try:
        head = Repo(repo_path).resolve("HEAD")
        return [inv.title for inv in mine_investigations(history, head, window=window)[:limit]]
    finally:
        history.close()


def evaluate(examples: list[dict], weights) -> list[tuple[int, object, bool]]:
    """(rank of the root cause, the confidence's signals, top-5 hit) per example, under
    `weights`, computed as investigate computes them (on the stage-1 cut, in final order)."""
    cut = RetrievalConfig().max_candidates
    n_raw = len(FEATURE_NAMES)
    out = []
    for ex in examples:
        s = ex["X"] @ weights.aligned()
        o = order(s)
        rank = int(np.nonzero(o == ex["y"])[0][0]) + 1
        kept = o[:cut]
        signals = compute_signals(mass=float(softmax(s)[o[:5]].sum()), rarity=ex["rarity"], unknown=ex["unknown"],
                                  matched=[ex["matched"][i] for i in kept], rows=ex["X"][kept, :n_raw])
        out.append((rank, signals, rank <= 5 and not ex["null"]))
    return out


def answered(calibration: Calibration, rows) -> float:
    return sum(calibration(s) >= DEFAULT_MIN_CONFIDENCE for _, s, _ in rows) / len(rows) if rows else 0.0


def load(args, console) -> dict[tuple[str, str], list[dict]]:
    specs = {}
    for spec in args.repos:
        name, _, rest = spec.partition("=")
        repo_path, _, db = rest.rpartition(":")
        specs[name] = (repo_path, db)
    titles = {name: own_titles(*specs[name], window=args.window, limit=args.limit) for name in specs}
    data: dict[tuple[str, str], list[dict]] = {}
    for name, (repo_path, db) in specs.items():
        # another repository's incidents, in a fixed order: the others by name, newest first
        others = [t for other in sorted(specs) if other != name for t in titles[other]]
        if args.titles_dir:
            Path(args.titles_dir).mkdir(parents=True, exist_ok=True)
            (Path(args.titles_dir) / f"null-titles-{name}.txt").write_text("\n".join(others) + "\n")
        for track in TRACKS:
            scope = f"-limit{args.limit}" if args.limit else ""
            cache = Path(args.cache) / f"{name}-{track}-{args.window}{scope}-s{SIGNALS_VERSION}-c2.pkl"
            if cache.exists():  # the bench's own scratch files, never read from a repository
                data[name, track] = pickle.loads(cache.read_bytes())
                continue
            t = time.perf_counter()
            data[name, track] = examples_of(repo_path, db, window=args.window, track=track, titles=others,
                                            limit=args.limit)
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_bytes(pickle.dumps(data[name, track]))
            console.print(f"{name} {track}: {len(data[name, track])} investigations, {time.perf_counter() - t:.0f}s")
    return data


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("repos", nargs="+", help="name=repo_path:index_db")
    ap.add_argument("--window", type=int, default=500)
    ap.add_argument("--cache", default="/tmp/rcahook-fit-cache")
    ap.add_argument("--limit", type=int, default=None, help="only the N most recent investigations (a smoke test)")
    ap.add_argument("--titles-dir", default=None, help="write each repository's null titles file here")
    ap.add_argument("--write", action="store_true", help="write the calibration fitted on all repositories")
    ap.add_argument("--write-weights", action="store_true", help="also refit and write the default weights")
    args = ap.parse_args()
    console = Console()
    data = load(args, console)
    names = sorted({n for n, _ in data})

    table = Table(title=f"features ranker, leave-one-repository-out (window {args.window})")
    for col in ("held out", "track", "n", "top-1", "top-5", "top-10", "MRR"):
        table.add_column(col)
    held_rows: dict[tuple[str, str], list] = {}
    for held in names:
        w = fit([(ex["X"], ex["y"]) for (n, t), xs in data.items() if n != held and t != "null" for ex in xs])
        for track in TRACKS:
            rows = held_rows[held, track] = evaluate(data[held, track], w)
            r = np.array([rank for rank, _, _ in rows])
            table.add_row(held, track, str(len(r)), f"{(r <= 1).mean():.3f}", f"{(r <= 5).mean():.3f}",
                          f"{(r <= 10).mean():.3f}", f"{(1 / r).mean():.3f}")
    console.print(table)

    def calibrate(keys: list[tuple[str, str]]) -> Calibration:
        """The mass's scaling on these outcomes' real incidents, the gate on real against null."""
        real = [x for key in keys if key[1] != "null" for x in held_rows[key]]
        cal = fit_platt([s.mass for _, s, _ in real], [h for _, _, h in real])
        pooled = [(s, key[1] != "null") for key in keys for _, s, _ in held_rows[key]]
        cal.evidence = fit_evidence([s for s, _ in pooled], [e for _, e in pooled])
        return cal

    table = Table(title=f"confidence, leave-one-repository-out: share answered at >= {DEFAULT_MIN_CONFIDENCE} "
                        "(calibration fitted on the other two repositories)")
    for col in ("held out", "track", "n", "top-5", "answered v1", "answered", "accuracy answered"):
        table.add_column(col)
    held_out: list[tuple[float, bool]] = []  # (confidence, hit) under a calibration that never saw it
    for held in names:
        cal = calibrate([key for key in held_rows if key[0] != held])
        for track in TRACKS:
            rows = held_rows[held, track]
            conf = [cal(s) for _, s, _ in rows]
            held_out += [(c, h) for c, (_, _, h) in zip(conf, rows)]
            ok = [h for c, (_, _, h) in zip(conf, rows) if c >= DEFAULT_MIN_CONFIDENCE]
            table.add_row(held, track, str(len(rows)), f"{np.mean([r <= 5 for r, _, _ in rows]):.3f}",
                          f"{answered(PLATT_V1, rows):.3f}", f"{answered(cal, rows):.3f}",
                          f"{np.mean(ok):.3f}" if ok else "-")
    console.print(table)

    calibration = calibrate(list(held_rows))
    pooled = [x for rs in held_rows.values() for x in rs]
    gate = calibration.evidence
    console.print(f"calibration fitted on all: a={calibration.a:.3f} b={calibration.b:.3f}; evidence gate: "
                  + ", ".join(f"{n}={w:+.3f} (centre {c:.3f})"
                              for n, w, c in zip(gate.inputs, gate.weights, gate.centre))
                  + f", bias {gate.bias:+.3f}")
    console.print("reliability of the held-out confidence (each repository under the calibration fitted on "
                  "the other two; null incidents included):")
    for row in reliability([c for c, _ in held_out], [h for _, h in held_out]):
        console.print(f"  {row['bin']}: n={row['n']}, mean confidence {row['confidence']:.3f}, "
                      f"observed top-5 {row['observed']:.3f}")
    if args.write or args.write_weights:
        calibration.info.update({
            "source": "bench/fit_default_weights.py: signals under leave-one-repository-out weights on "
                      + ", ".join(names) + "; null incidents from the other repositories' titles",
            "window": args.window, "tracks": list(TRACKS), "signals_version": SIGNALS_VERSION,
            "fitted_on": {n: len(data[n, "title"]) for n in names}, "n": len(pooled),
            "hits": int(sum(h for _, _, h in pooled))})
        (DATA / "calibration.json").write_text(json.dumps(calibration_document({"features": calibration}), indent=1)
                                               + "\n")
        console.print(f"wrote {DATA / 'calibration.json'}")
    if args.write_weights:
        everything = [(ex["X"], ex["y"]) for (_, t), xs in data.items() if t != "null" for ex in xs]
        info = {"source": "bench/fit_default_weights.py",
                "fitted_on": {n: len(data[n, "title"]) for n in names},
                "tracks": ["title", "paths"], "window": args.window}
        fit(everything, info=info).save(DATA / "default_weights.json")
        console.print(f"wrote {DATA / 'default_weights.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
