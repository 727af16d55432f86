"""The code graph around some names and files (codegraph/local.py) answers as the whole graph does."""
from __future__ import annotations

import textwrap

import pytest

from rcahook.codegraph import local
from rcahook.codegraph.build import update_graph
from rcahook.codegraph.graph import load_graph
from rcahook.index import store
from rcahook.index.gitrepo import Repo
from rcahook.rca.retrieve import GRAPH_DEPTH


def _src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


# Several languages, imports of every kind the resolvers know, a name defined in more files
# than the fan-out cap (ambiguous across the tree, resolvable in a directory), methods, and
# a chain of calls longer than the depth.
FILES: dict[str, str | None] = {
    "py/pkg/__init__.py": "def init():\n    return 0\n",
    "py/pkg/core.py": _src("""
        from . import init
        from .util import fmt


        class Engine:
            def start(self):
                return self.step() + fmt(init())

            def step(self):
                return chain_a()


        def chain_a():
            return chain_b()


        def chain_b():
            return chain_c()


        def chain_c():
            return chain_d()


        def chain_d():
            return 4
        """),
    "py/pkg/util.py": "def fmt(x):\n    return str(x)\n\n\ndef init():\n    return fmt(1)\n",
    "py/app/main.py": _src("""
        from pkg.core import Engine
        import pkg.util


        def main():
            return Engine().start() + pkg.util.fmt(2)
        """),
    "c/net/link.h": "int link_up(int fd);\n",
    "c/net/link.c": ('#include "link.h"\n\nint link_up(int fd) { return helper(fd); }\n'
                     "int helper(int x) { return x; }\n"),
    "c/tools/ip.c": '#include "net/link.h"\n\nint main(void) { return link_up(3) + helper(1); }\n',
    "js/lib/index.js": "export function render(x) { return paint(x); }\nexport function paint(x) { return x; }\n",
    "js/app.js": "import { render } from './lib/index.js';\nfunction run() { return render(1); }\n",
    "go/go.mod": "module example.com/m\n",
    "go/store/db.go": "package store\n\nfunc Open() int { return dial() }\nfunc dial() int { return 1 }\n",
    "go/cmd/main.go": 'package main\n\nimport "example.com/m/store"\n\nfunc main() { store.Open() }\n',
    "rs/src/lib.rs": "mod net;\nuse crate::net::connect;\npub fn start() -> i32 { connect() }\n",
    "rs/src/net.rs": "pub fn connect() -> i32 { retry() }\nfn retry() -> i32 { 0 }\n",
    "java/src/com/x/Pool.java": ("package com.x;\n"
                                 "public class Pool { public int take() { return grow(); }\n"
                                 "  int grow() { return 1; } }\n"),
    "java/src/com/x/App.java": ("package com.x;\nimport com.x.Pool;\n"
                                "public class App { int run() { return new Pool().take(); } }\n"),
}
for i in range(7):  # `handle` in seven directories: more than the fan-out cap
    FILES[f"svc{i}/handler.py"] = f"def handle():\n    return {i}\n\n\ndef serve():\n    return handle()\n"
FILES["svc0/other.py"] = "from svc1.handler import handle\n\n\ndef relay():\n    return handle()\n"


@pytest.fixture(autouse=True)
def every_tree_is_large(monkeypatch):
    # the partial graph is what these tests check; a tree this small is read whole otherwise
    monkeypatch.setattr(local, "SMALL_TREE", 0)


@pytest.fixture
def indexed(repo, tmp_path):
    repo.commit("start", FILES)
    conn = store.open_index(tmp_path / "index.sqlite")
    r = Repo(repo.path)
    update_graph(conn, r, "HEAD", jobs=1)
    yield repo, r, conn
    conn.close()


def _all_names(graph) -> list[str]:
    return sorted({graph.node(n)["name"] for n in graph.graph if n.startswith("def:")})


def _assert_same(conn) -> int:
    """Every name and every file as a start: the same distances as the whole graph."""
    full = load_graph(conn)
    checked = 0
    starts = [([name], []) for name in _all_names(full)] + [([], [path]) for path in sorted(full._by_path)]
    starts.append((["handle", "chain_a"], ["c/tools/ip.c"]))
    for names, paths in starts:
        want = full.distances_from([*(n for name in names for n in full.definitions_named(name)),
                                    *(n for p in paths for n in full.definitions_in(p))], GRAPH_DEPTH)
        part = local.neighbourhood(conn, names=names, paths=paths, depth=GRAPH_DEPTH)
        got = part.distances_from([*(n for name in names for n in part.definitions_named(name)),
                                   *(n for p in paths for n in part.definitions_in(p))], GRAPH_DEPTH)
        assert got == want, (names, paths)
        checked += 1
    names = _all_names(full)
    assert local.callers_counts(conn, names) == {n: len(full.callers(n)) for n in names if full.callers(n)}
    return checked


def test_the_neighbourhood_has_the_whole_graphs_distances_and_callers(indexed):
    _, _, conn = indexed
    assert local.terms_ready(conn)
    assert _assert_same(conn) > 40
    # an ambiguous call stays ambiguous: svc0/other.py's import picks svc1's handle
    full = load_graph(conn)
    assert full.callees("def:svc0/other.py:relay") == ["def:svc1/handler.py:handle"]


