"""The state database: saved investigations, append-only verdicts, crash safety, export."""
from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import types

import pytest

from clirun import rcahook
from rcahook.errors import BadInputError, NotFoundError
from rcahook.rca import feedback as fb

CANDIDATES = [f"{i:x}" * 40 for i in range(1, 7)]  # "111...1", "222...2", ...
OUTSIDER = "a" * 40


@pytest.fixture
def state(tmp_path):
    path = tmp_path / "git" / "rcahook" / "state.sqlite"
    conn = fb.open_state(path)
    inv = fb.save_investigation(conn, repo="/r/.git", at="f" * 40, ranker="features",
                                incident={"title": "checkout fails"},
                                results={"suggestions": [], "candidates": [{"sha": s, "rank": i + 1}
                                                                           for i, s in enumerate(CANDIDATES)]},
                                now=1_714_600_000)
    yield types.SimpleNamespace(path=path, conn=conn, inv=inv, saved=fb.get_investigation(conn, inv))
    conn.close()


def no_resolve(given: str) -> str:
    if given == "aaaa":
        return OUTSIDER
    raise NotFoundError(f"{given} unknown")


def test_ids_are_short_dated_and_unique(state):
    assert re.fullmatch(r"inv-20240501-[0-9a-f]{4}", state.inv)
    ids = {fb.save_investigation(state.conn, repo="r", at="f" * 40, ranker="features", incident={},
                                 results={}, now=1_714_600_000) for _ in range(50)}
    assert len(ids) == 50


def test_durability_settings(state):
    assert state.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert state.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_two_verdicts_on_one_id_are_both_kept_and_the_later_stands(state, tmp_path):
    fb.record_verdicts(state.conn, state.saved, root_cause=CANDIDATES[0][:8], not_causes=(), note="first guess",
                       resolve=no_resolve, now=1)
    fb.record_verdicts(state.conn, state.saved, root_cause=CANDIDATES[2], not_causes=(CANDIDATES[0][:10],),
                       note=None, resolve=no_resolve, now=2)
    history = fb.verdicts(state.conn, state.inv)
    assert [(v.verdict, v.sha, v.superseded) for v in history] == [
        ("root_cause", CANDIDATES[0], True), ("root_cause", CANDIDATES[2], False), ("not", CANDIDATES[0], False)]
    assert fb.current_root_cause(history).sha == CANDIDATES[2]
    assert history[1].rank == 3 and history[1].in_candidates
    current = state.conn.execute("SELECT sha, verdict FROM current_verdicts ORDER BY seq").fetchall()
    assert current == [(CANDIDATES[2], "root_cause"), (CANDIDATES[0], "not")]

    out = tmp_path / "verdicts.jsonl"
    assert fb.export_jsonl(state.conn, out) == 3
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["superseded"] for r in rows] == [True, False, False]
    assert rows[0]["note"] == "first guess" and rows[0]["incident"] == {"title": "checkout fails"}
    assert [c["sha"] for c in rows[0]["candidates"]] == CANDIDATES
    assert rows[0]["export_version"] == fb.EXPORT_VERSION and rows[0]["at"] == "f" * 40


