"""A bisection (or a verification) as JSON, text or Markdown, and the `git bisect replay` file.

The JSON document is built once and the text and Markdown read from it, so the three say
the same thing. Subjects, author names and the command's output are not rcahook's: they go
through rcahook.untrusted on their way to a terminal or a Markdown page.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rcahook.bisect.search import Search, plain_estimate, replay_lines
from rcahook.untrusted import md_code, md_text, term_text

SCHEMA = "rcahook.bisect/1"
VERIFY_SCHEMA = "rcahook.verify/1"
TEXT_TAIL = 4  # output lines per run in the text report (JSON and Markdown keep TAIL_LINES)
REMAINING_SHOWN = 20

CommitInfo = Callable[[str], dict[str, Any]]  # sha -> {"subject", "author", "committed"}


def commit_json(sha: str, info: CommitInfo, *, rank: int | None = None) -> dict[str, Any]:
    return {"sha": sha, "short_sha": sha[:12], **info(sha), "rank": rank}


def to_json(search: Search, *, cmd: str, title: str, investigation: str | None, info: CommitInfo,
            rank_of: Callable[[str], int | None], replay: Path | None, feedback: dict[str, Any] | None,
            warnings: list[str]) -> dict[str, Any]:
    culprit = search.culprit
    remaining = [] if culprit else search.remaining
    investigation_or_title = bool(investigation or title)  # a plain bisection has no belief to pick by
    return {
        "schema": SCHEMA,
        "status": search.status,
        "incident": title,
        "investigation": investigation,
        "command": cmd,
        "good": search.good,
        "bad": search.bad,
        "candidates": len(search.space),
        "culprit": commit_json(culprit, info, rank=rank_of(culprit)) if culprit else None,
        "remaining": [commit_json(s, info, rank=rank_of(s)) for s in remaining[:REMAINING_SHOWN]],
        "remaining_total": len(remaining),
        "most_likely": (commit_json(search.leader, info, rank=rank_of(search.leader))  # the ranking's pick
                        if not culprit and search.leader and investigation_or_title else None),
        "runs": {"used": search.runs, "plain_bisection": plain_estimate(len(search.space)),
                 "retries": search.plan.retries},
        "evidence": [{
            "run": e.run, "sha": e.sha, "short_sha": e.sha[:12], "subject": info(e.sha)["subject"],
            "role": e.role, "why": e.why, "verdict": e.verdict, "exit_code": e.exit_code,
            "timed_out": e.exit_code is None, "seconds": round(e.seconds, 3), "p_bad": round(e.p_bad, 4),
            "output_tail": e.tail,
        } for e in search.evidence],
        "replay": str(replay) if replay else None,
        "feedback": feedback,
        "warnings": warnings,
    }


def write_replay(search: Search, directory: Path, *, subject: Callable[[str], str]) -> Path:
    """The evidence as a `git bisect log`, for `git bisect replay PATH`."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    name = f"replay-{stamp}-{(search.culprit or search.bad)[:12]}.txt"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("\n".join(replay_lines(search, subject=subject)) + "\n", encoding="utf-8")
    return path


# -- text -----------------------------------------------------------------------------------

def _commit_line(c: dict[str, Any], *, ranked: bool = True) -> str:
    rank = "" if not ranked else (f", rank {c['rank']} of the ranking" if c.get("rank")
                                  else ", not among the ranked suspects")
    return f"{c['short_sha']} \"{term_text(c['subject'])}\" ({term_text(c['author'])}{rank})"


def headline(doc: dict[str, Any]) -> str:
    status = doc["status"]
    if status == "found":
        return f"culprit: {_commit_line(doc['culprit'], ranked=bool(doc['incident']))}"
    n = doc["remaining_total"]
    if status == "max-runs":
        return f"stopped after {doc['runs']['used']} runs (--max-runs): the culprit is one of {n} commits"
    if status == "only-skipped":
        return f"only commits that could not be tested are left: the culprit is one of these {n}"
    return ("the verdicts contradict each other (a flaky command?): rerun with --retries 2, or make the "
            "command deterministic")


def runs_line(doc: dict[str, Any]) -> str:
    r = doc["runs"]
    return (f"runs: {r['used']}; plain bisection of these {doc['candidates']} commits needs about "
            f"{r['plain_bisection']} (ceil(log2 {doc['candidates']}))")


