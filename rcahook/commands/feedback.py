from __future__ import annotations

from pathlib import Path

from rcahook.commands.common import index_path, open_repo, say
from rcahook.errors import BadInputError, PermissionDeniedError
from rcahook.index import store
from rcahook.index.reader import resolve_commit
from rcahook.rca import feedback as fb
from rcahook.untrusted import term_text


def run(*, investigation_id: str | None, root_cause: str | None, not_: tuple[str, ...], note: str | None,
        export: str | None, list_: bool, repo: str, db: str | None) -> int:
    verdict_given = bool(root_cause or not_)
    if list_ and (export or verdict_given):
        raise BadInputError("--list cannot be combined with --export or a verdict; run them separately")
    if not (list_ or export or investigation_id):
        raise BadInputError("nothing to do: give an investigation id (with --root-cause SHA / --not SHA), "
                            "--list, or --export FILE.jsonl")
    if verdict_given and not investigation_id:
        raise BadInputError("a verdict needs the investigation id it is about, e.g. "
                            "`rcahook feedback inv-20240501-1a2b --root-cause SHA` (see --list)")
    r = open_repo(repo)
    path = fb.state_path(r.common_dir)  # git's common directory: every worktree sees the same verdicts
    conn = fb.open_state(path, create=False)
    try:
        if verdict_given and store.is_read_only(conn):
            raise PermissionDeniedError(f"feedback cannot be recorded: {store.write_problem(path) or 'read-only'}; "
                                        f"make {path.parent} writable for this user, then run this again")
        if list_:
            _print_list(conn)
            return 0
        saved = fb.get_investigation(conn, investigation_id) if investigation_id else None
        if verdict_given and saved is not None:
            recorded = fb.record_verdicts(conn, saved, root_cause=root_cause, not_causes=not_, note=note,
                                          resolve=lambda given: resolve_commit(r, index_path(r, db), given))
            for v in recorded:
                what = "root cause" if v.verdict == "root_cause" else "not the cause"
                where = f"rank {v.rank} of {len(saved.candidates)}" if v.in_candidates else "not among its candidates"
                print(f"recorded for {saved.id}: {v.sha[:12]} {what} ({where})")
                if not v.in_candidates:
                    say(f"note: {v.sha[:12]} was not among the {len(saved.candidates)} commits this investigation "
                        "ranked; recorded anyway (it tells training the search window missed it)")
        if export:
            n = fb.export_jsonl(conn, Path(export), inv_id=saved.id if saved else None)
            print(f"wrote {n} verdict(s) to {export}")
        elif saved is not None and not verdict_given:
            _print_one(conn, saved)
    finally:
        conn.close()
    return 0


def _print_one(conn, saved: fb.SavedInvestigation) -> None:
    print(f"{saved.id}  {fb.iso(saved.created)}  ranker {saved.ranker}  at {saved.at[:12]}")
    print(f"  incident: {term_text(str(saved.incident.get('title')))}")
    for s in saved.results.get("suggestions", []):
        rank = s["rank"] if s["rank"] is not None else "-"
        print(f"  {rank:>2} {s['short_sha']} {term_text(s['subject'])}")
    history = fb.verdicts(conn, saved.id)
    if not history:
        print(f"  no verdict yet: rcahook feedback {saved.id} --root-cause SHA")
    for v in history:
        mark = " (superseded)" if v.superseded else ""
        note = f"  note: {term_text(v.note)}" if v.note else ""
        what = "root cause" if v.verdict == "root_cause" else "not the cause"
        print(f"  verdict #{v.seq} {fb.iso(v.created)}: {v.sha[:12]} {what}{mark}{note}")


def _print_list(conn) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    saved = fb.list_investigations(conn)
    verdicts: dict[str, list[fb.Verdict]] = {}
    for v in fb.verdicts(conn):
        verdicts.setdefault(v.investigation_id, []).append(v)
    table = Table(show_edge=False)
    for name in ("id", "created", "ranker", "incident", "top suggestion", "root cause", "verdicts"):
        table.add_column(name, no_wrap=name != "incident")
    for s in saved:
        suggestions = s.results.get("suggestions") or [{}]
        mine = verdicts.get(s.id, [])
        current = fb.current_root_cause(mine)
        table.add_row(s.id, fb.iso(s.created)[:16], s.ranker, Text(term_text(s.incident.get("title", ""))),
                      suggestions[0].get("short_sha", "-"),
                      current.sha[:12] + (f" (rank {current.rank})" if current.rank else " (missed)")
                      if current else "-", str(len(mine)))
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 150)
    out.print(table if saved else "no saved investigations")
