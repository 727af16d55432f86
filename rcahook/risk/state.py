"""Running risk statistics over published history, and their place in the index.

`RiskHistory` is fed commits in time order (`observe`) and root causes once a fix names
them (`learn_culprit`); `features` describes a commit against what it has seen
(RISK_FEATURES). `replay` drives it over a history for training and the backtest;
`history_state` keeps it up to date in the index for the pre-push scan (versioned JSON
parts validated on load, never pickle: the index is as untrusted as the repository).

numpy only: this module is on the pre-push hook's path, which must start fast.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rcahook.index import store
from rcahook.risk.facts import MAX_FILES, CommitFacts, load_facts, similarity_document
from rcahook.text import BM25, DOC_PATH, component_prefix, tokenize

# The order is the weight vector's; a new feature goes at the end (old files give it 0).
RISK_FEATURES: tuple[str, ...] = (
    "log_added",            # log(1 + lines added)
    "log_deleted",          # log(1 + lines deleted)
    "log_files",            # log(1 + files changed)
    "log_dirs",             # log(1 + directories changed)
    "entropy",              # how evenly the changed lines spread over the files (bits)
    "doc_share",            # share of changed files that are docs, tests or CI
    "is_fix",               # the message names a culprit, or its subject says fix / revert
    "file_culprits",        # log(1 + root causes among earlier commits to the riskiest changed file)
    "file_culprit_rate",    # root causes per earlier commit, over the changed files (smoothed)
    "def_culprits",         # log(1 + earlier root causes that touched a definition this one touches)
    "blast_radius",         # log(1 + callers of the touched definitions in the code graph)
    "author_file_exp",      # log(1 + earlier commits by the author to these files)
    "author_exp",           # log(1 + earlier commits by the author)
    "author_culprit_rate",  # share of the author's earlier commits named as root causes (smoothed)
    "file_changes",         # log(1 + earlier commits to these files)
    "file_authors",         # log(1 + distinct earlier authors of these files)
    "component_rate",       # share of earlier commits with this subject prefix named as root causes
    "log_idents",           # log(1 + identifiers the diff adds)
    "log_body",             # log(1 + words in the message body)
    "foreign_commit",       # committed by someone other than the author (a patch applied)
    "log_defs",             # log(1 + definitions touched)
    "dir_culprit_rate",     # root causes per earlier commit in the changed top-level directories
    "word_risk",            # mean log-odds of root cause given each subject word, from earlier commits
    "relative_churn",       # lines added / (lines the changed files had before + lines added)
    "log_code_added",       # log(1 + lines added outside docs, tests and CI)
    "log_new_defs",         # log(1 + definitions that exist only after the commit)
    "recent_culprits",      # log(1 + root causes learned on these files, halving every 180 days)
)
FEATURE_INDEX = {name: i for i, name in enumerate(RISK_FEATURES)}
_SMOOTH = 5.0  # pseudo-commits behind every rate: one root cause in one commit is not 100%
_HALF_LIFE = 180 * 86400


@dataclass
class RiskEvidence:
    """The facts behind one commit's features, for the reasons the scan prints."""

    culprit_file: tuple[str, int] | None = None  # (path, earlier root causes touching it)
    culprit_def: tuple[str, int] | None = None  # (definition, earlier root causes touching it)
    callers: tuple[str, int] | None = None  # (definition with most callers, their number)
    total_callers: int = 0
    author_file_commits: int = 0
    author_commits: int = 0
    component: tuple[str, int, int] | None = None  # (prefix, root causes, commits)
    words: list[str] = field(default_factory=list)  # subject words that went with root causes


def _dirs(paths: Iterable[str]) -> set[str]:
    return {p.rsplit("/", 1)[0] if "/" in p else "." for p in paths}


def _top_dirs(paths: Iterable[str]) -> set[str]:
    return {p.split("/", 1)[0] if "/" in p else "." for p in paths}


class Decayed:
    """Counts that halve every `half_life` seconds: recent events weigh more."""

    def __init__(self, half_life: float):
        self.rate = math.log(2) / half_life
        self.values: dict[str, tuple[float, int]] = {}

    def add(self, key: str, now: int, amount: float = 1.0) -> None:
        value, then = self.values.get(key, (0.0, now))
        if now >= then:
            self.values[key] = (value * math.exp(-self.rate * (now - then)) + amount, now)
        else:  # an older event learned later: the same total as in time order
            self.values[key] = (value + amount * math.exp(-self.rate * (then - now)), then)

    def get(self, key: str, now: int) -> float:
        value, then = self.values.get(key, (0.0, now))
        return value * math.exp(-self.rate * max(now - then, 0))


