"""Pre-push risk: the probability that a commit will later be named as a root cause.

Each commit is described against the history before it (RISK_FEATURES): its size and
spread, how often the files and definitions it touches were root causes before (only
culprit links whose fix came earlier), how far its touched definitions reach in the code
graph, its author's experience with these files, and how much its words went with root
causes before. A logistic regression turns them into a probability. One incremental walk
(`RiskHistory`, fed by `replay`) serves the pre-push scan, `rcahook train` and the risk
backtest, so a model is applied to exactly the features it was fitted on.

numpy only: this module is on the pre-push hook's path, which must start fast.
"""
from __future__ import annotations

import json
import math
import re
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rcahook.errors import ConfigError
from rcahook.rca.features import _DOC_PATH
from rcahook.text import BM25, component_prefix, tokenize

RISK_FILE = "risk.json"  # in <git dir>/rcahook/, written by `rcahook train`
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
_COL = {name: i for i, name in enumerate(RISK_FEATURES)}
MAX_FILES = 30  # a tree-wide rename says nothing about which files break
MAX_IDENTS = 60  # identifiers per commit in the similarity document
_FIX_WORD = re.compile(r"\b(fix\w*|bug\w*|regression|crash\w*|broken|revert\w*)\b", re.IGNORECASE)
_SMOOTH = 5.0  # pseudo-commits behind every rate: one root cause in one commit is not 100%
_HALF_LIFE = 180 * 86400


class CommitFacts(NamedTuple):
    """What the risk features need of one commit (read in bulk from the index)."""

    sha: str
    time: int  # committer time: when the commit entered history
    email: str  # lower-cased author email
    subject: str
    files: tuple[tuple[str, str, int, int], ...]  # (path, status, added, deleted)
    idents: tuple[str, ...]  # identifiers the diff adds, then those it removes
    n_idents_added: int
    is_fix: bool
    defs: tuple[str, ...]  # names of the definitions it touches
    new_defs: int  # definitions touched on the new side only (created)
    body_words: int
    foreign: bool  # committer differs from author

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(f[0] for f in self.files)

    @property
    def added(self) -> int:
        return sum(f[2] for f in self.files)

    @property
    def deleted(self) -> int:
        return sum(f[3] for f in self.files)


@dataclass
class Evidence:
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


def similarity_document(c: CommitFacts) -> list[str]:
    """What "resembles" compares: subject, paths and the identifiers the diff adds or removes
    (split at `_` and punctuation by the protocol tokenizer; cheap enough for every culprit)."""
    return tokenize(f"{c.subject} {' '.join(c.paths[:MAX_FILES])} {' '.join(c.idents[:MAX_IDENTS])}")


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
        # What was fed in: the final state does not depend on the order, so a saved state can
        # be brought up to date by feeding it what it lacks (see scan.history_state).
        self.observed: set[str] = set()
        self.learned: set[tuple[str, str]] = set()  # (fix, culprit)
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
        self.observed.add(c.sha)
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
        """`fix` (made at `time`) named `culprit` as its root cause."""
        if (fix, culprit.sha) in self.learned:
            return
        self.learned.add((fix, culprit.sha))
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

    def features(self, c: CommitFacts, *, with_evidence: bool = False) -> tuple[np.ndarray, Evidence | None]:
        """The commit's feature vector (F,) in RISK_FEATURES order, from what was seen so far."""
        x = np.zeros(len(RISK_FEATURES))  # (F,)
        col = _COL
        ev = Evidence() if with_evidence else None
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
            x[col["doc_share"]] = sum(bool(_DOC_PATH.search(p)) for p in c.paths) / len(c.files)
        x[col["log_code_added"]] = math.log1p(sum(a for p, _, a, _ in c.files if not _DOC_PATH.search(p)))
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
                ev.words = [w for w in sorted(odds, key=lambda w: -odds[w]) if odds[w] > 0.5][:5]
        if ev is not None:
            ev.author_commits = n_author
        return x, ev

    # -- saving (plain JSON-able data, validated on load: the index is untrusted input) -------
    def to_parts(self) -> dict[str, object]:
        """The state as JSON-able parts, one per attribute (scan.save_state stores them)."""
        counters = {name: dict(getattr(self, name)) for name in _COUNTERS}
        return {
            "observed": list(self.observed),
            "learned": [list(pair) for pair in self.learned],
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
        state.observed = set(_strings(parts["observed"], "observed"))
        state.learned = set(_rows(parts["learned"], "learned", (str, str)))
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
            best = sorted(range(len(scores)), key=lambda i: -scores[i])[:top]
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
                 or not all(_only(column, t) for column, t in zip(zip(*rows), types))):
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


