"""An investigation's result as JSON (stable, versioned schema), a rich table, or Markdown.

The JSON document is built once (`to_json`) and the text and Markdown renderings read
from it, so all three always say the same thing. The schema is `JSON_SCHEMA`, documented
in docs/investigate.md; bump SCHEMA_VERSION on any change that is not a pure addition.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from rcahook.rca.investigate import Result
from rcahook.rca.reasons import nonzero_features
from rcahook.untrusted import md_code, md_text, term_text

SCHEMA_VERSION = 1
MAX_FILES = 10
TEXT_REASONS = 3  # reasons per row in the text table; JSON and Markdown carry them all


def iso(t: int) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def incident_json(result: Result) -> dict:
    """The incident as investigated, itself a valid incident file (docs/incident.md)."""
    inc = result.incident
    return {
        "title": inc.title,
        "description": inc.description,
        "time": iso(result.space.until),
        "at": inc.at or "HEAD",
        "since": _duration(int(inc.since.total_seconds())) if inc.since else None,
        "window": inc.window,
        "impacted_paths": list(inc.impacted_paths),
        "services": list(inc.services),
        # the trace within its caps (rcahook.rca.stacktrace), never a raw multi-megabyte paste
        "stack_trace": result.prepared.trace.text if result.prepared.trace else inc.stack_trace,
    }


def headline(result: Result) -> str:
    if not result.suggestions:
        return "no suggestion: nothing in the search space scored"
    if not result.confident:
        return (f"no confident suggestion (confidence {result.confidence:.0%} is below "
                f"{result.options.min_confidence:.0%}); leads below, unranked, newest first")
    top = result.suggestions[0].candidate.commit
    return f"most likely {top.sha[:12]} \"{top.subject}\"; {result.confidence:.0%} that the root cause is " \
           f"among the top {result.confidence_top}"


def _suggestion_json(s, *, ranked: bool) -> dict:
    c = s.candidate.commit
    short = c.sha[:12]
    return {
        "rank": s.rank if ranked else None,
        "sha": c.sha,
        "short_sha": short,
        "subject": c.subject,
        "author": {"name": c.author_name, "email": c.author_email},
        "committed": iso(c.committer_time),
        "age": s.age,
        "share": round(s.share, 4),
        "probability": round(s.candidate.probability, 6),
        "score": round(s.candidate.score, 4),
        "reasons": [{"kind": r.kind, "text": r.text} for r in s.reasons],
        "features": nonzero_features(s.candidate),
        "files": list(c.paths[:MAX_FILES]),
        "files_total": c.n_files,
        "verify": {"show": f"git show {short}", "revert": f"git revert --no-commit {short}",
                   "revert_abort": "git revert --abort"},
    }


def to_json(result: Result, *, inv_id: str | None, created: int) -> dict:
    space = result.space
    ranked = result.confident
    suggestions = list(result.suggestions)
    if not ranked:  # leads are not an ordering: list them by time so nobody reads one into it
        suggestions.sort(key=lambda s: -s.candidate.commit.committer_time)
    used = result.ranking.ranker
    return {
        "schema_version": SCHEMA_VERSION,
        "id": inv_id,
        "created": iso(created),
        "incident": incident_json(result),
        "query": {
            "impacted": [{"path": p, "source": src} for p, src in result.prepared.sources.items()],
            "functions": list(result.prepared.query.functions),
            "frames": [{"path": f.path, "line": f.line, "function": f.function} for f in result.prepared.frames],
            "frames_dropped": result.prepared.trace.frames_dropped if result.prepared.trace else 0,
            "trace_note": result.prepared.trace.note if result.prepared.trace else None,
        },
        "search_space": {
            "at": space.at,
            "commits": len(space.shas),
            "since": iso(space.since) if space.since is not None else None,
            "until": iso(space.until),
            "window": space.window,
            "candidates": len(result.ranking.candidates),
        },
        "ranker": {
            "name": used,
            "requested": result.ranker_requested,
            "fallback": used != result.ranker_requested,
            "fallback_reason": result.fallback_reason,
            "model": result.model,
            "weights": result.weights_source,
        },
        "confidence": {
            "value": round(result.confidence, 4),
            "raw": round(result.raw_confidence, 4),
            "signals": result.signals.to_json() if result.signals else None,
            "top": result.confidence_top,
            "min_confidence": result.options.min_confidence,
            "confident": ranked,
            "calibration": result.calibration,
        },
        "headline": headline(result),
        "order": "ranked" if ranked else "newest_first",
        "suggestions": [_suggestion_json(s, ranked=ranked) for s in suggestions],
        "bisect": _bisect(result),
        "warnings": list(result.warnings),
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
    }


def _bisect(result: Result) -> dict | None:
    if not result.bisect_good:
        return None
    bad, good = result.space.at[:12], result.bisect_good[:12]
    return {"bad": result.space.at, "good": result.bisect_good, "command": f"git bisect start {bad} {good}"}


def saved_results(doc: dict, result: Result) -> dict:
    """What the state database keeps: the report plus every ranked candidate (for training)."""
    return {**doc, "candidates": [
        {"sha": c.sha, "rank": i + 1, "score": round(c.score, 4), "probability": round(c.probability, 6)}
        for i, c in enumerate(result.ranking.candidates)]}


def save_result(state_path: Path, *, repo: str, doc: dict, result: Result, created: int) -> str:
    """Save an investigation in the state database (for feedback and training); its id."""
    from rcahook.rca import feedback

    conn = feedback.open_state(state_path)
    try:
        saved = {k: v for k, v in saved_results(doc, result).items() if k not in ("id", "incident")}
        return feedback.save_investigation(conn, repo=repo, at=result.space.at, ranker=result.ranking.ranker,
                                           incident=doc["incident"], results=saved, now=created)
    finally:
        conn.close()


# -- text -------------------------------------------------------------------------------------

def _space_line(doc: dict) -> str:
    s = doc["search_space"]
    span = (f"the {s['window']} newest before {s['until'][:16]}" if s["window"] else
            f"{s['since'][:16]} .. {s['until'][:16]}")
    return f"{s['commits']} commits reachable from {s['at'][:12]} ({span}); {s['candidates']} scored"


def fallback_line(doc: dict) -> str | None:
    """The one line that says the model's ranking was not used, and why."""
    r = doc["ranker"]
    if not r["fallback"]:
        return None
    return (f"model ranking not used ({r['requested']}): {r.get('fallback_reason') or 'no reason recorded'}; "
            f"ranked with {r['name']} instead")


