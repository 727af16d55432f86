"""Replay mined investigations with only what protocol v1 lets a ranker see, and record
one outcome per (investigation, ranker) in a resumable JSONL results file.

Every ranker goes through `rcahook.rca.ranking.rank`, the function `investigate` calls, with
the window as the search space and F^ as the revision: the retriever's history models
(word/file associations, earlier culprit links, ownership) are built from commits
reachable from F^ only, so nothing after F^ leaks in.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rcahook.backtest.baselines import BaselineRanker
from rcahook.backtest.metrics import Outcome
from rcahook.backtest.mine import PROTOCOL_VERSION, Investigation, mine_investigations
from rcahook.backtest.protocol import V1
from rcahook.errors import BadInputError, ModelAnswerError, RcahookError
from rcahook.index import store
from rcahook.index.reader import History
from rcahook.jsonl import ResultsFile
from rcahook.pool import WorkerPool
from rcahook.progress import Progress
from rcahook.rca.confidence import SIGNALS_VERSION, raw_confidence, signals_for
from rcahook.rca.features import GraphHints, Query
from rcahook.rca.model import WEIGHTS_FILE, Weights, default_weights, load_weights
from rcahook.rca.ranking import RankerSpec, Ranking, rank
from rcahook.rca.retrieve import graph_hints, needs_graph

if TYPE_CHECKING:
    import sqlite3

    from rcahook.codegraph.graph import CodeGraph
    from rcahook.llm.backend import Backend

FEATURE_RANKERS = ("features", "features-default")
LLM_RANKERS = ("election", "logprob", "blend")
STORED_BASELINES = ("recency", "bm25", "path-overlap")  # random is analytic: nothing to store
RESULTS_FORMAT = "rcahook.backtest.results/1"


@dataclass(frozen=True)
class Settings:
    window: int = 500
    track: str = "title"  # "title" | "paths" (the paths F modifies are the impacted locations) | "null"
    null_titles: str | None = None  # null track: file of titles from elsewhere; None: own history
    rankers: tuple[str, ...] = ("features",)  # measured rankers; baselines always run too
    llm_top: int = 40  # how many of the features ranking the LLM re-ranks
    blend_weight: float = 0.0  # blend: the model's weight next to the features score (0: features order)
    shuffles: int = 1  # LLM rankers: prompt orders averaged (position and label bias)
    model: str | None = None
    llm_url: str | None = None
    llm_model: str | None = None
    limit: int | None = None  # only the N most recent investigations
    sample: int | None = None  # a seeded random sample of N investigations
    seed: int = 0


@dataclass(frozen=True)
class WeightsInfo:
    source: str  # "learned" | "default"
    path: str | None
    info: dict
    fingerprint: str
    cutoff_time: int | None  # learned weights only: investigations whose fix is later are evaluated


@dataclass
class BacktestResult:
    repository: str
    head: str
    settings: Settings
    rankers: tuple[str, ...]  # what was measured, baselines included, in display order
    investigations: list[Investigation]  # evaluated, newest first
    outcomes: dict[str, list[Outcome]]  # ranker -> aligned with investigations (random: none)
    weights: WeightsInfo
    mined: int
    excluded_by_cutoff: int = 0
    index_dir: str | None = None
    output: str | None = None
    resumed: int = 0  # outcomes read back from the results file instead of recomputed
    notes: list[str] = field(default_factory=list)
    protocol: str = V1  # "1" or "1.1" (rcahook.backtest.protocol)


def parse_rankers(values: Sequence[str]) -> tuple[str, ...]:
    """--ranker may repeat and may list several, comma-separated; baselines are implied."""
    from rcahook.backtest.baselines import BASELINES

    names: list[str] = []
    for value in values:
        names.extend(v.strip() for v in value.split(",") if v.strip())
    known = FEATURE_RANKERS + LLM_RANKERS + BASELINES
    for name in names:
        if name not in known:
            raise BadInputError(f"unknown ranker {name!r}; expected one of {', '.join(known)}")
    return tuple(n for n in dict.fromkeys(names) if n not in BASELINES)


def baselines_for(track: str) -> tuple[str, ...]:
    return ("random", "recency", "bm25") + (("path-overlap",) if track == "paths" else ())


def describe_weights(weights: Weights, path: Path | None) -> WeightsInfo:
    blob = json.dumps({"names": list(weights.names), "values": [round(float(v), 6) for v in weights.values]})
    cutoff = weights.info.get("cutoff_time") if path is not None else None
    return WeightsInfo("learned" if path is not None else "default", str(path) if path else None,
                       dict(weights.info), hashlib.sha256(blob.encode()).hexdigest()[:16],
                       int(cutoff) if cutoff is not None else None)


def query_for(inv: Investigation, track: str) -> Query:
    """The incident as the protocol states it: title and time; the paths only on that track."""
    return Query(title=inv.title, time=inv.time, impacted_paths=inv.paths if track == "paths" else ())


# --- the null track ------------------------------------------------------------------------

def read_null_titles(path: Path) -> tuple[str, ...]:
    """One title a line; blank lines and lines starting with # are skipped."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise BadInputError(f"--null-titles {path}: cannot read it ({e.strerror}); pass a text file with one "
                            "incident title a line") from None
    titles = tuple(dict.fromkeys(t.strip() for t in text.splitlines() if t.strip() and not t.lstrip().startswith("#")))
    if not titles:
        raise BadInputError(f"--null-titles {path}: no title in it; pass a text file with one incident title a "
                            "line (e.g. the titles of another repository's backtest)")
    return titles


