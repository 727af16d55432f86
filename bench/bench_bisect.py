"""How many test runs `rcahook bisect` needs, against plain bisection and testing the
suggestions one by one, simulated on every protocol-v1 investigation (issue 13).

    python bench/bench_bisect.py NAME=MIRROR:INDEX ... [--tracks title,paths] [--window 500]
        [--cache /tmp/rcahook-bench-bisect] [--trials 10] [--noise 0.05] [--retries 2] [--rank-only]

Phase 1 ranks each investigation exactly as `rcahook backtest` does (rcahook.backtest:
mine_investigations, Replayer.ranking with the features ranker, the code graph at F^) and
keeps the ranking and its calibrated confidence in a JSONL cache under --cache (resumed
when interrupted). The index is copied there first (SQLite's backup, the source opened
read-only; an index of schema 4 gains schema 5's one column in the copy): building the
code graph at F^ caches parses in the index, and nothing is ever written into INDEX or
the MIRROR.

Phase 2 simulates, for each investigation, a bisection between good = the parent of the
window's oldest commit and bad = F^ (the range git bisect would search), with an oracle:
a revision is bad if and only if the culprit is an ancestor of it or it itself.

  (a) plain bisection: git bisect's even split (Space.plain_depths), no boundary checks;
  (b) rcahook bisect: the command's own loop (rcahook.bisect.search.run_search) with the
      ranking's prior (rcahook.bisect.prior), boundary checks included;
  (c) the suggestions one by one, in rank order, through the top 5: each suggestion S is
      run at S (good: innocent, 1 run) then, if bad, at S's parent (bad: innocent, 2 runs;
      good: S is the culprit, 2 runs); a culprit outside the top 5 then costs a plain
      bisection of the whole range on top.

Then (a) and (b) again with an oracle that answers wrongly with probability --noise on
every run (independently), --trials times per investigation: the share of simulations that
still name the right culprit, with and without --retries. The table (Markdown) goes to
stdout, progress and the planner's CPU time to stderr.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

TOP_KEPT = 300  # what a saved investigation keeps: the stage-1 cut
GOOD_REV, BAD_REV = "good-revision", "bad-revision"  # the boundaries, as the oracle knows them


# --- phase 1: rankings ---------------------------------------------------------------------

def _copy_index(index: Path, cache: Path, name: str) -> Path:
    """A private copy of the index: the code graph at F^ writes parses into it."""
    target = cache / "idx" / f"{name}.sqlite"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        import sqlite3

        src = sqlite3.connect(f"file:{index}?mode=ro", uri=True)
        dst = sqlite3.connect(target)
        src.backup(dst)  # a consistent copy, WAL included, read-only on the source
        _upgrade(dst)
        dst.close()
        src.close()
    return target


def _upgrade(conn) -> None:
    """Schema 4 -> 5 in the private copy: 5 only added `changes.unavailable` (a blob missing
    from a partial clone), always 0 in a full mirror, so this equals a rebuild."""
    from rcahook.index.store import SCHEMA_VERSION

    version = int(conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
    if version == 4 and SCHEMA_VERSION == 5:
        conn.execute("ALTER TABLE changes ADD COLUMN unavailable INTEGER NOT NULL DEFAULT 0")
        conn.execute("UPDATE meta SET value='5' WHERE key='schema_version'")
        conn.commit()


def rank_all(name: str, mirror: str, index: Path, *, cache: Path, track: str, window: int) -> Path:
    """Rank every investigation of `name` on `track`; returns the cache file (JSONL)."""
    from rcahook.backtest.mine import mine_investigations
    from rcahook.backtest.run import Replayer, query_for
    from rcahook.codegraph.graph import graph_at
    from rcahook.index.gitrepo import Repo
    from rcahook.index.reader import History
    from rcahook.rca.confidence import load_calibration, raw_confidence, signals_for
    from rcahook.rca.model import load_weights

    out = cache / f"{name}-{track}-{window}.jsonl"
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            try:
                done.add(json.loads(line)["fix"])
            except (ValueError, KeyError):
                pass
    repo = Repo(mirror)
    head = repo.resolve("HEAD")
    history = History.open(_copy_index(index, cache, name))
    try:
        mined = mine_investigations(history, head, window=window)
        replayer = Replayer(history, track=track, weights=load_weights(None), culprits=history.culprit_of(),
                            graph_at=lambda rev: graph_at(history.conn, repo, rev))
        calibration = load_calibration("features", None)
        todo = [inv for inv in mined if inv.fix not in done]
        print(f"{name}/{track}: {len(mined)} investigations, {len(todo)} to rank", file=sys.stderr)
        started = time.perf_counter()
        with open(out, "a") as f:
            for i, inv in enumerate(todo, 1):
                ranking = replayer.ranking(inv, "features")
                shown = ranking.candidates
                raw = raw_confidence([c.probability for c in shown[:5]])
                signals = signals_for(shown, query_text=query_for(inv, track).text,
                                      background=ranking.retrieval.background, mass=raw)
                f.write(json.dumps({
                    "fix": inv.fix, "culprit": inv.culprit, "parent": inv.parent, "head": head,
                    "window": list(inv.candidates), "confidence": calibration(signals), "raw": raw,
                    "ranked": [[c.sha, c.probability] for c in shown[:TOP_KEPT]],
                }) + "\n")
                f.flush()
                if i % 25 == 0:
                    print(f"  {i}/{len(todo)} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    finally:
        history.close()
    return out


def load_rankings(path: Path) -> list[dict]:
    rows = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by an interrupted run
        rows[row["fix"]] = row
    return list(rows.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repos", nargs="+", help="NAME=MIRROR:INDEX")
    parser.add_argument("--tracks", default="title")
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--cache", default="/tmp/rcahook-bench-bisect")
    parser.add_argument("--trials", type=int, default=10, help="noisy simulations per investigation")
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rank-only", action="store_true")
    opts = parser.parse_args()
    cache = Path(opts.cache)
    cache.mkdir(parents=True, exist_ok=True)
    specs = []
    for spec in opts.repos:
        name, _, rest = spec.partition("=")
        mirror, _, index = rest.rpartition(":")
        specs.append((name, mirror, Path(index)))
    tracks = [t.strip() for t in opts.tracks.split(",") if t.strip()]
    files = {}
    for track in tracks:
        for name, mirror, index in specs:
            files[(name, track)] = rank_all(name, mirror, index, cache=cache, track=track, window=opts.window)
    if opts.rank_only:
        return 0
    return simulate_all(specs, tracks, files, opts)


# --- phase 2: simulation --------------------------------------------------------------------

def space_for(history, row: dict):
    """good..bad as the command builds it: bad = F^, good = the parent of the window's oldest."""
    from rcahook.bisect.space import build_space

    parents = history.parents
    times = {}

    def commit_time(sha: str) -> int:
        if sha not in times:
            found = history.commits([sha])
            times[sha] = found[0].committer_time if found else 0
        return times[sha]

    return build_space(row["parent"], list(parents(row["window"][-1])[:1]), parents, commit_time)


