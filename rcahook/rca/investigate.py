"""`rcahook investigate`: incident -> query -> search space -> ranking -> suggestions.

Ranking goes through `ranking.rank`, the same call the backtest measures, so what
responders see is what was measured. This module adds what only a live investigation
has: stack traces and services mapped onto the repository, the code graph around the
impacted code, the model fallback, calibrated confidence, reasons and verify commands.
"""
from __future__ import annotations

import re
import time as _time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from rcahook.config import Config
from rcahook.errors import BadInputError, EmptySearchSpaceError, ModelServerError, NotFoundError
from rcahook.index import store
from rcahook.index.gitrepo import Repo
from rcahook.index.reader import History
from rcahook.rca.confidence import Signals, load_calibration, raw_confidence, signals_for
from rcahook.rca.features import GraphHints, Query
from rcahook.rca.incident import Incident
from rcahook.rca.model import WEIGHTS_FILE, load_weights
from rcahook.rca.ranking import RANKERS, RankerSpec, Ranking, rank
from rcahook.rca.reasons import Reason, reasons_for, relative_age
from rcahook.rca.retrieve import (
    GRAPH_DEPTH,
    Candidate,
    RetrievalConfig,
    graph_hints,
    graph_hints_from_query,
    needs_graph,
    search_space,
)
from rcahook.rca.stacktrace import Frame, Trace, map_frames, parse_capped

DEFAULT_SINCE = timedelta(days=14)
DEFAULT_MIN_CONFIDENCE = 0.3
DEFAULT_MAX_CANDIDATES = 300
CONFIDENCE_TOP = 5  # the calibration is fitted for "the root cause is among the top five"
MAX_FRAMES = 10  # innermost in-repository frames that become impacted paths
# Runtime placeholders that are not definitions anyone wrote: <module>, <lambda>, {closure}
_NOT_A_NAME = re.compile(r"^[<{\[]|^\W*$")


@dataclass(frozen=True)
class Options:
    ranker: str = "features"
    model: str | None = None  # local model directory; None with an LLM ranker: the embedded model
    llm_url: str | None = None
    llm_model: str | None = None
    llm_top: int = 40  # how many of the features ranking the model re-ranks
    max_candidates: int = DEFAULT_MAX_CANDIDATES  # stage-1 cut
    min_confidence: float = DEFAULT_MIN_CONFIDENCE  # below: "no confident suggestion"
    strict: bool = False  # an unreachable model server fails instead of falling back
    llm_timeout: float | None = None  # seconds to wait for the server's answer; None: rcahook.llm.remote's
    llm_connect_timeout: float | None = None  # seconds to wait for a connection to the server
    top: int = 5  # suggestions shown


def options_from(config: Config, *, ranker: str | None, model: str | None, llm_url: str | None,
                 llm_model: str | None, llm_top: int, max_candidates: int | None,
                 min_confidence: float | None, strict: bool, top: int, llm_timeout: float | None = None,
                 llm_connect_timeout: float | None = None) -> Options:
    """Flags, else `config` (environment, user config, then what the repository's config may
    set: config.load_config), else the defaults."""
    chosen = ranker or config.ranker or "features"
    if chosen not in RANKERS:
        where = "--ranker" if ranker else config.origin("ranker")
        raise BadInputError(f"{where}: ranker must be one of {', '.join(RANKERS)}, got {chosen!r}")
    # A flag for one kind of model replaces the configured other kind rather than clashing
    # with it; the configured model name goes with the configured server only.
    if model is None and llm_url is None:
        model, llm_url = config.model, config.llm_url
        if llm_model is None and llm_url is not None:
            llm_model = config.llm_model
    if min_confidence is None:
        min_confidence = config.min_confidence if config.min_confidence is not None else DEFAULT_MIN_CONFIDENCE
    if not 0 <= min_confidence <= 1:
        raise BadInputError(f"--min-confidence must be between 0 and 1, got {min_confidence}")
    for name, value in (("--top", top), ("--llm-top", llm_top), ("--max-candidates", max_candidates)):
        if value is not None and value < 1:
            raise BadInputError(f"{name} must be a positive number, got {value}")
    return Options(ranker=chosen, model=model, llm_url=llm_url, llm_model=llm_model, llm_top=llm_top,
                   max_candidates=max_candidates or config.max_candidates or DEFAULT_MAX_CANDIDATES,
                   min_confidence=min_confidence, strict=strict, top=top,
                   llm_timeout=llm_timeout if llm_timeout is not None else config.llm_timeout,
                   llm_connect_timeout=(llm_connect_timeout if llm_connect_timeout is not None
                                        else config.llm_connect_timeout))