class RiskHistory:
    """Running statistics over history, fed in time order: `observe` each commit once its
    features are computed, `learn_culprit` once a fix naming a root cause has been made."""

    def __init__(self, *, callers: Callable[[str], int] | None = None):
        self.callers = callers  # definition name -> callers in the code graph (blast radius)
        # How far history_state fed it: the final state does not depend on the order, so a
        # saved state is brought up to date by feeding it what it lacks.
        self.fed = Fed()
        self.n_commits = 0
        self.file_commits: Counter = Counter()
        self.file_authors: dict[str, set[str]] = defaultdict(set)
        self.file_lines: Counter = Counter()  # net lines added so far: the file's size
        self.author_commits: Counter = Counter()
        self.author_files: Counter = Counter()  # (email, path) -> commits
        self.component_commits: Counter = Counter()
        self.dir_commits: Counter = Counter()
        self.word_commits: Counter = Counter()
        # what earlier root causes touched
        self.culprits: dict[str, CommitFacts] = {}
        self.fixes_of: dict[str, list[str]] = defaultdict(list)  # culprit -> fixes naming it
        self.file_culprits: Counter = Counter()
        self.recent_culprits = Decayed(_HALF_LIFE)
        self.def_culprits: Counter = Counter()
        self.author_culprits: Counter = Counter()
        self.component_culprits: Counter = Counter()
        self.dir_culprits: Counter = Counter()
        self.word_culprits: Counter = Counter()

    def observe(self, c: CommitFacts) -> None:
        self.n_commits += 1
        email = c.email
        file_commits, file_authors, author_files, file_lines = (
            self.file_commits, self.file_authors, self.author_files, self.file_lines)
        for i, (path, _, added, deleted) in enumerate(c.files):
            file_lines[path] += added - deleted
            if i < MAX_FILES:
                file_commits[path] += 1
                file_authors[path].add(email)
                author_files[(email, path)] += 1
        self.author_commits[email] += 1
        prefix = component_prefix(c.subject)
        if prefix:
            self.component_commits[prefix] += 1
        for d in _top_dirs(c.paths):
            self.dir_commits[d] += 1
        for w in set(tokenize(c.subject)):
            self.word_commits[w] += 1

    def learn_culprit(self, culprit: CommitFacts, fix: str, *, time: int) -> None:
        """`fix` (made at `time`) named `culprit` as its root cause; once per (fix, culprit)."""
        if fix in self.fixes_of.get(culprit.sha, ()):
            return
        self.fixes_of[culprit.sha].append(fix)
        if culprit.sha in self.culprits:
            return
        self.culprits[culprit.sha] = culprit
        for path in culprit.paths[:MAX_FILES]:
            self.file_culprits[path] += 1
            self.recent_culprits.add(path, time)
        for name in set(culprit.defs):
            self.def_culprits[name] += 1
        self.author_culprits[culprit.email] += 1
        prefix = component_prefix(culprit.subject)
        if prefix:
            self.component_culprits[prefix] += 1
        for d in _top_dirs(culprit.paths):
            self.dir_culprits[d] += 1
        for w in set(tokenize(culprit.subject)):
            self.word_culprits[w] += 1

    def features(self, c: CommitFacts, *, with_evidence: bool = False) -> tuple[np.ndarray, RiskEvidence | None]:
        """The commit's feature vector (F,) in RISK_FEATURES order, from what was seen so far."""
        x = np.zeros(len(RISK_FEATURES))  # (F,)
        col = FEATURE_INDEX
        ev = RiskEvidence() if with_evidence else None
        paths = c.paths[:MAX_FILES]
        added, deleted = c.added, c.deleted
        x[col["log_added"]] = math.log1p(added)
        x[col["log_deleted"]] = math.log1p(deleted)
        x[col["log_files"]] = math.log1p(len(c.files))
        x[col["log_dirs"]] = math.log1p(len(_dirs(c.paths)))
        lines = [a + d for _, _, a, d in c.files]
        total = sum(lines)
        if total:
            x[col["entropy"]] = -sum(n / total * math.log2(n / total) for n in lines if n)
        if c.files:
            x[col["doc_share"]] = sum(bool(DOC_PATH.search(p)) for p in c.paths) / len(c.files)
        x[col["log_code_added"]] = math.log1p(sum(a for p, _, a, _ in c.files if not DOC_PATH.search(p)))
        x[col["is_fix"]] = float(c.is_fix)
        x[col["log_idents"]] = math.log1p(c.n_idents_added)
        x[col["log_body"]] = math.log1p(c.body_words)
        x[col["foreign_commit"]] = float(c.foreign)
        x[col["log_new_defs"]] = math.log1p(c.new_defs)

        if paths:
            counts = [self.file_culprits.get(p, 0) for p in paths]
            j = max(range(len(paths)), key=counts.__getitem__)
            x[col["file_culprits"]] = math.log1p(counts[j])
            changes = sum(self.file_commits.get(p, 0) for p in paths)
            x[col["file_culprit_rate"]] = sum(counts) / (changes + _SMOOTH)
            x[col["file_changes"]] = math.log1p(changes)
            x[col["recent_culprits"]] = math.log1p(sum(self.recent_culprits.get(p, c.time) for p in paths))
            x[col["file_authors"]] = math.log1p(len(set().union(*(self.file_authors.get(p, ()) for p in paths))))
            mine = sum(self.author_files.get((c.email, p), 0) for p in paths)
            x[col["author_file_exp"]] = math.log1p(mine)
            before = sum(max(self.file_lines.get(p, 0), 0) for p in paths)
            x[col["relative_churn"]] = added / (before + added + 1)
            x[col["dir_culprit_rate"]] = max(
                self.dir_culprits.get(d, 0) / (self.dir_commits.get(d, 0) + _SMOOTH) for d in _top_dirs(paths))
            if ev is not None:
                ev.culprit_file = (paths[j], counts[j]) if counts[j] else None
                ev.author_file_commits = mine
        names = sorted(set(c.defs))
        x[col["log_defs"]] = math.log1p(len(names))
        if names:
            counts = [self.def_culprits.get(n, 0) for n in names]
            j = max(range(len(names)), key=counts.__getitem__)
            x[col["def_culprits"]] = math.log1p(counts[j])
            if ev is not None and counts[j]:
                ev.culprit_def = (names[j], counts[j])
            if self.callers is not None:
                reach = [self.callers(n) for n in names]
                x[col["blast_radius"]] = math.log1p(sum(reach))
                if ev is not None and any(reach):
                    k = max(range(len(names)), key=reach.__getitem__)
                    ev.callers, ev.total_callers = (names[k], reach[k]), sum(reach)
        n_author = self.author_commits.get(c.email, 0)
        x[col["author_exp"]] = math.log1p(n_author)
        x[col["author_culprit_rate"]] = self.author_culprits.get(c.email, 0) / (n_author + _SMOOTH)
        prefix = component_prefix(c.subject)
        if prefix:
            bad, seen = self.component_culprits.get(prefix, 0), self.component_commits.get(prefix, 0)
            x[col["component_rate"]] = bad / (seen + _SMOOTH)
            if ev is not None and bad:
                ev.component = (prefix, bad, seen)
        words = set(tokenize(c.subject))
        if words and self.n_commits:
            rate = (len(self.culprits) + 1) / (self.n_commits + 2)
            odds = {w: math.log((self.word_culprits.get(w, 0) + _SMOOTH * rate)
                                / (self.word_commits.get(w, 0) + _SMOOTH) / rate) for w in words}
            x[col["word_risk"]] = sum(odds.values()) / len(odds)
            if ev is not None:
                # ties by name: a set's order changes with each process's hash seed
                ev.words = [w for w in sorted(odds, key=lambda w: (-odds[w], w)) if odds[w] > 0.5][:5]
        if ev is not None:
            ev.author_commits = n_author
        return x, ev

    def explain(self, c: CommitFacts) -> tuple[np.ndarray, RiskEvidence]:
        """`features` with the facts behind them, for the reasons the scan prints."""
        x, ev = self.features(c, with_evidence=True)
        return x, ev or RiskEvidence()

    # -- saving (plain JSON-able data, validated on load: the index is untrusted input) -------
    def to_parts(self) -> dict[str, object]:
        """The state as JSON-able parts, one per attribute (save_state stores them)."""
        counters = {name: dict(getattr(self, name)) for name in _COUNTERS}
        return {
            "fed": self.fed.to_part(),
            "n_commits": self.n_commits,
            **counters,
            "file_authors": {path: list(emails) for path, emails in self.file_authors.items()},
            "author_files": [[email, path, n] for (email, path), n in self.author_files.items()],
            "culprits": [list(c) for c in self.culprits.values()],
            "fixes_of": dict(self.fixes_of),
            "recent_culprits": {key: list(v) for key, v in self.recent_culprits.values.items()},
        }

    @classmethod
    def from_parts(cls, parts: dict[str, object]) -> RiskHistory:
        """The inverse of to_parts; ValueError names the first part that is not what it wrote."""
        state = cls()
        state.fed = Fed.from_part(parts["fed"])
        state.n_commits = _int(parts["n_commits"], "n_commits")
        for name in _COUNTERS:
            setattr(state, name, Counter(_str_map(parts[name], name)))
        state.file_authors = defaultdict(set, _str_map(parts["file_authors"], "file_authors",
                                                       lambda v, what: set(_strings(v, what))))
        state.author_files = Counter({(email, path): n for email, path, n in
                                      _rows(parts["author_files"], "author_files", (str, str, int))})
        culprits = [_facts(row) for row in _items(parts["culprits"], "culprits")]
        state.culprits = {c.sha: c for c in culprits}
        state.fixes_of = defaultdict(list, _str_map(parts["fixes_of"], "fixes_of", _strings))
        state.recent_culprits.values = _str_map(parts["recent_culprits"], "recent_culprits", _decayed_value)
        return state

    def similar(self, commits: Sequence[CommitFacts], *, top: int = 3,
                ) -> list[list[tuple[str, float, tuple[str, ...]]]]:
        """For each commit, the earlier root causes it most resembles: (culprit, BM25 score,
        fixes that named it), best first. BM25 of subject, paths and identifiers."""
        docs = list(self.culprits.values())
        if not docs:
            return [[] for _ in commits]
        index = BM25([similarity_document(d) for d in docs])
        out = []
        for c in commits:
            scores = index.score(similarity_document(c))
            # ties by sha: a state loaded from the index lists culprits in another order than a fresh one
            best = sorted(range(len(scores)), key=lambda i: (-scores[i], docs[i].sha))[:top]
            out.append([(docs[i].sha, scores[i], tuple(self.fixes_of.get(docs[i].sha, ())))
                        for i in best if scores[i] > 0])
        return out


