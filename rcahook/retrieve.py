"""Stage 1: from the search space to a scored, cut candidate list, each with its evidence."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rcahook.features import (Background, Evidence, GraphHints, Query, build_background,
                              compute_features, incident_identifiers, normalized_matrix)
from rcahook.history import CommitView, History
from rcahook.scorer import Weights, order, score, softmax
from rcahook.text import tokenize


@dataclass(frozen=True)
class RetrievalConfig:
    max_candidates: int = 300  # stage-1 cut: what the rankers see
    background_depth: int = 5000  # commits before the revision that feed the history models


@dataclass
class Candidate:
    commit: CommitView
    features: np.ndarray  # (F,) raw feature values, FEATURE_NAMES order
    score: float
    probability: float  # softmax share over the whole search space
    evidence: Evidence

    @property
    def sha(self) -> str:
        return self.commit.sha


@dataclass
class Retrieval:
    candidates: list[Candidate]  # best first, cut to max_candidates
    search_space: int
    background: Background


def search_space(history: History, base: str, *, since: int | None = None, until: int | None = None,
                 window: int | None = None) -> list[str]:
    """Non-merge commits reachable from base: the `window` newest, or those committed in
    [since, until]. Newest first, in git's order."""
    if window is not None:
        return history.rev_list(base, max_count=window)
    shas = history.rev_list(base, since=since)
    if until is not None:
        info = {c.sha: c.committer_time for c in history.commits(shas)}
        shas = [s for s in shas if info.get(s, 0) <= until]
    return shas


def graph_hints_from_query(query: Query) -> GraphHints:
    """Definition names the incident itself mentions (identifiers in its text, frames)."""
    return GraphHints(named=incident_identifiers(query.text) | set(query.functions))


def feature_matrix(history: History, query: Query, space: Sequence[str], base: str, *,
                   culprits: dict[str, str] | None = None, graph: GraphHints | None = None,
                   config: RetrievalConfig = RetrievalConfig(),
                   ) -> tuple[list[CommitView], np.ndarray, list[Evidence], Background]:
    """Raw features of every commit in the search space (what both ranking and fitting use)."""
    commits = history.commits(space)
    background_shas = history.rev_list(base, max_count=config.background_depth)
    background = build_background(
        history.commits(background_shas), culprits if culprits is not None else history.culprit_of(),
        words=set(tokenize(query.text)), now=query.time)
    touched = history.touched_many(space)
    X, evidence = compute_features(query, commits, background, touched=touched,
                                   graph=graph or graph_hints_from_query(query))
    return commits, X, evidence, background


def retrieve(history: History, query: Query, space: Sequence[str], base: str, *, weights: Weights,
             culprits: dict[str, str] | None = None, graph: GraphHints | None = None,
             config: RetrievalConfig = RetrievalConfig()) -> Retrieval:
    commits, X, evidence, background = feature_matrix(history, query, space, base, culprits=culprits,
                                                      graph=graph, config=config)
    s = score(normalized_matrix(X), weights)
    p = softmax(s)
    ranked = order(s)[: config.max_candidates]
    candidates = [Candidate(commits[i], X[i], float(s[i]), float(p[i]), evidence[i]) for i in ranked]
    return Retrieval(candidates, len(commits), background)
