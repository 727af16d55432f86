"""Stage 1: from the search space to a scored, cut candidate list, each with its evidence."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rcahook.index.reader import CommitView, History
from rcahook.rca.features import (
    Background,
    Evidence,
    GraphHints,
    Query,
    build_background,
    compute_features,
    incident_identifiers,
    normalized_matrix,
)
from rcahook.rca.model import Weights, order, score, softmax
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
    contributions: np.ndarray | None = None  # (F_all,) weight x value, relative to the search space mean

    @property
    def sha(self) -> str:
        return self.commit.sha


@dataclass
class Retrieval:
    candidates: list[Candidate]  # best first, cut to max_candidates
    search_space: int
    background: Background


def search_space(history: History, base: str, *, since: int | None = None, until: int | None = None,
                 window: int | None = None, hide: str | None = None) -> list[str]:
    """Non-merge commits reachable from base: the `window` newest, or those committed in
    [since, until]. Newest first, in git's order. With `hide`, only those not reachable from
    it (`git rev-list base --not hide`: what a deploy of base added to one of hide)."""
    if window is not None:
        return history.rev_list(base, max_count=window)
    # exact whatever the committer clocks say: reachability from hide is walked by generation
    shas = history.rev_list(base, since=since, hide=hide)
    if until is not None:
        info = {c.sha: c.committer_time for c in history.commits(shas)}
        shas = [s for s in shas if info.get(s, 0) <= until]
    return shas


GRAPH_DEPTH = 3  # hops from the impacted code worth a feature; beyond, everything is near


def graph_hints_from_query(query: Query) -> GraphHints:
    """Definition names the incident itself mentions (identifiers in its text, frames)."""
    return GraphHints(named=incident_identifiers(query.text) | set(query.functions))


def needs_graph(query: Query) -> bool:
    """Whether the code graph can say anything: the incident names code or impacted files."""
    return bool(incident_identifiers(query.text) or query.functions
                or any(not p.endswith("/") for p in query.impacted_paths))


def graph_hints(query: Query, graph) -> GraphHints:
    """Names the incident mentions, and code-graph hops (by definition name) from them and
    from the definitions in impacted files. `graph` is a codegraph.graph.CodeGraph or None."""
    hints = graph_hints_from_query(query)
    if graph is None:
        return hints
    files = [p for p in query.impacted_paths if not p.endswith("/")]
    starts = [node for name in sorted(hints.named) for node in graph.definitions_named(name)]
    starts += [node for path in files for node in graph.definitions_in(path)]
    if not starts:
        return hints
    for node, distance in graph.distances_from(starts, GRAPH_DEPTH).items():
        if not node.startswith("def:"):
            continue
        name = node.split(":", 2)[-1].rsplit(".", 1)[-1]  # def:<path>:<Class.method> -> method
        if distance < hints.hops.get(name, GRAPH_DEPTH + 1):
            hints.hops[name] = distance
    return hints


def feature_matrix(history: History, query: Query, space: Sequence[str], base: str, *,
                   culprits: dict[str, str] | None = None, graph: GraphHints | None = None,
                   config: RetrievalConfig = RetrievalConfig(),
                   ) -> tuple[list[CommitView], np.ndarray, list[Evidence], Background]:
    """Raw features of every commit in the search space (what both ranking and fitting use)."""
    commits = history.commits(space)
    background_shas = history.rev_list(base, max_count=config.background_depth)
    background = build_background(
        history.commits(background_shas),
        culprits if culprits is not None else history.culprit_of(background_shas),  # only these count
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
    Xn = normalized_matrix(X)  # (N, F_all)
    s = score(Xn, weights)
    p = softmax(s)
    # a feature lifts a candidate when it puts it above the search space's average: the
    # model only compares candidates, so that (not the raw sign) is what moved its rank
    lift = Xn * weights.aligned()  # (N, F_all)
    lift -= lift.mean(axis=0) if len(lift) else 0
    ranked = order(s)[: config.max_candidates]
    candidates = [Candidate(commits[i], X[i], float(s[i]), float(p[i]), evidence[i], lift[i]) for i in ranked]
    return Retrieval(candidates, len(commits), background)
