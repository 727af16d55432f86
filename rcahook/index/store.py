"""The SQLite index: schema, opening (with rebuild of stale or corrupt files) and the lock.

The index is a cache of the repository: it can always be rebuilt, so an old schema or a
corrupt file is replaced rather than migrated. Only proof of either is a reason to replace
it: a file that cannot be opened for want of permission, a lock or an I/O error is left as it
is and reported as what it is. An index that cannot be written (a read-only repository) is
read as it is. What cannot be rebuilt (saved investigations, responders' verdicts) lives in
a separate state database (feedback.py).
"""
from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import overload

from rcahook.errors import IndexLockedError, IndexMissingError, PermissionDeniedError, RcahookError

SCHEMA_VERSION = 6  # 6: commits.generation (issue 11)

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
    defs_done INTEGER NOT NULL DEFAULT 0,  -- touched definitions computed
    -- 1 + the largest generation of its parents (1 for a root, or when no parent is indexed):
    -- a commit reachable from another has a smaller one, so ancestry walks stop early
    generation INTEGER NOT NULL DEFAULT 0
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
    unavailable INTEGER NOT NULL DEFAULT 0, -- 1: a blob is missing (partial clone): no lines, no hunks
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
CREATE INDEX links_ref ON links(ref);  -- the unresolved references a new commit may now answer
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


# What an update looks for on every run, indexed so that finding it costs what is there,
# not a scan of every commit or link (issue 11). Made on open too: an index of this schema
# version written before they existed gains them (they change no row).
WORK_INDEXES = """
CREATE INDEX IF NOT EXISTS commits_unnumbered ON commits(id) WHERE generation = 0;
CREATE INDEX IF NOT EXISTS commits_shallow ON commits(id) WHERE shallow = 1;
CREATE INDEX IF NOT EXISTS commits_defs_todo ON commits(id) WHERE defs_done = 0;
CREATE INDEX IF NOT EXISTS links_status ON links(status);
CREATE INDEX IF NOT EXISTS commits_generation ON commits(generation, committer_time);  -- the newest N (touched depth)
"""


def default_db_path(git_dir: Path) -> Path:
    """`git_dir` is git's common directory (Repo.common_dir): linked worktrees share one index."""
    return git_dir / "rcahook" / "index.sqlite"


class StoreConnection(sqlite3.Connection):
    """A connection (to the index or the state database) that knows whether it may write: a
    read-only repository's index is read as it is, and what would cache or save something
    skips that instead."""

    read_only = False


def is_read_only(conn: sqlite3.Connection) -> bool:
    return bool(getattr(conn, "read_only", False))


def write_problem(db_path: Path) -> str | None:
    """Why this process cannot write the SQLite file at db_path (the file, the -wal, -shm and
    lock files beside it, or the directory that would hold them), or None when it can."""
    probe = db_path.parent
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent  # creating the directory needs its nearest existing ancestor writable
    try:
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            return f"{probe} is on a read-only file system"
    except OSError:
        pass
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable by this user"
    if probe == db_path.parent:
        for p in (db_path, *(Path(f"{db_path}{s}") for s in ("-wal", "-shm", ".lock"))):
            if _not_writable(p):
                readable = os.access(p, os.R_OK)
                return f"{p} is not {'writable' if readable else 'readable or writable'} by this user"
    return None


def _not_writable(p: Path) -> bool:
    """An existing file this user cannot write. SQLite creates and removes -wal and -shm as
    other connections (threads of `rcahook serve`, a concurrent scan) open and close: a file
    that appears or vanishes while it is checked is not a problem, only one that stays."""
    if os.access(p, os.W_OK):
        return False
    try:
        os.stat(p)
    except FileNotFoundError:
        return False  # not there (any more): SQLite creates it as this user
    except OSError:
        return True
    return not os.access(p, os.W_OK)


def cannot_write_message(db_path: Path, problem: str) -> str:
    return (f"cannot write the index at {db_path}: {problem}; pass --db PATH with a writable PATH "
            "(to `rcahook index` and then to the other commands), or fix the permissions")


def _connect(path: Path) -> StoreConnection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False,
                           factory=StoreConnection)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash loses at most the last commit, never consistency
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA cache_size=-65536")
    return conn


def connect_read_only(path: Path) -> StoreConnection:
    """Open an SQLite file (the index, the state database) without writing anything, not
    even the -wal and -shm files beside it."""
    uri = path.absolute().as_uri()
    error: sqlite3.OperationalError | None = None
    # mode=ro reads a WAL database when its -shm exists or can be created; in a read-only
    # directory without one, immutable=1 reads the file as it is (nobody can be writing it
    # there: writing needs that directory too)
    for query in ("mode=ro", "immutable=1"):
        conn = sqlite3.connect(f"{uri}?{query}", uri=True, timeout=30, isolation_level=None,
                               check_same_thread=False, factory=StoreConnection)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as e:
            conn.close()
            if not is_read_only_error(e):
                raise
            error = e
            continue
        conn.read_only = True
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-65536")
        return conn
    assert error is not None
    raise error


def _error_name(e: sqlite3.Error) -> str:
    return getattr(e, "sqlite_errorname", "") or ""  # Python 3.11+; the message below otherwise


def is_read_only_error(e: sqlite3.Error) -> bool:
    text = str(e)
    return (_error_name(e).startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH"))
            or "readonly database" in text or "unable to open database file" in text)


def is_corrupt(e: sqlite3.Error) -> bool:
    """Proof that the file is not a usable SQLite database (as opposed to one we can't open)."""
    text = str(e)
    return (_error_name(e).startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
            or "file is not a database" in text or "database disk image is malformed" in text)