_COUNTERS = ("file_commits", "file_lines", "author_commits", "component_commits", "dir_commits",
             "word_commits", "file_culprits", "def_culprits", "author_culprits", "component_culprits",
             "dir_culprits", "word_culprits")


# The checks run at C speed (set(map(type, ...))): a saved state holds ~100,000 values on
# iproute2 and is read on every push. JSON gives exact types, so `type(v) is str` is right.

def _only(values, *types: type) -> bool:
    return set(map(type, values)) <= set(types)


def _items(value: object, what: str) -> list:
    if type(value) is not list:
        raise ValueError(f"{what}: expected a list")
    return value


def _strings(value: object, what: str, *, size: int | None = None) -> list[str]:
    if type(value) is not list or not _only(value, str) or (size is not None and len(value) != size):
        raise ValueError(f"{what}: expected a list of strings")
    return value


def _int(value: object, what: str) -> int:
    if type(value) is not int:  # bool is an int too, and not a count
        raise ValueError(f"{what}: expected an integer, got {type(value).__name__}")
    return value


def _count(value: object, what: str) -> int:
    if _int(value, what) < 0:
        raise ValueError(f"{what}: expected a count, got {value}")
    return value


def _str_map(value: object, what: str, check: Callable[[object, str], object] | None = None) -> dict:
    """A JSON object (keys are always strings); with no `check`, of integers."""
    if type(value) is not dict:
        raise ValueError(f"{what}: expected an object")
    if check is None:
        if not _only(value.values(), int):
            raise ValueError(f"{what}: expected integer values")
        return value
    return {k: check(v, what) for k, v in value.items()}