def null_investigations(chosen: Sequence[Investigation], mined: Sequence[Investigation],
                        titles: Sequence[str] | None, *, seed: int = 0) -> list[Investigation]:
    """Each investigation with a title about something else, same time and window, no paths.

    With `titles` (another repository's), a seeded shuffle of them, dealt in turn; without,
    the title of the investigation half the mined list away (the most distant part of this
    repository's own history that every investigation can be paired with)."""
    if titles:
        pool = list(titles)
        random.Random(seed).shuffle(pool)
        picks = [pool[i % len(pool)] for i in range(len(chosen))]
    else:
        if len(mined) < 2:
            raise BadInputError("--track null needs titles from elsewhere: this repository has fewer than two "
                                "investigations; pass --null-titles FILE (one title a line)")
        where = {inv.fix: j for j, inv in enumerate(mined)}
        picks = [mined[(where[inv.fix] + len(mined) // 2) % len(mined)].title for inv in chosen]
    out = []
    for inv, title in zip(chosen, picks):
        if title == inv.title:  # the same words in both places say nothing about abstaining
            title = next((t for t in (titles or [m.title for m in mined]) if t != inv.title), title)
        out.append(dataclasses.replace(inv, title=title, paths=(), own_title=inv.title))
    return out


def null_fingerprint(titles: Sequence[str] | None) -> str:
    """What the results file records of the null titles, so a resume cannot mix two sets."""
    if titles is None:
        return "own-history"
    return hashlib.sha256("\n".join(titles).encode()).hexdigest()[:16]


def select(investigations: list[Investigation], *, limit: int | None, sample: int | None,
           seed: int) -> list[Investigation]:
    """The most recent `limit`, then a seeded sample of `sample`; newest first either way."""
    chosen = investigations[:limit] if limit is not None else investigations
    if sample is not None and sample < len(chosen):
        keep = set(random.Random(seed).sample(range(len(chosen)), sample))
        chosen = [inv for i, inv in enumerate(chosen) if i in keep]
    return chosen


class Replayer:
    """Replays one investigation with one ranker; holds what is shared across investigations
    (the History with its caches, the culprit links, the baselines' document cache)."""

    def __init__(self, history: History, *, track: str, weights: Weights, culprits: dict[str, str],
                 default: Weights | None = None, load_backend: Callable[[], Backend] | None = None,
                 llm_top: int = 40, seed: int = 0, blend_weight: float = 0.0, shuffles: int = 1,
                 diff_text: Callable[[str], str] | None = None,
                 graph_at: Callable[[str], CodeGraph] | None = None):
        self.history = history
        self.graph_at = graph_at  # rev -> CodeGraph at that revision (from the blob cache)
        self._hints: tuple[str, GraphHints] | None = None
        self.track = track
        self.weights = weights
        self.default = default or default_weights()
        self.culprits = culprits
        self.load_backend = load_backend
        self._backend: Backend | None = None
        self.llm_top = llm_top
        self.seed = seed
        self.blend_weight = blend_weight
        self.shuffles = shuffles
        self.diff_text = diff_text
        self.baselines = BaselineRanker(history)
        self.fallbacks: dict[str, list[str]] = {}  # LLM ranker -> why each unusable answer fell back

    @property
    def backend(self) -> Backend:
        """Loaded on first use, so a resumed run whose LLM outcomes are all stored loads nothing."""
        if self._backend is None:
            assert self.load_backend is not None, "LLM rankers need a load_backend"
            self._backend = self.load_backend()
        return self._backend

    def ranking(self, inv: Investigation, ranker: str) -> Ranking:
        """What `investigate` would have shown for this investigation at F^."""
        if ranker in LLM_RANKERS:
            spec = RankerSpec(name=ranker, weights=self.weights, backend=self.backend,
                              llm_top=self.llm_top, seed=self.seed, blend_weight=self.blend_weight,
                              shuffles=self.shuffles)
        else:
            spec = RankerSpec(name="features",
                              weights=self.default if ranker == "features-default" else self.weights)
        query = query_for(inv, self.track)
        try:
            return rank(self.history, query, inv.candidates, inv.parent, spec=spec, culprits=self.culprits,
                        graph=self.hints(inv, query),
                        diff_text=self.diff_text if ranker in LLM_RANKERS else None)
        except ModelAnswerError as e:
            # What investigate shows then: the features ranking (said in the notes). An unreachable
            # server (ModelServerError) still ends the run: that measures nothing.
            self.fallbacks.setdefault(ranker, []).append(str(e))
            return rank(self.history, query, inv.candidates, inv.parent,
                        spec=RankerSpec(name="features", weights=self.weights), culprits=self.culprits,
                        graph=self.hints(inv, query))

    def hints(self, inv: Investigation, query: Query) -> GraphHints:
        """Code-graph hints from the graph as of F^ (never HEAD's), once per investigation."""
        if self._hints is None or self._hints[0] != inv.fix:
            graph = self.graph_at(inv.parent) if self.graph_at and needs_graph(query) else None
            self._hints = (inv.fix, graph_hints(query, graph))
        return self._hints[1]

    def outcome(self, inv: Investigation, ranker: str) -> Outcome:
        started = time.perf_counter()
        if ranker in STORED_BASELINES:
            if ranker == "recency":
                order = self.baselines.recency(inv.candidates)
            elif ranker == "bm25":
                order = self.baselines.bm25(inv.title, inv.candidates)
            else:
                order = self.baselines.path_overlap(inv.paths, inv.candidates)
            return Outcome(inv.fix, ranker, inv.rank_of(order), len(inv.candidates),
                           seconds=time.perf_counter() - started)
        ranking = self.ranking(inv, ranker)
        final = [c.sha for c in ranking.candidates]
        stage1 = [c.sha for c in ranking.retrieval.candidates]
        raw = signals = None
        if ranker in FEATURE_RANKERS:
            raw = raw_confidence([c.probability for c in ranking.candidates[:5]])
            signals = signals_for(ranking.candidates, title=inv.title, background=ranking.retrieval.background,
                                  mass=raw).to_json()
        blend = None
        if ranking.blend is not None:
            seen = [c.sha for c in ranking.retrieval.candidates[:len(ranking.blend["score"])]]
            blend = {**ranking.blend, "culprit": seen.index(inv.culprit) if inv.culprit in seen else None}
        return Outcome(inv.fix, ranker, inv.rank_of(final), len(inv.candidates),
                       retrieved=len(stage1), stage1=inv.culprit in stage1,
                       seconds=time.perf_counter() - started, raw=raw, signals=signals,
                       ballots=(ranking.ballots[0], ranking.ballots[1]) if ranking.ballots else None, blend=blend)


def _names_repository(info: dict, repository: str) -> str | None:
    """The repository's name when the weights' info mentions it as a word (mirrors are
    laid out as owner+name/repo)."""
    path = Path(repository)
    name = path.name.lower().removesuffix(".git")
    if name in ("", "repo", "git"):
        name = path.parent.name.lower().removesuffix(".git")
    name = name.split("+")[-1]
    text = json.dumps(list(info.values())).lower()
    if len(name) >= 3 and re.search(rf"(?<![a-z0-9]){re.escape(name)}(?![a-z0-9])", text):
        return name
    return None


# --- the results file ----------------------------------------------------------------------

def ranker_config(ranker: str, settings: Settings, weights: WeightsInfo, default: WeightsInfo) -> dict:
    """What must not change for a stored outcome of this ranker to be reused."""
    # the confidence's inputs are stored with each outcome: a change in them makes old ones stale
    if ranker == "features":
        return {"weights": weights.fingerprint, "signals": SIGNALS_VERSION}
    if ranker == "features-default":
        return {"weights": default.fingerprint, "signals": SIGNALS_VERSION}
    if ranker in LLM_RANKERS:
        return {"weights": weights.fingerprint, "llm_top": settings.llm_top, "model": settings.model,
                "llm_url": settings.llm_url, "llm_model": settings.llm_model, "seed": settings.seed,
                **({"blend_weight": settings.blend_weight} if ranker == "blend" else {}),
                **({"shuffles": settings.shuffles} if settings.shuffles != 1 else {})}
    return {"baseline": 1}


_GLOBAL_KEYS = ("protocol", "head", "window", "track", "null_titles")
RESUME_FIX = "resume with the same settings, or drop --resume (or pass another --output) to start afresh"


def results_file(path: Path, header: dict) -> ResultsFile:
    """Header lines (one per run) recording settings, then one line per outcome; each ranker's
    config (weights, model settings) is checked only when an earlier run measured it too."""
    return ResultsFile(path, header, checked=_GLOBAL_KEYS, parts="rankers", fix=RESUME_FIX)


def stored_outcomes(records: Sequence[dict]) -> dict[tuple[str, str], Outcome]:
    return {(row["fix"], row["ranker"]): Outcome(
        row["fix"], row["ranker"], row["rank"], row["window"], row.get("retrieved"), row.get("stage1"),
        row.get("seconds", 0.0), row.get("raw"), signals=row.get("signals"), ballots=_ballots(row.get("ballots")),
        blend=row.get("blend") if isinstance(row.get("blend"), dict) else None)
        for row in records if row.get("type") == "result"}


def _ballots(value: object) -> tuple[int, int] | None:
    """A stored outcome's ballot counts, when they are two counts (the file is read back)."""
    if isinstance(value, list) and len(value) == 2 and all(type(v) is int and v >= 0 for v in value):
        return value[0], value[1]
    return None


def outcome_record(o: Outcome, inv: Investigation | None = None) -> dict:
    """One result line; with `inv` (protocol v1.1) also what named its culprit and whether
    the fix's subject names it."""
    extra = {"rule": inv.rule, "subject_named": inv.subject_named} if inv is not None else {}
    return {"type": "result", "fix": o.fix, "ranker": o.ranker, "rank": o.rank, "window": o.window,
            "retrieved": o.retrieved, "stage1": o.stage1, "seconds": round(o.seconds, 4), "raw": o.raw,
            "signals": o.signals, **({"ballots": list(o.ballots)} if o.ballots else {}),
            **({"blend": o.blend} if o.blend is not None else {}), **extra}


# --- the run -------------------------------------------------------------------------------

def _evaluated(history: History, mined: list[Investigation], *, rankers: Sequence[str], learned: bool,
               weights: WeightsInfo, repository: str) -> tuple[list[Investigation], list[str]]:
    """The investigations the weights may be measured on, and what the output must say about them."""
    notes: list[str] = []
    uses_learned = learned and any(r in ("features",) + LLM_RANKERS for r in rankers)
    if uses_learned and weights.cutoff_time is not None:
        # a time split: learned weights are only measured on fixes made after their data ended
        fix_time = {c.sha: c.committer_time for c in history.commits(inv.fix for inv in mined)}
        kept = [inv for inv in mined if fix_time[inv.fix] > weights.cutoff_time]
        notes.append(f"time split: learned weights have a cut-off at {weights.cutoff_time}; "
                     f"{len(mined) - len(kept)} investigation(s) fixed before it are left out")
        return kept, notes
    if uses_learned:
        notes.append(f"learned weights ({weights.path}) record no cut-off (info.cutoff_time): they may have "
                     "been fitted on these very investigations, so the features figures can be in-sample")
    elif not learned and any(r in FEATURE_RANKERS + LLM_RANKERS for r in rankers):
        named = _names_repository(weights.info, repository)
        if named:
            notes.append(f"the default weights' info names {named!r}: they may have been fitted on this "
                         "repository's investigations, so the features figures can be in-sample")
    return mined, notes


_worker: tuple[Replayer, Sequence[str]] | None = None  # set before the pool forks
_inherited: sqlite3.Connection | None = None


def _worker_start(db_path: str) -> None:
    """In a forked worker: a connection of its own (one must never cross a fork); every
    reference to the History, the code-graph callback's included, sees it."""
    global _inherited
    assert _worker is not None
    history = _worker[0].history
    _inherited = history.conn  # the parent's, kept unclosed: closing it here could disturb the parent's
    history.conn = store.open_index(Path(db_path), create=False)
    history.forget()


def _worker_outcomes(job: tuple[Investigation, tuple[str, ...]]) -> dict[str, Outcome]:
    assert _worker is not None
    inv, rankers = job
    return {ranker: _worker[0].outcome(inv, ranker) for ranker in rankers}


def _work(investigations: Sequence[Investigation], stored: Sequence[str],
          done: dict) -> list[tuple[Investigation, tuple[str, ...]]]:
    """Each investigation with the rankers whose outcome is still to compute."""
    return [(inv, tuple(r for r in stored if (inv.fix, r) not in done)) for inv in investigations]


@contextmanager
def _replay_pool(replayer: Replayer, stored: Sequence[str], todo: int, *, jobs: int) -> Iterator[WorkerPool]:
    """Workers forked now, before the progress bar's thread, each inheriting the replayer (its
    History and callbacks cannot be pickled); with another thread already running, the
    replay runs here instead (see rcahook.pool)."""
    global _worker
    _worker = (replayer, stored)
    db_path = replayer.history.conn.execute("PRAGMA database_list").fetchone()[2]
    try:
        with WorkerPool(jobs if todo >= 2 else 1, what="replaying an investigation", error=RcahookError,
                        initializer=_worker_start, initargs=(db_path,), inherit=True) as pool:
            yield pool
    finally:
        _worker = None


def _replay(replayer: Replayer, work: Sequence[tuple[Investigation, tuple[str, ...]]],
            pool: WorkerPool) -> Iterator[tuple[Investigation, dict[str, Outcome]]]:
    """Each investigation with the outcomes still to compute, in order whatever the pool: an
    outcome depends on its investigation alone, so N worker processes give what one does."""
    if not pool.parallel:
        for inv, rankers in work:
            yield inv, {ranker: replayer.outcome(inv, ranker) for ranker in rankers}
        return
    computed = pool.map(_worker_outcomes, [job for job in work if job[1]])
    for inv, rankers in work:
        yield inv, next(computed) if rankers else {}


def run_backtest(history: History, *, repository: str, head: str, settings: Settings,
                 index_dir: Path | None, output: Path, resume: bool = False, jobs: int = 1,
                 null_titles: Sequence[str] | None = None,
                 diff_text: Callable[[str], str] | None = None, progress: Progress | None = None,
                 load_backend: Callable[[], Backend] | None = None,
                 graph_at: Callable[[str], CodeGraph] | None = None, protocol: str = V1) -> BacktestResult:
    weights_path = index_dir / WEIGHTS_FILE if index_dir is not None else None
    learned = weights_path is not None and weights_path.is_file()
    weights = load_weights(index_dir)
    winfo = describe_weights(weights, weights_path if learned else None)
    default = default_weights()
    measured = settings.rankers + baselines_for(settings.track)
    stored = [r for r in measured if r != "random"]

    mined = mine_investigations(history, head, window=settings.window, protocol=protocol)
    kept, notes = _evaluated(history, mined, rankers=settings.rankers, learned=learned, weights=winfo,
                             repository=repository)
    investigations = select(kept, limit=settings.limit, sample=settings.sample, seed=settings.seed)
    if settings.track == "null":
        investigations = null_investigations(investigations, mined, null_titles, seed=settings.seed)

    dinfo = describe_weights(default, None)
    # v1's header keeps its number; v1.1's says "1.1", so a resume never mixes the two
    header = {"type": "header", "format": RESULTS_FORMAT, "protocol": PROTOCOL_VERSION if protocol == V1 else protocol,
              "repository": repository,
              "head": head, "window": settings.window, "track": settings.track,
              "null_titles": null_fingerprint(null_titles) if settings.track == "null" else None,
              "rankers": {r: ranker_config(r, settings, winfo, dinfo) for r in stored},
              "started": int(time.time())}
    results = results_file(output, header)
    done = stored_outcomes(results.load()) if resume else {}
    replayer = Replayer(history, track=settings.track, weights=weights, default=default,
                        culprits=history.culprit_of(), load_backend=load_backend, llm_top=settings.llm_top,
                        seed=settings.seed, blend_weight=settings.blend_weight, shuffles=settings.shuffles,
                        diff_text=diff_text, graph_at=graph_at)
    outcomes: dict[str, list[Outcome]] = {r: [] for r in stored}
    reused = 0
    progress = progress or Progress(enabled=False)
    if set(stored) & set(LLM_RANKERS):
        jobs = 1  # one model (or server) and its fallbacks notes: replayed in this process
    work = _work(investigations, stored, done)
    with _replay_pool(replayer, stored, sum(1 for _, rankers in work if rankers), jobs=jobs) as pool, \
            results.open(resume=resume) as f, \
            progress.task(f"backtest ({len(investigations)} investigations)", total=len(investigations)) as advance:
        for inv, computed in _replay(replayer, work, pool):
            for ranker in stored:
                o = computed.get(ranker)
                if o is None:
                    o = done[(inv.fix, ranker)]
                    reused += 1
                else:
                    f.write(outcome_record(o, None if protocol == V1 else inv))
                outcomes[ranker].append(o)
            advance(1)
    for ranker, reasons in replayer.fallbacks.items():
        notes.append(f"{ranker}: {len(reasons)} investigation(s) in this run fell back to the features ranking, "
                     f"as investigate would, on an unusable model answer (first: {reasons[0]})")
    return BacktestResult(repository, head, settings, measured, investigations, outcomes, winfo, len(mined),
                          len(mined) - len(kept), str(index_dir) if index_dir else None, str(output), reused,
                          notes, protocol)