def test_verdicts_can_never_be_updated_or_deleted(state):
    fb.record_verdicts(state.conn, state.saved, root_cause=CANDIDATES[1], not_causes=(), note=None,
                       resolve=no_resolve)
    for sql in ("UPDATE verdicts SET sha='x'", "DELETE FROM verdicts", "UPDATE investigations SET ranker='x'",
                "DELETE FROM investigations"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            state.conn.execute(sql)
    assert len(fb.verdicts(state.conn)) == 1


def test_a_commit_outside_the_candidates_is_resolved_and_accepted(state):
    [v] = fb.record_verdicts(state.conn, state.saved, root_cause="aaaa", not_causes=(), note=None,
                             resolve=no_resolve)
    assert v.sha == OUTSIDER and not v.in_candidates and v.rank is None


def test_bad_verdicts(state):
    with pytest.raises(BadInputError, match="nothing to record"):
        fb.record_verdicts(state.conn, state.saved, root_cause=None, not_causes=(), note=None, resolve=no_resolve)
    with pytest.raises(BadInputError, match="twice"):
        fb.record_verdicts(state.conn, state.saved, root_cause=CANDIDATES[0], not_causes=(CANDIDATES[0],),
                           note=None, resolve=no_resolve)
    with pytest.raises(NotFoundError):
        fb.record_verdicts(state.conn, state.saved, root_cause="bbbb", not_causes=(), note=None, resolve=no_resolve)
    with pytest.raises(NotFoundError, match="feedback --list"):
        fb.get_investigation(state.conn, "inv-20990101-0000")
    assert fb.verdicts(state.conn) == []  # nothing half-written


CRASH = """
import os, sys
from rcahook.rca import feedback as fb
from pathlib import Path
conn = fb.open_state(Path(sys.argv[1]))
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO verdicts (investigation_id, created, verdict, sha, in_candidates, rank, note)"
             " VALUES (?, 3, 'root_cause', ?, 1, 4, 'never committed')", (sys.argv[2], "4" * 40))
conn.execute("INSERT INTO investigations VALUES ('inv-20990101-dead', 0, 'r', 'f', 'features', '{}', '{}')")
os.kill(os.getpid(), 9)  # killed between the writes and the commit
"""


def test_a_crash_mid_write_leaves_the_database_consistent(state):
    fb.record_verdicts(state.conn, state.saved, root_cause=CANDIDATES[1], not_causes=(), note=None,
                       resolve=no_resolve)
    state.conn.close()
    proc = subprocess.run([sys.executable, "-c", CRASH, str(state.path), state.inv], capture_output=True)
    assert proc.returncode == -9, proc.stderr
    conn = fb.open_state(state.path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert [v.sha for v in fb.verdicts(conn)] == [CANDIDATES[1]]
    assert [s.id for s in fb.list_investigations(conn)] == [state.inv]
    fb.record_verdicts(conn, fb.get_investigation(conn, state.inv), root_cause=CANDIDATES[3], not_causes=(),
                       note=None, resolve=no_resolve)  # and it takes writes again
    assert len(fb.verdicts(conn)) == 2
    state.conn = conn


def test_a_newer_schema_is_refused_not_replaced(state):
    state.conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(Exception, match="newer than this"):
        fb.open_state(state.path)


# -- the command ---------------------------------------------------------------------------------

@pytest.fixture
def saved_in_repo(make_repo):
    g = make_repo("fbrepo")
    shas = [g.commit(f"change {i}", {"f.txt": str(i)}) for i in range(4)]
    conn = fb.open_state(fb.state_path(g.path / ".git"))
    inv = fb.save_investigation(conn, repo=str(g.path / ".git"), at=shas[-1], ranker="features",
                                incident={"title": "t"},
                                results={"suggestions": [{"rank": 1, "short_sha": shas[2][:12], "subject": "change 2"}],
                                         "candidates": [{"sha": s} for s in shas[1:][::-1]]})
    conn.close()
    return types.SimpleNamespace(git=g, shas=shas, inv=inv)


def test_feedback_command_records_lists_and_exports(saved_in_repo, tmp_path):
    s = saved_in_repo
    repo = str(s.git.path)
    result = rcahook("feedback", s.inv, "--repo", repo, "--root-cause", s.shas[2][:7])
    assert result.code == 0 and f"{s.shas[2][:12]} root cause (rank 2 of 3)" in result.out
    # not among the candidates, not indexed: resolved by git, accepted with a note
    result = rcahook("feedback", s.inv, "--repo", repo, "--not", s.shas[0][:9])
    assert result.code == 0 and "not among the 3 commits" in result.err
    shown = rcahook("feedback", s.inv, "--repo", repo)
    assert "verdict #1" in shown.out and "verdict #2" in shown.out
    listing = rcahook("feedback", "--list", "--repo", repo)
    assert s.inv in listing.out and s.shas[2][:12] in listing.out
    out = tmp_path / "v.jsonl"
    assert rcahook("feedback", "--export", str(out), "--repo", repo).code == 0
    assert len(out.read_text().splitlines()) == 2


def test_feedback_command_errors(saved_in_repo, make_repo):
    repo = str(saved_in_repo.git.path)
    assert rcahook("feedback", "inv-20990101-beef", "--repo", repo, "--root-cause", "abc").code == 20
    assert rcahook("feedback", saved_in_repo.inv, "--repo", repo, "--root-cause", "0123456789").code == 20
    assert rcahook("feedback", "--repo", repo).code == 15
    assert rcahook("feedback", "--root-cause", "abc", "--repo", repo).code == 15
    empty = make_repo("nostate")
    empty.commit("x", {"a": "a"})
    result = rcahook("feedback", "--list", "--repo", str(empty.path))
    assert result.code == 20 and "rcahook investigate" in result.err