@dataclass(frozen=True)
class PreparedQuery:
    query: Query
    frames: tuple[Frame, ...]  # stack frames inside the repository, innermost first
    sources: dict[str, str]  # impacted path -> where it came from, for the reasons
    trace: Trace | None = None  # the stack trace within its caps (frames, text kept)


@dataclass(frozen=True)
class SearchSpace:
    shas: list[str]  # newest first
    at: str
    until: int  # incident time: later commits are excluded
    since: int | None  # None with a window
    window: int | None
    hide: str | None = None  # with a Scope: commits reachable from it were excluded


@dataclass(frozen=True)
class Scope:
    """A search space decided outside the incident: what the last deploy before it added
    (rcahook/serve/deploys.py). The commits of `git rev-list at --not hide` committed
    before the incident; no `hide` (a first deploy): the incident's window ending at `at`."""
    at: str  # full sha: the revision that was running
    hide: str | None = None  # full sha: the revision deployed before it


@dataclass
class Suggestion:
    rank: int  # position in the ranking, 1-based
    candidate: Candidate
    share: float  # this candidate's part of the confidence
    age: str  # "3h before"
    reasons: list[Reason]


@dataclass
class Result:
    incident: Incident
    prepared: PreparedQuery
    space: SearchSpace
    ranking: Ranking
    ranker_requested: str
    model: str | None
    weights_source: str
    confidence: float
    raw_confidence: float
    calibration: str
    options: Options
    suggestions: list[Suggestion]
    bisect_good: str | None  # parent of the oldest suggestion
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    signals: Signals | None = None  # what the confidence read (rcahook.rca.confidence)
    fallback_reason: str | None = None  # why the model's ranking was not used (ranker fell back)

    @property
    def confident(self) -> bool:
        return bool(self.suggestions) and self.confidence >= self.options.min_confidence

    @property
    def confidence_top(self) -> int:
        return min(len(self.suggestions), CONFIDENCE_TOP)


def epoch(moment: datetime | None) -> int:
    return int((moment or datetime.now(timezone.utc)).timestamp())


def resolve_at(repo: Repo, history: History, at: str | None) -> str:
    sha = repo.resolve(at or "HEAD")
    if not history.commits([sha]):
        raise NotFoundError(f"revision {at or 'HEAD'} ({sha[:12]}) is not in the index; run "
                            f"`rcahook index --rev {at or 'HEAD'}` (or drop --no-update)")
    return sha


# -- the query ------------------------------------------------------------------------------

def _simple_name(function: str) -> str | None:
    """`pkg.Class.method`, `ns::fn`, `main.(*T).m` -> the definition's own name."""
    name = re.split(r"::|\.", function.strip())[-1].strip("()*& ")
    return None if not name or _NOT_A_NAME.search(name) else name


def _normalize_path(path: str) -> str:
    path = path.strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path