def _rows(value: object, what: str, types: tuple[type, ...]) -> list[tuple]:
    """A list of fixed-size rows, column i of type types[i]."""
    rows = _items(value, what)
    if rows and (not _only(rows, list) or set(map(len, rows)) != {len(types)}
                 or not all(_only(column, t) for column, t in zip(zip(*rows, strict=True), types, strict=True))):
        raise ValueError(f"{what}: expected rows of {len(types)} fields ({', '.join(t.__name__ for t in types)})")
    return [tuple(row) for row in rows]


def _decayed_value(value: object, what: str) -> tuple[float, int]:
    if type(value) is not list or len(value) != 2 or type(value[0]) not in (int, float) or not math.isfinite(
            value[0]):
        raise ValueError(f"{what}: expected [value, time] pairs")
    return float(value[0]), _int(value[1], what)


def _facts(row: object) -> CommitFacts:
    """A CommitFacts from the list to_parts wrote, every field checked."""
    if type(row) is not list or len(row) != len(CommitFacts._fields):
        raise ValueError(f"culprits: expected rows of {len(CommitFacts._fields)} fields")
    sha, t, email, subject, files, idents, n_added, is_fix, defs, new_defs, body_words, foreign = row
    if not _only((sha, email, subject), str) or not _only((t, n_added, new_defs, body_words), int) \
            or not _only((is_fix, foreign), bool):
        raise ValueError("culprits: a field has the wrong type")
    return CommitFacts(sha=sha, time=t, email=email, subject=subject,
                       files=tuple(_rows(files, "culprits.files", (str, str, int, int))),
                       idents=tuple(_strings(idents, "culprits.idents")), n_idents_added=n_added, is_fix=is_fix,
                       defs=tuple(_strings(defs, "culprits.defs")), new_defs=new_defs, body_words=body_words,
                       foreign=foreign)


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
        return cls(upto=_count(value["upto"], "fed.upto"), skipped=tuple(_strings(value["skipped"], "fed.skipped")),
                   unresolved=_count(value["unresolved"], "fed.unresolved"),
                   shallow=tuple(_rows(value["shallow"], "fed.shallow", (int, str))))


