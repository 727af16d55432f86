"""Touched definitions left for later by `rcahook index --touched-depth` (issue 11): computed
when a reader asks, stored once, and the same as an index that recorded them all."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from clirun import rcahook
from rcahook.index import store
from rcahook.index.gitrepo import Repo
from rcahook.index.reader import History
from rcahook.risk.facts import load_facts
from test_readonly import RESTRICT, restricted, set_writable  # noqa: F401  # restricted: a fixture

MODULES = ("config", "net", "cache")


def _module(name: str, version: int) -> str:
    """A Python module whose three functions all change with `version` (one changes alone)."""
    return "".join(
        f"def {name}_{fn}(x):\n    return x + {version if fn != 'stable' else 0}\n\n\n"
        for fn in ("load", "parse", "stable"))


def _build(repo) -> dict[str, str]:
    """A history of Python edits with culprit links: a Fixes: trailer and a 'Regression in'."""
    c: dict[str, str] = {}
    c["init"] = repo.commit("initial import", {f"app/{m}.py": _module(m, 0) for m in MODULES})
    for i in range(1, 13):
        m = MODULES[i % 3]
        c[f"c{i}"] = repo.commit(f"{m}: tune things ({i})", {f"app/{m}.py": _module(m, i)})
    c["culprit"] = repo.commit("config: rework parsing", {
        "app/config.py": _module("config", 0).replace("return x + 0\n", "return int(x)\n", 2)})
    for i in range(13, 18):
        m = MODULES[1 + i % 2]
        c[f"c{i}"] = repo.commit(f"{m}: more tuning ({i})", {f"app/{m}.py": _module(m, i)})
    c["fix"] = repo.commit(
        f"config: parse crashes on empty input\n\nFixes: {c['culprit'][:12]} (\"config: rework parsing\")\n",
        {"app/config.py": _module("config", 0).replace("return x + 0\n", "return int(x or 0)\n", 2)})
    c["culprit2"] = repo.commit("net: new loader", {"app/net.py": _module("net", 99)})
    c["fix2"] = repo.commit(f"net: loader drops packets\n\nRegression in {c['culprit2'][:10]}.\n",
                            {"app/net.py": _module("net", 100)})
    return c


@pytest.fixture(scope="module")
def history_repo(tmp_path_factory):
    from conftest import GitRepo

    path = tmp_path_factory.mktemp("lazy") / "repo"
    path.mkdir()
    repo = GitRepo(path)
    return repo, _build(repo)


def _index(repo, db, depth: str) -> None:
    done = rcahook("index", "--repo", str(repo.path), "--db", str(db), "--touched-depth", depth, "-q")
    assert done.code == 0, done.err


def _rows(db) -> set[tuple]:
    with sqlite3.connect(db) as conn:
        return set(conn.execute("SELECT c.sha, t.path, t.name, t.qualname, t.kind, t.side"
                                " FROM touched t JOIN commits c ON c.id = t.commit_id"))


def _not_done(db) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM commits WHERE defs_done=0").fetchone()[0]


def _as_rows(touched: dict[str, list]) -> set[tuple]:
    return {(sha, t.path, t.name, t.qualname, t.kind, t.side) for sha, ts in touched.items() for t in ts}


def _all_shas(db) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [s for (s,) in conn.execute("SELECT sha FROM commits")]


@pytest.fixture(scope="module")
def full_index(history_repo, tmp_path_factory):
    repo, _ = history_repo
    db = tmp_path_factory.mktemp("full") / "all.sqlite"
    _index(repo, db, "all")
    assert _not_done(db) == 0
    return db


def test_depth_leaves_old_commits_for_later_and_readers_compute_them_once(history_repo, full_index, tmp_path):
    repo, c = history_repo
    db = tmp_path / "d2.sqlite"
    _index(repo, db, "2")
    total = len(_all_shas(db))
    # the two newest, and the culprits the links name (the risk scan reads those without a repo)
    with sqlite3.connect(db) as conn:
        done = {s for (s,) in conn.execute("SELECT sha FROM commits WHERE defs_done=1")}
    assert done == {c["fix2"], c["culprit2"], c["culprit"]}
    assert _not_done(db) == total - 3

    without = History.open(db)  # no repository: what is stored, as before
    try:
        assert without.touched(c["c1"]) == []
    finally:
        without.close()
    assert _not_done(db) == total - 3

    history = History.open(db, repo=Repo(repo.path))
    try:
        assert {t.qualname for t in history.touched(c["c1"])} == {"net_load", "net_parse"}
        lazy = _as_rows(history.touched_many(_all_shas(db)))
    finally:
        history.close()
    assert lazy == _rows(full_index)
    assert _not_done(db) == 0  # stored: computed once
    assert _rows(db) == _rows(full_index)


def test_depth_zero_and_all_and_bad_values(history_repo, tmp_path):
    repo, _ = history_repo
    _index(repo, tmp_path / "d0.sqlite", "0")
    assert _not_done(tmp_path / "d0.sqlite") == len(_all_shas(tmp_path / "d0.sqlite"))
    assert _rows(tmp_path / "d0.sqlite") == set()
    bad = rcahook("index", "--repo", str(repo.path), "--db", str(tmp_path / "x.sqlite"), "--touched-depth", "some")
    assert bad.code != 0 and "--touched-depth 'some'" in bad.err and "'all'" in bad.err


def test_load_facts_computes_with_a_repository(history_repo, full_index, tmp_path):
    repo, c = history_repo
    db = tmp_path / "d0.sqlite"
    _index(repo, db, "0")
    conn = store.open_index(db, create=False)
    try:
        assert load_facts(conn, [c["c4"]])[c["c4"]].defs == ()  # without the repository: as stored
        facts = load_facts(conn, [c["c4"]], repo=Repo(repo.path))[c["c4"]]
    finally:
        conn.close()
    full = store.open_index(full_index, create=False)
    try:
        assert facts == load_facts(full, [c["c4"]])[c["c4"]]
    finally:
        full.close()
    assert facts.defs == ("net_load", "net_parse")


_READER = """
import json, sys
from pathlib import Path
from rcahook.index.gitrepo import Repo
from rcahook.index.reader import History
history = History.open(Path(sys.argv[1]), repo=Repo(sys.argv[2]))
shas = [s for (s,) in history.conn.execute("SELECT sha FROM commits")]
rows = [[sha, t.path, t.name, t.qualname, t.kind, t.side] for sha, ts in history.touched_many(shas).items() for t in ts]
print(json.dumps({"read_only": history.read_only, "rows": rows, "again": history.ensure_touched()}))
"""


@pytest.mark.usefixtures("restricted")
def test_read_only_index_computes_in_memory_and_writes_nothing(history_repo, full_index, tmp_path):
    repo, _ = history_repo
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "d0.sqlite"
    _index(repo, db, "0")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    set_writable(folder, False)
    try:
        # a process bound by file permissions, root included (see test_readonly)
        done = subprocess.run([*RESTRICT, sys.executable, "-c", _READER, str(db), str(repo.path)],
                              capture_output=True, text=True, timeout=120, check=False)
    finally:
        set_writable(folder, True)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["read_only"] and out["again"] == 0  # ensure_touched: already computed here
    assert {tuple(r) for r in out["rows"]} == _rows(full_index)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_read_only_connection_computes_in_memory_and_writes_nothing(history_repo, full_index, tmp_path):
    """The same through a read-only connection, which binds root too."""
    repo, _ = history_repo
    db = tmp_path / "d0.sqlite"
    _index(repo, db, "0")
    before = db.read_bytes()
    history = History(store.connect_read_only(db), repo=Repo(repo.path))
    try:
        assert history.read_only
        rows = _as_rows(history.touched_many(_all_shas(db)))
    finally:
        history.close()
    assert rows == _rows(full_index)
    assert db.read_bytes() == before and _not_done(db) == len(_all_shas(db))


def test_busy_index_computes_without_storing(history_repo, full_index, tmp_path, monkeypatch):
    """While `rcahook index` holds the index lock, a reader keeps what it computed to itself."""
    from rcahook.codegraph import touched

    monkeypatch.setattr(touched, "LAZY_WAIT", 0.0)
    repo, _ = history_repo
    db = tmp_path / "d0.sqlite"
    _index(repo, db, "0")
    history = History.open(db, repo=Repo(repo.path))
    try:
        with store.index_lock(db):
            rows = _as_rows(history.touched_many(_all_shas(db)))
        assert _not_done(db) == len(_all_shas(db))
        assert rows == _rows(full_index)
    finally:
        history.close()


TRACE = """Traceback (most recent call last):
  File "app/main.py", line 3, in <module>
  File "app/config.py", line 6, in config_parse
