"""The pre-push scan's saved state of history stays bounded (issue 11): a watermark over the
index's commit ids instead of every sha fed, brought up to date by indexed queries, and always
equal to the state rebuilt from scratch. Real repositories, real `rcahook index` and `rcahook scan`."""
from __future__ import annotations

import json
import sqlite3
import types

import pytest

import riskrepo as rr
from rcahook.index.store import default_db_path
from rcahook.risk.state import history_state, load_state
from rcahook.risk.state_store import STATE_VERSION


@pytest.fixture
def project(repo, tmp_path):
    return repo, rr.published(repo, tmp_path)


def _db(repo):
    return default_db_path(repo.path / ".git")


def _scan(repo, range_: str) -> None:
    result = rr.run_scan(repo, "--format", "json", range_)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # no rebuild said: the saved state was brought up to date


def _comparable(parts: dict, *, approx: bool = False) -> dict:
    """to_parts without the bookkeeping (fed), in an order that does not depend on the order of
    feeding (the state does not)."""
    out = {k: v for k, v in parts.items() if k != "fed"}
    out["file_authors"] = {k: sorted(v) for k, v in out["file_authors"].items()}
    out["author_files"] = sorted(map(tuple, out["author_files"]))
    out["culprits"] = {row[0]: json.dumps(row) for row in out["culprits"]}
    out["fixes_of"] = {k: sorted(v) for k, v in out["fixes_of"].items()}
    # the same total learned in another order: equal up to rounding
    out["recent_culprits"] = {k: (pytest.approx(v) if approx else v, t)
                              for k, (v, t) in out["recent_culprits"].items()}
    return out


def _assert_equal(repo, exclude: set[str]):
    """The saved state (every row of it) equals one rebuilt in memory from the index."""
    conn = sqlite3.connect(_db(repo))
    try:
        saved, why = load_state(conn)
        assert why is None and saved is not None
        scratch = history_state(conn, None, exclude)
        parts = saved.to_parts()  # every saved row, read while the index is open
        assert _comparable(parts) == _comparable(scratch.to_parts(), approx=True)
        return types.SimpleNamespace(fed=saved.fed, n_commits=saved.n_commits, fixes_of=parts["fixes_of"])
    finally:
        conn.close()


def test_incremental_state_equals_a_rebuilt_one(project):
    repo, shas = project
    pushed = rr.risky_commit(repo)
    _scan(repo, "origin/main..HEAD")  # first scan: built, `pushed` left out
    saved = _assert_equal(repo, {pushed})
    assert saved.fed.skipped == (pushed,)

    # a root cause on a branch the index never sees, and a fix naming it: the link is unknown
    repo.git("checkout", "-q", "-b", "side")
    hidden = repo.commit("net: side change to receive path", {"src/net.c": (repo.path / "src/net.c").read_text()
                                                              + rr.c_function("net_side", 10)})
    repo.git("checkout", "-q", "main")
    repo.git("branch", "-q", "-D", "side")
    fix = repo.commit(f"util: fix the side helper\n\nFixes: {hidden[:12]} (\"net: side change\")\n",
                      {"src/util.c": "int util(void) { return 42; }\n"})
    later = rr.benign_commit(repo, 1)
    _scan(repo, f"{fix}..HEAD")  # `pushed` is history now, `fix` fed with its link unknown
    saved = _assert_equal(repo, {later})
    assert saved.fed.skipped == (later,) and saved.fed.unresolved == 1
    assert hidden not in saved.fixes_of

    # the root cause arrives: the link of a commit already fed resolves in this update
    repo.git("branch", "side", hidden)
    last = rr.benign_commit(repo, 2)
    _scan(repo, f"{later}..HEAD")
    saved = _assert_equal(repo, {last})
    assert saved.fixes_of[hidden] == [fix] and saved.fed.unresolved == 0
    assert saved.fixes_of[shas["culprit1"]] == [shas["fix1"]]  # learned once, not again

    _scan(repo, f"{later}..HEAD")  # the same push again (a retry): brought up to date, the same
    assert _assert_equal(repo, {last}).fixes_of[hidden] == [fix]

    # `pushed` (fed long ago) is in the range again: rebuilt, and equal to a rebuilt one
    _scan(repo, "origin/main..HEAD")
    wanted = set(repo.git("rev-list", "origin/main..HEAD").split())
    saved = _assert_equal(repo, wanted)
    assert pushed in saved.fed.skipped and fix in saved.fed.skipped