def test_the_neighbourhood_reads_only_what_it_reaches(indexed):
    _, _, conn = indexed
    part = local.neighbourhood(conn, names=["connect"], paths=[], depth=GRAPH_DEPTH)
    # the Rust crate and nothing of the Python, C, Go or Java code
    assert {p.split("/")[0] for p in part._by_path} == {"rs"}
    assert part.distances_from(part.definitions_named("connect"), GRAPH_DEPTH)["def:rs/src/net.rs:retry"] == 1


def test_terms_follow_incremental_updates(indexed):
    repo, r, conn = indexed
    repo.commit("move, change, delete", {
        "py/pkg/util.py": None,
        "py/pkg/fmt.py": "def fmt(x):\n    return repr(x)\n",
        "py/pkg/core.py": FILES["py/pkg/core.py"].replace("from .util import fmt", "from .fmt import fmt"),
        "c/net/link.c": '#include "link.h"\n\nint link_up(int fd) { return fd; }\n',
        "svc3/handler.py": None,
    })
    before = update_graph(conn, r, "HEAD~1", jobs=1).defs  # the count is kept per revision
    state = update_graph(conn, r, "HEAD", jobs=1)
    assert local.terms_ready(conn)
    assert not conn.execute("SELECT 1 FROM graph_terms WHERE path IN ('py/pkg/util.py', 'svc3/handler.py')").fetchone()
    # moved by the files that changed, it equals a count of every term
    total = conn.execute("SELECT SUM(n) FROM graph_terms WHERE kind = 0").fetchone()[0]
    assert state.defs == total != before
    assert store.get_meta(conn, "graph_defs") == f"{r.resolve('HEAD')}:{total}"
    assert _assert_same(conn) > 40


def test_a_small_tree_is_read_whole(indexed, monkeypatch):
    _, _, conn = indexed
    monkeypatch.setattr(local, "SMALL_TREE", 10_000)
    part = local.neighbourhood(conn, names=["connect"], paths=[], depth=GRAPH_DEPTH)
    assert part is load_graph(conn)


def test_a_question_reaching_much_of_the_tree_is_answered_from_the_whole_graph(indexed, monkeypatch):
    _, _, conn = indexed
    monkeypatch.setattr(local, "WHOLE_SHARE", 0.05)
    assert local.neighbourhood(conn, names=["chain_a"], paths=[], depth=GRAPH_DEPTH) is load_graph(conn)
    monkeypatch.setattr(local, "WHOLE_SHARE", 1.0)
    assert local.neighbourhood(conn, names=["chain_a"], paths=[], depth=GRAPH_DEPTH) is not load_graph(conn)


def test_an_index_without_terms_gains_them_on_the_next_update(indexed):
    _, r, conn = indexed
    with store.transaction(conn):
        conn.execute("DROP TABLE graph_terms")
        conn.execute("DELETE FROM meta WHERE key = 'graph_terms_rev'")
    assert not local.terms_ready(conn)
    update_graph(conn, r, "HEAD", jobs=1)  # same revision: only the terms are written
    assert local.terms_ready(conn)
    assert _assert_same(conn) > 40


def test_past_the_budget_the_answer_stops_at_the_depth_reached(indexed, monkeypatch):
    """On a large tree the whole graph is no fallback (68 s and 3.8 GB at 61,538 files): a
    question that would load more than LARGE_BUDGET files keeps the levels it has, which are
    exact; it never claims a node nearer than it is."""
    _, _, conn = indexed
    monkeypatch.setattr(local, "WHOLE_SHARE", 1.0)
    full = load_graph(conn)
    starts_full = [n for name in ("chain_a", "handle") for n in full.definitions_named(name)]
    want = full.distances_from(starts_full, GRAPH_DEPTH)
    monkeypatch.setattr(local, "LARGE_BUDGET", 8)
    part = local.neighbourhood(conn, names=["chain_a", "handle"], paths=[], depth=GRAPH_DEPTH)
    assert part is not full
    got = part.distances_from([n for name in ("chain_a", "handle") for n in part.definitions_named(name)],
                              GRAPH_DEPTH)
    assert {n for n, d in got.items() if d == 0} == {n for n, d in want.items() if d == 0}
    assert all(want[n] <= d for n, d in got.items())
    assert len(got) < len(want)  # it stopped short


def test_callers_past_the_budget_are_counted_from_the_terms(indexed, monkeypatch):
    """Counting callers exactly loads every file that may call: past LARGE_BUDGET files on a
    large tree, each name counts the files that reference it instead (no graph is built)."""
    _, _, conn = indexed
    exact = local.callers_counts(conn, ["handle", "link_up"])
    assert exact["handle"] == 8 and exact["link_up"] == 1  # seven serve()s and relay(); main()
    used = []
    real = local._referencing_files
    monkeypatch.setattr(local, "_referencing_files", lambda *a: used.append(1) or real(*a))
    assert local.callers_counts(conn, ["handle", "link_up"]) == exact and not used
    monkeypatch.setattr(local, "LARGE_BUDGET", 2)
    monkeypatch.setattr(local, "_whole", lambda conn: pytest.fail("no graph past the budget"))
    proxy = local.callers_counts(conn, ["handle", "link_up"])
    assert used and proxy == {"handle": 8, "link_up": 1}  # svc*/handler.py, svc0/other.py; ip.c