def _unusable(path: Path, e: sqlite3.Error) -> RcahookError:
    """What an index that could not be opened, for a reason other than corruption, is."""
    text = str(e)
    if _error_name(e).startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "is locked" in text:
        return IndexLockedError(f"the index at {path} is locked by another process ({e}); let it finish, "
                                "then run this again")
    if is_read_only_error(e):
        return PermissionDeniedError(
            f"cannot open the index at {path} ({e}); it was left as it is: check the permissions of it and "
            f"of {path.parent}, or pass --db PATH for an index of your own")
    return IndexMissingError(f"cannot open the index at {path} ({e}); it was left as it is (only a "
                             "corrupt index is rebuilt): check the file and the disk, or pass --db PATH")


def _schema_version(conn: sqlite3.Connection) -> int | None:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return None  # some other SQLite file: not an index of this rcahook
        raise
    return int(row[0]) if row else None


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass


def open_index(path: Path, *, create: bool = True,
               say: Callable[[str], None] = lambda msg: None) -> StoreConnection:
    """Open the index.

    With `create` (`rcahook index`), make it, or rebuild it when its schema is old or it is
    proven corrupt; that needs write access. Without, an index this process cannot write is
    opened read-only (see is_read_only). A permission, lock or I/O error never leads to a
    rebuild: the file is left as it is and the error says what it is.
    """
    problem = write_problem(path)
    if not path.exists():
        if not create:
            hint = (f" ({problem}: run `rcahook index --db PATH` with a writable PATH, then pass the same --db here)"
                    if problem else "")
            raise IndexMissingError(f"no rcahook index at {path}; run `rcahook index` first{hint}")
        if problem:
            raise PermissionDeniedError(cannot_write_message(path, problem))
        path.parent.mkdir(parents=True, exist_ok=True)
        return _create(path)
    if not os.access(path, os.R_OK):
        raise PermissionDeniedError(
            f"cannot read the index at {path} (permission denied); it was left as it is: give this user read "
            "access to it, or pass --db PATH for an index of your own")
    if create and problem:
        raise PermissionDeniedError(cannot_write_message(path, problem))
    try:
        conn = connect_read_only(path) if problem else _connect(path)
        try:
            version = _schema_version(conn)
        except BaseException:
            conn.close()
            raise
    except sqlite3.DatabaseError as e:
        if not is_corrupt(e):
            raise _unusable(path, e) from e
        reason = f"it is corrupt ({e})"
    else:
        if version == SCHEMA_VERSION:
            if create:
                conn.executescript(WORK_INDEXES)
            return conn
        conn.close()
        reason = f"it has schema version {version}, this rcahook needs {SCHEMA_VERSION}"
    if not create:
        fix = "run `rcahook index` to rebuild it" if not problem else (
            f"{problem}: run `rcahook index --db PATH` with a writable PATH, then pass the same --db here")
        raise IndexMissingError(f"the index at {path} is unusable: {reason}; {fix}")
    say(f"rebuilding the index at {path}: {reason}")
    _remove_db(path)
    return _create(path)


def _create(path: Path) -> StoreConnection:
    conn = _connect(path)
    # executescript commits on its own, so the schema and its version go in one script
    conn.executescript(
        f"BEGIN;\n{SCHEMA}\n{WORK_INDEXES}\nINSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');\nCOMMIT;")
    return conn


IN_CHUNK = 500  # values per `IN (...)` list: well under SQLite's bound-parameter limit on any build


def rows_in(conn: sqlite3.Connection, sql: str, values: Iterable) -> Iterator[tuple]:
    """The rows of `sql`, whose `{marks}` is an IN list, for `values` (duplicates dropped),
    asked in chunks: what reading by key (never every row) looks like here."""
    wanted = list(dict.fromkeys(values))
    for i in range(0, len(wanted), IN_CHUNK):
        chunk = wanted[i:i + IN_CHUNK]
        yield from conn.execute(sql.format(marks=",".join("?" * len(chunk))), chunk)


@contextmanager
def transaction(conn: sqlite3.Connection, *, busy_timeout: float | None = None) -> Iterator[sqlite3.Connection]:
    """The one write transaction, for the index and the state database alike.

    BEGIN IMMEDIATE takes the write lock up front: a deferred one that reads first and then
    writes can fail with "database is locked" half-way, whatever the busy timeout. COMMIT on
    success; ROLLBACK on any exception, Ctrl-C and the scan's deadline included (unless SQLite
    already rolled back itself). `busy_timeout`: seconds to wait for another writer, for this
    transaction only (connections wait 30 s).
    """
    previous = None
    if busy_timeout is not None:
        (previous,) = conn.execute("PRAGMA busy_timeout").fetchone()
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        if previous is not None:
            conn.execute(f"PRAGMA busy_timeout={int(previous)}")


@contextmanager
def read_snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One consistent view of the database for several reads (a writer may commit meanwhile:
    WAL readers keep the snapshot they started with); takes no write lock."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


@overload
def get_meta(conn: sqlite3.Connection, key: str, default: str) -> str: ...
@overload
def get_meta(conn: sqlite3.Connection, key: str, default: None = None) -> str | None: ...
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
    problem = write_problem(db_path)
    if problem:
        raise PermissionDeniedError(cannot_write_message(db_path, problem))
    lock_path = Path(f"{db_path}.lock")
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        raise PermissionDeniedError(cannot_write_message(db_path, f"{e.strerror} ({lock_path})")) from None
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
