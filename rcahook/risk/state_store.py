"""The pre-push scan's risk state as saved in the index: its tables, the mappings that read
them by key, and the checks every value read goes through.

The index is as untrusted as the repository (a CI cache can hand anyone's .git/rcahook/ to a
scan), so nothing in it may be code, and every value is checked as read. The counts are a row
per key (risk_counts, and risk_pairs for author_files, risk_decayed for recent_culprits), the
root causes a row each with their similarity documents' terms (risk_culprits, risk_terms): a
scan reads the keys and terms of the commits it describes and feeds, and writes back the ones
it changed (issue 11). The rest (fed, n_commits, the features, n_culprits, doc_length) are
small JSON parts in risk_state. RiskHistory (risk/state.py) is what they hold.

numpy only: this module is on the pre-push hook's path, which must start fast.
"""
from __future__ import annotations

import itertools
import json
import math
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, overload

import numpy as np

from rcahook.index import store
from rcahook.risk.facts import MAX_FILES, CommitFacts, similarity_document

if TYPE_CHECKING:
    from rcahook.risk.state import RiskHistory

STATE_VERSION = 3  # meta 'risk_state_version'; bump when the saved shape changes (2: Fed, 3: rows per key)
STATE_TABLES = (
    "CREATE TABLE IF NOT EXISTS risk_state (part TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS risk_counts (part TEXT NOT NULL, key TEXT NOT NULL, value INTEGER NOT NULL,"
    " PRIMARY KEY (part, key)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS risk_pairs (path TEXT NOT NULL, email TEXT NOT NULL, n INTEGER NOT NULL,"
    " PRIMARY KEY (path, email)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS risk_decayed (key TEXT PRIMARY KEY, value REAL NOT NULL, time INTEGER NOT NULL)"
    " WITHOUT ROWID",
    # a row per root cause: the fixes that named it, its facts (to_parts), its similarity
    # document's length; its document's terms in risk_terms (similar's postings)
    "CREATE TABLE IF NOT EXISTS risk_culprits (sha TEXT PRIMARY KEY, fixes TEXT NOT NULL, length INTEGER NOT NULL,"
    " facts TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS risk_terms (term TEXT NOT NULL, sha TEXT NOT NULL, tf INTEGER NOT NULL,"
    " length INTEGER NOT NULL, PRIMARY KEY (term, sha)) WITHOUT ROWID",
)
_TABLES = ("risk_state", "risk_counts", "risk_pairs", "risk_decayed", "risk_culprits", "risk_terms")
STATE_TABLE = STATE_TABLES[0]
_PARTS = ("fed", "n_commits", "features", "n_culprits", "doc_length")  # the JSON parts
_MAX_PART = 2 ** 20  # characters of a part or a root cause's fixes: past it, not written by rcahook
_MAX_DOC = 2 ** 20  # terms in one root cause's document: past it, not written by rcahook
_LIMIT = 2 ** 53  # past any real count or line total: a value beyond it was not written by rcahook
CHUNK = 500  # keys per `IN (...)` query

# RiskHistory's counters, each saved as the rows of risk_counts whose part is its name
COUNTERS = ("file_commits", "file_lines", "author_commits", "component_commits", "dir_commits",
            "word_commits", "file_culprits", "def_culprits", "author_culprits", "component_culprits",
            "dir_culprits", "word_culprits", "file_author_counts")
_CULPRIT_COUNTERS = frozenset(name for name in COUNTERS if name.endswith("_culprits"))


# --- checks ------------------------------------------------------------------------------
# The checks run at C speed (set(map(type, ...))): a saved state holds ~100,000 values on
# iproute2 and is read on every push. JSON gives exact types, so `type(v) is str` is right.

def _only(values: Iterable[object], *types: type) -> bool:
    return set(map(type, values)) <= set(types)


def check_list(value: object, what: str) -> list[object]:
    if type(value) is not list:
        raise ValueError(f"{what}: expected a list")
    return value


def check_strings(value: object, what: str, *, size: int | None = None) -> list[str]:
    if type(value) is not list or not _only(value, str) or (size is not None and len(value) != size):
        raise ValueError(f"{what}: expected a list of strings")
    return value


def check_int(value: object, what: str) -> int:
    if type(value) is not int:  # bool is an int too, and not a count
        raise ValueError(f"{what}: expected an integer, got {type(value).__name__}")
    return value


