"""Running risk statistics over published history, and their place in the index.

`RiskHistory` is fed commits in time order (`observe`) and root causes once a fix names
them (`learn_culprit`); `features` describes a commit against what it has seen
(RISK_FEATURES). `replay` drives it over a history for training and the backtest;
`history_state` keeps it up to date in the index for the pre-push scan: its counts a row per
key (read by key, so a scan reads what its commits need, not the history: issue 11), the rest
versioned JSON parts (risk/state_store.py: the tables, every value checked when read, never
pickle: the index is as untrusted as the repository).

numpy only: this module is on the pre-push hook's path, which must start fast.
"""
from __future__ import annotations

import contextlib
import math
import os
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rcahook.index import store
from rcahook.risk.facts import MAX_FILES, CommitFacts, load_facts, similarity_document
from rcahook.risk.state_store import (
    CHUNK,
    COUNTERS,
    Fed,
    SavedState,
    check_counts,
    check_decayed,
    check_facts,
    check_int,
    check_list,
    check_rows,
    check_str_map,
    check_strings,
    last_commit_id,
    read_saved,
    write_state,
)
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
        self.values: MutableMapping[str, tuple[float, int]] = {}

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
    features are computed, `learn_culprit` once a fix naming a root cause has been made.

    Built by replay, it holds every count in memory. Loaded from the index (load_state), its
    counts are the saved rows' mappings (`store`, state_store.SavedState), read by key: `prefetch` the commits about
    to be fed or described, one query per part; save_state writes back only the keys changed."""

    store: SavedState | None = None  # a class attribute: only a loaded state has one

    def __init__(self, *, callers: Callable[[str], int] | None = None):
        self.callers = callers  # definition name -> callers in the code graph (blast radius)
        # How far history_state fed it: the final state does not depend on the order, so a
        # saved state is brought up to date by feeding it what it lacks.
        self.fed = Fed()
        self.n_commits = 0
        # Counters in memory; a loaded state's are state_store.StoredMap (read by key), hence
        # the mapping types. The counters are state_store.COUNTERS.
        self.file_commits: MutableMapping[str, int] = Counter()
        self.file_authors: MutableMapping[str, set[str]] = defaultdict(set)
        # len(file_authors[path]): one read for a one-file commit
        self.file_author_counts: MutableMapping[str, int] = Counter()
        self.file_lines: MutableMapping[str, int] = Counter()  # net lines added so far: the file's size
        self.author_commits: MutableMapping[str, int] = Counter()
        self.author_files: MutableMapping[tuple[str, str], int] = Counter()  # (email, path) -> commits
        self.component_commits: MutableMapping[str, int] = Counter()
        self.dir_commits: MutableMapping[str, int] = Counter()
        self.word_commits: MutableMapping[str, int] = Counter()
        # what earlier root causes touched (a loaded state: those learned since it was loaded)
        self.culprits: dict[str, CommitFacts] = {}
        self.fixes_of: MutableMapping[str, list[str]] = defaultdict(list)  # culprit -> fixes naming it
        self.file_culprits: MutableMapping[str, int] = Counter()
        self.recent_culprits = Decayed(_HALF_LIFE)
        self.def_culprits: MutableMapping[str, int] = Counter()
        self.author_culprits: MutableMapping[str, int] = Counter()
        self.component_culprits: MutableMapping[str, int] = Counter()
        self.dir_culprits: MutableMapping[str, int] = Counter()
        self.word_culprits: MutableMapping[str, int] = Counter()

    def observe(self, c: CommitFacts) -> None:
        self.n_commits += 1
        email = c.email
        file_commits, file_authors, author_files, file_lines = (
            self.file_commits, self.file_authors, self.author_files, self.file_lines)
        stored = self.store is not None
        for i, (path, _, added, deleted) in enumerate(c.files):
            file_lines[path] += added - deleted
            if i < MAX_FILES:
                file_commits[path] += 1
                mine = author_files[(email, path)]
                if not mine:  # a new author of the file
                    self.file_author_counts[path] += 1
                    # a loaded state's author sets are read only when a features call needs
                    # them, with the new pairs of author_files (state_store.StoredSets)
                    if not stored or path in file_authors:
                        file_authors[path].add(email)
                author_files[(email, path)] = mine + 1
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
        fixes = self.fixes_of.get(culprit.sha, ())
        if fix in fixes:
            return
        self.fixes_of[culprit.sha] = [*fixes, fix]  # assigned: a loaded state saves the key
        if fixes:  # a root cause already known: counted once
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
            if len(paths) == 1:
                x[col["file_authors"]] = math.log1p(self.file_author_counts.get(paths[0], 0))
            else:
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
            rate = (self.n_culprits + 1) / (self.n_commits + 2)
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

    def counter(self, name: str) -> MutableMapping[str, int]:
        """The counter of that name (one of state_store.COUNTERS)."""
        counts: MutableMapping[str, int] = getattr(self, name)
        return counts

    @property
    def n_culprits(self) -> int:
        return len(self.culprits) + (self.store.n_culprits if self.store is not None else 0)

    # -- reading a saved state by key -----------------------------------------------------------
    @classmethod
    def backed(cls, saved: SavedState) -> RiskHistory:
        """A state over the counts saved in the index, read as `prefetch` and the features ask:
        its counts are `saved`'s mappings themselves (their keys changed are what save_state writes)."""
        state = cls()
        state.store, state.fed, state.n_commits = saved, saved.fed, saved.n_commits
        state.fixes_of = saved.fixes_of
        for name, counts in saved.counters.items():
            setattr(state, name, counts)
        state.author_files = saved.author_files
        state.file_authors = saved.file_authors
        state.recent_culprits.values = saved.recent_culprits
        return state

    def prefetch(self, commits: Iterable[CommitFacts], *, describe: bool = False) -> None:
        """Read the saved counts that observing these commits, or learning them as root causes,
        needs (with `describe`, describing them too): a query per part and 500 keys. Nothing
        to read in memory; a key not prefetched is read alone when asked."""
        saved = self.store
        if saved is None:
            return
        batch = list(commits)  # iterated twice with `describe`
        keys: dict[str, set[str]] = defaultdict(set)
        pairs: set[tuple[str, str]] = set()
        for c in batch:
            keys["path"].update(c.paths)
            keys["dir"] |= _top_dirs(c.paths)
            keys["email"].add(c.email)
            keys["word"].update(tokenize(c.subject))
            keys["def"].update(c.defs)
            prefix = component_prefix(c.subject)
            if prefix:
                keys["prefix"].add(prefix)
            head = c.paths[:MAX_FILES]
            pairs.update((c.email, path) for path in head)
            if describe and len(head) > 1:  # features read the union of their authors
                keys["authors"].update(head)
        for name, kind in _KEYED_BY.items():
            saved.counters[name].prefetch(keys[kind])
        saved.recent_culprits.prefetch(keys["path"])
        saved.author_files.prefetch(pairs)
        saved.file_authors.prefetch(keys["authors"])
        if describe:  # the postings of their terms, and the fixes of the root causes they resemble most
            self.similar(batch, top=_PREFETCH_TOP)

    def prefetch_fixes(self, culprits: Iterable[str]) -> None:
        """Read the saved fixes of these root causes (learn_culprit asks them)."""
        if self.store is not None:
            self.store.fixes_of.prefetch(culprits)

    # -- saving (plain JSON-able data, validated on load: the index is untrusted input) -------
    def to_parts(self) -> dict[str, object]:
        """The state as JSON-able parts, one per attribute; a loaded state reads every saved
        row for it (the tests compare states so; the scan never calls it)."""
        if self.store is not None:
            return self._stored_parts()
        counters = {name: dict(self.counter(name)) for name in COUNTERS}
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

    def _stored_parts(self) -> dict[str, object]:
        """to_parts of a loaded state: every saved row, overlaid with the keys changed since."""
        saved = self.store
        assert saved is not None
        state = RiskHistory()
        for name, counts in saved.counters.items():
            mine = state.counter(name)
            mine.update(saved.every_count(name))
            mine.update({k: counts[k] for k in counts.dirty})
        state.author_files.update(saved.every_pair())
        state.author_files.update({k: saved.author_files[k] for k in saved.author_files.dirty})
        for (email, path), n in state.author_files.items():
            if n:
                state.file_authors[path].add(email)
        state.recent_culprits.values.update(saved.every_decayed())
        values = saved.recent_culprits
        state.recent_culprits.values.update({k: values[k] for k in values.dirty})
        culprits, fixes_of = saved.every_culprit()
        fixes_of.update({k: saved.fixes_of[k] for k in saved.fixes_of.dirty})
        state.fed, state.n_commits, state.fixes_of = self.fed, self.n_commits, fixes_of
        state.culprits = {**culprits, **self.culprits}
        return state.to_parts()

    @classmethod
    def from_parts(cls, parts: dict[str, object]) -> RiskHistory:
        """The inverse of to_parts; ValueError names the first part that is not what it wrote."""
        state = cls()
        state.fed = Fed.from_part(parts["fed"])
        state.n_commits = check_int(parts["n_commits"], "n_commits")
        for name in COUNTERS:
            setattr(state, name, Counter(check_counts(parts[name], name)))
        state.file_authors = defaultdict(set, check_str_map(parts["file_authors"], "file_authors",
                                                            lambda v, what: set(check_strings(v, what))))
        state.author_files = Counter({(email, path): n for email, path, n in
                                      check_rows(parts["author_files"], "author_files", (str, str, int))})
        culprits = [check_facts(row) for row in check_list(parts["culprits"], "culprits")]
        state.culprits = {c.sha: c for c in culprits}
        state.fixes_of = defaultdict(list, check_str_map(parts["fixes_of"], "fixes_of", check_strings))
        state.recent_culprits.values = check_str_map(parts["recent_culprits"], "recent_culprits", check_decayed)
        return state

    def similar(self, commits: Sequence[CommitFacts], *, top: int = 3,
                ) -> list[list[tuple[str, float, tuple[str, ...]]]]:
        """For each commit, the earlier root causes it most resembles: (culprit, BM25 score,
        fixes that named it), best first. BM25 of subject, paths and identifiers."""
        if self.store is not None:
            return self._similar_stored(commits, top=top)
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


    def _similar_stored(self, commits: Sequence[CommitFacts], *, top: int,
                        ) -> list[list[tuple[str, float, tuple[str, ...]]]]:
        """`similar` from the saved postings of the commits' terms and the root causes learned
        since: the scores text.BM25 over every root cause gives, reading only the root causes
        that share a term with a commit (issue 11)."""
        saved = self.store
        assert saved is not None
        new = {c.sha: (Counter(doc), len(doc)) for c in self.culprits.values() for doc in [similarity_document(c)]}
        n_docs = saved.n_culprits + len(new)
        if not n_docs:
            return [[] for _ in commits]
        avgdl = (saved.doc_length + sum(length for _, length in new.values())) / n_docs or 1.0
        # the best _PREFETCH_TOP of a commit are computed once (prefetch, then the scan), while
        # no root cause is learned: the best `top` are their first `top`
        if saved.tops_at != len(self.culprits):
            saved.tops, saved.tops_at = {}, len(self.culprits)
        todo = {c.sha: c for c in commits if c.sha not in saved.tops or top > _PREFETCH_TOP}
        queries = {sha: Counter(similarity_document(c)) for sha, c in todo.items()}
        saved.prefetch_postings({term for q in queries.values() for term in q})
        saved.tops.update({sha: _top_documents(q, top=max(top, _PREFETCH_TOP), saved=saved, new=new, n_docs=n_docs,
                                               avgdl=avgdl) for sha, q in queries.items()})
        tops = [saved.tops[c.sha][:top] for c in commits]
        saved.fixes_of.prefetch(sha for hits in tops for sha, _ in hits)
        return [[(sha, score, tuple(self.fixes_of.get(sha, ()))) for sha, score in hits] for hits in tops]


