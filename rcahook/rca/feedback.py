"""Saved investigations and responders' verdicts: the state database.

Unlike the index (a cache, rebuilt at will), this holds what cannot be recomputed: what
rcahook suggested for an incident and what the responder said caused it. So it lives in
its own file, `<git common dir>/rcahook/state.sqlite` (one for the repository and all its
linked worktrees), and is written with care:

- append-only: triggers refuse UPDATE and DELETE on both tables; a later verdict on the
  same commit supersedes an earlier one in the `current_verdicts` view, both stay;
- WAL with synchronous=FULL: each verdict is fsync'd before `feedback` returns, and a
  crash mid-write leaves the previous state intact (the transaction never happened).

The export (`feedback --export`) is the input of `rcahook train`; its format is
documented in docs/investigate.md and versioned by EXPORT_VERSION.
"""
from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rcahook.errors import BadInputError, ConfigError, NotFoundError, PermissionDeniedError
from rcahook.index import store

STATE_SCHEMA_VERSION = 2  # 2: the deploys table (issue 12); a version-1 file gains it when opened for writing
EXPORT_VERSION = 1
VERDICTS = ("root_cause", "not")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS investigations (
    id TEXT PRIMARY KEY,             -- inv-YYYYMMDD-xxxx
    created INTEGER NOT NULL,        -- epoch seconds
    repo TEXT NOT NULL,              -- git dir it was run against
    at TEXT NOT NULL,                -- full sha of the investigated revision
    ranker TEXT NOT NULL,            -- the ranker that produced the results
    incident TEXT NOT NULL,          -- JSON: the incident as investigated
    results TEXT NOT NULL            -- JSON: the report shown plus every ranked candidate
);
CREATE TABLE IF NOT EXISTS verdicts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    investigation_id TEXT NOT NULL REFERENCES investigations(id),
    created INTEGER NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('root_cause', 'not')),
    sha TEXT NOT NULL,               -- full sha
    in_candidates INTEGER NOT NULL,  -- 1 when the sha was among the ranked candidates
    rank INTEGER,                    -- its rank there (1-based), NULL when not among them
    note TEXT
);
CREATE INDEX IF NOT EXISTS verdicts_investigation ON verdicts(investigation_id);
-- What stands: a verdict is superseded by a later one on the same commit, and a root
-- cause by a later root cause (the responder changed their mind); none is ever lost.
CREATE VIEW IF NOT EXISTS current_verdicts AS
    SELECT v.* FROM verdicts v
    WHERE NOT EXISTS (SELECT 1 FROM verdicts w
                      WHERE w.investigation_id = v.investigation_id AND w.seq > v.seq
                        AND (w.sha = v.sha OR (w.verdict = 'root_cause' AND v.verdict = 'root_cause')));
CREATE TRIGGER IF NOT EXISTS investigations_append_only_u BEFORE UPDATE ON investigations
    BEGIN SELECT RAISE(ABORT, 'investigations are append-only'); END;
CREATE TRIGGER IF NOT EXISTS investigations_append_only_d BEFORE DELETE ON investigations
    BEGIN SELECT RAISE(ABORT, 'investigations are append-only'); END;
CREATE TRIGGER IF NOT EXISTS verdicts_append_only_u BEFORE UPDATE ON verdicts
    BEGIN SELECT RAISE(ABORT, 'verdicts are append-only'); END;
CREATE TRIGGER IF NOT EXISTS verdicts_append_only_d BEFORE DELETE ON verdicts
    BEGIN SELECT RAISE(ABORT, 'verdicts are append-only'); END;

-- Deploy events (`rcahook deploy record`, POST /api/deploys): what ran where, since when.
-- They bound an investigation's search space (rcahook/serve/deploys.py); append-only too.
CREATE TABLE IF NOT EXISTS deploys (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    environment TEXT NOT NULL,       -- an environment or a service, as the pipeline names it
    sha TEXT NOT NULL,               -- full sha of the deployed revision
    time INTEGER NOT NULL,           -- epoch seconds: when it went live
    recorded INTEGER NOT NULL        -- epoch seconds: when rcahook was told
);
CREATE INDEX IF NOT EXISTS deploys_environment ON deploys(environment, time);
CREATE TRIGGER IF NOT EXISTS deploys_append_only_u BEFORE UPDATE ON deploys
    BEGIN SELECT RAISE(ABORT, 'deploys are append-only'); END;
CREATE TRIGGER IF NOT EXISTS deploys_append_only_d BEFORE DELETE ON deploys
    BEGIN SELECT RAISE(ABORT, 'deploys are append-only'); END;