def check_count(value: object, what: str) -> int:
    n = check_int(value, what)
    if n < 0:
        raise ValueError(f"{what}: expected a count, got {value}")
    return n


def check_counts(value: object, what: str) -> dict[str, int]:
    """A JSON object of integers (its keys are always strings)."""
    if type(value) is not dict:
        raise ValueError(f"{what}: expected an object")
    if not _only(value.values(), int):
        raise ValueError(f"{what}: expected integer values")
    return value


_V = TypeVar("_V")


def check_str_map(value: object, what: str, check: Callable[[object, str], _V]) -> dict[str, _V]:
    """A JSON object (its keys are always strings), each value through `check`."""
    if type(value) is not dict:
        raise ValueError(f"{what}: expected an object")
    return {k: check(v, what) for k, v in value.items()}


_A = TypeVar("_A")
_B = TypeVar("_B")
_C = TypeVar("_C")
_D = TypeVar("_D")


@overload
def check_rows(value: object, what: str, types: tuple[type[_A], type[_B]]) -> list[tuple[_A, _B]]: ...
@overload
def check_rows(value: object, what: str, types: tuple[type[_A], type[_B], type[_C]]) -> list[tuple[_A, _B, _C]]: ...
@overload
def check_rows(value: object, what: str, types: tuple[type[_A], type[_B], type[_C], type[_D]],
               ) -> list[tuple[_A, _B, _C, _D]]: ...
def check_rows(value: object, what: str, types: tuple[type, ...]) -> list[tuple[Any, ...]]:
    """A list of fixed-size rows, column i of type types[i] (the overloads say so to mypy)."""
    rows = check_list(value, what)
    lists = [row for row in rows if type(row) is list]
    if rows and (len(lists) != len(rows) or set(map(len, lists)) != {len(types)}
                 or not all(_only(column, t) for column, t in zip(zip(*lists, strict=True), types, strict=True))):
        raise ValueError(f"{what}: expected rows of {len(types)} fields ({', '.join(t.__name__ for t in types)})")
    return [tuple(row) for row in lists]


def check_decayed(value: object, what: str) -> tuple[float, int]:
    if type(value) is not list or len(value) != 2 or type(value[0]) not in (int, float) or not math.isfinite(
            value[0]):
        raise ValueError(f"{what}: expected [value, time] pairs")
    return float(value[0]), check_int(value[1], what)


def check_facts(row: object) -> CommitFacts:
    """A CommitFacts from the list to_parts wrote, every field checked."""
    if type(row) is not list or len(row) != len(CommitFacts._fields):
        raise ValueError(f"culprits: expected rows of {len(CommitFacts._fields)} fields")
    sha, t, email, subject, files, idents, n_added, is_fix, defs, new_defs, body_words, foreign = row
    if not (type(sha) is str and type(email) is str and type(subject) is str and type(t) is int
            and type(n_added) is int and type(new_defs) is int and type(body_words) is int
            and type(is_fix) is bool and type(foreign) is bool):
        raise ValueError("culprits: a field has the wrong type")
    return CommitFacts(sha=sha, time=t, email=email, subject=subject,
                       files=tuple(check_rows(files, "culprits.files", (str, str, int, int))),
                       idents=tuple(check_strings(idents, "culprits.idents")), n_idents_added=n_added,
                       is_fix=is_fix, defs=tuple(check_strings(defs, "culprits.defs")), new_defs=new_defs,
                       body_words=body_words, foreign=foreign)


def _fixes(data: object) -> list[str]:
    if type(data) is not str or len(data) > _MAX_PART:
        raise ValueError("fixes_of: expected a list of fixes")
    fixes = check_strings(json.loads(data), "fixes_of")
    if not fixes:
        raise ValueError("fixes_of: expected a list of fixes")
    return fixes