def _top_documents(query: Counter[str], *, top: int, saved: SavedState, new: dict[str, tuple[Counter[str], int]],
                   n_docs: int,
                   avgdl: float) -> list[tuple[str, float]]:
    """The `top` root causes of highest BM25 score for `query` (ties by sha), scored exactly as
    text.BM25 scores them: the same operations on float64, in numpy (IEEE, no fused steps), and
    each document's sum in the query's order. Reads the postings of the query's terms only."""
    k1, b = _BM25_K1, _BM25_B
    new_ids = {sha: saved.doc_id(sha) for sha in new}
    skip = np.array(sorted(new_ids.values()), dtype=np.int64)  # saved since loaded: counted from `new`
    postings = []
    for term in query:
        at, tf, length = saved.postings(term)
        if skip.size:
            keep = ~np.isin(at, skip)
            at, tf, length = at[keep], tf[keep], length[keep]
        extra = [(new_ids[sha], counts[term], size) for sha, (counts, size) in new.items() if term in counts]
        if extra:
            at, tf, length = (np.concatenate([a, np.array(column, dtype=np.int64)])
                              for a, column in zip((at, tf, length), zip(*extra, strict=True), strict=True))
        postings.append((term, at, tf, length))
    scores = np.zeros(len(saved.doc_names))  # (D,) every root cause read so far; those of no term stay 0
    for term, at, tf, length in postings:
        idf = math.log(1 + (n_docs - len(at) + 0.5) / (len(at) + 0.5))
        w = idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / avgdl))  # (P,)
        times = query[term]
        scores[at] += w if times == 1 else times * w  # a document once per term: no sum within
    hits = np.flatnonzero(scores > 0)  # a term a document has weighs more than nothing
    if len(hits) > top:  # only those scoring at least the top-th best can be in the answer (ties kept)
        threshold = np.partition(scores[hits], len(hits) - top)[len(hits) - top]
        hits = hits[scores[hits] >= threshold]
    names = saved.doc_names
    return sorted(((names[i], float(scores[i])) for i in hits), key=lambda hit: (-hit[1], hit[0]))[:top]


