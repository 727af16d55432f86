"""The repositories a service serves: investigations on them, and their indexes kept fresh.

Reads never wait for an update, and never see half of one:

- each investigation opens its own connection to the index and reads it in one SQLite
  read transaction (WAL: a snapshot, whatever a writer commits meanwhile);
- by default it investigates `head`, the revision the last *completed* update indexed, so
  the commits it ranks are complete in every snapshot (an update appends commits, links and
  touched definitions in several transactions; none of them changes an indexed ancestor);
- updates run one at a time per service, in a child process (spawned, not forked: the
  server has threads) that calls rcahook.index.indexer.index_repository with its own connection;
  the thread that waits for it is the only one that moves `head`.

Model settings come from the operator only (flags, the environment, their own config),
never from a request and never from a served repository's config, trusted or not.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import sqlite3
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rcahook.config import Config, load_config, user_settings
from rcahook.errors import NotFoundError, RcahookError
from rcahook.index import reader, store
from rcahook.index.gitrepo import Repo
from rcahook.index.reader import History
from rcahook.rca import feedback as fb
from rcahook.rca.incident import Incident
from rcahook.rca.investigate import Result, epoch
from rcahook.serve import deploys as dp

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

log = logging.getLogger("rcahook.serve")


class NotReadyError(RcahookError):
    """The repository has no usable index yet (the first update is still running)."""

    exit_code = 13


@dataclass(frozen=True)
class ServeOptions:
    """The operator's investigation settings (flags of `rcahook serve`); None: config, then default."""
    ranker: str | None = None
    model: str | None = None
    llm_url: str | None = None
    llm_model: str | None = None
    llm_top: int = 40
    llm_timeout: float | None = None
    llm_connect_timeout: float | None = None
    max_candidates: int | None = None
    min_confidence: float | None = None
    top: int = 5


@dataclass
class ServedRepo:
    name: str
    path: Path  # as given to --repo, resolved
    index_path: Path
    state_path: Path
    git_dir: Path  # git's common directory: what investigations record as their repository
    head: str | None = None  # newest revision a completed update indexed; investigations default to it
    updating: bool = False
    last_update: float | None = None
    last_error: str | None = None
    commits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, name: str, path: str) -> ServedRepo:
        repo = Repo(path)
        common = repo.common_dir
        return cls(name, Path(path).resolve(), store.default_db_path(common), fb.state_path(common), common)

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "head": self.head, "commits": self.commits,
                "updating": self.updating, "last_update": fb.iso(int(self.last_update)) if self.last_update else None,
                "error": self.last_error}


def _index_child(path: str, db: str, out: Connection) -> None:
    """In a spawned process: bring the index up to date (one job: the service keeps the CPU)."""
    from rcahook.index.indexer import index_repository

    try:
        repo = Repo(path)
        head = repo.resolve("HEAD")
        result = index_repository(repo, Path(db), graph=True, jobs=1)
        out.send(("ok", head, result.total_commits))
    except RcahookError as e:
        out.send(("error", str(e), 0))
    except BaseException as e:  # noqa: BLE001 (reported to the parent, which logs it)
        out.send(("error", f"{type(e).__name__}: {e}", 0))


class Updater:
    """Keeps every served index up to date: at start, every `interval` seconds, and when woken
    (a deploy of a sha the index lacks). One update at a time for the whole service."""

    def __init__(self, repos: list[ServedRepo], *, interval: float):
        self.repos, self.interval = repos, interval
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="rcahook-index-updater", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for served in self.repos:
                if self._stop.is_set():
                    break
                self.update(served)
            self._wake.wait(self.interval if self.interval > 0 else None)
            self._wake.clear()

    def update(self, served: ServedRepo) -> None:
        """One update, waited for here (what the background thread and the tests call)."""
        problem = store.write_problem(served.index_path)
        if problem:
            served.last_error = f"index not updated: {problem}"
            return
        with self._lock:
            served.updating = True
            ctx = multiprocessing.get_context("spawn")
            receive, send = ctx.Pipe(duplex=False)
            child = ctx.Process(target=_index_child, args=(str(served.path), str(served.index_path), send),
                                name=f"rcahook-index-{served.name}", daemon=True)
            try:
                child.start()
                send.close()
                try:
                    status, value, commits = receive.recv()
                except EOFError:
                    status, value, commits = "error", "the indexing process died", 0
                child.join()
            finally:
                served.updating = False
                receive.close()
        if status == "ok":
            with served.lock:
                served.head, served.commits, served.last_error = value, commits, None
                served.last_update = time.time()
        else:
            served.last_error = value
            log.warning("updating the index of %s failed: %s", served.name, value)


def initial_head(served: ServedRepo) -> None:
    """Before the first update completes: HEAD if the index has it, else the newest tip
    recorded by the last complete `rcahook index` (an interrupted one records none)."""
    try:
        history = History.open(served.index_path)
    except RcahookError:
        return  # no index yet: investigations wait for the first update (NotReadyError)
    try:
        head = Repo(served.path).resolve("HEAD")
        tips = history.commits(json.loads(store.get_meta(history.conn, "tips", "[]")))
        if history.commits([head]):
            served.head = head
        elif tips:
            served.head = max(tips, key=lambda c: c.committer_time).sha
        served.commits = history.count()
    finally:
        history.close()


# -- investigations ---------------------------------------------------------------------------

def operator_config(repo: Repo, at: str | None) -> Config:
    """The repository's config for what it may set (services, thresholds, commit-url), with
    the model settings replaced by the operator's own (environment and user config)."""
    config = load_config(repo.workdir, read_head=lambda name: repo.read_path(at or "HEAD", name),
                         git_dir=repo.git_dir)
    mine = user_settings()
    return dataclasses.replace(config, model=mine.model, llm_url=mine.llm_url, llm_model=mine.llm_model,
                               ignored=())