def oracle(space, culprit: int, *, noise: float = 0.0, rng: random.Random | None = None):
    """runner(sha) for rcahook.bisect.search: bad iff the culprit is the revision or an ancestor
    of it (the good and bad revisions answer as they are), wrong with probability `noise`."""
    from rcahook.bisect.plan import BAD, GOOD
    from rcahook.bisect.run import RunResult

    index = {sha: i for i, sha in enumerate(space.shas)}
    A = space.ancestry

    def runner(sha: str) -> RunResult:
        i = index.get(sha)
        bad = bool(A[i, culprit]) if i is not None else sha == BAD_REV
        if noise and rng.random() < noise:
            bad = not bad
        return RunResult(BAD if bad else GOOD, 1 if bad else 0, 0.0, "")

    return runner


def rcahook_bisect(space, prior, culprit: int, *, retries: int = 0, noise: float = 0.0,
                   rng: random.Random | None = None) -> tuple[int, bool]:
    """(runs, named the right culprit) of rcahook.bisect.search.run_search against the oracle."""
    from rcahook.bisect.search import run_search
    from rcahook.errors import BisectError

    runner = oracle(space, culprit, noise=noise, rng=rng)
    runs = [0]

    def counted(sha: str):
        runs[0] += 1
        return runner(sha)

    try:
        search = run_search(space, prior, good=GOOD_REV, bad=BAD_REV, runner=counted, retries=retries,
                            max_runs=60)
    except BisectError:  # a wrong answer at a boundary: "the good revision is not good"
        return runs[0], False
    return runs[0], search.culprit == space.shas[culprit]