_PREFETCH_TOP = 5  # root causes a commit resembles whose fixes history_state reads (the scan shows 2)
_BM25_K1, _BM25_B = BM25([]).k1, BM25([]).b  # what similar's BM25 uses

# what each counter is keyed by (RiskHistory.prefetch)
_KEYED_BY = {"file_commits": "path", "file_lines": "path", "file_culprits": "path", "file_author_counts": "path",
             "author_commits": "email", "author_culprits": "email", "component_commits": "prefix",
             "component_culprits": "prefix", "dir_commits": "dir", "dir_culprits": "dir", "word_commits": "word",
             "word_culprits": "word", "def_culprits": "def"}



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


# Older rcahook pickled the state to LEGACY_STATE_FILE, which is never loaded: history_state
# deletes it and rebuilds the state (see #10). The tables are state_store's.
LEGACY_STATE_FILE = "risk-state.pickle"
NOT_SAVED = "the index is not writable here: this scan's state was not saved (the next scan recomputes it)"


def load_state(conn: sqlite3.Connection) -> tuple[RiskHistory | None, str | None]:
    """(the saved state, None), or (None, why it cannot be used); (None, None) when none was saved.
    Its counts are read later, by key (RiskHistory.prefetch), and checked then."""
    saved, why = read_saved(conn, features=RISK_FEATURES)
    return (RiskHistory.backed(saved) if saved is not None else None), why


