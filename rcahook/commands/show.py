from __future__ import annotations

import datetime as dt

from rcahook.commands.common import console, index_path, open_repo, print_json
from rcahook.errors import NotFoundError
from rcahook.index import owners as own
from rcahook.index.gitrepo import Repo
from rcahook.index.reader import Change, History, Link
from rcahook.untrusted import term_text

MAX_OWNER_FILES = 30  # owners of the first N changed files; a sweeping commit lists hundreds
HISTORY_OWNERS = 3


def run(*, commit: str, repo: str, db: str | None, fmt: str) -> int:
    r = open_repo(repo)
    sha = r.resolve(commit)
    history = History.open(index_path(r, db), repo=r)  # an old commit's touched definitions: computed now
    try:
        data = describe(r, history, sha, given=commit)
    finally:
        history.close()
    if fmt == "json":
        print_json(data)
    else:
        _print_text(data)
    return 0


def describe(r: Repo, history: History, sha: str, *, given: str | None = None) -> dict:
    """Everything `show` prints about one indexed commit, as JSON-ready data."""
    try:
        view = history.commit(sha)
    except NotFoundError:
        raise NotFoundError(
            f"commit {given or sha!r} ({sha[:12]}) is not in the index; run `rcahook index` (it indexes HEAD "
            f"and every branch; add `--rev {given or sha}` for a commit only a tag or other ref reaches)"
        ) from None
    touched = history.touched(sha)  # first: it may compute them (and mark them done)
    cname, cemail, coffset, shallow, defs_done = history.conn.execute(
        "SELECT committer_name, committer_email, committer_offset, shallow, defs_done FROM commits WHERE id=?",
        (view.id,)).fetchone()
    parents = [p for (p,) in history.conn.execute(
        "SELECT parent_sha FROM parents WHERE commit_id=? ORDER BY idx", (view.id,))]
    changes = history.changes(sha)
    as_fix, as_culprit = history.links_of(sha)
    subjects = {c.sha: c.subject for c in history.commits(
        [link.culprit for link in as_fix if link.culprit] + [link.fix for link in as_culprit])}
    return {
        "sha": sha,
        "parents": parents,
        "shallow": bool(shallow),
        "author": _person(view.author_name, view.author_email, view.author_time, view.author_offset),
        "committer": _person(cname, cemail, view.committer_time, coffset),
        "subject": view.subject,
        "body": view.body,
        "trailers": [list(t) for t in history.trailers(sha)],
        "stats": {"files": view.n_files, "added": view.added, "deleted": view.deleted},
        "files": [_change_json(c) for c in changes],
        "touched_done": bool(defs_done) or history.repo is not None,
        "touched": [
            {"path": t.path, "name": t.name, "qualname": t.qualname, "kind": t.kind, "side": t.side}
            for t in touched
        ],
        "owners": _owners(r, history, sha, view.committer_time, changes),
        "links": {
            "fixes": [_link_json(x, x.culprit, subjects) for x in as_fix if x.kind != "revert"],
            "reverts": [_link_json(x, x.culprit, subjects) for x in as_fix if x.kind == "revert"],
            "fixed_by": [_link_json(x, x.fix, subjects) for x in as_culprit if x.kind != "revert"],
            "reverted_by": [_link_json(x, x.fix, subjects) for x in as_culprit if x.kind == "revert"],
        },
    }


def _person(name: str, email: str, time: int, offset: int) -> dict:
    return {"name": name, "email": email, "time": time, "offset": offset, "date": iso_date(time, offset)}


def iso_date(time: int, offset: int) -> str:
    """The date as its author's clock showed it, e.g. 2024-05-01T12:00:00+02:00."""
    return dt.datetime.fromtimestamp(time, dt.timezone(dt.timedelta(minutes=offset))).isoformat()


def _change_json(c: Change) -> dict:
    return {
        "path": c.path, "old_path": c.old_path, "status": c.status, "added": c.added,
        "deleted": c.deleted, "binary": c.binary, "unavailable": c.unavailable,
        "hunks": [dict(zip(("old_start", "old_lines", "new_start", "new_lines"), h)) for h in c.hunks],
    }


def _link_json(link: Link, other: str | None, subjects: dict[str, str]) -> dict:
    return {"fix": link.fix, "culprit": link.culprit, "kind": link.kind, "ref": link.ref,
            "status": link.status, "subject": subjects.get(other) if other else None}


def _owners(r: Repo, history: History, sha: str, now: int, changes: list[Change]) -> dict:
    codeowners = own.load_codeowners(r, sha)
    files = []
    for c in changes[:MAX_OWNER_FILES]:
        owners, rule = own.codeowners_for(r, sha, c.path, codeowners=codeowners) if codeowners else ((), None)
        # as of the commit, without it: who knew this code before the change (under its old name)
        people = own.history_owners(history, c.old_path or c.path, now=now, limit=HISTORY_OWNERS,
                                    directory=False, exclude=(sha,))
        files.append({"path": c.path, "codeowners": list(owners), "rule": rule.to_json() if rule else None,
                      "history": [o.to_json() for o in people]})
    return {"codeowners_file": codeowners.source if codeowners else None, "files": files,
            "omitted_files": max(len(changes) - MAX_OWNER_FILES, 0)}


