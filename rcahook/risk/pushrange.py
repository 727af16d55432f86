"""Which commits a push sends, and bringing the index up to them before they are scanned.

`resolve_range` reads what the scan was given (a range, --from/--to, or what a pre-push or
pre-commit hook passes) and returns the commits to assess, newest first: a fast-forward
sends from..to; a new branch, a force push or a base this clone lacks sends what no
remote-tracking branch has, capped at the newest MAX_UNPUSHED. `update_index` indexes
up to the pushed tip (incremental). Light: on the pre-push hook's path.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rcahook.errors import BadInputError, RcahookError
from rcahook.index import store

if TYPE_CHECKING:
    from rcahook.index.gitrepo import Repo

ZERO = "0" * 40  # what git passes for a branch that does not exist on one side
MAX_UNPUSHED = 100  # a new branch (or a force push) scans at most this many of its newest commits


@dataclass(frozen=True)
class ScanRange:
    shas: tuple[str, ...]  # newest first, merges included (assess leaves them out)
    description: str
    to: str | None  # the newest commit, None for a deleted branch
    capped: bool = False


def is_zero(rev: str | None) -> bool:
    return rev is not None and rev.strip("0") == "" and len(rev) >= 7


def _unpushed(r: Repo, to_sha: str, remote: str | None) -> tuple[list[str], str]:
    """Commits reachable from to_sha and from no remote-tracking branch (of `remote`, when it has some)."""
    refs = [(name, sha) for name, sha in r.default_tips() if name.startswith("refs/remotes/")]
    mine = [(n, s) for n, s in refs if remote and n.startswith(f"refs/remotes/{remote}/")]
    chosen = mine or refs
    where = f"{remote}'s branches" if mine else "any remote-tracking branch"
    hide = [s for _, s in chosen]
    # by time first, which streams: a new branch of a long history (or a clone without any
    # remote-tracking branch) costs the cap, not the whole history (issue 11)
    if hide:
        newest = list(itertools.islice(r.walk([to_sha], hide=hide, topological=False), MAX_UNPUSHED + 1))
    else:  # libgit2's date-order walk still took 8 s at 1M commits whose clocks go backwards
        newest = r.newest_ancestors(to_sha, MAX_UNPUSHED + 1)
    if len(newest) > MAX_UNPUSHED:
        return newest, where
    return list(r.walk([to_sha], hide=hide)), where  # few: the usual order, children first


def resolve_range(r: Repo, *, range_: str | None, from_: str | None, to: str | None, hook: str | None,
                  remote: str | None) -> ScanRange:
    if hook == "pre-commit-framework":
        # pre-commit >= 2.2 names them so; older releases used SOURCE/ORIGIN
        from_ = from_ or os.environ.get("PRE_COMMIT_FROM_REF") or os.environ.get("PRE_COMMIT_SOURCE") or None
        to = to or os.environ.get("PRE_COMMIT_TO_REF") or os.environ.get("PRE_COMMIT_ORIGIN") or None
        remote = remote or os.environ.get("PRE_COMMIT_REMOTE_NAME") or None
    if range_:
        if from_ or to:
            raise BadInputError(f"RANGE {range_!r} and --from/--to both given; use one or the other")
        if "..." in range_:
            raise BadInputError(f"RANGE {range_!r}: symmetric ranges are not supported; use A..B")
        if ".." not in range_:
            sha = r.resolve(range_)
            return ScanRange((sha,), sha[:12], sha)
        from_, _, to = range_.partition("..")
        from_, to = from_ or None, to or "HEAD"
        if from_ is None:
            raise BadInputError(f"RANGE {range_!r}: give the base before '..' (e.g. origin/main..HEAD)")
    if is_zero(to):
        return ScanRange((), "deleted branch", None)
    to_sha = r.resolve(to or "HEAD")
    from_sha = _resolve_or_none(r, from_) if from_ and not is_zero(from_) else None
    if from_sha is not None:
        if not list(r.walk([from_sha], hide=[to_sha])):  # from is an ancestor of to: a fast-forward
            return ScanRange(tuple(r.walk([to_sha], hide=[from_sha])), f"{from_sha[:12]}..{to_sha[:12]}", to_sha)
        kind = "force push"
    else:
        # no base, a new branch (all zeros), or a base this clone does not have
        kind = "new branch" if is_zero(from_) else "unknown base" if from_ else "unpushed"
    shas, where = _unpushed(r, to_sha, remote)
    capped = len(shas) > MAX_UNPUSHED
    return ScanRange(tuple(shas[:MAX_UNPUSHED]), f"{kind}: {to_sha[:12]} minus {where}", to_sha, capped)


def _resolve_or_none(r: Repo, rev: str) -> str | None:
    try:
        return r.resolve(rev)
    except RcahookError:
        return None


def update_index(r: Repo, path: Path, *, to_sha: str, graph: bool = False) -> None:
    """Incremental update: commits, culprit links and the touched definitions of new commits.

    The code graph at HEAD is left to `rcahook index` unless `graph`: re-loading it costs about
    a second on iproute2 even when nothing changed, and blast radius reads the indexed graph
    (through a cache of caller counts), which a few commits behind is just as good.
    """
    from rcahook.index.indexer import TOUCHED_DEPTH, index_repository
    from rcahook.progress import Progress

    revs = list(dict.fromkeys([sha for _, sha in r.default_tips()] + [to_sha]))
    index_repository(r, path, revs=revs, graph=graph, progress=Progress(enabled=False))
    if not graph:
        from rcahook.codegraph.touched import update_touched
        from rcahook.index.indexer import touched_now

        with store.index_lock(path):
            conn = store.open_index(path, create=False)
            try:
                # the new commits and the culprits, as `rcahook index` does: not all of history
                update_touched(conn, r, commits=touched_now(conn, TOUCHED_DEPTH), jobs=1)
            finally:
                conn.close()
