from __future__ import annotations

import textwrap

import pytest

from rcahook.codegraph import build
from rcahook.codegraph import graph as graph_module
from rcahook.codegraph.build import graph_files_at, update_graph
from rcahook.codegraph.graph import CodeGraph, graph_at, load_graph
from rcahook.codegraph.parse import parse_source
from rcahook.index import store
from rcahook.index.gitrepo import Repo


def _src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


@pytest.fixture
def conn(tmp_path):
    c = store.open_index(tmp_path / "index.sqlite")
    yield c
    c.close()


def _graph(files: dict[str, str], *, aux: tuple[str, ...] = ()) -> CodeGraph:
    return CodeGraph({p: parse_source(p, s.encode()) for p, s in files.items()}, rev="test", aux_paths=aux)


def _calls(g: CodeGraph, node: str) -> list[str]:
    return g.callees(node)


# --- resolution -----------------------------------------------------------------------------------

def test_python_calls_prefer_what_the_file_imports():
    g = _graph({
        "shop/money.py": "def helper():\n    return 1\n",
        "shop/text.py": "def helper():\n    return 2\n",
        "shop/cart.py": _src("""
            from shop.money import helper
            from . import text


            class Cart:
                def total(self):
                    return helper() + self.tax()

                def tax(self):
                    return text.helper()


            def tax():
                return 0
            """),
    })
    assert _calls(g, "def:shop/cart.py:Cart.total") == ["def:shop/cart.py:Cart.tax", "def:shop/money.py:helper"]
    # text.helper(): the imported module's helper, not money's
    assert _calls(g, "def:shop/cart.py:Cart.tax") == ["def:shop/text.py:helper"]
    assert g.callers("helper") == ["def:shop/cart.py:Cart.tax", "def:shop/cart.py:Cart.total"]
    assert g.graph.has_edge("file:shop/cart.py", "file:shop/money.py")
    assert g.graph.edges["file:shop/cart.py", "file:shop/money.py"]["kind"] == "imports"
    assert g.graph.edges["def:shop/cart.py:Cart", "def:shop/cart.py:Cart.tax"]["kind"] == "contains"


def test_python_global_names_resolve_only_when_unique():
    g = _graph({
        "a.py": "def once():\n    pass\n\n\ndef twice():\n    pass\n",
        "b.py": "def twice():\n    pass\n",
        "lib/c.py": "def run():\n    once()\n    twice()\n    print()\n",
    })
    assert _calls(g, "def:lib/c.py:run") == ["def:a.py:once"]
    assert g.ambiguous["twice"] == 1
    assert g.stats()["unresolved_calls"] == 1  # print: defined nowhere in the repository


def test_javascript_calls_follow_es_imports():
    g = _graph({
        "web/util.js": "export function format(x) {\n  return x;\n}\n",
        "web/legacy.js": "export function format(x) {\n  return 'old';\n}\n",
        "web/view.ts": _src("""
            import { format } from './util.js';

            export function render(x: number): string {
              return format(x);
            }
            """),
    })
    assert _calls(g, "def:web/view.ts:render") == ["def:web/util.js:format"]


def test_c_prefers_same_file_then_included_header_companion():
    g = _graph({
        "lib/list.h": "int list_add(int x);\n",
        "lib/list.c": "int list_add(int x)\n{\n\treturn x;\n}\n\nstatic int helper(void)\n{\n\treturn 0;\n}\n",
        "other/list2.c": "int list_add(int x)\n{\n\treturn -x;\n}\n",
        "app/main.c": _src("""
            #include "../lib/list.h"

            static int helper(void)
            {
            \treturn 1;
            }

            int main(void)
            {
            \treturn list_add(helper());
            }
            """),
    })
    assert _calls(g, "def:app/main.c:main") == ["def:app/main.c:helper", "def:lib/list.c:list_add"]