class Fed(NamedTuple):
    """How far history_state has fed a state, in a size that does not grow with history
    (issue 11): commits.id only grows (each `rcahook index` appends rows), so one watermark
    stands for every commit and culprit link below it."""

    upto: int = 0  # every indexed commit with id <= upto was fed, and its resolved links, but `skipped`
    skipped: tuple[str, ...] = ()  # commits <= upto left out because they were being pushed (excluded)
    unresolved: int = 0  # links of commits <= upto pending or unknown then: fewer now, one resolved since
    shallow: tuple[tuple[int, str], ...] = ()  # (id, sha) <= upto at a shallow boundary: the rows an index deletes

    def to_part(self) -> dict[str, object]:
        return {"upto": self.upto, "skipped": list(self.skipped), "unresolved": self.unresolved,
                "shallow": [list(row) for row in self.shallow]}

    @classmethod
    def from_part(cls, value: object) -> Fed:
        if type(value) is not dict or set(value) != set(cls._fields):
            raise ValueError(f"fed: expected an object with {', '.join(cls._fields)}")
        return cls(upto=check_count(value["upto"], "fed.upto"),
                   skipped=tuple(check_strings(value["skipped"], "fed.skipped")),
                   unresolved=check_count(value["unresolved"], "fed.unresolved"),
                   shallow=tuple(check_rows(value["shallow"], "fed.shallow", (int, str))))


# --- the saved rows, read by key -----------------------------------------------------------
# a path, an email, a word... or an (email, path) pair (author_files): sortable, for the queries' order
_K = TypeVar("_K", str, tuple[str, str])
_T = TypeVar("_T")


class StoredMap(dict[_K, _V]):
    """A value per key read from the saved rows on first use; a key with no row reads as
    `default` (a count's 0) or, with none, is absent (and not read again). The keys assigned
    since are `dirty`, what save_state writes back. `get` reads too: features ask so."""

    def __init__(self, read: Callable[[list[_K]], Mapping[_K, _V]], *, default: _V | None = None):
        super().__init__()
        self.read: Callable[[list[_K]], Mapping[_K, _V]] = read
        self.default = default
        self.dirty: set[_K] = set()
        self.unsaved: set[_K] = set()  # read, no row, no default

    def __missing__(self, key: _K) -> _V:
        self.prefetch((key,))
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        raise KeyError(key)

    def __setitem__(self, key: _K, value: _V) -> None:
        dict.__setitem__(self, key, value)
        self.dirty.add(key)

    @overload
    def get(self, key: _K, default: None = None, /) -> _V | None: ...
    @overload
    def get(self, key: _K, default: _V, /) -> _V: ...
    @overload
    def get(self, key: _K, default: _T, /) -> _V | _T: ...
    def get(self, key: _K, default: _V | _T | None = None, /) -> _V | _T | None:
        try:
            return self[key]
        except KeyError:
            return default

    def prefetch(self, keys: Iterable[_K]) -> None:
        todo = sorted(k for k in set(keys) if not dict.__contains__(self, k) and k not in self.unsaved)
        if not todo:
            return
        found = self.read(todo)
        for k in todo:
            if k in found:
                dict.__setitem__(self, k, found[k])
            elif self.default is not None:
                dict.__setitem__(self, k, self.default)
            else:
                self.unsaved.add(k)


class StoredSets(dict[str, set[str]]):
    """path -> its authors, read from the saved (path, email) rows with the pairs `pairs` (the
    author_files counts) gained since; a path's set, once read, is kept up to date by observe."""

    def __init__(self, read: Callable[[list[str]], dict[str, set[str]]], pairs: StoredMap[tuple[str, str], int]):
        super().__init__()
        self.read, self.pairs = read, pairs

    def __missing__(self, path: str) -> set[str]:
        self.prefetch((path,))
        return dict.__getitem__(self, path)

    def get(self, path: str, default: object = None, /) -> set[str]:
        return self[path]

    def prefetch(self, paths: Iterable[str]) -> None:
        todo = sorted(p for p in set(paths) if not dict.__contains__(self, p))
        if not todo:
            return
        found = self.read(todo)
        for email, path in self.pairs.dirty:
            if path in found and self.pairs[(email, path)]:
                found[path].add(email)
        for path in todo:
            dict.__setitem__(self, path, found[path])