def hunk_ranges(hunks: list[dict]) -> str:
    return " ".join(f"-{h['old_start']},{h['old_lines']} +{h['new_start']},{h['new_lines']}" for h in hunks)


def _print_text(data: dict) -> None:
    """Everything from the repository is printed as `Text` (never parsed as rich markup) after
    `term_text` (escape sequences shown, not obeyed)."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    out = console()
    out.print(f"[bold yellow]commit {data['sha']}[/bold yellow]")
    if len(data["parents"]) > 1:
        out.print(f"Merge:     {' '.join(p[:12] for p in data['parents'])}")
    elif data["parents"]:
        out.print(f"Parent:    {data['parents'][0]}" + ("  (not fetched: shallow clone)" if data["shallow"] else ""))
    for role in ("author", "committer"):
        p = data[role]
        out.print(Text(term_text(f"{role.capitalize() + ':':<10} {p['name']} <{p['email']}>  {p['date']}")),
                  soft_wrap=True)
    out.print()
    # the message as written: long lines are the terminal's to wrap, not ours
    out.print(Text("    " + term_text(data["subject"])), soft_wrap=True)
    if data["body"]:
        out.print()
        body = term_text(data["body"], newlines=True)
        out.print(Text("\n".join(f"    {line}" if line else "" for line in body.split("\n"))), soft_wrap=True)
    out.print()

    stats = data["stats"]
    if len(data["parents"]) > 1:
        out.print("merge commit: no file changes recorded (rcahook diffs single-parent commits only)")
    elif data["shallow"] and not data["files"]:
        out.print("file changes unknown: the parent is beyond this shallow clone's boundary")
    elif data["files"]:
        table = Table(title=f"{stats['files']} file(s), +{stats['added']} -{stats['deleted']}",
                      title_justify="left", show_edge=False)
        for column, justify in (("", "left"), ("path", "left"), ("+", "right"), ("-", "right"),
                                ("hunks (old → new)", "left")):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]  # "left"/"right": rich's literals
        for f in data["files"]:
            path = f"{f['old_path']} → {f['path']}" if f["old_path"] else f["path"]
            hunks = ("unavailable" if f["unavailable"] else "binary" if f["binary"]
                     else hunk_ranges(f["hunks"][:8]))
            if len(f["hunks"]) > 8:
                hunks += f" (+{len(f['hunks']) - 8} more)"
            lines = ("?", "?") if f["unavailable"] else (str(f["added"]), str(f["deleted"]))
            table.add_row(f["status"], Text(term_text(path)), *lines, hunks)
        out.print(table)
        unavailable = sum(f["unavailable"] for f in data["files"])
        if unavailable:
            out.print(f"{unavailable} file change(s) unavailable: their blobs are not in this clone (a partial "
                      "clone); rcahook does not fetch them, so their lines and definitions are unknown", soft_wrap=True)
    else:
        out.print("no file changes")

    if data["touched"]:
        out.print()
        out.print("[bold]touched definitions[/bold]")
        by_path: dict[str, list[str]] = {}
        for t in data["touched"]:
            by_path.setdefault(t["path"], []).append(
                f"{t['qualname']} ({t['kind']}{', removed' if t['side'] == 'old' else ''})")
        for path, names in by_path.items():
            out.print(Text(term_text(f"  {path}: {', '.join(dict.fromkeys(names))}")), soft_wrap=True)
    elif data["files"] and not data["touched_done"]:
        out.print("\ntouched definitions: not recorded (run `rcahook index` with --graph)")

    owners = data["owners"]
    if owners["files"]:
        out.print()
        table = Table(title="owners (CODEOWNERS here; who changed it before)",
                      title_justify="left", show_edge=False)
        for column in ("path", "CODEOWNERS", "history"):
            table.add_column(column)
        for f in owners["files"]:
            people = ", ".join(f"{o['name']} {o['share']:.0%}" for o in f["history"]) or "-"
            table.add_row(Text(term_text(f["path"])), Text(term_text(" ".join(f["codeowners"]) or "-")),
                          Text(term_text(people)))
        out.print(table)
        if owners["codeowners_file"] is None:
            out.print("(no CODEOWNERS file at this commit)")
        if owners["omitted_files"]:
            out.print(f"(owners of {owners['omitted_files']} more file(s) not shown)")

    links = data["links"]
    if any(links.values()):
        out.print()
        out.print("[bold]culprit links[/bold]")
        for label, key, side in (("fixes", "fixes", "culprit"), ("reverts", "reverts", "culprit"),
                                 ("fixed by", "fixed_by", "fix"), ("reverted by", "reverted_by", "fix")):
            for link in links[key]:
                if link[side]:
                    target, how = link[side][:12], link["kind"]
                else:
                    target, how = link["ref"], f"{link['kind']}, {link['status']}"
                subject = f"  {link['subject']}" if link["subject"] else ""
                out.print(f"  {label} {escape(term_text(target))} [dim]({escape(how)})[/dim]"
                          f"{escape(term_text(subject))}", soft_wrap=True)