def save_state(conn: sqlite3.Connection, state: RiskHistory) -> bool:
    """Save the state in one transaction (state_store.write_state); False when another scan
    saved since it was loaded."""
    return write_state(conn, state, features=RISK_FEATURES)


def _is_busy(e: sqlite3.Error) -> bool:
    return "locked" in str(e) or "busy" in str(e)


def _commits_by_sha(conn, shas: Iterable[str]) -> list[tuple[int, str, int]]:
    """(id, sha, n_parents) of those of `shas` that are indexed, by the sha index."""
    shas = sorted(set(shas))
    out: list[tuple[int, str, int]] = []
    for i in range(0, len(shas), CHUNK):
        chunk = shas[i:i + CHUNK]
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
    fed, last = state.fed, last_commit_id(conn)
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
        state.prefetch(facts[sha] for sha in shas if sha in facts)
        for sha in shas:
            if sha in facts:
                state.observe(facts[sha])
    events = _resolved_links(conn, "l.fix_id > ? AND l.fix_id <= ?", (fed.upto, last))
    back_ids = [cid for cid, _, _ in back]
    for i in range(0, len(back_ids), CHUNK):
        chunk = back_ids[i:i + CHUNK]
        events += _resolved_links(conn, f"l.fix_id IN ({','.join('?' * len(chunk))})", chunk)
    if fed.upto and _unresolved(conn, fed.upto) < fed.unresolved:
        # a link of a commit already fed resolved since (its culprit indexed later): rare, and
        # learn_culprit keeps each (fix, culprit) once
        events += _resolved_links(conn, "l.fix_id <= ?", (fed.upto,))
    state.prefetch_fixes({e.culprit for e in events})
    events = sorted({e for e in events if e.fix not in exclude and e.fix not in state.fixes_of.get(e.culprit, ())})
    culprits = load_facts(conn, sorted({e.culprit for e in events}))
    state.prefetch(culprits.values())
    for e in events:
        if e.culprit in culprits:
            state.learn_culprit(culprits[e.culprit], e.fix, time=e.time)
    state.fed = Fed(upto=last, skipped=skipped, unresolved=_unresolved(conn, last), shallow=_shallow(conn, last))
    return bool(shas or events) or state.fed != fed