def test_go_calls_resolve_within_the_package_directory():
    g = _graph({
        "store/db.go": "package store\n\nfunc Open() int {\n\treturn connect()\n}\n",
        "store/conn.go": "package store\n\nfunc connect() int {\n\treturn 1\n}\n",
        "cache/conn.go": "package cache\n\nfunc connect() int {\n\treturn 2\n}\n",
        "cmd/main.go": _src("""
            package main

            import "example.com/app/cache"

            func main() {
            \tcache.connect()
            }
            """),
    }, aux=("go.mod",))
    assert _calls(g, "def:store/db.go:Open") == ["def:store/conn.go:connect"]
    assert _calls(g, "def:cmd/main.go:main") == ["def:cache/conn.go:connect"]  # pkg.F: the imported package


def test_common_names_are_ambiguous_not_fanned_out():
    files = {f"mod{i}/x.c": "int init(void)\n{\n\treturn 0;\n}\n" for i in range(graph_module.FANOUT_CAP + 2)}
    files["main.c"] = "int main(void)\n{\n\treturn init();\n}\n"
    g = _graph(files)
    assert _calls(g, "def:main.c:main") == []
    assert g.ambiguous["init"] == 1
    assert g.stats()["ambiguous_names"] == 1


def test_distances_and_neighbors():
    g = _graph({
        "a.py": "def f():\n    g()\n\n\ndef g():\n    h()\n\n\ndef h():\n    pass\n",
        "b.py": "def far():\n    pass\n",
    })
    dist = g.distances_from(["def:a.py:f"], max_depth=4)
    assert dist["def:a.py:f"] == 0 and dist["def:a.py:g"] == 1 and dist["file:a.py"] == 1
    assert dist["def:a.py:h"] == 2
    assert "def:b.py:far" not in dist
    assert g.distance(["def:a.py:f"], ["def:a.py:h"]) == 2
    assert g.distance(["def:a.py:f"], ["def:b.py:far"]) is None
    assert g.distance(["def:a.py:f"], ["def:a.py:f", "x"]) == 0
    assert g.neighbors("g", 1) == [("def:a.py:f", 1), ("def:a.py:h", 1), ("file:a.py", 1)]
    assert g.definitions_named("h") == ["def:a.py:h"]
    assert g.definitions_in("a.py") == ["def:a.py:f", "def:a.py:g", "def:a.py:h"]
    assert g.resolve("a.py") == ["file:a.py"]
    stats = g.stats()
    assert stats["files"] == 2 and stats["definitions"] == 4
    assert stats["edges"] == {"contains": 4, "imports": 0, "calls": 2}


def test_file_level_calls_share_the_contains_edge():
    g = _graph({"m.py": "def main():\n    pass\n\n\ndef other():\n    pass\n\n\nmain()\n"})
    assert g.callers("main") == ["file:m.py"]
    assert g.graph.edges["file:m.py", "def:m.py:main"] == {"kind": "contains", "calls": 1}
    assert g.graph.edges["file:m.py", "def:m.py:other"] == {"kind": "contains"}
    assert g.stats()["edges"] == {"contains": 2, "imports": 0, "calls": 1}


# --- building from git objects ------------------------------------------------------------------------

def _count_parses(monkeypatch) -> list[str]:
    parsed: list[str] = []
    real = build.parse_blob

    def counting(repo, path, blob, *, full):
        parsed.append(path)
        return real(repo, path, blob, full=full)

    monkeypatch.setattr(build, "parse_blob", counting)
    return parsed


