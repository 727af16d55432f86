"""Stage-1 features: how strongly each change in the search space matches the incident.

Everything here is computed from what is known at investigation time: the incident
(title, description, impacted paths, stack frames) and the history before the revision
under investigation (`Background`). Each feature that fires also leaves evidence that
`reasons.py` turns into a sentence a responder can check.
"""
from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from rcahook.index.reader import CommitView
from rcahook.text import BM25, DOC_PATH, component_prefix, identifier_tokens, tokenize

# The order is the weight vector's; a new feature goes at the end and old weight files
# get 0 for it.
FEATURE_NAMES: tuple[str, ...] = (
    "bm25_text",        # query vs subject + body + paths (the protocol's BM25 baseline)
    "bm25_subject",     # query vs subject
    "bm25_paths",       # query vs changed paths
    "bm25_idents",      # query vs identifiers the diff adds or removes, split at _ and camelCase
    "bm25_added",       # ... on added lines only
    "bm25_removed",     # ... on removed lines only
    "same_component",   # the title's "component:" prefix equals the change's
    "log_size",         # log(1 + lines changed)
    "recency",          # -log(1 + position in the search space), newest first
    "path_tokens",      # share of query tokens that name a changed path's components
    "log_files",        # log(1 + files changed)
    "assoc_max",        # query words -> files they usually go with in history: best changed file
    "assoc_mean",       # ... mean over changed files
    "culprit_prior",    # log(1 + times a changed file was in an earlier root cause)
    "doc_share",        # share of changed files that are docs, tests or CI
    "exact_ident",      # identifiers written in the query that the diff adds or removes
    "basename_match",   # query words inside a changed file's name (vs2010 -> vs2010backend.py)
    "component_files",  # files that commits with the title's component prefix usually touch
    "log_age_days",     # -log(1 + days between the change and the incident)
    "impacted_overlap",  # share of impacted paths (flags, stack frames) the change touches
    "impacted_dir",     # directory closeness of changed paths to impacted paths
    "touched_named",    # the change touched a definition named in the incident / a frame
    "graph_near",       # code-graph closeness of touched definitions to impacted ones
    "owner_match",      # the author owns (history) the impacted code
    "comment_only",     # every changed line is blank or a comment
    "log_code_lines",   # log(1 + changed lines that are code)
)
# Magnitudes vary by query: these also enter divided by their maximum over the search space.
NORMALIZED: tuple[str, ...] = (
    "bm25_text", "bm25_subject", "bm25_paths", "bm25_idents", "bm25_added", "bm25_removed",
    "assoc_max", "assoc_mean", "component_files",
)

# Identifiers as people write them in titles: snake_case, camelCase, CamelCase, a.b.c
_IDENT_IN_TEXT = re.compile(
    r"\b[A-Za-z_][A-Za-z0-9]*_[A-Za-z0-9_]+\b|\b[a-z]+[A-Z][A-Za-z0-9]*\b|\b[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*\b")
MAX_FILES_PER_COMMIT = 30  # a tree-wide rename says nothing about which files go with a word


@dataclass(frozen=True)
class Query:
    """What is known when the investigation opens."""

    title: str
    description: str = ""
    time: int | None = None  # epoch seconds
    impacted_paths: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()  # from stack frames

    @property
    def text(self) -> str:
        return f"{self.title}\n{self.description}".strip()


@dataclass
class Background:
    """What history before the investigated revision says about words, files and culprits."""

    n_commits: int
    word_files: Mapping[str, Mapping[str, float]]  # query word -> file -> weight
    word_commits: Counter[str]  # query word -> commits whose subject has it
    component_files: Mapping[str, Mapping[str, float]]  # subject prefix -> file -> weight
    culprit_files: Counter[str]  # file -> times in a root cause
    culprit_count: int
    # email -> file -> decayed weight
    author_files: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