def plain_noisy(space, culprit: int, *, noise: float, rng: random.Random) -> tuple[int, bool]:
    """git bisect's even split against a noisy oracle (no boundary checks, no retries)."""
    import numpy as np

    left = np.arange(len(space))
    runs = 0
    while len(left) > 1:
        sub = space.ancestry[np.ix_(left, left)]
        count_bad = sub.sum(axis=1)
        by_count = np.abs(count_bad - len(left) / 2)
        by_count[(count_bad == 0) | (count_bad == len(left))] = np.inf
        t = int(np.argmin(by_count))
        bad = bool(space.ancestry[left[t], culprit])
        if rng.random() < noise:
            bad = not bad
        runs += 1
        left = left[sub[t]] if bad else left[~sub[t]]
    return runs, bool(len(left) and left[0] == culprit)


def one_by_one(space, ranked: list[str], culprit: int, plain: int, *, top: int = 5) -> int:
    """(c): each of the top suggestions run at itself, then (if bad) at its parent; a culprit
    outside them then costs a plain bisection on top."""
    index = {sha: i for i, sha in enumerate(space.shas)}
    runs = 0
    for sha in ranked[:top]:
        i = index.get(sha)
        if i is None:
            continue
        if i == culprit:
            return runs + 2  # bad at itself, good at its parent
        runs += 2 if space.ancestry[i, culprit] else 1
    return runs + plain


def _p90(values) -> float:
    import numpy as np

    return float(np.percentile(values, 90)) if len(values) else float("nan")


def simulate(name: str, track: str, rows: list[dict], index_path: Path, opts) -> dict:
    import numpy as np

    from rcahook.bisect.prior import prior_masses
    from rcahook.index.reader import History

    history = History.open(index_path)
    a, b, c, sizes, excess, seconds = [], [], [], [], [], []
    noisy = {"plain": [], "rcahook": [], "retries": []}
    noisy_runs = {"plain": [], "rcahook": [], "retries": []}
    rng = random.Random(opts.seed)
    try:
        for row in rows:
            space = space_for(history, row)
            culprit = space.index(row["culprit"])
            plain = int(space.plain_depths(np.arange(len(space)))[culprit])
            prior = prior_masses(space.shas, row["ranked"])
            started = time.perf_counter()
            runs, right = rcahook_bisect(space, prior, culprit)
            seconds.append(time.perf_counter() - started)
            assert right, f"{name} {row['fix']}: the exact oracle named the wrong culprit"
            a.append(plain)
            b.append(runs)
            excess.append(runs - plain)
            c.append(one_by_one(space, [s for s, _ in row["ranked"]], culprit, plain))
            sizes.append(len(space))
            for _ in range(opts.trials):
                for key, run in (("plain", lambda: plain_noisy(space, culprit, noise=opts.noise, rng=rng)),
                                 ("rcahook", lambda: rcahook_bisect(space, prior, culprit, noise=opts.noise, rng=rng)),
                                 ("retries", lambda: rcahook_bisect(space, prior, culprit, retries=opts.retries,
                                                                    noise=opts.noise, rng=rng))):
                    n, ok = run()
                    noisy[key].append(ok)
                    noisy_runs[key].append(n)
    finally:
        history.close()
    return {"repo": name, "track": track, "n": len(rows), "size": float(np.mean(sizes)),
            "plain": (float(np.mean(a)), _p90(a)), "rcahook": (float(np.mean(b)), _p90(b)),
            "one_by_one": (float(np.mean(c)), _p90(c)), "max_excess": int(max(excess)),
            "over_bound": int(sum(e > 2 for e in excess)), "planner_s": float(np.mean(seconds)),
            "noisy": {k: (float(np.mean(v)), float(np.mean(noisy_runs[k]))) for k, v in noisy.items()},
            "a": a, "b": b, "c": c}