"""


@dataclass(frozen=True)
class SavedInvestigation:
    id: str
    created: int
    repo: str
    at: str
    ranker: str
    incident: dict
    results: dict

    @property
    def candidates(self) -> list[str]:
        """Every ranked candidate's full sha, best first."""
        return [c["sha"] for c in self.results.get("candidates", [])]


@dataclass(frozen=True)
class Verdict:
    seq: int
    investigation_id: str
    created: int
    verdict: str  # root_cause | not
    sha: str
    in_candidates: bool
    rank: int | None
    note: str | None
    superseded: bool  # a later verdict on the same commit (or a later root cause) exists


def state_path(git_dir: Path) -> Path:
    """`git_dir` is git's common directory (Repo.common_dir): linked worktrees share one store."""
    return git_dir / "rcahook" / "state.sqlite"


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


def open_state(path: Path, *, create: bool = True) -> sqlite3.Connection:
    """Open (or create) the state database; never rebuilt, never migrated destructively.

    Without `create`, one this process cannot write (a read-only repository) is opened
    read-only (store.is_read_only): listing and exporting work, recording a verdict cannot.
    """
    problem = store.write_problem(path)
    if not path.exists():
        if not create:
            raise NotFoundError(
                f"no saved investigations at {path}; run `rcahook investigate` (without --no-save) first")
        if problem:
            raise PermissionDeniedError(f"cannot save investigations in {path}: {problem}")
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not os.access(path, os.R_OK):
        raise PermissionDeniedError(f"cannot read the saved investigations in {path} (permission denied); "
                                    "give this user read access to it")
    elif problem and create:
        raise PermissionDeniedError(f"cannot save investigations in {path}: {problem}")
    conn: sqlite3.Connection | None = None
    try:
        if problem:
            conn = store.connect_read_only(path)
        else:
            conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # fsync the WAL on every commit: verdicts are not a cache
            conn.execute("PRAGMA foreign_keys=ON")
        has_meta = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
    except sqlite3.DatabaseError as e:
        if conn is not None:
            conn.close()
        raise _unopenable(path, e) from e
    if not has_meta:
        if problem:
            conn.close()
            raise NotFoundError(f"no saved investigations in {path} (it is empty, and read-only: {problem})")
        # executescript commits on its own, so the schema and its version go in one script;
        # IF NOT EXISTS and OR IGNORE: two first runs racing both succeed
        conn.executescript(f"BEGIN IMMEDIATE;\n{_SCHEMA}\nINSERT OR IGNORE INTO meta VALUES "
                           f"('schema_version', '{STATE_SCHEMA_VERSION}');\nCOMMIT;")
        return conn
    version = int(conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
    if version > STATE_SCHEMA_VERSION:
        conn.close()
        raise ConfigError(f"the state database {path} has schema version {version}, newer than this "
                          f"rcahook understands ({STATE_SCHEMA_VERSION}); upgrade rcahook")
    if version < STATE_SCHEMA_VERSION and not problem:
        # only additions so far (the deploys table): the same script, IF NOT EXISTS, one transaction
        conn.executescript(f"BEGIN IMMEDIATE;\n{_SCHEMA}\nUPDATE meta SET value='{STATE_SCHEMA_VERSION}' "
                           "WHERE key='schema_version';\nCOMMIT;")
    return conn


def _unopenable(path: Path, e: sqlite3.DatabaseError) -> Exception:
    """What a state database that could not be opened is; only corruption suggests moving it."""
    if store.is_corrupt(e):
        return ConfigError(f"the state database {path} is unreadable ({e}); it holds saved "
                           "verdicts, so rcahook will not replace it: move it aside to start afresh")
    if store.is_read_only_error(e):
        return PermissionDeniedError(f"cannot open the saved investigations in {path} ({e}); check the "
                                     f"permissions of it and of {path.parent}")
    return ConfigError(f"cannot open the state database {path} ({e}); it was left as it is: "
                       "check the file and the disk, then run this again")


def new_id(now: int) -> str:
    day = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%d")
    return f"inv-{day}-{secrets.token_hex(2)}"


def save_investigation(conn: sqlite3.Connection, *, repo: str, at: str, ranker: str, incident: dict,
                       results: dict, now: int | None = None) -> str:
    """Store one investigation under a fresh id and return the id."""
    now = int(time.time()) if now is None else now
    for _ in range(100):
        inv_id = new_id(now)
        try:
            with store.transaction(conn):
                conn.execute("INSERT INTO investigations VALUES (?,?,?,?,?,?,?)",
                             (inv_id, now, repo, at, ranker, json.dumps(incident), json.dumps(results)))
            return inv_id
        except sqlite3.IntegrityError:
            continue  # 1 in 65536 per investigation that day: draw again
    raise RuntimeError("could not find a free investigation id after 100 draws")


def get_investigation(conn: sqlite3.Connection, inv_id: str) -> SavedInvestigation:
    row = conn.execute("SELECT id, created, repo, at, ranker, incident, results FROM investigations"
                       " WHERE id=?", (inv_id.strip(),)).fetchone()
    if row is None:
        recent = [r[0] for r in conn.execute("SELECT id FROM investigations ORDER BY created DESC LIMIT 3")]
        hint = f"recent ones: {', '.join(recent)}" if recent else "none is saved yet"
        raise NotFoundError(f"no saved investigation {inv_id!r} ({hint}); `rcahook feedback --list` lists them")
    return _saved(row)


def _saved(row: tuple) -> SavedInvestigation:
    return SavedInvestigation(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), json.loads(row[6]))


