"""The one write-transaction helper (rcahook.index.store.transaction), on real SQLite files."""
from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from rcahook.index import store

RCAHOOK = Path(__file__).resolve().parent.parent / "rcahook"


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "t.sqlite"
    conn = connect(path)
    conn.execute("CREATE TABLE t (x INTEGER)")
    yield path, conn
    conn.close()


def test_commits_on_success(db):
    path, conn = db
    with store.transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
    assert not conn.in_transaction
    assert connect(path).execute("SELECT x FROM t").fetchall() == [(1,)]  # another connection sees it


@pytest.mark.parametrize("error", [ValueError("boom"), KeyboardInterrupt()])
def test_rolls_back_on_any_exception(db, error):
    path, conn = db
    with pytest.raises(type(error)):
        with store.transaction(conn):
            conn.execute("INSERT INTO t VALUES (1)")
            raise error
    assert not conn.in_transaction
    assert connect(path).execute("SELECT COUNT(*) FROM t").fetchone() == (0,)


def test_takes_the_write_lock_at_begin_and_waits_only_its_busy_timeout(db):
    path, conn = db
    other = connect(path)
    with store.transaction(other):
        other.execute("INSERT INTO t VALUES (2)")
        # IMMEDIATE: refused at BEGIN, before this transaction read or wrote anything
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            with store.transaction(conn, busy_timeout=0.05):
                pytest.fail("entered a write transaction while another writer held the lock")
        assert not conn.in_transaction
        assert conn.execute("PRAGMA busy_timeout").fetchone() == (30000,)  # restored
    with store.transaction(conn, busy_timeout=0.05):
        conn.execute("INSERT INTO t VALUES (3)")
    assert sorted(connect(path).execute("SELECT x FROM t").fetchall()) == [(2,), (3,)]


def test_read_snapshot_does_not_see_a_later_commit_and_takes_no_write_lock(db):
    path, conn = db
    writer = connect(path)
    with store.read_snapshot(conn):
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (0,)
        with store.transaction(writer, busy_timeout=0.05):  # a reader does not block the writer
            writer.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (0,)
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (1,)


def test_no_other_module_begins_a_transaction_by_hand():
    """One helper: BEGIN/COMMIT/ROLLBACK statements appear in store.py alone (schema scripts,
    which executescript commits itself, aside)."""
    offenders = []
    for path in RCAHOOK.rglob("*.py"):
        if path.name == "store.py" and path.parent.name == "index":
            continue
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(r"""\.execute\(\s*f?["'](BEGIN|COMMIT|ROLLBACK|END)\b""", line):
                offenders.append(f"{path.relative_to(RCAHOOK)}:{n}: {line.strip()}")
    assert offenders == []