class CulpritEvent(NamedTuple):
    time: int  # the fix's committer time: from then on the root cause is known
    fix: str
    culprit: str


def culprit_events(conn: sqlite3.Connection) -> list[CulpritEvent]:
    """Every resolved culprit link (reverts included, as the risk track says), oldest first."""
    rows = conn.execute(
        "SELECT c.committer_time, c.sha, l.culprit_sha FROM links l JOIN commits c ON c.id = l.fix_id"
        " WHERE l.status = 'resolved' AND l.culprit_sha IS NOT NULL AND l.culprit_sha != c.sha"
        " ORDER BY c.committer_time, c.sha, l.seq").fetchall()
    return [CulpritEvent(*r) for r in dict.fromkeys(rows)]


def replay(commits: Sequence[CommitFacts], events: Sequence[CulpritEvent], facts: dict[str, CommitFacts], *,
           state: RiskHistory, describe: Callable[[CommitFacts], bool] = lambda c: True,
           ) -> Iterator[tuple[CommitFacts, np.ndarray]]:
    """Features of the commits `describe` selects, each from the history strictly before it.

    Every commit is observed, in time order; `events` (oldest first) teach a root cause
    once its fix is older than the commit at hand, if the culprit's facts are known.
    """
    k = 0
    for c in sorted(commits, key=lambda c: c.time):
        while k < len(events) and events[k].time < c.time:
            e = events[k]
            if e.culprit in facts:
                state.learn_culprit(facts[e.culprit], e.fix, time=e.time)
            k += 1
        if describe(c):
            yield c, state.features(c)[0]
        state.observe(c)
    for e in events[k:]:
        if e.culprit in facts:
            state.learn_culprit(facts[e.culprit], e.fix, time=e.time)


# --- the state in the index -------------------------------------------------------------