_model_lock = threading.Lock()  # LLM rankers hold a model in memory: one such investigation at a time


def run_investigation(served: ServedRepo, incident: Incident, options: ServeOptions, *,
                      environment: str | None, base_url: str, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Investigate, save for feedback, and return the document `investigate --format json`
    prints, with its id, its page's URL, the repository name, the deploys used and, for an
    alert, where it came from (`source`: provider and link)."""
    from rcahook.rca import report
    from rcahook.rca.investigate import investigate, options_from

    repo = Repo(served.path)
    with served.lock:
        head = served.head
    if incident.at is None and head is None:
        raise NotReadyError(f"the index of {served.name} is being built; try again in a minute "
                            "(GET /api/health shows when it is ready)")
    config = operator_config(repo, incident.at or head)
    opts = options_from(config, ranker=options.ranker, model=options.model, llm_url=options.llm_url,
                        llm_model=options.llm_model, llm_top=options.llm_top,
                        max_candidates=options.max_candidates, min_confidence=options.min_confidence,
                        strict=False, top=options.top, llm_timeout=options.llm_timeout,
                        llm_connect_timeout=options.llm_connect_timeout)
    # one "now" for the deploys and the window alike
    incident = dataclasses.replace(incident, time=incident.time or datetime.now(timezone.utc))
    known: list[dp.Deploy] = []
    env: str | None = None
    if incident.at is None and served.state_path.exists():  # an `at` given says what was running
        state = fb.open_state(served.state_path, create=False)
        try:
            env = dp.environment_for(state, environment, incident.services)
            known = dp.deploys(state, env) if env else []
        finally:
            state.close()
    incident = dataclasses.replace(incident, at=incident.at or head)
    history = History.open(served.index_path, repo=repo)
    try:
        with store.read_snapshot(history.conn):  # one snapshot of the index for the whole investigation
            scope = dp.scope_for(history, known, environment=env, until=epoch(incident.time)) if known and env else None
            if scope is not None:
                incident = dataclasses.replace(incident, at=scope.last.sha)
            with _model_lock if opts.ranker != "features" else nullcontext():
                result = investigate(repo, history, incident, opts, config=config,
                                     index_dir=served.index_path.parent,
                                     scope=scope.scope if scope else None)
            for note in scope.notes if scope else []:
                result.warnings.append(note)
            live = dp.deployed_at(history, scope, [s.candidate.sha for s in result.suggestions]) if scope else {}
    finally:
        history.close()
    created = int(time.time())
    doc = report.to_json(result, inv_id=None, created=created)
    doc["search_space"]["deploys"] = scope.to_json() if scope else None
    for s in doc["suggestions"]:
        s["deployed_at"] = live.get(s["sha"])
    doc["source"] = source
    doc["id"] = save(served, doc, result, created)
    return with_links(doc, served, base_url)


def save(served: ServedRepo, doc: dict[str, Any], result: Result, created: int) -> str:
    from rcahook.rca import report

    return report.save_result(served.state_path, repo=str(served.git_dir), doc=doc, result=result, created=created)


def with_links(doc: dict[str, Any], served: ServedRepo, base_url: str) -> dict[str, Any]:
    return {**doc, "repository": served.name, "url": f"{base_url}/investigations/{doc['id']}"}


def saved_document(saved: fb.SavedInvestigation) -> dict[str, Any]:
    """A saved investigation as the document `investigate --format json` printed."""
    results = {k: v for k, v in saved.results.items() if k != "candidates"}
    return {"schema_version": results.pop("schema_version", None), "id": saved.id,
            "created": results.pop("created", fb.iso(saved.created)), "incident": saved.incident, **results}


def find_saved(repos: list[ServedRepo], inv_id: str, repository: str | None = None
               ) -> tuple[ServedRepo, fb.SavedInvestigation, list[fb.Verdict]]:
    """The investigation with this id in the repositories served (ids are per repository;
    the first that has it, or the one named)."""
    for served in repos:
        if repository and served.name != repository or not served.state_path.exists():
            continue
        conn = fb.open_state(served.state_path, create=False)
        try:
            try:
                saved = fb.get_investigation(conn, inv_id)
            except NotFoundError:
                continue
            return served, saved, fb.verdicts(conn, saved.id)
        finally:
            conn.close()
    raise NotFoundError(f"no investigation {inv_id!r} in {repository or 'the repositories served'}; "
                        "GET /api/investigations lists them")


def list_saved(repos: list[ServedRepo], *, limit: int) -> list[tuple[ServedRepo, fb.SavedInvestigation,
                                                                     list[fb.Verdict]]]:
    out = []
    for served in repos:
        if not served.state_path.exists():
            continue
        try:
            conn = fb.open_state(served.state_path, create=False)
        except sqlite3.Error:
            continue
        try:
            verdicts: dict[str, list[fb.Verdict]] = {}
            for v in fb.verdicts(conn):
                verdicts.setdefault(v.investigation_id, []).append(v)
            out += [(served, s, verdicts.get(s.id, [])) for s in fb.list_investigations(conn)[:limit]]
        finally:
            conn.close()
    out.sort(key=lambda t: -t[1].created)
    return out[:limit]


def indexed(served: ServedRepo, sha: str) -> bool:
    try:
        history = History.open(served.index_path)
    except RcahookError:
        return False
    try:
        return bool(history.commits([sha]))
    finally:
        history.close()


def resolve_commit(served: ServedRepo, given: str) -> str:
    """A full sha for what a responder or a pipeline gave: the index first, then git."""
    return reader.resolve_commit(Repo(served.path), served.index_path, given, where=f"the repository {served.name}")