def render_text(doc: dict[str, Any], write: Callable[[str], None]) -> None:
    if doc["incident"]:  # none in a plain bisection
        write(f"incident: {term_text(doc['incident'])}")
    write(headline(doc))
    write(runs_line(doc))
    write("evidence:")
    for e in doc["evidence"]:
        code = "timed out" if e["timed_out"] else f"exit {e['exit_code']}"
        write(f"  {e['run']:>2}  {e['verdict']:<4}  {e['short_sha']}  {e['role']}, {e['why']}: {code}, "
              f"{e['seconds']:.1f} s  \"{term_text(e['subject'])}\"")
        for line in e["output_tail"].splitlines()[-TEXT_TAIL:]:
            write(f"        | {term_text(line)}")
    if doc["status"] != "found":
        for c in doc["remaining"]:
            write(f"  candidate: {_commit_line(c, ranked=bool(doc['incident']))}")
        if doc["remaining_total"] > len(doc["remaining"]):
            write(f"  ... and {doc['remaining_total'] - len(doc['remaining'])} more")
        if doc["most_likely"]:
            write(f"most likely of them: {_commit_line(doc['most_likely'], ranked=bool(doc['incident']))}")
    if doc["replay"]:
        write(f"replay: git bisect replay {term_text(doc['replay'])}   (then: git bisect reset)")
    fb = doc["feedback"]
    if fb:
        write(f"feedback: {term_text(fb['message'])}")
    for w in doc["warnings"]:
        write(f"warning: {term_text(w)}")


# -- Markdown -------------------------------------------------------------------------------

def _fence(text: str) -> str:
    """A fenced block holding `text` literally, whatever backtick runs it contains."""
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=2)
    fence = "`" * (longest + 1)
    return f"{fence}text\n{term_text(text, newlines=True)}\n{fence}"


def _md_commit(c: dict[str, Any]) -> str:
    rank = f", rank {c['rank']}" if c.get("rank") else ", not ranked"
    return f"{md_code(c['short_sha'])} {md_text(c['subject'])} ({md_text(c['author'])}{rank})"


def render_markdown(doc: dict[str, Any]) -> str:
    lines = [f"## rcahook bisect: {md_text(doc['incident'] or 'plain bisection')}", ""]
    if doc["status"] == "found":
        lines.append(f"**Culprit:** {_md_commit(doc['culprit'])}")
    else:
        lines.append(md_text(headline(doc)))
        lines += [""] + [f"- {_md_commit(c)}" for c in doc["remaining"]]
    lines += ["", md_text(runs_line(doc)), "", f"Command: {md_code(doc['command'])}", "",
              "| run | verdict | revision | role | exit | seconds | subject |", "|---:|---|---|---|---:|---:|---|"]
    for e in doc["evidence"]:
        code = "timeout" if e["timed_out"] else str(e["exit_code"])
        lines.append(f"| {e['run']} | {e['verdict']} | {md_code(e['short_sha'], in_table=True)} | {e['role']}, "
                     f"{e['why']} | {code} | {e['seconds']:.1f} | {md_text(e['subject'])} |")
    for e in doc["evidence"]:
        if e["output_tail"].strip():
            lines += ["", f"Run {e['run']} ({md_code(e['short_sha'])}), last lines:", "", _fence(e["output_tail"])]
    if doc["replay"]:
        lines += ["", f"Replay: {md_code('git bisect replay ' + doc['replay'])}"]
    if doc["feedback"]:
        lines += ["", f"Feedback: {md_text(doc['feedback']['message'])}"]
    lines += [f"- warning: {md_text(w)}" for w in doc["warnings"]]
    return "\n".join(lines) + "\n"


# -- verify ---------------------------------------------------------------------------------

def verify_text(doc: dict[str, Any], write: Callable[[str], None]) -> None:
    write(f"{doc['verdict_line']}")
    for key in ("at_bad", "reverted"):
        run = doc[key]
        if run:
            code = "timed out" if run["timed_out"] else f"exit {run['exit_code']}"
            write(f"  {run['label']}: {run['verdict']} ({code}, {run['seconds']:.1f} s)")
            for line in run["output_tail"].splitlines()[-TEXT_TAIL:]:
                write(f"        | {term_text(line)}")
    for path in doc["conflicts"]:
        write(f"  conflict: {term_text(path)}")
    if doc["next"]:
        write(f"next: {term_text(doc['next'])}")


def verify_markdown(doc: dict[str, Any]) -> str:
    lines = [f"## rcahook verify: {md_code(doc['suspect']['short_sha'])} {md_text(doc['suspect']['subject'])}", "",
             f"**{md_text(doc['verdict_line'])}**", "", f"Command: {md_code(doc['command'])}", ""]
    for key in ("at_bad", "reverted"):
        run = doc[key]
        if run:
            code = "timed out" if run["timed_out"] else f"exit {run['exit_code']}"
            lines += [f"- {md_text(run['label'])}: {run['verdict']} ({code}, {run['seconds']:.1f} s)"]
    lines += [f"- conflict: {md_code(p)}" for p in doc["conflicts"]]
    if doc["next"]:
        lines += ["", f"Next: {md_code(doc['next'])}"]
    return "\n".join(lines) + "\n"
