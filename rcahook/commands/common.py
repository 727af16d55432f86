"""What most commands share: opening the repository, the index and the output."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from rcahook import store
from rcahook.gitrepo import Repo
from rcahook.history import History
from rcahook.progress import Progress


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
        from rcahook.indexer import index_repository
        index_repository(repo, path, graph=graph, progress=Progress(enabled=None if not quiet else False),
                         say=say)
    return History.open(path)


def note_read_only(repo: Repo, db: str | None, *, index_not_updated: bool, saving: bool) -> bool:
    """One note for all that a read-only repository costs an investigation; returns whether
    the investigation can be saved (its state database is writable)."""
    from rcahook import feedback

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


def console():
    from rich.console import Console
    return Console(highlight=False, soft_wrap=False)