def test_saved_bookkeeping_does_not_grow_with_history(project):
    repo, _ = project

    def fed_after(commits: int) -> tuple[int, set[str]]:
        for i in range(commits - 1):
            rr.benign_commit(repo, 100 + i)
        repo.git("push", "-q", "origin", "main")
        pushed = rr.benign_commit(repo, 999)
        _scan(repo, "origin/main..HEAD")
        conn = sqlite3.connect(_db(repo))
        try:
            parts = dict(conn.execute("SELECT part, data FROM risk_state"))
            (n,) = conn.execute("SELECT COUNT(*) FROM commits").fetchone()
        finally:
            conn.close()
        fed = json.loads(parts["fed"])
        assert fed["skipped"] == [pushed] and fed["upto"] == n  # a watermark, and the one pushed
        return len(parts["fed"]), set(parts)

    small, names = fed_after(5)
    large, _ = fed_after(50)
    assert small == large  # the ids stay two digits long: nothing in it is per commit
    assert "observed" not in names and "learned" not in names


def test_older_version_is_rebuilt_and_said(project):
    repo, _ = project
    rr.risky_commit(repo)
    _scan(repo, "origin/main..HEAD")
    with sqlite3.connect(_db(repo)) as conn:  # as rcahook with STATE_VERSION 1 left it
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'risk_state_version'")
        conn.execute("DELETE FROM risk_state WHERE part = 'fed'")
        conn.execute("INSERT INTO risk_state VALUES ('observed', '[]'), ('learned', '[]')")
    result = rr.run_scan(repo, "--format", "json", "origin/main..HEAD")
    assert result.returncode == 0 and json.loads(result.stdout)["commits"]
    (line,) = result.stderr.splitlines()
    assert line.endswith(f"rebuilding the scan state: the saved one has version 1, this rcahook writes "
                         f"{STATE_VERSION}")
    with sqlite3.connect(_db(repo)) as conn:
        names = {part for (part,) in conn.execute("SELECT part FROM risk_state")}
    assert "fed" in names and "observed" not in names
    _scan(repo, "origin/main..HEAD")  # saved again: quiet


@pytest.mark.parametrize("upto", ['"12"', "-1", "10000000", "true", "1.5"])
def test_malformed_watermark_is_never_trusted(project, upto):
    repo, _ = project
    pushed = rr.risky_commit(repo)
    _scan(repo, "origin/main..HEAD")
    with sqlite3.connect(_db(repo)) as conn:
        (data,) = conn.execute("SELECT data FROM risk_state WHERE part = 'fed'").fetchone()
        fed = json.loads(data)
        conn.execute("UPDATE risk_state SET data = ? WHERE part = 'fed'",
                     (json.dumps(fed).replace(f'"upto": {fed["upto"]}', f'"upto": {upto}'),))
    result = rr.run_scan(repo, "--format", "json", "origin/main..HEAD")
    assert result.returncode == 0 and json.loads(result.stdout)["commits"]
    (line,) = result.stderr.splitlines()
    assert "rebuilding the scan state: the saved one is malformed (fed.upto" in line
    saved = _assert_equal(repo, {pushed})  # rebuilt from the index, not from the watermark
    assert saved.fed.upto == fed["upto"] and saved.n_commits > 10


def test_an_update_reads_by_index_not_every_row(project):
    """Bringing a saved state up to date reads the new rows by their ids and the excluded ones
    by sha: no query plan scans the commits, links or changes tables."""
    repo, _ = project
    rr.risky_commit(repo)
    _scan(repo, "origin/main..HEAD")
    rr.benign_commit(repo, 7)
    pushed = rr.risky_commit(repo)
    rr.index(repo)
    conn = sqlite3.connect(_db(repo), isolation_level=None)
    statements: list[str] = []
    try:
        conn.set_trace_callback(statements.append)
        state = history_state(conn, _db(repo).parent, {pushed})
        conn.set_trace_callback(None)
        assert state.fed.skipped == (pushed,)
        scans = []
        for sql in statements:
            if sql.lstrip().upper().startswith("SELECT"):
                plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
                scans += [(step, sql) for step in plan
                          if step.startswith("SCAN") and step.split()[1] in ("commits", "links", "changes", "l", "c")]
        assert any("FROM commits WHERE id >" in sql for sql in statements)  # the new rows, by id
        assert scans == []
    finally:
        conn.close()