# --- reading commits from the index ---------------------------------------------------------

def _chunks(items: Sequence, size: int = 500) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def load_facts(conn: sqlite3.Connection, shas: Sequence[str] | None = None, *,
               light: bool = False) -> dict[str, CommitFacts]:
    """CommitFacts of these commits (every non-merge commit when None), by sha.

    `light` reads only what observing a commit needs (time, author, subject, files): the
    scan reads all history so, and the few commits it describes or learns from in full.
    """
    cols = "id, sha, committer_time, author_email, committer_email, subject"
    cols += ", '', '', ''" if light else ", body, idents_added, idents_removed"
    if shas is None:
        rows = conn.execute(f"SELECT {cols} FROM commits WHERE n_parents <= 1").fetchall()
    else:
        rows = []
        for chunk in _chunks(list(dict.fromkeys(shas))):
            rows += conn.execute(f"SELECT {cols} FROM commits WHERE sha IN ({','.join('?' * len(chunk))})",
                                 chunk).fetchall()

    def per_commit(sql: str, column: str) -> Iterator[tuple]:
        """Rows of `sql` for the commits read above (every row when reading every commit)."""
        if shas is None:
            yield from conn.execute(sql.format(where=""))
            return
        for chunk in _chunks([r[0] for r in rows]):
            yield from conn.execute(sql.format(where=f"WHERE {column} IN ({','.join('?' * len(chunk))})"), chunk)

    files: dict[int, list[tuple[str, str, int, int]]] = defaultdict(list)
    for cid, *change in per_commit(
            "SELECT commit_id, path, status, added, deleted FROM changes {where} ORDER BY commit_id, idx",
            "commit_id"):
        files[cid].append(tuple(change))
    names: dict[int, set[str]] = defaultdict(set)
    sides: dict[int, dict[str, set[str]]] = defaultdict(lambda: {"new": set(), "old": set()})
    fixes: set[int] = set()
    if not light:
        for cid, path, name, qualname, side in per_commit(
                "SELECT commit_id, path, name, qualname, side FROM touched {where}", "commit_id"):
            names[cid].add(name)
            sides[cid][side].add(f"{path}:{qualname}")
        fixes = {cid for (cid,) in per_commit("SELECT DISTINCT fix_id FROM links {where}", "fix_id")}
    out = {}
    for cid, sha, t, email, committer, subject, body, plus, minus in rows:
        plus = plus.split()
        made = sides.get(cid)
        out[sha] = CommitFacts(
            sha=sha, time=t, email=email.lower(), subject=subject, files=tuple(files.get(cid, ())),
            idents=tuple(plus + minus.split()), n_idents_added=len(plus),
            is_fix=cid in fixes or bool(_FIX_WORD.search(subject)), defs=tuple(sorted(names.get(cid, ()))),
            new_defs=len(made["new"] - made["old"]) if made else 0, body_words=len(body.split()),
            foreign=committer.lower() != email.lower())
    return out


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


# --- the model ------------------------------------------------------------------------------

LEVELS = ("low", "medium", "high")
LEVEL_QUANTILES = (0.80, 0.95)  # medium: riskier than 80% of the training commits; high: 95%