def render_text(doc: dict, out) -> None:
    """Print to a rich Console. Untrusted text goes in as `Text` (never parsed as markup) and
    through `term_text` (escape sequences shown, not obeyed)."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    ranked = doc["order"] == "ranked"
    out.print(Text.assemble(("incident: ", "bold"), term_text(doc["incident"]["title"])))
    out.print(Text(f"search space: {_space_line(doc)}"))
    r, c = doc["ranker"], doc["confidence"]
    model = f", model {term_text(r['model'])}" if r["model"] else ""
    fallback = f" (fell back from {r['requested']})" if r["fallback"] else ""
    out.print(Text(f"ranker: {r['name']}{fallback}{model}, {r['weights']} weights; confidence "
                   f"{c['value']:.0%} that the root cause is among the top {c['top']} ({c['calibration']})"))
    if fallback_note := fallback_line(doc):
        out.print(Text(term_text(fallback_note), style="yellow"), soft_wrap=True)  # one line, unfolded
    impacted = ", ".join(f"{i['path']} ({i['source']})" for i in doc["query"]["impacted"][:6])
    if impacted:
        out.print(Text(term_text(f"impacted: {impacted}")))
    if doc["query"].get("trace_note"):
        out.print(Text(f"note: {doc['query']['trace_note']}"))
    out.print()
    style = "bold green" if ranked else "bold yellow"
    out.print(Text(term_text(doc["headline"]), style=style))
    if not doc["suggestions"]:
        return
    table = Table(show_edge=False, show_lines=True, pad_edge=False)
    for name, kw in (("#", {"justify": "right"}), ("sha", {"no_wrap": True}), ("subject", {"ratio": 3}),
                     ("author", {"ratio": 1}), ("age", {"no_wrap": True}), ("share", {"justify": "right"}),
                     ("reasons", {"ratio": 4})):
        table.add_column(name if (ranked or name != "#") else "", **kw)
    for s in doc["suggestions"]:
        reasons = "\n".join(f"• {term_text(x['text'])}" for x in s["reasons"][:TEXT_REASONS])
        more = len(s["reasons"]) - TEXT_REASONS
        if more > 0:
            reasons += f"\n  (+{more} more: --format json)"
        table.add_row(str(s["rank"]) if ranked else "-", s["short_sha"], Text(term_text(s["subject"])),
                      Text(term_text(s["author"]["name"])), s["age"], f"{s['share']:.0%}", Text(reasons))
    out.print(table)
    out.print()
    out.print("[bold]verify[/bold]")
    for s in doc["suggestions"]:
        v = s["verify"]
        label = f"{s['rank']}." if ranked else "-"
        out.print(f"  {label} {escape(v['show'])}   {escape(v['revert'])}   "
                  f"[dim](undo: {escape(v['revert_abort'])})[/dim]")
    if doc["bisect"]:
        out.print(f"  bisect over them: {escape(doc['bisect']['command'])}  [dim](then git bisect good|bad; "
                  "git bisect reset)[/dim]")
    if doc["id"]:
        out.print()
        out.print(f"saved as [bold]{escape(doc['id'])}[/bold]; tell rcahook what it was: "
                  f"rcahook feedback {escape(doc['id'])} --root-cause SHA (or --not SHA)")


# -- markdown ---------------------------------------------------------------------------------

def render_markdown(doc: dict) -> str:
    """A block to paste into an incident ticket (GitHub/GitLab/Jira-with-Markdown).

    Everything from the repository, the incident or a model server goes through `md_text`: a
    ticket must never get HTML, a link or an image from a commit message. Code spans
    (`md_code`) hold only rcahook's own commands and shas.
    """
    ranked = doc["order"] == "ranked"
    c, r = doc["confidence"], doc["ranker"]
    lines = [f"### rcahook: suspect changes for \"{md_text(doc['incident']['title'])}\"", ""]
    lines.append(f"**{md_text(doc['headline'])}**")
    lines.append("")
    lines.append(f"Confidence {c['value']:.0%} that the root cause is among the top {c['top']} "
                 f"(threshold {c['min_confidence']:.0%}) · ranker `{r['name']}`"
                 + (f" (fell back from `{r['requested']}`)" if r["fallback"] else "")
                 + f" · {md_text(_space_line(doc))}"
                 + (f" · investigation {md_code(doc['id'])}" if doc["id"] else ""))
    if fallback_note := fallback_line(doc):
        lines += ["", f"> **{md_text(fallback_note)}**"]
    if doc["query"]["impacted"]:
        lines.append("")
        lines.append("Impacted: " + ", ".join(f"{md_text(i['path'])} ({md_text(i['source'])})"
                                              for i in doc["query"]["impacted"]))
    if not doc["suggestions"]:
        return "\n".join(lines) + "\n"
    lines += ["", "| # | Commit | Subject | Author | Landed | Share |", "|---|---|---|---|---|---|"]
    for s in doc["suggestions"]:
        lines.append(f"| {s['rank'] if ranked else '–'} | {md_code(s['short_sha'], in_table=True)} | "
                     f"{md_text(s['subject'])} | {md_text(s['author']['name'])} | {s['age']} | "
                     f"{s['share']:.0%} |")
    for s in doc["suggestions"]:
        head = f"{s['rank']}. " if ranked else ""
        lines += ["", f"#### {head}{md_code(s['short_sha'])} {md_text(s['subject'])}", ""]
        lines += [f"- {md_text(x['text'])}" for x in s["reasons"]] or ["- (no specific evidence: ranked by priors)"]
        v = s["verify"]
        lines += ["", f"Verify: {md_code(v['show'])} · {md_code(v['revert'])} (undo: {md_code(v['revert_abort'])})"]
    if doc["bisect"]:
        lines += ["", f"Bisect over all of them: {md_code(doc['bisect']['command'])}"]
    if doc["warnings"]:
        lines += ["", *[f"> note: {md_text(w)}" for w in doc["warnings"]]]
    if doc["id"]:
        command = f"rcahook feedback {doc['id']} --root-cause <sha>"
        lines += ["", f"Feedback: {md_code(command)} (or `--not <sha>`)"]
    return "\n".join(lines) + "\n"


# -- the schema -------------------------------------------------------------------------------

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_SHA = {"type": "string", "pattern": "^[0-9a-f]{40}$"}

JSON_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "rcahook investigate --format json",
    "type": "object",
    "required": ["schema_version", "id", "created", "incident", "query", "search_space", "ranker",
                 "confidence", "headline", "order", "suggestions", "bisect", "warnings", "seconds"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "id": {"type": ["string", "null"], "pattern": "^inv-[0-9]{8}-[0-9a-f]{4}$"},
        "created": _STR,
        "incident": {
            "type": "object",
            "required": ["title", "description", "time", "at", "since", "window", "impacted_paths",
                         "services", "stack_trace"],
            "properties": {
                "title": _STR, "description": _STR, "time": _STR, "at": _STR, "since": _NSTR,
                "window": {"type": ["integer", "null"]},
                "impacted_paths": {"type": "array", "items": _STR},
                "services": {"type": "array", "items": _STR},
                "stack_trace": _NSTR,
            },
        },
        "query": {
            "type": "object",
            "required": ["impacted", "functions", "frames"],
            "properties": {
                "impacted": {"type": "array", "items": {
                    "type": "object", "required": ["path", "source"],
                    "properties": {"path": _STR, "source": _STR}}},
                "functions": {"type": "array", "items": _STR},
                "frames": {"type": "array", "items": {
                    "type": "object", "required": ["path", "line", "function"],
                    "properties": {"path": _STR, "line": {"type": ["integer", "null"]}, "function": _NSTR}}},
                "frames_dropped": {"type": "integer", "minimum": 0}, "trace_note": _NSTR,
            },
        },
        "search_space": {
            "type": "object",
            "required": ["at", "commits", "since", "until", "window", "candidates"],
            "properties": {
                "at": _SHA, "commits": {"type": "integer", "minimum": 1}, "since": _NSTR, "until": _STR,
                "window": {"type": ["integer", "null"]}, "candidates": {"type": "integer", "minimum": 0},
            },
        },
        "ranker": {
            "type": "object",
            "required": ["name", "requested", "fallback", "fallback_reason", "model", "weights"],
            "properties": {
                "name": {"enum": ["features", "election", "logprob"]},
                "requested": {"enum": ["features", "election", "logprob"]},
                "fallback": {"type": "boolean"}, "fallback_reason": _NSTR, "model": _NSTR,
                "weights": {"enum": ["default", "repository"]},
            },
        },
        "confidence": {
            "type": "object",
            "required": ["value", "raw", "top", "min_confidence", "confident", "calibration"],
            "properties": {
                "value": {"type": "number", "minimum": 0, "maximum": 1},
                "raw": {"type": "number", "minimum": 0, "maximum": 1},
                "signals": {"type": ["object", "null"], "additionalProperties": {"type": "number"}},
                "top": {"type": "integer", "minimum": 0},
                "min_confidence": {"type": "number", "minimum": 0, "maximum": 1},
                "confident": {"type": "boolean"}, "calibration": _STR,
            },
        },
        "headline": _STR,
        "order": {"enum": ["ranked", "newest_first"]},
        "suggestions": {"type": "array", "items": {
            "type": "object",
            "required": ["rank", "sha", "short_sha", "subject", "author", "committed", "age", "share",
                         "probability", "score", "reasons", "features", "files", "files_total", "verify"],
            "properties": {
                "rank": {"type": ["integer", "null"], "minimum": 1},
                "sha": _SHA, "short_sha": {"type": "string", "pattern": "^[0-9a-f]{12}$"},
                "subject": _STR,
                "author": {"type": "object", "required": ["name", "email"],
                           "properties": {"name": _STR, "email": _STR}},
                "committed": _STR, "age": _STR,
                "share": {"type": "number", "minimum": 0, "maximum": 1},
                "probability": {"type": "number", "minimum": 0, "maximum": 1},
                "score": {"type": "number"},
                "reasons": {"type": "array", "items": {
                    "type": "object", "required": ["kind", "text"],
                    "properties": {"kind": _STR, "text": _STR}}},
                "features": {"type": "object", "additionalProperties": {"type": "number"}},
                "files": {"type": "array", "items": _STR},
                "files_total": {"type": "integer"},
                "verify": {"type": "object", "required": ["show", "revert", "revert_abort"],
                           "properties": {"show": _STR, "revert": _STR, "revert_abort": _STR}},
            },
        }},
        "bisect": {"oneOf": [{"type": "null"}, {
            "type": "object", "required": ["bad", "good", "command"],
            "properties": {"bad": _SHA, "good": _SHA, "command": _STR}}]},
        "warnings": {"type": "array", "items": _STR},
        "seconds": {"type": "object", "additionalProperties": {"type": "number"}},
    },
}
