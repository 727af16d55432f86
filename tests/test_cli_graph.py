from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner

from rcahook.cli import cli
from rcahook.errors import IndexMissingError, NotFoundError


def _src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


@pytest.fixture
def indexed(repo):
    repo.commit("start", {
        "app/util.py": "def foo():\n    return 1\n\n\ndef unused():\n    pass\n",
        "app/main.py": _src("""
            from app.util import foo


            def main():
                return foo()


            class Runner:
                def run(self):
                    return foo() + main()
            """),
        "README.md": "# app\n",
    })
    result = CliRunner().invoke(cli, ["index", "--repo", str(repo.path), "--quiet"])
    assert result.exit_code == 0, result.output
    return repo


def _json(args: list[str]) -> dict:
    result = CliRunner().invoke(cli, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_callers_json(indexed):
    data = _json(["graph", "callers", "foo", "--repo", str(indexed.path)])
    assert [t["node"] for t in data["targets"]] == ["def:app/util.py:foo"]
    assert [(c["node"], c["kind"], c["calls"]) for c in data["callers"]] == [
        ("def:app/main.py:Runner.run", "method", ["def:app/util.py:foo"]),
        ("def:app/main.py:main", "function", ["def:app/util.py:foo"]),
    ]
    assert data["callers"][1]["start"] == 4 and data["callers"][1]["path"] == "app/main.py"
    assert data["ambiguous_calls"] == 0
    assert len(data["rev"]) == 40


def test_symbols_stats_and_neighbors_json(indexed):
    symbols = _json(["graph", "symbols", "app/main.py", "--repo", str(indexed.path)])
    assert [(s["qualname"], s["kind"], s["start"], s["end"]) for s in symbols["symbols"]] == [
        ("main", "function", 4, 5), ("Runner", "class", 8, 10), ("Runner.run", "method", 9, 10)]
    assert symbols["lang"] == "python"

    stats = _json(["graph", "stats", "--repo", str(indexed.path)])
    assert (stats["files"], stats["definitions"]) == (2, 5)
    assert stats["edges"] == {"contains": 5, "imports": 1, "calls": 3}
    assert stats["languages"] == {"python": {"files": 2, "definitions": 5}}
    assert stats["skipped"]["unsupported"] == 1

    near = _json(["graph", "neighbors", "foo", "--depth", "1", "--repo", str(indexed.path)])
    assert {(n["node"], n["distance"]) for n in near["neighbors"]} == {
        ("file:app/util.py", 1), ("def:app/main.py:main", 1), ("def:app/main.py:Runner.run", 1)}
    assert near["depth"] == 1


def test_text_output(indexed):
    result = CliRunner().invoke(cli, ["graph", "callers", "foo", "--repo", str(indexed.path)])
    assert result.exit_code == 0, result.output
    assert "Runner.run" in result.output and "main" in result.output
    result = CliRunner().invoke(cli, ["graph", "stats", "--repo", str(indexed.path)])
    assert result.exit_code == 0 and "python" in result.output
    for args in (["symbols", "app/util.py"], ["neighbors", "main", "--depth", "2"]):
        result = CliRunner().invoke(cli, ["graph", *args, "--repo", str(indexed.path)])
        assert result.exit_code == 0, result.output


def test_at_an_older_revision(indexed):
    old = indexed.git("rev-parse", "HEAD")
    indexed.commit("more", {"app/extra.py": "from app.util import foo\n\n\ndef extra():\n    return foo()\n"})
    assert CliRunner().invoke(cli, ["index", "--repo", str(indexed.path), "-q"]).exit_code == 0
    now = _json(["graph", "callers", "foo", "--repo", str(indexed.path)])
    assert "def:app/extra.py:extra" in [c["node"] for c in now["callers"]]
    then = _json(["graph", "callers", "foo", "--repo", str(indexed.path), "--at", old])
    assert then["rev"] == old
    assert "def:app/extra.py:extra" not in [c["node"] for c in then["callers"]]


def test_unknown_symbol_and_path_say_what_to_try(indexed):
    result = CliRunner().invoke(cli, ["graph", "callers", "nope", "--repo", str(indexed.path)])
    assert isinstance(result.exception, NotFoundError)
    assert "rcahook graph symbols" in str(result.exception)
    result = CliRunner().invoke(cli, ["graph", "symbols", "app/none.py", "--repo", str(indexed.path)])
    assert isinstance(result.exception, NotFoundError)
    assert NotFoundError.exit_code == 20


def test_index_without_graph(repo):
    repo.commit("start", {"a.py": "def f():\n    pass\n"})
    assert CliRunner().invoke(cli, ["index", "--repo", str(repo.path), "-q", "--no-graph"]).exit_code == 0
    result = CliRunner().invoke(cli, ["graph", "stats", "--repo", str(repo.path)])
    assert isinstance(result.exception, IndexMissingError)
    # --at builds a graph anyway, from the parse cache (empty here)
    data = _json(["graph", "stats", "--repo", str(repo.path), "--at", "HEAD"])
    assert data["definitions"] == 1
