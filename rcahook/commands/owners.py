from __future__ import annotations

import os
from pathlib import Path

from rcahook.commands.common import console, index_path, open_repo, print_json
from rcahook.errors import NotFoundError
from rcahook.index import owners as own
from rcahook.index.codeowners import CODEOWNERS_LOCATIONS
from rcahook.index.gitrepo import Repo
from rcahook.index.reader import History
from rcahook.untrusted import term_text


def run(*, path: str, repo: str, db: str | None, at: str, fmt: str) -> int:
    r = open_repo(repo)
    sha = r.resolve(at)
    history = History.open(index_path(r, db))
    try:
        rel = _repo_relative(r, path)
        kind = _kind(r, history, sha, rel, path)
        query = f"{rel}/" if kind == "directory" and rel else rel
        codeowners = own.load_codeowners(r, sha)
        rules = codeowners.rules_for(query) if codeowners else ()
        now = r.commit_time(sha)
        owners = own.history_owners(history, rel, now=now, limit=None, directory=kind == "directory")
    finally:
        history.close()
    data = {
        "path": rel, "kind": kind, "at": sha,
        "codeowners": {
            "file": codeowners.source if codeowners else None,
            "owners": list(codeowners.owners_of(query)) if codeowners else [],
            "rules": [rule.to_json() for rule in rules],
        },
        "history": {
            "now": now, "half_life_days": own.DEFAULT_WEIGHTING.half_life_days,
            "owners": [o.to_json() for o in owners],
        },
    }
    if fmt == "json":
        print_json(data)
    else:
        _print_text(data, at)
    return 0


def _repo_relative(r: Repo, path: str) -> str:
    """PATH as given is relative to the repository root, unless it names an existing file or
    directory of the checkout from the current directory (e.g. run inside a subdirectory)."""
    workdir = r.workdir
    if workdir is not None and not os.path.isabs(path) and os.path.exists(path):
        full = Path(os.path.abspath(path))
        root = Path(os.path.abspath(workdir))
        if full == root or root in full.parents:
            rel = full.relative_to(root).as_posix()
            return "" if rel == "." else rel
    if workdir is not None and os.path.isabs(path):
        try:
            rel = Path(path).resolve().relative_to(Path(workdir).resolve()).as_posix()
            return "" if rel == "." else rel
        except ValueError:
            pass
    return own.normalize_path(path)[0]


def _kind(r: Repo, history: History, sha: str, rel: str, given: str) -> str:
    """'file' or 'directory', from the tree at the revision, else from the history."""
    if rel == "":
        return "directory"
    wants_dir = given.endswith("/")
    if not wants_dir and r.read_path(sha, rel) is not None:
        return "file"
    low = f"{rel}/"
    if any(e.path.startswith(low) for e in r.list_tree(sha)):
        return "directory"
    if not wants_dir and own.path_was_changed(history, rel):
        return "file"
    if own.dir_was_changed(history, rel):
        return "directory"
    raise NotFoundError(
        f"{given!r} is not in the repository at {sha[:12]} and no indexed commit changed it; give a path "
        "relative to the repository root, try another --at revision, or run `rcahook index` if it is recent")


def _print_text(data: dict, at: str) -> None:
    from rich.table import Table
    from rich.text import Text

    out = console()
    shown = data["path"] + ("/" if data["kind"] == "directory" and data["path"] else "") or "(repository root)"
    out.print(f"[bold]{shown}[/bold] ({data['kind']}) at {at} ({data['at'][:12]})")
    co = data["codeowners"]
    if co["file"] is None:
        out.print(f"CODEOWNERS: none at this revision (looked for {', '.join(CODEOWNERS_LOCATIONS)})")
    elif not co["rules"]:
        out.print(f"CODEOWNERS ({co['file']}): no rule matches")
    else:
        out.print(f"CODEOWNERS ({co['file']}): "  # owners are the repository's text: no markup
                  + (term_text(" ".join(co["owners"])) or "(no owners: the rule unsets them)"), markup=False)
        for rule in co["rules"]:
            section = f" [{rule['section']}]" if rule["section"] else ""
            out.print(term_text(f"  {co['file']}:{rule['line']}{section}: {rule['pattern']} "
                                f"{' '.join(rule['owners'])}"), markup=False)
    owners = data["history"]["owners"]
    if not owners:
        out.print("history: no indexed commit changed it")
        return
    table = Table(title=f"who changes it (half-life {data['history']['half_life_days']:g} days)",
                  title_justify="left")
    for column, justify in (("name", "left"), ("email", "left"), ("share", "right"),
                            ("commits", "right"), ("last change", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]  # "left"/"right": rich's literals
    for o in owners[:20]:
        table.add_row(Text(term_text(o["name"])), Text(term_text(o["email"])), f"{o['share']:.0%}",
                      str(o["commits"]), _date(o["last_time"]))
    out.print(table)
    if len(owners) > 20:
        out.print(f"... and {len(owners) - 20} more (--format json lists everyone)")


def _date(ts: int) -> str:
    import datetime as dt
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d")