def _row(r: dict) -> list[str]:
    nz = r["noisy"]
    return [f"{r['repo']} ({r['n']})", r["track"], f"{r['size']:.0f}",
            f"{r['plain'][0]:.2f} / {r['plain'][1]:.0f}", f"**{r['rcahook'][0]:.2f}** / {r['rcahook'][1]:.0f}",
            f"{r['rcahook'][0] / r['plain'][0]:.2f}", f"{r['max_excess']:+d} ({r['over_bound']})",
            f"{r['one_by_one'][0]:.2f} / {r['one_by_one'][1]:.0f}",
            f"{nz['plain'][0]:.3f} ({nz['plain'][1]:.1f})", f"{nz['rcahook'][0]:.3f} ({nz['rcahook'][1]:.1f})",
            f"{nz['retries'][0]:.3f} ({nz['retries'][1]:.1f})"]


def simulate_all(specs, tracks, files, opts) -> int:
    cache = Path(opts.cache)
    results = []
    for track in tracks:
        pooled = {"a": [], "b": [], "c": []}
        for name, _, _ in specs:
            rows = load_rankings(files[(name, track)])
            started = time.perf_counter()
            r = simulate(name, track, rows, cache / "idx" / f"{name}.sqlite", opts)
            print(f"{name}/{track}: simulated in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            results.append(r)
            for k in pooled:
                pooled[k] += r[k]
        if len(specs) > 1:
            import numpy as np

            n = len(pooled["a"])
            results.append({"pooled": True, "track": track, "n": n,
                            "plain": (float(np.mean(pooled["a"])), _p90(pooled["a"])),
                            "rcahook": (float(np.mean(pooled["b"])), _p90(pooled["b"])),
                            "one_by_one": (float(np.mean(pooled["c"])), _p90(pooled["c"]))})
    header = ["repository (investigations)", "track", "commits searched", "(a) plain: mean / p90",
              "(b) rcahook: mean / p90", "(b)/(a)", "max (b)-(a) (cases > +2)", "(c) one by one: mean / p90",
              f"{opts.noise:.0%} wrong: plain right (runs)", "rcahook right (runs)",
              f"--retries {opts.retries} right (runs)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        if r.get("pooled"):
            cells = [f"all ({r['n']})", r["track"], "", f"{r['plain'][0]:.2f} / {r['plain'][1]:.0f}",
                     f"**{r['rcahook'][0]:.2f}** / {r['rcahook'][1]:.0f}", f"{r['rcahook'][0] / r['plain'][0]:.2f}",
                     "", f"{r['one_by_one'][0]:.2f} / {r['one_by_one'][1]:.0f}", "", "", ""]
        else:
            cells = _row(r)
        lines.append("| " + " | ".join(cells) + " |")
    print("\n".join(lines))
    for r in results:
        if not r.get("pooled"):
            print(f"{r['repo']}/{r['track']}: planner {r['planner_s'] * 1000:.0f} ms per bisection (CPU, the oracle "
                  f"answers instantly)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
