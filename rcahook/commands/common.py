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
    return Path(db) if db else store.default_db_path(repo.git_dir)


def say(message: str) -> None:
    print(f"rcahook: {message}", file=sys.stderr)


def open_history(repo: Repo, db: str | None, *, update: bool = False, graph: bool = True,
                 quiet: bool = False) -> History:
    """The index, brought up to date first when `update` (incremental: usually instant)."""
    path = index_path(repo, db)
    if update:
        from rcahook.indexer import index_repository
        index_repository(repo, path, graph=graph, progress=Progress(enabled=None if not quiet else False),
                         say=say)
    return History.open(path)


def print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def console():
    from rich.console import Console
    return Console(highlight=False, soft_wrap=False)
