"""What most commands share: opening the repository, the index and the output."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from rcahook.errors import BadInputError
from rcahook.index import store
from rcahook.index.gitrepo import Repo
from rcahook.index.reader import History
from rcahook.progress import Progress

if TYPE_CHECKING:
    from rich.console import Console

    from rcahook.rca.incident import Incident


def open_repo(path: str) -> Repo:
    return Repo(path)


def index_path(repo: Repo, db: str | None) -> Path:
    # git's common directory: linked worktrees share one index (and one feedback store)
    return Path(db) if db else store.default_db_path(repo.common_dir)


def say(message: str) -> None:
    print(f"rcahook: {message}", file=sys.stderr)


def open_history(repo: Repo, db: str | None, *, update: bool = False, graph: bool = True,
                 quiet: bool = False) -> History:
    """The index, brought up to date first when `update` (incremental: usually instant).

    An index this process cannot write (a read-only repository) is not updated but opened
    read-only as it is (`History.read_only`); the command says so once (note_read_only).
    """
    path = index_path(repo, db)
    if update and store.write_problem(path) is None:
        from rcahook.index.indexer import index_repository
        index_repository(repo, path, graph=graph, progress=Progress(enabled=None if not quiet else False),
                         say=say)
    return History.open(path, repo=repo)  # the repository: touched definitions left for later are computed


def note_read_only(repo: Repo, db: str | None, *, index_not_updated: bool, saving: bool) -> bool:
    """One note for all that a read-only repository costs an investigation; returns whether
    the investigation can be saved (its state database is writable)."""
    from rcahook.rca import feedback

    lost = []
    problem = store.write_problem(index_path(repo, db)) if index_not_updated else None
    if index_not_updated:
        lost.append("used the index as it is, without updating it")
    state_problem = store.write_problem(feedback.state_path(repo.common_dir)) if saving else None
    if state_problem:
        lost.append("this investigation is not saved, so `rcahook feedback` cannot record a verdict on it")
    if lost:
        say(f"note: {problem or state_problem}: {'; '.join(lost)}")
    return saving and state_problem is None


def print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def console() -> Console:
    from rich.console import Console
    return Console(highlight=False, soft_wrap=False)


class IncidentFlags(TypedDict):
    """The incident flags of `investigate` and `bisect`, as incident_from_flags takes them."""

    title: str | None
    description: str | None
    time_: str | None
    at: str | None
    since: str | None
    window: int | None
    impacted_paths: tuple[str, ...]
    services: tuple[str, ...]
    stack_trace: str | None


def incident_from_flags(incident_file: str | None, *, title: str | None, description: str | None,
                        time_: str | None, at: str | None, since: str | None, window: int | None,
                        impacted_paths: tuple[str, ...], services: tuple[str, ...],
                        stack_trace: str | None) -> Incident:
    """The incident file, if any, with the flags laid over it (flags win)."""
    # here, not at the top: the pre-push scan imports this module and needs no incident (nor yaml)
    from rcahook.rca.incident import Incident, load_incident, merge, parse_duration, parse_time

    if since is not None and window is not None:
        raise BadInputError(f"--since {since} and --window {window} both given; use one: --since for an age, "
                            "--window for a number of recent commits")
    if window is not None and window < 1:
        raise BadInputError(f"--window must be a positive number of commits, got {window}")
    if title is not None and not title.strip():
        raise BadInputError("--title is empty; give a one-line summary of the incident")
    base = load_incident(incident_file) if incident_file else None
    if base is None:
        if title is None:
            raise BadInputError("no incident title: pass --title TEXT, or --incident FILE with a 'title' field")
        base = Incident(title=title.strip())
    return merge(base,
                 title=title.strip() if title else None, description=description,
                 time=parse_time(time_) if time_ else None, at=at,
                 since=parse_duration(since) if since else None, window=window,
                 impacted_paths=impacted_paths, services=services,
                 stack_trace=_read_trace(stack_trace) if stack_trace else None)


def _read_trace(source: str) -> str:
    from rcahook.rca.stacktrace import read_capped

    if source == "-":
        return read_capped(sys.stdin)
    try:
        with open(source, encoding="utf-8", errors="replace") as f:
            return read_capped(f)  # a few MB at most: see rcahook.rca.stacktrace.MAX_TRACE_CHARS
    except OSError as e:
        raise BadInputError(f"--stack-trace {source}: cannot read it ({e.strerror}); pass a file with the "
                            "trace, or - to read it from stdin") from None