# The state of history is saved in the index itself, as JSON parts validated on load: the
# index is as untrusted as the repository (a CI cache can hand anyone's .git/rcahook/ to a
# scan), so nothing in it may be code. Older rcahook pickled it to LEGACY_STATE_FILE, which is
# never loaded: it is deleted and the state rebuilt (see #10).
STATE_VERSION = 2  # meta 'risk_state_version'; bump when RiskHistory.to_parts changes shape (2: Fed, issue 11)
STATE_TABLE = "CREATE TABLE IF NOT EXISTS risk_state (part TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID"
LEGACY_STATE_FILE = "risk-state.pickle"
NOT_SAVED = "the index is not writable here: this scan's state was not saved (the next scan recomputes it)"
_CHUNK = 500  # shas per `IN (...)` query


def _last_id(conn) -> int:
    return conn.execute("SELECT MAX(id) FROM commits").fetchone()[0] or 0


def load_state(conn) -> tuple[RiskHistory | None, str | None]:
    """(the saved state, None), or (None, why it cannot be used); (None, None) when none was saved."""
    version = store.get_meta(conn, "risk_state_version")
    try:
        rows = conn.execute("SELECT part, data FROM risk_state").fetchall()
    except sqlite3.OperationalError:  # an index written before the table existed
        rows = []
    if version is None and not rows:
        return None, None
    if version != str(STATE_VERSION):
        return None, f"the saved one has version {version}, this rcahook writes {STATE_VERSION}"
    try:
        parts = {part: json.loads(data) for part, data in rows}
        if parts.get("features") != list(RISK_FEATURES):
            return None, "the saved one was computed for other features"
        state = RiskHistory.from_parts(parts)
        last = _last_id(conn)
        if state.fed.upto > last:  # trusted, it would hide every commit indexed up to it
            raise ValueError(f"fed.upto: {state.fed.upto} is past the index's last commit ({last})")
        return state, None
    except (ValueError, TypeError, KeyError, RecursionError) as e:
        return None, f"the saved one is malformed ({str(e)[:120]})"


def save_state(conn, state: RiskHistory) -> None:
    """Replace the saved state, in one transaction; waits at most a second for a busy index."""
    parts = {**state.to_parts(), "features": list(RISK_FEATURES)}
    rows = [(name, json.dumps(value, separators=(",", ":"))) for name, value in parts.items()]
    with store.transaction(conn, busy_timeout=1.0):
        conn.execute(STATE_TABLE)
        conn.execute("DELETE FROM risk_state")
        conn.executemany("INSERT INTO risk_state VALUES (?, ?)", rows)
        store.set_meta(conn, "risk_state_version", str(STATE_VERSION))


def _is_busy(e: sqlite3.Error) -> bool:
    return "locked" in str(e) or "busy" in str(e)


def _commits_by_sha(conn, shas: Iterable[str]) -> list[tuple[int, str, int]]:
    """(id, sha, n_parents) of those of `shas` that are indexed, by the sha index."""
    shas = sorted(set(shas))
    out: list[tuple[int, str, int]] = []
    for i in range(0, len(shas), _CHUNK):
        chunk = shas[i:i + _CHUNK]
        out += conn.execute(f"SELECT id, sha, n_parents FROM commits WHERE sha IN ({','.join('?' * len(chunk))})",
                            chunk).fetchall()
    return out


def _shallow(conn, upto: int) -> tuple[tuple[int, str], ...]:
    return tuple(conn.execute("SELECT id, sha FROM commits WHERE shallow = 1 AND id <= ? ORDER BY id", (upto,)))


def _unresolved(conn, upto: int) -> int:
    """Links of commits <= upto that may still resolve, by the status index: few, whatever the history."""
    return conn.execute("SELECT COUNT(*) FROM links WHERE status IN ('pending', 'unknown') AND fix_id <= ?",
                        (upto,)).fetchone()[0]


def _resolved_links(conn, where: str, args: Sequence) -> list[CulpritEvent]:
    """culprit_events of the fixes `where` selects (on l.fix_id: by the links' primary key)."""
    # `+l.status`: not by the status index, which would read every resolved link
    return [CulpritEvent(*r) for r in conn.execute(
        "SELECT c.committer_time, c.sha, l.culprit_sha FROM links l JOIN commits c ON c.id = l.fix_id"
        f" WHERE {where} AND +l.status = 'resolved' AND l.culprit_sha IS NOT NULL AND l.culprit_sha != c.sha",
        tuple(args))]