@dataclass
class RiskModel:
    """Logistic regression on standardized features; the file describes itself (info)."""

    names: tuple[str, ...]
    mean: np.ndarray  # (F,) feature means over the training commits
    scale: np.ndarray  # (F,) their standard deviations (1 where constant)
    coef: np.ndarray  # (F,) weights of the standardized features
    intercept: float
    thresholds: tuple[float, float] = (0.1, 0.3)  # probability for "medium", for "high"
    info: dict = field(default_factory=dict)  # data, cut-off, counts

    def _aligned(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """mean, scale and coef in RISK_FEATURES order; features unknown to the file weigh 0."""
        if self.names == RISK_FEATURES:
            return self.mean, self.scale, self.coef
        idx = {n: i for i, n in enumerate(self.names)}

        def pick(values: np.ndarray, default: float) -> np.ndarray:
            return np.array([values[idx[n]] if n in idx else default for n in RISK_FEATURES])

        return pick(self.mean, 0.0), pick(self.scale, 1.0), pick(self.coef, 0.0)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """X (N, F) -> (N, F): each feature's term of the log-odds, against an average commit."""
        mean, scale, coef = self._aligned()
        return (X - mean) / scale * coef

    def probability(self, X: np.ndarray) -> np.ndarray:
        """X (N, F) in RISK_FEATURES order -> (N,) probabilities."""
        return _sigmoid(self.contributions(X).sum(axis=1) + self.intercept)

    def level(self, p: float) -> str:
        medium, high = self.thresholds
        return "high" if p >= high else "medium" if p >= medium else "low"

    def to_json(self) -> dict:
        def r(a: Iterable[float]) -> list[float]:
            return [round(float(v), 6) for v in a]

        return {"format": "rcahook.risk/1", "names": list(self.names), "mean": r(self.mean),
                "scale": r(self.scale), "coef": r(self.coef), "intercept": round(float(self.intercept), 6),
                "thresholds": r(self.thresholds), "info": self.info}

    def save(self, path: Path | str) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path | str) -> RiskModel:
        try:
            doc = json.loads(Path(path).read_text())
            names = tuple(doc["names"])
            mean, scale, coef = (np.array(doc[k], dtype=np.float64) for k in ("mean", "scale", "coef"))
            if not mean.shape == scale.shape == coef.shape == (len(names),):
                raise ValueError("expected one mean, scale and coef per name")
            medium, high = (float(t) for t in doc["thresholds"])
            return cls(names, mean, scale, coef, float(doc["intercept"]), (medium, high), doc.get("info", {}))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"cannot read the risk model {path} ({e}); re-run `rcahook train` "
                              "or delete the file to use the default model") from e


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def hand_set_model() -> RiskModel:
    """Only when the shipped default_risk.json is missing: size first, then past root causes."""
    hand = {"log_added": 0.6, "log_files": 0.1, "file_culprits": 0.2, "word_risk": 0.2,
            "def_culprits": 0.1, "blast_radius": 0.1, "author_file_exp": -0.1, "doc_share": -0.2}
    n = len(RISK_FEATURES)
    mean = np.zeros(n)
    mean[_COL["log_added"]] = 3.0
    return RiskModel(RISK_FEATURES, mean, np.ones(n), np.array([hand.get(f, 0.0) for f in RISK_FEATURES]),
                     -3.0, (0.1, 0.3), {"source": "hand-set"})


def default_risk_model() -> RiskModel:
    path = resources.files("rcahook") / "data" / "default_risk.json"
    if path.is_file():
        return RiskModel.load(str(path))
    return hand_set_model()


def load_risk_model(index_dir: Path | None) -> tuple[RiskModel, str]:
    """(model, where from): the repository's own when `rcahook train` fitted one, else the default."""
    if index_dir is not None and (index_dir / RISK_FILE).is_file():
        return RiskModel.load(index_dir / RISK_FILE), str(index_dir / RISK_FILE)
    model = default_risk_model()
    return model, model.info.get("source", "default")


