"""Bounded reads over the index (issue 11): rev-list windows, ancestry and generations read
per commit from SQLite must equal git's own answers on real repositories, including merges,
committer clocks that go backwards, several roots, a shallow boundary and a rewritten branch."""
from __future__ import annotations

import importlib.util
import json
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from rcahook.index import indexer as indexer_module
from rcahook.index import reader as history_module
from rcahook.index.gitrepo import Repo
from rcahook.index.indexer import index_repository
from rcahook.index.reader import History

ROOT = Path(__file__).resolve().parent.parent


def _gen_module():
    spec = importlib.util.spec_from_file_location("gen_monorepo", ROOT / "bench" / "gen_monorepo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_monorepo"] = module
    spec.loader.exec_module(module)
    return module


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=path, check=True, capture_output=True, text=True).stdout.strip()


def index(path: Path, db: Path):
    return index_repository(Repo(path), db, graph=False, jobs=1)


@pytest.fixture
def small_blocks(monkeypatch):
    # tiny read blocks and cache: every walk crosses block edges and evicts, as a long
    # history would
    monkeypatch.setattr(history_module, "GRAPH_BLOCK", 7)
    monkeypatch.setattr(history_module, "GRAPH_CACHE", 40)
    monkeypatch.setattr(history_module, "COMMIT_CACHE", 10)


@pytest.fixture(scope="module")
def mono(tmp_path_factory):
    """A small generated monorepo: side branches merged back, clock skew, three roots."""
    path = tmp_path_factory.mktemp("mono") / "repo"
    _gen_module().generate(path, commits=260, seed=3, services=12, libs=6)
    db = path.parent / "index.sqlite"
    index(path, db)
    return path, db


def test_generated_repository_has_the_shapes(mono):
    path, _ = mono
    assert len(git(path, "rev-list", "--max-parents=0", "HEAD").split()) >= 3  # several roots
    assert int(git(path, "rev-list", "--merges", "--count", "HEAD")) >= 5
    assert git(path, "log", "--grep=^Fixes: ", "--format=%H")
    assert git(path, "log", "--grep=This reverts commit", "--format=%H")
    times = [int(t) for t in git(path, "log", "--first-parent", "--format=%ct").split()]
    assert any(a < b for a, b in zip(times, times[1:]))  # a committer clock behind its parent's


def test_generator_is_deterministic(tmp_path):
    gen = _gen_module()
    gen.generate(tmp_path / "a", commits=40, seed=7, services=5, libs=3)
    gen.generate(tmp_path / "b", commits=40, seed=7, services=5, libs=3)
    assert git(tmp_path / "a", "rev-parse", "main") == git(tmp_path / "b", "rev-parse", "main")


def test_rev_list_windows_match_git(mono, small_blocks):
    path, db = mono
    history = History.open(db)
    try:
        starts = git(path, "rev-list", "HEAD").split()
        rng = random.Random(0)
        for start in [starts[0], *rng.sample(starts, 12)]:
            for n in (1, 5, 60, 100_000):
                expected = git(path, "rev-list", "--no-merges", f"--max-count={n}", start).split()
                assert history.rev_list(start, max_count=n) == expected, (start, n)
            assert history.rev_list(start, no_merges=False) == git(path, "rev-list", start).split()
        assert len(history._nodes) <= 40 and len(history._cache) <= 10  # bounded, however long the walk
    finally:
        history.close()


def test_since_and_hide_match_git(mono, small_blocks):
    path, db = mono
    history = History.open(db)
    try:
        shas = git(path, "rev-list", "--first-parent", "HEAD").split()
        base, hide = shas[0], shas[40]
        since = int(git(path, "log", "-1", "--format=%ct", shas[80]))
        expected = git(path, "rev-list", "--no-merges", f"--since={since}", base, "--not", hide).split()
        assert history.rev_list(base, since=since, hide=hide) == expected
    finally:
        history.close()


def test_ancestry_and_generations_match_git(mono, small_blocks):
    path, db = mono
    history = History.open(db)
    try:
        shas = git(path, "rev-list", "HEAD").split()
        rng = random.Random(1)
        for _ in range(40):
            a, b = rng.sample(shas, 2)
            truth = subprocess.run(["git", "merge-base", "--is-ancestor", a, b], cwd=path).returncode == 0
            assert history.is_ancestor(a, b) is truth, (a, b)
        for sha in rng.sample(shas, 30):  # a child's generation is above each parent's
            node = history.node(sha)
            assert all(history.node(p).generation < node.generation for p in node.parents)
    finally:
        history.close()


def _generations(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT sha, generation FROM commits"))
    finally:
        conn.close()


def test_shallow_boundary_then_deepen(tmp_path, mono):
    source, _ = mono
    clone = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "30", f"file://{source}", str(clone)], check=True)
    db = tmp_path / "index.sqlite"
    result = index(clone, db)
    assert any("shallow" in note for note in result.notes)  # says so, with the fix
    history = History.open(db)
    try:
        for n in (10, 1000):
            assert history.rev_list(git(clone, "rev-parse", "HEAD"), max_count=n) == \
                git(clone, "rev-list", "--no-merges", f"--max-count={n}", "HEAD").split()
    finally:
        history.close()
    subprocess.run(["git", "fetch", "-q", "--deepen", "60"], cwd=clone, check=True)
    index(clone, db)  # the parents beyond the old boundary arrive: generations are renumbered
    fresh = tmp_path / "fresh.sqlite"
    index(clone, fresh)
    assert _generations(db) == _generations(fresh)
    history = History.open(db)
    try:
        head = git(clone, "rev-parse", "HEAD")
        assert history.rev_list(head, max_count=500) == \
            git(clone, "rev-list", "--no-merges", "--max-count=500", "HEAD").split()
    finally:
        history.close()