class SavedState:
    """The saved state of one index, read by key and checked as read: a row that is not what
    save_state writes raises ValueError (history_state rebuilds the state then). Its mappings
    are the counts of the RiskHistory loaded over it (RiskHistory.backed)."""

    def __init__(self, conn: sqlite3.Connection, *, fed: Fed, n_commits: int, n_culprits: int, doc_length: int,
                 fed_text: str):
        self.conn = conn
        self.fed, self.n_commits = fed, n_commits
        self.n_culprits, self.doc_length = n_culprits, doc_length  # root causes saved, their documents' length
        self.fed_text = fed_text  # the `fed` part as loaded: save_state writes only over it
        # counts beyond these bounds are not counts of this history
        self.most = {"commits": n_commits * MAX_FILES, "culprits": n_culprits * MAX_FILES}
        self._postings: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.doc_ids: dict[str, int] = {}
        self.doc_names: list[str] = []
        self.tops: dict[str, list[tuple[str, float]]] = {}  # commit -> the root causes it resembles most
        self.tops_at = 0  # RiskHistory.culprits' size then
        self.counters: dict[str, StoredMap[str, int]] = {
            name: StoredMap(partial(self.counts, name), default=0) for name in COUNTERS}
        self.author_files: StoredMap[tuple[str, str], int] = StoredMap(self.pairs, default=0)
        self.file_authors = StoredSets(self.authors, self.author_files)
        self.recent_culprits: StoredMap[str, tuple[float, int]] = StoredMap(self.decayed)
        self.fixes_of: StoredMap[str, list[str]] = StoredMap(self.fixes)

    def _select(self, sql: str, keys: Sequence[object], *, first: tuple[object, ...] = (),
                ) -> Iterator[tuple[Any, ...]]:
        """`sql` with {marks} standing for a chunk of keys, after the arguments `first`: rows as
        SQLite returns them, for the caller to check."""
        for i in range(0, len(keys), CHUNK):
            chunk = keys[i:i + CHUNK]
            yield from self.conn.execute(sql.format(marks=",".join("?" * len(chunk))), [*first, *chunk])

    def _count(self, part: str, key: object, value: object) -> int:
        if type(key) is not str or type(value) is not int:
            raise ValueError(f"{part}: expected integer counts, got {type(value).__name__}")
        if part == "file_lines":
            if abs(value) > _LIMIT:
                raise ValueError(f"{part}: {value} lines is not a file's size")
        elif not 0 <= value <= self.most["culprits" if part in _CULPRIT_COUNTERS else "commits"]:
            raise ValueError(f"{part}: {value} is not a count of this history")
        return value

    def counts(self, part: str, keys: Sequence[str]) -> dict[str, int]:
        rows = self._select("SELECT key, value FROM risk_counts WHERE part = ? AND key IN ({marks})", keys,
                            first=(part,))
        return {key: self._count(part, key, value) for key, value in rows}

    def pairs(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """author_files of these (email, path) pairs (saved as path, email: a file's authors are a range)."""
        by_email: dict[str, list[str]] = defaultdict(list)
        for email, path in keys:
            by_email[email].append(path)
        out = {}
        for email, paths in by_email.items():  # a row value IN (VALUES ...) would scan the table
            for path, n in self._select("SELECT path, n FROM risk_pairs WHERE email = ? AND path IN ({marks})",
                                        paths, first=(email,)):
                out[(email, path)] = self._count("author_files", path, n)
        return out

    def authors(self, paths: Sequence[str]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {path: set() for path in paths}
        for path, email, n in self._select("SELECT path, email, n FROM risk_pairs WHERE path IN ({marks})", paths):
            if self._count("author_files", email, n) and path in out:
                out[path].add(email)
        return out

    def decayed(self, keys: Sequence[str]) -> dict[str, tuple[float, int]]:
        rows = self._select("SELECT key, value, time FROM risk_decayed WHERE key IN ({marks})", keys)
        out = {}
        for key, value, then in rows:
            if type(value) is not float or not 0 <= value <= self.most["culprits"] + 1 or type(then) is not int:
                raise ValueError("recent_culprits: expected [value, time] pairs")
            out[key] = (value, then)
        return out

    def fixes(self, shas: Sequence[str]) -> dict[str, list[str]]:
        rows = self._select("SELECT sha, fixes FROM risk_culprits WHERE sha IN ({marks})", shas)
        return {sha: _fixes(data) for sha, data in rows}

    def doc_id(self, sha: str) -> int:
        """A root cause's place in `similar`'s score arrays (doc_names[id] is its sha)."""
        if sha not in self.doc_ids:
            self.doc_ids[sha] = len(self.doc_names)
            self.doc_names.append(sha)
        return self.doc_ids[sha]

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The saved root causes whose document has `term` (doc_id) (P,), the times it has it
        (P,) and the documents' lengths (P,)."""
        if term not in self._postings:
            self.prefetch_postings((term,))
        return self._postings[term]

    def prefetch_postings(self, terms: Iterable[str]) -> None:
        todo = sorted(set(terms) - set(self._postings))
        rows: dict[str, tuple[tuple[object, ...], ...]] = {term: ((), (), ()) for term in todo}
        for i in range(0, len(todo), CHUNK):  # the rows of a term are read together, in key order
            chunk = todo[i:i + CHUNK]
            found = self.conn.execute(f"SELECT term, sha, tf, length FROM risk_terms WHERE term IN"
                                      f" ({','.join('?' * len(chunk))}) ORDER BY term", chunk).fetchall()
            for term, group in itertools.groupby(found, key=itemgetter(0)):
                if term in rows:
                    rows[term] = tuple(zip(*group, strict=True))[1:]
        for term, (shas, tf, length) in rows.items():
            if not (_only(shas, str) and _only(tf, int) and _only(length, int)):
                raise ValueError("risk_terms: expected (root cause, count, length) rows")
            counts, lengths = np.array(tf, dtype=np.int64), np.array(length, dtype=np.int64)  # (P,)
            if ((counts <= 0) | (counts > lengths) | (lengths > _MAX_DOC)).any():
                raise ValueError(f"risk_terms: a count of {term!r} is not a term's count in a document")
            at = np.fromiter((self.doc_id(sha) for sha in shas if type(sha) is str), np.int64, len(shas))  # (P,)
            self._postings[term] = (at, counts, lengths)

    # every saved row of a part, checked (to_parts of a loaded state)
    def every_count(self, part: str) -> dict[str, int]:
        return {k: self._count(part, k, v) for k, v in
                self.conn.execute("SELECT key, value FROM risk_counts WHERE part = ?", (part,))}

    def every_pair(self) -> dict[tuple[str, str], int]:
        rows = self.conn.execute("SELECT path, email, n FROM risk_pairs")
        return {(e, p): self._count("author_files", p, n) for p, e, n in rows}

    def every_decayed(self) -> dict[str, tuple[float, int]]:
        return self.decayed([k for (k,) in self.conn.execute("SELECT key FROM risk_decayed")])

    def every_culprit(self) -> tuple[dict[str, CommitFacts], dict[str, list[str]]]:
        """The saved root causes' facts, and the fixes that named each."""
        rows = self.conn.execute("SELECT sha, fixes, facts FROM risk_culprits").fetchall()
        return ({sha: check_facts(json.loads(facts)) for sha, _, facts in rows},
                {sha: _fixes(fixes) for sha, fixes, _ in rows})


# --- loading and saving ----------------------------------------------------------------------

def last_commit_id(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT MAX(id) FROM commits").fetchone()[0] or 0


def read_saved(conn: sqlite3.Connection, *, features: Sequence[str]) -> tuple[SavedState | None, str | None]:
    """(the saved state, None), or (None, why it cannot be used); (None, None) when none was saved.
    `features`: the names the state's features must have been computed for. Its counts are
    read later, by key (RiskHistory.prefetch), and checked then."""
    version = store.get_meta(conn, "risk_state_version")
    try:
        rows = conn.execute("SELECT part, length(data) FROM risk_state").fetchall()
    except sqlite3.OperationalError:  # an index written before the table existed
        rows = []
    if version is None and not rows:
        return None, None
    if version != str(STATE_VERSION):
        return None, f"the saved one has version {version}, this rcahook writes {STATE_VERSION}"
    try:
        sizes = dict(rows)
        if set(sizes) != set(_PARTS) or not _only(sizes.values(), int) or max(sizes.values()) > _MAX_PART:
            raise ValueError(f"expected the parts {', '.join(_PARTS)}, each under {_MAX_PART} characters")
        texts = dict(conn.execute("SELECT part, data FROM risk_state"))
        parts = {part: json.loads(data) for part, data in texts.items()}
        if parts["features"] != list(features):
            return None, "the saved one was computed for other features"
        fed = Fed.from_part(parts["fed"])
        last = last_commit_id(conn)
        if fed.upto > last:  # trusted, it would hide every commit indexed up to it
            raise ValueError(f"fed.upto: {fed.upto} is past the index's last commit ({last})")
        n_commits = check_count(parts["n_commits"], "n_commits")
        n_culprits = check_count(parts["n_culprits"], "n_culprits")
        doc_length = check_count(parts["doc_length"], "doc_length")
        if n_culprits > n_commits or doc_length > n_culprits * _MAX_DOC:
            raise ValueError(f"n_culprits: {n_culprits} root causes ({doc_length} terms) in {n_commits} commits")
        for table in _TABLES[1:]:  # an index that lost a table: rebuilt, not a failed scan
            conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchall()
        return SavedState(conn, fed=fed, n_commits=n_commits, n_culprits=n_culprits, doc_length=doc_length,
                          fed_text=texts["fed"]), None
    except (ValueError, TypeError, KeyError, RecursionError, sqlite3.OperationalError) as e:
        return None, f"the saved one is malformed ({str(e)[:120]})"


def _changed(values: Mapping[_K, _V]) -> list[tuple[_K, _V]]:
    """The rows to write: a loaded state's changed keys, every key of one built in memory."""
    if isinstance(values, StoredMap):
        return [(k, values[k]) for k in sorted(values.dirty)]
    return list(values.items())


def write_state(conn: sqlite3.Connection, state: RiskHistory, *, features: Sequence[str]) -> bool:
    """Save the state in one transaction; waits at most a second for a busy index. A state
    built in memory replaces what was saved; a loaded one writes the keys it changed, unless
    another scan saved since it was loaded (False then: its rows are at least as new)."""
    saved = state.store
    fed_text = _json(state.fed.to_part())
    with store.transaction(conn, busy_timeout=1.0):
        for table in STATE_TABLES:
            conn.execute(table)
        if saved is None:
            for table in _TABLES:
                conn.execute(f"DELETE FROM {table}")
        else:
            row = conn.execute("SELECT data FROM risk_state WHERE part = 'fed'").fetchone()
            if row is None or row[0] != saved.fed_text:
                return False
        upsert = " ON CONFLICT DO UPDATE SET {0} = excluded.{0}"
        conn.executemany("INSERT INTO risk_counts VALUES (?, ?, ?)" + upsert.format("value"),
                         [(name, k, v) for name in COUNTERS for k, v in _changed(state.counter(name))])
        conn.executemany("INSERT INTO risk_pairs VALUES (?, ?, ?)" + upsert.format("n"),
                         [(path, email, n) for (email, path), n in _changed(state.author_files)])
        conn.executemany("INSERT INTO risk_decayed VALUES (?, ?, ?) ON CONFLICT DO UPDATE"
                         " SET value = excluded.value, time = excluded.time",
                         [(k, v, t) for k, (v, t) in _changed(state.recent_culprits.values)])
        # root causes learned (since loaded): INSERT OR REPLACE, a second save writes them again
        docs = {c.sha: similarity_document(c) for c in state.culprits.values()}
        conn.executemany("INSERT OR REPLACE INTO risk_culprits VALUES (?, ?, ?, ?)", [
            (sha, _json(state.fixes_of[sha]), len(docs[sha]), _json(list(c))) for sha, c in state.culprits.items()])
        conn.executemany("INSERT OR REPLACE INTO risk_terms VALUES (?, ?, ?, ?)", [
            (term, sha, tf, len(doc)) for sha, doc in docs.items() for term, tf in Counter(doc).items()])
        if saved is not None:  # more fixes of root causes saved before
            conn.executemany("UPDATE risk_culprits SET fixes = ? WHERE sha = ?", [
                (_json(fixes), sha) for sha, fixes in _changed(state.fixes_of) if sha not in docs])
        doc_length = sum(map(len, docs.values())) + (saved.doc_length if saved is not None else 0)
        parts = {"fed": fed_text, "n_commits": str(state.n_commits), "features": _json(list(features)),
                 "n_culprits": str(state.n_culprits), "doc_length": str(doc_length)}
        conn.executemany("INSERT OR REPLACE INTO risk_state VALUES (?, ?)", list(parts.items()))
        store.set_meta(conn, "risk_state_version", str(STATE_VERSION))
    if saved is not None:  # written: the next save writes what changes from here
        for counts in saved.counters.values():
            counts.dirty.clear()
        saved.author_files.dirty.clear()
        saved.recent_culprits.dirty.clear()
        saved.fixes_of.dirty.clear()
        saved.fed_text = fed_text
    return True


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
