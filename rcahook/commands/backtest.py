"""`rcahook backtest`: replay real history (protocol v1, or v1.1) and measure rankers against baselines."""
from __future__ import annotations

import importlib
import os
from pathlib import Path

from rcahook.commands.common import index_path, open_history, open_repo, print_json, say
from rcahook.errors import BadInputError, NotFoundError
from rcahook.index.gitrepo import Repo
from rcahook.progress import Progress


def run(*, repo: str, db: str | None, window: int, track: str, rankers: tuple[str, ...], model: str | None,
        llm_url: str | None, llm_model: str | None, llm_top: int, limit: int | None, sample: int | None,
        seed: int, task: str, split: str | None, output: str | None, resume: bool, fmt: str, report: str | None,
        no_update: bool, llm_timeout: float | None = None, llm_connect_timeout: float | None = None,
        null_titles: str | None = None, jobs: int | None = None, protocol: str = "1",
        blend_weight: float = 0.0, shuffles: int = 1) -> int:
    for name, value in (("--window", window), ("--limit", limit), ("--sample", sample), ("--llm-top", llm_top),
                        ("--jobs", jobs)):
        if value is not None and value < 1:
            raise BadInputError(f"{name} {value}: expected a positive number")
    if task == "risk" and protocol != "1":
        raise BadInputError(f"--protocol {protocol} is for --task rca; the risk track labels culprits by protocol v1 "
                            "(drop --protocol)")
    r = open_repo(repo)
    # Indexed as `investigate` indexes, so the touched definitions the features use are there;
    # the HEAD code graph this also builds is never given to a replay (it postdates F^).
    history = open_history(r, db, update=not no_update, quiet=fmt == "json")
    try:
        # every commit's touched definitions now, in parallel, so the replay workers only read
        history.ensure_touched(jobs=jobs, progress=Progress(enabled=False if fmt == "json" else None))
        if task == "risk":
            return _run_risk(r, history, fmt=fmt, report=report, output=output, split=split)
        return _run_rca(r, history, db=db, window=window, track=track, rankers=rankers, model=model,
                        llm_url=llm_url, llm_model=llm_model, llm_top=llm_top, limit=limit, sample=sample,
                        seed=seed, output=output, resume=resume, fmt=fmt, report=report,
                        llm_timeouts=(llm_connect_timeout, llm_timeout), null_titles=null_titles,
                        jobs=jobs or os.cpu_count() or 1, protocol=protocol, blend_weight=blend_weight,
                        shuffles=shuffles)
    finally:
        history.close()


def _run_risk(r: Repo, history, *, fmt: str, report: str | None, output: str | None,
              split: str | None) -> int:
    try:
        risk = importlib.import_module("rcahook.backtest.risk")
    except ModuleNotFoundError as e:
        if e.name != "rcahook.backtest.risk":
            raise
        raise BadInputError("--task risk: the risk backtest (rcahook.backtest.risk) is not part of this "
                            "rcahook yet; use --task rca") from None
    return risk.run_risk(repo=r, history=history, fmt=fmt, report=report, output=output, split=split)


def _run_rca(r: Repo, history, *, db: str | None, window: int, track: str, rankers: tuple[str, ...],
             model: str | None, llm_url: str | None, llm_model: str | None, llm_top: int, limit: int | None,
             sample: int | None, seed: int, output: str | None, resume: bool, fmt: str,
             report: str | None, llm_timeouts: tuple[float | None, float | None] = (None, None),
             null_titles: str | None = None, jobs: int = 1, protocol: str = "1", blend_weight: float = 0.0,
             shuffles: int = 1) -> int:
    from rcahook.backtest.report import build_document, print_text, write_report
    from rcahook.backtest.run import LLM_RANKERS, Settings, parse_rankers, read_null_titles, run_backtest

    if null_titles is not None and track != "null":
        raise BadInputError(f"--null-titles is for --track null, not --track {track}; add --track null or drop it")
    titles = read_null_titles(Path(null_titles)) if null_titles is not None else None

    parsed = parse_rankers(rankers)
    if not set(parsed) & set(LLM_RANKERS):
        ignored = [name for name, value in (("--llm-url", llm_url), ("--model", model), ("--llm-model", llm_model))
                   if value]
        if ignored:
            say(f"warning: {' and '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} ignored without an "
                "LLM ranker; add --ranker election, logprob or blend")
    if model is None and llm_url is None and set(parsed) & set(LLM_RANKERS):
        # The model is the user's (environment, then their own config), as for investigate;
        # never the repository's: a backtest replays history, it does not trust it.
        from rcahook.config import user_settings

        user = user_settings()
        model, llm_url = user.model, user.llm_url
        if llm_model is None and llm_url is not None:
            llm_model = user.llm_model
    settings = Settings(window=window, track=track, rankers=parsed, llm_top=llm_top,
                        model=model, llm_url=llm_url, llm_model=llm_model, limit=limit, sample=sample, seed=seed,
                        null_titles=null_titles, blend_weight=blend_weight, shuffles=shuffles)
    head = r.resolve("HEAD")
    try:
        history.commit(head)
    except NotFoundError:
        raise NotFoundError(f"HEAD {head[:12]} is not in the index at {index_path(r, db)}; run without "
                            "--no-update (or `rcahook index`) first") from None
    index_dir = index_path(r, db).parent
    # a v1.1 run has a file of its own, so it never overwrites (or refuses to resume) a v1 one
    suffix = "" if protocol == "1" else f"-v{protocol}"
    out = Path(output) if output else index_dir / f"backtest-{r.slug()}-{track}-{window}{suffix}.jsonl"

    def backend():
        from rcahook.config import user_settings
        from rcahook.llm.backend import load_backend

        connect, wait = llm_timeouts  # flags, else the user's config (never the repository's)
        user = user_settings()
        return load_backend(model, llm_url=llm_url, llm_model=llm_model,
                            connect_timeout=connect if connect is not None else user.llm_connect_timeout,
                            timeout=wait if wait is not None else user.llm_timeout)

    def graph_at(rev: str):
        from rcahook.codegraph.graph import graph_at
        return graph_at(history.conn, r, rev)

    result = run_backtest(history, repository=str(r.workdir or r.git_dir), head=head, settings=settings,
                          index_dir=index_dir, output=out, resume=resume, null_titles=titles, diff_text=r.diff_text,
                          progress=Progress(), load_backend=backend, graph_at=graph_at, jobs=jobs,
                          protocol=protocol)
    doc = build_document(result)
    if report:
        for path in write_report(doc, Path(report)):
            say(f"wrote {path}")
    if fmt == "json":
        print_json(doc)
    else:
        print_text(doc)
    return 0