def test_rewritten_branch_serves_nothing_from_old_rows(repo, small_blocks):
    for i in range(8):
        repo.commit(f"work {i}", {"a.c": f"int a = {i};\n"})
    db = repo.path.parent / "index.sqlite"
    index(repo.path, db)
    old_head = repo.git("rev-parse", "HEAD")
    repo.git("reset", "-q", "--hard", "HEAD~3")  # a force-pushed branch
    for i in range(4):
        repo.commit(f"rewritten {i}", {"b.c": f"int b = {i};\n"})
    result = index(repo.path, db)
    assert result.new_commits == 4
    head = repo.git("rev-parse", "HEAD")
    history = History.open(db)
    try:
        for n in (2, 6, 50):
            assert history.rev_list(head, max_count=n) == \
                repo.git("rev-list", "--no-merges", f"--max-count={n}", "HEAD").split()
        assert not history.is_ancestor(old_head, head)
        conn = sqlite3.connect(db)
        tips = json.loads(conn.execute("SELECT value FROM meta WHERE key='tips'").fetchone()[0])
        conn.close()
        assert tips[0] == head and len(tips) <= indexer_module.MAX_TIPS
    finally:
        history.close()


def test_unknown_link_is_resolved_by_the_new_commit_only(repo):
    base = repo.commit("base", {"a": "1\n"})
    repo.git("checkout", "-q", "-b", "feature")
    culprit = repo.commit("feature work", {"b": "1\n"})
    repo.git("checkout", "-q", "main")
    repo.commit(f"fix\n\nFixes: {culprit[:10]}\nFixes: {'f' * 12}\n", {"a": "2\n"})
    db = repo.path.parent / "index.sqlite"
    index_repository(Repo(repo.path), db, revs=["main"], graph=False)
    result = index_repository(Repo(repo.path), db, graph=False)  # the culprit's branch arrives
    assert (result.new_commits, result.links_total, result.links_unresolved) == (1, 2, 1)
    history = History.open(db)
    try:
        assert list(history.culprit_of().values()) == [culprit]
        assert history.is_ancestor(base, culprit) and not history.is_ancestor(culprit, base)
    finally:
        history.close()


def test_unpushed_past_the_cap_is_the_newest_by_time(repo):
    # no remote-tracking branch at all: every commit is unpushed; the newest 100 are taken
    # from a streaming walk instead of a topological sort of the whole history
    from rcahook.risk.pushrange import MAX_UNPUSHED, resolve_range

    stream = []
    for i in range(MAX_UNPUSHED + 20):  # one fast-import: 120 `git commit`s take minutes on a busy machine
        stream.append(f"commit refs/heads/main\ncommitter A <a@example.com> {1_700_000_000 + i * 60} +0000\n"
                      f"data 4\nc{i:03d}\nM 100644 inline a\ndata {len(str(i)) + 1}\n{i}\n\n")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo.path, input="".join(stream).encode(), check=True)
    got = resolve_range(Repo(repo.path), range_=None, from_=None, to=None, hook=None, remote=None)
    assert got.capped
    assert list(got.shas) == repo.git("rev-list", f"--max-count={MAX_UNPUSHED}", "HEAD").split()


def test_backtest_results_are_the_same_for_any_jobs(mono, tmp_path):
    # the generated repository has dozens of `Fixes:` investigations; 1 and 3 worker
    # processes must write the same outcomes, in the same order
    from rcahook.cli import main
    from rcahook.pool import start_method

    path, _ = mono
    assert start_method(3, inherit=True) == "fork"  # so --jobs 3 below really runs in workers
    lines = {}
    for jobs in (1, 3):
        out = tmp_path / f"j{jobs}.jsonl"
        code = main(["backtest", "--repo", str(path), "--db", str(tmp_path / "ix.sqlite"), "--window", "60",
                     "--jobs", str(jobs), "--output", str(out), "--format", "json"])
        assert code == 0
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        lines[jobs] = [(r["fix"], r["ranker"], r["rank"], r.get("raw"), r.get("signals"))
                       for r in rows if r["type"] == "result"]
    assert len({fix for fix, *_ in lines[1]}) >= 5
    assert lines[1] == lines[3]


def test_culprits_of_a_window_are_the_whole_maps_restriction(mono):
    path, db = mono
    history = History.open(db)
    try:
        everything = history.culprit_of()
        window = history.rev_list(git(path, "rev-parse", "HEAD"), max_count=120)
        part = history.culprit_of(window)
        assert part and list(part.items()) == [(f, c) for f, c in everything.items() if f in set(window)]
    finally:
        history.close()