def fit_logistic(X: np.ndarray, y: np.ndarray, *, l2: float = 30.0, max_iter: int = 50,
                 ) -> tuple[np.ndarray, float]:
    """(coef, intercept) maximising log-likelihood - l2/2 |coef|^2, by Newton's method.

    X: (N, F) standardized, y: (N,) in {0, 1}. The intercept is not penalized.
    """
    assert X.shape[0] == y.shape[0] > 0, "fit_logistic needs labelled rows"
    n, f = X.shape
    A = np.hstack([X, np.ones((n, 1))])  # (N, F+1)
    w = np.zeros(f + 1)
    rate = min(max(float(y.mean()), 1e-4), 1 - 1e-4)
    w[-1] = math.log(rate / (1 - rate))
    penalty = np.full(f + 1, float(l2))
    penalty[-1] = 0.0
    for _ in range(max_iter):
        p = _sigmoid(A @ w)  # (N,)
        grad = A.T @ (p - y) + penalty * w  # (F+1,)
        hess = (A * (p * (1 - p))[:, None]).T @ A + np.diag(penalty + 1e-9)  # (F+1, F+1)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


def fit_model(X: np.ndarray, y: np.ndarray, *, l2: float = 30.0, info: dict | None = None) -> RiskModel:
    """Standardize, fit, and put the level thresholds at LEVEL_QUANTILES of the training commits."""
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-9] = 1.0
    coef, intercept = fit_logistic((X - mean) / scale, y.astype(np.float64), l2=l2)
    model = RiskModel(RISK_FEATURES, mean, scale, coef, intercept, info=dict(info or {}))
    p = model.probability(X)
    medium, high = (float(np.quantile(p, q)) for q in LEVEL_QUANTILES)
    model.thresholds = (medium, max(high, medium))
    model.info.update({"l2": l2, "n_commits": int(len(y)), "n_culprits": int(y.sum()),
                       "level_quantiles": list(LEVEL_QUANTILES)})
    return model


# --- training data --------------------------------------------------------------------------

@dataclass
class RiskData:
    """Commits of a history, oldest first, with their features and when each was first named
    as a root cause (None: never)."""

    commits: list[CommitFacts]
    X: np.ndarray  # (N, F)
    named_at: list[int | None]

    def labels(self, *, known_by: int | None = None) -> np.ndarray:
        """(N,): 1 for commits named as a root cause (by a fix made before `known_by`, if given)."""
        return np.array([t is not None and (known_by is None or t < known_by) for t in self.named_at],
                        dtype=np.float64)

    def times(self) -> np.ndarray:
        return np.array([c.time for c in self.commits], dtype=np.int64)


def build_data(conn: sqlite3.Connection, *, only: set[str] | None = None,
               callers: Callable[[str], int] | None = None) -> RiskData:
    """Features of every non-merge commit (or those in `only`), each from the history before it.

    With `only`, history is that set alone: statistics count its commits and root causes are
    learned from its fixes, so a branch the repository did not keep cannot leak in.
    """
    facts = load_facts(conn)
    if only is not None:
        facts = {s: f for s, f in facts.items() if s in only}
    events = [e for e in culprit_events(conn) if e.fix in facts]
    named_at: dict[str, int] = {}
    for e in events:
        named_at.setdefault(e.culprit, e.time)
    commits, rows = [], []
    for c, x in replay(list(facts.values()), events, facts, state=RiskHistory(callers=callers)):
        commits.append(c)
        rows.append(x)
    X = np.vstack(rows) if rows else np.zeros((0, len(RISK_FEATURES)))
    return RiskData(commits, X, [named_at.get(c.sha) for c in commits])


def fit_risk(history, *, until_time: int, l2: float = 30.0, callers: Callable[[str], int] | None = None,
             data: RiskData | None = None) -> RiskModel:
    """A repository's own risk model from what was known at `until_time` (epoch seconds).

    Training rows: the commits made before then; a commit counts as a root cause when a fix
    made before then named it. `history` is a `rcahook.index.reader.History`; `data` reuses
    features already built from it (the backtest builds them once for several fits).
    """
    data = data or build_data(history.conn, callers=callers)
    keep = data.times() < until_time
    y = data.labels(known_by=until_time)[keep]
    if not y.any():
        raise ConfigError(f"no commit made before {until_time} was named as a root cause: the risk model "
                          "needs culprit links (Fixes: <sha>, reverts); the default model stays in use")
    return fit_model(data.X[keep], y, l2=l2, info={"source": "fitted", "until_time": int(until_time)})