def prepare_query(repo: Repo, incident: Incident, at: str, config: Config, *, time: int,
                  warn: Callable[[str], None]) -> PreparedQuery:
    """Explicit paths, then stack frames, then service prefixes become the impacted paths.

    A service stays a directory prefix ("services/billing/"); `impacted_dir` rates a
    change by how close its files sit to it, and the owner share covers the whole prefix.
    """
    unknown = [s for s in incident.services if s not in config.services]
    if unknown:
        known = ", ".join(sorted(config.services)) or "none (add [tool.rcahook.services] to pyproject.toml " \
                                                     "or a .rcahook.toml)"
        raise BadInputError(f"unknown service{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                            f"known services: {known}")
    tree: list[str] = []
    if incident.impacted_paths or incident.stack_trace:
        tree = [e.path for e in repo.list_tree(at)]
    files = set(tree)
    sources: dict[str, str] = {}
    if incident.impacted_paths:
        dirs = {p.rsplit("/", i)[0] + "/" for p in files for i in range(1, p.count("/") + 1)}
        for raw in incident.impacted_paths:
            path = _normalize_path(raw)
            if path not in files and path.rstrip("/") + "/" in dirs:
                path = path.rstrip("/") + "/"
            elif path not in files:
                warn(f"impacted path {raw} is not in the repository at {at[:12]}; kept as given")
            sources.setdefault(path, "given")
    frames: list[Frame] = []
    functions: list[str] = []
    trace = parse_capped(incident.stack_trace) if incident.stack_trace else None
    if trace is not None:
        parsed = trace.frames
        if trace.note:
            warn(trace.note)
        frames = map_frames(parsed, tree)
        if not parsed:
            warn("no stack frame recognised in the stack trace; ranking without it")
        elif not frames:
            warn(f"none of the {len(parsed)} stack frame(s) is in this repository at {at[:12]} "
                 f"(first: {parsed[0].path or parsed[0].raw.strip()[:60]}); ranking without them")
        for f in frames[:MAX_FRAMES]:
            # map_frames keeps only the frames it mapped onto a repository path
            sources.setdefault(f.path, "stack frame")  # type: ignore[arg-type]
            name = _simple_name(f.function) if f.function else None
            if name and name not in functions:
                functions.append(name)
    for service in incident.services:
        for prefix in config.services[service]:
            prefix = _normalize_path(prefix)
            if prefix not in files:
                prefix = prefix.rstrip("/") + "/"
            sources.setdefault(prefix, f"service {service}")
    query = Query(title=incident.title, description=incident.description, time=time,
                  impacted_paths=tuple(sources), functions=tuple(functions))
    return PreparedQuery(query, tuple(frames), sources, trace)


def window_for(history: History, at: str, incident: Incident, *, until: int, hide: str | None = None) -> SearchSpace:
    """The `window` newest commits up to the incident, or those of the `since` before it;
    with `hide`, those reachable from `at` but not from `hide`, up to the incident."""
    if hide is not None:
        shas = search_space(history, at, until=until, hide=hide)
        if not shas:
            raise EmptySearchSpaceError(
                f"no commit of {at[:12]} that {hide[:12]} lacks was committed before {_iso(until)}; "
                "check the deploys recorded for this environment and the incident's time")
        return SearchSpace(shas, at, until, history.commit(hide).committer_time, None, hide)
    if incident.window is not None:
        shas = search_space(history, at, window=incident.window)
        if history.commits(shas[:1]) and history.commits(shas[:1])[0].committer_time > until:
            shas = search_space(history, at, until=until)[: incident.window]
        space = SearchSpace(shas, at, until, None, incident.window)
    else:
        since = until - int((incident.since or DEFAULT_SINCE).total_seconds())
        space = SearchSpace(search_space(history, at, since=since, until=until), at, until, since, None)
    if not space.shas:
        what = (f"the {incident.window} newest commits before {_iso(until)}" if space.window else
                f"the {_duration(until - (space.since or until))} before {_iso(until)}")
        raise EmptySearchSpaceError(
            f"no commit reachable from {at[:12]} was committed in {what}; widen the search with "
            f"--since (e.g. 30d) or --window N, or check --time and --at")
    return space


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _duration(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    return f"{days} days" if not rest else f"{seconds // 3600} hours"


# -- the code graph -------------------------------------------------------------------------

def load_hints(history: History, prepared: PreparedQuery) -> GraphHints:
    """Names the incident mentions, plus code-graph hops from them and from the definitions
    in impacted files, when the index has a code graph."""
    # loading a graph costs about a second on a large repository: only when it can answer
    if not needs_graph(prepared.query) or not store.get_meta(history.conn, "graph_rev"):
        return graph_hints(prepared.query, None)
    from rcahook.codegraph.local import neighbourhood, terms_ready

    # The indexed graph (HEAD when `rcahook index` last ran): a graph at an older --at would
    # have to be parsed now, and distances change little between nearby revisions. Only the
    # files within GRAPH_DEPTH edges of the incident are read (the same distances as the
    # whole graph, at a cost that follows them, not the tree); an index from before the
    # graph's terms existed is read whole until `rcahook index` adds them.
    if not terms_ready(history.conn):
        from rcahook.codegraph.graph import load_graph

        return graph_hints(prepared.query, load_graph(history.conn))
    query = prepared.query
    graph = neighbourhood(history.conn, names=graph_hints_from_query(query).named,
                          paths=[p for p in query.impacted_paths if not p.endswith("/")], depth=GRAPH_DEPTH)
    return graph_hints(query, graph)



# -- ranking --------------------------------------------------------------------------------

@contextmanager
def _model_progress(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("ranking with the model (prompts)", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def run_ranking(repo: Repo, history: History, prepared: PreparedQuery, space: SearchSpace,
                options: Options, *, index_dir: Path | None, hints: GraphHints,
                warn: Callable[[str], None], progress: bool = False) -> tuple[Ranking, str | None, str | None]:
    """The ranking, the model's name, and why the model's ranking was not used (None if it was).

    A model server that cannot be reached, or any model whose answer cannot be used (null
    text, NaN logprobs, labels that are not among the candidates: ModelAnswerError), gives
    the `features` ranking instead, unless `strict`: a ranking never claims to be the
    model's when the model had no say in it.
    """
    weights = load_weights(index_dir)
    config = RetrievalConfig(max_candidates=options.max_candidates)

    def ranked(spec: RankerSpec) -> Ranking:
        with _model_progress(progress and spec.name != "features") as report:
            return rank(history, prepared.query, space.shas, space.at, spec=spec, graph=hints,
                        diff_text=repo.diff_text, config=config, progress=report)

    if options.ranker == "features":
        ignored = [name for name, value in (("--llm-url", options.llm_url), ("--model", options.model),
                                            ("--llm-model", options.llm_model)) if value]
        if ignored:
            warn(f"{' and '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} ignored with --ranker features; "
                 "use --ranker election or logprob")
        return ranked(RankerSpec("features", weights=weights)), None, None
    from rcahook.llm.backend import load_backend

    try:
        backend = load_backend(options.model, llm_url=options.llm_url, llm_model=options.llm_model,
                               connect_timeout=options.llm_connect_timeout, timeout=options.llm_timeout)
        return ranked(RankerSpec(options.ranker, weights=weights, backend=backend,
                                 llm_top=options.llm_top)), backend.name, None
    except ModelServerError as e:
        if options.strict:
            raise
        return ranked(RankerSpec("features", weights=weights)), None, str(e)


# -- the investigation ------------------------------------------------------------------------

def investigate(repo: Repo, history: History, incident: Incident, options: Options, *, config: Config,
                index_dir: Path | None, warn: Callable[[str], None] = lambda m: None,
                progress: bool = False, scope: Scope | None = None) -> Result:
    started = _time.perf_counter()
    warnings: list[str] = []

    def note(message: str) -> None:
        warnings.append(message)
        warn(message)

    at = resolve_at(repo, history, scope.at if scope else incident.at)
    until = epoch(incident.time)
    prepared = prepare_query(repo, incident, at, config, time=until, warn=note)
    space = window_for(history, at, incident, until=until, hide=scope.hide if scope else None)
    hints = load_hints(history, prepared)
    t0 = _time.perf_counter()
    ranking, model, fallback_reason = run_ranking(repo, history, prepared, space, options, index_dir=index_dir,
                                                  hints=hints, warn=note, progress=progress)
    if fallback_reason:  # one line on stderr; the report has it once, as ranker.fallback_reason
        warn(f"{fallback_reason}; ranked with the features ranker instead (--strict makes this an error)")
    shown = ranking.candidates[: options.top]
    probabilities = [c.probability for c in shown[:CONFIDENCE_TOP]]
    raw = raw_confidence(probabilities)
    calibration = load_calibration(ranking.ranker, index_dir)
    signals = signals_for(ranking.candidates, title=prepared.query.title,
                          background=ranking.retrieval.background, mass=raw)
    confidence = calibration(signals) if shown else 0.0
    mass = sum(probabilities)
    suggestions = [
        Suggestion(rank=i + 1, candidate=c, share=confidence * c.probability / mass if mass else 0.0,
                   age=relative_age(c.commit.committer_time, until),
                   reasons=reasons_for(c, prepared.query, sources=prepared.sources))
        for i, c in enumerate(shown)
    ]
    position = {sha: i for i, sha in enumerate(space.shas)}
    oldest = max(shown, key=lambda c: position.get(c.sha, -1), default=None)
    parents = history.parents(oldest.sha) if oldest else ()
    weights_source = "repository" if index_dir and (index_dir / WEIGHTS_FILE).is_file() else "default"
    seconds = {"prepare": t0 - started, **ranking.seconds, "total": _time.perf_counter() - started}
    return Result(incident, prepared, space, ranking, options.ranker, model, weights_source, confidence, raw,
                  str(calibration.info.get("source", "fitted")), options, suggestions,
                  parents[0] if parents else None, warnings, seconds, signals, fallback_reason)
