"""The partial code graph (rcahook/codegraph/local.py) against the whole graph, on a real index.

    python bench/check_local_graph.py INDEX REPO [--samples 40] [--seed 1]

Random starts (zero to two definition names, and a file or not), three edges deep as the
investigation's graph hops go: the distance maps must be identical; then the caller counts
of 300 random names. Prints how many matched, the mean time of a partial graph and how many
files it loaded. Works on a copy of INDEX (the graph's terms are written if it lacks them).
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("index")
    ap.add_argument("repo")
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from rcahook.codegraph import build, local
    from rcahook.codegraph.graph import load_graph
    from rcahook.index import store
    from rcahook.index.gitrepo import Repo
    from rcahook.rca.retrieve import GRAPH_DEPTH

    local.SMALL_TREE = 0  # the partial graph is what is compared, whatever the tree's size
    local.WHOLE_SHARE = 2.0
    with tempfile.TemporaryDirectory(prefix="check_local_graph_") as tmp:
        db = Path(tmp) / "index.sqlite"
        shutil.copy(args.index, db)
        conn = store.open_index(db)
        build.update_graph(conn, Repo(args.repo), store.get_meta(conn, "graph_rev") or "HEAD")
        full = load_graph(conn)
        rng = random.Random(args.seed)
        names = sorted({full.node(n)["name"] for n in full.graph if n.startswith("def:")})
        files = sorted(full._by_path)
        same, spent, loaded = 0, 0.0, []
        for _ in range(args.samples):
            chosen = rng.sample(names, rng.choice([0, 1, 2]))
            paths = rng.sample(files, rng.choice([0, 1]) if chosen else 1)

            def starts(g, chosen=chosen, paths=paths) -> list[str]:
                return ([n for name in sorted(chosen) for n in g.definitions_named(name)]
                        + [n for p in paths for n in g.definitions_in(p)])

            started = time.perf_counter()
            part = local.neighbourhood(conn, names=chosen, paths=paths, depth=GRAPH_DEPTH)
            spent += time.perf_counter() - started
            loaded.append(len(part._by_path))
            same += part.distances_from(starts(part), GRAPH_DEPTH) == full.distances_from(starts(full), GRAPH_DEPTH)
        loaded.sort()
        print(f"distances: {same} of {args.samples} identical; a partial graph {spent / args.samples * 1000:.0f} ms"
              f" on average, files loaded median {loaded[len(loaded) // 2]}, max {loaded[-1]}, of {len(files)}")
        asked = rng.sample(names, min(300, len(names)))
        want = {n: c for n in asked if (c := len(full.callers(n)))}
        got = local.callers_counts(conn, asked)
        print(f"caller counts: {'identical' if got == want else 'DIFFERENT'} ({len(want)} of {len(asked)} names"
              " have callers)")
        conn.close()
        return 0 if same == args.samples and got == want else 1


if __name__ == "__main__":
    sys.exit(main())