ValueError: invalid literal for int() with base 10: ''
"""


def _investigate(repo, db, trace) -> dict:
    done = rcahook("investigate", "--repo", str(repo.path), "--db", str(db), "--no-update", "--window", "30",
                   "--title", "config parse fails on empty value", "--stack-trace", str(trace),
                   "--format", "json")
    assert done.code == 0, done.err
    return json.loads(done.out)


def _ranking(doc: dict) -> list[tuple]:
    return [(s["sha"], round(s["score"], 9), round(s["probability"], 9)) for s in doc["suggestions"]]


def test_investigate_on_a_depth_zero_index_ranks_as_on_a_full_one(history_repo, full_index, tmp_path):
    repo, c = history_repo
    trace = tmp_path / "trace.txt"
    trace.write_text(TRACE)
    db = tmp_path / "d0.sqlite"
    _index(repo, db, "0")
    lazy = _investigate(repo, db, trace)
    full = _investigate(repo, full_index, trace)
    assert _ranking(lazy) == _ranking(full)
    culprit = next(s for s in lazy["suggestions"] if s["sha"] == c["culprit"])
    assert "config_parse" in json.dumps(culprit)  # the touched definition the trace names
    assert _not_done(db) < len(_all_shas(db))  # the window's commits, stored


def _backtest(repo, db, out) -> dict:
    done = rcahook("backtest", "--repo", str(repo.path), "--db", str(db), "--no-update", "--window", "20",
                   "--output", str(out), "--format", "json", "--jobs", "2")
    assert done.code == 0, done.err
    doc = json.loads(done.out)
    return {"results": [{k: v for k, v in r.items() if "second" not in k} for r in doc["results"]],
            "metrics": {name: {k: v for k, v in m.items() if "second" not in k} for name, m in doc["metrics"].items()}}


def test_backtest_on_a_depth_zero_index_matches_a_full_one(history_repo, full_index, tmp_path):
    repo, _ = history_repo
    db = tmp_path / "d0.sqlite"
    _index(repo, db, "0")
    lazy = _backtest(repo, db, tmp_path / "lazy.jsonl")
    assert _not_done(db) == 0  # brought up to date before the replay workers start
    full = _backtest(repo, full_index, tmp_path / "full.jsonl")
    assert lazy["results"] and lazy == full


def test_an_update_does_the_new_commits_not_another_slice_of_history(repo, tmp_path):
    from rcahook.index.indexer import index_repository

    for i in range(6):
        repo.commit(f"edit {i}", {"app/m.py": _module("m", i)})
    db = tmp_path / "d2.sqlite"
    first = index_repository(Repo(repo.path), db, touched_depth=2)
    assert (first.touched_commits, first.touched_pending) == (2, 4)
    repo.commit("edit 6", {"app/m.py": _module("m", 6)})
    again = index_repository(Repo(repo.path), db, touched_depth=2)
    assert (again.touched_commits, again.touched_pending) == (1, 4)


def test_the_cli_default_depth_is_the_indexers():
    """cli.py spells the default out (it does not import the indexer at start): kept equal."""
    from rcahook.cli import index as index_command
    from rcahook.index.indexer import TOUCHED_DEPTH

    option = next(p for p in index_command.params if p.name == "touched_depth")
    assert option.default == str(TOUCHED_DEPTH)