def history_state(conn, index_dir: Path | None, exclude: set[str], *, describe: Sequence[CommitFacts] = (),
                  say: Callable[[str], None] = lambda message: None) -> RiskHistory:
    """RiskHistory over every indexed non-merge commit except `exclude`, with every culprit link
    whose fix is not excluded either; ready to describe the commits of `describe`.

    Feeding 7,000 commits costs a third of a second, so the state is saved in the index (when
    `index_dir` is given) and the next scan only feeds what it lacks (see Fed), reading the
    new rows by their ids and the saved counts by the keys of the commits it feeds and
    describes: the cost follows the new and the pushed commits, not the history.
    A saved state that fed a commit now excluded (scanned again) is rebuilt from scratch.
    """
    state, changed = None, False
    # one snapshot for the saved state, its rows and the commits fed to it: a scan saving
    # meanwhile would otherwise mix its rows with this one's watermark
    with _snapshot(conn):
        if index_dir is not None:
            state, why = load_state(conn)
            legacy = index_dir / LEGACY_STATE_FILE
            if os.path.lexists(legacy):
                if state is None and why is None:
                    why = f"{legacy} is from an older rcahook and is never loaded (a pickle could run code)"
                with contextlib.suppress(OSError):
                    legacy.unlink()
            if state is not None and not _usable(conn, state.fed, exclude):
                state = None
            elif state is not None:
                try:
                    changed = _feed(conn, state, exclude)
                    state.prefetch(describe, describe=True)
                except (ValueError, OverflowError) as e:  # a saved row is not what save_state writes
                    state, why = None, f"the saved one is malformed ({str(e)[:120]})"
            if why:
                say(f"rebuilding the scan state: {why}")
        if state is None:
            state = RiskHistory()
            changed = _feed(conn, state, exclude)
    if not changed or index_dir is None:
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


@contextlib.contextmanager
def _snapshot(conn) -> Iterator[None]:
    if conn.in_transaction:  # the caller's own transaction is the snapshot
        yield
    else:
        with store.read_snapshot(conn):
            yield