def list_investigations(conn: sqlite3.Connection) -> list[SavedInvestigation]:
    """Newest first."""
    return [_saved(r) for r in conn.execute(
        "SELECT id, created, repo, at, ranker, incident, results FROM investigations"
        " ORDER BY created DESC, rowid DESC")]


def match_candidate(saved: SavedInvestigation, given: str) -> str | None:
    """The candidate's full sha when `given` is a unique prefix of one of them."""
    given = given.strip().lower()
    hits = [s for s in saved.candidates if s.startswith(given)]
    return hits[0] if len(hits) == 1 else None


def record_verdicts(conn: sqlite3.Connection, saved: SavedInvestigation, *, root_cause: str | None,
                    not_causes: Sequence[str], note: str | None,
                    resolve: Callable[[str], str], now: int | None = None) -> list[Verdict]:
    """Append the verdicts in one fsync'd transaction. `resolve` turns what the responder
    typed into a full sha (the index, then git) when it is not one of the candidates."""
    wanted = [("root_cause", root_cause)] if root_cause else []
    wanted += [("not", s) for s in not_causes]
    if not wanted:
        raise BadInputError("nothing to record: pass --root-cause SHA and/or --not SHA")
    resolved = [(kind, match_candidate(saved, given) or resolve(given)) for kind, given in wanted]
    shas = [sha for _, sha in resolved]
    if len(set(shas)) != len(shas):
        raise BadInputError("the same commit was given twice (as --root-cause and --not, or twice as --not); "
                            "give each commit once")
    ranks = {sha: i + 1 for i, sha in enumerate(saved.candidates)}
    now = int(time.time()) if now is None else now
    with store.transaction(conn):
        for kind, sha in resolved:
            conn.execute(
                "INSERT INTO verdicts (investigation_id, created, verdict, sha, in_candidates, rank, note)"
                " VALUES (?,?,?,?,?,?,?)", (saved.id, now, kind, sha, int(sha in ranks), ranks.get(sha), note))
    recorded = verdicts(conn, saved.id)
    return recorded[-len(resolved):]


def verdicts(conn: sqlite3.Connection, inv_id: str | None = None) -> list[Verdict]:
    """Every verdict (superseded ones too), oldest first."""
    sql = ("SELECT v.seq, v.investigation_id, v.created, v.verdict, v.sha, v.in_candidates, v.rank, v.note,"
           " v.seq NOT IN (SELECT seq FROM current_verdicts) FROM verdicts v")
    args: tuple = ()
    if inv_id is not None:
        sql += " WHERE v.investigation_id = ?"
        args = (inv_id,)
    return [Verdict(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7], bool(r[8]))
            for r in conn.execute(sql + " ORDER BY v.seq", args)]


def current_root_cause(history: Sequence[Verdict]) -> Verdict | None:
    """The responder's present answer, if it still stands."""
    live = [v for v in history if v.verdict == "root_cause" and not v.superseded]
    return live[-1] if live else None


def export_jsonl(conn: sqlite3.Connection, path: Path, *, inv_id: str | None = None) -> int:
    """Write every verdict with its incident and candidates, one JSON object a line."""
    saved = {s.id: s for s in list_investigations(conn)}
    rows = verdicts(conn, inv_id)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for v in rows:
            inv = saved[v.investigation_id]
            f.write(json.dumps(export_record(inv, v), ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    return len(rows)


def export_record(inv: SavedInvestigation, v: Verdict) -> dict:
    return {
        "export_version": EXPORT_VERSION,
        "investigation_id": inv.id,
        "verdict_seq": v.seq,
        "recorded": iso(v.created),
        "verdict": v.verdict,
        "sha": v.sha,
        "superseded": v.superseded,
        "in_candidates": v.in_candidates,
        "rank": v.rank,
        "note": v.note,
        "repo": inv.repo,
        "at": inv.at,
        "investigated": iso(inv.created),
        "ranker": inv.ranker,
        "incident": inv.incident,
        "query": inv.results.get("query"),
        "search_space": inv.results.get("search_space"),
        "candidates": inv.results.get("candidates", []),
    }