def _usable(conn, fed: Fed, exclude: set[str]) -> bool:
    """Whether a saved state can be brought up to date rather than rebuilt."""
    if _shallow(conn, fed.upto) != fed.shallow:
        return False  # `rcahook index` re-read commits of a shallow boundary (git fetch --deepen)
    skipped = set(fed.skipped)
    # fed a commit now excluded (scanned again): only a rebuild takes it out
    return all(cid > fed.upto or sha in skipped for cid, sha, _ in _commits_by_sha(conn, exclude))


def _feed(conn, state: RiskHistory, exclude: set[str]) -> bool:
    """Feed `state` what it lacks: commits indexed past its watermark, the ones it skipped that
    are no longer excluded, and culprit links resolved since. True if anything changed."""
    fed, last = state.fed, _last_id(conn)
    # every query stops at `last`: an `rcahook index` running now appends past it
    new = conn.execute("SELECT id, sha, n_parents FROM commits WHERE id > ? AND id <= ?", (fed.upto, last)).fetchall()
    known = [row for row in _commits_by_sha(conn, fed.skipped) if row[0] <= fed.upto]
    back = [row for row in known if row[1] not in exclude]
    skipped = tuple(sorted({sha for _, sha, _ in known if sha in exclude}
                           | {sha for _, sha, _ in new if sha in exclude}))
    feed = [row for row in new if row[1] not in exclude] + back
    shas = [sha for _, sha, n_parents in feed if n_parents <= 1]
    if shas:
        facts = load_facts(conn, None if len(shas) > last // 2 else shas, light=True)
        for sha in shas:
            if sha in facts:
                state.observe(facts[sha])
    events = _resolved_links(conn, "l.fix_id > ? AND l.fix_id <= ?", (fed.upto, last))
    back_ids = [cid for cid, _, _ in back]
    for i in range(0, len(back_ids), _CHUNK):
        chunk = back_ids[i:i + _CHUNK]
        events += _resolved_links(conn, f"l.fix_id IN ({','.join('?' * len(chunk))})", chunk)
    if fed.upto and _unresolved(conn, fed.upto) < fed.unresolved:
        # a link of a commit already fed resolved since (its culprit indexed later): rare, and
        # learn_culprit keeps each (fix, culprit) once
        events += _resolved_links(conn, "l.fix_id <= ?", (fed.upto,))
    events = sorted({e for e in events if e.fix not in exclude and e.fix not in state.fixes_of.get(e.culprit, ())})
    culprits = load_facts(conn, sorted({e.culprit for e in events}))
    for e in events:
        if e.culprit in culprits:
            state.learn_culprit(culprits[e.culprit], e.fix, time=e.time)
    state.fed = Fed(upto=last, skipped=skipped, unresolved=_unresolved(conn, last), shallow=_shallow(conn, last))
    return bool(shas or events) or state.fed != fed


def history_state(conn, index_dir: Path | None, exclude: set[str], *,
                  say: Callable[[str], None] = lambda message: None) -> RiskHistory:
    """RiskHistory over every indexed non-merge commit except `exclude`, with every culprit link
    whose fix is not excluded either.

    Feeding 7,000 commits costs a third of a second, so the state is saved in the index (when
    `index_dir` is given) and the next scan only feeds what it lacks (see Fed), reading the
    new rows by their ids: the cost follows the new commits, not the history.
    A saved state that fed a commit now excluded (scanned again) is rebuilt from scratch.
    """
    state = None
    if index_dir is not None:
        state, why = load_state(conn)
        legacy = index_dir / LEGACY_STATE_FILE
        if os.path.lexists(legacy):
            if state is None and why is None:
                why = f"{legacy} is from an older rcahook and is never loaded (a pickle could run code)"
            with contextlib.suppress(OSError):
                legacy.unlink()
        if why:
            say(f"rebuilding the scan state: {why}")
        if state is not None and not _usable(conn, state.fed, exclude):
            state = None
    state = state or RiskHistory()
    if not _feed(conn, state, exclude) or index_dir is None:
        return state
    try:
        if store.is_read_only(conn):  # opened so, in a read-only repository: do not even try
            raise sqlite3.OperationalError("attempt to write a readonly database")
        save_state(conn, state)
    except sqlite3.Error as e:
        if not _is_busy(e):  # busy: `rcahook index` is writing; the next scan saves it
            say(NOT_SAVED)
    except OSError:
        say(NOT_SAVED)
    return state