def test_update_graph_cold_then_incremental(repo, conn, monkeypatch):
    monkeypatch.setattr(build, "MAX_BLOB_BYTES", 4000)
    first = repo.commit("start", {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import helper\n\n\ndef run():\n    return helper()\n",
        "pkg/b.py": "def helper():\n    return 1\n",
        "README.md": "# readme\n",
        "data.c": b"\x00\x01binary",
        "gen.py": "x = 1\n" * 1000,
    })
    r = Repo(repo.path)
    parsed = _count_parses(monkeypatch)
    state = update_graph(conn, r, "HEAD", jobs=1)
    assert (state.rev, state.files, state.defs) == (first, 3, 2)
    assert state.edges is None  # counting edges builds the whole graph: `rcahook graph stats` does
    assert load_graph(conn).stats()["edges"] == {"contains": 2, "imports": 1, "calls": 1}
    assert state.skipped == {"unsupported": 1, "oversize": 1, "binary": 1, "missing": 0}
    assert sorted(parsed) == ["data.c", "pkg/__init__.py", "pkg/a.py", "pkg/b.py"]  # gen.py: too big to read
    assert sorted(p for (p,) in conn.execute("SELECT path FROM graph_files")) == [
        "pkg/__init__.py", "pkg/a.py", "pkg/b.py"]
    assert conn.execute("SELECT COUNT(*), MIN(full) FROM blob_parse").fetchone() == (3, 1)

    second = repo.commit("change one file", {
        "pkg/b.py": "def helper():\n    return 2\n\n\ndef other():\n    pass\n",
        "README.md": None, "docs.txt": "more\n"})
    parsed.clear()
    state = update_graph(conn, r, "HEAD", jobs=1)
    assert parsed == ["pkg/b.py"]  # only the changed file is read and parsed
    assert (state.rev, state.files, state.defs, state.parsed) == (second, 3, 3, 1)
    assert state.skipped == {"unsupported": 1, "oversize": 1, "binary": 1, "missing": 0}
    assert store.get_meta(conn, "graph_rev") == second
    assert load_graph(conn).definitions_named("other") == ["def:pkg/b.py:other"]

    # back to the first revision: its blobs are all cached, nothing is parsed
    parsed.clear()
    state = update_graph(conn, r, first, jobs=1)
    assert parsed == [] and state.defs == 2 and state.rev == first


def test_update_graph_twice_at_the_same_rev_parses_nothing(repo, conn, monkeypatch):
    repo.commit("start", {"a.py": "def f():\n    pass\n"})
    r = Repo(repo.path)
    update_graph(conn, r, "HEAD", jobs=1)
    parsed = _count_parses(monkeypatch)
    assert update_graph(conn, r, "HEAD", jobs=1).files == 1
    assert parsed == []


def test_graph_files_at_an_old_revision_leaves_the_indexed_graph_alone(repo, conn):
    old = repo.commit("one", {"a.py": "def f():\n    pass\n"})
    repo.commit("two", {"b.py": "def g():\n    f()\n", "a.py": "def f():\n    pass\n\n\ndef f2():\n    pass\n"})
    r = Repo(repo.path)
    update_graph(conn, r, "HEAD", jobs=1)
    before = sorted(conn.execute("SELECT * FROM graph_files"))
    assert list(graph_files_at(conn, r, old)) == ["a.py"]
    assert sorted(conn.execute("SELECT * FROM graph_files")) == before
    at_old = graph_at(conn, r, old)
    assert at_old.rev == old and at_old.definitions_named("f2") == []
    assert graph_at(conn, r, "HEAD") is load_graph(conn)  # the indexed revision: the loaded graph
    assert graph_at(conn, r, old) is at_old  # cached per process


def test_parallel_cold_build_matches_serial(repo, conn, monkeypatch):
    files = {f"m{i}.py": f"def f{i}():\n    return f{(i + 1) % 80}()\n" for i in range(80)}
    repo.commit("many", files)
    r = Repo(repo.path)
    monkeypatch.setattr(build, "PARALLEL_MIN_BLOBS", 8)
    from test_codegraph_history import _recording_pools

    pools = _recording_pools(monkeypatch)
    state = update_graph(conn, r, "HEAD", jobs=2)
    assert [pool.parallel for pool in pools] == [True]  # parsed in worker processes
    assert (state.files, state.defs, state.parsed) == (80, 80, 80)
    assert sum(load_graph(conn).stats()["edges"].values()) == 80 + 80
