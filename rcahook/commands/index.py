from __future__ import annotations

from rcahook.commands.common import index_path, open_repo, say
from rcahook.errors import BadInputError
from rcahook.index import store
from rcahook.index.indexer import TOUCHED_DEPTH, index_repository
from rcahook.progress import Progress


def parse_depth(value: str) -> int | None:
    """--touched-depth: a number of commits, or None for 'all'."""
    if value.strip().lower() == "all":
        return None
    try:
        depth = int(value)
    except ValueError:
        depth = -1
    if depth < 0:
        raise BadInputError(f"--touched-depth {value!r}: expected a number of commits (0 or more) or 'all'")
    return depth


def run(*, repo: str, db: str | None, revs: tuple[str, ...], graph: bool, at: str | None,
        jobs: int | None, quiet: bool, touched_depth: str = str(TOUCHED_DEPTH)) -> int:
    depth = parse_depth(touched_depth)
    r = open_repo(repo)
    result = index_repository(r, index_path(r, db), revs=revs, graph=graph, graph_at=at, jobs=jobs,
                              touched_depth=depth,
                              progress=Progress(enabled=False if quiet else None),
                              say=(lambda m: None) if quiet else say)
    for note in result.notes:
        say(note)
    old = store.default_db_path(r.git_dir)
    if not db and r.git_dir != r.common_dir and old.exists():
        # rcahook once kept an index per linked worktree; they share the main one now
        say(f"note: {old} is an index this worktree no longer uses (all worktrees share {result.db_path}); "
            "delete it to reclaim the space")
    if not quiet:
        print(f"indexed {result.new_commits} new commit(s) in {result.seconds:.1f}s; "
              f"{result.total_commits} in {result.db_path}")
        print(f"culprit links: {result.links_total} ({result.links_unresolved} unresolved)")
        if result.unavailable_changes:
            print(f"{result.unavailable_changes} file change(s) unavailable (missing blobs, e.g. a partial clone): "
                  "paths recorded, lines and definitions not")
        if graph:
            print(f"code graph: {result.graph_files} files at {result.graph_rev[:12] if result.graph_rev else '-'};"
                  f" touched definitions recorded for {result.touched_commits} new commit(s)")
            if result.touched_pending:
                print(f"touched definitions of {result.touched_pending} older commit(s) left for later: computed "
                      "when a command needs them (--touched-depth all records them now)")
    return 0