def build_background(history_commits: Sequence[CommitView], culprits: dict[str, str],
                     *, words: set[str] | None = None, now: int | None = None) -> Background:
    """Statistics over the commits before the investigated revision (newest first).

    `culprits` maps fix -> culprit; only fixes among `history_commits` count, so nothing
    after the revision leaks in. `words` restricts the word model to the query's words.
    """
    # float weights: a Counter is typed for counts (int)
    word_files: defaultdict[str, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
    word_commits: Counter[str] = Counter()
    component_files: defaultdict[str, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
    author_files: defaultdict[str, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
    present = {c.sha for c in history_commits}
    by_sha = {c.sha: c for c in history_commits}
    now = now or (history_commits[0].author_time if history_commits else 0)
    for c in history_commits:
        paths = c.paths[:MAX_FILES_PER_COMMIT]
        if not paths:
            continue
        share = 1.0 / len(paths)
        subject_words = set(tokenize(c.subject))
        if words is not None:
            subject_words &= words
        for w in subject_words:
            word_commits[w] += 1
            files = word_files[w]
            for p in paths:
                files[p] += share
        prefix = component_prefix(c.subject)
        if prefix:
            files = component_files[prefix]
            for p in paths:
                files[p] += share
        decay = 0.5 ** (max(now - c.author_time, 0) / (180 * 86400))
        mine = author_files[c.author_email.lower()]
        for p in paths:
            mine[p] += decay
    culprit_files: Counter[str] = Counter()
    n_culprits = 0
    for fix, culprit in culprits.items():
        if fix in present and culprit in by_sha:
            n_culprits += 1
            for p in by_sha[culprit].paths[:MAX_FILES_PER_COMMIT]:
                culprit_files[p] += 1
    return Background(len(history_commits), word_files, word_commits, component_files,
                      culprit_files, n_culprits, author_files)


@dataclass
class Evidence:
    """Per-candidate facts behind the features, for the reasons shown to the responder."""

    matched_words: list[str] = field(default_factory=list)
    matched_idents: list[str] = field(default_factory=list)
    impacted_hits: list[str] = field(default_factory=list)
    named_defs: list[str] = field(default_factory=list)
    graph_hops: int | None = None
    assoc_file: str | None = None
    component_file: str | None = None
    culprit_file: tuple[str, int] | None = None
    owner_share: float = 0.0


@dataclass
class GraphHints:
    """Code-graph facts about the impacted code, computed once per investigation."""

    named: set[str] = field(default_factory=set)  # definition names the incident mentions
    hops: dict[str, int] = field(default_factory=dict)  # definition name -> hops from impacted code


def incident_identifiers(text: str) -> set[str]:
    return set(_IDENT_IN_TEXT.findall(text))


def _dir_closeness(a: str, b: str) -> float:
    """1 for the same file, falling with the number of directory steps between them."""
    if a == b:
        return 1.0
    pa, pb = a.split("/"), b.split("/")
    common = 0
    for x, y in zip(pa[:-1], pb[:-1]):
        if x != y:
            break
        common += 1
    steps = (len(pa) - 1 - common) + (len(pb) - 1 - common)
    return 0.5 / (1 + steps)


def compute_features(query: Query, commits: Sequence[CommitView], background: Background, *,
                     touched: dict[str, list] | None = None, graph: GraphHints | None = None,
                     ) -> tuple[np.ndarray, list[Evidence]]:
    """The (candidates, features) matrix in FEATURE_NAMES order, and per-candidate evidence.

    `commits` is the search space, newest first (recency is the position in it).
    """
    n = len(commits)
    X = np.zeros((n, len(FEATURE_NAMES)), dtype=np.float64)  # (N, F)
    ev = [Evidence() for _ in range(n)]
    if n == 0:
        return X, ev
    col = {name: i for i, name in enumerate(FEATURE_NAMES)}
    q = tokenize(query.text)
    q_set = set(q)

    def bm25(docs: list[list[str]]) -> np.ndarray:
        return np.asarray(BM25(docs).score(q), dtype=np.float64)

    path_tokens = [tokenize(" ".join(c.paths)) for c in commits]
    subject_tokens = [tokenize(c.subject) for c in commits]
    added = [identifier_tokens(c.idents_added.split()) for c in commits]
    removed = [identifier_tokens(c.idents_removed.split()) for c in commits]
    X[:, col["bm25_text"]] = bm25([s + tokenize(c.body) + p for s, c, p in zip(subject_tokens, commits, path_tokens)])
    X[:, col["bm25_subject"]] = bm25(subject_tokens)
    X[:, col["bm25_paths"]] = bm25(path_tokens)
    X[:, col["bm25_idents"]] = bm25([a + r for a, r in zip(added, removed)])
    X[:, col["bm25_added"]] = bm25(added)
    X[:, col["bm25_removed"]] = bm25(removed)

    title_prefix = component_prefix(query.title)
    idents = incident_identifiers(query.text)
    long_words = [w for w in q_set if len(w) >= 4]
    # query words -> files, idf-weighted: which files does history say this title is about?
    file_weight: defaultdict[str, float] = defaultdict(float)
    for w in q_set:
        n_w = background.word_commits.get(w, 0)
        if n_w == 0:
            continue
        idf = math.log(max(background.n_commits, 1) / n_w)
        for p, v in background.word_files[w].items():
            file_weight[p] += idf * v / n_w
    comp_weight: dict[str, float] = {}
    if title_prefix and background.component_files.get(title_prefix):
        files = background.component_files[title_prefix]
        total = sum(files.values())
        comp_weight = {p: v / total for p, v in files.items()}
    impacted = list(dict.fromkeys(query.impacted_paths))
    impacted_set = set(impacted)
    impacted_dirs = [b for b in impacted if b.endswith("/")]
    paths_set = [set(c.paths) for c in commits]
    owner_of_impacted = _owner_shares(background, impacted) if impacted else {}
    named = set(graph.named) if graph else set()
    named |= set(query.functions)
    named_lower = {n.lower() for n in named}

    for i, c in enumerate(commits):
        e = ev[i]
        paths = c.paths
        X[i, col["same_component"]] = float(bool(title_prefix) and component_prefix(c.subject) == title_prefix)
        X[i, col["log_size"]] = math.log1p(c.added + c.deleted)
        X[i, col["recency"]] = -math.log1p(i)
        X[i, col["log_files"]] = math.log1p(c.n_files)
        X[i, col["comment_only"]] = float(c.code_lines == 0 and c.added + c.deleted > 0)
        X[i, col["log_code_lines"]] = math.log1p(c.code_lines)
        if q_set:
            hits = q_set.intersection(path_tokens[i])
            X[i, col["path_tokens"]] = len(hits) / len(q_set)
        if paths:
            weights = [file_weight.get(p, 0.0) for p in paths]
            best = max(range(len(paths)), key=weights.__getitem__)
            X[i, col["assoc_max"]] = weights[best]
            X[i, col["assoc_mean"]] = sum(weights) / len(paths)
            if weights[best] > 0:
                e.assoc_file = paths[best]
            if comp_weight:
                cw = [comp_weight.get(p, 0.0) for p in paths]
                j = max(range(len(paths)), key=cw.__getitem__)
                X[i, col["component_files"]] = cw[j]
                if cw[j] > 0:
                    e.component_file = paths[j]
            counts = [background.culprit_files.get(p, 0) for p in paths]
            j = max(range(len(paths)), key=counts.__getitem__)
            X[i, col["culprit_prior"]] = math.log1p(counts[j])
            if counts[j]:
                e.culprit_file = (paths[j], counts[j])
            X[i, col["doc_share"]] = sum(bool(DOC_PATH.search(p)) for p in paths) / len(paths)
            stems = [p.rsplit("/", 1)[-1].rsplit(".", 1)[0].lower() for p in paths]
            X[i, col["basename_match"]] = sum(any(w in s and w != s for s in stems) for w in long_words)
        if idents:
            diff_idents = set(c.idents_added.split()) | set(c.idents_removed.split())
            e.matched_idents = sorted(idents & diff_idents)
            X[i, col["exact_ident"]] = len(e.matched_idents)
        if query.time is not None:
            X[i, col["log_age_days"]] = -math.log1p(max(query.time - c.author_time, 0) / 86400)
        if impacted:
            # an impacted directory (a service's prefix) is hit by any change under it
            hit = [b for b in impacted
                   if b in paths_set[i] or (b.endswith("/") and any(p.startswith(b) for p in paths))]
            e.impacted_hits = [p for p in paths if p in impacted_set or any(p.startswith(d) for d in impacted_dirs)]
            X[i, col["impacted_overlap"]] = len(hit) / len(impacted)
            if paths:
                X[i, col["impacted_dir"]] = max(_dir_closeness(a, b) for a in paths[:50] for b in impacted[:20])
            share = owner_of_impacted.get(c.author_email.lower(), 0.0)
            X[i, col["owner_match"]] = share
            e.owner_share = share
        if touched is not None and (named_lower or (graph and graph.hops)):
            defs = touched.get(c.sha, ())
            hit = sorted({d.qualname for d in defs if d.name.lower() in named_lower})
            e.named_defs = hit
            X[i, col["touched_named"]] = float(bool(hit))
            if graph and graph.hops:
                hops = [graph.hops[d.name] for d in defs if d.name in graph.hops]
                if hops:
                    e.graph_hops = min(hops)
                    X[i, col["graph_near"]] = 1.0 / (1 + e.graph_hops)
        e.matched_words = sorted(q_set.intersection(
            set().union(subject_tokens[i], path_tokens[i], added[i], removed[i])))
    return X, ev


def _owner_shares(background: Background, impacted: Sequence[str]) -> dict[str, float]:
    """email -> share of the decayed history weight on the impacted files (and their dirs)."""
    dirs = {p.rsplit("/", 1)[0] + "/" for p in impacted if "/" in p}
    totals: dict[str, float] = {}
    for email, files in background.author_files.items():
        w = 0.0
        for p, v in files.items():
            if p in impacted or any(p.startswith(d) for d in dirs):
                w += v
        if w:
            totals[email] = w
    whole = sum(totals.values())
    return {e: v / whole for e, v in totals.items()} if whole else {}


def normalized_matrix(X: np.ndarray) -> np.ndarray:
    """X with the NORMALIZED columns appended, each divided by its max over the candidates."""
    idx = [FEATURE_NAMES.index(n) for n in NORMALIZED]
    extra = X[:, idx].copy()  # (N, len(NORMALIZED))
    peak = extra.max(axis=0, initial=0.0)
    extra = np.divide(extra, peak, out=np.zeros_like(extra), where=peak > 0)
    return np.concatenate([X, extra], axis=1)  # (N, F + len(NORMALIZED))


def all_feature_names() -> tuple[str, ...]:
    return FEATURE_NAMES + tuple(f"{n}/max" for n in NORMALIZED)
