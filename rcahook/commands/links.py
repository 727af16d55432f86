from __future__ import annotations

from rcahook.commands.common import console, index_path, open_repo, print_json
from rcahook.index.reader import History
from rcahook.untrusted import term_text


def run(*, repo: str, db: str | None, kinds: tuple[str, ...], unresolved: bool, fmt: str) -> int:
    r = open_repo(repo)
    history = History.open(index_path(r, db))
    try:
        links = history.links(kinds=kinds or None)
        if unresolved:
            links = [link for link in links if link.status != "resolved"]
        subjects = {c.sha: c.subject for c in history.commits(
            {s for link in links for s in (link.fix, link.culprit) if s})}
    finally:
        history.close()
    rows = [
        {"fix": link.fix, "fix_subject": subjects.get(link.fix), "kind": link.kind, "ref": link.ref,
         "status": link.status, "culprit": link.culprit,
         "culprit_subject": subjects.get(link.culprit) if link.culprit else None}
        for link in links
    ]
    if fmt == "json":
        print_json({"count": len(rows), "links": rows})
    else:
        _print_text(rows, filtered=bool(kinds) or unresolved)
    return 0


def _print_text(rows: list[dict], *, filtered: bool) -> None:
    from rich.table import Table
    from rich.text import Text

    out = console()
    if not rows:
        out.print("no culprit links match" if filtered else
                  "no culprit links: no indexed commit message says `Fixes: <sha>`, `Regression in <sha>`, "
                  "`introduced by <sha>` or `This reverts commit <sha>`")
        return
    table = Table(show_edge=False)
    for column in ("fix", "kind", "ref", "culprit", "subject of the fix"):
        table.add_column(column)
    for row in rows:
        culprit = row["culprit"][:12] if row["culprit"] else row["status"]
        # a resolved ref is the culprit's prefix; an unresolved one is worth reading whole
        ref = row["ref"] if len(row["ref"]) <= 12 or not row["culprit"] else row["ref"][:12] + "…"
        # the ref and the subject are commit-message text: never rich markup, never escape sequences
        table.add_row(row["fix"][:12], row["kind"], Text(term_text(ref)), culprit,
                      Text(term_text(row["fix_subject"] or "")))
    out.print(table)
    unresolved = sum(row["status"] != "resolved" for row in rows)
    out.print(f"{len(rows)} link(s), {unresolved} unresolved")
