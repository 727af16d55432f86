"""The SQLite index: schema, opening (with rebuild of stale or corrupt files) and the lock.

The index is a cache of the repository: it can always be rebuilt, so an old schema or a
corrupt file is replaced rather than migrated. What cannot be rebuilt (saved
investigations, responders' verdicts) lives in a separate state database (feedback.py).
"""
from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rcahook.errors import IndexLockedError, IndexMissingError

SCHEMA_VERSION = 4

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE commits (
    id INTEGER PRIMARY KEY,
    sha TEXT NOT NULL UNIQUE,
    author_name TEXT NOT NULL, author_email TEXT NOT NULL,
    author_time INTEGER NOT NULL, author_offset INTEGER NOT NULL,
    committer_name TEXT NOT NULL, committer_email TEXT NOT NULL,
    committer_time INTEGER NOT NULL, committer_offset INTEGER NOT NULL,
    subject TEXT NOT NULL, body TEXT NOT NULL,
    trailers TEXT NOT NULL,          -- JSON [[key, value], ...]
    n_parents INTEGER NOT NULL,
    n_files INTEGER NOT NULL, added INTEGER NOT NULL, deleted INTEGER NOT NULL,
    idents_added TEXT NOT NULL,      -- space-separated identifiers on + lines
    idents_removed TEXT NOT NULL,    -- on - lines
    shallow INTEGER NOT NULL DEFAULT 0,
    code_lines INTEGER NOT NULL DEFAULT 0, -- changed lines that are neither blank nor comments
    defs_done INTEGER NOT NULL DEFAULT 0   -- touched definitions computed
);
CREATE TABLE parents (
    commit_id INTEGER NOT NULL REFERENCES commits(id),
    idx INTEGER NOT NULL,
    parent_sha TEXT NOT NULL,
    PRIMARY KEY (commit_id, idx)
) WITHOUT ROWID;
CREATE INDEX parents_sha ON parents(parent_sha);
CREATE TABLE changes (
    commit_id INTEGER NOT NULL REFERENCES commits(id),
    idx INTEGER NOT NULL,
    path TEXT NOT NULL, old_path TEXT, status TEXT NOT NULL,
    added INTEGER NOT NULL, deleted INTEGER NOT NULL, binary INTEGER NOT NULL,
    hunks TEXT NOT NULL,             -- "old_start,old_lines,new_start,new_lines;..."
    old_blob TEXT, new_blob TEXT,
    PRIMARY KEY (commit_id, idx)
) WITHOUT ROWID;
CREATE INDEX changes_path ON changes(path);
CREATE TABLE links (
    fix_id INTEGER NOT NULL REFERENCES commits(id),
    seq INTEGER NOT NULL,            -- protocol order: body before subject, pattern order, position
    kind TEXT NOT NULL,              -- fixes | regression | introduced | revert
    ref TEXT NOT NULL,               -- the hex prefix as written
    culprit_sha TEXT,                -- full sha when resolved
    status TEXT NOT NULL,            -- pending | resolved | ambiguous | unknown
    PRIMARY KEY (fix_id, seq)
) WITHOUT ROWID;
CREATE INDEX links_culprit ON links(culprit_sha);
CREATE TABLE touched (
    commit_id INTEGER NOT NULL REFERENCES commits(id),
    path TEXT NOT NULL, name TEXT NOT NULL, qualname TEXT NOT NULL, kind TEXT NOT NULL,
    side TEXT NOT NULL               -- new | old
);
CREATE INDEX touched_commit ON touched(commit_id);
CREATE INDEX touched_name ON touched(name);
CREATE TABLE blob_parse (
    blob TEXT PRIMARY KEY,
    lang TEXT NOT NULL,
    full INTEGER NOT NULL,           -- 1: definitions, references and imports; 0: definitions only
    data BLOB NOT NULL               -- zlib(ParsedFile.to_json()); plain-text rows are read too
) WITHOUT ROWID;
CREATE TABLE graph_files (
    path TEXT PRIMARY KEY, blob TEXT NOT NULL, lang TEXT NOT NULL
) WITHOUT ROWID;
"""


def default_db_path(git_dir: Path) -> Path:
    return git_dir / "rcahook" / "index.sqlite"


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash loses at most the last commit, never consistency
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA cache_size=-65536")
    return conn


def _schema_version(conn: sqlite3.Connection) -> int | None:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.OperationalError:
        return None
    return int(row[0]) if row else None


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass


def open_index(path: Path, *, create: bool = True,
               say: Callable[[str], None] = lambda msg: None) -> sqlite3.Connection:
    """Open the index, creating it, or rebuilding it when its schema is old or it is corrupt."""
    if not path.exists():
        if not create:
            raise IndexMissingError(f"no rcahook index at {path}; run `rcahook index` first")
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        reason = None
        try:
            conn = _connect(path)
            version = _schema_version(conn)
            if version == SCHEMA_VERSION:
                return conn
            conn.close()
            reason = f"it has schema version {version}, this rcahook needs {SCHEMA_VERSION}"
        except sqlite3.DatabaseError as e:
            reason = f"it is corrupt ({e})"
        if not create:
            raise IndexMissingError(f"the index at {path} is unusable: {reason}; run `rcahook index` to rebuild it")
        say(f"rebuilding the index at {path}: {reason}")
        _remove_db(path)
    conn = _connect(path)
    # executescript commits on its own, so the schema and its version go in one script
    conn.executescript(
        f"BEGIN;\n{SCHEMA}\nINSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');\nCOMMIT;")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


def get_meta(conn: sqlite3.Connection, key: str, default: str | None = None) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return row[0] if row else default


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


@contextmanager
def index_lock(db_path: Path, *, wait: float | None = None) -> Iterator[None]:
    """One writer at a time: a second `rcahook index` waits briefly, then gives up clearly."""
    if wait is None:
        wait = float(os.environ.get("RCAHOOK_LOCK_WAIT", "10"))
    db_path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = Path(f"{db_path}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise IndexLockedError(
                        f"another rcahook index is updating {db_path} (waited {wait:g}s); "
                        "let it finish, then run this again") from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # closing releases the flock
