"""Stage 2: order the stage-1 candidates with the `features` scorer or re-rank its top
with a language model (election or log-probabilities). Investigate and backtest both
call `rank`, so what the backtest measures is what responders get."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from rcahook.errors import ModelUnavailableError
from rcahook.index.reader import CommitView, History
from rcahook.rca.features import GraphHints, Query
from rcahook.rca.model import Weights
from rcahook.rca.retrieve import Candidate, Retrieval, RetrievalConfig, retrieve

if TYPE_CHECKING:
    from rcahook.llm.backend import Backend
    from rcahook.llm.prompt import CandidateView

RANKERS = ("features", "election", "logprob")  # what investigate offers; the backtest also has "blend"


@dataclass
class RankerSpec:
    name: str = "features"
    weights: Weights | None = None
    backend: Backend | None = None  # loaded by the caller
    llm_top: int = 40  # how many of the features ranking the model re-ranks
    prompt_size: int = 20
    picks: int = 5
    shuffles: int = 1
    seed: int = 0
    token_budget: int = 1800
    diff_bytes: int = 1200  # per candidate, before the prompt's own token budget trims it
    # blend: the weight of the model's centred label log-probability added to the features
    # score of each of the first prompt_size candidates (0: the features order, model unused)
    blend_weight: float = 0.0


@dataclass
class Ranking:
    candidates: list[Candidate]  # final order, best first
    retrieval: Retrieval
    ranker: str
    seconds: dict[str, float] = field(default_factory=dict)  # per stage
    notes: list[str] = field(default_factory=list)
    # election: [ballot slots the model filled, slots in all] (the rest came from stage 1's order)
    ballots: list[int] | None = None
    # blend: the features scores and the model's centred log-probabilities of the candidates it
    # saw, in the features order (what a held-out fit of blend_weight needs)
    blend: dict[str, list[float]] | None = None


class HasCommit(Protocol):
    """What candidate_views reads of a candidate (a retrieve.Candidate, or a training pick)."""

    @property
    def sha(self) -> str: ...

    @property
    def commit(self) -> CommitView: ...


def candidate_views(history: History, candidates: Sequence[HasCommit], diff_text: Callable[[str], str] | None,
                    spec: RankerSpec) -> list[CandidateView]:
    """What the prompt shows of each candidate: subject, paths, touched definitions, diff excerpt."""
    from rcahook.llm.prompt import CandidateView

    touched = history.touched_many([c.sha for c in candidates])
    views = []
    for c in candidates:
        defs = tuple(dict.fromkeys(t.qualname for t in touched.get(c.sha, ())))[:8]
        excerpt = diff_text(c.sha)[: spec.diff_bytes] if diff_text else ""
        views.append(CandidateView(key=c.sha, subject=c.commit.subject, paths=c.commit.paths[:6],
                                   definitions=defs, diff_excerpt=excerpt))
    return views


def llm_rerank(history: History, query: Query, candidates: list[Candidate], spec: RankerSpec, *,
               diff_text: Callable[[str], str] | None = None,
               progress: Callable[[int, int], None] | None = None,
               ballots: list[int] | None = None) -> list[Candidate]:
    """Re-rank the top `spec.llm_top` candidates with the model; the rest keep their order."""
    from rcahook.llm.prompt import IncidentView
    from rcahook.llm.rank import election_rank, logprob_rank

    head, tail = candidates[: spec.llm_top], candidates[spec.llm_top:]
    if len(head) <= 1:
        return candidates
    if spec.backend is None:  # a caller bug, but say what is missing rather than fail inside the ranker
        raise ModelUnavailableError(f"the {spec.name} ranker needs a model and none was loaded; "
                                    "pass --model or --llm-url, or use --ranker features")
    impacted = tuple(query.impacted_paths[:6]) + tuple(query.functions[:6])
    incident = IncidentView(title=query.title, description=query.description[:600], impacted=impacted)
    views = candidate_views(history, head, diff_text, spec)
    if spec.name == "election":
        ordered = election_rank(spec.backend, incident, views, picks=spec.picks, prompt_size=spec.prompt_size,
                                shuffles=spec.shuffles, seed=spec.seed, token_budget=spec.token_budget,
                                progress=progress, ballots=ballots)
    else:
        ordered = logprob_rank(spec.backend, incident, views, keep=spec.picks, prompt_size=spec.prompt_size,
                               shuffles=spec.shuffles, seed=spec.seed, token_budget=spec.token_budget,
                               progress=progress)
    by_sha = {c.sha: c for c in head}
    return [by_sha[key] for key, _ in ordered] + tail


def blend_rerank(history: History, query: Query, candidates: list[Candidate], spec: RankerSpec, *,
                 diff_text: Callable[[str], str] | None = None) -> tuple[list[Candidate], dict[str, list[float]]]:
    """The first `spec.prompt_size` candidates reordered by features score + blend_weight x the
    model's centred label log-probability (one conditional logit: the features ranking when
    the weight is 0); the rest keep their order."""
    from rcahook.llm.prompt import IncidentView
    from rcahook.llm.rank import label_logprobs

    head, tail = candidates[: spec.prompt_size], candidates[spec.prompt_size:]
    if len(head) <= 1:
        return candidates, {"score": [c.score for c in head], "logp": [0.0] * len(head)}
    if spec.backend is None:
        raise ModelUnavailableError("the blend ranker needs a model and none was loaded; "
                                    "pass --model or --llm-url, or use --ranker features")
    impacted = tuple(query.impacted_paths[:6]) + tuple(query.functions[:6])
    incident = IncidentView(title=query.title, description=query.description[:600], impacted=impacted)
    logp = label_logprobs(spec.backend, incident, candidate_views(history, head, diff_text, spec),
                          shuffles=spec.shuffles, seed=spec.seed, token_budget=spec.token_budget)
    combined = [c.score + spec.blend_weight * logp[c.sha] for c in head]
    order = sorted(range(len(head)), key=lambda i: (-combined[i], i))
    return [head[i] for i in order] + tail, {"score": [c.score for c in head], "logp": [logp[c.sha] for c in head]}


def rank(history: History, query: Query, space: Sequence[str], base: str, *, spec: RankerSpec,
         culprits: dict[str, str] | None = None, graph: GraphHints | None = None,
         diff_text: Callable[[str], str] | None = None, config: RetrievalConfig = RetrievalConfig(),
         progress: Callable[[int, int], None] | None = None) -> Ranking:
    from rcahook.rca.model import default_weights

    t0 = time.perf_counter()
    retrieval = retrieve(history, query, space, base, weights=spec.weights or default_weights(),
                         culprits=culprits, graph=graph, config=config)
    t1 = time.perf_counter()
    ranking = Ranking(list(retrieval.candidates), retrieval, spec.name, {"retrieve": t1 - t0})
    if spec.name in ("election", "logprob"):
        ranking.ballots = [0, 0] if spec.name == "election" else None
        ranking.candidates = llm_rerank(history, query, ranking.candidates, spec, diff_text=diff_text,
                                        progress=progress, ballots=ranking.ballots)
        ranking.seconds["llm"] = time.perf_counter() - t1
    elif spec.name == "blend":
        ranking.candidates, ranking.blend = blend_rerank(history, query, ranking.candidates, spec,
                                                         diff_text=diff_text)
        ranking.seconds["llm"] = time.perf_counter() - t1
    return ranking
